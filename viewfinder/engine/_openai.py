"""What viewfinder reads of an openai client that openai keeps private: the one place.

viewfinder builds the twin of a client it was given (an async client from a sync one and
back), copies clients without retries, and gives a batch an async client with a
connection pool of its own. openai has public APIs for most of it (`with_options`,
`copy`, `default_query`, `DefaultAsyncHttpxClient`) and they are used; what it keeps only
in private attributes is read here, so that an openai upgrade that renames them breaks
this module and its tests, nowhere else:

- `with_options` / `copy` rebuild an Azure client from its base URL and drop
  `_azure_endpoint` and `_azure_deployment`, which route the non-deployment endpoints
  (/models, /files, /batches) to the resource root: `keep_azure_routing` puts them back;
- building a twin needs the client's settings that have no accessor: its extra headers
  (`default_headers` also holds auth and platform headers), strict response
  validation, Azure's api-version and token settings, an API-key callable, and the
  SDK provider a client may authenticate through;
- whether a client talks through the connection pool openai made for it (which a copy
  may replace) or through an `http_client` of the caller's (which it may not): only the
  class openai uses internally, `AsyncHttpxClientWrapper`, tells them apart, since
  `DefaultAsyncHttpxClient` is also what callers pass in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import openai
from openai._base_client import AsyncHttpxClientWrapper

__all__ = [
    "api_key_provider",
    "azure_deployment",
    "azure_endpoint",
    "azure_settings",
    "custom_headers",
    "has_default_pool",
    "keep_azure_routing",
    "sdk_provider",
    "strict_response_validation",
]

AzureClient = openai.AzureOpenAI | openai.AsyncAzureOpenAI
ClientT = TypeVar("ClientT", openai.OpenAI, openai.AsyncOpenAI)


def azure_deployment(client: AzureClient) -> str | None:
    """The deployment the client was built with (`azure_deployment=`), if any."""
    return client._azure_deployment


def azure_endpoint(client: AzureClient) -> str | None:
    """The resource URL the client was built with (`azure_endpoint=`), if any."""
    return None if client._azure_endpoint is None else str(client._azure_endpoint)


def keep_azure_routing(source: openai.OpenAI | openai.AsyncOpenAI, copy: ClientT) -> ClientT:
    """`copy` (made by `with_options` or `copy` from `source`) with Azure's routing back."""
    if isinstance(source, openai.AzureOpenAI | openai.AsyncAzureOpenAI) and isinstance(
        copy, openai.AzureOpenAI | openai.AsyncAzureOpenAI
    ):
        copy._azure_endpoint = source._azure_endpoint
        copy._azure_deployment = source._azure_deployment
    return copy


def custom_headers(client: openai.OpenAI | openai.AsyncOpenAI) -> Mapping[str, Any]:
    """The headers the caller added (`default_headers=`), without openai's own."""
    return client._custom_headers


def strict_response_validation(client: openai.OpenAI | openai.AsyncOpenAI) -> bool:
    """Whether the client validates responses strictly (`_strict_response_validation=`)."""
    return client._strict_response_validation


def api_key_provider(client: openai.OpenAI | openai.AsyncOpenAI) -> Callable[..., Any] | None:
    """The callable the client takes its API key from, if any."""
    return client._api_key_provider


def azure_settings(client: AzureClient) -> dict[str, Any]:
    """`api_version`, `azure_ad_token` and `azure_ad_token_provider` of an Azure client."""
    return {
        "api_version": client._api_version,
        "azure_ad_token": client._azure_ad_token,
        "azure_ad_token_provider": client._azure_ad_token_provider,
    }


def sdk_provider(client: openai.OpenAI | openai.AsyncOpenAI) -> object | None:
    """The SDK provider the client authenticates through, if any (it cannot be copied)."""
    return getattr(client, "_provider", None)


def has_default_pool(client: openai.AsyncOpenAI) -> bool:
    """Whether the client uses the HTTP client openai made for it (no caller's one)."""
    return isinstance(client._client, AsyncHttpxClientWrapper)
