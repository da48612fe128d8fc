"""Score a viewfinder result against a stored Azure result, feature by feature.

Pure functions, no I/O and no network: both sides are `ImageAnalysisResult` (read the
Azure side with `viewfinder.compat.rest.from_azure_json`). The viewfinder result plays
the prediction and the Azure result the reference, so *precision* is the share of
viewfinder's items Azure also has and *recall* the share of Azure's items viewfinder
found.

Conventions, so every score is a plain float:

* A ratio whose denominator is zero (no predictions, no references, no matches) is
  `1.0` when both sides are empty and `0.0` otherwise.
* Names (tags, object names) are compared lower-cased and stripped, then mapped through
  the optional synonym map (`{"sofa": "couch"}`) on both sides.
* Boxes match at IoU >= 0.5, one-to-one, greedily: predictions in descending
  confidence (ties keep their order) each take the unmatched reference of highest IoU.
* Agreement of two flags or values is a float, 1.0 or 0.0, so it averages over images
  into an agreement rate.

The reference may be a stored Computer Vision 3.2 result too (read it with
`viewfinder.compat.results32.from_cv32_json`): its tags and objects score as above, and
its 3.2 features (reference `azure-computer-vision-3.2.md` §4, §5.1-5.6) score as
`CategoryScores`, `DescriptionScores`, `AdultScores`, `ColorScores`,
`ImageTypeScores`, and brands and faces as `DetectionScores` (brands matched by name
and box, faces by box alone). A feature only one side holds is not scored; the
reference's are listed in `ImageComparison.unscored`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from rapidfuzz.distance import Levenshtein

from viewfinder.schemas.color import ColorInfo, ImageType
from viewfinder.schemas.cv32 import AdultContent, Category, Description
from viewfinder.schemas.features import CropRegion, ReadResult
from viewfinder.schemas.geometry import BoundingBox
from viewfinder.schemas.matching import iou, match_boxes
from viewfinder.schemas.result import ImageAnalysisResult

__all__ = [
    "AdultScores",
    "CaptionScores",
    "CategoryScores",
    "ColorScores",
    "CropScore",
    "DenseCaptionScores",
    "DescriptionScores",
    "DetectionScores",
    "FeatureScores",
    "ImageComparison",
    "ImageTypeScores",
    "ReadScores",
    "SmartCropScores",
    "TagScores",
    "average_precision",
    "caption_char_ratio",
    "caption_token_f1",
    "category_family",
    "compare_results",
    "error_rate",
    "iou",
    "levenshtein",
    "summarize",
]

IOU_THRESHOLD = 0.5
"""Minimum IoU for two boxes to match."""

_H = TypeVar("_H", bound=Hashable)


# --- score models ---------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class TagScores(_Frozen):
    """Tags compared as sets of names."""

    precision: float
    """Share of viewfinder's tags that Azure also gives."""
    recall: float
    """Share of Azure's tags that viewfinder also gives."""
    f1: float
    """Harmonic mean of precision and recall."""
    predicted: int
    """Distinct viewfinder tag names (after normalising and synonyms)."""
    reference: int
    """Distinct Azure tag names (after normalising and synonyms)."""
    matched: int
    """Names on both sides."""
    missing: tuple[str, ...]
    """Azure's names viewfinder lacks, sorted."""
    extra: tuple[str, ...]
    """viewfinder's names Azure lacks, sorted."""


class DetectionScores(_Frozen):
    """Boxes (objects, people, dense captions) matched one-to-one at IoU >= 0.5."""

    precision: float
    """Matched predictions over predictions."""
    recall: float
    """Matched references over references."""
    mean_iou: float
    """Mean IoU of the matched pairs."""
    ap: float | None
    """Average precision (VOC all-points interpolation, predictions ranked by
    confidence); `None` when Azure has no boxes, where it is undefined."""
    predicted: int
    """Boxes viewfinder gives."""
    reference: int
    """Boxes Azure gives."""
    matched: int
    """One-to-one matches."""


class DenseCaptionScores(DetectionScores):
    """Dense captions: box scores, plus how alike the texts of matched regions are."""

    mean_text_f1: float
    """Mean caption token F1 (see `caption_token_f1`) of the matched pairs."""


