"""The service as a function: one analyze request in memory in, the response's bytes out.

`viewfinder serve` and the import swap (`viewfinder.azure`, whose azure-core transport
answers in-process) share these rules, so both read a request and answer it the same way:

- `query_plan`: the query (`api-version`, `features`, `language`,
  `gender-neutral-caption`, `smartcrops-aspect-ratios`, `model-version`) to the
  analyzer's call plan, refused as the service refuses it.
- `ApiKeys`: the keys a caller may present (`Ocp-Apim-Subscription-Key` or `Authorization:
  Bearer`), compared in constant time.
- `image_url`: the `url` of an `application/json` body.
- `json_response` / `error_response`: the bytes and headers the server sends.
- `Service`: the whole exchange for a body already in memory (`handle` / `ahandle`),
  used by the import swap. The server reads its body as a stream (with limits before
  it is whole) and fetches URLs with its own address policy, so it calls the pieces.

Needs no web framework and no Azure package.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from viewfinder.compat.rest import to_azure_json
from viewfinder.compat.service import (
    API_VERSIONS,
    MAX_IMAGE_BYTES,
    RESOURCE_NOT_FOUND,
    ServiceError,
    check_options,
    service_error_for,
    unauthorized,
)
from viewfinder.engine.retry import RetryPolicy
from viewfinder.errors import ImageSizeError, InvalidOptionError, ViewfinderError

if TYPE_CHECKING:
    from viewfinder.analyzers.image_analysis import FeatureOptions, ImageAnalyzer
    from viewfinder.build.plan import CallPlan
    from viewfinder.schemas.result import ImageAnalysisResult

__all__ = [
    "ANALYZE_PATH",
    "JSON_CONTENT_TYPE",
    "MODEL_VERSION_HEADER",
    "ONE_ATTEMPT",
    "REPORT_MODEL_VERSION_ENV",
    "ApiKeys",
    "Service",
    "WireRequest",
    "WireResponse",
    "error_response",
    "image_url",
    "json_response",
    "presented_key",
    "query_plan",
]

ANALYZE_PATH: Final = "/computervision/imageanalysis:analyze"
"""The service's analyze route, under the endpoint."""

JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
"""The content type of every JSON answer, as the service sends it."""

ONE_ATTEMPT: Final = RetryPolicy(max_attempts=1)
"""Model calls behind a service answering a client that retries: one attempt each. A 429
or 5xx is answered at once (with `Retry-After`) and the client's retry policy waits, so
retries never multiply (the server's `SERVER_RETRY`)."""

logger = logging.getLogger(__name__)

_UNSUPPORTED_TYPE: Final = ServiceError(
    400, "InvalidRequest", "The provided image content type is not supported."
)
_BAD_JSON: Final = ServiceError(
    400, "InvalidRequest", "The request body must be a JSON object with the image 'url'."
)
_METHOD_NOT_ALLOWED: Final = ServiceError(405, "405", "Method not allowed")
_INTERNAL: Final = service_error_for(ViewfinderError("unexpected"))


# --- the query --------------------------------------------------------------------------


