"""The features as data: what the model answers, and `finish`.

The seven Image Analysis 4.0 features (`ALL_FEATURES`, the default) and the Computer
Vision 3.2 ones (`CV32_FEATURES`). Each feature the model answers is one row of
`FEATURES`: its prompt template, its model-facing answer type (grid coordinates) and a
pure `finish` that turns a validated answer into the result schema in pixels of the
original image. `color` and `image_type` are computed from the pixels, never by a model
(`PIXEL_FEATURES`, `viewfinder.local.color`), and so are `faces` where OpenCV is installed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, Field, create_model

from viewfinder.build.grid import Frame, GridBox, box_to_pixels
from viewfinder.errors import InvalidOptionError
from viewfinder.finish.crops import smart_crops
from viewfinder.schemas.cv32 import (
    AdultContent,
    Category,
    Description,
    DetectedBrand,
    DetectedFace,
    Landmark,
)
from viewfinder.schemas.features import (
    Caption,
    CropRegion,
    DenseCaption,
    DetectedObject,
    DetectedPerson,
    ObjectParent,
    ReadBlock,
    ReadLine,
    ReadResult,
    ReadWord,
    Tag,
)
from viewfinder.schemas.geometry import BoundingBox
from viewfinder.schemas.taxonomy import cv32_categories

__all__ = [
    "ALL_FEATURES",
    "CV32_FEATURES",
    "EVERY_FEATURE",
    "FEATURES",
    "PIXEL_FEATURES",
    "Feature",
    "FeatureName",
    "FeatureSpec",
    "FinishContext",
    "VocabularyArg",
    "answer_type",
    "category_answer_type",
    "copy_side_for",
    "load_vocabulary",
    "name_field",
    "object_answer_type",
    "parse_features",
    "tag_answer_type",
    "vocabulary_prompt",
]


class Feature(StrEnum):
    """The visual features: Image Analysis 4.0's seven, then Computer Vision 3.2's."""

    CAPTION = "caption"
    DENSE_CAPTIONS = "dense_captions"
    TAGS = "tags"
    OBJECTS = "objects"
    PEOPLE = "people"
    SMART_CROPS = "smart_crops"
    READ = "read"
    CATEGORIES = "categories"
    DESCRIPTION = "description"
    BRANDS = "brands"
    ADULT = "adult"
    FACES = "faces"
    COLOR = "color"
    IMAGE_TYPE = "image_type"
    LANDMARKS = "landmarks"

    @property
    def azure_name(self) -> str:
        """The spelling Azure uses in `features=` (`denseCaptions`, `smartCrops`, ...)."""
        head, *rest = self.value.split("_")
        return head + "".join(part.title() for part in rest)


FeatureName = Literal[
    "caption",
    "dense_captions",
    "denseCaptions",
    "tags",
    "objects",
    "people",
    "smart_crops",
    "smartCrops",
    "read",
    "categories",
    "description",
    "brands",
    "adult",
    "faces",
    "color",
    "image_type",
    "imageType",
    "landmarks",
]
"""A feature's name as type checkers know it: `Feature`'s values and Azure's spellings
(`Feature.azure_name`), accepted wherever a feature is. At run time `parse_features` also
takes other spellings (any case, `-` or spaces), for names read from a command line or a
request."""

EVERY_FEATURE: tuple[Feature, ...] = tuple(Feature)
"""Every feature, 4.0's and 3.2's, in the order results list them."""
ALL_FEATURES: tuple[Feature, ...] = EVERY_FEATURE[:7]
"""The seven Image Analysis 4.0 features: the default of every call."""
CV32_FEATURES: tuple[Feature, ...] = EVERY_FEATURE[7:]
"""The Computer Vision 3.2 features beyond 4.0 (3.2's tags and objects are 4.0's, with
`tag_hints` and `object_parents`)."""
PIXEL_FEATURES: frozenset[Feature] = frozenset({Feature.COLOR, Feature.IMAGE_TYPE})
"""Computed from the pixels on this machine, never asked of a model."""

_ALIASES = {
    re.sub(r"[_\-\s]", "", feature.value): feature for feature in Feature
}  # "densecaptions" -> DENSE_CAPTIONS


def parse_features(features: Iterable[Feature | str] | Feature | str) -> tuple[Feature, ...]:
    """Normalise feature names: enum members, snake_case or Azure's spelling.

    Returns them de-duplicated, in `EVERY_FEATURE` order.

    Raises:
        InvalidOptionError: A name is unknown, or none was given.
    """
    items: Iterable[Feature | str] = (
        [features] if isinstance(features, (str, Feature)) else features
    )
    chosen: set[Feature] = set()
    for item in items:
        key = re.sub(r"[_\-\s]", "", str(item)).lower()
        if key not in _ALIASES:
            known = ", ".join(f.value for f in Feature)
            raise InvalidOptionError(f"unknown feature {item!r}; choose from {known}")
        chosen.add(_ALIASES[key])
    if not chosen:
        raise InvalidOptionError("at least one feature is required")
    return tuple(f for f in EVERY_FEATURE if f in chosen)


# --- what the model answers (grid coordinates) ----------------------------------------

_Confidence = Field(ge=0.0, le=1.0, description="your confidence, 0 to 1")


class CaptionAnswer(BaseModel):
    text: str
    confidence: float = _Confidence


class RegionCaptionAnswer(BaseModel):
    text: str
    confidence: float = _Confidence
    box: GridBox


class TagAnswer(BaseModel):
    name: str
    confidence: float = _Confidence


class ObjectAnswer(BaseModel):
    name: str
    confidence: float = _Confidence
    box: GridBox


class PersonAnswer(BaseModel):
    box: GridBox
    confidence: float = _Confidence


class RegionOfInterestAnswer(BaseModel):
    box: GridBox


class WordAnswer(BaseModel):
    text: str
    box: GridBox | None = None
    confidence: float = _Confidence


class LineAnswer(BaseModel):
    text: str
    box: GridBox
    confidence: float = _Confidence
    words: list[WordAnswer] | None = None


class HintedTagAnswer(TagAnswer):
    hint: str = Field(
        description='a broader word when the name is ambiguous or rare (e.g. "fungus" '
        'for "ascomycete"), else ""'
    )


class ParentedObjectAnswer(ObjectAnswer):
    parents: list[str] = Field(
        description='broader kinds of the object, narrowest first (e.g. ["dog", "mammal"] '
        "for a bulldog); [] when it has none"
    )


class CategoryAnswer(BaseModel):
    name: Any = Field(description="a category name of the taxonomy")
    confidence: float = _Confidence


class DescriptionAnswer(BaseModel):
    captions: list[CaptionAnswer]
    tags: list[str]


class BrandAnswer(BaseModel):
    name: str
    confidence: float = _Confidence
    box: GridBox


class AdultAnswer(BaseModel):
    adult_score: float = _Confidence
    racy_score: float = _Confidence
    gore_score: float = _Confidence


class FaceAnswer(BaseModel):
    box: GridBox
    confidence: float = _Confidence


class LandmarkAnswer(BaseModel):
    name: str
    confidence: float = _Confidence


# --- vocabulary control: names constrained in the model-facing schema ------------------

VocabularyArg = Iterable[str] | str | os.PathLike[str]
"""Allowed names: an iterable of names, or a path to a text file with one name per line."""


def load_vocabulary(
    vocabulary: VocabularyArg | None, *, what: str = "vocabulary"
) -> tuple[str, ...]:
    """Normalise a vocabulary: names as given, stripped, blanks and duplicates dropped.

    Args:
        vocabulary: None (no constraint), an iterable of names, or a `str` / `PathLike`
            path to a UTF-8 text file with one name per line (blank lines and lines
            starting with `#` are skipped).
        what: What the vocabulary is for, in error messages.

    Returns:
        The names in their first order; `()` means "no constraint".

    Raises:
        InvalidOptionError: The file cannot be read, a name is not a string, or a
            vocabulary was given but holds no name.
    """
    if vocabulary is None:
        return ()
    if isinstance(vocabulary, (str, os.PathLike)):
        path = Path(vocabulary)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidOptionError(f"cannot read the {what} file {str(path)!r}: {exc}") from None
        items: list[str] = [line for line in lines if not line.strip().startswith("#")]
    else:
        items = list(vocabulary)
    names: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise InvalidOptionError(f"{what} names must be strings, not {item!r}")
        name = " ".join(item.split())
        if name:
            names[name] = None
    if not names:
        raise InvalidOptionError(f"the {what} holds no name")
    return tuple(names)


def name_field(names: tuple[str, ...]) -> Any:
    """`(Literal[names...], Field)`: JSON schema `{"enum": [...], "type": "string"}`.

    The explicit `enum` keeps it an enum for a one-name vocabulary too (pydantic would
    otherwise write only `const`).
    """
    literal = Literal.__getitem__(names)
    return (literal, Field(json_schema_extra={"enum": list(names)}))


@cache
def tag_answer_type(names: tuple[str, ...] = (), hints: bool = False) -> type[TagAnswer]:
    """`TagAnswer` (`HintedTagAnswer` with 3.2 hints), its `name` `Literal[names]` when a
    vocabulary is given (cached per arguments)."""
    base: type[TagAnswer] = HintedTagAnswer if hints else TagAnswer
    if not names:
        return base
    model = create_model(base.__name__, __base__=base, name=name_field(names))
    return cast(type[TagAnswer], model)


@cache
def object_answer_type(names: tuple[str, ...] = (), parents: bool = False) -> type[ObjectAnswer]:
    """`ObjectAnswer` (`ParentedObjectAnswer` with 3.2 parents), its `name` `Literal[names]`
    when a vocabulary is given (cached per arguments)."""
    base: type[ObjectAnswer] = ParentedObjectAnswer if parents else ObjectAnswer
    if not names:
        return base
    model = create_model(base.__name__, __base__=base, name=name_field(names))
    return cast(type[ObjectAnswer], model)


@cache
def category_answer_type() -> type[CategoryAnswer]:
    """`CategoryAnswer` with `name` one of the 86 names of the 3.2 taxonomy (an enum)."""
    model: type[CategoryAnswer] = create_model(
        "CategoryAnswer", __base__=CategoryAnswer, name=name_field(cv32_categories())
    )
    return model


def answer_type(
    feature: Feature,
    *,
    tag_vocabulary: tuple[str, ...] = (),
    object_names: tuple[str, ...] = (),
    tag_hints: bool = False,
    object_parents: bool = False,
) -> Any:
    """A feature's model-facing answer type under the given vocabularies and 3.2 options.

    With empty vocabularies and no 3.2 option it is exactly `FEATURES[feature].answer_type`.
    """
    if feature is Feature.TAGS and (tag_vocabulary or tag_hints):
        return list[tag_answer_type(tag_vocabulary, tag_hints)]  # type: ignore[misc]
    if feature is Feature.OBJECTS and (object_names or object_parents):
        return list[object_answer_type(object_names, object_parents)]  # type: ignore[misc]
    return FEATURES[feature].answer_type


def vocabulary_prompt(
    features: Iterable[Feature],
    *,
    tag_vocabulary: tuple[str, ...] = (),
    object_names: tuple[str, ...] = (),
) -> str | None:
    """The prompt section telling the model its allowed names, or None when unconstrained."""
    chosen = set(features)
    rules = []
    if Feature.TAGS in chosen and tag_vocabulary:
        rules.append(
            "tags: every tag name must be exactly one of these names (no other name is "
            "accepted; leave out what none of them fits): " + ", ".join(map(repr, tag_vocabulary))
        )
    if Feature.OBJECTS in chosen and object_names:
        rules.append(
            "objects: every object name must be exactly one of these names (no other name "
            "is accepted; leave out objects none of them fits): "
            + ", ".join(map(repr, object_names))
        )
    return "\n".join(["Allowed names:", *rules]) if rules else None


# --- finishing: grid -> pixels of the original image ----------------------------------


@dataclass(frozen=True)
class FinishContext:
    """What `finish` needs besides the answer: the image size and the call's options."""

    frame: Frame
    smart_crops_aspect_ratios: tuple[float, ...] = ()
    gender_neutral_caption: bool = False
    max_candidates: int = 1


