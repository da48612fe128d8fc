"""The one redactor: secrets out of everything viewfinder prints, logs, caches or records.

Four kinds of input, one module, so that each rule exists once:

- `redact_url`: a URL for messages and logs, `scheme://host[:port]/path`, without user
  info, query string (where SAS tokens live) or fragment.
- `redact_text`: free text that may quote URLs, headers or keys (a provider's error
  message, an exception's text): URL user info and query strings, `sk-...` keys, bearer
  tokens and `api-key` values become `<redacted>`.
- `safe_url` (and `legacy_url_id`): a printable, stable id for a URL that keeps its
  query string but digests secret-looking values; see below.
- `redact_image_payloads` / `redact_image_text`: a request body with its base64 image
  payloads replaced by their digest (cache keys, cassettes).

Ids for URLs: `safe_url` is what batches use as the id and `source` of a URL input: two
URLs that differ only in their query string (`…/img?id=1`, `…/img?id=2`) are different
images and get different ids, while the values of signature-like parameters (SAS `sig`,
AWS `X-Amz-Signature`, `token`, `api_key`, ...) are replaced by a short digest, so the id
can go into outputs, logs and error messages:

```
>>> safe_url("https://acct.blob.core.windows.net/c/img.png?sv=2024-05-04&sp=r&sig=abc%3D")
'https://acct.blob.core.windows.net/c/img.png?sv=2024-05-04&sp=r&sig=~efc771e8'
```

The same URL always gives the same id (the digest is an unkeyed SHA-256, on every
machine), so a batch output file can be resumed anywhere. A digest cannot be reversed,
but a guessable value (a short `code`, a dictionary password) can be confirmed by
hashing guesses: do not put low-entropy secrets in image URLs.

`legacy_url_id` is the id batches gave URLs before (the URL without its query string);
resuming an output file written then still needs it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final
from urllib.parse import unquote_plus, urlsplit

__all__ = [
    "DIGEST_HEX",
    "INVALID_URL",
    "SECRET_NAME_PARTS",
    "is_secret_name",
    "legacy_url_id",
    "redact_image_payloads",
    "redact_image_text",
    "redact_text",
    "redact_url",
    "safe_url",
]

SECRET_NAME_PARTS: Final = (
    "sig",  # Azure SAS `sig`, `signature`, `X-Amz-Signature`, `X-Goog-Signature`
    "token",  # `token`, `access_token`, `X-Amz-Security-Token`
    "key",  # `key`, `api_key`, `apikey`, CloudFront `Key-Pair-Id`
    "secret",
    "pass",  # `password`, `passwd`, `passphrase`
    "pwd",
    "auth",
    "credential",  # `X-Amz-Credential`, `X-Goog-Credential`
    "code",  # OAuth authorization codes
    "policy",  # CloudFront `Policy`
    "session",
    "jwt",
    "hmac",
)
"""A query parameter whose name contains one of these (any case) has its value digested."""

DIGEST_HEX: Final = 8
"""Hex digits of SHA-256 that stand in for a secret value (after a `~`)."""

INVALID_URL: Final = "<invalid URL>"
"""What an unparseable URL is shown as."""

_SEPARATOR = re.compile(r"([&;])")


# --- a URL for messages and logs --------------------------------------------------------


def redact_url(url: str) -> str:
    """Strip a URL down to `scheme://host[:port]/path`.

    Drops the user info, the query string (where SAS tokens live) and the fragment,
    so the result is safe for messages and logs.

    Args:
        url: Any URL.

    Returns:
        The URL without user info, query or fragment; `"<invalid URL>"` when it cannot
        be parsed.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return INVALID_URL
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme or host:
        return f"{parts.scheme}://{host}{parts.path}"
    return parts.path


# --- free text: messages that may quote URLs, headers or keys ---------------------------

