"""An Image Analysis 4.0 compatible HTTP server, answered by a GPT vision model.

Point Microsoft's own SDK (or any REST client of the service) at it and change nothing
else: `ImageAnalysisClient(endpoint="http://localhost:8080", credential=AzureKeyCredential(key))`.

```bash
VIEWFINDER_API_KEYS=my-key viewfinder serve --port 8080
```

What it serves:

- `POST /computervision/imageanalysis:analyze`: the service's query parameters
  (`api-version` `2023-10-01` or `2024-02-01`, `features`, `language`,
  `gender-neutral-caption`, `smartcrops-aspect-ratios`, `model-version` (`latest` or
  `2023-10-01`; what results report is `ServerSettings.model_version`); unknown
  extra parameters are ignored), a raw image body (`application/octet-stream` or
  `image/*`), the image as a part of a `multipart/form-data` body, or
  `application/json` `{"url": "..."}`, and the service's JSON answer
  (`viewfinder.compat.rest.to_azure_json`) or its error bodies
  (`viewfinder.compat.service`), with `apim-request-id` / `request-id` headers.
- `/vision/v3.2/...`: Computer Vision 3.2's image operations (`viewfinder.compat.ops32`)
  and Read (`viewfinder.compat.read32`), with the same keys, limits and URL policy.
- `POST /skills/image-analysis`: Azure AI Search's image-analysis skill as a custom Web API
  skill (`viewfinder.compat.skill`), with the same keys, limits and URL policy.
- `POST /computervision/retrieval:vectorizeImage` and `:vectorizeText`, AI Search's
  `POST /vectorizers/multimodal` and `POST /skills/vectorize` (`viewfinder.compat.vectorize`):
  multimodal embeddings, when `ServerSettings.embedder` is set, with the same keys, limits
  and URL policy.
- `GET /healthz` (liveness: the process answers; `/health` is the same) and `GET /readyz`
  (readiness: started, the model endpoint configured, and not stopping), without a key;
  their bodies hold a status word and nothing else.

Stopping (`run`): on SIGTERM (or Ctrl-C) `/readyz` turns 503 at once; after
`shutdown_delay` seconds (0 by default: a load balancer's probe interval, so it stops
sending before the port closes) the server stops accepting connections, finishes the
requests in flight within `graceful_timeout` seconds, then stops (Read operations still
running are marked failed) and the process exits 0.

Throttling: all requests share one `viewfinder.engine.ratelimit.RateLimiter`, so a 429 from
the model endpoint pauses every request of the process; with `ServerSettings.redis`, one
`viewfinder.engine.shared_limit.SharedRateLimiter` budget per model deployment is shared by
every replica and worker, so a 429 seen by one pauses all. The server does not sit in
retries: each model request gets one attempt (`SERVER_RETRY`), a throttled endpoint
is answered 429 and an unavailable one 503, both with `Retry-After`, and a request
that would wait longer than `ServerSettings.max_queue_seconds` for the limiter is
answered 429 at once, without a model call. The client's own retry policy waits (the
SDK retries up to 3 times, honouring `Retry-After`), so retries never multiply: one
SDK call costs at most 4 model calls when the endpoint throttles or fails, and at most
4 x (1 + 2 re-asks) = 12 in all with the defaults.

Security:

- Keys: `Ocp-Apim-Subscription-Key: <key>` or `Authorization: Bearer <key>`, compared
  in constant time (SHA-256 digests, against every configured key).
- Microsoft Entra ID: with `ServerSettings.entra`, a bearer token that is not a key is
  validated (`viewfinder.compat.entra`: the tenant's signing keys, issuer, audience,
  lifetime, and an allow-list of the principals that may call); keys keep working
  beside it. A refused token gets the service's 401 and the log says why (never the
  token); a key set that cannot be fetched is a 503. azure-core sends tokens over
  HTTPS only, so Entra needs TLS (`ssl_certfile`, `ssl_keyfile`).
- An app with neither keys nor Entra ID is refused unless `no_auth=True` is asked for
  explicitly.
- Image URLs are fetched with `viewfinder.prepare.fetch.afetch_image`: internal
  addresses (loopback, private, link-local, cloud metadata...) are refused before
  any connection, unless allow-listed in `ServerSettings.allow_hosts`.
- Request bodies are limited before they are read whole: a `Content-Length` over the
  limit is refused at once, and a chunked body is counted while it streams.
- The access log (logger `viewfinder.compat.server.access`, one JSON object per line) holds
  no headers, keys, tokens, query strings, image URLs (only the host of a URL input) nor
  image bytes; an Entra caller is named by its allow-listed id (`principal`). `run`
  turns uvicorn's own access log off: it prints full query strings.
- Plain HTTP sends keys in clear text: off loopback, serve TLS (`ssl_certfile`,
  `ssl_keyfile`) or put the server behind a TLS-terminating proxy.

Memory: decoding an image holds about 4 bytes per decoded pixel while its model copy
is made, so the server bounds the pixels it decodes at once with a
`viewfinder.prepare.pixel_budget.PixelBudget` of `ServerSettings.max_decode_pixels` (counted
from each image's header, as decoded: a large JPEG decodes at reduced scale). A decode
waits, first come first served, up to `decode_wait_seconds` for its pixels, then is
answered 429 with `Retry-After`; an image larger than the whole budget is decoded
alone. A source-cache hit decodes nothing and holds nothing. After a decode of
`viewfinder.prepare.pixel_budget.TRIM_PIXELS` or more, freed heap memory is given back to the
system (glibc's `malloc_trim`), so the RSS falls back after a burst.

Needs the `server` extra: `pip install 'viewfinder[server]'`.
"""

