"""viewfinder.engine._openai: what openai keeps private, read in one place, still works.

An openai upgrade that renames one of these attributes fails here first.
"""

from __future__ import annotations

import asyncio

import httpx2
import openai
import pytest

from viewfinder.engine import _openai
from viewfinder.engine.providers import has_own_http_client, with_own_pool
from viewfinder.errors import ConfigurationError


def _azure() -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(
        azure_endpoint="https://res.openai.azure.com",
        azure_deployment="prod-vision",
        api_key="k",
        api_version="2024-10-21",
        max_retries=0,
    )


def test_own_pool_keeps_azure_routing() -> None:
    client = _azure()
    copy = with_own_pool(client)
    assert copy is not client
    assert _openai.azure_endpoint(copy) == "https://res.openai.azure.com"
    assert _openai.azure_deployment(copy) == "prod-vision"
    assert _openai.azure_settings(copy)["api_version"] == "2024-10-21"
    asyncio.run(copy.close())


def test_own_pool_is_a_fresh_default_pool() -> None:
    client = openai.AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", timeout=12.0)
    assert not has_own_http_client(client)
    copy = with_own_pool(client)
    assert copy.base_url == client.base_url and copy.timeout == 12.0
    asyncio.run(copy.close())


def test_a_callers_http_client_is_not_copied() -> None:
    mine = httpx2.AsyncClient()
    client = openai.AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", http_client=mine)
    assert has_own_http_client(client)
    with pytest.raises(ConfigurationError, match="custom http_client"):
        with_own_pool(client)
    asyncio.run(mine.aclose())


def test_settings_without_accessors() -> None:
    client = openai.OpenAI(
        api_key="k",
        base_url="http://127.0.0.1:9/v1",
        default_headers={"x-team": "vision"},
        _strict_response_validation=True,
    )
    assert dict(_openai.custom_headers(client)) == {"x-team": "vision"}
    assert _openai.strict_response_validation(client) is True
    assert _openai.api_key_provider(client) is None
    assert _openai.sdk_provider(client) is None
    client.close()