class ReadScores(_Frozen):
    """OCR: text error rates and line-box matching."""

    cer: float
    """Character error rate: Levenshtein distance over Azure's character count, on the
    lines joined with newlines (may exceed 1)."""
    wer: float
    """Word error rate: the same over whitespace-separated words."""
    line_precision: float
    """Matched viewfinder lines over viewfinder lines (polygon bounds, IoU >= 0.5)."""
    line_recall: float
    """Matched Azure lines over Azure lines."""
    line_mean_iou: float
    """Mean IoU of the matched lines."""
    predicted_lines: int
    """Lines viewfinder gives."""
    reference_lines: int
    """Lines Azure gives."""
    viewfinder_text: str
    """viewfinder's text, one line per line."""
    azure_text: str
    """Azure's text, one line per line."""


class CropScore(_Frozen):
    """One Azure crop and the viewfinder crop paired with it."""

    aspect_ratio: float
    """Azure's aspect ratio of the crop."""
    iou: float
    """IoU of the two crops; 0 when viewfinder has no crop to pair."""


class SmartCropScores(_Frozen):
    """Smart crops paired by aspect ratio, in order."""

    crops: tuple[CropScore, ...]
    """One entry per Azure crop, in Azure's order."""
    mean_iou: float
    """Mean IoU over Azure's crops."""


class CaptionScores(_Frozen):
    """Caption text similarity, computed offline.

    `token_f1` is the F1 of the two sets of word tokens (lower-cased, punctuation
    dropped); `char_ratio` is `difflib.SequenceMatcher.ratio()` on the lower-cased,
    stripped texts. Neither is semantic: paraphrases score low.
    """

    token_f1: float
    """Token-set F1, 0-1."""
    char_ratio: float
    """Character-level similarity ratio, 0-1."""
    viewfinder_text: str
    """viewfinder's caption."""
    azure_text: str
    """Azure's caption."""


class DescriptionScores(CaptionScores):
    """3.2 Description: the caption metrics on each side's best caption (highest
    confidence, the first on ties; `""` when a side has none), and the description tags
    compared as sets of words (normalised and mapped like tags)."""

    tags_f1: float
    """F1 of the two sets of description tags."""


class CategoryScores(_Frozen):
    """3.2 Categories (the 86-category taxonomy, reference §5.1), by name.

    A name's *family* is its part up to the first `_` (`people_portrait` and the parent
    `people_` are both `people_`): the family scores count a parent as agreeing with any
    of its children, and siblings with each other, since the service answers a parent
    when it is unsure of the child. The exact scores take names as given.
    """

    top1: float
    """1.0 when both sides' most confident categories (the first on ties) are the same
    name, else 0.0; 1.0 when both sides have none."""
    top1_family: float
    """The same on families."""
    precision: float
    """Share of viewfinder's category names Azure also gives."""
    recall: float
    """Share of Azure's category names viewfinder also gives."""
    f1: float
    """Harmonic mean of precision and recall, on names."""
    family_f1: float
    """The same F1 on the sets of families."""
    predicted: int
    """Distinct viewfinder category names."""
    reference: int
    """Distinct Azure category names."""
    matched: int
    """Names on both sides."""
    viewfinder_top: str | None
    """viewfinder's most confident category."""
    azure_top: str | None
    """Azure's most confident category."""


class AdultScores(_Frozen):
    """3.2 Adult (reference §5.4): the three flags' agreement and the scores' distance."""

    adult_agree: float
    """`isAdultContent` equal on both sides (1.0 or 0.0)."""
    racy_agree: float
    """`isRacyContent` equal."""
    gory_agree: float
    """`isGoryContent` equal."""
    agreement: float
    """Mean of the three."""
    adult_score_diff: float
    """`|viewfinder adultScore - Azure adultScore|`, 0-1."""
    racy_score_diff: float
    """The same for `racyScore`."""
    gore_score_diff: float
    """The same for `goreScore`."""


class ColorScores(_Frozen):
    """3.2 Color (reference §5.2)."""

    foreground_equal: float
    """`dominantColorForeground` equal (1.0 or 0.0)."""
    background_equal: float
    """`dominantColorBackground` equal."""
    dominant_colors_jaccard: float
    """Intersection over union of the two `dominantColors` sets (1.0 when both are
    empty)."""
    is_bw_equal: float
    """`isBWImg` equal."""
    accent_distance: float
    """Euclidean distance of the two `accentColor`s in 8-bit RGB, 0 to 441.7."""
    viewfinder_accent: str
    """viewfinder's accent colour, 6 hex digits."""
    azure_accent: str
    """Azure's accent colour."""