from __future__ import annotations

try:
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.datastructures import QueryParams
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as _missing:
    from viewfinder.errors import import_failure

    raise ImportError(
        f"viewfinder's server needs FastAPI and uvicorn, and {_missing.name or 'one'} is "
        + import_failure("server", _missing)
    ) from _missing

import asyncio
import email.message
import email.parser
import email.policy
import json
import logging
import math
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from viewfinder.analyzers.image_analysis import FeatureOptions, ImageAnalyzer
from viewfinder.build.plan import CallPlan
from viewfinder.compat import ops32, read32, read_pages, skill, vectorize
from viewfinder.compat.handler import (
    ANALYZE_PATH,
    MODEL_VERSION_HEADER,
    ApiKeys,
    image_url,
    is_image_type,
    media_type,
    presented_key,
    query_plan,
)
from viewfinder.compat.rest import to_azure_json
from viewfinder.compat.service import (
    API_VERSIONS,
    DEFAULT_RETRY_AFTER,
    MAX_IMAGE_BYTES,
    RESOURCE_NOT_FOUND,
    ServiceError,
    retry_after_header,
    service_error_for,
    unauthorized,
)
from viewfinder.compat.skill import SkillSettings
from viewfinder.engine.ratelimit import RateLimiter
from viewfinder.engine.retry import RetryPolicy
from viewfinder.errors import (
    ConfigurationError,
    ImageFetchError,
    ImageSizeError,
    InvalidOptionError,
    RateLimitError,
    ViewfinderError,
    import_failure,
)
from viewfinder.prepare.fetch import afetch_image
from viewfinder.prepare.pixel_budget import PixelBudget, budget_scope
from viewfinder.prepare.redact import redact_url
from viewfinder.schemas.result import ImageAnalysisResult

if TYPE_CHECKING:  # PyJWT is needed only when Entra ID is configured
    from viewfinder.compat.entra import EntraSettings, TokenValidator
    from viewfinder.embed.embedder import Embedder

__all__ = [
    "ANALYZE_PATH",
    "DECODE_WAIT_SECONDS",
    "GRACEFUL_TIMEOUT",
    "HEALTH_PATH",
    "MAX_DECODE_PIXELS",
    "MAX_QUEUE_SECONDS",
    "MODEL_VERSION_HEADER",
    "READY_PATH",
    "SERVER_RETRY",
    "ServerSettings",
    "configure_logging",
    "create_app",
    "run",
]

MAX_JSON_BYTES: Final = 64 * 1024
"""Largest `application/json` body (`{"url": ...}`) read."""

SERVER_RETRY: Final = RetryPolicy(max_attempts=1)
"""The server's model calls: one attempt each. A 429 or 5xx is answered at once (429 /
503 + `Retry-After`) and the client's retry policy waits, instead of both retrying."""

MAX_QUEUE_SECONDS: Final = 2.0
"""Longest a request waits for the shared rate limiter before it is answered 429."""

MAX_DECODE_PIXELS: Final = 2 * 16_000 * 16_000
"""Default pixel budget: two of the largest images the service accepts (16000 x 16000)
decoded at once, about 2 GiB of pixel buffers at 4 bytes a pixel, or three 13000 x 13000
PNGs, or about forty 12-megapixel PNGs (a 12-megapixel JPEG decodes at half scale:
3 megapixels)."""

DECODE_WAIT_SECONDS: Final = 2.0
"""Default longest wait for the pixel budget before a request is answered 429."""

GRACEFUL_TIMEOUT: Final = 30
"""Default seconds `run` lets requests in flight finish after a stop signal, Kubernetes'
default `terminationGracePeriodSeconds`; the rest are cut."""

HEALTH_PATH: Final = "/healthz"
"""Liveness probe: 200 while the process answers (no key)."""

READY_PATH: Final = "/readyz"
"""Readiness probe: 200 once started, 503 from the stop signal on (no key)."""

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("viewfinder.server.access")

