"""Logic shared by the sync and async `ImageAnalysisClient` look-alikes (no I/O here).

One call goes: `_ClientBase._start` (the service's option checks, as
`viewfinder.compat.service.check_options` states them, giving the analyzer's call plan)
-> the analyzer answering that plan (`run` / `arun`, the only part that differs between
the clients) -> `_Call.finish` (the SDK's own result model, built
from `viewfinder.compat.rest.to_azure_json`), or `_Call.failure` (azure-core's own
exception, built from the service-shaped error body).

Errors are built the way the SDK builds them: the generated operation calls
`azure.core.exceptions.map_error` with `{401: ClientAuthenticationError, 404:
ResourceNotFoundError, 409: ResourceExistsError, 304: ResourceNotModifiedError}` and
otherwise raises `HttpResponseError(response=response)`. Here `response` is a real
`azure.core.rest.HttpResponse` (`AsyncHttpResponse` for the async client) holding the
service's JSON error body in memory, so azure-core parses `error` (an `ODataV4Format`),
`message`, `status_code` and `reason` with its own code, exactly as for a response that
came over the wire.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, MutableMapping, Sequence
from http import HTTPStatus
from typing import IO, Any, cast
from urllib.parse import quote, urlsplit

from azure.ai.vision.imageanalysis.models import ImageAnalysisResult, VisualFeatures
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
)
from azure.core.rest import AsyncHttpResponse, HttpRequest, HttpResponse
from azure.core.utils import case_insensitive_dict

from viewfinder.analyzers.image_analysis import FeatureOptions, ImageAnalyzer
from viewfinder.build.plan import CallPlan
from viewfinder.compat.rest import to_azure_json
from viewfinder.compat.service import (
    ServiceError,
    check_api_version,
    check_options,
    service_error_for,
)
from viewfinder.errors import ConfigurationError, ImageFetchError, ViewfinderError
from viewfinder.schemas.result import ImageAnalysisResult as NativeResult

__all__ = [
    "AZURE_CORE_OPTIONS",
    "DEFAULT_API_VERSION",
    "ERROR_MAP",
    "azure_error",
    "image_bytes",
    "url_image",
]

logger = logging.getLogger("viewfinder.azure")

DEFAULT_API_VERSION = "2023-10-01"
"""The SDK's default `api_version`."""

ERROR_MAP: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    304: ResourceNotModifiedError,
}
"""The SDK's `error_map`: statuses raised as a subclass of `HttpResponseError`."""

_REASONS = {401: "PermissionDenied"}
"""Reason phrases the service sends instead of the standard ones."""

AZURE_CORE_OPTIONS = frozenset(
    {
        # pipeline and policies (azure-core configuration keywords)
        "authentication_policy",
        "base_headers",
        "cloud_setting",
        "credential_scopes",
        "custom_hook_policy",
        "enable_cae",
        "headers",
        "headers_policy",
        "http_logging_policy",
        "logger",
        "logging_body",
        "logging_enable",
        "logging_policy",
        "network_span_namer",
        "per_call_policies",
        "per_retry_policies",
        "permit_redirects",
        "policies",
        "polling_interval",
        "proxies",
        "proxy_policy",
        "raw_request_hook",
        "raw_response_hook",
        "redirect_max",
        "redirect_on_status_codes",
        "redirect_policy",
        "redirect_remove_headers",
        "retry_backoff_factor",
        "retry_backoff_max",
        "retry_connect",
        "retry_mode",
        "retry_on_status_codes",
        "retry_policy",
        "retry_read",
        "retry_status",
        "retry_total",
        "sdk_moniker",
        "timeout",
        "tracing_attributes",
        "user_agent",
        "user_agent_overwrite",
        "user_agent_policy",
        "user_agent_use_env",
        # transports
        "connection_cert",
        "connection_data_block_size",
        "connection_timeout",
        "connection_verify",
        "read_timeout",
        "session",
        "session_owner",
        "transport",
        "use_env_settings",
    }
)
"""Constructor keywords the SDK hands to azure-core. Accepted so that existing code
keeps working, and ignored: no azure-core pipeline is involved (viewfinder's own
`retry=` policy governs the model calls)."""

_JSON = "application/json; charset=utf-8"


# --- azure-core responses holding a service error body ------------------------------


