"""Scoring viewfinder against Azure: cases whose answers are known by construction."""

from __future__ import annotations

import json
import random
from collections.abc import Hashable, Sequence
from pathlib import Path

import pytest

from viewfinder.compat.rest import from_azure_json
from viewfinder.evaluate.compare import (
    ImageComparison,
    average_precision,
    caption_char_ratio,
    caption_token_f1,
    compare_results,
    error_rate,
    iou,
    levenshtein,
    summarize,
)
from viewfinder.schemas import (
    BoundingBox,
    Caption,
    CropRegion,
    DetectedObject,
    DetectedPerson,
    ImageAnalysisResult,
    ImageMetadata,
    Point,
    Polygon,
    ReadBlock,
    ReadLine,
    ReadResult,
    Tag,
)

SAMPLE = Path(__file__).parent / "assets" / "azure_sample_all_features.json"
META = ImageMetadata(width=1000, height=1000)


@pytest.fixture(scope="module")
def sample() -> ImageAnalysisResult:
    return from_azure_json(json.loads(SAMPLE.read_text()))


def _result(**features: object) -> ImageAnalysisResult:
    return ImageAnalysisResult.model_validate(
        {"model_version": "test", "metadata": META, **features}
    )


def _box(x: int, y: int, w: int, h: int) -> BoundingBox:
    return BoundingBox(x=x, y=y, width=w, height=h)


def _line(text: str, box: BoundingBox) -> ReadLine:
    x0, y0, x1, y1 = box.xyxy
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return ReadLine(
        text=text, polygon=Polygon(points=[Point(x=x, y=y) for x, y in corners]), words=[]
    )


def test_identical_results_score_perfectly_everywhere(sample: ImageAnalysisResult) -> None:
    comparison = compare_results(sample, sample)
    s = comparison.scores
    assert comparison.features == (
        "caption",
        "dense_captions",
        "tags",
        "objects",
        "people",
        "smart_crops",
        "read",
    )
    assert s.caption is not None and s.caption.token_f1 == 1.0 and s.caption.char_ratio == 1.0
    assert sample.caption is not None
    assert s.caption.viewfinder_text == s.caption.azure_text == sample.caption.text
    assert s.tags is not None
    assert (s.tags.precision, s.tags.recall, s.tags.f1) == (1.0, 1.0, 1.0)
    for det in (s.objects, s.people, s.dense_captions):
        assert det is not None
        assert (det.precision, det.recall, det.mean_iou, det.ap) == (1.0, 1.0, 1.0, 1.0)
        assert det.matched == det.predicted == det.reference > 0
    assert s.dense_captions is not None and s.dense_captions.mean_text_f1 == 1.0
    assert s.smart_crops is not None and s.smart_crops.mean_iou == 1.0
    assert [c.iou for c in s.smart_crops.crops] == [1.0, 1.0]
    assert s.read is not None
    assert (s.read.cer, s.read.wer) == (0.0, 0.0)
    assert (s.read.line_precision, s.read.line_recall, s.read.line_mean_iou) == (1.0, 1.0, 1.0)
    # JSON-able, and round-trips.
    assert ImageComparison.model_validate_json(comparison.model_dump_json()) == comparison


def test_iou_of_box_shifted_by_half_its_width_is_one_third() -> None:
    a = _box(100, 100, 200, 80)
    assert iou(a, _box(200, 100, 200, 80)) == 1 / 3  # exactly: 8000 / 24000
    assert iou(a, a) == 1.0
    assert iou(a, _box(300, 100, 200, 80)) == 0.0  # touching edges


def test_shifted_object_falls_below_threshold() -> None:
    reference = _result(
        objects=[DetectedObject(name="cat", confidence=0.9, box=_box(0, 0, 100, 50))]
    )
    shifted = _result(
        objects=[DetectedObject(name="cat", confidence=0.9, box=_box(50, 0, 100, 50))]
    )
    objects = compare_results(shifted, reference).scores.objects
    assert objects is not None
    assert (objects.precision, objects.recall, objects.matched, objects.ap) == (0.0, 0.0, 0, 0.0)


def test_dropped_tag_lowers_recall_by_one_over_count(sample: ImageAnalysisResult) -> None:
    assert sample.tags is not None
    n = len(sample.tags)
    fewer = sample.model_copy(update={"tags": sample.tags[1:]})
    tags = compare_results(fewer, sample).scores.tags
    assert tags is not None
    assert tags.precision == 1.0
    assert tags.recall == pytest.approx(1 - 1 / n)
    assert tags.missing == (sample.tags[0].name,)
    assert tags.extra == ()