class ImageTypeScores(_Frozen):
    """3.2 ImageType (reference §5.3)."""

    clip_art_equal: float
    """`clipArtType` (0-3) equal (1.0 or 0.0)."""
    line_drawing_equal: float
    """`lineDrawingType` (0 or 1) equal."""
    viewfinder_clip_art: int
    """viewfinder's `clipArtType`."""
    azure_clip_art: int
    """Azure's `clipArtType`."""


class FeatureScores(_Frozen):
    """Scores per feature; `None` where a feature is missing from either side."""

    caption: CaptionScores | None = None
    """Caption similarity."""
    dense_captions: DenseCaptionScores | None = None
    """Dense caption regions."""
    tags: TagScores | None = None
    """Tag names."""
    objects: DetectionScores | None = None
    """Object boxes (and names, unless ignored)."""
    people: DetectionScores | None = None
    """Person boxes."""
    smart_crops: SmartCropScores | None = None
    """Crop boxes."""
    read: ReadScores | None = None
    """OCR text and lines."""
    categories: CategoryScores | None = None
    """3.2 categories."""
    description: DescriptionScores | None = None
    """3.2 description: best caption and description tags."""
    brands: DetectionScores | None = None
    """3.2 brand boxes, matched by name too."""
    faces: DetectionScores | None = None
    """3.2 face rectangles (boxes alone)."""
    adult: AdultScores | None = None
    """3.2 adult, racy and gory flags and scores."""
    color: ColorScores | None = None
    """3.2 colour scheme."""
    image_type: ImageTypeScores | None = None
    """3.2 clip art and line drawing."""


class ImageComparison(_Frozen):
    """One image: viewfinder's result scored against Azure's."""

    viewfinder_model_version: str
    """`model_version` of the viewfinder result."""
    azure_model_version: str
    """`model_version` of the Azure result."""
    features: tuple[str, ...]
    """Features present in both results, and so scored."""
    scores: FeatureScores
    """The scores."""
    unscored: tuple[str, ...] = ()
    """Features the reference holds and viewfinder's result does not (e.g. 3.2
    features viewfinder was not asked for), so not scored."""


# --- primitives -----------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float, *, both_empty: bool) -> float:
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 0.0 if total == 0 else 2 * precision * recall / total


def levenshtein(a: Sequence[_H], b: Sequence[_H]) -> int:
    """Edit distance (insertions, deletions, substitutions, each costing 1).

    The one edit distance of the package, its benchmarks and tests, computed by rapidfuzz
    (C++, bit-parallel): the pure-Python table it replaces took over a second on 3,000
    characters (benchmarks/bench_levenshtein.py). Strings compare code point by code
    point, lists item by item, as before.

    Args:
        a: One sequence (a string, or a list of words).
        b: The other sequence.

    Returns:
        The smallest number of edits turning `a` into `b`.
    """
    return int(Levenshtein.distance(a, b))


def error_rate(predicted: Sequence[_H], reference: Sequence[_H]) -> float:
    """Levenshtein distance over the reference's length (CER on strings, WER on words).

    Args:
        predicted: The hypothesis.
        reference: The ground truth.

    Returns:
        The error rate (may exceed 1); for an empty reference, 0.0 when the
        prediction is empty too and 1.0 otherwise.
    """
    if not reference:
        return 0.0 if not predicted else 1.0
    return levenshtein(predicted, reference) / len(reference)


def average_precision(hits: Sequence[bool], n_reference: int) -> float:
    """VOC-style average precision with all-points interpolation.

    Args:
        hits: Whether each prediction, in descending confidence, is a true positive.
        n_reference: Number of reference items (true positives possible).

    Returns:
        Area under the interpolated precision/recall curve, 0-1.

    Raises:
        ValueError: If `n_reference` is not positive.
    """
    if n_reference <= 0:
        raise ValueError("average precision needs at least one reference item")
    recalls: list[float] = []
    precisions: list[float] = []
    tp = 0
    for rank, hit in enumerate(hits, start=1):
        tp += hit
        recalls.append(tp / n_reference)
        precisions.append(tp / rank)
    mrec = [0.0, *recalls, 1.0]
    mpre = [0.0, *precisions, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum(
        (mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]
    )


_TOKEN = re.compile(r"[^\W_]+")


def _tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text.lower()))


