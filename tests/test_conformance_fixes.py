"""What Microsoft's own tests found wrong on the service side (issue 13), one test each."""

from __future__ import annotations

import importlib
import inspect
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from local_server import post_analyze
from PIL import Image

from viewfinder import ImageAnalyzer
from viewfinder.compat.rest import MAX_CONFIDENCE, MIN_CONFIDENCE, from_azure_json, to_azure_json
from viewfinder.compat.server import ANALYZE_PATH, MODEL_VERSION_HEADER, ServerSettings
from viewfinder.compat.service import (
    AZURE_MODEL_VERSION,
    ServiceError,
    check_options,
    service_error_for,
)
from viewfinder.errors import ImageSizeError
from viewfinder.prepare import prepare_image
from viewfinder.testing import compact_answer
from viewfinder.testing.simulator import Simulator

KEY = "fixes-test-key-0123456789"
CAT = (Path(__file__).parent / "assets" / "chelsea.png").read_bytes()
SIZE_ERROR = service_error_for(ImageSizeError("empty", limit="bytes")).body()
CAPTION = compact_answer({"caption": {"text": "a cat", "confidence": 0.9}})


@pytest.fixture
def analyzer(sim: Simulator) -> Iterator[ImageAnalyzer]:
    made = ImageAnalyzer(
        base_url=sim.base_url, api_key="test-key-placeholder", model="gpt-4.1-mini", cache=False
    )
    yield made
    made.close()


# --- model_version ----------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "latest", "2023-10-01"])
def test_the_services_model_versions_are_accepted(
    analyzer: ImageAnalyzer, version: str | None
) -> None:
    plan = check_options(analyzer, ["caption"], model_version=version)
    assert [f.azure_name for f in plan.options.features] == ["caption"]


def test_another_model_version_is_refused(analyzer: ImageAnalyzer) -> None:
    with pytest.raises(ServiceError) as refused:
        check_options(analyzer, ["caption"], model_version="2022-01-01")
    assert (refused.value.status, refused.value.inner_code) == (400, "InvalidModelVersion")


