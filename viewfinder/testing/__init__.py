"""A pytest plugin for recorded-cassette tests of viewfinder analyzers (pytest-recording).

Enable it in your `conftest.py`:

```python
pytest_plugins = ["viewfinder.testing"]
```

It provides:
- a session-scoped `vcr_config` fixture (extend it: return
  `viewfinder.testing.cassette_config(ignore_hosts=[...])` from your own);
- the `viewfinder_body` matcher, which explains a miss in terms of model, prompt,
  image digest, schema or sampling;
- `viewfinder_analyzer`, a factory fixture of analyzers wired for replay (one attempt,
  a throwaway key when none is set, the cache in a temp dir);
- for every test marked `vcr`, `VIEWFINDER_CACHE_DIR` pointed at a fresh temp dir (and
  `VIEWFINDER_CACHE` unset), so no test hits another's cache or writes to your real one;
- `find_secrets(paths)`, to fail CI when a cassette holds something key-shaped.

Record once with a key (`pytest --record-mode=once`), commit the cassettes, and run CI
with `--record-mode=none --block-network` (plus `--allowed-hosts=127.0.0.1,localhost`
if your suite runs local servers: the flag blocks loopback too).

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
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from viewfinder.analyzers.compact import compact_answer
from viewfinder.analyzers.custom import Analyzer
from viewfinder.analyzers.image_analysis import ImageAnalyzer
from viewfinder.engine.retry import RetryPolicy
from viewfinder.prepare.redact import redact_image_text

__all__ = [
    "BODY_MATCHER",
    "KEPT_RESPONSE_HEADERS",
    "SECRET_REQUEST_HEADERS",
    "body_difference",
    "cassette_config",
    "compact_answer",
    "find_secrets",
    "pytest_recording_configure",
    "scrub_request",
    "scrub_response",
    "vcr_config",
    "viewfinder_analyzer",
    "viewfinder_body",
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


_PYDANTIC_DOCS = re.compile(r"https://errors\.pydantic\.dev/[0-9.]+/")


def _normalize(text: str) -> str:
    """Images to digests; pydantic's versioned docs links (in re-asks) made version-free."""
    return _PYDANTIC_DOCS.sub("https://errors.pydantic.dev/latest/", redact_image_text(text))


def scrub_request(request: Any) -> Any:
    """vcrpy `before_record_request`: secrets out of the URI, images out of the body.

    Also drops the pydantic version from the docs links in re-ask messages, so a
    pydantic minor upgrade does not turn every re-ask cassette into a miss.
    """
    request.uri = _scrub_uri(request.uri)
    text = _body_text(request.body)
    if text is not None:
        request.body = _normalize(text).encode("utf-8")
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
    text = _normalize(text)
    try:
        return json.loads(text)
    except ValueError:
        return text


_SAMPLING_KEYS = frozenset(
    {"temperature", "seed", "top_p", "max_tokens", "max_completion_tokens", "reasoning_effort"}
)
_SCHEMA_KEYS = frozenset({"response_format", "tools", "tool_choice", "functions"})


def _what(path: list[Any], recorded: Any, live: Any) -> str:
    """Name the part of a chat request that differs, in a user's terms."""
    head = path[0] if path else None
    if head == "model":
        return "the model"
    if head in _SAMPLING_KEYS:
        return f"the sampling parameters ({head})"
    if head in _SCHEMA_KEYS:
        return "the schema (response format / tools)"
    if head == "messages":
        if "image_url" in path:
            return "the image (its sha256 digest or detail: a different image or encoder)"
        if len(path) == 1:
            return "the number of messages (a re-ask happened in only one of them?)"
        if isinstance(recorded, str) and isinstance(live, str):
            prefix = len(_common_prefix(recorded, live))
            if "json_schema" in recorded[:prefix] or '"properties"' in recorded[:prefix]:
                return "the schema (as instructor embeds it in the prompt)"
        return "the prompt text"
    return f"the request field {head!r}"


def _common_prefix(a: str, b: str) -> str:
    return os.path.commonprefix([a, b])  # noqa: RUF071 - character prefix intended


def _excerpt(a: str, b: str, width: int = 60) -> str:
    start = len(_common_prefix(a, b))
    left = max(start - 20, 0)
    return (
        f"at character {start}: recorded {a[left : start + width]!r} "
        f"vs now {b[left : start + width]!r}"
    )


def _first_difference(a: Any, b: Any, path: list[Any]) -> tuple[list[Any], Any, Any] | None:
    if type(a) is not type(b):
        return path, a, b
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return [*path, key], a.get(key), b.get(key)
            found = _first_difference(a[key], b[key], [*path, key])
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return path, a, b
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, [*path, index])
            if found:
                return found
        return None
    return None if a == b else (path, a, b)