class _ErrorResponseFields:
    """The `azure.core.rest` response surface, for a body already in memory."""

    def __init__(self, request: HttpRequest, error: ServiceError) -> None:
        self._request = request
        self._status_code = error.status
        self._reason = _REASONS.get(error.status) or _phrase(error.status)
        self._content = json.dumps(error.body()).encode("utf-8")
        self._headers: MutableMapping[str, str] = case_insensitive_dict(
            {
                "content-type": _JSON,
                "content-length": str(len(self._content)),
                **error.headers,
            }
        )
        self._encoding: str | None = "utf-8"
        self._is_closed = False

    @property
    def request(self) -> HttpRequest:
        return self._request

    @property
    def status_code(self) -> int:
        return self._status_code

    @property
    def headers(self) -> MutableMapping[str, str]:
        return self._headers

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def content_type(self) -> str | None:
        return self._headers.get("content-type")

    @property
    def is_closed(self) -> bool:
        return self._is_closed

    @property
    def is_stream_consumed(self) -> bool:
        return True

    @property
    def encoding(self) -> str | None:
        return self._encoding

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        self._encoding = value

    @property
    def url(self) -> str:
        return str(self._request.url)

    @property
    def content(self) -> bytes:
        return self._content

    def text(self, encoding: str | None = None) -> str:
        return self._content.decode(encoding or self._encoding or "utf-8")

    def json(self) -> Any:
        return json.loads(self.text())

    def raise_for_status(self) -> None:
        if self._status_code >= 400:
            raise HttpResponseError(response=cast("HttpResponse", self))


class _ErrorResponse(_ErrorResponseFields, HttpResponse):
    """A sync `azure.core.rest.HttpResponse` carrying a service error."""

    def __enter__(self) -> _ErrorResponse:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def close(self) -> None:
        self._is_closed = True

    def read(self) -> bytes:
        return self._content

    def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content


class _AsyncErrorResponse(_ErrorResponseFields, AsyncHttpResponse):
    """An `azure.core.rest.AsyncHttpResponse` carrying a service error."""

    async def __aexit__(self, *args: Any) -> None:
        await self.close()

    async def close(self) -> None:
        self._is_closed = True

    async def read(self) -> bytes:
        return self._content

    async def iter_raw(self, **kwargs: Any) -> AsyncIterator[bytes]:
        yield self._content

    async def iter_bytes(self, **kwargs: Any) -> AsyncIterator[bytes]:
        yield self._content

    def __repr__(self) -> str:
        content_type = f", Content-Type: {self.content_type}" if self.content_type else ""
        return f"<AsyncHttpResponse: {self.status_code} {self.reason}{content_type}>"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def azure_error(
    error: ServiceError, request: HttpRequest, *, asynchronous: bool = False
) -> HttpResponseError:
    """azure-core's exception for a service error, as the SDK raises it.

    401 gives `ClientAuthenticationError`, 404 `ResourceNotFoundError` (and 409 / 304
    their own subclasses, as in the SDK's `error_map`), anything else `HttpResponseError`.
    `error` (`code`, `message`, `innererror`), `message`, `status_code` and `reason` are
    parsed by azure-core itself from a response holding the service's JSON body.

    Args:
        error: The service-shaped error.
        request: The request the SDK would have sent (no body, no credentials).
        asynchronous: Attach an `AsyncHttpResponse` (the aio SDK's response type).
    """
    response: HttpResponse | AsyncHttpResponse = (
        _AsyncErrorResponse(request, error) if asynchronous else _ErrorResponse(request, error)
    )
    error_type = ERROR_MAP.get(error.status, HttpResponseError)
    return error_type(response=response)


# --- inputs ----------------------------------------------------------------------------


def image_bytes(image_data: Any) -> bytes:
    """The bytes the SDK would send as the body of `analyze`.

    `bytes`-like objects and binary file objects are read as the SDK's transport would
    read them. A `str` is sent as its UTF-8 text, as azure-core does: it is never
    opened as a path, and the service answers that the image format is not valid.

    Raises:
        TypeError: Anything else (azure-core refuses it too).
    """
    if isinstance(image_data, bytes | bytearray | memoryview):
        return bytes(image_data)
    if isinstance(image_data, str):
        return image_data.encode("utf-8")
    read = getattr(image_data, "read", None)
    if callable(read):
        data = cast("IO[bytes]", image_data).read()
        if isinstance(data, str):
            return data.encode("utf-8")
        return bytes(data)
    raise TypeError(
        f"image_data must be bytes or a binary file object, not {type(image_data).__name__}"
    )


