"""Which endpoint, which client, which structured-output mode, which sampling.

`resolve_provider` turns whatever the caller configured into one `Provider`:

1. a client passed in (`openai.OpenAI`, `AzureOpenAI`, `AsyncOpenAI`, `AsyncAzureOpenAI`);
2. explicit arguments (`base_url=`, `azure_endpoint=`, ...);
3. Azure OpenAI from the environment (`AZURE_OPENAI_ENDPOINT`, ...);
4. OpenAI or an OpenAI-compatible server from the environment (`OPENAI_BASE_URL`,
   `OPENAI_API_KEY`).

The clients of a `Provider` never retry by themselves (`max_retries=0`): viewfinder
retries each HTTP attempt (`viewfinder.engine.retry`).

Sampling parameters depend on the model family (`sampling_params`). Azure deployment
names are chosen by their owner and do not reveal the family: pass `model=` a name that
does (e.g. `"o4-mini"` with `azure_deployment="prod-vision"`) so that a reasoning
model gets the parameters it accepts.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, TypeVar

import httpx2
import openai
from openai.lib.azure import API_KEY_SENTINEL

from viewfinder.engine import _openai
from viewfinder.engine._instructor import Mode
from viewfinder.errors import ConfigurationError, InvalidOptionError

__all__ = [
    "DEFAULT_AZURE_API_VERSION",
    "DEFAULT_MODEL",
    "MODEL_FAMILIES",
    "MODE_NAMES",
    "NO_KEY_PLACEHOLDER",
    "OPENAI_BASE_URL",
    "Mode",
    "Provider",
    "ProviderKind",
    "SamplingParams",
    "has_own_http_client",
    "is_reasoning_model",
    "public_endpoint",
    "resolve_provider",
    "sampling_params",
    "with_own_pool",
]

logger = logging.getLogger("viewfinder")

_ClientT = TypeVar("_ClientT", openai.OpenAI, openai.AsyncOpenAI)

DEFAULT_MODEL = "gpt-4.1-mini"
"""Model used when none is configured: cheap, fast, good at vision."""
DEFAULT_AZURE_API_VERSION = "2024-10-21"
"""Azure OpenAI GA api-version with structured outputs (`json_schema`)."""
OPENAI_BASE_URL = "https://api.openai.com/v1"
"""Base URL of OpenAI's API."""
NO_KEY_PLACEHOLDER = "not-needed"
"""API key sent to an OpenAI-compatible server configured without one."""

_NOTHING_CONFIGURED = (
    "No model endpoint is configured. Set OPENAI_API_KEY to use OpenAI; "
    "or OPENAI_BASE_URL to use a local OpenAI-compatible server (Ollama, vLLM, LM Studio, "
    "llama.cpp); or AZURE_OPENAI_ENDPOINT + AZURE_OPENAI_API_KEY + AZURE_OPENAI_DEPLOYMENT "
    "to use Azure OpenAI. You can also pass client=, base_url= or azure_endpoint=."
)


class ProviderKind(StrEnum):
    """The kind of endpoint, which decides the default structured-output mode."""

    OPENAI = "openai"
    """api.openai.com (or a regional api.openai.com host)."""
    AZURE = "azure"
    """Azure OpenAI / Azure AI Foundry."""
    COMPATIBLE = "compatible"
    """Any other OpenAI-compatible server: Ollama, vLLM, LM Studio, llama.cpp, proxies."""


@dataclass(frozen=True)
class Provider:
    """A resolved endpoint with its two clients.

    Attributes:
        kind: What kind of endpoint this is.
        model: Model name (OpenAI, compatible servers) or deployment name (Azure).
        endpoint: Base URL without query string, credentials or trailing slash (it goes
            into cache keys), e.g. `https://res.openai.azure.com/openai/deployments/dep`.
        client: Synchronous client, always with `max_retries=0`.
        async_client: Asynchronous client, always with `max_retries=0`.
        mode: instructor structured-output mode.
    """

    kind: ProviderKind
    model: str
    endpoint: str
    client: openai.OpenAI = field(repr=False)
    async_client: openai.AsyncOpenAI = field(repr=False)
    mode: Mode


