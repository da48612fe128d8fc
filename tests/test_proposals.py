"""`ImageAnalyzer(proposals=...)`: a detector's boxes, verified and named by the model.

The detector is scripted (fixed boxes) and the model is FakeOpenAI answering scripted
verdicts: not a model, these tests measure the mapping (kept boxes are the detector's,
dropped ones gone, renames applied, additions mapped from the model's convention).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import viewfinder as vf
from viewfinder.analyzers.proposals import MAX_PROPOSALS, normalize
from viewfinder.errors import InvalidOptionError
from viewfinder.schemas.geometry import BoundingBox
from viewfinder.testing.fakes import FakeOpenAI

SIZE = (700, 560)
"""The 0-1000 grid is 0.7 px a unit across and 0.56 px down: the boxes below are exact."""

DETECTED = [
    {"box": (70, 56, 210, 280), "label": "person", "score": 0.8},
    {"box": BoundingBox(x=350, y=140, width=294, height=364), "label": "dog", "score": 0.6},
    (7, 14, 70, 56),
]
"""The scripted detector's answer: a person, a dog the model renames, an unlabelled box
the model drops."""


def detector(image: Image.Image) -> list[Any]:
    assert image.size == SIZE
    return DETECTED


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("proposals") / "photo.png"
    Image.new("RGB", SIZE, "gray").save(path)
    return path


def listed(body: dict[str, Any]) -> str:
    """The proposals' text: the part after the image."""
    content = body["messages"][-1]["content"]
    assert content[1]["type"] == "image_url"
    return str(content[2]["text"])


def compact_answer(_: dict[str, Any]) -> dict[str, Any]:
    return {
        "objects": [{"name": "cat", "conf": 70, "box": [100, 500, 200, 700]}],
        "people": [],
        "proposals": [
            {"n": 1, "keep": True, "name": "person", "conf": 95},
            {"n": 2, "keep": True, "name": "wolf", "conf": 90},
            {"n": 3, "keep": False, "name": "smudge", "conf": 80},
        ],
    }


def verbose_gemini_answer(_: dict[str, Any]) -> dict[str, Any]:
    # gemini: [y_min, x_min, y_max, x_max] on 0-1000
    return {
        "objects": [{"name": "cat", "confidence": 0.7, "box": [500, 100, 700, 200]}],
        "people": [],
        "proposals": [
            {"id": 2, "keep": True, "name": "wolf", "confidence": 0.9},
            {"id": 1, "keep": True, "name": "person", "confidence": 0.95},
        ],
    }


@pytest.mark.parametrize(
    ("options", "answer", "first_line"),
    [
        ({}, compact_answer, "1. person [100, 100, 400, 600] 80%"),
        (
            {"answer_format": "verbose", "box_convention": "gemini"},
            verbose_gemini_answer,
            "1. person [100, 100, 600, 400] 80%",
        ),
    ],
    ids=["compact-grid", "verbose-gemini"],
)
def test_kept_boxes_are_the_detectors_renamed_and_additions_mapped(
    photo: Path, options: dict[str, Any], answer: Any, first_line: str
) -> None:
    fake = FakeOpenAI(default=answer)
    with vf.ImageAnalyzer(**fake.clients(), cache=False, proposals=detector, **options) as a:
        result = a.analyze(photo, ["objects", "people"])
    text = listed(fake.requests[0])
    assert first_line in text
    assert "3. object [10, 25, 110, 125]" in text or "3. object [25, 10, 125, 110]" in text
    assert result.objects is not None and result.people is not None
    got = [(o.name, o.box, o.confidence) for o in result.objects]
    assert got == [
        ("person", BoundingBox(x=70, y=56, width=210, height=280), 0.8),  # the detector's score
        ("wolf", BoundingBox(x=350, y=140, width=294, height=364), 0.6),
        ("cat", BoundingBox(x=70, y=280, width=70, height=112), 0.7),  # the model's addition
    ]
    assert [p.box for p in result.people] == [BoundingBox(x=70, y=56, width=210, height=280)]
    schema = json.dumps(fake.requests[0])
    assert '"proposals"' in schema


