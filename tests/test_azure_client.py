"""`viewfinder.azure`: the azure-ai-vision-imageanalysis look-alike, read through the SDK.

The cassettes in `cassettes/test_azure_client/` were recorded against
`viewfinder.testing.simulator` (scripted answers, not a model's; see `cassettes/README.md`).
Results are read only through the SDK's own model classes, and errors only through
azure-core's exceptions, as code written for Microsoft's SDK reads them.
"""

from __future__ import annotations

import importlib
import inspect
import io
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azure.ai.vision.imageanalysis as sdk
import azure.ai.vision.imageanalysis.aio as sdk_aio
import azure.ai.vision.imageanalysis.models as sdk_models
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.core.rest import AsyncHttpResponse, HttpRequest, HttpResponse

import viewfinder as vf
import viewfinder.azure.aio as vf_aio
import viewfinder.azure.models as vf_models
from viewfinder.azure import ImageAnalysisClient
from viewfinder.azure._client import InProcessTransport, azure_error
from viewfinder.azure.models import VisualFeatures
from viewfinder.compat.rest import to_azure_json
from viewfinder.compat.service import ServiceError, unauthorized
from viewfinder.testing import compact_answer
from viewfinder.testing.simulator import Reply, Simulator

ENDPOINT = "https://fake-resource-name.cognitiveservices.azure.com"
KEY = "0" * 32
ALL = [
    VisualFeatures.TAGS,
    VisualFeatures.OBJECTS,
    VisualFeatures.CAPTION,
    VisualFeatures.DENSE_CAPTIONS,
    VisualFeatures.READ,
    VisualFeatures.SMART_CROPS,
    VisualFeatures.PEOPLE,
]
SDK_MODEL_NAMES = {
    "CaptionResult",
    "CropRegion",
    "DenseCaption",
    "DenseCaptionsResult",
    "DetectedObject",
    "DetectedPerson",
    "DetectedTag",
    "DetectedTextBlock",
    "DetectedTextLine",
    "DetectedTextWord",
    "ImageAnalysisResult",
    "ImageBoundingBox",
    "ImageMetadata",
    "ImagePoint",
    "ObjectsResult",
    "PeopleResult",
    "ReadResult",
    "SmartCropsResult",
    "TagsResult",
    "VisualFeatures",
}

CAT_ANSWER: dict[str, Any] = {
    "caption": {"text": "a tabby cat lying on a wooden floor", "confidence": 0.91},
    "dense_captions": [
        {
            "text": "a tabby cat lying on a wooden floor",
            "confidence": 0.9,
            "box": [0, 0, 1000, 1000],
        },
        {"text": "the face of a cat", "confidence": 0.8, "box": [400, 100, 700, 600]},
    ],
    "tags": [
        {"name": "Cat", "confidence": 0.98},
        {"name": "indoor", "confidence": 0.7},
        {"name": "whiskers", "confidence": 0.85},
    ],
    "objects": [{"name": "cat", "confidence": 0.93, "box": [100, 50, 900, 950]}],
    "people": [{"box": [0, 0, 200, 500], "confidence": 0.4}],
    "smart_crops": {"box": [300, 100, 800, 900]},
    "read": [
        {
            "text": "CHELSEA THE CAT",
            "box": [0, 900, 300, 1000],
            "confidence": 0.6,
            "words": [
                {"text": "CHELSEA", "box": [0, 900, 140, 1000], "confidence": 0.7},
                {"text": "THE", "box": [150, 900, 210, 1000], "confidence": 0.8},
                {"text": "CAT", "box": [220, 900, 300, 1000], "confidence": 0.9},
            ],
        },
        {"text": "no. 1", "box": [800, 0, 1000, 50], "confidence": 0.5},
    ],
}
"""The cat as the verbose format writes it: words with their own boxes and confidences."""
CAT_COMPACT = compact_answer(CAT_ANSWER)
"""The same cat in the default compact format: lines only, words estimated from them."""
CAPTION_AND_TAGS: dict[str, Any] = compact_answer(
    {"caption": CAT_ANSWER["caption"], "tags": CAT_ANSWER["tags"]}
)


@pytest.fixture
def image_data(cat_image: Path) -> bytes:
    return cat_image.read_bytes()