def _short(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def body_difference(recorded_body: Any, live_body: Any) -> str | None:
    """Explain how two request bodies differ, after canonicalisation; `None` when equal.

    The explanation names what changed (model, prompt, image digest, schema, sampling),
    where (`messages[1].content[0].text`), and shows both sides around the first
    differing character, so a miss says what to re-record.
    """
    found = _first_difference(_canonical(recorded_body), _canonical(live_body), [])
    if found is None:
        return None
    path, recorded, live = found
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    what = _what(path, recorded, live)
    if isinstance(recorded, str) and isinstance(live, str):
        detail = _excerpt(recorded, live)
    elif isinstance(recorded, list) and isinstance(live, list):
        detail = f"{len(recorded)} items recorded vs {len(live)} now"
    else:
        detail = f"recorded {_short(recorded)} vs now {_short(live)}"
    return (
        f"{what} changed ({where or 'body'}: {detail}); if that change is intended, "
        "re-record the cassette with --record-mode=rewrite"
    )


def viewfinder_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: equal canonical JSON bodies, or an AssertionError saying how not."""
    difference = body_difference(r1.body, r2.body)
    if difference is not None:
        raise AssertionError(difference)


def cassette_config(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for `vcr.use_cassette`, as the `vcr_config` fixture returns them.

    Extend it by passing overrides (e.g. `ignore_hosts=[...]`); never pass `record_mode`
    (it would override `--record-mode`).
    """
    if "record_mode" in overrides:
        raise ValueError("keep record_mode out of vcr_config: use pytest's --record-mode")
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
    register(BODY_MATCHER, viewfinder_body)


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def vcr_config() -> dict[str, Any]:
    """pytest-recording's cassette settings: viewfinder's `cassette_config()`."""
    return cassette_config()


@pytest.fixture(autouse=True)
def _viewfinder_isolated_cache(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tests marked `vcr` get a fresh `VIEWFINDER_CACHE_DIR` (and no `VIEWFINDER_CACHE`,
    which would win over it); other tests are untouched."""
    if request.node.get_closest_marker("vcr") is not None:
        monkeypatch.delenv("VIEWFINDER_CACHE", raising=False)
        monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path_factory.mktemp("viewfinder-cache")))


REPLAY_RETRY = RetryPolicy(max_attempts=1)
"""One attempt: on replay a retry can only hide a cassette miss."""
PLACEHOLDER_KEY = "viewfinder-test-placeholder"
"""The key used when none is set: enough to replay, useless anywhere else."""


@pytest.fixture
def viewfinder_analyzer(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A factory of analyzers wired for recorded tests.

    `viewfinder_analyzer(**options)` gives an `ImageAnalyzer`;
    `viewfinder_analyzer(schema=..., prompt=..., **options)` gives an `Analyzer`. Unless
    the options say otherwise: one attempt per request, the cache in this test's temp
    dir, and a placeholder key when neither `OPENAI_API_KEY` nor a base URL or Azure
    endpoint is set (so replays need no key; recording uses your real one).
    """
    made: list[ImageAnalyzer | Analyzer[Any]] = []

    def make(**options: Any) -> ImageAnalyzer | Analyzer[Any]:
        settings: dict[str, Any] = {"retry": REPLAY_RETRY, "cache": tmp_path / "viewfinder-cache"}
        configured = any(
            os.environ.get(name)
            for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT")
        )
        if not configured and not {"client", "async_client", "api_key"} & set(options):
            settings["api_key"] = PLACEHOLDER_KEY
        settings.update(options)
        analyzer: ImageAnalyzer | Analyzer[Any] = (
            Analyzer(**settings) if "schema" in settings else ImageAnalyzer(**settings)
        )
        made.append(analyzer)
        return analyzer

    yield make
    for analyzer in made:
        analyzer.close()


# --- secrets in cassettes -------------------------------------------------------------


@dataclass(frozen=True)
class SecretFinding:
    """Something key-shaped in a file."""

    path: Path
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}"


_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("OpenAI-style key", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
    ("bearer token", re.compile(r"\bbearer\s+[A-Za-z0-9._~+/=-]{16,}", re.I)),
    (
        "key header",
        re.compile(
            r"^\s*-?\s*['\"]?(authorization|api-key|x-api-key|ocp-apim-subscription-key|cookie)"
            r"['\"]?\s*:",
            re.I | re.M,
        ),
    ),
    ("SAS signature", re.compile(r"[?&]sig=[A-Za-z0-9%+/=]{8,}", re.I)),
    ("storage account key", re.compile(r"AccountKey=[A-Za-z0-9+/=]{20,}", re.I)),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
    (
        "key in a query string",
        re.compile(
            r"[?&](api[-_]?key|subscription-key|access_token)=(?!REDACTED)[^&\s'\"]{8,}", re.I
        ),
    ),
)


def find_secrets(paths: Iterable[str | os.PathLike[str]]) -> list[SecretFinding]:
    """Scan files (directories recursively, `*.yaml`/`*.yml`/`*.json`) for secrets.

    Looks for OpenAI-style keys, bearer tokens, authorization / api-key headers, SAS
    signatures, storage keys, JWTs and keys in query strings.
    """
    findings: list[SecretFinding] = []
    for root in map(Path, paths):
        files = (
            sorted(p for ext in ("*.yaml", "*.yml", "*.json") for p in root.rglob(ext))
            if root.is_dir()
            else [root]
        )
        for file in files:
            text = file.read_text(encoding="utf-8", errors="replace")
            for kind, pattern in _SECRET_PATTERNS:
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    findings.append(SecretFinding(file, line, kind))
    return findings