def test_off_or_unused_the_request_is_byte_identical(photo: Path) -> None:
    fake = FakeOpenAI(default=lambda _: {"caption": {"text": "grey", "conf": 90}})
    with vf.ImageAnalyzer(**fake.clients(), cache=False) as plain:
        plain.analyze(photo, ["caption"])
        version = plain.model_version
    with vf.ImageAnalyzer(**fake.clients(), cache=False, proposals=detector) as hybrid:
        result = hybrid.analyze(photo, ["caption"])  # no objects nor people: nothing to verify
        assert hybrid.model_version == result.model_version == version
        fake.script(compact_answer({}))
        verified = hybrid.analyze(photo, ["objects"])
        assert verified.model_version != version  # only a call verifying proposals differs
    assert fake.requests[0] == fake.requests[1]
    assert "proposals" not in json.dumps(fake.requests[0])


def test_different_proposals_are_different_cache_entries(photo: Path, tmp_path: Path) -> None:
    fake = FakeOpenAI(default=compact_answer)
    boxes: list[Any] = [DETECTED]
    with vf.ImageAnalyzer(
        **fake.clients(), cache=tmp_path / "cache", proposals=lambda _: boxes[0]
    ) as a:
        a.analyze(photo, ["objects"])
        a.analyze(photo, ["objects"])  # answered from the cache
        assert len(fake.requests) == 1
    boxes[0] = [*DETECTED[:2], (0, 0, 700, 56)]
    with vf.ImageAnalyzer(
        **fake.clients(), cache=tmp_path / "cache", proposals=lambda _: boxes[0]
    ) as b:
        b.analyze(photo, ["objects"])
    assert len(fake.requests) == 2


class Detections:
    """A stand-in for supervision's `Detections`: the attributes viewfinder reads."""

    def __init__(self) -> None:
        self.xyxy = [[70.0, 56.0, 280.0, 336.0], [644.0, 504.0, 350.0, 140.0]]
        self.confidence = [0.8, 0.6]
        self.class_id = [0, 16]
        self.data = {"class_name": ["person", "dog"]}


def test_supervision_like_detections_are_accepted(photo: Path) -> None:
    assert normalize(Detections(), *SIZE) == normalize(DETECTED[:2], *SIZE)
    fake = FakeOpenAI(default=compact_answer)
    with vf.ImageAnalyzer(**fake.clients(), cache=False, proposals=lambda _: Detections()) as a:
        result = a.analyze(photo, ["objects"])
    assert result.objects is not None
    assert [o.name for o in result.objects] == ["person", "wolf", "cat"]


def test_more_than_the_cap_keeps_the_best_scored(caplog: pytest.LogCaptureFixture) -> None:
    many = [{"box": (i, 0, 5, 5), "score": i / 100} for i in range(MAX_PROPOSALS + 10)]
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        kept = normalize(many, *SIZE)
    assert len(kept) == MAX_PROPOSALS
    assert [p.box.x for p in kept] == list(range(10, MAX_PROPOSALS + 10))  # detector order
    assert "best scored" in caplog.text


def boom(_: Image.Image) -> Any:
    raise RuntimeError("the GPU caught fire")


@pytest.mark.parametrize(
    ("found", "message"),
    [
        ("nope", "not a list of boxes"),
        ([(1, 2, 3)], "four values"),
        ([(0, 0, -5, 5)], "no area"),
        ([{"box": (0, 0, 5, 5), "score": 2}], "outside 0-1"),
        ([("a", 0, 5, 5)], "not a number"),
    ],
)
def test_garbage_from_the_detector_is_a_typed_error(photo: Path, found: Any, message: str) -> None:
    fake = FakeOpenAI(default=compact_answer)
    with (
        vf.ImageAnalyzer(**fake.clients(), cache=False, proposals=lambda _: found) as a,
        pytest.raises(InvalidOptionError, match=message),
    ):
        a.analyze(photo, ["objects"])
    assert fake.requests == []


def test_a_detector_that_raises_or_a_bad_option_is_a_typed_error(photo: Path) -> None:
    fake = FakeOpenAI(default=compact_answer)
    with (
        vf.ImageAnalyzer(**fake.clients(), cache=False, proposals=boom) as a,
        pytest.raises(InvalidOptionError, match="RuntimeError: the GPU caught fire"),
    ):
        a.analyze(photo, ["objects"])
    with pytest.raises(InvalidOptionError, match="local-people"):
        vf.ImageAnalyzer(**fake.clients(), cache=False, proposals="yolo")  # type: ignore[arg-type]