@pytest.fixture
def client(make_analyzer: Callable[..., vf.ImageAnalyzer]) -> Iterator[ImageAnalysisClient]:
    with ImageAnalysisClient(
        ENDPOINT, AzureKeyCredential(KEY), analyzer=make_analyzer(cache=False), retry_total=0
    ) as made:  # the SDK does not retry: one model call per SDK call
        yield made


@pytest.fixture
def image_server(image_data: bytes) -> Iterator[str]:
    """A tiny http.server on the loopback interface serving chelsea.png."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(image_data)))
            self.end_headers()
            self.wfile.write(image_data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/chelsea.png"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _spy(analyzer: vf.ImageAnalyzer, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record the native results the client wraps (it answers its call plan with `run` /
    `arun`)."""
    seen: list[Any] = []
    for name in ("run", "arun"):
        original = getattr(analyzer, name)

        if name == "run":

            def sync(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                seen.append(_original(*args, **kwargs))
                return seen[-1]

            monkeypatch.setattr(analyzer, name, sync)
        else:

            async def asynchronous(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                seen.append(await _original(*args, **kwargs))
                return seen[-1]

            monkeypatch.setattr(analyzer, name, asynchronous)
    return seen


def _check_cat(result: sdk_models.ImageAnalysisResult, *, model_words: bool) -> None:
    """The scripted cat, read through the SDK's own attributes.

    `model_words`: the verbose answer gave word boxes and confidences; the compact answer
    gives lines only, so words are estimated from their line and carry its confidence.
    """
    assert isinstance(result, sdk_models.ImageAnalysisResult)
    assert result.metadata.width == 451 and result.metadata.height == 300
    assert result.model_version.startswith("gpt-4.1-mini+")
    assert result.caption is not None
    assert result.caption.text == "a tabby cat lying on a wooden floor"
    assert result.caption.confidence == 0.91
    assert result.dense_captions is not None
    dense = result.dense_captions.list
    assert [d.text for d in dense] == [result.caption.text, "the face of a cat"]
    assert (dense[0].bounding_box.x, dense[0].bounding_box.width) == (0, 451)
    # [400, 100, 700, 600] on the 0-1000 grid of a 451x300 image
    box = dense[1].bounding_box
    assert (box.x, box.y, box.width, box.height) == (180, 30, 136, 150)
    assert result.tags is not None
    assert [(t.name, t.confidence) for t in result.tags.list] == [
        ("cat", 0.98),
        ("whiskers", 0.85),
        ("indoor", 0.7),
    ]
    assert result.objects is not None and len(result.objects.list) == 1
    cat = result.objects.list[0]
    assert [t.name for t in cat.tags] == ["cat"] and cat.tags[0].confidence == 0.93
    assert (cat.bounding_box.x, cat.bounding_box.width) == (45, 361)
    assert result.people is not None and len(result.people.list) == 1
    person = result.people.list[0]
    assert person.confidence == 0.4 and person.bounding_box.height == 150
    assert result.smart_crops is not None
    assert [c.aspect_ratio for c in result.smart_crops.list] == [0.9, 1.33]
    assert result.smart_crops.list[0].bounding_box.height == 300
    assert result.read is not None and len(result.read.blocks) == 1
    lines = result.read.blocks[0].lines
    assert [line.text for line in lines] == ["CHELSEA THE CAT", "no. 1"]
    assert [w.text for w in lines[0].words] == ["CHELSEA", "THE", "CAT"]
    assert [w.confidence for w in lines[0].words] == ([0.7, 0.8, 0.9] if model_words else [0.6] * 3)
    assert [w.text for w in lines[1].words] == ["no.", "1"]
    assert all(len(w.bounding_polygon) == 4 for line in lines for w in line.words)
    first = lines[0].words[0].bounding_polygon[0]
    assert isinstance(first, sdk_models.ImagePoint) and (first.x, first.y) == (0, 270)


# --- the surface ------------------------------------------------------------------------


def test_models_are_microsofts_own_classes() -> None:
    assert set(sdk_models.__all__) == SDK_MODEL_NAMES == set(vf_models.__all__)
    for name in SDK_MODEL_NAMES:
        assert getattr(vf_models, name) is getattr(sdk_models, name)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (ImageAnalysisClient, sdk.ImageAnalysisClient),
        (vf_aio.ImageAnalysisClient, sdk_aio.ImageAnalysisClient),
    ],
    ids=["sync", "aio"],
)
def test_methods_have_the_sdks_signatures(ours: type[Any], theirs: type[Any]) -> None:
    def shape(function: Any) -> list[tuple[str, Any, Any]]:
        parameters = inspect.signature(function).parameters.values()
        return [(p.name, p.kind, p.default) for p in parameters]

    for name in ("analyze", "analyze_from_url"):
        assert shape(getattr(ours, name)) == shape(getattr(theirs, name))
        is_async = inspect.iscoroutinefunction(getattr(theirs, name))
        assert inspect.iscoroutinefunction(getattr(ours, name)) is is_async
    assert inspect.iscoroutinefunction(ours.close) is inspect.iscoroutinefunction(theirs.close)
    init = inspect.signature(ours.__init__).parameters
    assert list(init)[1:3] == ["endpoint", "credential"]
    assert init["api_version"].kind is inspect.Parameter.KEYWORD_ONLY
    assert init["api_version"].default == "2023-10-01"