def caption_token_f1(predicted: str, reference: str) -> float:
    """F1 of the two texts' word-token sets (lower-cased, punctuation dropped).

    Args:
        predicted: viewfinder's text.
        reference: Azure's text.

    Returns:
        Token-set F1, 0-1; 1.0 when both texts have no tokens.
    """
    p, r = _tokens(predicted), _tokens(reference)
    both_empty = not p and not r
    common = len(p & r)
    return _f1(
        _ratio(common, len(p), both_empty=both_empty),
        _ratio(common, len(r), both_empty=both_empty),
    )


def caption_char_ratio(predicted: str, reference: str) -> float:
    """`difflib.SequenceMatcher` ratio of the lower-cased, stripped texts.

    Args:
        predicted: viewfinder's text.
        reference: Azure's text.

    Returns:
        Character-level similarity, 0-1 (1.0 for two empty texts).
    """
    return difflib.SequenceMatcher(
        None, predicted.strip().lower(), reference.strip().lower(), autojunk=False
    ).ratio()


def _canonical(synonyms: Mapping[str, str] | None) -> Callable[[str], str]:
    table = {k.strip().lower(): v.strip().lower() for k, v in (synonyms or {}).items()}

    def canon(name: str) -> str:
        key = name.strip().lower()
        return table.get(key, key)

    return canon


# --- matching -------------------------------------------------------------------------------


def _match_ranked(
    predicted: Sequence[tuple[BoundingBox, float, str]],
    reference: Sequence[tuple[BoundingBox, str]],
    threshold: float,
) -> tuple[list[bool], list[tuple[int, int, float]]]:
    """Greedy by confidence (`schemas.matching.match_boxes`, the matcher
    `vf.draw_comparison` draws with): (hits in rank order, [(pred index, ref index, iou)])."""
    pairs = match_boxes(
        [box for box, _, _ in predicted],
        [box for box, _ in reference],
        threshold,
        confidences=[confidence for _, confidence, _ in predicted],
        predicted_labels=[label for _, _, label in predicted],
        reference_labels=[label for _, label in reference],
    )
    matched = {i for i, _, _ in pairs}
    order = sorted(range(len(predicted)), key=lambda i: -predicted[i][1])
    return [i in matched for i in order], pairs


def _match_by_iou(
    predicted: Sequence[BoundingBox], reference: Sequence[BoundingBox], threshold: float
) -> list[tuple[int, int, float]]:
    """Greedy by IoU over all pairs (for items without confidences)."""
    return match_boxes(predicted, reference, threshold)


def _detection_fields(
    n_pred: int, n_ref: int, pairs: Sequence[tuple[int, int, float]], hits: Sequence[bool]
) -> dict[str, Any]:
    both_empty = n_pred == 0 and n_ref == 0
    matched = len(pairs)
    return {
        "precision": _ratio(matched, n_pred, both_empty=both_empty),
        "recall": _ratio(matched, n_ref, both_empty=both_empty),
        "mean_iou": _ratio(sum(p[2] for p in pairs), matched, both_empty=both_empty),
        "ap": average_precision(hits, n_ref) if n_ref else None,
        "predicted": n_pred,
        "reference": n_ref,
        "matched": matched,
    }


def _score_boxes(
    predicted: Sequence[tuple[BoundingBox, float, str]],
    reference: Sequence[tuple[BoundingBox, str]],
    threshold: float,
) -> DetectionScores:
    hits, pairs = _match_ranked(predicted, reference, threshold)
    return DetectionScores(**_detection_fields(len(predicted), len(reference), pairs, hits))


# --- per feature ----------------------------------------------------------------------------


def _score_tags(
    predicted: Sequence[str], reference: Sequence[str], canon: Callable[[str], str]
) -> TagScores:
    p = {canon(name) for name in predicted}
    r = {canon(name) for name in reference}
    both_empty = not p and not r
    common = p & r
    precision = _ratio(len(common), len(p), both_empty=both_empty)
    recall = _ratio(len(common), len(r), both_empty=both_empty)
    return TagScores(
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        predicted=len(p),
        reference=len(r),
        matched=len(common),
        missing=tuple(sorted(r - p)),
        extra=tuple(sorted(p - r)),
    )


