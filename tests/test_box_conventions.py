"""Box conventions: every model family asked in its own form, every answer back in pixels.

The model side is FakeOpenAI answering scripted boxes computed from known pixel boxes on
the copy the request actually carried (its size read from the request's image), written
in the convention under test. Not a model: these tests measure the mapping.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import BaseModel

import viewfinder as vf
from viewfinder.build.conventions import (
    CONVENTIONS,
    DEFAULT,
    BoxConvention,
    convention_for,
    resolve_convention,
)
from viewfinder.cost.estimate import OFFLINE_BASE_URL
from viewfinder.engine.cache import request_key
from viewfinder.errors import InvalidOptionError
from viewfinder.testing import compact_answer
from viewfinder.testing.fakes import FakeOpenAI

# Known objects in pixels of the original 700 x 560 image: x on multiples of 7 px and y
# on multiples of 14 px, so the 0-1000 grid (0.7 and 0.56 px a unit) holds them exactly.
# 700 and 560 are multiples of 28 under Qwen2.5-VL's pixel bounds and under Claude's
# limits, and the `objects` copy side is 768: every copy is the image itself.
SIZE = (700, 560)
BOXES = [(70, 56, 280, 336), (350, 140, 644, 504)]
"""(left, top, right, bottom) in pixels of the original."""


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conventions") / "photo.png"
    Image.new("RGB", SIZE, "gray").save(path)
    return path


def sent_size(body: dict[str, Any]) -> tuple[int, int]:
    """The size of the image a request carried."""
    url = body["messages"][-1]["content"][-1]["image_url"]["url"]
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return image.size


def written_in(
    convention: BoxConvention, box: tuple[int, int, int, int], size: tuple[int, int], copy: Any
) -> list[Any]:
    """`box` (pixels of an original of `size`) as a model answering in `convention` writes
    it for the copy it was sent (rounded as the model must: integers, or 6 decimals)."""
    sx, sy = copy[0] / size[0], copy[1] / size[1]
    on_copy = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
    fractions = [
        on_copy[0] / copy[0],
        on_copy[1] / copy[1],
        on_copy[2] / copy[0],
        on_copy[3] / copy[1],
    ]
    if convention.scale == "unit":
        out: list[Any] = [round(f, 6) for f in fractions]
    elif convention.scale == "grid":
        out = [round(f * convention.top) for f in fractions]
    else:
        out = [round(v) for v in on_copy]
    if convention.order == "yx":
        out = [out[1], out[0], out[3], out[2]]
    return out


def answering(
    convention: BoxConvention,
    size: tuple[int, int],
    boxes: list[tuple[int, int, int, int]],
    *,
    verbose: bool = False,
) -> Callable[[dict[str, Any]], Any]:
    """FakeOpenAI's `default`: the objects, in `convention`, on the copy each request sent."""

    def answer(body: dict[str, Any]) -> Any:
        copy = sent_size(body)
        objects = [
            {"name": f"thing {i}", "confidence": 0.9, "box": written_in(convention, b, size, copy)}
            for i, b in enumerate(boxes)
        ]
        return {"objects": objects} if verbose else compact_answer({"objects": objects})

    return answer


def pixels(result: vf.ImageAnalysisResult) -> list[tuple[int, int, int, int]]:
    assert result.objects is not None
    return [
        (o.box.x, o.box.y, o.box.x + o.box.width, o.box.y + o.box.height) for o in result.objects
    ]


INEXACT = {"deepseek-vl2", "paligemma"}
"""Rows whose grid (0-999, 0-1024) cannot hold these pixel boxes exactly: within 1 px."""


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_every_row_round_trips_the_same_objects_to_the_same_pixels(photo: Path, name: str) -> None:
    convention = CONVENTIONS[name]
    fake = FakeOpenAI(default=answering(convention, SIZE, BOXES))
    with vf.ImageAnalyzer(**fake.clients(), cache=False, box_convention=name) as analyzer:
        result = analyzer.analyze(photo, ["objects"])
    got = pixels(result)
    if name in INEXACT:
        assert all(
            abs(g - w) <= 1
            for gb, wb in zip(got, BOXES, strict=True)
            for g, w in zip(gb, wb, strict=True)
        )
    else:
        assert got == BOXES
    assert sent_size(fake.requests[0]) == SIZE


