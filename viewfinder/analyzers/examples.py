"""Example answers: the format example in the compact prompt, and the output-token estimate.

`viewfinder/data/example_answers.json` holds a few answers in the verbose model-facing
form (grid units): Microsoft's sample result converted, and hand-written typical answers;
`example_answers_cv32.json` their Computer Vision 3.2 parts (kept apart, so the 4.0
features' `model_version`, which hashes the first file, did not change when they came).
They are examples, not measurements of any model. `render_answer` writes one in either
answer format for a set of features, exactly as a model following the prompt would;
`viewfinder.cost.estimate` counts their tokens, and the compact prompt shows the first one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from viewfinder.analyzers.compact import AnswerFormat, from_verbose
from viewfinder.analyzers.features import FEATURES, Feature, split_words
from viewfinder.build.conventions import DEFAULT, BoxConvention
from viewfinder.schemas.geometry import BoundingBox

__all__ = [
    "ExampleAnswer",
    "answer_text",
    "example_answers",
    "examples_digest",
    "prompt_example",
    "render_answer",
]


@dataclass(frozen=True)
class ExampleAnswer:
    """One example answer: its name, where it comes from, and the verbose answer."""

    name: str
    source: str
    answer: Mapping[str, Any]


_FILE = "example_answers.json"
_CV32_FILE = "example_answers_cv32.json"


def _data(name: str) -> Any:
    return json.loads((resources.files("viewfinder") / "data" / name).read_text(encoding="utf-8"))


@cache
def example_answers() -> tuple[ExampleAnswer, ...]:
    """The bundled example answers, in file order (the first is the prompt's example).

    Each holds every feature: the 3.2 parts merged in, tags with their `hint` and
    objects with their `parents` where the 3.2 file gives one (`render_answer` writes
    them only when a call asks for hints or parents).
    """
    extra = _data(_CV32_FILE)["examples"]
    return tuple(
        ExampleAnswer(
            name=item["name"],
            source=item["source"],
            answer=_merged(item["answer"], extra[item["name"]]),
        )
        for item in _data(_FILE)["examples"]
    )


def _merged(answer: Mapping[str, Any], cv32: Mapping[str, Any]) -> dict[str, Any]:
    hints: Mapping[str, str] = cv32["tag_hints"]
    parents: Mapping[str, list[str]] = cv32["object_parents"]
    merged = {**answer, **{k: v for k, v in cv32.items() if k not in _OPTION_KEYS}}
    merged["tags"] = [{**t, "hint": hints.get(t["name"], "")} for t in answer["tags"]]
    merged["objects"] = [
        {**o, "parents": list(parents.get(o["name"], []))} for o in answer["objects"]
    ]
    return merged


_OPTION_KEYS = ("tag_hints", "object_parents")


def _with_words(line: Mapping[str, Any]) -> dict[str, Any]:
    """A verbose read line with word boxes split from its box, as the verbose prompt asks."""
    x0, y0, x1, y1 = line["box"]
    box = BoundingBox(x=x0, y=y0, width=x1 - x0, height=y1 - y0)
    words = [
        {
            "text": word,
            "box": [part.x, part.y, max(part.x + part.width, part.x + 1), part.y + part.height],
            "confidence": line["confidence"],
        }
        for word, part in split_words(line["text"], box)
    ]
    return {**line, "words": words}


def render_answer(
    answer: Mapping[str, Any],
    features: tuple[Feature, ...],
    answer_format: AnswerFormat,
    *,
    tag_hints: bool = False,
    object_parents: bool = False,
) -> dict[str, Any]:
    """`answer` (verbose, grid units) as a model would write it for `features` in a format.

    Features no model answers (`color`, `image_type`) are left out; tags carry `hint`
    and objects `parents` only with `tag_hints` / `object_parents`.
    """
    asked = tuple(f for f in features if f in FEATURES)
    if answer_format == "compact":
        return from_verbose(answer, asked, tag_hints=tag_hints, object_parents=object_parents)
    out: dict[str, Any] = {}
    for feature in asked:
        value = answer[feature.value]
        if feature is Feature.READ:
            value = [_with_words(line) for line in value]
        elif feature is Feature.TAGS:
            value = [_only(t, "hint", tag_hints) for t in value]
        elif feature is Feature.OBJECTS:
            value = [_only(o, "parents", object_parents) for o in value]
        out[feature.value] = value
    return out


def _only(item: Mapping[str, Any], key: str, keep: bool) -> dict[str, Any]:
    """`item` with `key` (a default `""` / `[]` when missing) or without it."""
    if keep:
        return {**item, key: item.get(key, "" if key == "hint" else [])}
    return {k: v for k, v in item.items() if k != key}


_EXAMPLE_ITEMS = 2


def answer_text(
    answer: Mapping[str, Any],
    features: tuple[Feature, ...],
    answer_format: AnswerFormat,
    *,
    tag_hints: bool = False,
    object_parents: bool = False,
) -> str:
    """`render_answer` as the text a model writes: minified JSON, non-ASCII kept."""
    rendered = render_answer(
        answer, features, answer_format, tag_hints=tag_hints, object_parents=object_parents
    )
    return json.dumps(rendered, ensure_ascii=False, separators=(",", ":"))


def _renamed(items: list[dict[str, Any]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Items with their names taken, in turn, from a vocabulary (so the example obeys it)."""
    return [{**item, "name": names[i % len(names)]} for i, item in enumerate(items)]


def prompt_example(
    features: tuple[Feature, ...],
    *,
    level: int = 0,
    tag_vocabulary: tuple[str, ...] = (),
    object_names: tuple[str, ...] = (),
    tag_hints: bool = False,
    object_parents: bool = False,
    convention: BoxConvention = DEFAULT,
    pixel_side: int = 1000,
) -> str:
    """The compact format example shown to the model, as minified JSON.

    Level 0 shows the first example with its lists cut to `_EXAMPLE_ITEMS` items (dense
    captions: the whole image and one region): the format, not how many items to give.
    Level k shows the first k examples in full, one per line: a longer prefix, which
    `ImageAnalyzer` asks for when it lifts the prompt over the prompt cache's threshold.
    Tag and object names come from the vocabularies when they are constrained, so the
    example never shows a name the schema refuses. Its boxes are written in `convention`
    (`BoxConvention.from_grid`; pixels of a copy `pixel_side` px square), so the example
    never contradicts the prompt's wording.
    """
    chosen = (
        [_trimmed(example_answers()[0].answer)]
        if level == 0
        else [dict(example.answer) for example in example_answers()[:level]]
    )
    lines = []
    for answer in chosen:
        if tag_vocabulary:
            answer["tags"] = _renamed(answer["tags"], tag_vocabulary)
        if object_names:
            answer["objects"] = _renamed(answer["objects"], object_names)
        if convention is not DEFAULT:
            answer = _boxes_in(answer, convention, pixel_side)
        lines.append(
            answer_text(
                answer,
                features,
                "compact",
                tag_hints=tag_hints,
                object_parents=object_parents,
            )
        )
    return "\n".join(lines)


def _boxes_in(value: Any, convention: BoxConvention, side: int) -> Any:
    """`value` (an example answer, grid units) with every `box` written in `convention`."""
    if isinstance(value, Mapping):
        return {
            key: convention.from_grid(list(item), side)
            if key == "box" and isinstance(item, list)
            else _boxes_in(item, convention, side)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_boxes_in(item, convention, side) for item in value]
    return value


def _trimmed(answer: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: value[:_EXAMPLE_ITEMS] if isinstance(value, list) else value
        for key, value in answer.items()
    }
    if "description" in out:  # one caption: the default max_candidates
        out["description"] = {**out["description"], "captions": out["description"]["captions"][:1]}
    return out


def examples_digest(*, cv32: bool = False) -> str:
    """sha256 of the example answers (the padded prompt shows them: part of `model_version`);
    with `cv32`, of their 3.2 parts."""
    path = resources.files("viewfinder") / "data" / (_CV32_FILE if cv32 else _FILE)
    return hashlib.sha256(path.read_bytes()).hexdigest()