def _score_read(predicted: ReadResult, reference: ReadResult, threshold: float) -> ReadScores:
    p_text, r_text = predicted.text, reference.text
    p_lines, r_lines = predicted.lines, reference.lines
    pairs = _match_by_iou(
        [line.polygon.bounds for line in p_lines],
        [line.polygon.bounds for line in r_lines],
        threshold,
    )
    both_empty = not p_lines and not r_lines
    return ReadScores(
        cer=error_rate(p_text, r_text),
        wer=error_rate(p_text.split(), r_text.split()),
        line_precision=_ratio(len(pairs), len(p_lines), both_empty=both_empty),
        line_recall=_ratio(len(pairs), len(r_lines), both_empty=both_empty),
        line_mean_iou=_ratio(sum(p[2] for p in pairs), len(pairs), both_empty=both_empty),
        predicted_lines=len(p_lines),
        reference_lines=len(r_lines),
        viewfinder_text=p_text,
        azure_text=r_text,
    )


def _score_crops(
    predicted: Sequence[CropRegion], reference: Sequence[CropRegion], tolerance: float = 0.01
) -> SmartCropScores:
    free = list(range(len(predicted)))
    paired: list[int | None] = []
    for ref in reference:
        match = next(
            (i for i in free if abs(predicted[i].aspect_ratio - ref.aspect_ratio) <= tolerance),
            None,
        )
        if match is not None:
            free.remove(match)
        paired.append(match)
    # Crops whose ratios differ (none requested: each side reports its own) pair in order.
    for k, match in enumerate(paired):
        if match is None and free:
            paired[k] = free.pop(0)
    crops = tuple(
        CropScore(
            aspect_ratio=ref.aspect_ratio,
            iou=0.0 if match is None else iou(predicted[match].box, ref.box),
        )
        for ref, match in zip(reference, paired, strict=True)
    )
    mean = _ratio(sum(c.iou for c in crops), len(crops), both_empty=not predicted and not reference)
    return SmartCropScores(crops=crops, mean_iou=mean)


def category_family(name: str) -> str:
    """A 3.2 category's family: its name up to and including the first `_`.

    Args:
        name: A taxonomy name (`people_portrait`, or the parent `people_`).

    Returns:
        `people_` for both; a name without `_` is its own family.
    """
    head, sep, _ = name.strip().lower().partition("_")
    return head + sep


def _top(items: Sequence[Category]) -> str | None:
    best: Category | None = None
    for item in items:  # the first of equal confidences wins
        if best is None or item.confidence > best.confidence:
            best = item
    return None if best is None else best.name.strip().lower()


def _agree(a: object, b: object) -> float:
    return 1.0 if a == b else 0.0


def _set_f1(predicted: set[str], reference: set[str]) -> tuple[float, float, float]:
    both_empty = not predicted and not reference
    common = len(predicted & reference)
    precision = _ratio(common, len(predicted), both_empty=both_empty)
    recall = _ratio(common, len(reference), both_empty=both_empty)
    return precision, recall, _f1(precision, recall)


def _score_categories(
    predicted: Sequence[Category], reference: Sequence[Category]
) -> CategoryScores:
    p = {c.name.strip().lower() for c in predicted}
    r = {c.name.strip().lower() for c in reference}
    precision, recall, f1 = _set_f1(p, r)
    p_top, r_top = _top(predicted), _top(reference)
    return CategoryScores(
        top1=_agree(p_top, r_top),
        top1_family=_agree(
            None if p_top is None else category_family(p_top),
            None if r_top is None else category_family(r_top),
        ),
        precision=precision,
        recall=recall,
        f1=f1,
        family_f1=_set_f1({category_family(n) for n in p}, {category_family(n) for n in r})[2],
        predicted=len(p),
        reference=len(r),
        matched=len(p & r),
        viewfinder_top=p_top,
        azure_top=r_top,
    )


def _best_caption(description: Description) -> str:
    best = None
    for caption in description.captions:  # the first of equal confidences wins
        if best is None or caption.confidence > best.confidence:
            best = caption
    return "" if best is None else best.text