_OPEN_SERVER: Final = (
    "refusing to start an open server: set VIEWFINDER_API_KEYS (or --api-key-file), "
    "configure Entra ID (--entra-tenant) or pass --no-auth"
)
_RECORD: Final = "viewfinder.access"  # scope key of the access-log record
_INTERNAL: Final = service_error_for(ViewfinderError("unexpected"))
_UNSUPPORTED_TYPE: Final = ServiceError(
    400, "InvalidRequest", "The provided image content type is not supported."
)
_BAD_FORM: Final = ServiceError(
    400, "InvalidRequest", "The multipart/form-data body must hold the image in a part."
)
_IMAGE_TOO_LARGE: Final = service_error_for(ImageSizeError("too large", limit="bytes"))
_JSON_TOO_LARGE: Final = ServiceError(
    400, "InvalidRequest", f"The JSON request body must be smaller than {MAX_JSON_BYTES} bytes."
)
_KEYS_UNAVAILABLE: Final = ServiceError(
    503,
    "ServiceUnavailable",
    "Token validation is temporarily unavailable.",
    retry_after=DEFAULT_RETRY_AFTER,
)


@dataclass(frozen=True)
class ServerSettings:
    """How the server authenticates, fetches and analyses.

    Attributes:
        api_keys: Accepted keys (never shown in `repr`). Required unless `entra` or
            `no_auth`.
        no_auth: Serve without keys. Only for trusted networks; contradicts `api_keys`
            and `entra`.
        entra: Microsoft Entra ID tokens accepted beside the keys (see
            `viewfinder.compat.entra`); `None` accepts keys only.
        allow_hosts: Internal hosts (names or IPs) image URLs may point at; every
            other non-public address is refused (see `viewfinder.prepare.fetch`).
        max_body_bytes: Images (uploaded or fetched) of this many bytes or more are
            refused, as the service refuses 20971520 bytes or more. JSON bodies are
            limited to `MAX_JSON_BYTES` on their own.
        fetch_timeout: Seconds allowed to fetch an image URL, redirects included.
        analyzer: The analyzer answering requests. The server closes it when it
            stops (its async client belongs to the server's event loop), sets its
            `retry` policy, and gives it a `RateLimiter` when it has none.
        analyzer_options: Keyword arguments for `ImageAnalyzer(...)` when `analyzer`
            is `None`; it is then built from them (and the environment) at startup.
        retry: Retry policy of the model calls, set on the analyzer; `None` keeps the
            analyzer's own. The default, one attempt, leaves retrying to the client.
        max_queue_seconds: Longest a request waits for the rate limiter the server
            gives the analyzer (its `max_wait`) before it is answered 429 +
            `Retry-After`. An analyzer's own rate limiter is used as it is.
        max_decode_pixels: Pixels decoded at once, over all requests (the memory
            bound, see `MAX_DECODE_PIXELS`). An image larger than this is decoded alone.
        decode_wait_seconds: Longest a request waits for its pixels before it is
            answered 429 with `Retry-After`; 0 answers at once.
        model_version: What results' `modelVersion` reports. `None` (the default): the
            engine's true `<model>+<hash of prompts and schemas>`, so pipelines keying
            stored results on it see a model or prompt change; `"2023-10-01"`
            (`AZURE_MODEL_VERSION`) for code that checks the service's value. Either
            way the true version is in the `x-viewfinder-model-version` header.
        read_store: The directory of the Computer Vision 3.2 Read operations
            (`viewfinder.compat.read32`): give every worker the same one. `None`: a
            temp directory of this app, removed when it stops (`viewfinder serve`
            passes `--read-store`, by default `read-operations` under the cache
            directory, so finished results outlive a restart; those in flight do not).
            Unused when `redis` is set: the operations then live in Redis.
        skill: Batch size and timeout of the AI Search skills (`viewfinder.compat.skill`,
            `viewfinder.compat.vectorize`).
        embedder: The embedder of the vectorize routes (`viewfinder.compat.vectorize`);
            `None` (the default): they answer that embeddings are not configured. The
            server sets its `retry` policy, its image `limits` (the retrieval ones, A.3 of
            the reference) and, when it has none, a `RateLimiter`, and closes it when it
            stops.
        shutdown_delay: Seconds between a stop signal and the port closing, during which
            `/readyz` answers 503 and requests are still served (so a load balancer stops
            sending first); 0 (the default) stops at once. Only where the app runs in the
            main thread, as `run` runs it.
        redis: A Redis URL (`redis://host:6379/0`) for the state replicas share: the
            Read operation store and the rate limiters (one budget per model
            deployment). `None` (the default): each process keeps its own.
    """

    api_keys: tuple[str, ...] = field(default=(), repr=False)
    no_auth: bool = False
    entra: EntraSettings | None = None
    allow_hosts: tuple[str, ...] = ()
    max_body_bytes: int = MAX_IMAGE_BYTES
    fetch_timeout: float = 10.0
    analyzer: ImageAnalyzer | None = None
    analyzer_options: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy | None = SERVER_RETRY
    max_queue_seconds: float = MAX_QUEUE_SECONDS
    max_decode_pixels: int = MAX_DECODE_PIXELS
    decode_wait_seconds: float = DECODE_WAIT_SECONDS
    model_version: str | None = None
    read_store: Path | None = None
    skill: SkillSettings = field(default_factory=SkillSettings)
    embedder: Embedder | None = None
    shutdown_delay: float = 0.0
    redis: str | None = field(default=None, repr=False)

    def validate(self) -> None:
        """Refuse settings that would serve unsafely or cannot work.

        Raises:
            ConfigurationError: No key, no Entra ID and no `no_auth`; keys or Entra ID
                with `no_auth`; an empty key; Entra settings that `EntraSettings.validate`
                refuses; a non-positive limit; or a `redis` that is not a Redis URL
                redis-py can read, or without redis-py installed.
        """
        if any(not key.strip() for key in self.api_keys):
            raise ConfigurationError("an API key is empty")
        if not self.api_keys and self.entra is None and not self.no_auth:
            raise ConfigurationError(_OPEN_SERVER)
        if self.api_keys and self.no_auth:
            raise ConfigurationError("pass API keys or no_auth (--no-auth), not both")
        if self.entra is not None:
            if self.no_auth:
                raise ConfigurationError("pass Entra ID settings or no_auth (--no-auth), not both")
            self.entra.validate()
        if self.max_body_bytes < 1 or self.fetch_timeout <= 0:
            raise ConfigurationError("max_body_bytes and fetch_timeout must be positive")
        if not (math.isfinite(self.max_queue_seconds) and self.max_queue_seconds >= 0):
            raise ConfigurationError("max_queue_seconds must be a number >= 0")
        if not (math.isfinite(self.shutdown_delay) and self.shutdown_delay >= 0):
            raise ConfigurationError("shutdown_delay must be a number >= 0")
        _check_pixel_budget(self.max_decode_pixels, self.decode_wait_seconds)
        self.skill.validate()
        if self.redis is not None:
            _check_redis(self.redis)


