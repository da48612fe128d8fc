"""Vocabulary control: allowed tag and object names, enforced by the model-facing schema."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import viewfinder as vf
from viewfinder.analyzers.base import schema_text
from viewfinder.analyzers.compact import ANSWER_FORMATS, AnswerFormat
from viewfinder.analyzers.features import (
    ALL_FEATURES,
    Feature,
    ObjectAnswer,
    TagAnswer,
    load_vocabulary,
    object_answer_type,
    tag_answer_type,
)
from viewfinder.analyzers.image_analysis import answer_model
from viewfinder.testing import compact_answer
from viewfinder.testing.simulator import Simulator

# Taken BEFORE vocabulary control existed: sha256 of the verbose format's
# `schema_text(answer_model(ALL_FEATURES, answer_format="verbose"))` and of its seven
# per-feature schema texts (joined by newlines) that `model_version` hashes.
DEFAULT_SCHEMA_SHA256 = "2af6c3429e5ca48907f1b2e7db5da0438a3b9ef954fde3875f151c263d07fd43"
PER_FEATURE_SCHEMAS_SHA256 = "29e34fda3290c301daef37071fd71f91cddeb940d139f5f02c80bf4403a798fd"

TAGS = ("person", "laptop", "indoor")
OBJECTS = ("person", "laptop", "dining table")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# The answer's keys besides tags and objects, which a vocabulary must leave untouched.
OTHER_KEYS = {
    "compact": ("caption", "regions", "people", "crop", "lines"),
    "verbose": ("caption", "dense_captions", "people", "smart_crops", "read"),
}
formats = pytest.mark.parametrize("answer_format", ANSWER_FORMATS)


def _item(answer_format: AnswerFormat, name: str, confidence: float, **box: Any) -> dict[str, Any]:
    """A tag or object item (`box=[...]` for an object) as `answer_format` writes it."""
    if answer_format == "compact":
        return {"name": name, "conf": round(confidence * 100), **box}
    return {"name": name, "confidence": confidence, **box}


def _name_schema(model: type[Any], feature: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    item_ref = schema["properties"][feature]["items"]["$ref"].rsplit("/", 1)[-1]
    name: dict[str, Any] = schema["$defs"][item_ref]["properties"]["name"]
    return name


# --- the default schema is untouched ------------------------------------------------------


def test_default_schema_is_byte_identical_to_the_snapshot() -> None:
    text = schema_text(answer_model(ALL_FEATURES, answer_format="verbose"))
    assert _sha256(text) == DEFAULT_SCHEMA_SHA256, text


def test_default_per_feature_schemas_are_unchanged() -> None:
    texts = "\n".join(
        schema_text(answer_model((f,), answer_format="verbose")) for f in ALL_FEATURES
    )
    assert _sha256(texts) == PER_FEATURE_SCHEMAS_SHA256


@formats
def test_empty_vocabularies_give_the_very_same_model(answer_format: AnswerFormat) -> None:
    default = answer_model(ALL_FEATURES, answer_format=answer_format)
    same = answer_model(
        ALL_FEATURES, answer_format=answer_format, tag_vocabulary=(), object_names=()
    )
    assert same is default
    assert tag_answer_type() is TagAnswer and object_answer_type() is ObjectAnswer
    assert "enum" not in _name_schema(default, "tags")
    assert "enum" not in _name_schema(default, "objects")


# --- the constrained schema ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer_format", "title"), [("compact", {}), ("verbose", {"title": "Name"})]
)
def test_the_schema_has_an_enum_of_the_names(
    answer_format: AnswerFormat, title: dict[str, str]
) -> None:
    model = answer_model(
        (Feature.TAGS, Feature.OBJECTS),
        answer_format=answer_format,
        tag_vocabulary=TAGS,
        object_names=OBJECTS,
    )
    # the compact format drops every property's title
    assert _name_schema(model, "tags") == {"enum": list(TAGS), "type": "string", **title}
    assert _name_schema(model, "objects")["enum"] == list(OBJECTS)


@formats
def test_a_one_name_vocabulary_is_still_an_enum(answer_format: AnswerFormat) -> None:
    model = answer_model((Feature.TAGS,), answer_format=answer_format, tag_vocabulary=("cat",))
    assert _name_schema(model, "tags")["enum"] == ["cat"]


@formats
def test_only_the_constrained_features_change(answer_format: AnswerFormat) -> None:
    model = answer_model(ALL_FEATURES, answer_format=answer_format, tag_vocabulary=TAGS)
    default = answer_model(ALL_FEATURES, answer_format=answer_format)
    assert "enum" not in _name_schema(model, "objects")
    constrained = model.model_json_schema()
    unconstrained = default.model_json_schema()
    assert set(constrained["properties"]) == {"tags", "objects", *OTHER_KEYS[answer_format]}
    for key in OTHER_KEYS[answer_format]:
        assert constrained["properties"][key] == unconstrained["properties"][key]


@formats
def test_a_name_outside_the_vocabulary_fails_validation(answer_format: AnswerFormat) -> None:
    model = answer_model(
        (Feature.TAGS, Feature.OBJECTS),
        answer_format=answer_format,
        tag_vocabulary=TAGS,
        object_names=OBJECTS,
    )
    box = [100, 100, 500, 500]
    ok = model.model_validate(
        {
            "tags": [_item(answer_format, "laptop", 0.9)],
            "objects": [_item(answer_format, "dining table", 0.8, box=box)],
        }
    )
    assert ok.tags[0].name == "laptop"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="tags"):
        model.model_validate({"tags": [_item(answer_format, "notebook", 0.9)], "objects": []})
    with pytest.raises(ValidationError, match="objects"):
        model.model_validate({"tags": [], "objects": [_item(answer_format, "table", 0.8, box=box)]})


def test_constrained_types_are_cached_subclasses() -> None:
    made = tag_answer_type(TAGS)
    assert made is tag_answer_type(TAGS)
    assert issubclass(made, TagAnswer) and made is not TagAnswer
    assert issubclass(object_answer_type(OBJECTS), ObjectAnswer)
    first = answer_model(ALL_FEATURES, tag_vocabulary=TAGS)
    assert first is answer_model(ALL_FEATURES, tag_vocabulary=TAGS)


# --- loading vocabularies -----------------------------------------------------------------


def test_load_vocabulary_from_a_list_or_a_file(tmp_path: Path) -> None:
    assert load_vocabulary(None) == ()
    assert load_vocabulary(["person", "  dining   table ", "", "person"]) == (
        "person",
        "dining table",
    )
    path = tmp_path / "tags.txt"
    path.write_text("# my tags\nperson\n\nlaptop\r\nindoor\n", encoding="utf-8")
    assert load_vocabulary(path) == TAGS
    assert load_vocabulary(str(path)) == TAGS


def test_bad_vocabularies_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n", encoding="utf-8")
    with pytest.raises(vf.InvalidOptionError, match="no name"):
        load_vocabulary(empty)
    with pytest.raises(vf.InvalidOptionError, match="no name"):
        load_vocabulary([])
    with pytest.raises(vf.InvalidOptionError, match="cannot read"):
        load_vocabulary(tmp_path / "missing.txt")
    with pytest.raises(vf.InvalidOptionError, match="strings"):
        load_vocabulary([1, 2])  # type: ignore[list-item]


# --- the analyzer -------------------------------------------------------------------------


def test_a_file_vocabulary_reaches_the_analyzer(
    make_analyzer: Callable[..., vf.ImageAnalyzer], tmp_path: Path
) -> None:
    path = tmp_path / "objects.txt"
    path.write_text("\n".join(OBJECTS) + "\n", encoding="utf-8")
    analyzer = make_analyzer(tag_vocabulary=list(TAGS), object_names=path)
    assert analyzer.tag_vocabulary == TAGS and analyzer.object_names == OBJECTS


def test_model_version_changes_with_a_vocabulary(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
) -> None:
    default = make_analyzer().model_version
    assert make_analyzer(tag_vocabulary=None, object_names=None).model_version == default
    tags = make_analyzer(tag_vocabulary=TAGS).model_version
    objects = make_analyzer(object_names=OBJECTS).model_version
    other = make_analyzer(tag_vocabulary=("person", "laptop")).model_version
    assert len({default, tags, objects, other}) == 4
    assert make_analyzer(tag_vocabulary=list(TAGS)).model_version == tags


def test_the_prompt_lists_the_allowed_names(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
) -> None:
    part = vf.PreparedImage(
        width=10,
        height=10,
        format="PNG",
        sha256="0" * 64,
        model_bytes=b"",
        model_media_type="image/png",
        model_width=10,
        model_height=10,
        source="<bytes>",
    )
    constrained = make_analyzer(tag_vocabulary=TAGS, object_names=OBJECTS)
    request = constrained.build(part, (Feature.TAGS, Feature.OBJECTS))
    text = _texts(request.messages)
    assert "must be exactly one of these names" in text
    assert "'dining table'" in text and "'indoor'" in text
    assert request.response_model is answer_model(
        (Feature.TAGS, Feature.OBJECTS), tag_vocabulary=TAGS, object_names=OBJECTS
    )
    caption_only = constrained.build(part, (Feature.CAPTION,))
    assert "Allowed names" not in _texts(caption_only.messages)
    plain = make_analyzer().build(part, (Feature.TAGS, Feature.OBJECTS))
    assert "Allowed names" not in _texts(plain.messages)
    assert plain.response_model is answer_model((Feature.TAGS, Feature.OBJECTS))


@formats
def test_a_name_outside_the_list_is_reasked(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    cat_image: Path,
    answer_format: AnswerFormat,
) -> None:
    outside = {"tags": [{"name": "kitty", "confidence": 0.9}], "objects": []}
    inside = {
        "tags": [{"name": "indoor", "confidence": 0.7}, {"name": "person", "confidence": 0.2}],
        "objects": [{"name": "dining table", "confidence": 0.8, "box": [0, 0, 1000, 1000]}],
    }
    if answer_format == "compact":
        outside, inside = compact_answer(outside), compact_answer(inside)
    sim.script(outside, inside)
    analyzer = make_analyzer(
        tag_vocabulary=TAGS,
        object_names=OBJECTS,
        cache=False,
        mode="json_schema",
        answer_format=answer_format,
    )
    result = analyzer.analyze(cat_image, features=["tags", "objects"])
    assert [tag.name for tag in result.tags or []] == ["indoor", "person"]
    assert [obj.name for obj in result.objects or []] == ["dining table"]
    assert result.usage.requests == 2 and result.usage.reasks == 1
    assert result.model_version == analyzer.model_version
    sent = sim.requests[0]["response_format"]["json_schema"]["schema"]
    assert ["person", "laptop", "indoor"] in _enums(sent)


def _texts(messages: list[dict[str, Any]]) -> str:
    """All the text of chat messages, image parts left out."""
    found: list[str] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            found.append(content)
        else:
            found.extend(part["text"] for part in content if part.get("type") == "text")
    return "\n".join(found)


def _enums(node: Any) -> list[Any]:
    """Every `enum` list anywhere in a JSON schema."""
    found: list[Any] = []
    if isinstance(node, dict):
        if "enum" in node:
            found.append(node["enum"])
        for value in node.values():
            found.extend(_enums(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_enums(value))
    return found