def _score_description(
    predicted: Description, reference: Description, canon: Callable[[str], str]
) -> DescriptionScores:
    p_text, r_text = _best_caption(predicted), _best_caption(reference)
    return DescriptionScores(
        token_f1=caption_token_f1(p_text, r_text),
        char_ratio=caption_char_ratio(p_text, r_text),
        viewfinder_text=p_text,
        azure_text=r_text,
        tags_f1=_set_f1({canon(t) for t in predicted.tags}, {canon(t) for t in reference.tags})[2],
    )


def _score_adult(predicted: AdultContent, reference: AdultContent) -> AdultScores:
    flags = (
        _agree(predicted.is_adult_content, reference.is_adult_content),
        _agree(predicted.is_racy_content, reference.is_racy_content),
        _agree(predicted.is_gory_content, reference.is_gory_content),
    )
    return AdultScores(
        adult_agree=flags[0],
        racy_agree=flags[1],
        gory_agree=flags[2],
        agreement=sum(flags) / len(flags),
        adult_score_diff=abs(predicted.adult_score - reference.adult_score),
        racy_score_diff=abs(predicted.racy_score - reference.racy_score),
        gore_score_diff=abs(predicted.gore_score - reference.gore_score),
    )


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return int(hex_color[0:2], 16), int(hex_color[2:4], 16), int(hex_color[4:6], 16)


def _score_color(predicted: ColorInfo, reference: ColorInfo) -> ColorScores:
    p, r = set(predicted.dominant_colors), set(reference.dominant_colors)
    return ColorScores(
        foreground_equal=_agree(
            predicted.dominant_color_foreground, reference.dominant_color_foreground
        ),
        background_equal=_agree(
            predicted.dominant_color_background, reference.dominant_color_background
        ),
        dominant_colors_jaccard=_ratio(len(p & r), len(p | r), both_empty=not p and not r),
        is_bw_equal=_agree(predicted.is_bw_img, reference.is_bw_img),
        accent_distance=math.dist(_rgb(predicted.accent_color), _rgb(reference.accent_color)),
        viewfinder_accent=predicted.accent_color,
        azure_accent=reference.accent_color,
    )


def _score_image_type(predicted: ImageType, reference: ImageType) -> ImageTypeScores:
    return ImageTypeScores(
        clip_art_equal=_agree(predicted.clip_art_type, reference.clip_art_type),
        line_drawing_equal=_agree(predicted.line_drawing_type, reference.line_drawing_type),
        viewfinder_clip_art=predicted.clip_art_type,
        azure_clip_art=reference.clip_art_type,
    )


def _score_cv32(
    vf: ImageAnalysisResult,
    az: ImageAnalysisResult,
    canon: Callable[[str], str],
    iou_threshold: float,
) -> dict[str, Any]:
    """The 3.2 features both results hold, scored."""
    scores: dict[str, Any] = {}
    if vf.categories is not None and az.categories is not None:
        scores["categories"] = _score_categories(vf.categories, az.categories)
    if vf.description is not None and az.description is not None:
        scores["description"] = _score_description(vf.description, az.description, canon)
    if vf.brands is not None and az.brands is not None:
        scores["brands"] = _score_boxes(
            [(b.box, b.confidence, canon(b.name)) for b in vf.brands],
            [(b.box, canon(b.name)) for b in az.brands],
            iou_threshold,
        )
    if vf.faces is not None and az.faces is not None:
        scores["faces"] = _score_boxes(
            [(f.box, f.confidence, "") for f in vf.faces],
            [(f.box, "") for f in az.faces],
            iou_threshold,
        )
    if vf.adult is not None and az.adult is not None:
        scores["adult"] = _score_adult(vf.adult, az.adult)
    if vf.color is not None and az.color is not None:
        scores["color"] = _score_color(vf.color, az.color)
    if vf.image_type is not None and az.image_type is not None:
        scores["image_type"] = _score_image_type(vf.image_type, az.image_type)
    return scores