def _check_redis(url: str) -> None:
    """Refuse a `redis` that is no Redis URL, or when redis-py is missing (before startup,
    not at the first request); the URL is shown redacted."""
    try:
        from viewfinder.engine import redis_link  # redis-py: only when Redis is asked for
    except ImportError as exc:
        raise ConfigurationError(
            f"redis (--redis, VIEWFINDER_REDIS) needs redis-py, which is "
            f"{import_failure('redis', exc)}"
        ) from None
    if not redis_link.is_redis_url(url):
        raise ConfigurationError(
            f"redis (--redis, VIEWFINDER_REDIS) must be a redis://, rediss:// or unix:// URL, "
            f"not {redact_url(url)!r}"
        )
    try:
        redis_link.connect(url).close()  # an unreadable URL is refused now (nothing is sent)
    except InvalidOptionError as exc:
        raise ConfigurationError(f"redis (--redis, VIEWFINDER_REDIS): {exc}") from None


# --- the pixel budget -----------------------------------------------------------------


def _check_pixel_budget(pixels: int, wait: float) -> None:
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ConfigurationError(f"max_decode_pixels must be a positive integer, not {pixels!r}")
    if not (isinstance(wait, int | float) and math.isfinite(wait) and wait >= 0):
        raise ConfigurationError(f"decode_wait_seconds must be a number >= 0, not {wait!r}")


class _ServiceJSON(JSONResponse):
    """JSON with the service's content type."""

    media_type = "application/json; charset=utf-8"


def _error_response(error: ServiceError, record: dict[str, Any]) -> Response:
    record["error"] = error.inner_code or error.code
    return _ServiceJSON(error.body(), status_code=error.status, headers=error.headers)


# --- the access log -------------------------------------------------------------------


