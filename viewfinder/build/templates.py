"""Prompt templates: Jinja2 files in `viewfinder/prompts/`, overridable by users."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from viewfinder.errors import InvalidOptionError

__all__ = ["PromptTemplate", "builtin_template", "load_template"]

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


class PromptTemplate:
    """A Jinja2 template with the source it came from (hashed into `model_version`)."""

    def __init__(self, source: str, *, name: str = "<prompt>") -> None:
        self.source = source
        self.name = name
        try:
            self._template = _ENV.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise InvalidOptionError(f"prompt template {name} has a syntax error: {exc}") from exc

    def render(self, variables: Mapping[str, Any]) -> str:
        """Render with `variables`; a variable the template uses but nobody gave is an error."""
        try:
            return self._template.render(**variables).strip()
        except jinja2.UndefinedError as exc:
            raise InvalidOptionError(f"prompt template {self.name}: {exc.message}") from exc

    @property
    def digest(self) -> str:
        """sha256 of the template source."""
        return hashlib.sha256(self.source.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"PromptTemplate(name={self.name!r})"


_FILE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".txt", ".md")


@cache
def builtin_template(name: str) -> PromptTemplate:
    """One of the templates shipped in `viewfinder/prompts/` (without the `.j2`)."""
    path = resources.files("viewfinder") / "prompts" / f"{name}.j2"
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidOptionError(f"no built-in prompt template named {name!r}") from exc
    return PromptTemplate(source, name=f"{name}.j2")


def load_template(value: str | Path | PromptTemplate, *, name: str = "<prompt>") -> PromptTemplate:
    """A template from its text, a `Path` to a file, or an existing `PromptTemplate`.

    A `Path`, or a one-line `str` ending in a template suffix (`.j2`, `.jinja`,
    `.jinja2`, `.txt`, `.md`), is read as a file; any other `str` is template text.
    """
    if isinstance(value, PromptTemplate):
        return value
    if isinstance(value, str) and "\n" not in value and value.endswith(_FILE_SUFFIXES):
        value = Path(value)
    if isinstance(value, Path):
        try:
            return PromptTemplate(value.read_text(encoding="utf-8"), name=str(value))
        except OSError as exc:
            raise InvalidOptionError(f"cannot read prompt template {value}: {exc}") from exc
    return PromptTemplate(value, name=name)