_GENDERED = {
    "man": "person",
    "woman": "person",
    "men": "people",
    "women": "people",
    "boy": "child",
    "girl": "child",
    "boys": "children",
    "girls": "children",
    "gentleman": "person",
    "lady": "person",
}
_GENDERED_RE = re.compile(r"\b(" + "|".join(_GENDERED) + r")\b", re.IGNORECASE)


def _neutral(text: str, ctx: FinishContext) -> str:
    """Azure's gender-neutral rewording (man/woman -> person, boy/girl -> child)."""
    if not ctx.gender_neutral_caption:
        return text
    return _GENDERED_RE.sub(lambda m: _GENDERED[m.group(0).lower()], text)


def _finish_caption(answer: CaptionAnswer, ctx: FinishContext) -> Caption:
    return Caption(text=_neutral(answer.text.strip(), ctx), confidence=answer.confidence)


_MAX_DENSE_CAPTIONS = 10


def _finish_dense(answers: list[RegionCaptionAnswer], ctx: FinishContext) -> list[DenseCaption]:
    whole = BoundingBox(x=0, y=0, width=ctx.frame.width, height=ctx.frame.height)
    result = [
        DenseCaption(
            text=_neutral(answer.text.strip(), ctx),
            confidence=answer.confidence,
            box=whole if index == 0 else box_to_pixels(answer.box, ctx.frame),
        )
        for index, answer in enumerate(answers[:_MAX_DENSE_CAPTIONS])
    ]
    return result


