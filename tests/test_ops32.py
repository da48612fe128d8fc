"""The Computer Vision 3.2 image operations on `viewfinder serve`, proven with Microsoft's
3.2 SDK (`azure-cognitiveservices-vision-computervision`), and their mapping.

One server for the module (`served`), its model side the simulator answering every
request with `ANSWER` (scripted, not a model: it never looks at the image; the keys a
request's features do not ask for are ignored). The SDK's calls run twice (`connect`):
against the server over HTTP, and through the import swap
(`viewfinder.azure.computervision`, in-process), with the same answers expected. The
mapping (`viewfinder.compat.map32`) is checked on Microsoft's spec example: read into a
result by `results32`, written back equal.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx2
import pytest
from azure.cognitiveservices.vision.computervision import ComputerVisionClient
from azure.cognitiveservices.vision.computervision.models import (
    ComputerVisionErrorResponseException,
    Details,
    VisualFeatureTypes,
)
from local_server import Serving
from msrest.authentication import CognitiveServicesCredentials
from msrest.exceptions import HttpOperationError
from PIL import Image

import viewfinder.azure.computervision as swap
from viewfinder import ImageAnalyzer, RetryPolicy
from viewfinder.compat import map32, ops32, rest32
from viewfinder.compat.results32 import from_cv32_json
from viewfinder.compat.server import ServerSettings, create_app
from viewfinder.compat.service import ServiceError
from viewfinder.schemas.features import ReadBlock, ReadLine, ReadResult, ReadWord
from viewfinder.schemas.geometry import BoundingBox, Point, Polygon
from viewfinder.schemas.result import ImageAnalysisResult, ImageMetadata
from viewfinder.testing import compact_answer
from viewfinder.testing.simulator import Simulator

KEY = "ops32-test-key-5e1a"
ASSETS = Path(__file__).parent / "assets"
CAT = (ASSETS / "chelsea.png").read_bytes()  # 451 x 300
ANSWER = compact_answer(
    {
        "tags": [{"name": "pangolin", "confidence": 0.9, "hint": "mammal"}],
        "objects": [
            {
                "name": "cat",
                "confidence": 0.8,
                "box": [100, 100, 600, 900],
                "parents": ["feline", "animal"],
            }
        ],
        "smart_crops": {"box": [100, 0, 600, 1000]},
        "read": [{"text": "CAT CAFE", "box": [100, 100, 500, 200], "confidence": 0.9}],
        "categories": [{"name": "animal_cat", "confidence": 0.9}],
        "description": {
            "captions": [
                {"text": "a cat", "confidence": 0.9},
                {"text": "a small cat", "confidence": 0.5},
            ],
            "tags": ["cat", "indoor"],
        },
        "brands": [{"name": "Contoso", "confidence": 0.7, "box": [0, 0, 200, 100]}],
        "adult": {"adult_score": 0.01, "racy_score": 0.02, "gore_score": 0.0},
        "landmarks": [{"name": "Eiffel Tower", "confidence": 0.8}],
    }
)


class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(CAT)))
        self.end_headers()
        self.wfile.write(CAT)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _analyzer(sim: Simulator) -> ImageAnalyzer:
    return ImageAnalyzer(
        base_url=sim.base_url,
        api_key="test-key-placeholder",
        model="gpt-4.1-mini",
        cache=False,
        retry=RetryPolicy(max_attempts=1),
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Simulator]]:
    """(endpoint, image URL, simulator): one server, one image server, one simulator."""
    images = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    Thread(target=images.serve_forever, daemon=True).start()
    with Simulator(default=lambda body: ANSWER) as sim:
        analyzer = _analyzer(sim)
        settings = ServerSettings(
            api_keys=(KEY,),
            analyzer=analyzer,
            allow_hosts=("127.0.0.1",),
            read_store=tmp_path_factory.mktemp("ops32") / "read",
        )
        serving = Serving(create_app(settings))
        try:
            url = f"http://127.0.0.1:{images.server_address[1]}/cat.png"
            yield serving.start(), url, sim
        finally:
            serving.stop()
            analyzer.close()
            images.shutdown()
            images.server_close()


@pytest.fixture(scope="module", params=["server", "swap"])
def connect(
    request: pytest.FixtureRequest, served: tuple[str, str, Simulator]
) -> Iterator[Callable[[str], ComputerVisionClient]]:
    """Microsoft's client presenting a key: against the server, or the import swap (its
    own app with the server's keys and URL policy, its analyzer on the same simulator)."""
    made: list[ComputerVisionClient] = []

    def connect(key: str) -> ComputerVisionClient:
        if request.param == "server":
            made.append(ComputerVisionClient(served[0], CognitiveServicesCredentials(key)))
        else:
            made.append(
                swap.ComputerVisionClient(
                    "https://fake-resource.cognitiveservices.azure.com",
                    CognitiveServicesCredentials(key),
                    analyzer=_analyzer(served[2]),
                    api_keys=[KEY],
                    allow_hosts=["127.0.0.1"],
                )
            )
        return made[-1]

    yield connect
    for client in made:
        client.close()


