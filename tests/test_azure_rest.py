"""The service's REST JSON: the real sample parses into our models and serializes back."""

from __future__ import annotations

import json
from pathlib import Path

import viewfinder as vf
from viewfinder.compat.rest import from_azure_json, to_azure_json

SAMPLE = Path(__file__).parent / "assets" / "azure_sample_all_features.json"


def _sample() -> dict[str, object]:
    return json.loads(SAMPLE.read_text())


def test_real_sample_round_trips_to_equal_json_in_the_same_key_order() -> None:
    data = _sample()
    result = from_azure_json(data)
    again = to_azure_json(result)
    assert again == data
    assert json.dumps(again) == json.dumps(data)  # same key order at every level
    assert result.to_azure_json() == data


def test_sample_reads_into_our_models() -> None:
    result = from_azure_json(_sample())
    assert result.metadata == vf.ImageMetadata(width=864, height=576)
    assert result.caption is not None and "laptop" in result.caption.text
    assert result.objects is not None and result.objects[2].name == "Laptop"
    assert result.objects[0].box == vf.BoundingBox(x=603, y=225, width=152, height=224)
    assert result.read is not None and result.read.text.splitlines() == [
        "Sample text",
        "Hand writing",
        "123 456",
    ]
    assert [c.aspect_ratio for c in result.smart_crops or []] == [0.9, 1.33]
    assert result.people is not None and len(result.people) == 2


def test_only_requested_features_appear() -> None:
    result = vf.ImageAnalysisResult(
        model_version="gpt-4.1-mini+abc",
        metadata=vf.ImageMetadata(width=10, height=20),
        tags=[vf.Tag(name="cat", confidence=0.5)],
    )
    assert list(result.to_azure_json()) == ["modelVersion", "metadata", "tagsResult"]
    assert from_azure_json(result.to_azure_json()).caption is None
