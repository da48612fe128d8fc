"""What the sync and async clients share: Microsoft's client, answered in-process.

`viewfinder.azure.ImageAnalysisClient` is Microsoft's `ImageAnalysisClient` (the aio one
for `viewfinder.azure.aio`) built with an azure-core transport that never opens a
socket: `InProcessTransport.send` turns the pipeline's `azure.core.rest.HttpRequest`
into a `viewfinder.compat.handler.WireRequest`, answers it with
`viewfinder.compat.handler.Service` (the rules `viewfinder serve` applies) and hands
back an `azure.core.rest.HttpResponse` holding the bytes the server would send. So the
whole azure-core pipeline runs as against Azure: headers, user agent, retry, the
credential's policy, `raw_request_hook` / `raw_response_hook`, `logging_enable`, per-call
`params=` / `headers=`, `send_request`, and the SDK's own deserialisation and error
mapping (`map_error` with `{401: ClientAuthenticationError, 404: ResourceNotFoundError,
...}`, else `HttpResponseError`).

Retries: the analyzer's model calls get one attempt each (`ONE_ATTEMPT`, as on the
server) and the SDK's `RetryPolicy` does the waiting (3 retries by default, honouring the
answer's `Retry-After`), so retries never multiply.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, MutableMapping
from http import HTTPStatus
from types import TracebackType
from typing import IO, Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
)
from azure.core.pipeline.transport import AsyncHttpTransport, HttpTransport
from azure.core.rest import AsyncHttpResponse, HttpRequest, HttpResponse
from azure.core.utils import case_insensitive_dict

from viewfinder.analyzers.image_analysis import ImageAnalyzer
from viewfinder.compat.handler import (
    ONE_ATTEMPT,
    REPORT_MODEL_VERSION_ENV,
    ApiKeys,
    Service,
    TokenValidator,
    WireRequest,
    WireResponse,
    error_response,
)
from viewfinder.compat.service import ServiceError
from viewfinder.errors import ConfigurationError, ImageFetchError, import_failure

__all__ = [
    "ANONYMOUS_KEY",
    "API_KEYS_ENV",
    "AZURE_CORE_OPTIONS",
    "DEFAULT_API_VERSION",
    "DEFAULT_ENDPOINT",
    "ERROR_MAP",
    "AsyncInProcessTransport",
    "ClientExtras",
    "InProcessTransport",
    "azure_error",
    "configured_keys",
    "image_bytes",
    "look_alike",
    "url_image",
]

logger = logging.getLogger("viewfinder.azure")

ANONYMOUS_KEY = "anonymous"
"""The key a client built without a credential sends: it matches no configured key."""


class ClientExtras:
    """What both look-alike clients add to Microsoft's: their construction, the analyzer,
    the api-version, a repr. Mixed in before Microsoft's client class."""

    _transport: InProcessTransport | AsyncInProcessTransport
    _config: Any

    def _connect(
        self,
        transport_type: type[InProcessTransport] | type[AsyncInProcessTransport],
        endpoint: str | None,
        credential: Any,
        *,
        api_version: str,
        analyzer: ImageAnalyzer | None,
        api_keys: str | list[str] | tuple[str, ...] | None,
        token_validator: TokenValidator | None,
        report_model_version: str | None,
        options: Mapping[str, Any],
    ) -> None:
        """Build the in-process service and transport, then Microsoft's client over them
        (`look_alike` splits `options` between azure-core and the analyzer)."""
        service, sdk_options, owns = look_alike(
            analyzer,
            options,
            api_keys=api_keys,
            token_validator=token_validator,
            report_model_version=report_model_version,
        )
        if credential is None:
            from azure.core.credentials import AzureKeyCredential

            credential = AzureKeyCredential(ANONYMOUS_KEY)
        self._transport = transport_type(service, owns_analyzer=owns)
        cast(Any, super()).__init__(  # Microsoft's client, next in the subclass's MRO
            endpoint or DEFAULT_ENDPOINT,
            credential,
            api_version=api_version,
            transport=self._transport,
            **sdk_options,
        )

    @property
    def analyzer(self) -> ImageAnalyzer:
        """The viewfinder analyzer that answers (given, or built from the options)."""
        return self._transport.service.analyzer

    @property
    def api_version(self) -> str:
        """The Image Analysis api-version this client speaks."""
        return str(self._config.api_version)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(analyzer={self.analyzer!r})"