def test_synonyms_turn_a_mismatch_into_a_match() -> None:
    vf = _result(
        tags=[Tag(name="Sofa ", confidence=0.9), Tag(name="dog", confidence=0.8)],
        objects=[DetectedObject(name="sofa", confidence=0.9, box=_box(0, 0, 100, 100))],
    )
    az = _result(
        tags=[Tag(name="couch", confidence=0.9), Tag(name="dog", confidence=0.8)],
        objects=[DetectedObject(name="Couch", confidence=0.7, box=_box(0, 0, 100, 100))],
    )
    plain = compare_results(vf, az).scores
    assert plain.tags is not None and plain.tags.f1 == 0.5
    assert plain.objects is not None and plain.objects.matched == 0
    mapped = compare_results(vf, az, synonyms={"sofa": "couch"}).scores
    assert mapped.tags is not None and mapped.tags.f1 == 1.0
    assert mapped.objects is not None and mapped.objects.matched == 1
    named_off = compare_results(vf, az, ignore_object_names=True).scores.objects
    assert named_off is not None and named_off.recall == 1.0


def test_cer_of_one_substitution_in_ten_characters() -> None:
    assert levenshtein("abcdefghij", "abcdefgXij") == 1
    assert error_rate("abcdefgXij", "abcdefghij") == 0.1
    box = _box(10, 10, 300, 30)
    vf = _result(read=ReadResult(blocks=[ReadBlock(lines=[_line("abcdefgXij", box)])]))
    az = _result(read=ReadResult(blocks=[ReadBlock(lines=[_line("abcdefghij", box)])]))
    read = compare_results(vf, az).scores.read
    assert read is not None
    assert read.cer == 0.1
    assert read.wer == 1.0  # the one word differs
    assert (read.line_precision, read.line_recall) == (1.0, 1.0)


def test_wer_and_levenshtein_edge_cases() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert error_rate(["the", "cat", "sat"], ["the", "cat", "sat", "down"]) == 0.25
    assert error_rate("", "") == 0.0
    assert error_rate("x", "") == 1.0


def _table_levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """The pure-Python edit distance `levenshtein` replaced (issue 18): the oracle."""
    previous = list(range(len(b) + 1))
    for i, item_a in enumerate(a, start=1):
        current = [i]
        for j, item_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item_a != item_b))
            )
        previous = current
    return previous[-1]


def _edited(text: str, rng: random.Random) -> str:
    """`text` with about one character in ten substituted, deleted or inserted."""
    alphabet = "aeiouxyz019 éßøЖж中文😀\u0301"  # accents, CJK, an emoji, a combining accent
    out: list[str] = []
    for char in text:
        roll = rng.random()
        if roll < 0.04:
            out.append(rng.choice(alphabet))
        elif roll < 0.07:
            continue
        elif roll < 0.1:
            out.extend((char, rng.choice(alphabet)))
        else:
            out.append(char)
    return "".join(out)


def test_levenshtein_gives_the_old_tables_numbers_on_the_ocr_ground_truth() -> None:
    truth = json.loads((Path(__file__).parent / "assets" / "ocr" / "ground_truth.json").read_text())
    pages = ["\n".join(lines) for lines in truth.values()]
    rng = random.Random(18)
    pairs = [(_edited(page, rng), page) for page in pages for _ in range(2)]
    pairs += [(a, b) for i, a in enumerate(pages) for b in pages[i + 1 :]]  # different pages
    pairs += [("", ""), ("", "abc"), ("abc", ""), ("é", "é"), ("ß", "ss"), ("😀a", "a😀")]
    pairs += [("e\u0301", "é"), ("中文字", "中字"), ("Жж", "жЖ"), ("a" * 40, "b" * 3)]
    for hypothesis, reference in pairs:
        old = _table_levenshtein(hypothesis, reference)
        assert levenshtein(hypothesis, reference) == old
        assert levenshtein(reference, hypothesis) == old
        if reference:
            assert error_rate(hypothesis, reference) == old / len(reference)
        words, reference_words = hypothesis.split(), reference.split()
        assert levenshtein(words, reference_words) == _table_levenshtein(words, reference_words)
    assert levenshtein("e\u0301", "é") == 2  # code points, not graphemes, as before


