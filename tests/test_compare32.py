"""`viewfinder compare` with stored Computer Vision 3.2 results as the reference.

The 3.2 side is Microsoft's spec example (tests/assets/cv32, reference §8.1) or bodies
built from it; the viewfinder side is constructed, so every score is known by
construction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_app import sub_commands
from typer.testing import CliRunner

from viewfinder.cli.compare import register
from viewfinder.compat.rest import from_azure_json
from viewfinder.compat.results32 import from_cv32_json, is_cv32_json
from viewfinder.evaluate.compare import category_family, compare_results, summarize
from viewfinder.evaluate.report import compare_images, load_azure, write_report
from viewfinder.schemas import (
    BoundingBox,
    Caption,
    DetectedObject,
    ImageAnalysisResult,
    ImageMetadata,
    ObjectParent,
    Tag,
)
from viewfinder.schemas.color import ColorInfo, ImageType
from viewfinder.schemas.cv32 import (
    AdultContent,
    Category,
    Description,
    DetectedBrand,
    DetectedFace,
    Landmark,
)

ASSETS = Path(__file__).parent / "assets"
SAMPLE_40 = ASSETS / "azure_sample_all_features.json"


def _example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((ASSETS / "cv32" / f"{name}.json").read_text())["responses"][
        "200"
    ]["body"]
    return body


ANALYZE = _example("SuccessfulAnalyzeImageWithUrl")


def _viewfinder(**fields: Any) -> ImageAnalysisResult:
    return ImageAnalysisResult(
        model_version="gpt-test+abc", metadata=ImageMetadata(width=1500, height=1000), **fields
    )


# --- reading a stored 3.2 body ----------------------------------------------------------


def test_the_spec_example_reads_into_the_3_2_fields() -> None:
    result = from_cv32_json(ANALYZE)

    assert result.model_version == "2021-04-01"
    assert result.metadata == ImageMetadata(width=1500, height=1000)
    assert result.categories is not None
    assert [(c.name, c.confidence) for c in result.categories] == [
        ("abstract_", 0.00390625),
        ("people_", 0.83984375),
        ("building_", 0.984375),
    ]
    forbidden_city = Landmark(name="Forbidden City", confidence=0.98290169239044189)
    assert result.categories[1].landmarks is None  # celebrities are not kept
    assert result.categories[2].landmarks == (forbidden_city,)
    assert result.landmarks == [forbidden_city]
    assert result.tags is not None and result.tags[-1] == Tag(
        name="pangolin", confidence=0.7250059783791661, hint="mammal"
    )
    assert result.description == Description(
        captions=(
            Caption(text="Satya Nadella sitting on a bench", confidence=0.48293603002174407),
        ),
        tags=("person", "man", "outdoor", "window", "glasses"),
    )
    assert result.objects == [
        DetectedObject(
            name="tree",
            confidence=0.9,
            box=BoundingBox(x=0, y=0, width=50, height=50),
            parent=ObjectParent(name="plant", confidence=0.95),
        )
    ]
    assert result.brands is not None
    assert result.brands[1] == DetectedBrand(
        name="Coca-Cola", confidence=0.893, box=BoundingBox(x=216, y=55, width=171, height=372)
    )
    assert result.faces == [
        DetectedFace(box=BoundingBox(x=593, y=160, width=250, height=250), confidence=1.0)
    ]
    assert result.adult is not None and result.adult.adult_score == 0.0934349000453949
    assert not (result.adult.is_adult_content or result.adult.is_racy_content)
    assert result.color == ColorInfo(
        dominant_color_foreground="Brown",
        dominant_color_background="Brown",
        dominant_colors=("Brown", "Black"),
        accent_color="873B59",
        is_bw_img=False,
    )
    assert result.image_type == ImageType(clip_art_type=0, line_drawing_type=0)
    assert result.caption is None and result.people is None and result.read is None


def test_which_bodies_are_3_2() -> None:
    for name in ("SuccessfulDescribeImageWithUrl", "SuccessfulTagImageWithUrl"):
        assert is_cv32_json(_example(name)), name
    assert is_cv32_json(ANALYZE)
    assert is_cv32_json(_example("SuccessfulDetectObjectsWithUrl"))
    assert not is_cv32_json(json.loads(SAMPLE_40.read_text()))  # 4.0: *Result keys
    assert not is_cv32_json({**ANALYZE, "tagsResult": {"values": []}})
    assert not is_cv32_json({**ANALYZE, "surprise": 1})  # a key 3.2 does not have
    assert not is_cv32_json({"metadata": {"width": 1, "height": 1}, "modelVersion": "x"})


def test_a_body_without_metadata_is_refused() -> None:
    body = {k: v for k, v in ANALYZE.items() if k != "metadata"}
    with pytest.raises(ValueError, match="metadata"):
        from_cv32_json(body)


def test_a_brand_without_confidence_reads_as_certain() -> None:
    body = {**ANALYZE, "brands": [{"name": "Pepsi", "rectangle": {"x": 1, "y": 2, "w": 3, "h": 4}}]}
    (brand,) = from_cv32_json(body).brands or []
    assert brand.confidence == 1.0


# --- scoring ------------------------------------------------------------------------------


def test_every_3_2_feature_is_scored_by_construction() -> None:
    azure = from_cv32_json(ANALYZE)
    vf = _viewfinder(
        categories=[
            Category(name="people_portrait", confidence=0.6),
            Category(name="building_street", confidence=0.9),
        ],
        description=Description(
            captions=(
                Caption(text="a man on a bench", confidence=0.4),
                Caption(text="Satya Nadella sitting on a bench", confidence=0.9),
            ),
            tags=("person", "man", "bench"),
        ),
        brands=[
            DetectedBrand(
                name="pepsi", confidence=0.9, box=BoundingBox(x=489, y=79, width=161, height=177)
            ),
            DetectedBrand(
                name="Coca-Cola",
                confidence=0.8,
                box=BoundingBox(x=900, y=500, width=100, height=100),
            ),
        ],
        faces=[DetectedFace(box=BoundingBox(x=590, y=158, width=250, height=250), confidence=0.7)],
        adult=AdultContent(
            is_adult_content=False,
            is_racy_content=True,
            is_gory_content=False,
            adult_score=0.1934349000453949,
            racy_score=0.6,
            gore_score=0.0,
        ),
        color=ColorInfo(
            dominant_color_foreground="Brown",
            dominant_color_background="Black",
            dominant_colors=("Brown",),
            accent_color="873B5D",
            is_bw_img=False,
        ),
        image_type=ImageType(clip_art_type=0, line_drawing_type=1),
        tags=[Tag(name="person", confidence=0.9), Tag(name="Man", confidence=0.8)],
        objects=[
            DetectedObject(
                name="tree", confidence=0.8, box=BoundingBox(x=0, y=0, width=50, height=50)
            )
        ],
    )

    comparison = compare_results(vf, azure)
    s = comparison.scores

    assert comparison.features == (
        "tags",
        "objects",
        "categories",
        "description",
        "brands",
        "faces",
        "adult",
        "color",
        "image_type",
    )
    assert comparison.unscored == ("landmarks",)
    assert comparison.azure_model_version == "2021-04-01"

    assert s.categories is not None
    assert (s.categories.viewfinder_top, s.categories.azure_top) == ("building_street", "building_")
    assert (s.categories.top1, s.categories.top1_family) == (0.0, 1.0)
    assert (s.categories.matched, s.categories.f1) == (0, 0.0)
    assert s.categories.family_f1 == pytest.approx(0.8)  # {building_, people_} vs 3 families

    assert s.description is not None
    assert s.description.viewfinder_text == "Satya Nadella sitting on a bench"  # the best
    assert s.description.token_f1 == 1.0 and s.description.char_ratio == 1.0
    assert s.description.tags_f1 == pytest.approx(0.5)  # 2 of 3 against 2 of 5

    assert s.brands is not None  # names compared lower-cased; the Coca-Cola box is elsewhere
    assert (s.brands.matched, s.brands.precision, s.brands.recall) == (1, 0.5, 0.5)
    assert s.faces is not None and (s.faces.matched, s.faces.recall) == (1, 1.0)
    assert s.faces.mean_iou > 0.95

    assert s.adult is not None
    assert (s.adult.adult_agree, s.adult.racy_agree, s.adult.gory_agree) == (1.0, 0.0, 1.0)
    assert s.adult.agreement == pytest.approx(2 / 3)
    assert s.adult.adult_score_diff == pytest.approx(0.1)
    assert s.adult.gore_score_diff == pytest.approx(0.012872257380997575)

    assert s.color is not None
    assert (s.color.foreground_equal, s.color.background_equal, s.color.is_bw_equal) == (
        1.0,
        0.0,
        1.0,
    )
    assert s.color.dominant_colors_jaccard == 0.5
    assert s.color.accent_distance == 4.0  # 0x59 -> 0x5D in blue

    assert s.image_type is not None
    assert (s.image_type.clip_art_equal, s.image_type.line_drawing_equal) == (1.0, 0.0)

    assert s.tags is not None and s.tags.matched == 2
    assert s.objects is not None and s.objects.matched == 1

    summary = summarize([comparison, comparison])
    assert summary["features"]["adult"]["agreement"] == pytest.approx(2 / 3)
    assert summary["features"]["color"]["accent_distance"] == 4.0
    assert summary["features"]["categories"]["images"] == 2


def test_only_what_both_sides_hold_is_scored() -> None:
    comparison = compare_results(_viewfinder(tags=[]), from_cv32_json(ANALYZE))
    assert comparison.features == ("tags",)
    assert comparison.unscored == (
        "objects",
        "categories",
        "description",
        "brands",
        "faces",
        "adult",
        "color",
        "image_type",
        "landmarks",
    )
    assert compare_results(from_cv32_json(ANALYZE), from_cv32_json(ANALYZE)).unscored == (
        "landmarks",
    )


def test_category_families() -> None:
    assert category_family("people_portrait") == category_family("people_") == "people_"
    assert category_family("Outdoor_Mountain") == "outdoor_"
    assert category_family("others") == "others"


def test_identical_empty_sides_agree() -> None:
    empty = Description(captions=(), tags=())
    s = compare_results(
        _viewfinder(categories=[], description=empty, faces=[]),
        _viewfinder(categories=[], description=empty, faces=[]),
    ).scores
    assert s.categories is not None and (s.categories.top1, s.categories.f1) == (1.0, 1.0)
    assert s.description is not None and s.description.tags_f1 == 1.0
    assert s.faces is not None and s.faces.recall == 1.0 and s.faces.ap is None


# --- the report and the command ------------------------------------------------------------


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with a 3.2 and a 4.0 reference, and a viewfinder batch output for both."""
    azure = tmp_path / "azure"
    azure.mkdir()
    (azure / "nadella.json").write_text(json.dumps(ANALYZE))
    (azure / "sample.json").write_text(SAMPLE_40.read_text())
    vf32 = _viewfinder(
        tags=[Tag(name="person", confidence=0.9)],
        categories=[Category(name="building_", confidence=0.9)],
        adult=from_cv32_json(ANALYZE).adult,
    )
    records = [
        {"id": "nadella.jpg", "status": "ok", "result": vf32.model_dump(mode="json")},
        {
            "id": "sample.jpg",
            "status": "ok",
            "result": from_azure_json(json.loads(SAMPLE_40.read_text())).model_dump(mode="json"),
        },
    ]
    batch = tmp_path / "results.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in records))
    return azure, batch