# --- modes ----------------------------------------------------------------------------

_DEFAULT_MODES: Mapping[ProviderKind, Mode] = {
    # Native structured outputs (response_format json_schema, strict).
    ProviderKind.OPENAI: Mode.JSON_SCHEMA,
    ProviderKind.AZURE: Mode.JSON_SCHEMA,
    # response_format json_object + the schema in the prompt: the widest support
    # across Ollama, vLLM, LM Studio and llama.cpp.
    ProviderKind.COMPATIBLE: Mode.JSON,
}

MODE_NAMES: Mapping[str, Mode] = {
    "tools": Mode.TOOLS,
    "json_schema": Mode.JSON_SCHEMA,
    "json": Mode.JSON,
    "md_json": Mode.MD_JSON,
}
"""Modes viewfinder supports, by the name `mode=` and `VIEWFINDER_MODE` accept."""


def _requested_mode(mode: Mode | str | None, env: Mapping[str, str]) -> Mode | None:
    """The mode asked for by `mode=`, else by `VIEWFINDER_MODE`; None when neither."""
    if mode is not None:
        return _parse_mode(mode, source="mode", error=InvalidOptionError)
    env_mode = _setting(env, "VIEWFINDER_MODE")
    if env_mode:
        return _parse_mode(env_mode, source="VIEWFINDER_MODE", error=ConfigurationError)
    return None


def _parse_mode(mode: Mode | str, *, source: str, error: type[Exception]) -> Mode:
    supported = set(MODE_NAMES.values())
    if isinstance(mode, Mode):
        if mode in supported:
            return mode
    else:
        key = mode.strip().lower()
        by_value = {m.value: m for m in supported}
        found = MODE_NAMES.get(key) or by_value.get(key)
        if found is not None:
            return found
    names = ", ".join(MODE_NAMES)
    raise error(f"{source} must be one of {names}; got {mode!r}")


# --- resolution -----------------------------------------------------------------------


