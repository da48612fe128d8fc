"""The compact answer format: what the model writes by default, and its way back.

Output tokens are most of the bill (they cost four to eight times input tokens), so the
default model-facing answer is written to be short without being cryptic:

- one JSON object per item, its box an array inside it (per-box objects follow better
  than nested lists: FindIt, arXiv 2606.04282, in `shared/reference/vlm-grounding.md`);
- integer confidences 0-100 (`"conf":85` is one token, `0.85` is three);
- no `title`s (but the root's) and no descriptions in the schema: the system prompt
  says once what a box and a confidence are;
- the whole-image caption said once: dense captions list only the other regions
  (`regions`), and the first dense caption is made from `caption`;
- text as lines only: word polygons are estimated from their line, as the `verbose`
  format already does when the model gives no word boxes.

The Computer Vision 3.2 features add `categories` (names from the 86-name taxonomy, an
enum in the schema), `captions` and `words` (description), `brands`, `adult` (three
integer scores), `faces` and `landmarks`; 3.2's tag hints and object parents add `hint`
to each tag and `parents` to each object only when the call asks for them, so a 4.0
call's schema is byte for byte what it was.

`ImageAnalyzer(answer_format="verbose")` keeps the earlier format (`FEATURES[f].answer_type`).
Both decode into the same `ImageAnalysisResult`: a compact answer is rewritten as the
verbose answer with the same content (`to_verbose`) and finished by the same code, so
equal content gives equal results whichever format the model wrote.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaMode

from viewfinder.analyzers.features import EVERY_FEATURE, FEATURES, Feature, name_field
from viewfinder.build.grid import GRID, BareGridBox

__all__ = [
    "ANSWER_FORMATS",
    "DEFAULT_ANSWER_FORMAT",
    "AnswerFormat",
    "compact_answer",
    "compact_answer_model",
    "from_verbose",
    "to_verbose",
]

AnswerFormat = Literal["compact", "verbose"]
"""How the model writes its answer: `compact` (the default) or `verbose` (viewfinder 0.1's
first format: fractional confidences, word boxes, descriptions in the schema)."""
ANSWER_FORMATS: tuple[AnswerFormat, ...] = ("compact", "verbose")
DEFAULT_ANSWER_FORMAT: AnswerFormat = "compact"

_WHOLE_IMAGE = [0, 0, GRID, GRID]

Conf = Annotated[int, Field(ge=0, le=100)]
"""A confidence as the compact format writes it: an integer percentage."""


def _drop_property_titles(schema: dict[str, Any]) -> None:
    """Remove the properties' `title`s (most of about 150 tokens): the keys say it."""
    for value in schema.get("properties", {}).values():
        if isinstance(value, dict):
            value.pop("title", None)


def _drop_titles(schema: dict[str, Any]) -> None:
    """Remove the model's own `title` and those of its properties."""
    schema.pop("title", None)
    _drop_property_titles(schema)


class _SchemaOnce(BaseModel):
    """A model whose default JSON schema is made once per class and copied on each call.

    instructor asks for it on every request, and the engine once more for the cache key
    (about 1 ms each on the seven features).
    """

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool | None = None,
        ref_template: str = DEFAULT_REF_TEMPLATE,
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: JsonSchemaMode = "validation",
        *,
        union_format: Literal["any_of", "primitive_type_array"] = "any_of",
    ) -> dict[str, Any]:
        """pydantic's `model_json_schema`; the default one made once per class."""
        default = (
            by_alias is None
            and ref_template == DEFAULT_REF_TEMPLATE
            and schema_generator is GenerateJsonSchema
            and mode == "validation"
            and union_format == "any_of"
        )
        if not default:
            return super().model_json_schema(
                by_alias, ref_template, schema_generator, mode, union_format=union_format
            )
        return copy.deepcopy(_default_schema(cls))


@cache
def _default_schema(model: type[_SchemaOnce]) -> dict[str, Any]:
    """pydantic's own default schema of `model` (the method `_SchemaOnce` overrides)."""
    return super(_SchemaOnce, model).model_json_schema()