def test_a_folder_mixing_3_2_and_4_0_results_is_reported(
    stored: tuple[Path, Path], tmp_path: Path
) -> None:
    from viewfinder.evaluate.report import load_viewfinder_batch

    azure, batch = stored
    items = list(load_azure(azure))
    assert [name for name, _ in items] == ["nadella", "sample"]
    assert items[0][1].categories is not None and items[1][1].caption is not None

    reports = list(compare_images(None, items, tmp_path, stored=load_viewfinder_batch(batch)))
    json_path, html_path = write_report(reports, tmp_path / "out", tmp_path)
    document = json.loads(json_path.read_text())

    nadella = document["results"][0]["scores"]
    assert nadella["features"] == ["tags", "categories", "adult"]
    assert nadella["scores"]["categories"]["top1"] == 1.0
    assert nadella["scores"]["adult"]["agreement"] == 1.0
    assert "landmarks" in nadella["unscored"] and "color" in nadella["unscored"]
    assert document["results"][1]["scores"]["unscored"] == []
    assert document["summary"]["features"]["categories"]["images"] == 1
    assert "color" in document["unscored"]
    page = html_path.read_text()
    assert "categories" in page and "not scored: viewfinder has none" in page


def test_the_command_shows_3_2_scores_and_what_it_did_not_score(
    stored: tuple[Path, Path], tmp_path: Path
) -> None:
    azure, batch = stored
    app = sub_commands(register)
    args = ["compare", "--azure", str(azure), "--images", str(tmp_path)]
    result = CliRunner().invoke(
        app, [*args, "--viewfinder", str(batch), "--out", str(tmp_path / "out")]
    )

    assert result.exit_code == 0, result.output
    assert "categories" in result.output and "top1 1.000" in result.output
    assert "adult" in result.output and "agreement 1.000" in result.output
    assert "not scored (in the Azure results, not in viewfinder's):" in result.output
    assert "landmarks" in result.output


