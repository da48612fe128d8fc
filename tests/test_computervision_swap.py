"""The Computer Vision 3.2 import swap (`viewfinder.azure.computervision`): Microsoft's own
3.2 client answered in-process. The image operations' SDK calls run through it in
`tests/test_ops32.py` (parametrized over both paths); here: Read through the swap with
`test_read32.py`'s answers and checks, Microsoft's quickstart's calls (reference §10) with
the import changed, retries that do not multiply, keys, configuration and closing.

One simulator (scripted answers, not a model) and one swap client for the module; the
images behind URLs come from a loopback image server (allow-listed, as the server's tests
do).
"""

from __future__ import annotations

import io
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azure.cognitiveservices.vision.computervision as sdk
import pytest
import requests
from msrest.authentication import CognitiveServicesCredentials
from msrest.exceptions import ClientRequestError
from PIL import Image
from test_ops32 import ANSWER, CAT, _Images
from test_read32 import (
    LANDSCAPE,
    PORTRAIT,
    TEXT_ANSWER,
    _by_orientation,
    _check_text,
    _ocr_error,
    _pdf,
)

import viewfinder.azure.computervision as swap
from viewfinder import ConfigurationError, ImageAnalyzer, RetryPolicy
from viewfinder.azure.computervision import ComputerVisionClient
from viewfinder.azure.computervision.models import (
    ComputerVisionErrorResponseException,
    ComputerVisionOcrErrorException,
    Details,
    OperationStatusCodes,
    ReadOperationResult,
    VisualFeatureTypes,
)
from viewfinder.testing.simulator import Reply, Simulator

KEY = "cv32-swap-key-41c7"
ENDPOINT = "https://fake-resource.cognitiveservices.azure.com"
PENDING = (OperationStatusCodes.not_started, OperationStatusCodes.running)


def _analyzer(sim: Simulator, retry: RetryPolicy | None = None) -> ImageAnalyzer:
    return ImageAnalyzer(
        base_url=sim.base_url,
        api_key="test-key-placeholder",
        model="gpt-4.1-mini",
        cache=False,
        retry=retry or RetryPolicy(max_attempts=1),
    )


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(default=lambda body: ANSWER) as server:
        yield server


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """The cat, served on 127.0.0.1 (allow-listed for the swap's URL fetches)."""
    images = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=images.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{images.server_address[1]}/cat.png"
    images.shutdown()
    images.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def client(sim: Simulator) -> Iterator[ComputerVisionClient]:
    with ComputerVisionClient(
        ENDPOINT,
        CognitiveServicesCredentials(KEY),
        analyzer=_analyzer(sim),
        api_keys=[KEY],
        allow_hosts=["127.0.0.1"],
    ) as made:
        yield made


def _read(client: ComputerVisionClient, raw: Any) -> ReadOperationResult:
    """Poll as the quickstart does (the id: the last segment of Operation-Location)."""
    location = raw.headers["Operation-Location"]
    operation_id = location.split("/")[-1]
    assert location == f"{ENDPOINT}/vision/v3.2/read/analyzeResults/{operation_id}"
    deadline = time.monotonic() + 20
    while True:
        result: ReadOperationResult = client.get_read_result(operation_id)
        if result.status not in PENDING or time.monotonic() > deadline:
            return result
        time.sleep(0.01)


def test_the_client_is_microsofts() -> None:
    assert issubclass(ComputerVisionClient, sdk.ComputerVisionClient)
    assert swap.models.ImageAnalysis is sdk.models.ImageAnalysis
    assert swap.ComputerVisionClientConfiguration is sdk.ComputerVisionClientConfiguration
    assert sdk.__version__ == swap.VERSION
    assert set(sdk.models.__all__) <= set(dir(swap.models))


# --- Read, with test_read32's answers and checks -------------------------------------------


def test_read_an_upload_and_a_url_with_every_option(
    client: ComputerVisionClient, sim: Simulator, url: str
) -> None:
    sim.script(TEXT_ANSWER, TEXT_ANSWER)
    raw = client.read_in_stream(io.BytesIO(CAT), raw=True)
    assert (raw.response.status_code, raw.response.content) == (202, b"")
    _check_text(_read(client, raw))
    raw = client.read(
        url, language="en", pages=["1"], model_version="2022-04-30", reading_order="natural",
        raw=True,
    )  # fmt: skip
    result = _read(client, raw)
    _check_text(result)
    assert result.analyze_result.read_results[0].language == "en"


