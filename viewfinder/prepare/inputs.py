"""What an image input may be, without Pillow or httpx2: the limits, the image file
suffixes, and which strings are URLs.

`decode` and `load` apply these rules and re-export them; they live here so that what
only names or checks an input (the command line's options and file listings, `import
viewfinder`) imports neither Pillow nor httpx2 (tests/test_startup.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_LIMITS",
    "IMAGE_SUFFIXES",
    "ImageLimits",
    "has_image_suffix",
    "is_url",
    "url_scheme",
]

IMAGE_SUFFIXES: Final = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".ico", ".tif", ".tiff", ".mpo"}
)
"""File suffixes of the formats Azure accepts (`ImageLimits.formats`): the files a
directory argument (`viewfinder batch`, `viewfinder cost`) or an evaluation's images
folder is taken to hold."""

# "c:" is a Windows drive, not a scheme: a scheme has two characters or more.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


@dataclass(frozen=True)
class ImageLimits:
    """What Azure AI Vision accepts; an image outside these limits is refused.

    Attributes:
        max_bytes: Files of this many bytes or more are refused (Azure: under 20 MB).
        min_side: Width and height must be greater than this, in pixels (the service
            documents "greater than 50 x 50": exactly 50 is refused).
        max_side: Width and height must be less than this, in pixels (the service
            documents "less than 16,000 x 16,000": exactly 16,000 is refused).
        formats: Accepted Pillow format names.
        max_pixels: Decompression-bomb ceiling on width x height, read from the header.
            Pillow's own process-wide hard limit (`2 * PIL.Image.MAX_IMAGE_PIXELS`,
            about 179 megapixels by default) still applies on top of it.
    """

    max_bytes: int = 20 * 1024 * 1024
    min_side: int = 50
    max_side: int = 16_000
    formats: frozenset[str] = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "ICO", "TIFF", "MPO"})
    max_pixels: int = 16_000 * 16_000


DEFAULT_LIMITS: Final = ImageLimits()


def has_image_suffix(name: str | os.PathLike[str]) -> bool:
    """Whether a file name ends in one of `IMAGE_SUFFIXES` (any case): the one test of
    which files are images, by name, without opening them."""
    return os.path.splitext(os.fsdecode(name))[1].lower() in IMAGE_SUFFIXES


def url_scheme(source: str) -> str | None:
    """The URL scheme `source` starts with, in lower case (`"https"`), or None for a path."""
    scheme = _SCHEME.match(source)
    return None if scheme is None else scheme.group(1).lower()


def is_url(source: str) -> bool:
    """Whether a `str` image input is an http(s) URL (any case) rather than a path.

    The one rule for the library, the CLI and batches: the input starts with a scheme
    `http:` or `https:`. A Windows drive (`c:\\photo.jpg`) is not a scheme.
    """
    return url_scheme(source) in ("http", "https")