_TEXT_REDACTIONS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # credentials in a URL: scheme://user:password@host
    (
        re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@'\"<>]+@"),
        r"\g<scheme><redacted>@",
    ),
    # query strings (SAS tokens, keys): keep the path, drop everything after "?"
    (
        re.compile(r"(?P<url>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'\"<>]*)\?[^\s#'\"<>]*"),
        r"\g<url>?<redacted>",
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_*.\-]{4,}"), "sk-<redacted>"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s'\",]+"), r"\1<redacted>"),
    (re.compile(r"(?i)\b(api[-_]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"), r"\1<redacted>"),
)


def redact_text(text: str) -> str:
    """Remove URL query strings, URL credentials and key-shaped strings from `text`.

    Args:
        text: Any message that may quote a URL, a header or a key.

    Returns:
        The text with those parts replaced by `<redacted>`.
    """
    for pattern, replacement in _TEXT_REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


# --- stable ids for URLs ------------------------------------------------------------------


def is_secret_name(name: str) -> bool:
    """Whether a query parameter called `name` (percent-encoded or not) may hold a secret."""
    lowered = unquote_plus(name).lower()
    return any(part in lowered for part in SECRET_NAME_PARTS)


def _digest(value: str) -> str:
    return "~" + hashlib.sha256(value.encode()).hexdigest()[:DIGEST_HEX]


def _safe_query(query: str) -> str:
    """`query` with the value of every secret-named parameter replaced by its digest.

    Parameters are split on `&` and `;` (some servers accept either), kept in order and
    otherwise byte for byte, so distinct queries stay distinct.
    """
    pieces = _SEPARATOR.split(query)
    for i in range(0, len(pieces), 2):  # odd indexes are the separators themselves
        name, equals, value = pieces[i].partition("=")
        if equals and value and is_secret_name(name):
            pieces[i] = f"{name}={_digest(value)}"
    return "".join(pieces)


def safe_url(url: str) -> str:
    """`scheme://host[:port]/path[?query]`, safe to print, distinct for distinct URLs.

    Drops the user info and the fragment (never sent to the server), keeps the query
    string but replaces the value of every parameter whose name looks secret (see
    `SECRET_NAME_PARTS`) by `~` and the first `DIGEST_HEX` hex digits of its SHA-256.
    A URL without a query string gives what `legacy_url_id` gives.

    Args:
        url: An http(s) URL.

    Returns:
        The printable id; `"<invalid URL>"` when `url` cannot be parsed.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return INVALID_URL
    base = legacy_url_id(url)
    return f"{base}?{_safe_query(parts.query)}" if parts.query else base


def legacy_url_id(url: str) -> str:
    """The id batch outputs gave a URL before query strings were kept: no query at all.

    Frozen on purpose (it is `redact_url` as it was then): output files
    written with these ids must keep resuming whatever later changes to `redact_url`.

    Args:
        url: An http(s) URL.

    Returns:
        `scheme://host[:port]/path`; `"<invalid URL>"` when `url` cannot be parsed.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return INVALID_URL
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme or host:
        return f"{parts.scheme}://{host}{parts.path}"
    return parts.path


# --- request bodies: image payloads -----------------------------------------------------

_DATA_URL = re.compile(r"data:(?P<media>[\w.+-]+/[\w.+-]+);base64,(?P<payload>[A-Za-z0-9+/=]+)")


def _payload_digest(match: re.Match[str]) -> str:
    payload = match.group("payload")
    digest = hashlib.sha256(payload.encode("ascii")).hexdigest()
    return f"data:{match.group('media')};sha256={digest}"


def redact_image_text(text: str) -> str:
    """Replace every `data:<media>;base64,<payload>` in `text` by `data:<media>;sha256=<hex>`.

    One function serves the cache key and the cassette filters: a request is identified
    by the image it carries, never by megabytes of base64, and a replay still proves
    that the same image was sent. The digest is of the base64 text itself, so it can be
    computed from the request body alone (the same image always gives the same digest).
    """
    return _DATA_URL.sub(_payload_digest, text)


def redact_image_payloads(value: Any) -> Any:
    """`redact_image_text` applied to every string inside a JSON-like value."""
    if isinstance(value, str):
        return redact_image_text(value) if "base64," in value else value
    if isinstance(value, dict):
        return {key: redact_image_payloads(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_image_payloads(item) for item in value]
    return value