class _AccessLog:
    """ASGI middleware: request ids on every response, one JSON log line per request.

    The handler adds what it learnt (api-version, features, body size, URL host, error
    code) to the record under `scope["viewfinder.access"]`; nothing else is logged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        client = scope.get("client")
        record: dict[str, Any] = {
            "method": scope["method"],
            "path": str(scope["path"])[:256],
            "status": 500,
            "duration_ms": 0.0,
            "request_id": request_id,
            "body_bytes": 0,
            "client": f"{client[0]}:{client[1]}" if client else None,
        }
        scope[_RECORD] = record
        ids = [(b"apim-request-id", request_id.encode()), (b"request-id", request_id.encode())]

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *ids]}
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            record["duration_ms"] = round((time.perf_counter() - start) * 1000, 1)
            access_logger.info(json.dumps(record, separators=(",", ":")))


def _record(request: Request) -> dict[str, Any]:
    record = request.scope.get(_RECORD)
    return record if isinstance(record, dict) else {}


# --- request parsing ------------------------------------------------------------------


def _plan(
    params: QueryParams, record: dict[str, Any], analyzer: ImageAnalyzer
) -> CallPlan[FeatureOptions, ImageAnalysisResult]:
    """The call plan of the query, checked as the service checks it (before the body)."""
    version = params.get("api-version")
    # the value itself may be anything: only a known one is logged
    record["api_version"] = version if version in API_VERSIONS else "unsupported"
    plan = query_plan(params.multi_items(), analyzer)
    record["features"] = [feature.azure_name for feature in plan.options.features]
    return plan


async def _read_body(
    request: Request, limit: int, too_large: ServiceError, record: dict[str, Any]
) -> bytes:
    """The whole body, refused with `too_large` once it reaches `limit` bytes.

    A declared `Content-Length` is refused before anything is read; a chunked body is
    counted while it streams and refused at the chunk that reaches the limit.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) >= limit:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        record["body_bytes"] = total
        if total >= limit:
            raise too_large
        chunks.append(chunk)
    if total == 0:
        raise service_error_for(ImageSizeError("the request body is empty", limit="bytes"))
    return b"".join(chunks)


def _form_image(content_type: str, body: bytes) -> bytes:
    """The image of a `multipart/form-data` body, which the REST reference allows for the
    binary image: the first part that is a file (has a `filename`), else the first part,
    whatever its field name. Parsed with the standard library's MIME parser (a header
    block for the request's own `Content-Type`, then the body).
    """
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = [part for part in message.iter_parts() if isinstance(part, email.message.Message)]
    if not message.is_multipart() or not parts:
        raise _BAD_FORM
    chosen = next((part for part in parts if part.get_filename()), parts[0])
    image = chosen.get_payload(decode=True)
    if not isinstance(image, bytes):
        raise _BAD_FORM
    if not image:
        raise service_error_for(ImageSizeError("the image part is empty", limit="bytes"))
    return image


def _url_host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host[:255] if host else None


# --- keys -----------------------------------------------------------------------------


class _Auth:
    """Who may call: a configured key (constant time), else, when Entra ID is
    configured, a bearer token that `viewfinder.compat.entra` accepts."""

    def __init__(self, settings: ServerSettings) -> None:
        self._open = settings.no_auth
        self._keys = ApiKeys.of(settings.api_keys)
        self._tokens: TokenValidator | None = None
        if settings.entra is not None:
            from viewfinder.compat.entra import TokenValidator  # PyJWT: only when asked for

            self._tokens = TokenValidator(settings.entra)

    async def check(self, request: Request, record: dict[str, Any]) -> None:
        """Return when the request may be served.

        Raises:
            ServiceError: The service's 401 (no detail: the log says why a token was
                refused), or a 503 when the tenant's signing keys cannot be fetched.
        """
        if self._open:
            return
        presented = presented_key(request.headers)
        if self._keys.match(presented):
            return
        bearer = None if "ocp-apim-subscription-key" in request.headers else presented
        if self._tokens is None or bearer is None:
            raise unauthorized()
        from viewfinder.compat.entra import KeysUnavailable, TokenRefused

        request_id = record.get("request_id")
        try:
            record["principal"] = await self._tokens.aprincipal(bearer)
        except TokenRefused as exc:
            logger.warning("request %s: bearer token refused: %s", request_id, exc)
            raise unauthorized() from None
        except KeysUnavailable as exc:
            logger.error("request %s: Entra signing keys unavailable: %s", request_id, exc)
            raise _KEYS_UNAVAILABLE from None


# --- the app --------------------------------------------------------------------------


class _Analyzers:
    """The analyzer given in the settings, or one built from its options on first use,
    set up to serve: the server's retry policy and one rate limiter for all requests."""

    def __init__(self, settings: ServerSettings) -> None:
        self._options = dict(settings.analyzer_options)
        self._retry = settings.retry
        self._max_wait = settings.max_queue_seconds
        self._redis = settings.redis
        self.limiter: RateLimiter | None = None
        """The analyzer's rate limiter, when it is a `RateLimiter` (for `Retry-After`)."""
        self._analyzer = None if settings.analyzer is None else self._adopt(settings.analyzer)

    def get(self) -> ImageAnalyzer:
        if self._analyzer is None:
            self._analyzer = self._adopt(ImageAnalyzer(**self._options))
        return self._analyzer

    def _adopt(self, analyzer: ImageAnalyzer) -> ImageAnalyzer:
        """Set the retry policy, and a shared `RateLimiter` unless it has a gate (shared
        with the other replicas through Redis when `ServerSettings.redis` is set)."""
        if not analyzer.has_endpoint:
            return analyzer  # the local engine: no model calls to pace
        engine = analyzer.engine
        if self._retry is not None:
            engine.retry = self._retry
        if engine.gate is None:
            provider = engine.provider
            engine.gate = _limiter(self._redis, provider.endpoint, provider.model, self._max_wait)
        if isinstance(engine.gate, RateLimiter):
            self.limiter = engine.gate
        return analyzer

    def service_error(self, exc: ViewfinderError) -> ServiceError:
        """`service_error_for(exc)`; a 429's `Retry-After` also covers the limiter's pause."""
        error = service_error_for(exc)
        if isinstance(exc, RateLimitError) and self.limiter is not None:
            pause = retry_after_header(max(exc.retry_after or 0.0, self.limiter.paused_for))
            error = replace(error, retry_after=max(error.retry_after or 0, pause))
        return error

    async def aclose(self) -> None:
        if self._analyzer is not None:
            await self._analyzer.aclose()
        if self.limiter is not None:
            self.limiter.close()  # a shared limiter's Redis connections