@pytest.mark.parametrize(
    ("name", "max_side", "copy"),
    [
        # fitted to 768 x 576, then each side to a multiple of 28: smart_resize's identity
        ("qwen2.5-vl", None, (756, 588)),
        # capped to 1568 on the long side, then to 1.15 MP: Claude resizes neither
        ("claude", 2000, (1238, 928)),
    ],
)
def test_a_pixel_convention_sizes_the_copy_and_maps_from_it(
    tmp_path: Path, name: str, max_side: int | None, copy: tuple[int, int]
) -> None:
    size = (2000, 1500)
    path = tmp_path / "big.png"
    Image.new("RGB", size, "gray").save(path)
    boxes = [(100, 150, 900, 1200), (1000, 30, 1990, 1490)]
    convention = CONVENTIONS[name]
    fake = FakeOpenAI(default=answering(convention, size, boxes))
    options: dict[str, Any] = {"max_side": max_side} if max_side else {}
    with vf.ImageAnalyzer(
        **fake.clients(), cache=False, box_convention=name, **options
    ) as analyzer:
        result = analyzer.analyze(path, ["objects"])
    sent = sent_size(fake.requests[0])
    assert sent == copy
    assert sent[0] * sent[1] <= (convention.copy.max_pixels or 0)
    # A copy pixel covers size/copy original pixels: integer answers are that coarse.
    slack = max(size[0] / sent[0], size[1] / sent[1]) / 2 + 0.5
    for got, want in zip(pixels(result), boxes, strict=True):
        assert all(abs(g - w) <= slack for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("qwen2.5vl:7b", "qwen2.5-vl"),
        ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl"),
        ("qwen3-vl:8b", "qwen3-vl"),
        ("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3-vl"),
        ("Qwen/Qwen2-VL-7B-Instruct", "qwen2-vl"),
        ("gemini-2.5-flash", "gemini"),
        ("claude-sonnet-4-5", "claude"),
        ("moondream2", "moondream"),
        ("deepseek-ai/deepseek-vl2-small", "deepseek-vl2"),
        ("google/paligemma2-3b-mix-448", "paligemma"),
        ("gpt-4.1-mini", "grid-1000"),
        ("gpt-5", "grid-1000"),
        ("llava:13b", "grid-1000"),
    ],
)
def test_model_names_pick_their_row(model: str, name: str) -> None:
    assert convention_for(model) is CONVENTIONS[name]


def test_the_override_beats_the_table_and_a_bad_name_is_refused() -> None:
    assert resolve_convention("gemini", "gpt-4.1-mini") is CONVENTIONS["gemini"]
    own = BoxConvention(name="mine", order="yx", top=100)
    assert resolve_convention(own, "qwen2.5vl:7b") is own
    assert resolve_convention(None, "qwen2.5vl:7b") is CONVENTIONS["qwen2.5-vl"]
    with pytest.raises(InvalidOptionError, match="box_convention"):
        resolve_convention("nonsense", "gpt-4.1-mini")
    with vf.ImageAnalyzer(base_url=OFFLINE_BASE_URL, model="qwen2.5vl:7b", cache=False) as table:
        assert table.box_convention is CONVENTIONS["qwen2.5-vl"]
    with vf.ImageAnalyzer(
        base_url=OFFLINE_BASE_URL, model="qwen2.5vl:7b", cache=False, box_convention="qwen2-vl"
    ) as chosen:
        assert chosen.box_convention is CONVENTIONS["qwen2-vl"]


# Recorded on 403a3b0 (before conventions existed) by the same calls on a 1500 x 1000 gray
# image: sha256 (16 hex) of the canonical request body, and model_version. The same
# check over 33 OpenAI configurations (three models, both formats, 3.2 features, a
# custom schema) found every body and version identical. Update only for a deliberate
# change of the prompts or schemas.
OPENAI_BEFORE = {
    "compact": ("d50ee54c32d9c30c", "gpt-4.1-mini+c0ec206560"),
    "verbose": ("b94678bcba4fd5d7", "gpt-4.1-mini+b053b69539"),
}


@pytest.mark.parametrize("answer_format", sorted(OPENAI_BEFORE))
@pytest.mark.parametrize("given", [{}, {"box_convention": "grid-1000"}])
def test_openai_requests_and_model_version_are_byte_identical_to_before(
    tmp_path: Path, answer_format: str, given: dict[str, Any]
) -> None:
    path = tmp_path / "photo.png"
    Image.new("RGB", (1500, 1000), "gray").save(path)
    with vf.ImageAnalyzer(
        base_url=OFFLINE_BASE_URL,
        model="gpt-4.1-mini",
        cache=False,
        answer_format=answer_format,  # type: ignore[arg-type]
        **given,
    ) as analyzer:
        plan = analyzer.plan()
        body = analyzer.engine.request_body(plan.build(analyzer.prepare(path, plan.max_side)))
        assert analyzer.box_convention is DEFAULT
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    assert (digest, plan.fingerprint) == OPENAI_BEFORE[answer_format]


