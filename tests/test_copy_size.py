"""The copy sent to the model is sized by what the call's features need."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

import viewfinder as vf
from viewfinder.analyzers.features import ALL_FEATURES, Feature, copy_side_for
from viewfinder.analyzers.image_analysis import answer_model
from viewfinder.cost.estimate import OFFLINE_BASE_URL
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
