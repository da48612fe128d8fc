"""Cassette configuration for recorded tests of viewfinder analyzers (pytest-recording).

Cassettes stay small and safe:
- request headers that carry secrets are dropped before anything is written;
- keys and SAS tokens in query strings are replaced;
- response headers are kept on an allow-list (`content-type`, `retry-after`,
  `retry-after-ms`, `x-request-id`, `x-ratelimit-*`);
- base64 image payloads in request bodies are replaced by their sha256 digest, at
  record time and (vcrpy applies the same hook) at match time, so a replay still
  proves the same image was sent;
- requests match on method, path and the canonical JSON body, never on host or port
  (the recording server's port changes from run to run).

`record_mode` is deliberately absent from `vcr_config()`: set in the config it would
override pytest-recording's `--record-mode` flag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from viewfinder.payloads import redact_image_text

__all__ = [
    "BODY_MATCHER",
    "KEPT_RESPONSE_HEADERS",
    "SECRET_REQUEST_HEADERS",
    "body_difference",
    "pytest_recording_configure",
    "scrub_request",
    "scrub_response",
    "vcr_config",
]

SECRET_REQUEST_HEADERS: tuple[str, ...] = (
    "authorization",
    "api-key",
    "x-api-key",
    "ocp-apim-subscription-key",
    "openai-organization",
    "openai-project",
    "cookie",
)
"""Request headers never written to a cassette."""

KEPT_RESPONSE_HEADERS: tuple[str, ...] = (
    "content-type",
    "retry-after",
    "retry-after-ms",
    "x-request-id",
)
"""Response headers kept in cassettes, besides every `x-ratelimit-*` header."""

_SECRET_QUERY = re.compile(
    r"^(api[-_]?key|key|sig|signature|token|access_token|code|se|sv|sp)$", re.I
)
BODY_MATCHER = "viewfinder_body"
"""Name under which the canonical-body matcher is registered with vcrpy."""


def _scrub_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if not parts.query:
        return uri
    query = [
        (name, "REDACTED" if _SECRET_QUERY.match(name) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _body_text(body: Any) -> str | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return str(body)


def scrub_request(request: Any) -> Any:
    """vcrpy `before_record_request`: secrets out of the URI, images out of the body."""
    request.uri = _scrub_uri(request.uri)
    text = _body_text(request.body)
    if text is not None and "base64," in text:
        request.body = redact_image_text(text).encode("utf-8")
    for name in list(request.headers):
        if name.lower() in SECRET_REQUEST_HEADERS:
            del request.headers[name]
    return request


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """vcrpy `before_record_response`: keep only allow-listed response headers."""
    headers = response.get("headers", {})
    response["headers"] = {
        name: value
        for name, value in headers.items()
        if name.lower() in KEPT_RESPONSE_HEADERS or name.lower().startswith("x-ratelimit-")
    }
    return response


def _canonical(body: Any) -> Any:
    text = _body_text(body)
    if text is None:
        return body
    text = redact_image_text(text)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _first_difference(a: Any, b: Any, path: str = "body") -> str | None:
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: present in only one request"
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items vs {len(b)}"
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}[{index}]")
            if found:
                return found
        return None
    if a != b:
        return f"{path}: {_short(a)} vs {_short(b)}"
    return None


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def body_difference(recorded_body: Any, live_body: Any) -> str | None:
    """Where two request bodies differ, after canonicalisation; `None` when equal."""
    return _first_difference(_canonical(recorded_body), _canonical(live_body))


def _match_body(r1: Any, r2: Any) -> None:
    difference = body_difference(r1.body, r2.body)
    if difference is not None:
        raise AssertionError(difference)


def vcr_config(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for `vcr.use_cassette`; return it from a `vcr_config` fixture.

    Extend it by passing overrides (e.g. `ignore_hosts=[...]`).
    """
    config: dict[str, Any] = {
        "filter_headers": [(name, None) for name in SECRET_REQUEST_HEADERS],
        "before_record_request": scrub_request,
        "before_record_response": scrub_response,
        "decode_compressed_response": True,
        "match_on": ["method", "path", BODY_MATCHER],
        "record_on_exception": False,
    }
    config.update(overrides)
    return config


def pytest_recording_configure(config: Any, vcr: Any) -> None:
    """pytest-recording hook: register the canonical-body matcher."""
    register: Callable[[str, Callable[[Any, Any], None]], None] = vcr.register_matcher
    register(BODY_MATCHER, _match_body)