def compare_results(
    viewfinder_result: ImageAnalysisResult,
    azure_result: ImageAnalysisResult,
    *,
    synonyms: Mapping[str, str] | None = None,
    ignore_object_names: bool = False,
    iou_threshold: float = IOU_THRESHOLD,
) -> ImageComparison:
    """Score every feature present in both results.

    Args:
        viewfinder_result: The prediction.
        azure_result: The reference (e.g. stored Azure JSON read by `from_azure_json`).
        synonyms: Name -> canonical name, applied to tags and object names on both
            sides (keys and values are lower-cased and stripped).
        ignore_object_names: Match objects on boxes alone.
        iou_threshold: Minimum IoU for boxes (and read lines) to match.

    Returns:
        The per-feature scores, and which features were scored.
    """
    canon = _canonical(synonyms)
    vf, az = viewfinder_result, azure_result
    scores: dict[str, Any] = {}

    if vf.caption is not None and az.caption is not None:
        scores["caption"] = CaptionScores(
            token_f1=caption_token_f1(vf.caption.text, az.caption.text),
            char_ratio=caption_char_ratio(vf.caption.text, az.caption.text),
            viewfinder_text=vf.caption.text,
            azure_text=az.caption.text,
        )
    if vf.dense_captions is not None and az.dense_captions is not None:
        p_dense, r_dense = vf.dense_captions, az.dense_captions
        hits, pairs = _match_ranked(
            [(d.box, d.confidence, "") for d in p_dense],
            [(d.box, "") for d in r_dense],
            iou_threshold,
        )
        fields = _detection_fields(len(p_dense), len(r_dense), pairs, hits)
        text_f1 = [caption_token_f1(p_dense[i].text, r_dense[j].text) for i, j, _ in pairs]
        fields["mean_text_f1"] = _ratio(
            sum(text_f1), len(text_f1), both_empty=not p_dense and not r_dense
        )
        scores["dense_captions"] = DenseCaptionScores(**fields)
    if vf.tags is not None and az.tags is not None:
        scores["tags"] = _score_tags([t.name for t in vf.tags], [t.name for t in az.tags], canon)
    if vf.objects is not None and az.objects is not None:

        def label(name: str) -> str:
            return "" if ignore_object_names else canon(name)

        scores["objects"] = _score_boxes(
            [(o.box, o.confidence, label(o.name)) for o in vf.objects],
            [(o.box, label(o.name)) for o in az.objects],
            iou_threshold,
        )
    if vf.people is not None and az.people is not None:
        scores["people"] = _score_boxes(
            [(p.box, p.confidence, "") for p in vf.people],
            [(p.box, "") for p in az.people],
            iou_threshold,
        )
    if vf.smart_crops is not None and az.smart_crops is not None:
        scores["smart_crops"] = _score_crops(vf.smart_crops, az.smart_crops)
    if vf.read is not None and az.read is not None:
        scores["read"] = _score_read(vf.read, az.read, iou_threshold)
    scores.update(_score_cv32(vf, az, canon, iou_threshold))

    order = [name for name in FeatureScores.model_fields if name in scores]
    unscored = [
        name
        for name in (*FeatureScores.model_fields, "landmarks")
        if name not in scores and getattr(az, name) is not None
    ]
    return ImageComparison(
        viewfinder_model_version=vf.model_version,
        azure_model_version=az.model_version,
        features=tuple(order),
        scores=FeatureScores(**scores),
        unscored=tuple(unscored),
    )


def summarize(comparisons: Sequence[ImageComparison]) -> dict[str, Any]:
    """Mean of every numeric metric, per feature, over the images that have it.

    Args:
        comparisons: One comparison per image.

    Returns:
        `{"images": n, "features": {feature: {"images": k, metric: mean, ...}}}`;
        a metric that is `None` for some images (AP with no Azure boxes) is averaged
        over the others and left out when it is `None` everywhere.
    """
    features: dict[str, dict[str, Any]] = {}
    for name in FeatureScores.model_fields:
        present = [s for c in comparisons if (s := getattr(c.scores, name)) is not None]
        if not present:
            continue
        values: dict[str, list[float]] = {}
        for score in present:
            for metric, value in score.model_dump().items():
                if isinstance(value, bool) or value is None:
                    continue
                if isinstance(value, int | float):
                    values.setdefault(metric, []).append(float(value))
        summary: dict[str, Any] = {"images": len(present)}
        summary.update({m: sum(v) / len(v) for m, v in values.items()})
        features[name] = summary
    return {"images": len(comparisons), "features": features}
