"""Provider resolution, client derivation, modes and sampling parameters."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import instructor
import openai
import pytest
from instructor.v2.core.providers import Provider as InstructorProvider
from instructor.v2.core.registry import mode_registry

from viewfinder.engine.providers import (
    DEFAULT_AZURE_API_VERSION,
    DEFAULT_MODEL,
    MODE_NAMES,
    Provider,
    ProviderKind,
    is_reasoning_model,
    public_endpoint,
    resolve_provider,
    sampling_params,
)
from viewfinder.errors import ConfigurationError, InvalidOptionError

OPENAI_KEY = "sk-openai-SECRET-1111"
AZURE_KEY = "azure-SECRET-2222"

AZURE_ENV = {
    "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com/",
    "AZURE_OPENAI_API_KEY": AZURE_KEY,
    "AZURE_OPENAI_DEPLOYMENT": "vision-dep",
}
OPENAI_ENV = {"OPENAI_API_KEY": OPENAI_KEY}


@pytest.fixture
def providers() -> Iterator[list[Provider]]:
    """Collects resolved providers; their sync clients are closed afterwards."""
    made: list[Provider] = []
    yield made
    for provider in made:
        provider.client.close()


def resolve(made: list[Provider], **kwargs: object) -> Provider:
    kwargs.setdefault("env", {})
    provider = resolve_provider(**kwargs)  # type: ignore[arg-type]
    made.append(provider)
    return provider


# --- precedence -----------------------------------------------------------------------


def test_client_beats_arguments_and_env(
    providers: list[Provider], caplog: pytest.LogCaptureFixture
) -> None:
    client = openai.OpenAI(api_key="sk-client", base_url="http://localhost:8000/v1", max_retries=0)
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        provider = resolve(
            providers,
            client=client,
            base_url="http://elsewhere:1234/v1",
            api_key="sk-ignored-SECRET",
            env={**AZURE_ENV, **OPENAI_ENV},
        )
    assert provider.client is client
    assert provider.endpoint == "http://localhost:8000/v1"
    assert provider.kind is ProviderKind.COMPATIBLE
    assert "base_url, api_key" in caplog.text
    assert "SECRET" not in caplog.text
    client.close()


def test_arguments_beat_azure_env(providers: list[Provider]) -> None:
    provider = resolve(
        providers, base_url="http://localhost:11434/v1", env={**AZURE_ENV, **OPENAI_ENV}
    )
    assert provider.kind is ProviderKind.COMPATIBLE
    assert provider.endpoint == "http://localhost:11434/v1"


def test_azure_env_beats_openai_env(providers: list[Provider]) -> None:
    provider = resolve(providers, env={**OPENAI_ENV, **AZURE_ENV})
    assert provider.kind is ProviderKind.AZURE
    assert isinstance(provider.client, openai.AzureOpenAI)
    assert provider.endpoint == "https://res.openai.azure.com/openai/deployments/vision-dep"


def test_openai_key_alone(providers: list[Provider]) -> None:
    provider = resolve(providers, env=OPENAI_ENV)
    assert provider.kind is ProviderKind.OPENAI
    assert provider.endpoint == "https://api.openai.com/v1"
    assert provider.client.api_key == OPENAI_KEY
    assert provider.async_client.api_key == OPENAI_KEY
    assert provider.model == DEFAULT_MODEL


def test_explicit_api_key_without_endpoint_is_openai(providers: list[Provider]) -> None:
    provider = resolve(providers, api_key="sk-explicit")
    assert provider.kind is ProviderKind.OPENAI
    assert provider.client.api_key == "sk-explicit"


def test_base_url_alone_is_enough(providers: list[Provider]) -> None:
    provider = resolve(providers, env={"OPENAI_BASE_URL": "http://localhost:11434/v1"})
    assert provider.kind is ProviderKind.COMPATIBLE
    assert provider.client.api_key == "not-needed"
    assert str(provider.async_client.base_url) == "http://localhost:11434/v1/"
    assert provider.mode is instructor.Mode.JSON


def test_openai_base_url_without_key_is_refused(providers: list[Provider]) -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        resolve(providers, base_url="https://api.openai.com/v1")


def test_nothing_configured() -> None:
    env = {"UNRELATED": "x", "OPENAI_ORG_ID": "org-SECRET"}
    with pytest.raises(ConfigurationError) as caught:
        resolve_provider(env=env)
    message = str(caught.value)
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_DEPLOYMENT",
    ):
        assert name in message
    assert "SECRET" not in message


def test_azure_endpoint_without_credential_names_what_to_set() -> None:
    env = {"AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com", "OPENAI_API_KEY": OPENAI_KEY}
    with pytest.raises(ConfigurationError) as caught:
        resolve_provider(env=env)
    assert "AZURE_OPENAI_API_KEY" in str(caught.value)
    assert OPENAI_KEY not in str(caught.value)


def test_bad_base_url_is_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_provider(base_url="localhost:SECRET@8000", env={})
    assert "SECRET" not in str(caught.value)


def test_base_url_and_azure_endpoint_conflict() -> None:
    with pytest.raises(ConfigurationError):
        resolve_provider(
            base_url="http://localhost/v1", azure_endpoint="https://res.openai.azure.com", env={}
        )


# --- model ----------------------------------------------------------------------------


def test_viewfinder_model_env(providers: list[Provider]) -> None:
    env = {**OPENAI_ENV, "VIEWFINDER_MODEL": "gpt-4o"}
    assert resolve(providers, env=env).model == "gpt-4o"
    assert resolve(providers, env=env, model="o4-mini").model == "o4-mini"


def test_azure_model_defaults_to_deployment(providers: list[Provider]) -> None:
    assert resolve(providers, env=AZURE_ENV).model == "vision-dep"
    env = {**AZURE_ENV, "VIEWFINDER_MODEL": "gpt-4.1"}
    assert resolve(providers, env=env).model == "gpt-4.1"
    no_deployment = {k: v for k, v in AZURE_ENV.items() if k != "AZURE_OPENAI_DEPLOYMENT"}
    provider = resolve(providers, env=no_deployment)
    assert provider.model == DEFAULT_MODEL
    assert provider.endpoint == "https://res.openai.azure.com/openai"


# --- azure ----------------------------------------------------------------------------


def test_azure_from_env_with_key(providers: list[Provider]) -> None:
    env = {**AZURE_ENV, "AZURE_OPENAI_API_VERSION": "2025-01-01-preview"}
    provider = resolve(providers, env=env)
    client, async_client = provider.client, provider.async_client
    assert isinstance(client, openai.AzureOpenAI)
    assert isinstance(async_client, openai.AsyncAzureOpenAI)
    assert client.api_key == AZURE_KEY
    assert async_client.api_key == AZURE_KEY
    assert client._api_version == "2025-01-01-preview"
    assert async_client._api_version == "2025-01-01-preview"
    assert client.max_retries == 0
    assert async_client.max_retries == 0
    assert "?" not in provider.endpoint
    assert "api-version" not in provider.endpoint
    assert str(async_client.base_url) == str(client.base_url)


def test_azure_default_api_version_and_openai_api_version_first(
    providers: list[Provider],
) -> None:
    provider = resolve(providers, env=AZURE_ENV)
    assert isinstance(provider.client, openai.AzureOpenAI)
    assert provider.client._api_version == DEFAULT_AZURE_API_VERSION
    env = {**AZURE_ENV, "OPENAI_API_VERSION": "v-a", "AZURE_OPENAI_API_VERSION": "v-b"}
    provider = resolve(providers, env=env)
    assert isinstance(provider.client, openai.AzureOpenAI)
    assert provider.client._api_version == "v-a"


def test_azure_with_token_provider(providers: list[Provider]) -> None:
    def token() -> str:
        return "entra-token"

    env = {"AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com"}
    provider = resolve(providers, env=env, azure_deployment="dep", azure_ad_token_provider=token)
    client, async_client = provider.client, provider.async_client
    assert provider.kind is ProviderKind.AZURE
    assert isinstance(client, openai.AzureOpenAI)
    assert isinstance(async_client, openai.AsyncAzureOpenAI)
    assert client._azure_ad_token_provider is token
    assert async_client._azure_ad_token_provider is token
    assert provider.model == "dep"
    assert provider.endpoint == "https://res.openai.azure.com/openai/deployments/dep"


def test_azure_arguments_with_key(providers: list[Provider]) -> None:
    provider = resolve(
        providers,
        azure_endpoint="https://res.openai.azure.com",
        azure_deployment="dep",
        api_key="k",
        api_version="2024-06-01",
        model="gpt-4o",
    )
    assert provider.kind is ProviderKind.AZURE
    assert provider.model == "gpt-4o"
    assert isinstance(provider.client, openai.AzureOpenAI)
    assert provider.client._api_version == "2024-06-01"


def test_azure_client_built_from_base_url_names_its_deployment(
    providers: list[Provider],
) -> None:
    client = openai.AzureOpenAI(
        base_url="https://res.openai.azure.com/openai/deployments/from-url",
        api_key="k",
        api_version="2024-10-21",
        max_retries=0,
    )
    provider = resolve(providers, client=client)
    assert provider.model == "from-url"
    assert isinstance(provider.async_client, openai.AsyncAzureOpenAI)
    assert str(provider.async_client.base_url) == str(client.base_url)


def test_plain_client_on_azure_v1_endpoint_is_azure(providers: list[Provider]) -> None:
    provider = resolve(providers, base_url="https://res.openai.azure.com/openai/v1", api_key="k")
    assert provider.kind is ProviderKind.AZURE
    assert provider.mode is instructor.Mode.JSON_SCHEMA


# --- deriving clients -----------------------------------------------------------------


def test_async_client_derived_from_sync(providers: list[Provider]) -> None:
    client = openai.OpenAI(
        api_key="sk-user",
        base_url="http://localhost:8000/v1",
        organization="org-1",
        project="proj-1",
        timeout=12.0,
        default_headers={"X-Team": "vision"},
        default_query={"tenant": "t1"},
        max_retries=5,
    )
    provider = resolve(providers, client=client)
    derived = provider.async_client
    assert type(derived) is openai.AsyncOpenAI
    assert str(derived.base_url) == str(client.base_url)
    assert derived.api_key == "sk-user"
    assert derived.organization == "org-1"
    assert derived.project == "proj-1"
    assert derived.timeout == 12.0
    assert derived.max_retries == 0
    assert derived._custom_headers["X-Team"] == "vision"
    assert derived._custom_query == {"tenant": "t1"}
    # the user's client keeps its settings; the provider's copy never retries
    assert client.max_retries == 5
    assert provider.client.max_retries == 0
    assert provider.client.api_key == "sk-user"
    client.close()


def test_sync_client_derived_from_async(providers: list[Provider]) -> None:
    async_client = openai.AsyncOpenAI(
        api_key="sk-user", base_url="http://localhost:8000/v1", max_retries=3
    )
    provider = resolve(providers, client=async_client)  # an async client as client= works
    assert type(provider.client) is openai.OpenAI
    assert str(provider.client.base_url) == "http://localhost:8000/v1/"
    assert provider.client.api_key == "sk-user"
    assert provider.client.max_retries == 0
    assert provider.async_client.max_retries == 0
    assert async_client.max_retries == 3


def test_async_azure_derived_from_sync_azure(providers: list[Provider]) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint="https://res.openai.azure.com",
        azure_deployment="dep",
        api_key="azure-key",
        api_version="2024-10-21",
        max_retries=5,
    )
    provider = resolve(providers, client=client)
    derived = provider.async_client
    assert isinstance(derived, openai.AsyncAzureOpenAI)
    assert str(derived.base_url) == str(client.base_url)
    assert derived.api_key == "azure-key"
    assert derived._api_version == "2024-10-21"
    assert derived._azure_deployment == "dep"
    assert derived._custom_query == {"api-version": "2024-10-21"}
    assert derived.max_retries == 0
    assert provider.client.max_retries == 0
    assert isinstance(provider.client, openai.AzureOpenAI)
    assert provider.client._azure_deployment == "dep"
    assert provider.client._api_version == "2024-10-21"
    assert provider.kind is ProviderKind.AZURE
    assert provider.model == "dep"
    assert provider.endpoint == "https://res.openai.azure.com/openai/deployments/dep"
    client.close()


def test_sync_azure_derived_from_async_azure(providers: list[Provider]) -> None:
    def token() -> str:
        return "entra-token"

    async_client = openai.AsyncAzureOpenAI(
        azure_endpoint="https://res.openai.azure.com",
        azure_deployment="dep",
        azure_ad_token_provider=token,
        api_version="2024-10-21",
    )
    provider = resolve(providers, async_client=async_client)
    derived = provider.client
    assert isinstance(derived, openai.AzureOpenAI)
    assert str(derived.base_url) == str(async_client.base_url)
    assert derived._api_version == "2024-10-21"
    assert derived._azure_ad_token_provider is not None
    assert derived._azure_ad_token_provider() == "entra-token"
    assert derived.max_retries == 0


def test_async_token_provider_cannot_be_made_sync() -> None:
    async def token() -> str:
        return "entra-token"

    async_client = openai.AsyncAzureOpenAI(
        azure_endpoint="https://res.openai.azure.com",
        azure_ad_token_provider=token,
        api_version="2024-10-21",
    )
    with pytest.raises(ConfigurationError, match="client="):
        resolve_provider(async_client=async_client, env={})


def test_both_clients_must_agree(providers: list[Provider]) -> None:
    client = openai.OpenAI(api_key="k", base_url="http://a/v1")
    async_client = openai.AsyncOpenAI(api_key="k", base_url="http://b/v1")
    with pytest.raises(ConfigurationError):
        resolve_provider(client=client, async_client=async_client, env={})
    same = openai.AsyncOpenAI(api_key="k", base_url="http://a/v1", max_retries=0)
    provider = resolve(providers, client=client, async_client=same)
    assert provider.async_client is same
    client.close()


def test_endpoint_has_no_query_or_credentials(providers: list[Provider]) -> None:
    provider = resolve(providers, base_url="http://user:SECRET@localhost:8080/v1/?token=SECRET")
    assert provider.endpoint == "http://localhost:8080/v1"
    assert public_endpoint("https://res.openai.azure.com/openai/?api-version=x") == (
        "https://res.openai.azure.com/openai"
    )
    assert "SECRET" not in repr(provider)


# --- modes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_pairs() -> Iterator[dict[ProviderKind, tuple[openai.OpenAI, openai.AsyncOpenAI]]]:
    """One sync/async client pair per kind, built once (building clients is not free)."""
    azure: dict[str, Any] = {
        "azure_endpoint": "https://res.openai.azure.com",
        "azure_deployment": "dep",
        "api_key": "k",
        "api_version": "2024-10-21",
        "max_retries": 0,
    }
    local: dict[str, Any] = {
        "api_key": "k",
        "base_url": "http://localhost:11434/v1",
        "max_retries": 0,
    }
    pairs: dict[ProviderKind, tuple[openai.OpenAI, openai.AsyncOpenAI]] = {
        ProviderKind.OPENAI: (
            openai.OpenAI(api_key="k", max_retries=0, base_url="https://api.openai.com/v1"),
            openai.AsyncOpenAI(api_key="k", max_retries=0, base_url="https://api.openai.com/v1"),
        ),
        ProviderKind.AZURE: (openai.AzureOpenAI(**azure), openai.AsyncAzureOpenAI(**azure)),
        ProviderKind.COMPATIBLE: (openai.OpenAI(**local), openai.AsyncOpenAI(**local)),
    }
    yield pairs
    for client, _ in pairs.values():
        client.close()


Pairs = dict[ProviderKind, tuple[openai.OpenAI, openai.AsyncOpenAI]]


def with_pair(pairs: Pairs, kind: ProviderKind, **kwargs: object) -> Provider:
    client, async_client = pairs[kind]
    kwargs.setdefault("env", {})
    return resolve_provider(client=client, async_client=async_client, **kwargs)  # type: ignore[arg-type]


def test_mode_table(client_pairs: Pairs, providers: list[Provider]) -> None:
    for kind, expected in [
        (ProviderKind.OPENAI, instructor.Mode.JSON_SCHEMA),
        (ProviderKind.AZURE, instructor.Mode.JSON_SCHEMA),
        (ProviderKind.COMPATIBLE, instructor.Mode.JSON),
    ]:
        provider = with_pair(client_pairs, kind)
        assert provider.kind is kind
        assert provider.mode is expected
    # and when the clients are built from settings
    assert resolve(providers, env=OPENAI_ENV).mode is instructor.Mode.JSON_SCHEMA
    assert resolve(providers, base_url="http://localhost/v1").mode is instructor.Mode.JSON


def test_mode_override(client_pairs: Pairs) -> None:
    openai_kind = ProviderKind.OPENAI
    assert with_pair(client_pairs, openai_kind, mode="tools").mode is instructor.Mode.TOOLS
    md_json = instructor.Mode.MD_JSON
    assert with_pair(client_pairs, openai_kind, mode=md_json).mode is md_json
    env = {"VIEWFINDER_MODE": "md_json"}
    assert with_pair(client_pairs, ProviderKind.AZURE, env=env).mode is md_json
    assert with_pair(client_pairs, openai_kind, env=env, mode="json").mode is instructor.Mode.JSON
    assert with_pair(client_pairs, openai_kind, mode="JSON_SCHEMA_MODE").mode is (
        instructor.Mode.JSON_SCHEMA
    )


def test_invalid_mode() -> None:
    with pytest.raises(InvalidOptionError):
        resolve_provider(env=OPENAI_ENV, mode="xml")
    with pytest.raises(InvalidOptionError):
        resolve_provider(env=OPENAI_ENV, mode=instructor.Mode.PARALLEL_TOOLS)
    with pytest.raises(ConfigurationError, match="VIEWFINDER_MODE"):
        resolve_provider(env={**OPENAI_ENV, "VIEWFINDER_MODE": "yaml"})


def test_supported_modes_are_registered_for_instructor_openai() -> None:
    for mode in MODE_NAMES.values():
        assert mode_registry.is_registered(InstructorProvider.OPENAI, mode)


# --- sampling -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "llava:13b"])
def test_standard_sampling(model: str) -> None:
    assert not is_reasoning_model(model)
    assert sampling_params(model, max_output_tokens=1000, seed=7) == {
        "temperature": 0.0,
        "seed": 7,
        "max_tokens": 1000,
    }


@pytest.mark.parametrize(
    "model",
    ["o1", "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1", "openai/gpt-5", "O3"],
)
def test_reasoning_sampling(model: str) -> None:
    assert is_reasoning_model(model)
    params = sampling_params(model, max_output_tokens=2048, seed=7)
    assert params == {"max_completion_tokens": 2048}
    assert "temperature" not in params
    assert "seed" not in params


def test_sampling_rejects_zero_tokens() -> None:
    with pytest.raises(InvalidOptionError):
        sampling_params("gpt-4o", max_output_tokens=0)
