"""Printable, stable ids for image URLs that keep the query string but never its secrets.

`safe_url` is what batches use as the id and `source` of a URL input: two URLs that
differ only in their query string (`…/img?id=1`, `…/img?id=2`) are different images and
get different ids, while the values of signature-like parameters (SAS `sig`, AWS
`X-Amz-Signature`, `token`, `api_key`, ...) are replaced by a short digest, so the id can
go into outputs, logs and error messages:

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
from typing import Final
from urllib.parse import unquote_plus, urlsplit

__all__ = ["DIGEST_HEX", "SECRET_NAME_PARTS", "is_secret_name", "legacy_url_id", "safe_url"]

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

    Frozen on purpose (it is `viewfinder.prepare.images.redact_url` as it was then): output files
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