def resolve_provider(
    *,
    client: openai.OpenAI | openai.AsyncOpenAI | None = None,
    async_client: openai.AsyncOpenAI | None = None,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    azure_endpoint: str | None = None,
    azure_deployment: str | None = None,
    api_version: str | None = None,
    azure_ad_token_provider: Callable[[], str] | None = None,
    mode: Mode | str | None = None,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
) -> Provider:
    """Resolve the endpoint, clients, model and mode to use.

    Precedence: a client passed in; then explicit arguments; then Azure OpenAI from
    the environment (`AZURE_OPENAI_ENDPOINT`, `AZURE_OPENAI_API_KEY` or a token
    provider, `AZURE_OPENAI_DEPLOYMENT`, `OPENAI_API_VERSION` or
    `AZURE_OPENAI_API_VERSION`); then `OPENAI_BASE_URL` / `OPENAI_API_KEY`. Settings
    missing from the arguments are taken from the environment of the same kind, e.g.
    `azure_deployment=` with `AZURE_OPENAI_ENDPOINT` from the environment. An
    `api_key=` alone does not choose the endpoint: it is the key for whichever endpoint
    is resolved. A base URL alone is enough (local servers need no key). When only one
    of the sync and async clients is given, the other is built from its settings (a
    custom `http_client` is not carried over: pass both clients for proxies or mTLS).

    Model: `model=`, else `VIEWFINDER_MODEL`, else the Azure deployment, else
    `DEFAULT_MODEL`. Mode: `mode=`, else `VIEWFINDER_MODE` (tools, json_schema, json,
    md_json), else json_schema for OpenAI and Azure and json for compatible servers.

    Args:
        client: A configured client (sync or async); used as is, with retries off.
        async_client: The async twin of `client`.
        model: Model name, or deployment name for Azure.
        base_url: Base URL of OpenAI or of an OpenAI-compatible server.
        api_key: API key for the resolved endpoint.
        azure_endpoint: Azure OpenAI resource URL, e.g. `https://res.openai.azure.com`.
        azure_deployment: Azure OpenAI deployment name.
        api_version: Azure OpenAI api-version (default `DEFAULT_AZURE_API_VERSION`).
        azure_ad_token_provider: Returns a Microsoft Entra ID token, called per request.
        mode: instructor mode, or its name.
        timeout: Timeout in seconds of one HTTP attempt, for the clients built here.
        env: Environment variables (default `os.environ`).

    Returns:
        The resolved provider.

    Raises:
        ConfigurationError: Nothing is configured, or the settings contradict each other.
        InvalidOptionError: `mode` or `timeout` is not valid.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if not timeout > 0:
        raise InvalidOptionError(f"timeout must be positive, got {timeout}")
    requested_mode = _requested_mode(mode, environ)
    chosen_model = model or _setting(environ, "VIEWFINDER_MODEL") or None

    if client is not None or async_client is not None:
        _warn_ignored(
            base_url=base_url,
            api_key=api_key,
            azure_endpoint=azure_endpoint,
            azure_deployment=azure_deployment,
            api_version=api_version,
            azure_ad_token_provider=azure_ad_token_provider,
        )
        sync, async_ = _from_clients(client, async_client)
    elif _wants_azure(base_url, azure_endpoint, azure_deployment, azure_ad_token_provider, environ):
        sync = _azure_client(
            azure_endpoint=azure_endpoint or _setting(environ, "AZURE_OPENAI_ENDPOINT"),
            deployment=azure_deployment or _setting(environ, "AZURE_OPENAI_DEPLOYMENT"),
            api_key=api_key or _setting(environ, "AZURE_OPENAI_API_KEY"),
            token_provider=azure_ad_token_provider,
            api_version=api_version
            or _setting(environ, "OPENAI_API_VERSION")
            or _setting(environ, "AZURE_OPENAI_API_VERSION")
            or DEFAULT_AZURE_API_VERSION,
            timeout=timeout,
        )
        async_ = _async_twin(sync)
    else:
        sync = _openai_client(
            base_url=base_url or _setting(environ, "OPENAI_BASE_URL"),
            api_key=api_key or _setting(environ, "OPENAI_API_KEY"),
            timeout=timeout,
            env=environ,
        )
        async_ = _async_twin(sync)

    kind = _kind_of(sync)
    resolved_model = chosen_model or _azure_deployment_of(sync) or DEFAULT_MODEL
    return Provider(
        kind=kind,
        model=resolved_model,
        endpoint=public_endpoint(sync.base_url),
        client=_without_retries(sync),
        async_client=_without_retries(async_),
        mode=requested_mode or _DEFAULT_MODES[kind],
    )


def _setting(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _warn_ignored(**settings: object) -> None:
    ignored = [name for name, value in settings.items() if value is not None]
    if ignored:
        logger.warning("A client was passed: ignoring %s", ", ".join(ignored))


def _wants_azure(
    base_url: str | None,
    azure_endpoint: str | None,
    azure_deployment: str | None,
    azure_ad_token_provider: Callable[[], str] | None,
    env: Mapping[str, str],
) -> bool:
    if azure_endpoint or azure_deployment or azure_ad_token_provider is not None:
        if base_url:
            raise ConfigurationError("Pass either base_url= or azure_endpoint=, not both.")
        return True
    return not base_url and bool(_setting(env, "AZURE_OPENAI_ENDPOINT"))


def _azure_client(
    *,
    azure_endpoint: str,
    deployment: str,
    api_key: str,
    token_provider: Callable[[], str] | None,
    api_version: str,
    timeout: float,
) -> openai.AzureOpenAI:
    if not azure_endpoint:
        raise ConfigurationError(
            "Azure OpenAI needs an endpoint: set AZURE_OPENAI_ENDPOINT or pass "
            "azure_endpoint= (e.g. https://<resource>.openai.azure.com)."
        )
    _check_url(azure_endpoint, "AZURE_OPENAI_ENDPOINT / azure_endpoint")
    if not api_key and token_provider is None:
        raise ConfigurationError(
            "Azure OpenAI needs a credential: set AZURE_OPENAI_API_KEY or pass "
            "azure_ad_token_provider= (Microsoft Entra ID)."
        )
    return openai.AzureOpenAI(
        azure_endpoint=azure_endpoint,
        azure_deployment=deployment or None,
        api_version=api_version,
        api_key=None if token_provider is not None else api_key,
        azure_ad_token_provider=token_provider,
        timeout=timeout,
        max_retries=0,
    )


def _openai_client(
    *, base_url: str, api_key: str, timeout: float, env: Mapping[str, str]
) -> openai.OpenAI:
    if not base_url and not api_key:
        raise ConfigurationError(_NOTHING_CONFIGURED)
    if base_url:
        _check_url(base_url, "OPENAI_BASE_URL / base_url")
    if not api_key:
        if _is_openai_host(httpx2.URL(base_url).host):
            raise ConfigurationError(
                "api.openai.com needs an API key: set OPENAI_API_KEY or pass api_key=."
            )
        api_key = NO_KEY_PLACEHOLDER
    return openai.OpenAI(
        base_url=base_url or OPENAI_BASE_URL,
        api_key=api_key,
        organization=_setting(env, "OPENAI_ORG_ID") or None,
        project=_setting(env, "OPENAI_PROJECT_ID") or None,
        timeout=timeout,
        max_retries=0,
    )


def _check_url(url: str, source: str) -> None:
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        # The URL may hold credentials: name where it came from, do not echo it.
        raise ConfigurationError(f"{source} must be an http(s) URL with a host.")


def public_endpoint(url: httpx2.URL | str) -> str:
    """A base URL fit for cache keys and logs: no query, credentials or trailing slash.

    Args:
        url: The client's base URL.

    Returns:
        `scheme://host[:port]/path`, e.g. `https://api.openai.com/v1`.
    """
    parsed = httpx2.URL(str(url))
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}".rstrip("/")


# --- endpoint kinds -------------------------------------------------------------------

_OPENAI_HOST = re.compile(r"^(?:[a-z0-9-]+\.)?api\.openai\.com$")
_AZURE_HOST = re.compile(
    r"\.(?:openai\.azure\.com|services\.ai\.azure\.com|cognitiveservices\.azure\.com)$"
)


def _is_openai_host(host: str) -> bool:
    return bool(_OPENAI_HOST.match(host.lower()))


def _kind_of(client: openai.OpenAI | openai.AsyncOpenAI) -> ProviderKind:
    if isinstance(client, openai.AzureOpenAI | openai.AsyncAzureOpenAI):
        return ProviderKind.AZURE
    host = client.base_url.host.lower()
    if _is_openai_host(host):
        return ProviderKind.OPENAI
    if _AZURE_HOST.search(host):  # Azure's OpenAI-style /openai/v1 API, plain client
        return ProviderKind.AZURE
    return ProviderKind.COMPATIBLE


_DEPLOYMENT_PATH = re.compile(r"/deployments/([^/]+)")


def _azure_deployment_of(client: openai.OpenAI | openai.AsyncOpenAI) -> str | None:
    if not isinstance(client, openai.AzureOpenAI | openai.AsyncAzureOpenAI):
        return None
    deployment = _openai.azure_deployment(client)
    if deployment:
        return deployment
    found = _DEPLOYMENT_PATH.search(client.base_url.path)  # a client built from base_url=
    return found.group(1) if found else None


# --- clients --------------------------------------------------------------------------


def _from_clients(
    client: openai.OpenAI | openai.AsyncOpenAI | None,
    async_client: openai.AsyncOpenAI | None,
) -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    if isinstance(client, openai.AsyncOpenAI):
        if async_client is not None:
            raise ConfigurationError("client= is an async client and async_client= is given too.")
        client, async_client = None, client
    if client is not None and not isinstance(client, openai.OpenAI):
        raise ConfigurationError(f"client= must be an openai.OpenAI client, not {type(client)}.")
    if async_client is not None and not isinstance(async_client, openai.AsyncOpenAI):
        raise ConfigurationError(
            f"async_client= must be an openai.AsyncOpenAI client, not {type(async_client)}."
        )
    if client is not None and async_client is not None:
        _check_twins(client, async_client)
        return client, async_client
    if client is not None:
        return client, _async_twin(client)
    if async_client is not None:
        return _sync_twin(async_client), async_client
    raise ConfigurationError(_NOTHING_CONFIGURED)  # pragma: no cover - caller checked


def _check_twins(client: openai.OpenAI, async_client: openai.AsyncOpenAI) -> None:
    if _kind_of(client) is not _kind_of(async_client) or public_endpoint(
        client.base_url
    ) != public_endpoint(async_client.base_url):
        raise ConfigurationError(
            "client= and async_client= point to different endpoints "
            f"({public_endpoint(client.base_url)} and {public_endpoint(async_client.base_url)})."
        )


def _without_retries(client: _ClientT) -> _ClientT:
    if client.max_retries == 0:
        return client
    return _openai.keep_azure_routing(client, client.with_options(max_retries=0))


def with_own_pool(client: openai.AsyncOpenAI) -> openai.AsyncOpenAI:
    """A copy of `client` with a connection pool of its own (for another event loop).

    Raises:
        ConfigurationError: `client` talks through an `http_client` of the caller's,
            which cannot be copied (its proxies, certificates or transport are unknown).
    """
    if not _openai.has_default_pool(client):
        raise ConfigurationError(
            "this async client has a custom http_client, which cannot be copied onto "
            "another event loop"
        )
    pool = openai.DefaultAsyncHttpxClient(base_url=client.base_url, timeout=client.timeout)
    return _openai.keep_azure_routing(client, client.copy(http_client=pool))


def has_own_http_client(client: openai.AsyncOpenAI) -> bool:
    """Whether `client` talks through an `http_client` of the caller's (see `with_own_pool`)."""
    return not _openai.has_default_pool(client)