def test_importing_without_the_azure_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [
        n for n in sys.modules if n == "viewfinder.azure" or n.startswith("viewfinder.azure.")
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "azure.ai.vision.imageanalysis.models", None)
    with pytest.raises(ImportError, match=r"pip install 'viewfinder\[azure\]'"):
        importlib.import_module("viewfinder.azure")


def test_construction_accepts_azure_core_keywords_and_refuses_conflicts(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
) -> None:
    analyzer = make_analyzer(cache=False)
    with ImageAnalysisClient(
        ENDPOINT, AzureKeyCredential(KEY), analyzer=analyzer, logging_enable=True, retry_total=0
    ) as client:
        assert client.analyzer is analyzer and client.api_version == "2023-10-01"
    with pytest.raises(vf.ConfigurationError, match="analyzer"):
        ImageAnalysisClient(ENDPOINT, AzureKeyCredential(KEY), analyzer=analyzer, model="x")


def test_close_leaves_a_given_analyzer_open(
    make_analyzer: Callable[..., vf.ImageAnalyzer], monkeypatch: pytest.MonkeyPatch, sim: Simulator
) -> None:
    given = make_analyzer(cache=False)
    closed: list[vf.ImageAnalyzer] = []

    def spy_close(analyzer: vf.ImageAnalyzer) -> None:
        original = analyzer.close

        def close() -> None:
            closed.append(analyzer)
            original()

        monkeypatch.setattr(analyzer, "close", close)

    spy_close(given)
    ImageAnalysisClient(ENDPOINT, AzureKeyCredential(KEY), analyzer=given).close()
    assert closed == []
    with ImageAnalysisClient(
        ENDPOINT, AzureKeyCredential(KEY), base_url=sim.base_url, api_key="k", cache=False
    ) as owner:
        spy_close(owner.analyzer)
    assert closed == [owner.analyzer]


# --- results --------------------------------------------------------------------------


@pytest.mark.vcr
def test_all_features_read_through_the_sdk_models(
    sim: Simulator, image_data: bytes, monkeypatch: pytest.MonkeyPatch, vcr: Any
) -> None:
    sim.script(CAT_COMPACT)
    with ImageAnalysisClient(
        endpoint=ENDPOINT,
        credential=AzureKeyCredential(KEY),
        base_url=sim.base_url,
        api_key="test-key-placeholder",
        model="gpt-4.1-mini",
        cache=False,
    ) as client:
        seen = _spy(client.analyzer, monkeypatch)
        result = client.analyze(
            image_data=image_data,
            visual_features=ALL,
            smart_crops_aspect_ratios=[0.9, 1.33],
            gender_neutral_caption=True,
            model_version="latest",
        )
    _check_cat(result, model_words=False)
    assert result.as_dict() == to_azure_json(seen[0])
    assert result["captionResult"]["text"] == "a tabby cat lying on a wooden floor"
    assert result["objectsResult"]["values"][0]["boundingBox"] == {
        "x": 45,
        "y": 15,
        "w": 361,
        "h": 270,
    }
    assert result["modelVersion"] == result.model_version
    assert vcr.play_count + len(sim.requests) == 1  # replayed or recorded: one request


