"""A result beside its drawn image, for notebooks: `preview(result, image)`.

Jupyter shows what `preview` returns as the result's summary table
(`ImageAnalysisResult._repr_html_`) above a JPEG thumbnail of `viewfinder.draw`'s
picture, inline as a `data:` URL: no file written, nothing remote loaded, and the page
bounded (the thumbnail's longer side at most `max_side` pixels).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from html import escape
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel

from viewfinder.draw import draw
from viewfinder.errors import InvalidOptionError
from viewfinder.schemas.result import ImageAnalysisResult

if TYPE_CHECKING:
    from PIL import Image

    from viewfinder.prepare.load import ImageInput, LoadedImage

__all__ = ["Preview", "preview"]

_LARGEST: Final = 2048
"""The largest `max_side` allowed: an inline image bigger than this bloats a notebook."""


@dataclass(frozen=True)
class Preview:
    """A result and its image, shown together by Jupyter (`_repr_html_`)."""

    result: BaseModel
    """What was found: an `ImageAnalysisResult`, or any model `viewfinder.draw` draws."""
    image: ImageInput | LoadedImage
    """The analysed image, as `viewfinder.draw` takes it."""
    max_side: int = 640
    """The thumbnail's longer side at most, in pixels."""
    allow_hosts: Collection[str] | None = None
    """As for `viewfinder.draw`, for an image URL on an internal host."""

    @cached_property
    def drawn(self) -> Image.Image:
        """`viewfinder.draw(result, image)` at full size (drawn once, then kept)."""
        return draw(self.result, self.image, allow_hosts=self.allow_hosts)

    def thumbnail_jpeg(self) -> bytes:
        """The drawn image shrunk to `max_side` (never enlarged), as JPEG bytes."""
        copy = self.drawn.copy()
        copy.thumbnail((self.max_side, self.max_side))
        buffer = io.BytesIO()
        copy.save(buffer, format="JPEG", quality=80)
        return buffer.getvalue()

    def _repr_html_(self) -> str:
        if isinstance(self.result, ImageAnalysisResult):
            summary = self.result._repr_html_()
        else:
            summary = f"<p><b>{escape(type(self.result).__name__)}</b></p>"
        data = base64.b64encode(self.thumbnail_jpeg()).decode("ascii")
        image = f"<img alt='drawn result' src='data:image/jpeg;base64,{data}'>"
        return f"<div class='viewfinder-preview'>{summary}{image}</div>"


def preview(
    result: BaseModel,
    image: ImageInput | LoadedImage,
    *,
    max_side: int = 640,
    allow_hosts: Collection[str] | None = None,
) -> Preview:
    """Pair a result with its image for a notebook: the summary and the drawn thumbnail.

    Nothing is loaded or drawn until Jupyter shows it (or `drawn` is read).

    Args:
        result: An `ImageAnalysisResult`, or any model `viewfinder.draw` draws.
        image: The analysed image (a path, bytes, a PIL image, a URL, a `LoadedImage`).
        max_side: The thumbnail's longer side at most, 16-2048 pixels.
        allow_hosts: As for `viewfinder.draw`.

    Raises:
        InvalidOptionError: `max_side` is out of range.
    """
    if not 16 <= max_side <= _LARGEST:
        raise InvalidOptionError(f"max_side must be 16-{_LARGEST} pixels, not {max_side}")
    return Preview(result, image, max_side, allow_hosts)