def _common_options(client: openai.OpenAI | openai.AsyncOpenAI) -> dict[str, Any]:
    """Settings shared by the sync and async clients, minus auth and base URL."""
    if client.workload_identity is not None or _openai.sdk_provider(client) is not None:
        raise ConfigurationError(
            "This client uses workload identity or an SDK provider: pass both client= "
            "and async_client=."
        )
    query = {k: v for k, v in client.default_query.items() if k != "api-version"}
    return {
        "organization": client.organization,
        "project": client.project,
        "timeout": client.timeout,
        "max_retries": 0,
        "default_headers": dict(_openai.custom_headers(client)) or None,
        "default_query": query or None,
        "_strict_response_validation": _openai.strict_response_validation(client),
    }


def _azure_location(client: openai.AzureOpenAI | openai.AsyncAzureOpenAI) -> dict[str, Any]:
    endpoint = _openai.azure_endpoint(client)
    if endpoint is not None:
        return {"azure_endpoint": endpoint, "azure_deployment": _openai.azure_deployment(client)}
    return {"base_url": str(client.base_url)}


def _azure_key(client: openai.AzureOpenAI | openai.AsyncAzureOpenAI) -> str | None:
    key = client.api_key
    return key if key and key != API_KEY_SENTINEL else None


def _async_twin(client: openai.OpenAI) -> openai.AsyncOpenAI:
    options = _common_options(client)
    key_provider = _openai.api_key_provider(client)
    if isinstance(client, openai.AzureOpenAI):
        if key_provider is not None:
            raise ConfigurationError(
                "This Azure client takes its API key from a callable: pass async_client= too."
            )
        return openai.AsyncAzureOpenAI(
            **_azure_location(client),
            **_openai.azure_settings(client),
            api_key=_azure_key(client),
            **options,
        )
    async_key: str | Callable[[], Awaitable[str]] = (
        client.api_key if key_provider is None else _async_key_provider(key_provider)
    )
    return openai.AsyncOpenAI(base_url=client.base_url, api_key=async_key, **options)


