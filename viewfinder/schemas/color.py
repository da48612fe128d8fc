"""Computer Vision 3.2's Color and ImageType results (reference sections 4, 5.2 and 5.3).

Both are computed from the pixels, with no model: `viewfinder.local.color` says how.
Attributes are snake_case like the rest of `viewfinder.schemas`; `to_rest()` gives the
3.2 JSON object under its wire names (section 4: `dominantColorForeground`, ...,
`isBWImg`, spelled as the swagger and the SDK spell it, not the docs' `isBwImg`).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["COLOR_NAMES", "ColorInfo", "ColorName", "ImageType"]

ColorName = Literal[
    "Black",
    "Blue",
    "Brown",
    "Gray",
    "Green",
    "Orange",
    "Pink",
    "Purple",
    "Red",
    "Teal",
    "White",
    "Yellow",
]
"""One of the 12 colour names of section 5.2, capitalised as the service returns them."""

COLOR_NAMES: tuple[ColorName, ...] = get_args(ColorName)
"""The 12 names in the reference's (alphabetical) order: ties between names break in it."""


class ColorInfo(BaseModel):
    """The colour scheme of an image (section 5.2's `ColorInfo`)."""

    model_config = ConfigDict(frozen=True)

    dominant_color_foreground: ColorName
    """The most frequent colour name of the image's centre (the subject, usually)."""
    dominant_color_background: ColorName
    """The most frequent colour name of the image's border."""
    dominant_colors: tuple[ColorName, ...]
    """The names that cover a large part of the whole image, most frequent first (ours
    always hold at least one; a stored result may hold none)."""
    accent_color: str = Field(pattern=r"^[0-9A-F]{6}$")
    """The most vibrant colour, as 6 upper-case hex digits without `#` (e.g. `873B59`)."""
    is_bw_img: bool
    """True when the image has no colour: black, white and greys only (a grey photo too)."""

    @field_validator("accent_color", mode="before")
    @classmethod
    def _upper_hex(cls, value: Any) -> Any:
        """Accept `873b59` and `#873B59` as well: the service and the docs write both."""
        return value.removeprefix("#").upper() if isinstance(value, str) else value

    @classmethod
    def from_rest(cls, color: dict[str, Any]) -> ColorInfo:
        """Read a 3.2 JSON object `color` (wire names, e.g. a stored 3.2 result)."""
        return cls(
            dominant_color_foreground=color["dominantColorForeground"],
            dominant_color_background=color["dominantColorBackground"],
            dominant_colors=tuple(color["dominantColors"]),
            accent_color=color["accentColor"],
            is_bw_img=color["isBWImg"],
        )

    def to_rest(self) -> dict[str, Any]:
        """The 3.2 JSON object `color` (section 4 `ColorInfo`), wire names."""
        return {
            "dominantColorForeground": self.dominant_color_foreground,
            "dominantColorBackground": self.dominant_color_background,
            "dominantColors": list(self.dominant_colors),
            "accentColor": self.accent_color,
            "isBWImg": self.is_bw_img,
        }


class ImageType(BaseModel):
    """Whether an image is clip art or a line drawing (section 5.3's `ImageType`)."""

    model_config = ConfigDict(frozen=True)

    clip_art_type: Literal[0, 1, 2, 3]
    """0 non-clip-art, 1 ambiguous, 2 normal clip art, 3 good clip art."""
    line_drawing_type: Literal[0, 1]
    """1 for a line drawing, else 0 (the docs call it a boolean; the wire is an integer)."""

    @classmethod
    def from_rest(cls, image_type: dict[str, Any]) -> ImageType:
        """Read a 3.2 JSON object `imageType` (wire names)."""
        return cls(
            clip_art_type=image_type["clipArtType"],
            line_drawing_type=image_type["lineDrawingType"],
        )

    def to_rest(self) -> dict[str, Any]:
        """The 3.2 JSON object `imageType` (section 4 `ImageType`), wire names."""
        return {"clipArtType": self.clip_art_type, "lineDrawingType": self.line_drawing_type}
