"""Computer Vision 3.2 wire shapes (`viewfinder.compat.rest32`) and the 86-category taxonomy.

Every response body of Microsoft's 3.2 spec examples (tests/assets/cv32, reference §8)
parses into its model and serialises back equal; the taxonomy is §5.1's list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from viewfinder.compat import rest32
from viewfinder.schemas.taxonomy import cv32_categories

ASSETS = Path(__file__).parent / "assets" / "cv32"
REFERENCE = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "azure-computer-vision-3.2.md"
)

EXAMPLES: dict[str, type[BaseModel]] = {
    "SuccessfulAnalyzeImageWithUrl.json": rest32.ImageAnalysis,
    "SuccessfulDescribeImageWithUrl.json": rest32.ImageDescription,
    "SuccessfulDetectObjectsWithUrl.json": rest32.DetectResult,
    "SuccessfulTagImageWithUrl.json": rest32.TagResult,
    "SuccessfulGetAreaOfInterestWithUrl.json": rest32.AreaOfInterestResult,
    "SuccessfulRecognizePrintedTextWithUrl.json": rest32.OcrResult,
    "SuccessfulAnalyzeImageByDomainWithUrl.json": rest32.DomainModelResults,
    "SuccessfulListModels.json": rest32.ListModelsResult,
    "SuccessfulGetReadResult.json": rest32.ReadOperationResult,
}
"""Each spec example with a response body -> the model of that body (reference §4)."""

# §5.1, copied by hand from the reference: the test's own copy, independent of the data file.
_TAXONOMY_TEXT = """
abstract_ abstract_net abstract_nonphoto abstract_rect abstract_shape abstract_texture
animal_ animal_bird animal_cat animal_dog animal_horse animal_panda
building_ building_arch building_brickwall building_church building_corner building_doorwindows
building_pillar building_stair building_street
dark_ drink_ drink_can dark_fire dark_fireworks dark_light
food_ food_bread food_fastfood food_grilled food_pizza
indoor_ indoor_churchwindow indoor_court indoor_doorwindows indoor_marketstore indoor_room
indoor_venue
object_screen object_sculpture
others_
outdoor_ outdoor_city outdoor_field outdoor_grass outdoor_house outdoor_mountain
outdoor_oceanbeach outdoor_playground outdoor_pool outdoor_railway outdoor_road
outdoor_sportsfield outdoor_stonerock outdoor_street outdoor_water outdoor_waterside
people_ people_baby people_crowd people_group people_hand people_many people_portrait
people_show people_swimming people_tattoo people_young
plant_ plant_branch plant_flower plant_leaves plant_tree
sky_cloud sky_object sky_sun
text_ text_mag text_map text_menu text_sign
trans_bicycle trans_bus trans_car trans_trainstation
"""
TAXONOMY_5_1 = _TAXONOMY_TEXT.split()


def _canonical(data: Any) -> str:
    """JSON text with sorted keys: equal only if the values and their JSON types are equal
    (an integer read back as `202.0` would differ)."""
    return json.dumps(data, sort_keys=True)


def _bodies(name: str) -> list[Any]:
    example = json.loads((ASSETS / name).read_text(encoding="utf-8"))
    return [r["body"] for r in example["responses"].values() if "body" in r]


def test_every_example_with_a_body_has_a_model() -> None:
    with_body = {p.name for p in ASSETS.glob("*.json") if _bodies(p.name)}
    assert with_body == set(EXAMPLES)
    assert _bodies("SuccessfulReadWithUrl.json") == []  # the 202 answer has no body


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_spec_example_parses_and_serialises_back_equal(name: str) -> None:
    (body,) = _bodies(name)
    model = EXAMPLES[name].model_validate(body)
    assert _canonical(rest32.to_json(model)) == _canonical(body)
    assert _canonical(model.model_dump(by_alias=True, exclude_unset=True)) == _canonical(body)
    assert EXAMPLES[name].model_validate_json(json.dumps(body)) == model


def test_analyze_example_reads_as_typed_python() -> None:
    (body,) = _bodies("SuccessfulAnalyzeImageWithUrl.json")
    result = rest32.ImageAnalysis.model_validate(body)
    assert result.categories is not None
    people = result.categories[1]
    assert people.detail is not None and people.detail.celebrities is not None
    celebrity = people.detail.celebrities[0]
    assert celebrity.face_rectangle == rest32.FaceRectangle(
        left=597, top=162, width=248, height=248
    )
    assert result.color is not None and result.color.is_bw_img is False
    assert result.image_type == rest32.ImageType(clip_art_type=0, line_drawing_type=0)
    assert result.tags is not None and result.tags[4].hint == "mammal"
    assert result.objects is not None
    tree = result.objects[0]
    assert tree.object_property == "tree"
    assert tree.parent == rest32.ObjectHierarchy(object_property="plant", confidence=0.95)
    assert result.faces is not None and result.faces[0].gender == "Male"
    assert result.brands is not None and result.brands[1].rectangle == rest32.BoundingRect(
        x=216, y=55, w=171, h=372
    )
    assert result.adult is not None and result.adult.is_gory_content is False
    assert result.request_id == "0dbec5ad-a3d3-4f7e-96b4-dfd57efe967d"


def test_object_parents_nest_to_any_depth() -> None:
    body = {
        "object": "bulldog",
        "confidence": 0.8,
        "rectangle": {"x": 1, "y": 2, "w": 3, "h": 4},
        "parent": {"object": "dog", "confidence": 0.9, "parent": {"object": "mammal"}},
    }
    detected = rest32.DetectedObject.model_validate(body)
    assert detected.parent is not None and detected.parent.parent is not None
    assert detected.parent.parent.object_property == "mammal"
    assert rest32.to_json(detected) == body


def test_read_result_keeps_integer_coordinates_and_the_page_structure() -> None:
    (body,) = _bodies("SuccessfulGetReadResult.json")
    result = rest32.ReadOperationResult.model_validate(body)
    assert result.status == "succeeded" and result.analyze_result is not None
    pages = result.analyze_result.read_results
    assert [page.page for page in pages] == [1, 2]
    line = pages[0].lines[0]
    assert line.bounding_box == [202, 618, 2047, 643, 2046, 840, 200, 813]
    assert all(type(n) is int for n in line.bounding_box)
    assert pages[0].angle == 49.59 and type(pages[0].width) is int
    assert line.appearance is not None and line.appearance.style is not None
    assert line.appearance.style.name == "other"
    assert pages[0].lines[2].language == "es" and pages[0].lines[0].language is None


def test_ocr_boxes_are_strings_readable_as_numbers() -> None:
    (body,) = _bodies("SuccessfulRecognizePrintedTextWithUrl.json")
    result = rest32.OcrResult.model_validate(body)
    assert result.regions is not None
    region = result.regions[0]
    assert region.bounding_box == "462,379,497,258"
    assert region.box() == (462, 379, 497, 258)
    assert region.lines is not None and region.lines[0].words is not None
    assert [w.text for w in region.lines[0].words] == ["A", "GOAL", "WITHOUT"]
    assert rest32.OcrWord(text="x").box() is None


def test_domain_model_result_stays_free_form_and_reads_typed() -> None:
    (body,) = _bodies("SuccessfulAnalyzeImageByDomainWithUrl.json")
    result = rest32.DomainModelResults.model_validate(body)
    assert result.result == body["result"]
    (celebrity,) = result.celebrities()
    assert celebrity.name == "Satya Nadella" and celebrity.confidence == 0.999028444
    assert result.landmarks() == []


def test_list_models_uses_the_sdk_attribute_name() -> None:
    (body,) = _bodies("SuccessfulListModels.json")
    result = rest32.ListModelsResult.model_validate(body)
    assert result.models_property is not None
    assert [(m.name, m.categories) for m in result.models_property] == [
        ("celebrities", ["people_"]),
        ("landmarks", ["building_"]),
    ]


def test_models_build_from_python_names_and_write_json_names() -> None:
    analysis = rest32.ImageAnalysis(
        categories=[],
        color=rest32.ColorInfo(accent_color="873B59", is_bw_img=True),
        request_id="r",
        metadata=rest32.ImageMetadata(width=2, height=1, format="Png"),
        model_version="2021-05-01",
    )
    assert rest32.to_json(analysis) == {
        "categories": [],
        "color": {"accentColor": "873B59", "isBWImg": True},
        "requestId": "r",
        "metadata": {"width": 2, "height": 1, "format": "Png"},
        "modelVersion": "2021-05-01",
    }


def test_error_bodies() -> None:
    body = {
        "error": {
            "code": "InvalidRequest",
            "message": "Image URL is badly formatted.",
            "innererror": {"code": "InvalidImageUrl", "message": "Image URL is badly formatted."},
        }
    }
    response = rest32.ComputerVisionErrorResponse.model_validate(body)
    assert response.error.innererror is not None
    assert response.error.innererror.code in rest32.INNER_ERROR_CODES
    assert response.error.code in rest32.ERROR_CODES
    assert rest32.to_json(response) == body
    ocr = {"code": "InvalidPageRange", "message": "bad pages", "requestId": "r"}
    parsed = rest32.ComputerVisionOcrError.model_validate(ocr)
    assert parsed.code in rest32.OCR_ERROR_CODES
    assert rest32.to_json(parsed) == ocr
    with pytest.raises(ValidationError):
        rest32.ComputerVisionErrorResponse.model_validate({"error": {"code": "InvalidRequest"}})


@pytest.mark.parametrize(
    ("model", "body", "where"),
    [
        (rest32.AdultInfo, {"isAdultContent": False}, "isRacyContent"),
        (rest32.Word, {"boundingBox": [1, 2, 3, 4], "text": "a", "confidence": 0.5}, "boundingBox"),
        (rest32.ReadOperationResult, {"status": "done"}, "status"),
        (rest32.FaceDescription, {"gender": "male"}, "gender"),
        (rest32.AnalyzeResults, {"version": "v3.2", "readResults": []}, "modelVersion"),
    ],
)
def test_required_fields_and_closed_enumerations_are_enforced(
    model: type[BaseModel], body: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValidationError, match=where):
        model.model_validate(body)


def test_a_running_read_has_no_result_yet() -> None:
    body = {"status": "running", "createdDateTime": "t0", "lastUpdatedDateTime": "t1"}
    result = rest32.ReadOperationResult.model_validate(body)
    assert result.analyze_result is None
    assert rest32.to_json(result) == body


def test_unknown_fields_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="isBwImg"):
        rest32.ColorInfo.model_validate({"isBwImg": False})  # the docs' misspelling (§11)
    (body,) = _bodies("SuccessfulTagImageWithUrl.json")
    with pytest.raises(ValidationError, match="tagsResult"):
        rest32.TagResult.model_validate({**body, "tagsResult": {"values": []}})  # a 4.0 key
    with pytest.raises(ValidationError, match="colour"):
        rest32.ImageAnalysis(colour=None)  # type: ignore[call-arg]


def test_taxonomy_has_86_unique_names_as_section_5_1_writes_them() -> None:
    names = cv32_categories()
    assert len(names) == rest32.CV32_CATEGORY_COUNT == 86
    assert len(set(names)) == 86
    assert list(names) == TAXONOMY_5_1
    assert rest32.cv32_categories is cv32_categories
    assert {n for n in names if n.endswith("_")} >= {"people_", "building_", "outdoor_"}
    assert not {"object_", "sky_", "trans_"} & set(names)


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference is not beside the repository")
def test_taxonomy_matches_the_reference_file() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    section = text[text.index("### 5.1") : text.index("### 5.2")]
    match = re.search(r"```\n(.*?)\n```", section, re.S)
    assert match is not None
    assert list(cv32_categories()) == match.group(1).split()


def test_spec_examples_name_only_known_categories() -> None:
    (body,) = _bodies("SuccessfulAnalyzeImageWithUrl.json")
    assert {c["name"] for c in body["categories"]} <= set(cv32_categories())