def url_image(image_url: Any) -> str:
    """The URL `analyze_from_url` fetches: http(s) only, never a local path.

    Raises:
        TypeError: `image_url` is not a string.
        ImageFetchError: Not an absolute http(s) URL (the service: "The provided image
            url is not accessible.").
    """
    if not isinstance(image_url, str):
        raise TypeError(f"image_url must be a str, not {type(image_url).__name__}")
    parts = urlsplit(image_url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ImageFetchError("not an absolute http(s) URL")
    return image_url.strip()


def _feature_names(visual_features: Iterable[VisualFeatures | str]) -> list[str]:
    return [str(getattr(f, "value", f)) for f in visual_features]


def _query(name: str, values: Sequence[str]) -> str:
    return f"{name}={','.join(quote(v, safe='') for v in values)}"


def _request(
    endpoint: str | None,
    api_version: str,
    features: Sequence[str],
    *,
    language: str | None,
    gender_neutral_caption: bool | None,
    smart_crops_aspect_ratios: Sequence[float] | None,
    model_version: str | None,
    content_type: str,
) -> HttpRequest:
    """The request the SDK would build (URL and query in its order), without a body."""
    query = [_query("api-version", [api_version]), _query("features", features)]
    if language is not None:
        query.append(_query("language", [language]))
    if gender_neutral_caption is not None:
        query.append(_query("gender-neutral-caption", [str(bool(gender_neutral_caption)).lower()]))
    if smart_crops_aspect_ratios is not None:
        ratios = [str(float(r)) for r in smart_crops_aspect_ratios]
        query.append(_query("smartcrops-aspect-ratios", ratios))
    if model_version is not None:
        query.append(_query("model-version", [model_version]))
    base = (endpoint or "").rstrip("/")
    url = f"{base}/computervision/imageanalysis:analyze?{'&'.join(query)}"
    return HttpRequest(
        "POST", url, headers={"Content-Type": content_type, "Accept": "application/json"}
    )


# --- one call ----------------------------------------------------------------------------


class _Call:
    """One analyze call whose options passed the service's checks."""

    def __init__(
        self,
        plan: CallPlan[FeatureOptions, NativeResult],
        request: HttpRequest,
        asynchronous: bool,
    ) -> None:
        self.plan = plan
        """The analyzer's plan for the call (`ImageAnalyzer.run` / `arun` answer it)."""
        self.request = request
        self.asynchronous = asynchronous

    def finish(self, result: NativeResult) -> ImageAnalysisResult:
        """The SDK's own result model, from the service's JSON for `result`."""
        return ImageAnalysisResult(to_azure_json(result))

    def failure(self, exc: ViewfinderError) -> HttpResponseError:
        """azure-core's exception for a viewfinder error raised by the analysis."""
        return azure_error(service_error_for(exc), self.request, asynchronous=self.asynchronous)


class _ClientBase:
    """Construction and per-call checks shared by the sync and async clients."""

    _asynchronous = False

    def __init__(
        self,
        endpoint: str | None = None,
        credential: object | None = None,
        *,
        api_version: str = DEFAULT_API_VERSION,
        analyzer: ImageAnalyzer | None = None,
        **options: Any,
    ) -> None:
        ignored = sorted(AZURE_CORE_OPTIONS & set(options))
        if ignored:
            logger.debug("ignoring azure-core options %s: no azure-core pipeline is used", ignored)
        settings = {k: v for k, v in options.items() if k not in AZURE_CORE_OPTIONS}
        if analyzer is not None and settings:
            raise ConfigurationError(
                f"pass either analyzer= or analyzer settings, not both (got {sorted(settings)})"
            )
        # `endpoint` only names the resource in error responses' request URL; the
        # credential is never stored or used: nothing is sent to Azure.
        self._endpoint = endpoint
        self._api_version = api_version
        self._owns_analyzer = analyzer is None
        self._analyzer = analyzer if analyzer is not None else ImageAnalyzer(**settings)

    @property
    def analyzer(self) -> ImageAnalyzer:
        """The viewfinder analyzer that answers (given, or built from the options)."""
        return self._analyzer

    @property
    def api_version(self) -> str:
        """The Image Analysis api-version this client speaks."""
        return self._api_version

    def _start(
        self,
        visual_features: Iterable[VisualFeatures | str],
        *,
        language: str | None,
        gender_neutral_caption: bool | None,
        smart_crops_aspect_ratios: Sequence[float] | None,
        model_version: str | None,
        content_type: str,
    ) -> _Call:
        """Check the call's options as the service does; raise its error if they fail."""
        names = _feature_names(visual_features)
        request = _request(
            self._endpoint,
            self._api_version,
            names,
            language=language,
            gender_neutral_caption=gender_neutral_caption,
            smart_crops_aspect_ratios=smart_crops_aspect_ratios,
            model_version=model_version,
            content_type=content_type,
        )
        try:
            check_api_version(self._api_version)
            plan = check_options(
                self._analyzer,
                names,
                language=language,
                gender_neutral_caption=gender_neutral_caption,
                smart_crops_aspect_ratios=smart_crops_aspect_ratios,
                model_version=model_version,
            )
        except ServiceError as exc:
            refused = exc
        else:
            return _Call(plan, request, self._asynchronous)
        # Built outside the `except` block, as the SDK builds it (azure-core records
        # sys.exc_info() when an error is constructed); chained to the service error.
        raise azure_error(refused, request, asynchronous=self._asynchronous) from refused

    def __repr__(self) -> str:
        return f"{type(self).__name__}(analyzer={self._analyzer!r})"