def _sync_twin(client: openai.AsyncOpenAI) -> openai.OpenAI:
    options = _common_options(client)
    if _openai.api_key_provider(client) is not None:
        raise ConfigurationError(
            "This async client takes its API key from an async callable: pass client= too."
        )
    if isinstance(client, openai.AsyncAzureOpenAI):
        azure = _openai.azure_settings(client)
        token_provider = azure.pop("azure_ad_token_provider")
        return openai.AzureOpenAI(
            **_azure_location(client),
            **azure,
            api_key=_azure_key(client),
            azure_ad_token_provider=None
            if token_provider is None
            else _sync_token_provider(token_provider),
            **options,
        )
    return openai.OpenAI(base_url=client.base_url, api_key=client.api_key, **options)


def _async_key_provider(provider: Callable[[], str]) -> Callable[[], Awaitable[str]]:
    async def key() -> str:
        return provider()

    return key


def _sync_token_provider(provider: Callable[[], str | Awaitable[str]]) -> Callable[[], str]:
    if inspect.iscoroutinefunction(provider):
        raise ConfigurationError(
            "This async Azure client has an async azure_ad_token_provider: pass client= too."
        )

    def token() -> str:
        value = provider()
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            raise ConfigurationError(
                "The async client's azure_ad_token_provider is async: pass client= too."
            )
        return value

    return token