def test_caption_token_f1_of_known_sentences() -> None:
    # {a, dog, on, couch} vs {a, dog, sitting, on, the, couch}: P 4/4, R 4/6, F1 0.8.
    assert caption_token_f1("A dog on a couch.", "a dog sitting on the couch") == pytest.approx(0.8)
    assert caption_token_f1("Hello, World!", "hello world") == 1.0
    assert caption_token_f1("a cat", "two dogs") == 0.0
    assert caption_char_ratio("Same text", "same text ") == 1.0
    vf = _result(caption=Caption(text="A dog on a couch.", confidence=0.9))
    az = _result(caption=Caption(text="a dog sitting on the couch", confidence=0.8))
    caption = compare_results(vf, az).scores.caption
    assert caption is not None and caption.token_f1 == pytest.approx(0.8)
    assert 0.0 < caption.char_ratio < 1.0
    assert caption.azure_text == "a dog sitting on the couch"


def test_average_precision_of_hand_computed_ranking() -> None:
    # Ranked hits TP, FP, TP with 3 references: precision 1, 1/2, 2/3 at recall 1/3,
    # 1/3, 2/3; interpolated AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    assert average_precision([True, False, True], 3) == pytest.approx(5 / 9)
    assert average_precision([True, True], 2) == 1.0
    assert average_precision([False, True], 1) == 0.5
    assert average_precision([], 2) == 0.0
    with pytest.raises(ValueError):
        average_precision([True], 0)


def test_detection_ap_ranks_by_confidence() -> None:
    refs = [_box(0, 0, 100, 100), _box(200, 0, 100, 100), _box(400, 0, 100, 100)]
    az = _result(people=[DetectedPerson(box=b, confidence=0.9) for b in refs])
    vf = _result(
        people=[
            DetectedPerson(box=refs[1], confidence=0.5),  # third: TP
            DetectedPerson(box=_box(600, 600, 50, 50), confidence=0.8),  # second: FP
            DetectedPerson(box=refs[0], confidence=0.95),  # first: TP
        ]
    )
    people = compare_results(vf, az).scores.people
    assert people is not None
    assert people.ap == pytest.approx(5 / 9)
    assert people.precision == pytest.approx(2 / 3)
    assert people.recall == pytest.approx(2 / 3)
    assert people.mean_iou == 1.0


def test_matching_is_one_to_one() -> None:
    box = _box(0, 0, 100, 100)
    az = _result(people=[DetectedPerson(box=box, confidence=0.9)])
    vf = _result(people=[DetectedPerson(box=box, confidence=0.9)] * 2)
    people = compare_results(vf, az).scores.people
    assert people is not None
    assert (people.matched, people.precision, people.recall) == (1, 0.5, 1.0)


def test_smart_crops_pair_by_aspect_ratio() -> None:
    az = _result(
        smart_crops=[
            CropRegion(aspect_ratio=1.0, box=_box(0, 0, 100, 100)),
            CropRegion(aspect_ratio=1.78, box=_box(0, 0, 178, 100)),
        ]
    )
    vf = _result(
        smart_crops=[
            CropRegion(aspect_ratio=1.78, box=_box(0, 0, 178, 100)),
            CropRegion(aspect_ratio=1.0, box=_box(50, 0, 100, 100)),
        ]
    )
    crops = compare_results(vf, az).scores.smart_crops
    assert crops is not None
    assert [c.aspect_ratio for c in crops.crops] == [1.0, 1.78]
    assert [c.iou for c in crops.crops] == pytest.approx([1 / 3, 1.0])
    assert crops.mean_iou == pytest.approx(2 / 3)


def test_only_features_in_both_are_scored_and_summarized(sample: ImageAnalysisResult) -> None:
    only_tags = _result(tags=[Tag(name="person", confidence=0.9)])
    partial = compare_results(only_tags, sample)
    assert partial.features == ("tags",)
    assert partial.scores.caption is None
    full = compare_results(sample, sample)
    summary = summarize([full, partial])
    assert summary["images"] == 2
    assert summary["features"]["tags"]["images"] == 2
    assert summary["features"]["tags"]["precision"] == 1.0
    assert summary["features"]["caption"] == {
        "images": 1,
        "token_f1": 1.0,
        "char_ratio": 1.0,
    }
    assert summary["features"]["objects"]["ap"] == 1.0
    json.dumps(summary)
    assert summarize([]) == {"images": 0, "features": {}}