class CompactModel(_SchemaOnce):
    """Base of the compact answer's item models: no `title`s in their JSON schema."""

    model_config = ConfigDict(json_schema_extra=_drop_titles)


class CompactAnswer(_SchemaOnce):
    """Base of the compact answer itself: it keeps its own `title` (`ImageAnalysis`), which
    instructor's `tools` mode needs as the function's name; its properties lose theirs."""

    model_config = ConfigDict(json_schema_extra=_drop_property_titles)


class Text(CompactModel):
    text: str
    conf: Conf


class Region(CompactModel):
    text: str
    conf: Conf
    box: BareGridBox


class TagItem(CompactModel):
    name: str
    conf: Conf


class ObjectItem(CompactModel):
    name: str
    conf: Conf
    box: BareGridBox


class PersonItem(CompactModel):
    box: BareGridBox
    conf: Conf


class LineItem(CompactModel):
    text: str
    box: BareGridBox
    conf: Conf


class HintedTagItem(TagItem):
    hint: str


class ParentedObjectItem(ObjectItem):
    parents: list[str]


class NamedItem(CompactModel):
    name: str
    conf: Conf


class BoxItem(CompactModel):
    box: BareGridBox
    conf: Conf


class AdultItem(CompactModel):
    adult: Conf
    racy: Conf
    gore: Conf


@cache
def _category_item() -> type[CompactModel]:
    from viewfinder.schemas.taxonomy import cv32_categories

    return _named(NamedItem, cv32_categories())


@cache
def _named(base: type[CompactModel], names: tuple[str, ...]) -> type[CompactModel]:
    """`base` with `name` constrained to `names` (cached per vocabulary)."""
    if not names:
        return base
    model: type[CompactModel] = create_model(base.__name__, __base__=base, name=name_field(names))
    return model


def compact_answer_model(
    features: tuple[Feature, ...],
    *,
    tag_vocabulary: tuple[str, ...] = (),
    object_names: tuple[str, ...] = (),
    tag_hints: bool = False,
    object_parents: bool = False,
) -> type[BaseModel]:
    """The compact model-facing schema for `features` (in `EVERY_FEATURE` order).

    Keys: `caption` (also when only dense captions are asked: it is their first one),
    `regions` (dense captions but the whole image), `tags`, `objects`, `people`, `crop`
    (smart crops' region of interest), `lines` (read), and for 3.2 `categories`,
    `captions` and `words` (description), `brands`, `adult`, `faces`, `landmarks`.
    Features no model answers (`color`, `image_type`) have no key. Every field is
    required and none has a default, so the schema passes OpenAI's strict subset.
    """
    return _compact_answer_model(features, tag_vocabulary, object_names, tag_hints, object_parents)


@cache
def _compact_answer_model(
    features: tuple[Feature, ...],
    tag_vocabulary: tuple[str, ...],
    object_names: tuple[str, ...],
    tag_hints: bool,
    object_parents: bool,
) -> type[BaseModel]:
    chosen = set(features)
    fields: dict[str, Any] = {}
    if chosen & {Feature.CAPTION, Feature.DENSE_CAPTIONS}:
        fields["caption"] = (Text, ...)
    if Feature.DENSE_CAPTIONS in chosen:
        fields["regions"] = (list[Region], ...)
    if Feature.TAGS in chosen:
        tag = _named(HintedTagItem if tag_hints else TagItem, tag_vocabulary)
        fields["tags"] = (list[tag], ...)  # type: ignore[valid-type]
    if Feature.OBJECTS in chosen:
        item = _named(ParentedObjectItem if object_parents else ObjectItem, object_names)
        fields["objects"] = (list[item], ...)  # type: ignore[valid-type]
    if Feature.PEOPLE in chosen:
        fields["people"] = (list[PersonItem], ...)
    if Feature.SMART_CROPS in chosen:
        fields["crop"] = (BareGridBox, ...)
    if Feature.READ in chosen:
        fields["lines"] = (list[LineItem], ...)
    if Feature.CATEGORIES in chosen:
        fields["categories"] = (list[_category_item()], ...)  # type: ignore[misc]
    if Feature.DESCRIPTION in chosen:
        fields["captions"] = (list[Text], ...)
        fields["words"] = (list[str], ...)
    if Feature.BRANDS in chosen:
        fields["brands"] = (list[ObjectItem], ...)
    if Feature.ADULT in chosen:
        fields["adult"] = (AdultItem, ...)
    if Feature.FACES in chosen:
        fields["faces"] = (list[BoxItem], ...)
    if Feature.LANDMARKS in chosen:
        fields["landmarks"] = (list[NamedItem], ...)
    model: type[BaseModel] = create_model("ImageAnalysis", __base__=CompactAnswer, **fields)
    return model