# --- sampling -------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingParams:
    """Which sampling parameters a model family accepts.

    Attributes:
        family: A name for the family, for logs.
        reasoning: Reasoning models reject `temperature` and `seed`.
        temperature: Temperature to send, or None to send none.
        send_seed: Whether to send `seed`.
        max_tokens_param: Name of the output-token cap parameter.
    """

    family: str
    reasoning: bool
    temperature: float | None
    send_seed: bool
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"]

    def to_kwargs(self, *, max_output_tokens: int, seed: int) -> dict[str, Any]:
        """The chat-completions keyword arguments for these parameters.

        Args:
            max_output_tokens: Cap on output tokens (reasoning tokens included).
            seed: Sampling seed, for models that accept one.

        Returns:
            The keyword arguments.
        """
        kwargs: dict[str, Any] = {self.max_tokens_param: max_output_tokens}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.send_seed:
            kwargs["seed"] = seed
        return kwargs


_REASONING = SamplingParams(
    family="reasoning",
    reasoning=True,
    temperature=None,
    send_seed=False,
    max_tokens_param="max_completion_tokens",
)
_STANDARD = SamplingParams(
    family="standard",
    reasoning=False,
    temperature=0.0,
    send_seed=True,
    max_tokens_param="max_tokens",
)

MODEL_FAMILIES: tuple[tuple[re.Pattern[str], SamplingParams], ...] = (
    (re.compile(r"^o\d"), _REASONING),  # o1, o3, o3-mini, o4-mini, ...
    (re.compile(r"^gpt-5"), _REASONING),  # gpt-5, gpt-5-mini, gpt-5.1, ...
    (re.compile(r""), _STANDARD),  # everything else: gpt-4.1, gpt-4o, local models
)
"""Model-name patterns (matched on the lower-cased name after any `vendor/` prefix),
first match wins."""


def _family(model: str) -> SamplingParams:
    name = model.strip().lower().rsplit("/", 1)[-1]
    for pattern, params in MODEL_FAMILIES:
        if pattern.search(name):
            return params
    return _STANDARD  # pragma: no cover - the table ends with a catch-all


def is_reasoning_model(model: str) -> bool:
    """Tell whether `model` is a reasoning model (o-series, gpt-5 family).

    Azure deployment names cannot be recognised: pass `model=` a name that reveals
    the family.

    Args:
        model: Model name, possibly with a `vendor/` prefix.

    Returns:
        True for reasoning models.
    """
    return _family(model).reasoning


def sampling_params(model: str, *, max_output_tokens: int = 4096, seed: int = 0) -> dict[str, Any]:
    """The sampling keyword arguments for one chat completion with `model`.

    Reasoning models get only `max_completion_tokens`; other models get
    `temperature=0`, `seed` and `max_tokens`.

    Args:
        model: Model name, possibly with a `vendor/` prefix.
        max_output_tokens: Cap on output tokens.
        seed: Sampling seed, for models that accept one.

    Returns:
        Keyword arguments for `chat.completions.create`.

    Raises:
        InvalidOptionError: `max_output_tokens` is below 1.
    """
    if max_output_tokens < 1:
        raise InvalidOptionError(f"max_output_tokens must be >= 1, got {max_output_tokens}")
    return _family(model).to_kwargs(max_output_tokens=max_output_tokens, seed=seed)