@pytest.mark.vcr
def test_unrequested_features_are_none_and_strings_are_accepted(
    client: ImageAnalysisClient, sim: Simulator, image_data: bytes
) -> None:
    sim.script(CAPTION_AND_TAGS)
    result = client.analyze(io.BytesIO(image_data), ["caption", "Tags"], language="en")  # type: ignore[arg-type]
    assert result.caption is not None and result.caption.text.startswith("a tabby cat")
    assert result.tags is not None and result.tags.list[0].name == "cat"
    for name in ("dense_captions", "objects", "people", "smart_crops", "read"):
        assert getattr(result, name) is None
    assert set(result.as_dict()) == {"modelVersion", "captionResult", "metadata", "tagsResult"}


@pytest.mark.vcr(ignore_hosts=["localhost"])
def test_analyze_from_url_fetches_the_image(
    client: ImageAnalysisClient, sim: Simulator, image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIEWFINDER_ALLOW_HOSTS", "127.0.0.1")  # the image server is loopback
    sim.script(CAPTION_AND_TAGS)
    result = client.analyze_from_url(
        image_url=image_server, visual_features=[VisualFeatures.CAPTION, VisualFeatures.TAGS]
    )
    assert result.metadata.width == 451 and result.metadata.height == 300
    assert result.caption is not None and result.caption.confidence == 0.91


# --- errors ---------------------------------------------------------------------------


def _call(client: ImageAnalysisClient, data: bytes, **overrides: Any) -> None:
    arguments: dict[str, Any] = {"visual_features": [VisualFeatures.CAPTION], **overrides}
    client.analyze(data, **arguments)


@pytest.mark.parametrize(
    ("overrides", "code", "message", "inner_code"),
    [
        (
            {"visual_features": ["caption", "faces"]},
            "InvalidRequest",
            "Analyze query is invalid.",
            "NotSupportedVisualFeature",
        ),
        (
            {"smart_crops_aspect_ratios": [2.5]},
            "InvalidRequest",
            "Analyze query is invalid.",
            "BadArgument",
        ),
        (
            {"model_version": "2022-01-01"},
            "InvalidRequest",
            "Analyze query is invalid.",
            "InvalidModelVersion",
        ),
        ({"language": "xx"}, "InvalidRequest", "Analyze query is invalid.", "NotSupportedLanguage"),
        (
            {"visual_features": []},
            "InvalidRequest",
            "Either 'features' or 'model-name' needs to be specified in the query parameter.",
            None,
        ),
        (
            {"image_data": b"not an image at all"},
            "InvalidRequest",
            "Image format is not valid",
            "InvalidImageFormat",
        ),
    ],
    ids=["unknown-feature", "ratio-2.5", "model-version", "language", "no-features", "corrupt"],
)
def test_refusals_are_the_services_400s(
    client: ImageAnalysisClient,
    sim: Simulator,
    image_data: bytes,
    overrides: dict[str, Any],
    code: str,
    message: str,
    inner_code: str | None,
) -> None:
    arguments = dict(overrides)
    data = arguments.pop("image_data", image_data)
    with pytest.raises(HttpResponseError) as caught:
        _call(client, data, **arguments)
    error = caught.value
    assert type(error) is HttpResponseError
    assert (error.status_code, error.reason) == (400, "Bad Request")
    assert error.error is not None
    assert (error.error.code, error.error.message) == (code, message)
    assert error.error.innererror.get("code") == inner_code
    assert error.message.startswith(f"({code}) {message}\nCode: {code}\nMessage: {message}")
    assert isinstance(error.response, HttpResponse)
    assert error.response.headers["x-ms-error-code"] == code
    assert sim.requests == []  # refused before any model call


def test_an_unsupported_api_version_fails_every_call(
    make_analyzer: Callable[..., vf.ImageAnalyzer], image_data: bytes
) -> None:
    with (
        ImageAnalysisClient(
            ENDPOINT, AzureKeyCredential(KEY), api_version="2099-01-01", analyzer=make_analyzer()
        ) as client,
        pytest.raises(HttpResponseError) as caught,
    ):
        client.analyze(image_data, [VisualFeatures.CAPTION])
    # as the service answers an unknown api-version (and as the server does)
    assert isinstance(caught.value, ResourceNotFoundError)
    assert caught.value.status_code == 404 and caught.value.error is not None
    assert caught.value.error.code == "404" and caught.value.error.message == "Resource not found"


def test_a_local_path_is_not_an_image_url(client: ImageAnalysisClient, cat_image: Path) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.analyze_from_url(str(cat_image), [VisualFeatures.CAPTION])
    assert caught.value.status_code == 400 and caught.value.error is not None
    assert caught.value.error.message == "The provided image url is not accessible."


@pytest.mark.vcr
def test_a_model_side_401_is_the_servers_misconfiguration(
    client: ImageAnalysisClient, sim: Simulator, image_data: bytes
) -> None:
    sim.script(Reply(status=401, error_message="Incorrect API key provided"))
    with pytest.raises(HttpResponseError) as caught:
        client.analyze(image_data, [VisualFeatures.CAPTION])
    error = caught.value
    assert not isinstance(error, ClientAuthenticationError)  # the caller's key was not refused
    assert (error.status_code, error.reason) == (500, "Internal Server Error")
    assert error.error is not None and error.error.code == "InternalServerError"
    assert "test-key-placeholder" not in str(error) and KEY not in str(error)


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (
            Reply(status=429, error_message="Rate limit reached", headers={"retry-after-ms": "5"}),
            429,
        ),
        (Reply(status=500, error_message="boom"), 503),
    ],
    ids=["429", "500"],
)
def test_retries_do_not_multiply(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    image_data: bytes,
    monkeypatch: pytest.MonkeyPatch,
    reply: Reply,
    status: int,
) -> None:
    """A model side failing forever: the SDK's 3 retries wait, each costs one model call
    (the analyzer's 3 attempts are not stacked under them: 4, not 12)."""
    sim.script(*[reply] * 20)
    waits: list[float] = []
    monkeypatch.setattr(InProcessTransport, "sleep", lambda self, seconds: waits.append(seconds))
    analyzer = make_analyzer(cache=False)  # FAST_RETRY: 3 attempts of its own
    with (
        ImageAnalysisClient(ENDPOINT, AzureKeyCredential(KEY), analyzer=analyzer) as client,
        pytest.raises(HttpResponseError) as caught,
    ):
        client.analyze(image_data, [VisualFeatures.CAPTION])
    assert caught.value.status_code == status
    assert caught.value.response.headers["Retry-After"] == "1"
    assert len(waits) == 3  # the SDK's RetryPolicy, honouring Retry-After
    assert len(sim.requests) == 4