DEFAULT_API_VERSION = "2023-10-01"
"""The SDK's default `api_version`."""

DEFAULT_ENDPOINT = "https://viewfinder.invalid"
"""The endpoint when none is given: never resolved (`.invalid` is reserved), it only
appears in request URLs, hooks and logs."""

API_KEYS_ENV = "VIEWFINDER_API_KEYS"
"""Comma-separated keys callers must present, as for `viewfinder serve`."""

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
"""Constructor keywords the SDK hands to azure-core; every other keyword configures the
`ImageAnalyzer`. `transport` is replaced by the in-process one (a debug log says so)."""


# --- azure-core responses holding an answer in memory ---------------------------------


class _MemoryResponseFields:
    """The `azure.core.rest` response surface, for a body already in memory."""

    def __init__(self, request: HttpRequest, answer: WireResponse) -> None:
        self._request = request
        self._status_code = answer.status
        self._reason = _REASONS.get(answer.status) or _phrase(answer.status)
        self._content = answer.body
        self._headers: MutableMapping[str, str] = case_insensitive_dict(answer.headers)
        self._encoding: str | None = None
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
        return self._encoding or "utf-8"

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
        return self._content.decode(encoding or self.encoding or "utf-8")

    def json(self) -> Any:
        return json.loads(self.text())

    def raise_for_status(self) -> None:
        if self._status_code >= 400:
            raise HttpResponseError(response=cast("HttpResponse", self))


class _MemoryResponse(_MemoryResponseFields, HttpResponse):
    """A sync `azure.core.rest.HttpResponse` whose body is in memory."""

    def __enter__(self) -> _MemoryResponse:
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

    def __repr__(self) -> str:
        content_type = f", Content-Type: {self.content_type}" if self.content_type else ""
        return f"<HttpResponse: {self.status_code} {self.reason}{content_type}>"


class _AsyncMemoryResponse(_MemoryResponseFields, AsyncHttpResponse):
    """An `azure.core.rest.AsyncHttpResponse` whose body is in memory."""

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
    their own subclasses, as in the SDK's `error_map`), anything else `HttpResponseError`,
    parsed by azure-core itself from a response holding the service's JSON body.
    """
    answer = error_response(error)
    response: HttpResponse | AsyncHttpResponse = (
        _AsyncMemoryResponse(request, answer) if asynchronous else _MemoryResponse(request, answer)
    )
    return ERROR_MAP.get(error.status, HttpResponseError)(response=response)


# --- the transports ---------------------------------------------------------------------


def _wire_request(request: HttpRequest) -> WireRequest:
    """The pipeline's request as the service reads it: path, query pairs, headers, body."""
    parts = urlsplit(request.url)
    content = request.content
    return WireRequest(
        method=request.method,
        path=unquote(parts.path),
        query=parse_qsl(parts.query, keep_blank_values=True),
        headers=case_insensitive_dict(request.headers),
        body=b"" if content is None else image_bytes(content),
    )