def _key(analyzer: vf.ImageAnalyzer, photo: Path) -> tuple[str, str]:
    plan = analyzer.plan(["objects"])
    request = plan.build(analyzer.prepare(photo, plan.max_side))
    key = request_key(
        endpoint=analyzer.provider.endpoint,
        model=analyzer.model,
        mode=str(analyzer.provider.mode.value),
        messages=request.messages,
        schema=request.response_model.model_json_schema(),
        sampling=analyzer.engine.sampling,
        model_version=request.model_version,
    )
    return key, request.model_version


def test_the_convention_is_part_of_model_version_and_cache_key(photo: Path) -> None:
    keys = {}
    for name in ("grid-1000", "qwen2-vl", "gemini", "qwen2.5-vl"):
        with vf.ImageAnalyzer(
            base_url=OFFLINE_BASE_URL, model="qwen2.5vl:7b", cache=False, box_convention=name
        ) as analyzer:
            keys[name] = _key(analyzer, photo)
    assert len({key for key, _ in keys.values()}) == 4
    assert len({version for _, version in keys.values()}) == 4
    # qwen2-vl words boxes exactly as the default grid does: only the version tells them
    # apart, and it must, or their cached answers would be shared.
    assert keys["qwen2-vl"][1] != keys["grid-1000"][1]


def test_the_prompt_and_schema_speak_the_convention(photo: Path) -> None:
    fake = FakeOpenAI(default=answering(CONVENTIONS["gemini"], SIZE, BOXES, verbose=True))
    with vf.ImageAnalyzer(
        **fake.clients(), model="gemini-2.5-flash", cache=False, answer_format="verbose"
    ) as analyzer:
        analyzer.analyze(photo, ["objects"])
    body = fake.requests[0]
    system = body["messages"][0]["content"]
    assert "[y_min, x_min, y_max, x_max]" in system and "[x_min, y_min" not in system
    schema = json.dumps(body["response_format"])
    assert "[y_min, x_min, y_max, x_max] as integers on a 0-1000 grid" in schema


@pytest.mark.parametrize("name", ["gemini", "moondream", "qwen2.5-vl"])
def test_verbose_answers_follow_the_convention(photo: Path, name: str) -> None:
    fake = FakeOpenAI(default=answering(CONVENTIONS[name], SIZE, BOXES, verbose=True))
    with vf.ImageAnalyzer(
        **fake.clients(), cache=False, box_convention=name, answer_format="verbose"
    ) as analyzer:
        assert pixels(analyzer.analyze(photo, ["objects"])) == BOXES


def test_an_impossible_box_is_re_asked_in_the_convention_s_words(photo: Path) -> None:
    convention = CONVENTIONS["deepseek-vl2"]
    good = [written_in(convention, b, SIZE, SIZE) for b in BOXES]
    empty = [good[0][2], good[0][1], good[0][0], good[0][3]]  # x_min > x_max
    fake = FakeOpenAI()
    fake.script(
        compact_answer({"objects": [{"name": "a", "confidence": 0.9, "box": [0, 0, 1000, 5]}]}),
        compact_answer({"objects": [{"name": "a", "confidence": 0.9, "box": empty}]}),
        compact_answer({"objects": [{"name": "a", "confidence": 0.9, "box": good[0]}]}),
    )
    with vf.ImageAnalyzer(
        **fake.clients(), cache=False, box_convention="deepseek-vl2", max_reasks=2
    ) as analyzer:
        result = analyzer.analyze(photo, ["objects"])
    assert len(fake.requests) == 3  # 1000 is past 0-999, then an empty box: both re-asked
    reasks = [json.dumps(body["messages"][2:]) for body in fake.requests[1:]]
    assert "999" in reasks[0]
    assert "is empty" in reasks[1]
    got = pixels(result)[0]
    assert all(abs(g - w) <= 1 for g, w in zip(got, BOXES[0], strict=True))


class Shelf(BaseModel):
    name: str
    box: vf.BoundingBox
    outline: vf.Polygon | None = None


