"""Request bodies with their base64 image payloads replaced by a digest.

One function serves the cache key and the cassette filters: a request is identified by
the image it carries, never by megabytes of base64, and a replay still proves that the
same image was sent.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

__all__ = ["redact_image_payloads", "redact_image_text"]

_DATA_URL = re.compile(r"data:(?P<media>[\w.+-]+/[\w.+-]+);base64,(?P<payload>[A-Za-z0-9+/=]+)")


def _digest(match: re.Match[str]) -> str:
    payload = match.group("payload")
    digest = hashlib.sha256(payload.encode("ascii")).hexdigest()
    return f"data:{match.group('media')};sha256={digest}"


def redact_image_text(text: str) -> str:
    """Replace every `data:<media>;base64,<payload>` in `text` by `data:<media>;sha256=<hex>`.

    The digest is of the base64 text itself, so it can be computed from the request body
    alone (the same image always gives the same digest).
    """
    return _DATA_URL.sub(_digest, text)


def redact_image_payloads(value: Any) -> Any:
    """`redact_image_text` applied to every string inside a JSON-like value."""
    if isinstance(value, str):
        return redact_image_text(value) if "base64," in value else value
    if isinstance(value, dict):
        return {key: redact_image_payloads(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_image_payloads(item) for item in value]
    return value
