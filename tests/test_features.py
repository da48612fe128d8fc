"""Feature names, the combined answer model, and each feature's finish step."""

from __future__ import annotations

import pytest

from viewfinder import ALL_FEATURES, BoundingBox, Feature, InvalidOptionError
from viewfinder.analyzers.features import (
    FEATURES,
    CaptionAnswer,
    FinishContext,
    LineAnswer,
    RegionCaptionAnswer,
    TagAnswer,
    WordAnswer,
    parse_features,
    split_words,
)
from viewfinder.analyzers.image_analysis import answer_model
from viewfinder.build.grid import Frame

CTX = FinishContext(frame=Frame(864, 576))


def test_feature_names_accept_snake_case_azure_spelling_and_members() -> None:
    assert parse_features(["denseCaptions", "smart_crops", Feature.READ, "Tags"]) == (
        Feature.DENSE_CAPTIONS,
        Feature.TAGS,
        Feature.SMART_CROPS,
        Feature.READ,
    )
    assert parse_features("caption") == (Feature.CAPTION,)
    assert Feature.SMART_CROPS.azure_name == "smartCrops"
    assert [f.azure_name for f in ALL_FEATURES] == [
        "caption",
        "denseCaptions",
        "tags",
        "objects",
        "people",
        "smartCrops",
        "read",
    ]


@pytest.mark.parametrize("bad", [["celebrities"], [], ["caption", "emotions"]])
def test_unknown_or_no_features_are_refused(bad: list[str]) -> None:
    with pytest.raises(InvalidOptionError):
        parse_features(bad)


def test_answer_model_has_exactly_the_requested_features() -> None:
    model = answer_model((Feature.CAPTION, Feature.OBJECTS))
    assert list(model.model_fields) == ["caption", "objects"]
    assert set(model.model_json_schema()["required"]) == {"caption", "objects"}


def test_tags_are_lower_cased_deduplicated_and_sorted() -> None:
    answers = [
        TagAnswer(name="Indoor", confidence=0.5),
        TagAnswer(name="person", confidence=0.9),
        TagAnswer(name="indoor", confidence=0.7),
        TagAnswer(name="  ", confidence=0.99),
    ]
    tags = FEATURES[Feature.TAGS].finish(answers, CTX)
    assert [(t.name, t.confidence) for t in tags] == [("person", 0.9), ("indoor", 0.7)]


def test_first_dense_caption_is_the_whole_image_and_at_most_ten() -> None:
    answers = [
        RegionCaptionAnswer(text=f"region {i}", confidence=0.5, box=[10, 10, 500, 500])
        for i in range(12)
    ]
    dense = FEATURES[Feature.DENSE_CAPTIONS].finish(answers, CTX)
    assert len(dense) == 10
    assert dense[0].box == BoundingBox(x=0, y=0, width=864, height=576)
    assert dense[1].box == BoundingBox(x=9, y=6, width=423, height=282)


def test_gender_neutral_caption_rewords() -> None:
    ctx = FinishContext(frame=Frame(10, 10), gender_neutral_caption=True)
    caption = FEATURES[Feature.CAPTION].finish(
        CaptionAnswer(text="A woman and a boy with a Man", confidence=0.8), ctx
    )
    assert caption.text == "A person and a child with a person"


def test_read_splits_words_from_the_line_when_the_model_gives_none() -> None:
    line = LineAnswer(text="Sample text", box=[0, 0, 1000, 100], confidence=0.9)
    result = FEATURES[Feature.READ].finish([line], FinishContext(frame=Frame(110, 50)))
    (read_line,) = result.blocks[0].lines
    assert [w.text for w in read_line.words] == ["Sample", "text"]
    assert all(w.estimated and w.confidence == 0.9 for w in read_line.words)
    first, second = (w.polygon.bounds for w in read_line.words)
    assert first.x == 0 and first.width == 60  # 6 of 11 characters
    assert second.x == 70 and second.x + second.width == 110
    assert result.text == "Sample text"


def test_read_uses_word_boxes_when_given() -> None:
    line = LineAnswer(
        text="123 456",
        box=[0, 0, 1000, 100],
        confidence=0.9,
        words=[
            WordAnswer(text="123", box=[0, 0, 400, 100], confidence=0.99),
            WordAnswer(text="456", box=[600, 0, 1000, 100], confidence=0.98),
        ],
    )
    result = FEATURES[Feature.READ].finish([line], FinishContext(frame=Frame(1000, 100)))
    words = result.blocks[0].lines[0].words
    assert [w.estimated for w in words] == [False, False]
    assert words[1].polygon.points[0].x == 600 and words[1].confidence == 0.98
    assert len(words[0].polygon.points) == 4


def test_read_with_no_text_has_no_blocks() -> None:
    result = FEATURES[Feature.READ].finish([], CTX)
    assert result.blocks == [] and result.text == ""


def test_split_words_covers_the_line() -> None:
    parts = split_words("a bb ccc", BoundingBox(x=10, y=5, width=80, height=10))
    assert [w for w, _ in parts] == ["a", "bb", "ccc"]
    assert parts[0][1].x == 10 and parts[-1][1].x + parts[-1][1].width == 90