def test_the_local_people_detector_as_proposals(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    photo = tmp_path / "astronaut.png"  # halved: the detector runs in 0.2 s, not 1.2 s
    with Image.open(Path(__file__).parent / "assets" / "people" / "astronaut.png") as full:
        full.convert("RGB").resize((256, 256)).save(photo)
    fake = FakeOpenAI(
        default=lambda _: {
            "people": [],
            "proposals": [{"n": 1, "keep": True, "name": "person", "conf": 90}],
        }
    )
    with vf.ImageAnalyzer(**fake.clients(), cache=False, proposals="local-people") as a:
        result = a.analyze(photo, ["people"])
    assert "1. person [" in listed(fake.requests[0])
    from viewfinder.local.engine import decode_full
    from viewfinder.local.people import detect_people

    first = detect_people(decode_full(photo))[0]
    assert result.people is not None
    assert result.people[0].box == first.box
    assert result.people[0].confidence == first.confidence


def test_async_and_many_calls_list_each_images_own_proposals(tmp_path: Path) -> None:
    paths = []
    for shade in ("gray", "white"):
        paths.append(tmp_path / f"{shade}.png")
        Image.new("RGB", SIZE, shade).save(paths[-1])

    def per_image(image: Image.Image) -> list[Any]:
        """One box whose left edge follows the image's shade: each image its own."""
        left = 7 * round(image.convert("L").getpixel((0, 0)) / 64)  # type: ignore[operator]
        return [(left, 0, 70, 56)]

    async def both(a: vf.ImageAnalyzer) -> tuple[list[Any], vf.ImageAnalysisResult]:
        async with a.aanalyze_many(paths, ["objects"], concurrency=2) as run:
            items = [item async for item in run]
        return items, await a.aanalyze(paths[0], ["objects"])

    fake = FakeOpenAI(default=compact_answer)
    with vf.ImageAnalyzer(**fake.clients(), cache=False, proposals=per_image) as a:
        items, single = asyncio.run(both(a))
    assert all(item.ok for item in items)
    boxes = {item.result.objects[0].box.x for item in items}
    assert boxes == {14, 28}  # grey and white
    assert single.objects is not None and single.objects[0].box.x == 14


def test_the_batch_api_refuses_proposals_before_anything_is_written(tmp_path: Path) -> None:
    from viewfinder.batch.provider_api import BatchJob

    fake = FakeOpenAI()
    with (
        vf.ImageAnalyzer(**fake.clients(), cache=False, proposals=detector) as a,
        pytest.raises(InvalidOptionError, match="Batch API cannot verify proposals"),
    ):
        BatchJob(a, tmp_path / "work", features=["objects"])
    assert not (tmp_path / "work").exists()


def test_the_cost_estimate_counts_the_listing(photo: Path) -> None:
    from viewfinder.cost.estimate import estimate_request

    fake = FakeOpenAI()
    with (
        vf.ImageAnalyzer(**fake.clients(), cache=False) as plain,
        vf.ImageAnalyzer(**fake.clients(), cache=False, proposals=detector) as hybrid,
    ):
        before = estimate_request(plain, photo, ["objects"])
        after = estimate_request(hybrid, photo, ["objects"])
    assert after.prompt_tokens > before.prompt_tokens + 3 * 15
    assert fake.requests == []


def test_with_detector_read_too_a_verifying_call_s_version_names_both(photo: Path) -> None:
    """`proposals=` and `read_geometry="detector"` together: the version of a call that
    verifies proposals also carries the text detector, as every other version does."""
    pytest.importorskip("rapidocr")
    versions = []
    for geometry in ("model", "detector"):
        fake = FakeOpenAI(default=compact_answer)
        with vf.ImageAnalyzer(
            **fake.clients(), cache=False, proposals=detector, read_geometry=geometry
        ) as analyzer:
            versions.append(
                (analyzer.model_version, analyzer.analyze(photo, ["objects"]).model_version)
            )
    (plain, verifying), (plain_det, verifying_det) = versions
    assert plain != plain_det and verifying != verifying_det
    assert len({plain, verifying, plain_det, verifying_det}) == 4