class InProcessTransport(HttpTransport[HttpRequest, HttpResponse]):
    """An azure-core transport answered by `Service.handle`, with no socket.

    It closes the analyzer when it is closed if it owns it (the client built it).
    """

    def __init__(self, service: Service, *, owns_analyzer: bool) -> None:
        self.service = service
        self._owns_analyzer = owns_analyzer

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        """The service's answer to `request`; transport keywords (timeouts...) do nothing."""
        return _MemoryResponse(request, self.service.handle(_wire_request(request)))

    def open(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Close the analyzer if this transport owns it."""
        if self._owns_analyzer:
            self.service.analyzer.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self.close()


class AsyncInProcessTransport(AsyncHttpTransport[HttpRequest, AsyncHttpResponse]):
    """An async azure-core transport answered by `Service.ahandle`, with no socket."""

    def __init__(self, service: Service, *, owns_analyzer: bool) -> None:
        self.service = service
        self._owns_analyzer = owns_analyzer

    async def send(self, request: HttpRequest, **kwargs: Any) -> AsyncHttpResponse:
        """The service's answer to `request`; transport keywords (timeouts...) do nothing."""
        answer = await self.service.ahandle(_wire_request(request))
        return _AsyncMemoryResponse(request, answer)

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Close the analyzer if this transport owns it."""
        if self._owns_analyzer:
            await self.service.analyzer.aclose()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.close()


# --- construction -----------------------------------------------------------------------


def configured_keys(api_keys: str | Collection[str] | None) -> tuple[str, ...]:
    """The keys callers must present: `api_keys` (a list, or a comma-separated string),
    else `VIEWFINDER_API_KEYS`; stripped, blanks dropped. Both import swaps read them here."""
    if api_keys is None:
        api_keys = os.environ.get(API_KEYS_ENV, "")
    items = api_keys.split(",") if isinstance(api_keys, str) else api_keys
    return tuple(key.strip() for key in items if key.strip())


def _configured_keys(api_keys: str | list[str] | tuple[str, ...] | None) -> ApiKeys:
    return ApiKeys.of(configured_keys(api_keys))


def _entra_check() -> TokenValidator:
    """Bearer tokens checked as `viewfinder serve` checks them, from `VIEWFINDER_ENTRA_*`.

    Raises:
        ConfigurationError: The settings are not valid, or PyJWT is not installed.
    """
    from viewfinder.compat.entra import settings_from_env, token_check

    settings = settings_from_env()
    if settings is None:  # pragma: no cover - the caller checked the tenant
        raise ConfigurationError("VIEWFINDER_ENTRA_TENANT is not set")
    try:
        import jwt  # noqa: F401 - PyJWT, of the server extra
    except ImportError as missing:
        raise ConfigurationError(
            "checking Entra ID tokens (VIEWFINDER_ENTRA_TENANT is set) needs PyJWT, which is "
            + import_failure("server", missing)
        ) from None
    return token_check(settings)


def look_alike(
    analyzer: ImageAnalyzer | None,
    options: Mapping[str, Any],
    *,
    api_keys: str | list[str] | tuple[str, ...] | None,
    token_validator: TokenValidator | None,
    report_model_version: str | None = None,
) -> tuple[Service, dict[str, Any], bool]:
    """The service answering a client, the keywords left for azure-core, and whether the
    client owns (built) the analyzer.

    The analyzer's model calls get one attempt each (`ONE_ATTEMPT`): the SDK's retry
    policy waits. `report_model_version` (default `VIEWFINDER_REPORT_MODEL_VERSION`) is
    what results' `model_version` says; unset, the engine's true version. Without a
    `token_validator`, `VIEWFINDER_ENTRA_*` (as for `viewfinder serve`) makes one.
    Only a `retry=` keyword given with analyzer settings keeps its own.

    Raises:
        ConfigurationError: Both `analyzer` and analyzer settings were given, or no
            model endpoint is configured.
    """
    sdk_options = {k: v for k, v in options.items() if k in AZURE_CORE_OPTIONS}
    settings = {k: v for k, v in options.items() if k not in AZURE_CORE_OPTIONS}
    if sdk_options.pop("transport", None) is not None:
        logger.debug("transport= replaced: the look-alike answers in-process")
    if analyzer is not None and settings:
        raise ConfigurationError(
            f"pass either analyzer= or analyzer settings, not both (got {sorted(settings)})"
        )
    owns = analyzer is None
    if analyzer is None:
        settings.setdefault("retry", ONE_ATTEMPT)
        analyzer = ImageAnalyzer(**settings)
    elif analyzer.has_endpoint:
        analyzer.engine.retry = ONE_ATTEMPT  # adopted as the server adopts it
    if token_validator is None and os.environ.get("VIEWFINDER_ENTRA_TENANT", "").strip():
        token_validator = _entra_check()
    service = Service(
        analyzer,
        _configured_keys(api_keys),
        token_validator=token_validator,
        fetch_url=url_image,
        report_model_version=report_model_version
        or os.environ.get(REPORT_MODEL_VERSION_ENV, "").strip()
        or None,
    )
    return service, sdk_options, owns


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
