"""Azure AI Search's image-analysis skill on `viewfinder serve` (`viewfinder.compat.skill`):
the custom Web API skill contract, called as an indexer calls it.

Requests are shaped as `azure-vectorize-and-search.md` B.1's sample input and B.7's
worked example (the skill's parameters in the `uri` query, the key in `httpHeaders`);
answers are checked field by field against B.1's documented output. The model side is the
simulator answering `ANSWER` (scripted, not a model). One server for the module; the
timeout test starts a second one with a short timeout.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from local_server import Serving
from PIL import Image

from viewfinder import ImageAnalyzer, RetryPolicy
from viewfinder.compat.server import ServerSettings, create_app
from viewfinder.compat.skill import SKILL_PATH, SkillSettings, skill_outputs
from viewfinder.errors import ConfigurationError
from viewfinder.schemas.cv32 import DetectedFace
from viewfinder.schemas.geometry import BoundingBox
from viewfinder.schemas.result import ImageAnalysisResult, ImageMetadata
from viewfinder.testing import compact_answer
from viewfinder.testing.simulator import Reply, Simulator

KEY = "skill-test-key-7c2d"
ASSETS = Path(__file__).parent / "assets"
QUERY = (
    "visualFeatures=adult,brands,categories,description,faces,objects,tags"
    "&details=landmarks&defaultLanguageCode=en"
)
ANSWER = compact_answer(
    {
        "tags": [{"name": "person", "confidence": 0.99, "hint": "human"}],
        "objects": [
            {"name": "person", "confidence": 0.93, "box": [0, 0, 500, 1000], "parents": ["human"]}
        ],
        "categories": [{"name": "people_", "confidence": 0.84}],
        "description": {
            "captions": [{"text": "a person in a spacesuit", "confidence": 0.48}],
            "tags": ["person", "outdoor"],
        },
        "brands": [{"name": "NASA", "confidence": 0.9, "box": [0, 0, 200, 100]}],
        "adult": {"adult_score": 0.09, "racy_score": 0.07, "gore_score": 0.01},
        "landmarks": [],
    }
)
HELD: list[threading.Event] = []
"""Requests to hold: the next model request waits on the first event (the timeout test)."""


def _answer(body: dict[str, Any]) -> Any:
    if HELD:
        HELD.pop(0).wait(10)
    return ANSWER


def _jpeg(path: str, size: int = 256) -> str:
    """A normalized image (B.2): base64 JPEG."""
    picture = Image.open(ASSETS / path).convert("RGB")
    picture.thumbnail((size, size))
    out = io.BytesIO()
    picture.save(out, format="JPEG")
    return base64.b64encode(out.getvalue()).decode()


ASTRONAUT = _jpeg("people/astronaut.png")


def _normalized(data: str) -> dict[str, Any]:
    """`/document/normalized_images/*` as B.1's sample input passes it."""
    return {
        "data": data,
        "width": 256,
        "height": 256,
        "originalWidth": 512,
        "originalHeight": 512,
        "rotationFromOriginal": 0,
        "contentOffset": 0,
        "pageNumber": 0,
    }


