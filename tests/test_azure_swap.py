"""The import swap is Microsoft's own client: azure-core's features through the in-process
transport (keys, hooks, logging, per-call params, send_request), sync and async."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.ai.vision.imageanalysis as sdk
import azure.ai.vision.imageanalysis.aio as sdk_aio
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.rest import HttpRequest

import viewfinder as vf
import viewfinder.azure as vf_sdk
import viewfinder.azure.aio as vf_aio
from viewfinder.testing import compact_answer
from viewfinder.testing.entra import LocalTenant, serve_jwks
from viewfinder.testing.simulator import Simulator

ENDPOINT = "https://fake-resource-name.cognitiveservices.azure.com"
CAPTION = compact_answer({"caption": {"text": "a cat", "confidence": 0.9}})


@pytest.fixture
def image_data(cat_image: Path) -> bytes:
    return cat_image.read_bytes()


def test_the_clients_are_microsofts_and_models_is_an_attribute() -> None:
    assert issubclass(vf_sdk.ImageAnalysisClient, sdk.ImageAnalysisClient)
    assert issubclass(vf_aio.ImageAnalysisClient, sdk_aio.ImageAnalysisClient)
    assert vf_sdk.models.VisualFeatures is sdk.models.VisualFeatures  # Microsoft's test base
    assert vf_sdk.VERSION == sdk.VERSION


def test_a_wrong_key_is_the_services_401_when_keys_are_configured(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, image_data: bytes
) -> None:
    analyzer = make_analyzer(cache=False)
    with vf_sdk.ImageAnalysisClient(
        ENDPOINT, AzureKeyCredential("wrong"), analyzer=analyzer, api_keys=["right"]
    ) as client:
        with pytest.raises(ClientAuthenticationError) as caught:
            client.analyze(image_data, [vf_sdk.models.VisualFeatures.CAPTION])
        assert caught.value.status_code == 401 and caught.value.error is not None
        assert caught.value.error.code == "401"
        assert sim.requests == []
        sim.script(CAPTION)
        client._config.credential.update("right")
        result = client.analyze(image_data, [vf_sdk.models.VisualFeatures.CAPTION])
    assert result.caption is not None and result.caption.text == "a cat"


def test_keys_come_from_the_environment_and_none_accepts_any(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    image_data: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIEWFINDER_API_KEYS", "a,b")
    with (
        vf_sdk.ImageAnalysisClient(
            ENDPOINT, AzureKeyCredential("c"), analyzer=make_analyzer(cache=False)
        ) as client,
        pytest.raises(ClientAuthenticationError),
    ):
        client.analyze(image_data, ["caption"])  # type: ignore[list-item]
    monkeypatch.delenv("VIEWFINDER_API_KEYS")
    sim.script(CAPTION)
    with vf_sdk.ImageAnalysisClient(
        ENDPOINT, AzureKeyCredential("any Azure key"), analyzer=make_analyzer(cache=False)
    ) as client:
        assert client.analyze(image_data, ["caption"]).caption is not None  # type: ignore[list-item]


def test_entra_tokens_are_checked_as_the_server_checks_them(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    image_data: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = LocalTenant()
    stranger = LocalTenant(tenant=tenant.tenant, key=tenant.key)  # same tenant, not allowed
    with serve_jwks(tenant) as jwks:
        monkeypatch.setenv("VIEWFINDER_ENTRA_TENANT", tenant.tenant)
        monkeypatch.setenv("VIEWFINDER_ENTRA_ALLOW", tenant.principal)
        monkeypatch.setenv("VIEWFINDER_ENTRA_JWKS_URL", jwks.url)
        with (
            vf_sdk.ImageAnalysisClient(
                ENDPOINT, stranger.credential(), analyzer=make_analyzer(cache=False)
            ) as client,
            pytest.raises(ClientAuthenticationError),
        ):
            client.analyze(image_data, ["caption"])  # type: ignore[list-item]
        assert sim.requests == []
        sim.script(CAPTION)
        with vf_sdk.ImageAnalysisClient(
            ENDPOINT, tenant.credential(), analyzer=make_analyzer(cache=False)
        ) as client:
            result = client.analyze(image_data, ["caption"])  # type: ignore[list-item]
        assert jwks.fetches == 2  # each client fetched the key set once: checked for real
    assert result.caption is not None and result.caption.text == "a cat"


def test_hooks_logging_params_and_send_request(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    image_data: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.script(CAPTION)
    seen: list[Any] = []
    with (
        vf_sdk.ImageAnalysisClient(
            ENDPOINT,
            AzureKeyCredential("k"),
            analyzer=make_analyzer(cache=False),
            logging_enable=True,
            raw_request_hook=lambda request: seen.append(("request", request.http_request.url)),
        ) as client,
        caplog.at_level(logging.DEBUG, logger="azure.core.pipeline.policies"),
    ):
        result = client.analyze(
            image_data,
            ["caption"],  # type: ignore[list-item]
            params={"language": "en"},  # a per-call query parameter
            raw_response_hook=lambda response: seen.append(
                ("response", response.http_response.status_code)
            ),
        )
    assert result.caption is not None
    assert seen[0][0] == "request" and "language=en" in seen[0][1]
    assert seen[1] == ("response", 200)
    assert "Request URL" in caplog.text  # logging_enable: azure-core's network trace


def test_per_call_params_reach_the_service(
    make_analyzer: Callable[..., vf.ImageAnalyzer], image_data: bytes
) -> None:
    statuses: list[int] = []
    with vf_sdk.ImageAnalysisClient(
        ENDPOINT, AzureKeyCredential("k"), analyzer=make_analyzer(cache=False)
    ) as client:
        with pytest.raises(HttpResponseError) as caught:
            client.analyze(
                image_data,
                ["caption"],  # type: ignore[list-item]
                params={"language": "xx"},
                raw_response_hook=lambda r: statuses.append(r.http_response.status_code),
            )
        assert caught.value.error is not None
        assert caught.value.error.innererror["code"] == "NotSupportedLanguage"
        assert statuses == [400]  # the hook ran on the service's answer
        response = client.send_request(
            HttpRequest("GET", f"{ENDPOINT}/computervision/imageanalysis:analyze")
        )
        assert response.status_code == 405
        missing = client.send_request(HttpRequest("GET", f"{ENDPOINT}/nowhere"))
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "404"


async def test_aio_keys_hooks_and_results(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, image_data: bytes
) -> None:
    analyzer = make_analyzer(cache=False)
    statuses: list[int] = []
    async with vf_aio.ImageAnalysisClient(
        ENDPOINT,
        AzureKeyCredential("wrong"),
        analyzer=analyzer,
        api_keys="right",
        raw_response_hook=lambda r: statuses.append(r.http_response.status_code),
    ) as client:
        with pytest.raises(ClientAuthenticationError):
            await client.analyze(image_data, ["caption"])  # type: ignore[list-item]
    async with vf_aio.ImageAnalysisClient(
        ENDPOINT, AzureKeyCredential("right"), analyzer=analyzer, api_keys="right"
    ) as client:
        sim.script(CAPTION)
        result = await client.analyze(image_data, ["caption"])  # type: ignore[list-item]
        with pytest.raises(HttpResponseError) as caught:
            await client.analyze(image_data, ["caption"], params={"language": "xx"})  # type: ignore[list-item]
    await analyzer.aclose()
    assert statuses == [401]
    assert result.caption is not None and result.caption.text == "a cat"
    assert caught.value.status_code == 400 and caught.value.error is not None
    assert caught.value.error.innererror["code"] == "NotSupportedLanguage"
