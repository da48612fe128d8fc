"""What an alt-text writer asks the model for, and the checks derived from its answer.

`alt` is capped at 125 characters (the length screen-reader guidance commonly suggests
for alt text): a longer answer fails validation and is sent back to the model with
the error, which asks for a shorter one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ReadingLevel = Literal["simple", "standard", "expert"]
"""How technical the wording may be."""

ALT_MAX = 125
"""Longest alt text accepted, in characters."""

REDUNDANT_OPENINGS = ("image of", "picture of", "photo of", "photograph of", "graphic of")
"""Openings screen readers make redundant: they already announce an image."""


class AltText(BaseModel):
    """Accessible text for one image."""

    alt: str = Field(
        max_length=ALT_MAX,
        description="Short alt text: one sentence, at most 125 characters, saying what "
        "matters in the image. Do not start with 'image of' or 'picture of'.",
    )
    long_description: str = Field(
        max_length=1000,
        description="A longer description for readers who want details (at most 1000 "
        "characters): subject, setting, colours, any text shown.",
    )
    language: str = Field(description="Language code of `alt` and `long_description`, e.g. fr.")
    reading_level: ReadingLevel = Field(description="The reading level the text is written at.")
    contains_text: bool = Field(description="True if the image shows legible text.")


def problems(answer: AltText, language: str, reading_level: ReadingLevel) -> list[str]:
    """What a reviewer would flag in an answer that passed validation.

    Args:
        answer: The model's answer.
        language: The language code that was asked for.
        reading_level: The reading level that was asked for.

    Returns:
        One message per problem; empty when there is none.
    """
    found: list[str] = []
    if answer.language.lower() != language.lower():
        found.append(f"language is {answer.language!r}, {language!r} was asked for")
    if answer.reading_level != reading_level:
        found.append(f"reading level is {answer.reading_level!r}, {reading_level!r} was asked for")
    if answer.alt.lower().startswith(REDUNDANT_OPENINGS):
        found.append("alt text opens with a redundant 'image of'")
    return found