def _server(sim: Simulator, tmp: Path, **skill: Any) -> tuple[Serving, ImageAnalyzer]:
    analyzer = ImageAnalyzer(
        base_url=sim.base_url,
        api_key="test-key-placeholder",
        model="gpt-4.1-mini",
        cache=False,
        retry=RetryPolicy(max_attempts=1),
    )
    settings = ServerSettings(
        api_keys=(KEY,), analyzer=analyzer, read_store=tmp, skill=SkillSettings(**skill)
    )
    return Serving(create_app(settings)), analyzer


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(default=_answer) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def endpoint(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    serving, analyzer = _server(sim, tmp_path_factory.mktemp("skill"), batch_size=4)
    try:
        yield serving.start()
    finally:
        serving.stop()
        analyzer.close()


def _call(
    endpoint: str, values: list[dict[str, Any]], query: str = QUERY, key: str = KEY
) -> httpx2.Response:
    """POST as the indexer does: the skill's `httpHeaders` key, JSON, the `uri`'s query."""
    with httpx2.Client(trust_env=False, timeout=20) as client:
        return client.post(
            f"{endpoint}{SKILL_PATH}?{query}",
            json={"values": values},
            headers={"Ocp-Apim-Subscription-Key": key},
        )


def _by_id(response: httpx2.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return {item["recordId"]: item for item in response.json()["values"]}


# --- the contract ---------------------------------------------------------------------------


def test_outputs_are_the_built_in_skills(endpoint: str, sim: Simulator) -> None:
    """B.1's sample input in; B.1's documented output names and shapes out, one model
    request per record."""
    before = sim.stats.total
    items = _by_id(_call(endpoint, [{"recordId": "1", "data": {"image": _normalized(ASTRONAUT)}}]))
    assert sim.stats.total - before == 1
    item = items["1"]
    assert (item["errors"], item["warnings"]) == (None, None)
    data = item["data"]
    assert set(data) == {
        "adult",
        "brands",
        "categories",
        "description",
        "faces",
        "objects",
        "tags",
    }
    assert data["categories"][0]["name"] == "people_"
    assert set(data["categories"][0]) <= {"name", "score", "detail"}
    assert data["adult"] == {
        "isAdultContent": False,
        "isRacyContent": False,
        "isGoryContent": False,
        "adultScore": 0.09,
        "racyScore": 0.07,
        "goreScore": 0.01,
    }
    assert data["tags"] == [{"name": "person", "confidence": 0.99, "hint": "human"}]
    assert data["description"] == {
        "tags": ["person", "outdoor"],
        "captions": [{"text": "a person in a spacesuit", "confidence": 0.48}],
    }
    (obj,) = data["objects"]
    assert set(obj) == {"rectangle", "object", "confidence", "parent"}
    assert set(obj["rectangle"]) == {"x", "y", "w", "h"}
    assert (obj["object"], obj["parent"]["object"]) == ("person", "human")
    (brand,) = data["brands"]
    assert (brand["name"], set(brand["rectangle"])) == ("NASA", {"x", "y", "w", "h"})
    assert brand["rectangle"]["w"] <= 256  # pixels of the normalized image received
    for face in data["faces"]:  # OpenCV's detector, from the pixels
        assert set(face) == {"faceBoundingBox"}
        assert [set(p) for p in face["faceBoundingBox"]] == [{"x", "y"}] * 4


def test_faces_are_the_skills_four_corners() -> None:
    """B.1's sample: `faceBoundingBox` corners clockwise from top-left, not `faceRectangle`."""
    result = ImageAnalysisResult(
        model_version="m",
        metadata=ImageMetadata(width=2000, height=1000),
        faces=[DetectedFace(box=BoundingBox(x=1601, y=395, width=52, height=52), confidence=0.9)],
    )
    assert skill_outputs(result) == {
        "faces": [
            {
                "faceBoundingBox": [
                    {"x": 1601, "y": 395},
                    {"x": 1653, "y": 395},
                    {"x": 1653, "y": 447},
                    {"x": 1601, "y": 447},
                ]
            }
        ]
    }


def test_a_bad_record_fails_alone(endpoint: str) -> None:
    """A batch of B.5's shape: each record answered, failures in their own `errors`; the
    image as its base64 string (`/document/normalized_images/*/data`) works too."""
    items = _by_id(
        _call(
            endpoint,
            [
                {"recordId": "good", "data": {"image": _normalized(ASTRONAUT)}},
                {"recordId": "bytes", "data": {"image": ASTRONAUT, "languageCode": "xx"}},
                {"recordId": "junk", "data": {"image": _normalized("bm90IGFuIGltYWdl")}},
                {"recordId": "none", "data": {"image": None}},
            ],
            query="visualFeatures=tags",
        )
    )
    assert set(items) == {"good", "bytes", "junk", "none"}
    assert items["good"]["data"]["tags"][0]["name"] == "person"
    assert items["bytes"]["data"]["tags"][0]["name"] == "person"
    assert items["bytes"]["warnings"][0]["message"].startswith("NotSupportedLanguage")
    assert items["junk"]["data"] == {}
    assert items["junk"]["errors"][0]["message"].startswith("InvalidImageFormat")
    assert items["none"]["errors"][0]["message"].startswith("InvalidImage:")


def test_over_size_batch_is_refused(endpoint: str) -> None:
    values = [{"recordId": str(i), "data": {"image": ASTRONAUT}} for i in range(5)]
    response = _call(endpoint, values)
    assert response.status_code == 400
    assert "batchSize to 4 or less" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("key", "query", "status"),
    [
        ("wrong-key", QUERY, 401),
        (KEY, "visualFeatures=smell", 400),
        (KEY, "details=celebrities", 403),
        (KEY, "defaultLanguageCode=xx", 400),
    ],
)
def test_calls_refused_whole(endpoint: str, key: str, query: str, status: int) -> None:
    """A bad key (the skillset's `httpHeaders`) and bad skill-wide parameters refuse the call."""
    values = [{"recordId": "1", "data": {"image": ASTRONAUT}}]
    assert _call(endpoint, values, query=query, key=key).status_code == status


def test_a_throttled_call_is_answered_429(endpoint: str, sim: Simulator) -> None:
    """Every record throttled: 429 + `Retry-After` for the call, which the indexer retries
    (B.5); a per-record error would not be."""
    sim.script(Reply(status=429, headers={"retry-after": "0"}))
    response = _call(endpoint, [{"recordId": "1", "data": {"image": ASTRONAUT}}])
    assert response.status_code == 429
    assert "retry-after" in response.headers


def test_late_records_get_a_timeout_error(
    sim: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A record whose model request does not come back in time is answered with a
    `Timeout` error; the other record of the call is answered in full."""
    serving, analyzer = _server(sim, tmp_path_factory.mktemp("late"), timeout=1.5)
    release = threading.Event()
    HELD.append(release)
    try:
        values = [{"recordId": str(i), "data": {"image": ASTRONAUT}} for i in range(2)]
        items = _by_id(_call(serving.start(), values, query="visualFeatures=tags"))
    finally:
        release.set()
        HELD.clear()
        serving.stop()
        analyzer.close()
    errors = [item["errors"] for item in items.values()]
    assert sorted(e is None for e in errors) == [False, True]
    (late,) = [e for e in errors if e is not None]
    assert late[0]["message"].startswith("Timeout:")


def test_skill_settings_are_checked() -> None:
    for bad in (SkillSettings(batch_size=0), SkillSettings(timeout=0), SkillSettings(timeout=231)):
        with pytest.raises(ConfigurationError):
            bad.validate()