def _adopt_embedder(settings: ServerSettings) -> Embedder | None:
    """The settings' embedder set up to serve, as `_Analyzers` sets up the analyzer: the
    server's retry policy, the retrieval image limits, a rate limiter unless it has one."""
    embedder = settings.embedder
    if embedder is None:
        return None
    if settings.retry is not None:
        embedder.retry = settings.retry
    embedder.limits = vectorize.retrieval_limits(settings.max_body_bytes)
    if embedder.rate_limiter is None:
        backend = embedder.backend
        embedder.rate_limiter = _limiter(
            settings.redis, backend.base_url, backend.model, settings.max_queue_seconds
        )
    return embedder


def _limiter(redis: str | None, endpoint: str, model: str, max_wait: float) -> RateLimiter:
    """The rate limiter the server gives a deployment: this process's own, or with `redis`
    one budget shared by every replica (`viewfinder.engine.shared_limit`)."""
    if redis is None:
        return RateLimiter(max_wait=max_wait)
    from viewfinder.engine.shared_limit import shared_limiter

    return shared_limiter(redis, endpoint, model, max_wait=max_wait)


def create_app(settings: ServerSettings) -> FastAPI:
    """The FastAPI application serving Image Analysis 4.0 requests.

    Args:
        settings: Keys, URL allow-list, limits and the analyzer.

    Returns:
        An ASGI app; serve it with `run` or any ASGI server (turn its access log off:
        uvicorn's prints query strings).

    Raises:
        ConfigurationError: The settings would serve without keys without `no_auth`,
            or are otherwise invalid (see `ServerSettings.validate`); or `redis` is set
            without redis-py installed.
        InvalidOptionError: `redis` is not a URL redis-py can open.
    """
    settings.validate()
    auth = _Auth(settings)
    analyzers = _Analyzers(settings)
    pixels = PixelBudget(settings.max_decode_pixels)
    operations = read32.ReadOperations(read32.open_store(settings.read_store, settings.redis))
    embedder = _adopt_embedder(settings)
    stopping = _Stopping(settings.shutdown_delay)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        analyzers.get()  # a misconfigured model endpoint fails the startup
        stopping.watch_signals()
        try:
            yield
        finally:
            await operations.aclose()
            await analyzers.aclose()
            if embedder is not None:
                embedder.close()
                if embedder.rate_limiter is not None:
                    embedder.rate_limiter.close()

    app = FastAPI(
        title="viewfinder",
        summary="Image Analysis 4.0 compatible server answered by a GPT vision model",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(_AccessLog)
    app.state.pixel_budget = pixels  # for tests and monitoring: what is held, who waits

    async def http_error(request: Request, exc: Exception) -> Response:
        """Unknown paths and methods, answered in the service's error shape."""
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        known = {404: RESOURCE_NOT_FOUND, 405: ServiceError(405, "405", "Method not allowed")}
        error = known.get(status) or ServiceError(status, str(status), "Request failed")
        return _error_response(error, _record(request))

    app.add_exception_handler(StarletteHTTPException, http_error)

    async def read_image(request: Request, record: dict[str, Any]) -> bytes:
        media = media_type(request.headers.get("content-type"))
        if is_image_type(media):
            record["source"] = "bytes"
            return await _read_body(request, settings.max_body_bytes, _IMAGE_TOO_LARGE, record)
        if media == "multipart/form-data":
            record["source"] = "form"
            body = await _read_body(
                request, settings.max_body_bytes + MAX_JSON_BYTES, _IMAGE_TOO_LARGE, record
            )
            image = _form_image(request.headers["content-type"], body)
            if len(image) >= settings.max_body_bytes:
                raise _IMAGE_TOO_LARGE
            return image
        if media != "application/json":
            raise _UNSUPPORTED_TYPE
        record["source"] = "url"
        url = image_url(await _read_body(request, MAX_JSON_BYTES, _JSON_TOO_LARGE, record))
        record["url_host"] = _url_host(url)
        return await afetch_image(
            url,
            allow_hosts=settings.allow_hosts,
            max_bytes=settings.max_body_bytes,
            timeout=settings.fetch_timeout,
        )

    @app.post(ANALYZE_PATH, response_model=None)
    async def analyze(request: Request) -> Response:
        """Image Analysis 4.0 `analyze`: octet-stream / image / form body, or JSON `{"url"}`."""
        record = _record(request)
        try:
            await auth.check(request, record)
            analyzer = analyzers.get()
            plan = _plan(request.query_params, record, analyzer)
            image = await read_image(request, record)
            with budget_scope(pixels, settings.decode_wait_seconds):
                result = await analyzer.arun(plan, image)
        except ServiceError as refused:
            return _error_response(refused, record)
        except ViewfinderError as exc:
            error = analyzers.service_error(exc)
            if error.status >= 500:
                logger.warning(
                    "request %s: analysis failed: %s: %s",
                    record.get("request_id"),
                    type(exc).__name__,
                    exc,
                )
            return _error_response(error, record)
        except Exception:
            logger.exception("request %s: unexpected error", record.get("request_id"))
            return _error_response(_INTERNAL, record)
        return _ServiceJSON(
            to_azure_json(result, model_version=settings.model_version),
            headers={MODEL_VERSION_HEADER: result.model_version},
        )

    def read_refused(exc: Exception, record: dict[str, Any]) -> Response:
        """The error answer of a Read route: what `analyze` answers for the same failure,
        in Read's own `ComputerVisionOcrError` shape (`read32.ocr_error`)."""
        if isinstance(exc, ServiceError):
            error = exc
        elif isinstance(exc, ImageFetchError | ImageSizeError):
            error = read32.read_error_for(exc)
        elif isinstance(exc, ViewfinderError):
            error = analyzers.service_error(exc)
        else:
            logger.error("request %s: unexpected error", record.get("request_id"), exc_info=exc)
            error = _INTERNAL
        body = read32.ocr_error(error, record.get("request_id"))
        record["error"] = body["code"]
        return _ServiceJSON(body, status_code=error.status, headers=error.headers)

    @app.post(read32.READ_PATH, response_model=None)
    async def read_analyze(request: Request) -> Response:
        """Computer Vision 3.2 Read: 202 + `Operation-Location`, the work in the background."""
        record = _record(request)
        record["api_version"] = "3.2"
        try:
            await auth.check(request, record)
            analyzer = analyzers.get()
            query = read32.ReadQuery.of(request.query_params.multi_items())
            plan = read32.read_plan(analyzer)
            record["features"] = ["read"]
            image = await read_image(request, record)
            document = await asyncio.to_thread(
                read_pages.open_document, image, query.select, pixels.total
            )

            async def analyze(page: bytes) -> ImageAnalysisResult:
                return await analyzer.arun(plan, page)

            async def work() -> dict[str, Any]:
                with budget_scope(pixels, settings.decode_wait_seconds):
                    return await read32.read_document(document, query, analyze)

            try:
                operation_id = await operations.submit(work)
            except BaseException:
                await asyncio.to_thread(document.close)
                raise
        except Exception as exc:
            return read_refused(exc, record)
        record["pages"] = len(document.pages)
        endpoint = str(request.base_url).rstrip("/")
        location = f"{endpoint}{read32.RESULTS_PATH}/{operation_id}"
        return Response(status_code=202, headers={"Operation-Location": location})

    @app.get(read32.RESULTS_PATH + "/{operation_id}", response_model=None)
    async def read_result(request: Request, operation_id: str) -> Response:
        """Computer Vision 3.2 Read result: the operation's status and, when done, text."""
        record = _record(request)
        record["api_version"] = "3.2"
        try:
            await auth.check(request, record)
            found = await operations.result(operation_id)
            if found is None:
                raise RESOURCE_NOT_FOUND
        except Exception as exc:
            return read_refused(exc, record)
        return _ServiceJSON(found)

    host = ops32.Host(
        check=auth.check,
        analyzer=analyzers.get,
        service_error=analyzers.service_error,
        read_image=read_image,
        pixels=pixels,
        decode_wait=settings.decode_wait_seconds,
        record=_record,
        error_response=_error_response,
    )
    ops32.register(app, host)

    async def fetch(url: str) -> bytes:
        return await afetch_image(
            url,
            allow_hosts=settings.allow_hosts,
            max_bytes=settings.max_body_bytes,
            timeout=settings.fetch_timeout,
        )

    skill.register(
        app,
        host,
        settings.skill,
        read_body=_read_body,
        fetch=fetch,
        max_image_bytes=settings.max_body_bytes,
    )

    vectorize.register(
        app,
        host,
        embedder,
        settings.skill,
        read_body=_read_body,
        fetch=fetch,
        max_image_bytes=settings.max_body_bytes,
    )

    @app.get(HEALTH_PATH, response_model=None)
    @app.get("/health", response_model=None)  # the name before issue 19, kept
    async def health() -> Response:
        """Liveness: no key needed, touches nothing."""
        return _ServiceJSON({"status": "ok"})

    @app.get(READY_PATH, response_model=None)
    async def ready() -> Response:
        """Readiness: no key needed. Serving means the lifespan started (the analyzer is
        built); 503 once a stop signal came, so load balancers stop sending first."""
        if stopping.is_set():
            return _ServiceJSON({"status": "stopping"}, status_code=503)
        return _ServiceJSON({"status": "ready"})

    return app


class _Stopping:
    """Whether a stop signal came, and the signal handling that delays the stop.

    uvicorn installs its SIGTERM / SIGINT handlers before the app's lifespan starts, so
    `watch_signals` (called there) wraps them: the first signal marks the app stopping
    (`/readyz` answers 503) and hands the signal to uvicorn `delay` seconds later (a timer
    thread: uvicorn's handler only sets a flag its loop polls); a second one at once.
    Outside the main thread (an app served from a thread, as tests do) signals cannot be
    handled and nothing is wrapped.
    """

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._event = threading.Event()

    def is_set(self) -> bool:
        """True once a stop signal came."""
        return self._event.is_set()

    def watch_signals(self) -> None:
        """Wrap the current SIGTERM and SIGINT handlers (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if callable(previous):
                signal.signal(sig, self._handler(previous))

    def _handler(self, previous: Any) -> Any:
        def handle(sig: int, frame: FrameType | None) -> None:
            first = not self._event.is_set()
            self._event.set()
            if first and self._delay > 0:
                logger.info("stop signal: not ready; stopping in %g s", self._delay)
                timer = threading.Timer(self._delay, previous, args=(sig, None))
                timer.daemon = True
                timer.start()
            else:
                previous(sig, frame)

        return handle


def configure_logging() -> None:
    """Print the server's logs on stderr, unless the process already set handlers (`run`
    calls it; a worker's app factory too, as each worker is a new process)."""
    root = logging.getLogger()
    mine = logging.getLogger("viewfinder")
    if root.handlers or any(not isinstance(h, logging.NullHandler) for h in mine.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    mine.addHandler(handler)
    mine.setLevel(logging.INFO)
    access = logging.StreamHandler(sys.stderr)
    access.setFormatter(logging.Formatter("%(message)s"))
    access_logger.addHandler(access)
    access_logger.propagate = False


def run(
    settings: ServerSettings,
    host: str = "127.0.0.1",
    port: int = 8080,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    *,
    workers: int = 1,
    app_factory: str | None = None,
    graceful_timeout: int = GRACEFUL_TIMEOUT,
) -> None:
    """Serve `create_app(settings)` with uvicorn until a stop signal (see "Stopping").

    uvicorn's access log is turned off (it prints full query strings); the server's
    own JSON access log goes to stderr unless logging is already configured.

    Args:
        settings: See `ServerSettings`.
        host: Address to listen on; loopback by default.
        port: TCP port.
        ssl_certfile: PEM certificate (chain) to serve HTTPS.
        ssl_keyfile: PEM private key for `ssl_certfile`.
        workers: Processes sharing the port (uvicorn's workers). Each has its own
            analyzer and rate limiter; they share what lives on disk (the answer cache,
            the Read store) or, with `ServerSettings.redis`, in Redis (the Read store and
            each deployment's rate budget; the answer cache when it is a Redis URL).
        app_factory: With `workers` > 1: `"module:function"` that each worker calls to
            build its app (`settings` cannot cross into a new process: it holds clients);
            `settings` are then only checked here, and their analyzer and embedder
            closed.
        graceful_timeout: Seconds requests in flight may take to finish after a stop
            signal before they are cut.

    Raises:
        ConfigurationError: See `create_app`; or several workers without `app_factory`.
    """
    app: FastAPI | str
    if workers > 1:
        if app_factory is None:
            raise ConfigurationError("several workers need an app_factory")
        settings.validate()
        if settings.analyzer is not None:  # each worker builds its own: free this one
            settings.analyzer.close()
        if settings.embedder is not None:
            settings.embedder.close()
        app = app_factory
    else:
        app = create_app(settings)
    configure_logging()
    exit_quietly = threading.current_thread() is threading.main_thread()
    if exit_quietly:
        # uvicorn re-raises the stop signal once it has stopped gracefully; answered by
        # this handler instead of the default one, the process exits 0, not 143.
        previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            access_log=False,
            ws="none",
            lifespan="on",
            workers=workers,
            factory=workers > 1,
            timeout_graceful_shutdown=graceful_timeout,
        )
    finally:
        if exit_quietly:
            signal.signal(signal.SIGTERM, previous)


def _stopped(sig: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn's graceful stop: nothing left to do."""