def _fraction(conf: int) -> float:
    return conf / 100


def _percent(confidence: float) -> int:
    return min(max(round(confidence * 100), 0), 100)


def to_verbose(
    answer: BaseModel, features: tuple[Feature, ...], *, whole_box: list[Any] | None = None
) -> dict[str, Any]:
    """A validated compact answer as the verbose answer with the same content (grid units).

    Validate the result with the verbose answer model of the same features and
    vocabularies; `ImageAnalyzer.finish` then finishes it as any verbose answer.
    `whole_box`: the whole image's box in the answer's box convention (the first dense
    caption's, which finishing replaces by the image's bounds); default the 0-1000 grid's.
    """
    data = answer.model_dump()
    out: dict[str, Any] = {}
    for feature in features:
        if feature is Feature.CAPTION:
            caption = data["caption"]
            out["caption"] = {"text": caption["text"], "confidence": _fraction(caption["conf"])}
        elif feature is Feature.DENSE_CAPTIONS:
            caption = data["caption"]
            whole = {
                "text": caption["text"],
                "confidence": _fraction(caption["conf"]),
                "box": list(_WHOLE_IMAGE if whole_box is None else whole_box),
            }
            out["dense_captions"] = [whole] + [
                {"text": r["text"], "confidence": _fraction(r["conf"]), "box": r["box"]}
                for r in data["regions"]
            ]
        elif feature is Feature.TAGS:
            out["tags"] = [_verbose_item(t) for t in data["tags"]]
        elif feature is Feature.OBJECTS:
            out["objects"] = [_verbose_item(o) for o in data["objects"]]
        elif feature is Feature.PEOPLE:
            out["people"] = [
                {"box": p["box"], "confidence": _fraction(p["conf"])} for p in data["people"]
            ]
        elif feature is Feature.SMART_CROPS:
            out["smart_crops"] = {"box": data["crop"]}
        elif feature is Feature.READ:
            out["read"] = [
                {"text": line["text"], "box": line["box"], "confidence": _fraction(line["conf"])}
                for line in data["lines"]
            ]
        elif feature is Feature.DESCRIPTION:
            out["description"] = {
                "captions": [
                    {"text": c["text"], "confidence": _fraction(c["conf"])}
                    for c in data["captions"]
                ],
                "tags": list(data["words"]),
            }
        elif feature is Feature.ADULT:
            adult = data["adult"]
            out["adult"] = {
                "adult_score": _fraction(adult["adult"]),
                "racy_score": _fraction(adult["racy"]),
                "gore_score": _fraction(adult["gore"]),
            }
        elif feature in _ITEM_KEYS:
            out[feature.value] = [_verbose_item(item) for item in data[feature.value]]
    return out


_ITEM_KEYS = frozenset({Feature.CATEGORIES, Feature.BRANDS, Feature.FACES, Feature.LANDMARKS})
"""3.2 features whose compact key is their name and whose items map one to one."""


def _verbose_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A compact list item as the verbose one: `conf` becomes `confidence`, 0-1."""
    return {
        ("confidence" if k == "conf" else k): (_fraction(v) if k == "conf" else v)
        for k, v in item.items()
    }


def _compact_item(item: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A verbose list item as the compact one, keeping `keys` in order."""
    out: dict[str, Any] = {}
    for key in keys:
        if key == "conf":
            out["conf"] = _percent(item.get("confidence", 1.0))
        elif key == "box":
            out["box"] = list(item["box"])
        else:
            out[key] = item[key]
    return out


