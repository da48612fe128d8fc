"""The whole stack (openai + instructor + viewfinder) replayed from cassettes.

The cassettes in `cassettes/test_stack/` were recorded against `viewfinder.testing.simulator`,
a scripted OpenAI-compatible server these tests start on 127.0.0.1: every answer in
them is the scripted one below, not a model's (see `cassettes/README.md`). What the
replay proves is viewfinder's side: one request per image, the exact prompt, schema
and image digest sent, re-asks, retries, error mapping, caching and the pixel maths.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

import viewfinder as vf
from viewfinder.testing import compact_answer
from viewfinder.testing.simulator import Reply, Simulator

pytestmark = pytest.mark.vcr

CAT_ANSWER: dict[str, Any] = compact_answer(
    {
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
            {"name": "cat", "confidence": 0.6},
            {"name": "whiskers", "confidence": 0.85},
        ],
        "objects": [{"name": "cat", "confidence": 0.93, "box": [100, 50, 900, 950]}],
        "people": [],
        "smart_crops": {"box": [300, 100, 800, 900]},
        "read": [{"text": "no text here", "box": [0, 900, 300, 1000], "confidence": 0.5}],
    }
)


def _all_features(analyzer: vf.ImageAnalyzer, image: Path) -> vf.ImageAnalysisResult:
    return analyzer.analyze(
        image,
        features=vf.ALL_FEATURES,
        smart_crops_aspect_ratios=[0.9, 1.33],
        gender_neutral_caption=True,
    )


def _check_cat(result: vf.ImageAnalysisResult) -> None:
    assert result.metadata == vf.ImageMetadata(width=451, height=300)
    assert result.caption == vf.Caption(text="a tabby cat lying on a wooden floor", confidence=0.91)
    assert result.dense_captions is not None and len(result.dense_captions) == 2
    assert result.dense_captions[0].box == vf.BoundingBox(x=0, y=0, width=451, height=300)
    # the compact format makes the first dense caption from `caption`, confidence included
    assert result.dense_captions[0].confidence == 0.91
    # [400, 100, 700, 600] on the grid of a 451x300 image: round(400*451/1000)=180 ...
    assert result.dense_captions[1].box == vf.BoundingBox(x=180, y=30, width=136, height=150)
    assert [t.name for t in result.tags or []] == ["cat", "whiskers", "indoor"]
    assert result.objects is not None
    assert result.objects[0].box == vf.BoundingBox(x=45, y=15, width=361, height=270)
    assert result.people == []
    crops = result.smart_crops or []
    assert [c.aspect_ratio for c in crops] == [0.9, 1.33]
    assert crops[0].box == vf.BoundingBox(x=113, y=0, width=270, height=300)
    assert crops[1].box.height == 300 and abs(crops[1].box.width - 399) <= 1
    assert result.read is not None and result.read.text == "no text here"
    assert all(w.estimated for w in result.read.lines[0].words)
    assert result.model_version.startswith("gpt-4.1-mini+")


def test_all_seven_features_in_one_request(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    cat_image: Path,
    vcr: Any,
) -> None:
    sim.script(CAT_ANSWER)
    result = _all_features(make_analyzer(), cat_image)
    _check_cat(result)
    assert result.usage.requests == 1 and result.usage.reasks == 0
    assert result.usage.input_tokens > 0 and not result.usage.cache_hit
    assert vcr.play_count + len(sim.requests) == 1  # replayed or recorded: one request


async def test_async_gives_the_same_result(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script(CAT_ANSWER)
    async with make_analyzer() as analyzer:
        result = await analyzer.aanalyze(
            cat_image,
            features=vf.ALL_FEATURES,
            smart_crops_aspect_ratios=[0.9, 1.33],
            gender_neutral_caption=True,
        )
    _check_cat(result)


def test_cache_hit_sends_no_request(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    cat_image: Path,
    vcr: Any,
) -> None:
    sim.script(CAT_ANSWER)
    analyzer = make_analyzer()
    first = _all_features(analyzer, cat_image)
    second = _all_features(analyzer, cat_image)  # a second HTTP call would miss the cassette
    assert second.usage == vf.Usage(cache_hit=True)
    assert second.model_dump(exclude={"usage"}) == first.model_dump(exclude={"usage"})
    assert vcr.play_count + len(sim.requests) == 1  # replayed or recorded: one request


class Product(BaseModel):
    """One product on the shelf."""

    name: str
    box: vf.BoundingBox
    label: vf.Polygon | None = None


class Aisle(BaseModel):
    products: list[Product]


class Shelf(BaseModel):
    """What is on the shelf."""

    aisles: dict[str, Aisle]
    empty_slots: list[vf.BoundingBox] = Field(default_factory=list)


def test_custom_schema_with_nested_boxes_in_tools_mode(
    sim: Simulator, tmp_path: Path, cat_image: Path
) -> None:
    sim.script(
        {
            "aisles": {
                "left": {
                    "products": [
                        {
                            "name": "cat food",
                            "box": [0, 0, 500, 500],
                            "label": [[0, 0], [500, 0], [500, 100], [0, 100]],
                        }
                    ]
                }
            },
            "empty_slots": [[500, 500, 1000, 1000]],
        }
    )
    audit = vf.Analyzer(
        schema=Shelf,
        prompt="List every product in the {{ aisle_count }} aisles.",
        base_url=sim.base_url,
        api_key="test-key-placeholder",
        mode="tools",
        cache=False,
    )
    run = audit.analyze_detailed(cat_image, aisle_count=1)
    product = run.output.aisles["left"].products[0]
    assert isinstance(run.output, Shelf) and isinstance(product, Product)
    assert product.box == vf.BoundingBox(x=0, y=0, width=226, height=150)
    assert product.label is not None and product.label.points[2] == vf.Point(x=226, y=30)
    assert run.output.empty_slots == [vf.BoundingBox(x=226, y=150, width=225, height=150)]
    assert run.usage.requests == 1 and run.model_version.startswith("gpt-4.1-mini+")
    assert run.metadata.width == 451


def test_reask_after_an_impossible_box(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    impossible = {
        "caption": {"text": "a cat", "conf": 90},
        "objects": [{"name": "cat", "conf": 90, "box": [900, 50, 100, 950]}],
    }
    fixed = {
        "caption": {"text": "a cat", "conf": 90},
        "objects": [{"name": "cat", "conf": 90, "box": [100, 50, 900, 950]}],
    }
    sim.script(impossible, fixed)
    result = make_analyzer(mode="json_schema").analyze(cat_image, features=["caption", "objects"])
    assert result.objects == [
        vf.DetectedObject(
            name="cat", confidence=0.9, box=vf.BoundingBox(x=45, y=15, width=361, height=270)
        )
    ]
    assert result.usage.requests == 2 and result.usage.reasks == 1


def test_reasks_are_bounded(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    nonsense = {"caption": {"text": "a cat", "conf": 700}}  # conf above 100: re-asked
    sim.script(nonsense, nonsense)
    analyzer = make_analyzer(max_reasks=1)
    with pytest.raises(vf.InvalidAnswerError) as caught:
        analyzer.analyze(cat_image, features=["caption"])
    assert caught.value.attempts == 2 and caught.value.usage is not None
    assert caught.value.usage.requests == 2 and caught.value.usage.reasks == 1
    assert caught.value.raw_answer is not None and '"conf": 700' in caught.value.raw_answer


def test_429_with_retry_after_then_success(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    cat_image: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.script(
        Reply(status=429, error_message="Rate limit reached", headers={"retry-after": "1"}),
        {"caption": {"text": "a cat", "conf": 90}},
    )
    with caplog.at_level(logging.INFO, logger="viewfinder"):
        result = make_analyzer().analyze(cat_image, features=["caption"])
    assert result.caption is not None and result.caption.text == "a cat"
    assert result.usage.requests == 2 and result.usage.reasks == 0
    assert any("429" in r.message and "1.00 s" in r.message for r in caplog.records)


async def test_async_429_then_success(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script(
        Reply(status=429, headers={"retry-after-ms": "20"}),
        {"caption": {"text": "a cat", "conf": 90}},
    )
    async with make_analyzer() as analyzer:
        result = await analyzer.aanalyze(cat_image, features=["caption"])
    assert result.usage.requests == 2


@pytest.mark.parametrize(
    ("status", "error"), [(400, vf.BadRequestError), (401, vf.AuthenticationError)]
)
def test_fail_fast_on_client_errors(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    cat_image: Path,
    status: int,
    error: type[vf.ProviderError],
) -> None:
    sim.script(Reply(status=status, error_message=f"scripted {status}"))
    with pytest.raises(error) as caught:
        make_analyzer().analyze(cat_image, features=["caption"])
    assert caught.value.status_code == status and caught.value.attempts == 1
    assert caught.value.request_id and caught.value.request_id.startswith("req_sim_")
    assert f"scripted {status}" in str(caught.value)
    assert "test-key-placeholder" not in str(caught.value)


def test_refusal_and_truncation_are_typed_and_never_reasked(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script(
        Reply(content=None, refusal="I can't help with that."),
        Reply(content='{"caption": {"text": "a ca', finish_reason="length"),
    )
    analyzer = make_analyzer(cache=False)
    with pytest.raises(vf.ContentFilterError, match="can't help") as refused:
        analyzer.analyze(cat_image, features=["caption"])
    assert refused.value.usage is not None and refused.value.usage.requests == 1
    with pytest.raises(vf.OutputTruncatedError) as truncated:
        analyzer.analyze(cat_image, features=["tags"])
    assert truncated.value.usage is not None and truncated.value.usage.requests == 1


def test_a_cassette_miss_fails_at_once_with_the_reason(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path, vcr: Any
) -> None:
    sim.script({"caption": {"text": "a cat", "conf": 90}})
    analyzer = make_analyzer(cache=False)
    analyzer.analyze(cat_image, features=["caption"])
    vcr.record_mode = "none"  # from here on, nothing new may be recorded
    with pytest.raises(vf.TransportError) as caught:
        analyzer.analyze(cat_image, features=["tags"])  # a request the cassette never saw
    assert caught.value.attempts == 1
    assert "CannotOverwriteExistingCassetteException" in str(caught.value)
    assert "Can't play back this request" in str(caught.value)


def test_a_429_during_a_reask_repeats_only_that_request(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    bad = {"caption": {"text": "a cat", "conf": 150}}
    good = {"caption": {"text": "a cat", "conf": 90}}
    sim.script(bad, Reply(status=429, headers={"retry-after-ms": "10"}), good)
    result = make_analyzer().analyze(cat_image, features=["caption"])
    assert result.caption == vf.Caption(text="a cat", confidence=0.9)
    # first answer, the re-ask that met a 429, and the same re-ask retried: the
    # conversation did not restart from the first message
    assert result.usage.requests == 3 and result.usage.reasks == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=400, error_code="content_filter", error_message="filtered prompt"),
        Reply(content={"caption": {"text": "", "conf": 0}}, finish_reason="content_filter"),
    ],
    ids=["400-content-filter", "finish-reason-content-filter"],
)
def test_content_filter_is_typed_and_never_reasked(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path, reply: Reply
) -> None:
    sim.script(reply)
    with pytest.raises(vf.ContentFilterError) as caught:
        make_analyzer().analyze(cat_image, features=["caption"])
    assert caught.value.usage is not None and caught.value.usage.requests == 1