def _best_per_name(named: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Each non-blank name once, at its best confidence, best first; ties keep the order
    in which the names first came."""
    best: dict[str, float] = {}
    for name, confidence in named:
        if name:
            best[name] = max(best.get(name, 0.0), confidence)
    return sorted(best.items(), key=lambda item: -item[1])  # stable


def _finish_tags(answers: list[TagAnswer], ctx: FinishContext) -> list[Tag]:
    named = []
    hints: dict[str, str] = {}
    for answer in answers:
        # A vocabulary's names are kept as spelled there; free names are normalised.
        constrained = type(answer) not in (TagAnswer, HintedTagAnswer)
        name = answer.name if constrained else " ".join(answer.name.lower().split())
        named.append((name, answer.confidence))
        hint = " ".join(getattr(answer, "hint", "").lower().split())
        if name and hint and hint != name:
            hints.setdefault(name, hint)
    return [
        Tag(name=name, confidence=confidence, hint=hints.get(name))
        for name, confidence in _best_per_name(named)
    ]


def _parent_chain(names: list[str], confidence: float, own: str) -> ObjectParent | None:
    """`["dog", "mammal"]` as dog -> mammal; each broader kind at the object's confidence
    (the model gives one per object). Blanks and repeats of a narrower name are dropped."""
    kept: list[str] = []
    for raw in names:
        name = " ".join(raw.split())
        if name and name.lower() != own.lower() and name.lower() not in map(str.lower, kept):
            kept.append(name)
    parent: ObjectParent | None = None
    for name in reversed(kept):
        parent = ObjectParent(name=name, confidence=confidence, parent=parent)
    return parent


def _finish_objects(answers: list[ObjectAnswer], ctx: FinishContext) -> list[DetectedObject]:
    return [
        DetectedObject(
            name=answer.name.strip(),
            confidence=answer.confidence,
            box=box_to_pixels(answer.box, ctx.frame),
            parent=_parent_chain(
                getattr(answer, "parents", []), answer.confidence, answer.name.strip()
            ),
        )
        for answer in answers
    ]


def _finish_people(answers: list[PersonAnswer], ctx: FinishContext) -> list[DetectedPerson]:
    return [
        DetectedPerson(box=box_to_pixels(answer.box, ctx.frame), confidence=answer.confidence)
        for answer in answers
    ]


def _finish_smart_crops(answer: RegionOfInterestAnswer, ctx: FinishContext) -> list[CropRegion]:
    roi = box_to_pixels(answer.box, ctx.frame)
    return smart_crops(roi, ctx.frame.width, ctx.frame.height, ctx.smart_crops_aspect_ratios)


def split_words(text: str, box: BoundingBox) -> list[tuple[str, BoundingBox]]:
    """Estimate word boxes by splitting a line's box in proportion to character counts.

    Spaces count as characters, so the gaps between words are kept.
    """
    words = text.split()
    if not words:
        return []
    total = len(" ".join(words))
    result = []
    offset = 0
    for word in words:
        left = box.x + round(box.width * offset / total)
        right = box.x + round(box.width * (offset + len(word)) / total)
        result.append((word, BoundingBox(x=left, y=box.y, width=right - left, height=box.height)))
        offset += len(word) + 1
    return result


def _finish_line(answer: LineAnswer, ctx: FinishContext) -> ReadLine:
    line_box = box_to_pixels(answer.box, ctx.frame)
    given = answer.words or []
    if given and all(word.box is not None for word in given):
        words = [
            ReadWord(
                text=word.text,
                polygon=box_to_pixels(word.box, ctx.frame).to_polygon(),  # type: ignore[arg-type]
                confidence=word.confidence,
            )
            for word in given
        ]
    else:
        text = " ".join(word.text for word in given) if given else answer.text
        words = [
            ReadWord(
                text=word,
                polygon=box.to_polygon(),
                confidence=answer.confidence,
                estimated=True,
            )
            for word, box in split_words(text, line_box)
        ]
    return ReadLine(text=answer.text, polygon=line_box.to_polygon(), words=words)


def _finish_read(answers: list[LineAnswer], ctx: FinishContext) -> ReadResult:
    lines = [_finish_line(answer, ctx) for answer in answers if answer.text.strip()]
    return ReadResult(blocks=[ReadBlock(lines=lines)] if lines else [])


def _ranked(items: Iterable[Any]) -> list[Any]:
    """Best first by `confidence`; ties keep the answer's order."""
    return sorted(items, key=lambda item: -item.confidence)


def _finish_categories(answers: list[CategoryAnswer], ctx: FinishContext) -> list[Category]:
    ranked = _best_per_name((answer.name, answer.confidence) for answer in answers)
    return [Category(name=name, confidence=conf) for name, conf in ranked]


def _finish_description(answer: DescriptionAnswer, ctx: FinishContext) -> Description:
    captions: dict[str, Caption] = {}
    for caption in _ranked(answer.captions):
        text = _neutral(caption.text.strip(), ctx)
        if text and text not in captions:
            captions[text] = Caption(text=text, confidence=caption.confidence)
    words = dict.fromkeys(" ".join(word.lower().split()) for word in answer.tags)
    words.pop("", None)
    return Description(captions=tuple(captions.values())[: ctx.max_candidates], tags=tuple(words))


def _finish_brands(answers: list[BrandAnswer], ctx: FinishContext) -> list[DetectedBrand]:
    return [
        DetectedBrand(
            name=answer.name.strip(),
            confidence=answer.confidence,
            box=box_to_pixels(answer.box, ctx.frame),
        )
        for answer in answers
        if answer.name.strip()
    ]


ADULT_THRESHOLD = 0.5
"""A score at or above this sets its flag (the service does not publish its threshold)."""


def _finish_adult(answer: AdultAnswer, ctx: FinishContext) -> AdultContent:
    return AdultContent(
        is_adult_content=answer.adult_score >= ADULT_THRESHOLD,
        is_racy_content=answer.racy_score >= ADULT_THRESHOLD,
        is_gory_content=answer.gore_score >= ADULT_THRESHOLD,
        adult_score=answer.adult_score,
        racy_score=answer.racy_score,
        gore_score=answer.gore_score,
    )


def _finish_faces(answers: list[FaceAnswer], ctx: FinishContext) -> list[DetectedFace]:
    return [
        DetectedFace(box=box_to_pixels(answer.box, ctx.frame), confidence=answer.confidence)
        for answer in answers
    ]


def _finish_landmarks(answers: list[LandmarkAnswer], ctx: FinishContext) -> list[Landmark]:
    ranked = _best_per_name((" ".join(a.name.split()), a.confidence) for a in answers)
    return [Landmark(name=name, confidence=conf) for name, conf in ranked]


# --- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its template, its model-facing answer type, and its finish step."""

    feature: Feature
    answer_type: Any
    finish: Callable[[Any, FinishContext], Any]
    copy_side: int
    """Long side, in pixels, of the copy this feature needs (`copy_side_for`)."""

    @property
    def template_name(self) -> str:
        """Name of its template in `viewfinder/prompts/`."""
        return self.feature.value


FEATURES: dict[Feature, FeatureSpec] = {
    spec.feature: spec
    for spec in (
        FeatureSpec(Feature.CAPTION, CaptionAnswer, _finish_caption, 512),
        FeatureSpec(Feature.DENSE_CAPTIONS, list[RegionCaptionAnswer], _finish_dense, 768),
        FeatureSpec(Feature.TAGS, list[TagAnswer], _finish_tags, 512),
        FeatureSpec(Feature.OBJECTS, list[ObjectAnswer], _finish_objects, 768),
        FeatureSpec(Feature.PEOPLE, list[PersonAnswer], _finish_people, 768),
        FeatureSpec(Feature.SMART_CROPS, RegionOfInterestAnswer, _finish_smart_crops, 512),
        FeatureSpec(Feature.READ, list[LineAnswer], _finish_read, 1024),
        FeatureSpec(Feature.CATEGORIES, list[category_answer_type()], _finish_categories, 512),  # type: ignore[misc]
        FeatureSpec(Feature.DESCRIPTION, DescriptionAnswer, _finish_description, 512),
        FeatureSpec(Feature.BRANDS, list[BrandAnswer], _finish_brands, 768),
        FeatureSpec(Feature.ADULT, AdultAnswer, _finish_adult, 512),
        FeatureSpec(Feature.FACES, list[FaceAnswer], _finish_faces, 768),
        FeatureSpec(Feature.LANDMARKS, list[LandmarkAnswer], _finish_landmarks, 512),
    )
}
"""The features a model answers: every feature but `PIXEL_FEATURES`."""


def copy_side_for(features: Iterable[Feature]) -> int:
    """Long side, in pixels, of the copy sent for `features`: the largest any of them needs
    (pixel features are never sent; 512 when only they are asked).

    A whole-image caption, tags or a crop read well at 512 px (OpenAI's `low` detail is
    512 px); boxes around people, objects and regions get 768 px; text needs 1024 px
    (viewfinder's default copy before this table). A judgment, not a measurement: no model
    could be asked here. An analyzer's `max_side` replaces it for every call.
    """
    return max((FEATURES[f].copy_side for f in features if f in FEATURES), default=512)