def test_401_and_404_are_the_sdks_subclasses() -> None:
    request = HttpRequest("POST", f"{ENDPOINT}/computervision/imageanalysis:analyze")
    denied = azure_error(unauthorized(), request)
    assert isinstance(denied, ClientAuthenticationError)
    assert (denied.status_code, denied.reason) == (401, "PermissionDenied")
    assert denied.error is not None and denied.error.code == "401"
    missing = azure_error(ServiceError(404, "404", "Resource not found"), request)
    assert isinstance(missing, ResourceNotFoundError)
    assert missing.message == "(404) Resource not found\nCode: 404\nMessage: Resource not found"


# --- async ------------------------------------------------------------------------------


@pytest.mark.vcr
async def test_aio_all_features(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    image_data: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim.script(CAT_ANSWER)
    analyzer = make_analyzer(cache=False, answer_format="verbose")  # word boxes from the model
    seen = _spy(analyzer, monkeypatch)
    async with vf_aio.ImageAnalysisClient(
        ENDPOINT, AzureKeyCredential(KEY), analyzer=analyzer
    ) as client:
        result = await client.analyze(
            image_data, ALL, smart_crops_aspect_ratios=[0.9, 1.33], gender_neutral_caption=True
        )
    await analyzer.aclose()
    _check_cat(result, model_words=True)
    assert result.as_dict() == to_azure_json(seen[0])


async def test_aio_errors_carry_an_async_response(
    make_analyzer: Callable[..., vf.ImageAnalyzer], image_data: bytes
) -> None:
    analyzer = make_analyzer(cache=False)
    async with vf_aio.ImageAnalysisClient(
        ENDPOINT, AzureKeyCredential(KEY), analyzer=analyzer
    ) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.analyze(image_data, [VisualFeatures.CAPTION, "faces"])
        with pytest.raises(HttpResponseError) as corrupt:
            await client.analyze_from_url("ftp://example.com/cat.png", [VisualFeatures.CAPTION])
    await analyzer.aclose()
    assert caught.value.status_code == 400 and caught.value.error is not None
    assert caught.value.error.innererror["code"] == "NotSupportedVisualFeature"
    assert isinstance(caught.value.response, AsyncHttpResponse)
    assert corrupt.value.error is not None
    assert corrupt.value.error.message == "The provided image url is not accessible."
