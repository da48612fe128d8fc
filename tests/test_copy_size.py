"""The copy sent to the model is sized by what the call's features need."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import viewfinder as vf
from viewfinder.analyzers.features import ALL_FEATURES, Feature, copy_side_for
from viewfinder.analyzers.image_analysis import answer_model
from viewfinder.cost.estimate import OFFLINE_BASE_URL, estimate_request, offline_analyzer
from viewfinder.engine.body import strict_schema
from viewfinder.testing import compact_answer
from viewfinder.testing.fakes import FakeOpenAI


@pytest.mark.parametrize(
    ("features", "side"),
    [
        ((Feature.CAPTION,), 512),
        ((Feature.CAPTION, Feature.TAGS, Feature.SMART_CROPS), 512),
        ((Feature.CAPTION, Feature.OBJECTS), 768),
        ((Feature.PEOPLE,), 768),
        ((Feature.DENSE_CAPTIONS,), 768),
        ((Feature.TAGS, Feature.READ), 1024),
        (ALL_FEATURES, 1024),
    ],
)
def test_a_plan_sizes_its_copy_by_its_features(features: tuple[Feature, ...], side: int) -> None:
    assert copy_side_for(features) == side
    with vf.ImageAnalyzer(base_url=OFFLINE_BASE_URL, cache=False) as analyzer:
        assert analyzer.plan(features).max_side == side
    with vf.ImageAnalyzer(base_url=OFFLINE_BASE_URL, cache=False, max_side=640) as fixed:
        assert fixed.plan(features).max_side == 640


def _sent_size(body: dict[str, object]) -> tuple[int, int]:
    messages = body["messages"]
    assert isinstance(messages, list)
    part = messages[-1]["content"][-1]
    data = part["image_url"]["url"].split(",", 1)[1]
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return image.size


def test_the_request_carries_the_copy_the_features_need(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (2000, 1500), "gray").save(photo)
    fake = FakeOpenAI()
    fake.script(
        compact_answer({"caption": {"text": "a gray wall", "confidence": 0.9}}),
        compact_answer({"read": []}),
    )
    with vf.ImageAnalyzer(**fake.clients(), cache=False) as analyzer:
        caption = analyzer.analyze(photo, ["caption"])
        read = analyzer.analyze(photo, ["read"])
    assert [_sent_size(body) for body in fake.requests] == [(512, 384), (1024, 768)]
    # Results are in pixels of the original image whatever the copy's size.
    assert caption.metadata == read.metadata == vf.ImageMetadata(width=2000, height=1500)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_compact_schema_fits_openais_strict_subset(count: int) -> None:
    for start in range(len(ALL_FEATURES) - count + 1):
        features = ALL_FEATURES[start : start + count]
        assert strict_schema(answer_model(features)) is not None
    vocabulary = answer_model(ALL_FEATURES, tag_vocabulary=("a", "b"), object_names=("c",))
    assert strict_schema(vocabulary) is not None


def _user_text(request: Any) -> str:
    return str(request.messages[-1]["content"][0]["text"])


def test_a_prefix_just_short_of_the_cache_threshold_is_lifted_over_it(cat_image: Path) -> None:
    with offline_analyzer("gpt-4.1-mini") as analyzer:
        short = estimate_request(analyzer, cat_image, ["caption"])
        lifted = estimate_request(analyzer, cat_image, ["caption", "tags"])
        everything = estimate_request(analyzer, cat_image)
        tags = analyzer.plan(["caption", "tags"]).build(analyzer.prepare(cat_image))
        alone = analyzer.plan(["caption"]).build(analyzer.prepare(cat_image))
        whole = analyzer.plan(ALL_FEATURES).build(analyzer.prepare(cat_image))
    assert short.prefix_tokens < 512 and short.cached_input_tokens == 0
    assert "one per line" not in _user_text(alone)
    assert lifted.prefix_tokens >= 1024 and lifted.cached_input_tokens >= 1024
    assert "one per line" in _user_text(tags)
    assert everything.prefix_tokens >= 1024 + 64  # long enough on its own: no padding
    assert "one per line" not in _user_text(whole)
    with vf.ImageAnalyzer(base_url=OFFLINE_BASE_URL, cache=False, answer_format="verbose") as old:
        verbose = old.plan(["caption", "tags"]).build(old.prepare(cat_image))
    assert "The format, shown" not in _user_text(verbose)


def test_everything_before_the_image_is_byte_identical_across_images(tmp_path: Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (300, 200), "red").save(first)
    Image.new("RGB", (640, 480), "blue").save(second)
    with vf.ImageAnalyzer(base_url=OFFLINE_BASE_URL, cache=False) as analyzer:
        plan = analyzer.plan(["caption", "tags", "objects"])
        bodies = [
            analyzer.engine.request_body(plan.build(analyzer.prepare(image, plan.max_side)))
            for image in (first, second)
        ]
    images = [body["messages"][-1]["content"].pop() for body in bodies]
    assert images[0] != images[1]
    assert json.dumps(bodies[0], sort_keys=True) == json.dumps(bodies[1], sort_keys=True)