def _csv(values: Sequence[str]) -> list[str]:
    """Repeated and comma-separated values, flattened, empty items dropped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _bool_param(value: str | None) -> bool | None:
    if value is None:
        return None
    if value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise service_error_for(
        InvalidOptionError("'gender-neutral-caption' must be 'true' or 'false'")
    )


def _ratios_param(values: Sequence[str]) -> list[float] | None:
    items = _csv(values)
    try:
        return [float(item) for item in items] or None
    except ValueError:
        raise service_error_for(
            InvalidOptionError("'smartcrops-aspect-ratios' must be comma-separated numbers")
        ) from None


def query_plan(
    params: Sequence[tuple[str, str]], analyzer: ImageAnalyzer
) -> CallPlan[FeatureOptions, ImageAnalysisResult]:
    """The call plan of a query's `(name, value)` pairs, checked as the service checks them.

    A repeated single-valued parameter counts by its last value (as Starlette reads it);
    unknown parameters are ignored.

    Raises:
        ServiceError: 404 for an unknown `api-version`, the service's 400s for options.
    """
    last = dict(params)

    def every(name: str) -> list[str]:
        return [value for key, value in params if key == name]

    if last.get("api-version") not in API_VERSIONS:
        raise RESOURCE_NOT_FOUND
    return check_options(
        analyzer,
        _csv(every("features")),
        language=last.get("language"),
        gender_neutral_caption=_bool_param(last.get("gender-neutral-caption")),
        smart_crops_aspect_ratios=_ratios_param(every("smartcrops-aspect-ratios")),
        model_version=last.get("model-version"),
    )


# --- keys -------------------------------------------------------------------------------


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key of `Ocp-Apim-Subscription-Key`, else of `Authorization: Bearer`.

    `headers` must look names up case-insensitively (Starlette's and azure-core's do).
    """
    key = headers.get("ocp-apim-subscription-key")
    if key is not None:
        return key.strip()
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKeys:
    """The keys callers may present, kept as SHA-256 digests only."""

    digests: tuple[bytes, ...]

    @classmethod
    def of(cls, keys: Sequence[str]) -> ApiKeys:
        """Digests of `keys` (stripped; empty ones dropped)."""
        return cls(tuple(_digest(key.strip()) for key in keys if key.strip()))

    def __bool__(self) -> bool:
        return bool(self.digests)

    def match(self, presented: str | None) -> bool:
        """Constant-time: equal-length digests, every key compared, no early exit."""
        given = _digest(presented or "")
        matched = False
        for digest in self.digests:
            matched |= hmac.compare_digest(given, digest)
        return matched and presented is not None


# --- bodies -----------------------------------------------------------------------------


