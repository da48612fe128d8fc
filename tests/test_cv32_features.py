"""The Computer Vision 3.2 features in `ImageAnalyzer`: one request, pixels here, refusals.

The model side is scripted (`FakeOpenAI`); what is tested is viewfinder's side: the
schema and prompt sent, the finishing into pixels, the split between this machine and the
model, and the content-filter rule of the adult section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import viewfinder as vf
from viewfinder.analyzers.split import adult_from_refusal
from viewfinder.testing import compact_answer
from viewfinder.testing.fakes import FakeOpenAI
from viewfinder.testing.simulator import Reply

WIDTH, HEIGHT = 800, 600

ANSWER: dict[str, Any] = {
    "caption": {"text": "a red sign on a brick building", "confidence": 0.9},
    "tags": [
        {"name": "building", "confidence": 0.95, "hint": ""},
        {"name": "ascomycete", "confidence": 0.4, "hint": "fungus"},
    ],
    "objects": [
        {
            "name": "bulldog",
            "confidence": 0.8,
            "box": [100, 200, 300, 600],
            "parents": ["dog", "mammal"],
        },
        {"name": "sign", "confidence": 0.7, "box": [500, 100, 900, 300], "parents": []},
    ],
    "categories": [
        {"name": "text_sign", "confidence": 0.3},
        {"name": "building_", "confidence": 0.8},
        {"name": "building_", "confidence": 0.5},
    ],
    "description": {
        "captions": [
            {"text": "a sign on a wall", "confidence": 0.6},
            {"text": "a red sign on a brick building", "confidence": 0.9},
            {"text": "a building with a sign", "confidence": 0.5},
        ],
        "tags": ["Building", "sign", "sign", " red "],
    },
    "brands": [{"name": "Contoso", "confidence": 0.85, "box": [500, 100, 900, 300]}],
    "adult": {"adult_score": 0.02, "racy_score": 0.5, "gore_score": 0.49},
    "faces": [{"box": [250, 250, 350, 400], "confidence": 0.7}],
    "landmarks": [{"name": "Old Town Hall", "confidence": 0.66}],
}

MODEL_32 = ["categories", "description", "brands", "adult", "faces", "landmarks"]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    image = Image.new("RGB", (WIDTH, HEIGHT), (180, 40, 30))
    image.paste((240, 240, 240), (0, 0, WIDTH, 150))
    image.save(path)
    return path


def _analyzer(fake: FakeOpenAI, **options: Any) -> vf.ImageAnalyzer:
    analyzer = vf.ImageAnalyzer(**fake.clients(), cache=False, **options)
    analyzer._faces_here = False  # the model answers faces here, whatever is installed
    return analyzer


def _schema(body: dict[str, Any]) -> dict[str, Any]:
    tool = body.get("tools") or []
    if tool:
        return tool[0]["function"]["parameters"]  # type: ignore[no-any-return]
    return body["response_format"]["json_schema"]["schema"]  # type: ignore[no-any-return]


def test_every_3_2_feature_and_4_0_feature_come_from_one_request(photo: Path) -> None:
    fake = FakeOpenAI(compact_answer(ANSWER))
    features = ["caption", "tags", "objects", *MODEL_32, "color", "image_type"]
    with _analyzer(fake) as analyzer:
        result = analyzer.analyze(
            photo, features, max_candidates=2, tag_hints=True, object_parents=True
        )
    assert len(fake.requests) == 1
    schema = json.dumps(_schema(fake.requests[0]))
    for key in ("categories", "captions", "words", "brands", "adult", "faces", "landmarks"):
        assert f'"{key}"' in schema, key
    assert '"hint"' in schema and '"parents"' in schema
    assert "outdoor_mountain" in schema  # the taxonomy is the categories' enum
    assert '"color"' not in schema and '"image_type"' not in schema  # pixels, not asked

    assert result.caption is not None and result.caption.text == "a red sign on a brick building"
    assert [(t.name, t.hint) for t in result.tags or []] == [
        ("building", None),
        ("ascomycete", "fungus"),
    ]
    bulldog = (result.objects or [])[0]
    assert bulldog.parent is not None and bulldog.parent.name == "dog"
    assert bulldog.parent.parent is not None and bulldog.parent.parent.name == "mammal"
    assert bulldog.parent.parent.parent is None
    assert (result.objects or [])[1].parent is None
    # best first, one entry per name, landmarks on the building_ category only
    assert [(c.name, c.confidence) for c in result.categories or []] == [
        ("building_", 0.8),
        ("text_sign", 0.3),
    ]
    building, sign = result.categories or []
    assert [m.name for m in building.landmarks or ()] == ["Old Town Hall"]
    assert sign.landmarks is None
    assert result.description is not None
    assert [c.text for c in result.description.captions] == [
        "a red sign on a brick building",
        "a sign on a wall",
    ]
    assert result.description.tags == ("building", "sign", "red")
    brand = (result.brands or [])[0]
    assert (brand.name, brand.box) == (
        "Contoso",
        vf.BoundingBox(x=400, y=60, width=320, height=120),
    )
    assert result.adult is not None
    assert (
        result.adult.is_adult_content,
        result.adult.is_racy_content,
        result.adult.is_gory_content,
    ) == (False, True, False)
    assert not result.adult.filtered
    assert [f.box for f in result.faces or []] == [
        vf.BoundingBox(x=200, y=150, width=80, height=90)
    ]
    assert [m.name for m in result.landmarks or []] == ["Old Town Hall"]
    assert result.color is not None and result.color.dominant_color_foreground == "Red"
    assert result.image_type is not None
    assert result.metadata == vf.ImageMetadata(width=WIDTH, height=HEIGHT)


def test_pixel_features_alone_send_no_request(photo: Path) -> None:
    fake = FakeOpenAI()
    with _analyzer(fake) as analyzer:
        result = analyzer.analyze(photo, ["color", "imageType"])
    assert fake.requests == []
    assert result.color is not None and result.image_type is not None
    assert result.usage == vf.Usage()
    assert result.caption is None and result.unserved is None


def test_a_4_0_call_is_fingerprinted_as_before_and_a_3_2_call_apart(photo: Path) -> None:
    fake = FakeOpenAI()
    with _analyzer(fake) as analyzer:
        plain = analyzer.plan(["caption", "tags"])
        hinted = analyzer.plan(["caption", "tags"], tag_hints=True)
        cv32 = analyzer.plan(["caption", "categories"])
    assert plain.fingerprint == analyzer.model_version
    assert hinted.fingerprint == cv32.fingerprint != analyzer.model_version
    assert '"hint"' not in json.dumps(plain.response_model.model_json_schema())


@pytest.mark.parametrize("bad", [0, 11, True, 1.5])
def test_max_candidates_is_checked(bad: Any) -> None:
    with pytest.raises(vf.InvalidOptionError, match="max_candidates"):
        vf.ImageAnalyzer(base_url="http://127.0.0.1:9/v1", api_key="x").plan(
            ["description"], max_candidates=bad
        )


def test_a_category_outside_the_taxonomy_is_reasked(photo: Path) -> None:
    wrong = compact_answer({"categories": [{"name": "animal_unicorn", "confidence": 0.9}]})
    right = compact_answer({"categories": [{"name": "animal_horse", "confidence": 0.9}]})
    fake = FakeOpenAI(wrong, right)
    with _analyzer(fake) as analyzer:
        result = analyzer.analyze(photo, ["categories"])
    assert [c.name for c in result.categories or []] == ["animal_horse"]
    assert result.usage.reasks == 1


FILTERED = Reply(
    status=400,
    error_code="content_filter",
    error_message="The response was filtered due to the prompt triggering the content filter",
    error_inner={
        "code": "ResponsibleAIPolicyViolation",
        "content_filter_result": {
            "hate": {"filtered": False, "severity": "safe"},
            "sexual": {"filtered": True, "severity": "medium"},
            "violence": {"filtered": False, "severity": "safe"},
        },
    },
)


def test_a_refused_adult_section_keeps_the_other_features(photo: Path) -> None:
    rest = {k: ANSWER[k] for k in ("caption", "categories")}
    fake = FakeOpenAI(FILTERED, compact_answer(rest))
    with _analyzer(fake) as analyzer:
        result = analyzer.analyze(photo, ["caption", "categories", "adult", "color"])
    assert len(fake.requests) == 2
    assert '"adult"' in json.dumps(_schema(fake.requests[0]))
    assert '"adult"' not in json.dumps(_schema(fake.requests[1]))
    assert result.caption is not None and result.categories
    assert result.color is not None
    adult = result.adult
    assert adult is not None and adult.filtered
    assert (adult.is_adult_content, adult.is_racy_content, adult.is_gory_content) == (
        True,
        True,
        False,
    )
    assert adult.evidence is not None and "content filter" in adult.evidence
    assert result.usage.requests == 2


def test_refused_twice_the_model_features_are_unserved_not_lost(photo: Path) -> None:
    fake = FakeOpenAI(FILTERED, Reply(None, refusal="I can't help with that"))
    with _analyzer(fake) as analyzer:
        result = analyzer.analyze(photo, ["caption", "adult", "image_type"])
    assert len(fake.requests) == 2
    assert result.caption is None
    assert result.unserved == {"caption": "the provider's content filter refused the image"}
    assert result.adult is not None and result.adult.filtered
    assert result.image_type is not None
    assert result.metadata == vf.ImageMetadata(width=WIDTH, height=HEIGHT)


def test_a_refusal_without_adult_asked_still_raises(photo: Path) -> None:
    fake = FakeOpenAI(FILTERED)
    with _analyzer(fake) as analyzer, pytest.raises(vf.ContentFilterError) as caught:
        analyzer.analyze(photo, ["caption", "categories"])
    assert caught.value.categories == ("sexual",)


@pytest.mark.parametrize(
    ("categories", "flags"),
    [
        (("sexual",), (True, True, False)),
        (("violence",), (False, False, True)),
        (("self_harm", "sexual"), (True, True, True)),
        ((), (True, True, True)),
        (("hate",), (True, True, True)),
    ],
)
def test_adult_flags_from_a_refusal(categories: tuple[str, ...], flags: tuple[bool, ...]) -> None:
    adult = adult_from_refusal(vf.ContentFilterError("refused", categories=categories))
    assert (adult.is_adult_content, adult.is_racy_content, adult.is_gory_content) == flags
    assert adult.filtered and adult.evidence == "refused"


def test_the_local_engine_serves_the_pixel_features_and_names_the_rest(photo: Path) -> None:
    with vf.ImageAnalyzer(engine="local") as analyzer:
        result = analyzer.analyze(photo, ["color", "image_type", "categories", "adult"])
    assert result.color is not None and result.image_type is not None
    assert set(result.unserved or {}) == {"categories", "adult"}


def test_faces_are_found_here_where_opencv_is_installed() -> None:
    diptych = Path(__file__).parent / "assets" / "people" / "diptych.png"
    fake = FakeOpenAI(compact_answer({"caption": ANSWER["caption"]}))
    with vf.ImageAnalyzer(**fake.clients(), cache=False) as analyzer:
        assert analyzer.faces_on_this_machine  # the test extra installs OpenCV 4
        alone = analyzer.analyze(diptych, ["faces"])
        assert fake.requests == []
        mixed = analyzer.analyze(diptych, ["caption", "faces"])
    assert len(fake.requests) == 1
    assert '"faces"' not in json.dumps(_schema(fake.requests[0]))
    assert alone.faces is not None and len(alone.faces) == 2  # the two people of the diptych
    assert mixed.faces == alone.faces and mixed.caption is not None


def test_the_estimate_counts_only_what_is_sent(photo: Path) -> None:
    from viewfinder.cost.estimate import estimate_request, offline_analyzer

    with offline_analyzer("gpt-4.1-mini") as analyzer:
        pixels = estimate_request(analyzer, photo, ["color", "image_type"])
        plain = estimate_request(analyzer, photo, ["tags", "objects"])
        cv32 = estimate_request(
            analyzer, photo, ["tags", "objects"], tag_hints=True, object_parents=True
        )
    assert (pixels.input_tokens, pixels.output_tokens, pixels.cost_usd) == (0, 0, 0.0)
    assert cv32.output_tokens > plain.output_tokens  # hints and parents are written out
    assert cv32.schema_tokens > plain.schema_tokens