@pytest.fixture(scope="module")
def client(connect: Callable[[str], ComputerVisionClient]) -> ComputerVisionClient:
    return connect(KEY)


@pytest.fixture(scope="module")
def url(served: tuple[str, str, Simulator]) -> str:
    return served[1]


def _stream(data: bytes = CAT) -> io.BytesIO:
    return io.BytesIO(data)


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def _inner(exc: pytest.ExceptionInfo[ComputerVisionErrorResponseException]) -> tuple[int, str]:
    error = exc.value.error.error
    return exc.value.response.status_code, error.innererror.code


# --- Microsoft's SDK against the server ---------------------------------------------------


def test_thumbnails_are_the_requested_size(client: ComputerVisionClient, url: str) -> None:
    cases = [
        (client.generate_thumbnail_in_stream, 100, 80, True, _stream()),  # 4.0's ratio range
        (client.generate_thumbnail_in_stream, 200, 50, True, _stream()),  # outside it
        (client.generate_thumbnail, 30, 40, False, url),  # resized, no model request
    ]
    for method, width, height, smart, image in cases:
        data = b"".join(method(width, height, image, smart_cropping=smart))
        with Image.open(io.BytesIO(data)) as thumb:
            assert (thumb.size, thumb.format) == ((width, height), "PNG")


def test_area_of_interest(client: ComputerVisionClient, url: str) -> None:
    for result in (
        client.get_area_of_interest(url),
        client.get_area_of_interest_in_stream(_stream()),
    ):
        box = result.area_of_interest
        # grid [100, 0, 600, 1000] on 451 x 300
        assert (box.x, box.y, box.w, box.h) == (45, 0, 226, 300)
        assert (result.metadata.width, result.metadata.height) == (451, 300)
        assert result.metadata.format == "Png"
        assert result.request_id and result.model_version.startswith("gpt-4.1-mini+")


def test_printed_text(client: ComputerVisionClient) -> None:
    result = client.recognize_printed_text_in_stream(_stream(), language="en")
    assert (result.language, result.orientation, result.text_angle) == ("en", "Up", 0.0)
    (region,) = result.regions
    (line,) = region.lines
    assert [w.text for w in line.words] == ["CAT", "CAFE"]
    assert line.bounding_box == region.bounding_box == "45,30,181,30"
    plain = client.recognize_printed_text_in_stream(_stream(), detect_orientation=False)
    assert (plain.language, plain.orientation) == ("unk", "NotDetected")


def test_tag_detect_describe(client: ComputerVisionClient, url: str) -> None:
    tags = client.tag_image_in_stream(_stream())
    assert [(t.name, t.confidence, t.hint) for t in tags.tags] == [("pangolin", 0.9, "mammal")]
    detected = client.detect_objects(url)
    (found,) = detected.objects
    assert (found.object_property, found.parent.object_property) == ("cat", "feline")
    assert found.parent.parent.object_property == "animal"
    assert (found.rectangle.x, found.rectangle.w) == (45, 226)
    described = client.describe_image_in_stream(_stream(), max_candidates=2)
    assert [c.text for c in described.captions] == ["a cat", "a small cat"]
    assert described.tags == ["cat", "indoor"]