def from_verbose(
    answer: Mapping[str, Any],
    features: tuple[Feature, ...],
    *,
    tag_hints: bool | None = None,
    object_parents: bool | None = None,
) -> dict[str, Any]:
    """A verbose answer (a dict in grid units) written in the compact format.

    The inverse of `to_verbose` up to what the compact format drops: word boxes and
    confidences (words are estimated from their line), confidences finer than 1 %, and
    the first dense caption's box (it is the whole image either way). Used to script
    answers in tests and to count the output tokens of example answers.

    The whole-image caption comes from `caption`, else from the first dense caption.
    `tag_hints` and `object_parents` say whether tags carry `hint` and objects `parents`
    (a missing one written as `""` / `[]`); None: as the answer's first item has them.
    Features no model answers (`color`, `image_type`) are left out.
    """
    chosen = set(features)
    out: dict[str, Any] = {}
    if chosen & {Feature.CAPTION, Feature.DENSE_CAPTIONS}:
        dense = answer.get("dense_captions") or []
        caption = answer.get("caption") or (dense[0] if dense else {"text": "", "confidence": 0})
        out["caption"] = {"text": caption["text"], "conf": _percent(caption["confidence"])}
    if Feature.DENSE_CAPTIONS in chosen:
        out["regions"] = [
            {"text": r["text"], "conf": _percent(r["confidence"]), "box": list(r["box"])}
            for r in answer["dense_captions"][1:]
        ]
    if Feature.TAGS in chosen:
        tags = answer["tags"]
        hints = any("hint" in t for t in tags[:1]) if tag_hints is None else tag_hints
        out["tags"] = [
            {"name": t["name"], "conf": _percent(t["confidence"])}
            | ({"hint": t.get("hint") or ""} if hints else {})
            for t in tags
        ]
    if Feature.OBJECTS in chosen:
        objects = answer["objects"]
        parents = (
            any("parents" in o for o in objects[:1]) if object_parents is None else object_parents
        )
        out["objects"] = [
            {"name": o["name"], "conf": _percent(o["confidence"]), "box": list(o["box"])}
            | ({"parents": list(o.get("parents") or [])} if parents else {})
            for o in objects
        ]
    if Feature.PEOPLE in chosen:
        out["people"] = [
            {"box": list(p["box"]), "conf": _percent(p["confidence"])} for p in answer["people"]
        ]
    if Feature.SMART_CROPS in chosen:
        out["crop"] = list(answer["smart_crops"]["box"])
    if Feature.READ in chosen:
        out["lines"] = [
            {
                "text": line["text"],
                "box": list(line["box"]),
                "conf": _percent(line.get("confidence", 1.0)),
            }
            for line in answer["read"]
        ]
    if Feature.CATEGORIES in chosen:
        out["categories"] = [_compact_item(c, ("name", "conf")) for c in answer["categories"]]
    if Feature.DESCRIPTION in chosen:
        description = answer["description"]
        out["captions"] = [_compact_item(c, ("text", "conf")) for c in description["captions"]]
        out["words"] = list(description["tags"])
    if Feature.BRANDS in chosen:
        out["brands"] = [_compact_item(b, ("name", "conf", "box")) for b in answer["brands"]]
    if Feature.ADULT in chosen:
        adult = answer["adult"]
        out["adult"] = {
            "adult": _percent(adult["adult_score"]),
            "racy": _percent(adult["racy_score"]),
            "gore": _percent(adult["gore_score"]),
        }
    if Feature.FACES in chosen:
        out["faces"] = [_compact_item(f, ("box", "conf")) for f in answer["faces"]]
    if Feature.LANDMARKS in chosen:
        out["landmarks"] = [_compact_item(m, ("name", "conf")) for m in answer["landmarks"]]
    return out


def compact_answer(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A scripted answer written in the verbose form, as the compact format writes it.

    For scripting the model side of a test or a benchmark
    (`sim.script(compact_answer({...}))`) in the readable verbose form: feature keys
    (`caption`, `dense_captions`, ...), grid units, confidences 0-1. The features are the
    keys present. See `from_verbose` for what the compact format drops. Also importable
    from `viewfinder.testing`.
    """
    features = tuple(f for f in EVERY_FEATURE if f.value in answer and f in FEATURES)
    return from_verbose(answer, features)