def test_read_a_two_page_pdf(client: ComputerVisionClient, sim: Simulator) -> None:
    before = sim.stats.total
    sim.default = _by_orientation
    try:
        raw = client.read_in_stream(io.BytesIO(_pdf(LANDSCAPE, PORTRAIT)), raw=True)
        result = _read(client, raw)
    finally:
        sim.default = lambda body: ANSWER
    first, second = result.analyze_result.read_results
    assert [(p.page, p.unit, p.width, p.height) for p in (first, second)] == [
        (1, "inch", 6, 4),
        (2, "inch", 4, 6),
    ]
    assert [first.lines[0].text, second.lines[0].text] == ["PAGE ONE", "PAGE TWO"]
    assert sim.stats.total - before == 2  # one model request a page


def test_read_errors_are_the_ocr_error(client: ComputerVisionClient, sim: Simulator) -> None:
    with pytest.raises(ComputerVisionOcrErrorException) as unknown:
        client.get_read_result("00000000-0000-4000-8000-000000000000")
    assert unknown.value.response.status_code == 404
    with pytest.raises(ComputerVisionOcrErrorException) as corrupt:
        client.read_in_stream(io.BytesIO(b"not an image"), raw=True)
    assert _ocr_error(corrupt.value, 400)[0] == "InvalidImage"  # as test_read32 expects
    sim.script(Reply(status=400, error_message="scripted refusal"))
    failed = _read(client, client.read_in_stream(io.BytesIO(CAT), raw=True))
    assert failed.status == OperationStatusCodes.failed and failed.analyze_result is None


# --- Microsoft's quickstart (reference §10), its calls with the import changed -------------


def test_the_quickstarts_calls(client: ComputerVisionClient, url: str) -> None:
    """`ImageAnalysisQuickstart.py` and `ComputerVisionQuickstart.py` (with its pre-split
    URL calls), call by call as §10 lists them; their image URLs are the loopback cat.
    Celebrities are refused (Limited Access, README's 3.2 table): the quickstart's
    all-features call asks for them, so it runs once with them (403) and once without."""

    def local_image() -> io.BytesIO:
        return io.BytesIO(CAT)

    assert client.describe_image_in_stream(local_image()).captions[0].text == "a cat"
    categories = client.analyze_image_in_stream(local_image(), ["categories"])
    assert categories.categories[0].name == "animal_cat"
    every = [
        VisualFeatureTypes.categories, VisualFeatureTypes.brands, VisualFeatureTypes.adult,
        VisualFeatureTypes.color, VisualFeatureTypes.description, VisualFeatureTypes.faces,
        VisualFeatureTypes.image_type, VisualFeatureTypes.objects, VisualFeatureTypes.tags,
    ]  # fmt: skip
    with pytest.raises(ComputerVisionErrorResponseException) as refused:
        client.analyze_image(url, every, [Details.celebrities, Details.landmarks])
    assert refused.value.error.error.innererror.code == "NotSupportedFeature"
    remote = client.analyze_image(url, every, [Details.landmarks])
    assert remote.brands[0].name == "Contoso" and remote.objects[0].object_property == "cat"
    assert client.tag_image_in_stream(local_image()).tags[0].name == "pangolin"
    for feature in ("faces", "adult", "color", "image_type", "brands"):
        analysis = client.analyze_image_in_stream(local_image(), [VisualFeatureTypes[feature]])
        assert analysis.metadata.width == 451
    assert analysis.brands[0].confidence == 0.7
    assert client.analyze_image_in_stream(local_image(), ["adult"]).adult.is_adult_content is False
    landmarks = client.analyze_image_by_domain_in_stream("landmarks", local_image())
    assert landmarks.result["landmarks"][0]["name"] == "Eiffel Tower"
    with pytest.raises(ComputerVisionErrorResponseException):
        client.analyze_image_by_domain_in_stream("celebrities", local_image())
    assert client.detect_objects_in_stream(local_image()).objects[0].object_property == "cat"
    for thumb in (
        client.generate_thumbnail_in_stream(100, 100, local_image(), True),
        client.generate_thumbnail(100, 100, url, True),
    ):
        with Image.open(io.BytesIO(b"".join(chunk for chunk in thumb))) as image:
            assert image.size == (100, 100)
    # the pre-split quickstart's URL variants
    assert client.describe_image(url).captions[0].text == "a cat"
    assert client.tag_image(url).tags[0].name == "pangolin"
    assert client.analyze_image_by_domain("landmarks", url).result["landmarks"]
    assert client.detect_objects(url).objects[0].rectangle.w == 226
    # ComputerVisionQuickstart.py: Read of a URL and of an opened file
    for raw in (client.read(url, raw=True), client.read_in_stream(local_image(), raw=True)):
        result = _read(client, raw)
        assert result.status == OperationStatusCodes.succeeded
        lines = result.analyze_result.read_results[0].lines
        assert [line.text for line in lines] == ["CAT CAFE"] and len(lines[0].bounding_box) == 8