def test_a_custom_schema_s_boxes_and_polygons_follow_the_convention(photo: Path) -> None:
    convention = CONVENTIONS["gemini"]
    box = written_in(convention, BOXES[0], SIZE, SIZE)
    corners = [(70, 56), (280, 56), (280, 336), (70, 336)]
    outline = [[round(y * 1000 / SIZE[1]), round(x * 1000 / SIZE[0])] for x, y in corners]
    fake = FakeOpenAI({"name": "shelf", "box": box, "outline": outline})
    with vf.Analyzer(
        schema=Shelf,
        prompt="Find the shelf.",
        **fake.clients(),
        model="gemini-2.5-flash",
        cache=False,
    ) as analyzer:
        shelf = analyzer.analyze(photo)
    assert (shelf.box.x, shelf.box.y, shelf.box.width, shelf.box.height) == (70, 56, 210, 280)
    assert shelf.outline is not None
    assert [(p.x, p.y) for p in shelf.outline.points] == corners
    schema = json.dumps(fake.requests[0]["response_format"])
    assert "four [y, x] points" in schema


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_every_box_feature_of_a_compact_answer_follows_the_convention(
    photo: Path, name: str
) -> None:
    convention = CONVENTIONS[name]

    def answer(body: dict[str, Any]) -> Any:
        copy = sent_size(body)
        first, second = (written_in(convention, b, SIZE, copy) for b in BOXES)
        return compact_answer(
            {
                "caption": {"text": "two things", "confidence": 0.9},
                "dense_captions": [
                    {"text": "two things", "confidence": 0.9, "box": [0, 0, 1, 1]},
                    {"text": "a thing", "confidence": 0.8, "box": first},
                ],
                "people": [{"box": second, "confidence": 0.7}],
                "read": [{"text": "SALE", "confidence": 0.9, "box": second}],
            }
        )

    fake = FakeOpenAI(default=answer)
    features = ["caption", "dense_captions", "people", "read"]
    with vf.ImageAnalyzer(**fake.clients(), cache=False, box_convention=name) as analyzer:
        result = analyzer.analyze(photo, features)
    assert result.dense_captions is not None and result.people is not None
    assert result.read is not None
    whole = result.dense_captions[0].box
    assert (whole.x, whole.y, whole.width, whole.height) == (0, 0, *SIZE)
    region, person = result.dense_captions[1].box, result.people[0].box
    line = result.read.blocks[0].lines[0].polygon.points
    got = [
        (region.x, region.y, region.x + region.width, region.y + region.height),
        (person.x, person.y, person.x + person.width, person.y + person.height),
        (line[0].x, line[0].y, line[2].x, line[2].y),
    ]
    want = [BOXES[0], BOXES[1], BOXES[1]]
    slack = 1 if name in INEXACT else 0
    for g_box, w_box in zip(got, want, strict=True):
        assert all(abs(g - w) <= slack for g, w in zip(g_box, w_box, strict=True))


def test_a_pixel_value_past_any_copy_of_the_plan_is_re_asked(photo: Path) -> None:
    good = written_in(CONVENTIONS["qwen2.5-vl"], BOXES[0], SIZE, SIZE)
    fake = FakeOpenAI()
    fake.script(
        # 0-1000 grid numbers where pixels were asked: 900 is past the 768 px copy
        compact_answer(
            {"objects": [{"name": "a", "confidence": 0.9, "box": [100, 100, 400, 900]}]}
        ),
        compact_answer({"objects": [{"name": "a", "confidence": 0.9, "box": good}]}),
    )
    with vf.ImageAnalyzer(**fake.clients(), model="qwen2.5vl:7b", cache=False) as analyzer:
        result = analyzer.analyze(photo, ["objects"])
    assert len(fake.requests) == 2
    assert "768" in json.dumps(fake.requests[1]["messages"][2:])
    assert pixels(result) == [BOXES[0]]


def test_the_compact_example_shows_boxes_in_the_convention(photo: Path) -> None:
    with vf.ImageAnalyzer(base_url=OFFLINE_BASE_URL, model="qwen2.5vl:7b", cache=False) as qwen:
        plan = qwen.plan(["caption", "objects"])  # a 768 px copy
        text = plan.build(qwen.prepare(photo, plan.max_side)).messages[1]["content"][0]["text"]
    boxes = _boxes(text)
    assert boxes and max(max(box) for box in boxes) <= plan.max_side == 768
    assert max(max(box) for box in boxes) > 700  # pixels of that copy, not of 0-1000
    with vf.ImageAnalyzer(base_url=OFFLINE_BASE_URL, model="gemini-2.5-flash", cache=False) as g:
        plan = g.plan(["objects"])
        text = plan.build(g.prepare(photo, plan.max_side)).messages[1]["content"][0]["text"]
    with vf.ImageAnalyzer(base_url=OFFLINE_BASE_URL, cache=False) as grid:
        plan = grid.plan(["objects"])
        default = plan.build(grid.prepare(photo, plan.max_side)).messages[1]["content"][0]["text"]
    swapped = [[b[1], b[0], b[3], b[2]] for b in _boxes(default)]
    assert _boxes(text) == swapped


def _boxes(text: str) -> list[list[int]]:
    return [json.loads(found) for found in re.findall(r'"box":(\[[^\]]*\])', text)]