def image_url(body: bytes) -> str:
    """The `url` of a JSON body; any body that does not parse is the service's 400.

    A deeply nested body (`[[[[...`) makes `json.loads` raise `RecursionError` rather
    than `ValueError`; it is a bad request like any other, not a server error.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _BAD_JSON from None
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url.strip():
        raise _BAD_JSON
    return url.strip()


def media_type(content_type: str | None) -> str:
    """`image/png; x=y` -> `image/png`."""
    return (content_type or "").split(";")[0].strip().lower()


def is_image_type(media: str) -> bool:
    """A raw image body: `application/octet-stream` or `image/*`."""
    return media == "application/octet-stream" or media.startswith("image/")


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request, body in memory. `headers` look names up case-insensitively."""

    method: str
    path: str
    query: Sequence[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class WireResponse:
    """One HTTP response: what the server sends, byte for byte."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _encode(content: Any) -> bytes:
    """JSON as Starlette's `JSONResponse` renders it (compact, UTF-8, no NaN)."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> WireResponse:
    """A JSON answer with the service's content type."""
    body = _encode(content)
    return WireResponse(
        status,
        {
            **(headers or {}),
            "content-length": str(len(body)),
            "content-type": JSON_CONTENT_TYPE,
        },
        body,
    )


def error_response(error: ServiceError) -> WireResponse:
    """The service's error answer: its JSON body, `x-ms-error-code`, `Retry-After`."""
    return json_response(error.body(), error.status, error.headers)


# --- the whole exchange -------------------------------------------------------------------


TokenValidator = Callable[[str], bool]
"""Decides whether an `Authorization: Bearer` token (Microsoft Entra ID) is accepted."""


MODEL_VERSION_HEADER: Final = "x-viewfinder-model-version"
"""Response header of every result: the engine's true `<model>+<hash>`, whatever the
body's `modelVersion` is set to report."""

REPORT_MODEL_VERSION_ENV: Final = "VIEWFINDER_REPORT_MODEL_VERSION"
"""What results' `modelVersion` reports when not set in code (`2023-10-01` for code
that checks it); unset: the engine's true version."""


class Service:
    """The analyze operation for requests whose body is already in memory.

    Args:
        analyzer: Answers the call plans.
        api_keys: When not empty, a request presenting none of them is answered the
            service's 401. Empty: any key (or none) is accepted.
        token_validator: The hook for Microsoft Entra ID: when set, an `Authorization:
            Bearer` token is accepted only if it returns True. When `None`, bearer
            tokens are accepted without a check (what a TokenCredential got before the
            import swap used Microsoft's client); keys are still checked.
        fetch_url: Turns an image URL into what `analyzer.run` / `arun` take (checks
            the scheme, for one); the default passes it through.
        report_model_version: What results' `modelVersion` says (e.g. `2023-10-01` for
            code that checks it); `None`: the engine's true `<model>+<hash>`, which is
            in the `MODEL_VERSION_HEADER` header of every result either way.
    """

    def __init__(
        self,
        analyzer: ImageAnalyzer,
        api_keys: ApiKeys | None = None,
        *,
        token_validator: TokenValidator | None = None,
        fetch_url: Callable[[str], str] = str,
        report_model_version: str | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.report_model_version = report_model_version
        self.api_keys = api_keys or ApiKeys(())
        self.token_validator = token_validator
        self._fetch_url = fetch_url

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        bearer = scheme.lower() == "bearer" and bool(token.strip())
        if bearer and "ocp-apim-subscription-key" not in headers:
            if self.token_validator is not None:
                return self.token_validator(token.strip())
            return True  # no Entra ID validation configured: accepted, as before
        return not self.api_keys or self.api_keys.match(presented_key(headers))

    def _start(
        self, request: WireRequest
    ) -> tuple[CallPlan[FeatureOptions, ImageAnalysisResult], bytes | str]:
        """The plan and image input of a request, or the service's refusal."""
        if request.path != ANALYZE_PATH:
            raise RESOURCE_NOT_FOUND
        if request.method.upper() != "POST":
            raise _METHOD_NOT_ALLOWED
        if not self._authorized(request.headers):
            raise unauthorized()
        plan = query_plan(request.query, self.analyzer)
        media = media_type(request.headers.get("content-type"))
        if is_image_type(media):
            if len(request.body) >= MAX_IMAGE_BYTES:
                raise service_error_for(ImageSizeError("too large", limit="bytes"))
            if not request.body:
                raise service_error_for(ImageSizeError("the request body is empty", limit="bytes"))
            return plan, request.body
        if media != "application/json":
            raise _UNSUPPORTED_TYPE
        return plan, self._fetch_url(image_url(request.body))

    def handle(self, request: WireRequest) -> WireResponse:
        """Answer `request` with `analyzer.run`."""
        try:
            plan, image = self._start(request)
            result = self.analyzer.run(plan, image)
        except Exception as exc:
            return self._respond(self._refusal(exc))
        return self._respond(self._result(result))

    async def ahandle(self, request: WireRequest) -> WireResponse:
        """Answer `request` with `analyzer.arun`."""
        try:
            plan, image = self._start(request)
            result = await self.analyzer.arun(plan, image)
        except Exception as exc:
            return self._respond(self._refusal(exc))
        return self._respond(self._result(result))

    def _result(self, result: ImageAnalysisResult) -> WireResponse:
        response = json_response(to_azure_json(result, model_version=self.report_model_version))
        response.headers[MODEL_VERSION_HEADER] = result.model_version
        return response

    @staticmethod
    def _refusal(exc: Exception) -> WireResponse:
        """The service's answer to what `handle` / `ahandle` caught (call it while handling)."""
        if isinstance(exc, ServiceError):
            return error_response(exc)
        if isinstance(exc, ViewfinderError):
            error = service_error_for(exc)
            if error.status >= 500:
                logger.warning("analysis failed: %s: %s", type(exc).__name__, exc)
            return error_response(error)
        logger.exception("unexpected error")
        return error_response(_INTERNAL)

    @staticmethod
    def _respond(response: WireResponse) -> WireResponse:
        """Add the request ids the server adds to every answer."""
        request_id = str(uuid.uuid4())
        response.headers.update({"apim-request-id": request_id, "request-id": request_id})
        return response