# --- retries, keys, configuration, closing -------------------------------------------------


def test_a_failing_model_costs_the_engines_attempts_once(sim: Simulator) -> None:
    """msrest retries a 5xx 3 times by default; through the swap each SDK call is one
    attempt, so a model side that keeps failing is asked the engine's 2 attempts, not 8."""
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01)
    failing = Reply(status=500, error_message="scripted outage", headers={"retry-after": "0"})
    with ComputerVisionClient(ENDPOINT, analyzer=_analyzer(sim, retry)) as client:
        assert client.config.retry_policy.retries == 3  # msrest's own, left as it is
        before = len(sim.requests)
        sim.script(failing, failing)
        with pytest.raises(ComputerVisionErrorResponseException) as caught:
            client.tag_image_in_stream(io.BytesIO(CAT))
        assert caught.value.response.status_code >= 500
        assert len(sim.requests) - before == 2
        sim.script(failing)  # the engine's second attempt succeeds: the call too
        assert client.tag_image_in_stream(io.BytesIO(CAT)).tags[0].name == "pangolin"
        assert len(sim.requests) - before == 4


def test_keys_are_checked_only_when_configured(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIEWFINDER_API_KEYS", "a,b")
    before = len(sim.requests)
    with ComputerVisionClient(
        ENDPOINT, CognitiveServicesCredentials("c"), analyzer=_analyzer(sim)
    ) as stranger:
        with pytest.raises(ComputerVisionErrorResponseException) as bad_key:
            stranger.tag_image_in_stream(io.BytesIO(CAT))
        assert bad_key.value.response.status_code == 401
        with pytest.raises(ComputerVisionOcrErrorException) as bad_read:
            stranger.read_in_stream(io.BytesIO(CAT), raw=True)
        assert bad_read.value.response.status_code == 401
    assert len(sim.requests) == before
    monkeypatch.delenv("VIEWFINDER_API_KEYS")
    with ComputerVisionClient(
        ENDPOINT, CognitiveServicesCredentials("any Azure key"), analyzer=_analyzer(sim)
    ) as anyone:
        assert anyone.tag_image_in_stream(io.BytesIO(CAT)).tags[0].name == "pangolin"


def test_the_model_side_comes_from_the_environment_and_options(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-placeholder")
    client = ComputerVisionClient(model="gpt-4.1-mini", cache=False)  # no endpoint, no key
    try:
        assert client.tag_image_in_stream(io.BytesIO(CAT)).tags[0].name == "pangolin"
        assert "gpt-4.1-mini" in repr(client)
    finally:
        client.close()
    with pytest.raises(ConfigurationError, match="analyzer"):
        ComputerVisionClient(analyzer=_analyzer(sim), model="gpt-4.1")


def test_closing_stops_the_app_and_removes_the_read_store(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint is a real Azure name: `--block-network` would refuse any socket, so
    every call above was answered in-process."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    threads = threading.active_count()
    client = ComputerVisionClient(ENDPOINT, analyzer=_analyzer(sim))
    assert threading.active_count() == threads + 1  # the private event loop's thread
    sim.script(TEXT_ANSWER)
    _check_text(_read(client, client.read_in_stream(io.BytesIO(CAT), raw=True)))
    assert [p.name[:15] for p in tmp_path.iterdir()] == ["viewfinder-read"]
    client.close()
    client.close()  # idempotent
    assert threading.active_count() == threads
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ClientRequestError) as closed:
        client.tag_image_in_stream(io.BytesIO(CAT))
    assert isinstance(closed.value.inner_exception, requests.ConnectionError)