def test_analyze_every_feature(client: ComputerVisionClient) -> None:
    result = client.analyze_image_in_stream(
        _stream(), visual_features=list(VisualFeatureTypes), details=[Details.landmarks]
    )
    assert [(c.name, c.score) for c in result.categories] == [("animal_cat", 0.9)]
    assert result.categories[0].detail is None  # landmarks go on building_ / outdoor_
    assert result.tags[0].hint == "mammal"
    assert result.description.captions[0].text == "a cat"
    assert result.objects[0].parent.object_property == "feline"
    assert result.brands[0].name == "Contoso"
    assert (result.adult.is_adult_content, result.adult.racy_score) == (False, 0.02)
    assert result.color.dominant_color_background and result.image_type is not None
    assert isinstance(result.faces, list)  # OpenCV's detector, from the pixels
    assert result.metadata.format == "Png"


def test_models(client: ComputerVisionClient, url: str) -> None:
    listed = client.list_models()
    assert [(m.name, m.categories) for m in listed.models_property] == [
        ("celebrities", ["people_"]),
        ("landmarks", ["building_"]),
    ]
    landmarks = client.analyze_image_by_domain("landmarks", url)
    assert landmarks.result == {"landmarks": [{"name": "Eiffel Tower", "confidence": 0.8}]}
    with pytest.raises(ComputerVisionErrorResponseException) as refused:
        client.analyze_image_by_domain("celebrities", url)
    assert _inner(refused) == (403, "NotSupportedFeature")
    assert "Limited Access" in refused.value.error.error.message
    with pytest.raises(ComputerVisionErrorResponseException) as details:
        client.analyze_image_in_stream(_stream(), details=[Details.celebrities])
    assert _inner(details) == (403, "NotSupportedFeature")


def test_errors(
    client: ComputerVisionClient,
    connect: Callable[[str], ComputerVisionClient],
    served: tuple[str, str, Simulator],
) -> None:
    sim = served[2]
    before = len(sim.requests)
    stranger = connect("wrong")
    with pytest.raises(ComputerVisionErrorResponseException) as bad_key:
        stranger.tag_image_in_stream(_stream())
    assert bad_key.value.response.status_code == 401
    with pytest.raises(ComputerVisionErrorResponseException) as bad_image:
        client.tag_image_in_stream(_stream(b"not an image at all"))
    assert _inner(bad_image) == (400, "InvalidImageFormat")
    with pytest.raises(ComputerVisionErrorResponseException) as small:
        client.detect_objects_in_stream(_stream(_png(40, 40)))
    assert _inner(small) == (400, "InvalidImageSize")
    with pytest.raises(ComputerVisionErrorResponseException) as language:
        client.tag_image_in_stream(_stream(), language="xx")
    assert _inner(language) == (400, "NotSupportedLanguage")
    with pytest.raises(HttpOperationError) as size:
        b"".join(client.generate_thumbnail_in_stream(0, 2000, _stream()))
    assert size.value.response.status_code == 400
    assert size.value.response.json()["error"]["innererror"]["code"] == "InvalidThumbnailSize"
    assert len(sim.requests) == before  # every refusal before the model


def test_what_the_sdk_cannot_send(served: tuple[str, str, Simulator]) -> None:
    """An unknown visual feature (the SDK refuses it before sending), a wrong body type,
    and a multipart body (the SDK sends octet-stream only)."""
    headers = {"Ocp-Apim-Subscription-Key": KEY, "Content-Type": "application/octet-stream"}
    with httpx2.Client(trust_env=False, timeout=10) as http:
        feature = http.post(
            f"{served[0]}/vision/v3.2/analyze?visualFeatures=Tags,Smell",
            headers=headers,
            content=CAT,
        )
        media = http.post(
            f"{served[0]}/vision/v3.2/tag",
            headers={**headers, "Content-Type": "text/plain"},
            content=b"hello",
        )
        form = http.post(
            f"{served[0]}/vision/v3.2/tag",
            headers={"Ocp-Apim-Subscription-Key": KEY},
            files={"image": ("cat.png", CAT, "image/png")},
        )
    assert form.status_code == 200, form.text  # the multipart/form-data binary body (§1)
    assert form.json()["tags"] == [{"name": "pangolin", "confidence": 0.9, "hint": "mammal"}]
    assert feature.status_code == 400
    assert feature.json()["error"]["innererror"]["code"] == "NotSupportedVisualFeature"
    assert media.status_code == 415
    assert media.json()["error"]["innererror"]["code"] == "UnsupportedMediaType"