@pytest.mark.parametrize("reported", [None, AZURE_MODEL_VERSION])
def test_what_results_report_is_a_setting_and_the_true_version_a_header(
    serve: Callable[[ServerSettings], str],
    sim: Simulator,
    analyzer: ImageAnalyzer,
    reported: str | None,
) -> None:
    sim.script(CAPTION)
    endpoint = serve(ServerSettings(api_keys=(KEY,), analyzer=analyzer, model_version=reported))
    response = post_analyze(
        endpoint, "api-version=2023-10-01&features=caption&model-version=2023-10-01", key=KEY,
        image=CAT,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    true_version = response.headers[MODEL_VERSION_HEADER]
    assert true_version.startswith("gpt-4.1-mini+")
    body: dict[str, Any] = response.json()
    assert body["modelVersion"] == (reported or true_version)


# --- confidences ------------------------------------------------------------------------


def _every_confidence(data: Any) -> list[float]:
    if isinstance(data, dict):
        own = [data["confidence"]] if "confidence" in data else []
        return own + [c for value in data.values() for c in _every_confidence(value)]
    if isinstance(data, list):
        return [c for value in data for c in _every_confidence(value)]
    return []


def test_the_azure_json_keeps_confidences_strictly_between_0_and_1() -> None:
    """A model may say 0 or 100 %; the service never does, and code written for it (and
    Microsoft's tests) asserts `0 < c < 1`. The native result keeps the model's number."""
    box = {"x": 10, "y": 10, "w": 100, "h": 100}
    polygon = [{"x": 10, "y": 10}, {"x": 110, "y": 10}, {"x": 110, "y": 30}, {"x": 10, "y": 30}]
    sure, unsure = {"confidence": 1.0}, {"confidence": 0.0}
    said = {
        "modelVersion": "gpt-4.1-mini+abc",
        "captionResult": {"text": "a cat", "confidence": 1.0},
        "denseCaptionsResult": {"values": [{"text": "a cat", **sure, "boundingBox": box}]},
        "metadata": {"width": 451, "height": 300},
        "tagsResult": {"values": [{"name": "cat", "confidence": 1.0}]},
        "objectsResult": {"values": [{"boundingBox": box, "tags": [{"name": "cat", **unsure}]}]},
        "readResult": {"blocks": [{"lines": [{"text": "CAT", "boundingPolygon": polygon, "words": [
            {"text": "CAT", "boundingPolygon": polygon, "confidence": 0.0}]}]}]},
        "peopleResult": {"values": [{"boundingBox": box, "confidence": 0.0}]},
    }  # fmt: skip
    result = from_azure_json(said)
    assert result.caption is not None and result.caption.confidence == 1.0
    confidences = _every_confidence(to_azure_json(result))
    assert sorted(confidences) == [MIN_CONFIDENCE] * 3 + [MAX_CONFIDENCE] * 3


# --- the first dense caption ------------------------------------------------------------

DIFFERENTLY_WORDED = {
    "caption": {"text": "a tabby cat lying on a wooden floor", "confidence": 0.91},
    "dense_captions": [
        {"text": "a cat on the floor", "confidence": 0.9, "box": [0, 0, 1000, 1000]},
        {"text": "the face of a cat", "confidence": 0.8, "box": [400, 100, 700, 600]},
    ],
}


@pytest.mark.parametrize("answer_format", ["compact", "verbose"])
def test_the_first_dense_caption_is_the_caption_in_either_answer_format(
    make_analyzer: Callable[..., ImageAnalyzer],
    sim: Simulator,
    cat_image: Path,
    answer_format: str,
) -> None:
    """Microsoft asserts it; the compact format makes it so, the verbose one now agrees."""
    sim.script(
        compact_answer(DIFFERENTLY_WORDED) if answer_format == "compact" else DIFFERENTLY_WORDED
    )
    analyzer = make_analyzer(cache=False, answer_format=answer_format)
    result = analyzer.analyze(cat_image, ["caption", "dense_captions"])
    assert result.caption is not None and result.dense_captions is not None
    first = result.dense_captions[0]
    assert first.text == result.caption.text == "a tabby cat lying on a wooden floor"
    assert (first.box.x, first.box.y, first.box.width, first.box.height) == (0, 0, 451, 300)
    assert [d.text for d in result.dense_captions[1:]] == ["the face of a cat"]


# --- size limits ------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("size", [(50, 50), (50, 400), (400, 50), (16_000, 60), (60, 16_000)])
def test_sides_of_exactly_50_or_16000_are_refused(size: tuple[int, int]) -> None:
    """The service takes images "greater than 50 x 50 and less than 16,000 x 16,000"."""
    with pytest.raises(ImageSizeError, match="more than 50 and less than 16000"):
        prepare_image(_png(*size))


def test_a_side_of_51_is_accepted() -> None:
    prepared = prepare_image(_png(51, 51))
    assert (prepared.width, prepared.height) == (51, 51)


def test_the_server_refuses_50_x_50_with_the_services_size_error(
    serve: Callable[[ServerSettings], str], analyzer: ImageAnalyzer
) -> None:
    endpoint = serve(ServerSettings(api_keys=(KEY,), analyzer=analyzer))
    response = post_analyze(endpoint, "api-version=2023-10-01&features=caption", key=KEY,
                            image=_png(50, 50))  # fmt: skip
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("InvalidRequest", "Image size is not valid")
    assert error["innererror"]["code"] == "InvalidImageSize"


# --- docstrings -------------------------------------------------------------------------


def test_the_clients_say_an_unknown_api_version_is_a_404() -> None:
    """It is (test_azure_client.test_an_unsupported_api_version_fails_every_call)."""
    client = importlib.import_module("viewfinder.azure").ImageAnalysisClient
    doc = inspect.getdoc(client) or ""
    api_version = doc[doc.index("api_version:") : doc.index("analyzer:")]
    assert "404" in api_version and "400" not in api_version
    # The async client's arguments are the sync one's.
    async_doc = inspect.getdoc(importlib.import_module("viewfinder.azure.aio").ImageAnalysisClient)
    assert "as for `viewfinder.azure.ImageAnalysisClient`" in (async_doc or "")


# --- multipart/form-data ----------------------------------------------------------------


@pytest.mark.parametrize("field", ["file", "image", "anything"])
def test_the_server_takes_the_image_as_a_form_part(
    serve: Callable[[ServerSettings], str], sim: Simulator, analyzer: ImageAnalyzer, field: str
) -> None:
    """The REST reference allows `multipart/form-data` for the binary image."""
    sim.script(CAPTION)
    endpoint = serve(ServerSettings(api_keys=(KEY,), analyzer=analyzer))
    with httpx2.Client(trust_env=False, timeout=10) as client:
        response = client.post(
            f"{endpoint}{ANALYZE_PATH}?api-version=2023-10-01&features=caption",
            headers={"Ocp-Apim-Subscription-Key": KEY},
            data={"note": "not the image"},
            files={field: ("chelsea.png", CAT, "image/png")},
        )
    assert response.status_code == 200, response.text
    assert response.json()["captionResult"]["text"] == "a cat"
    assert response.json()["metadata"] == {"width": 451, "height": 300}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"--x\r\n\r\n\r\n--x--\r\n", SIZE_ERROR["error"]["message"]),
        (b"no parts at all", "The multipart/form-data body must hold the image in a part."),
    ],
)
def test_a_form_without_an_image_is_the_services_400(
    serve: Callable[[ServerSettings], str], analyzer: ImageAnalyzer, body: bytes, message: str
) -> None:
    endpoint = serve(ServerSettings(api_keys=(KEY,), analyzer=analyzer))
    headers = {"Ocp-Apim-Subscription-Key": KEY, "Content-Type": "multipart/form-data; boundary=x"}
    response = post_analyze(
        endpoint, "api-version=2023-10-01&features=caption", key=KEY, image=body, headers=headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
