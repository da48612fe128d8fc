"""The bundled example answers: where they come from, and both formats giving one result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import viewfinder as vf
from viewfinder.analyzers.compact import from_verbose, to_verbose
from viewfinder.analyzers.examples import example_answers, prompt_example, render_answer
from viewfinder.analyzers.features import ALL_FEATURES, EVERY_FEATURE, FEATURES, Feature
from viewfinder.analyzers.image_analysis import answer_model
from viewfinder.build.grid import Frame, box_to_grid
from viewfinder.compat.rest import from_azure_json
from viewfinder.cost.estimate import OFFLINE_BASE_URL
from viewfinder.engine.engine import Completed
from viewfinder.schemas.geometry import BoundingBox, Polygon
from viewfinder.schemas.result import ImageMetadata, Usage

SAMPLE = Path(__file__).parent / "assets" / "azure_sample_all_features.json"


def _outline(polygon: Polygon) -> BoundingBox:
    xs = [p.x for p in polygon.points]
    ys = [p.y for p in polygon.points]
    return BoundingBox(x=min(xs), y=min(ys), width=max(xs) - min(xs), height=max(ys) - min(ys))


def test_the_azure_sample_is_microsofts_result_in_grid_units() -> None:
    result = from_azure_json(json.loads(SAMPLE.read_text(encoding="utf-8")))
    frame = Frame(result.metadata.width, result.metadata.height)
    stored = next(e for e in example_answers() if e.name == "azure-sample").answer
    assert result.caption is not None and result.read is not None
    assert stored["caption"] == {
        "text": result.caption.text,
        "confidence": round(result.caption.confidence, 2),
    }
    boxes = [d["box"] for d in stored["dense_captions"]]
    assert boxes == [box_to_grid(d.box, frame) for d in result.dense_captions or []]
    assert [t["name"] for t in stored["tags"]] == [t.name for t in result.tags or []]
    assert [o["box"] for o in stored["objects"]] == [
        box_to_grid(o.box, frame) for o in result.objects or []
    ]
    assert [p["box"] for p in stored["people"]] == [
        box_to_grid(p.box, frame) for p in result.people or []
    ]
    assert [(line["text"], line["box"]) for line in stored["read"]] == [
        (line.text, box_to_grid(_outline(line.polygon), frame)) for line in result.read.lines
    ]


MODEL_FEATURES = tuple(f for f in EVERY_FEATURE if f in FEATURES)
"""Every feature a model answers, 4.0's and 3.2's."""


@pytest.mark.parametrize("example", example_answers(), ids=lambda e: e.name)
@pytest.mark.parametrize("cv32", [False, True], ids=["plain", "hints-and-parents"])
def test_every_example_is_a_valid_answer_in_both_formats(example: Any, cv32: bool) -> None:
    options = {"tag_hints": cv32, "object_parents": cv32}
    for features in [
        ALL_FEATURES,
        MODEL_FEATURES,
        (Feature.DENSE_CAPTIONS,),
        (Feature.CAPTION, Feature.READ),
        (Feature.DESCRIPTION, Feature.ADULT),
    ]:
        verbose = render_answer(example.answer, features, "verbose", **options)
        answer_model(features, answer_format="verbose", **options).model_validate(verbose)
        compact = render_answer(example.answer, features, "compact", **options)
        assert compact == from_verbose(example.answer, features, **options)
        answer_model(features, answer_format="compact", **options).model_validate(compact)
        assert ("hint" in compact["tags"][0]) is cv32 if "tags" in compact else True
        if compact.get("objects"):
            assert ("parents" in compact["objects"][0]) is cv32


def _finish(analyzer: vf.ImageAnalyzer, answer: dict[str, Any]) -> vf.ImageAnalysisResult:
    model = analyzer.response_model(ALL_FEATURES)
    done = Completed(model.model_validate(answer), Usage())
    return analyzer.finish(done, ImageMetadata(width=1200, height=900), ALL_FEATURES)


def _without_words(result: vf.ImageAnalysisResult) -> dict[str, Any]:
    data = result.model_dump(exclude={"model_version"})
    for block in data["read"]["blocks"]:
        for line in block["lines"]:
            line.pop("words")
    return data


@pytest.mark.parametrize("example", example_answers(), ids=lambda e: e.name)
def test_the_same_content_gives_the_same_result_in_both_formats(example: Any) -> None:
    options: dict[str, Any] = {"base_url": OFFLINE_BASE_URL, "cache": False}
    with (
        vf.ImageAnalyzer(answer_format="verbose", **options) as verbose,
        vf.ImageAnalyzer(answer_format="compact", **options) as compact,
    ):
        dense = example.answer["dense_captions"]
        assert dense[0]["confidence"] == example.answer["caption"]["confidence"]
        long = _finish(verbose, render_answer(example.answer, ALL_FEATURES, "verbose"))
        short = _finish(compact, render_answer(example.answer, ALL_FEATURES, "compact"))
    assert _without_words(short) == _without_words(long)
    assert long.read is not None and short.read is not None
    for mine, theirs in zip(short.read.lines, long.read.lines, strict=True):
        assert all(word.estimated for word in mine.words)
        assert [w.text for w in mine.words] == [w.text for w in theirs.words]


def test_a_compact_answer_round_trips_to_the_verbose_content() -> None:
    example = example_answers()[1].answer
    options = {"tag_hints": True, "object_parents": True}
    compact_model = answer_model(MODEL_FEATURES, answer_format="compact", **options)
    back = to_verbose(
        compact_model.model_validate(from_verbose(example, MODEL_FEATURES, **options)),
        MODEL_FEATURES,
    )
    assert back["caption"] == example["caption"]
    assert back["dense_captions"][1:] == example["dense_captions"][1:]
    assert back["tags"] == example["tags"]
    assert any(tag["hint"] for tag in back["tags"])
    assert back["objects"] == example["objects"]
    assert any(o["parents"] for o in back["objects"])
    assert back["smart_crops"] == example["smart_crops"]
    assert back["read"] == example["read"]
    for key in ("categories", "description", "brands", "adult", "faces", "landmarks"):
        assert back[key] == example[key], key


def test_the_prompt_example_obeys_the_vocabularies() -> None:
    shown = json.loads(
        prompt_example(ALL_FEATURES, tag_vocabulary=("alpha",), object_names=("beta", "gamma"))
    )
    assert {t["name"] for t in shown["tags"]} == {"alpha"}
    assert [o["name"] for o in shown["objects"]] == ["beta", "gamma"]
    constrained = answer_model(
        ALL_FEATURES, tag_vocabulary=("alpha",), object_names=("beta", "gamma")
    )
    constrained.model_validate(shown)