# --- the mapping, without a server --------------------------------------------------------


def test_the_spec_example_maps_back() -> None:
    """Microsoft's analyze example (§8.1) -> ImageAnalysisResult -> the same body, but
    what viewfinder does not serve: celebrities (Limited Access) and faces' age/gender."""
    example = json.loads((ASSETS / "cv32" / "SuccessfulAnalyzeImageWithUrl.json").read_text())
    body = example["responses"]["200"]["body"]
    result = from_cv32_json(body)
    written = rest32.to_json(
        map32.analysis(result, request_id=body["requestId"], image_format="Jpeg")
    )
    expected = json.loads(json.dumps(body))
    del expected["categories"][1]["detail"]
    for face in expected["faces"]:
        del face["age"], face["gender"]
    assert written == expected


def _box(x: int, y: int, w: int, h: int) -> Polygon:
    corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    return Polygon(points=[Point(x=px, y=py) for px, py in corners])


def test_ocr_and_domain_mapping() -> None:
    words = [
        ReadWord(text="A", polygon=_box(462, 379, 41, 73), confidence=0.9),
        ReadWord(text="GOAL", polygon=_box(523, 379, 153, 73), confidence=0.9),
    ]
    line = ReadLine(text="A GOAL", polygon=_box(462, 379, 214, 74), words=words)
    read = ReadResult(blocks=[ReadBlock(lines=[line])])
    ocr = rest32.to_json(map32.ocr(read, language="en", detect_orientation=True, model_version="m"))
    assert ocr["regions"][0]["lines"][0] == {
        "boundingBox": "462,379,214,74",
        "words": [
            {"boundingBox": "462,379,41,73", "text": "A"},
            {"boundingBox": "523,379,153,73", "text": "GOAL"},
        ],
    }
    empty = map32.ocr(
        ReadResult(blocks=[]), language="unk", detect_orientation=True, model_version="m"
    )
    assert (empty.orientation, empty.regions) == ("NotDetected", [])
    result = ImageAnalysisResult(model_version="m", metadata=ImageMetadata(width=10, height=5))
    assert rest32.to_json(map32.landmarks(result, request_id="r", image_format=None))["result"] == {
        "landmarks": []
    }


@pytest.mark.parametrize(
    ("box", "ratio", "expected"),
    [
        ((100, 100, 50, 50), 2.0, (75, 100, 100, 50)),  # widened around its centre
        ((100, 100, 50, 50), 0.5, (100, 75, 50, 100)),  # heightened
        ((0, 0, 400, 300), 4.0, (0, 100, 400, 100)),  # too wide for the image: cut
        ((380, 250, 20, 50), 1.0, (350, 250, 50, 50)),  # moved inside
    ],
)
def test_fit_ratio(
    box: tuple[int, int, int, int], ratio: float, expected: tuple[int, int, int, int]
) -> None:
    x, y, w, h = box
    fitted = ops32.fit_ratio(BoundingBox(x=x, y=y, width=w, height=h), ratio, 400, 300)
    assert (fitted.x, fitted.y, fitted.width, fitted.height) == expected


def test_visual_features_and_details() -> None:
    assert [f.value for f in ops32.visual_features([], [])] == ["categories"]
    chosen = ops32.visual_features(["TAGS", "imagetype"], ["landmarks"])
    assert [f.value for f in chosen] == ["categories", "tags", "image_type", "landmarks"]
    for values, details, code in (
        (["Smell"], [], "NotSupportedVisualFeature"),
        ([], ["Pets"], "InvalidDetails"),
        ([], ["Celebrities"], "NotSupportedFeature"),
    ):
        with pytest.raises(ServiceError) as refused:
            ops32.visual_features(values, details)
        assert refused.value.inner_code == code