def test_a_live_analyzer_is_asked_for_what_the_3_2_reference_holds(tmp_path: Path) -> None:
    """Against a stored 3.2 result, viewfinder runs the 3.2 features in one request, with
    the stored result's caption count, tag hints and object parents (the model is scripted)."""
    from PIL import Image

    import viewfinder as vf
    from viewfinder.testing import compact_answer
    from viewfinder.testing.fakes import FakeOpenAI

    Image.new("RGB", (400, 300), (200, 30, 30)).save(tmp_path / "red.png")
    stored = from_cv32_json(
        {
            "tags": [{"name": "ascomycete", "confidence": 0.8, "hint": "fungus"}],
            "description": {
                "tags": ["red"],
                "captions": [
                    {"text": "a red square", "confidence": 0.9},
                    {"text": "a red wall", "confidence": 0.5},
                ],
            },
            "objects": [
                {
                    "rectangle": {"x": 0, "y": 0, "w": 100, "h": 100},
                    "object": "bulldog",
                    "confidence": 0.7,
                    "parent": {"object": "dog", "confidence": 0.8},
                }
            ],
            "color": {
                "dominantColorForeground": "Red",
                "dominantColorBackground": "Red",
                "dominantColors": ["Red"],
                "accentColor": "C81E1E",
                "isBWImg": False,
            },
            "requestId": "r",
            "metadata": {"width": 400, "height": 300, "format": "Png"},
            "modelVersion": "2021-05-01",
        }
    )
    answer = compact_answer(
        {
            "tags": [{"name": "ascomycete", "confidence": 0.7, "hint": "fungus"}],
            "objects": [
                {"name": "bulldog", "confidence": 0.6, "box": [0, 0, 250, 333], "parents": ["dog"]}
            ],
            "description": {
                "captions": [{"text": "a red square", "confidence": 0.8}],
                "tags": ["red"],
            },
        }
    )
    fake = FakeOpenAI(answer)
    with vf.ImageAnalyzer(**fake.clients(), cache=False) as analyzer:
        (report,) = compare_images(analyzer, [("red.png", stored)], tmp_path)
    assert report.error is None, report.error
    (request,) = fake.requests
    body = json.dumps(request)
    assert '"hint"' in body and '"parents"' in body and "up to 2 different sentences" in body
    assert report.viewfinder is not None and report.viewfinder.color is not None
    assert report.scores.unscored == ()
    assert {"tags", "objects", "description", "color"} <= set(report.scores.features)
    assert report.scores.scores.tags is not None
