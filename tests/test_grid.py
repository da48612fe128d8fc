"""Grid answers -> pixels, and the rewriting of custom schemas."""

from __future__ import annotations

from typing import Annotated, Optional, Union

import pytest
from pydantic import BaseModel, Field, ValidationError, field_validator

from viewfinder import BoundingBox, Point, Polygon, SchemaError
from viewfinder.build.grid import Frame, box_to_pixels, model_facing, polygon_to_pixels


def test_box_maps_with_round_and_clamps() -> None:
    frame = Frame(864, 576)
    box = box_to_pixels([0, 0, 1000, 1000], frame)
    assert box == BoundingBox(x=0, y=0, width=864, height=576)
    # round(v * W / 1000): 333 * 864 / 1000 = 287.712 -> 288
    box = box_to_pixels([333, 500, 667, 750], frame)
    assert box.xyxy == (288, 288, 576, 432)


def test_box_on_odd_sizes_stays_inside_the_image() -> None:
    frame = Frame(7, 3)
    box = box_to_pixels([999, 999, 1000, 1000], frame)
    assert box.x + box.width <= 7 and box.y + box.height <= 3


def test_polygon_maps_each_point() -> None:
    polygon = polygon_to_pixels([[0, 0], [500, 0], [500, 1000], [0, 1000]], Frame(200, 100))
    assert polygon.points == [
        Point(x=0, y=0),
        Point(x=100, y=0),
        Point(x=100, y=100),
        Point(x=0, y=100),
    ]


class Product(BaseModel):
    name: str
    box: BoundingBox

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a product needs a name")
        return value


class Shelf(BaseModel):
    """A supermarket shelf."""

    products: list[Product]
    label: Optional[BoundingBox] = None  # noqa: UP045 - the old spelling must work too
    gaps: tuple[BoundingBox, ...] = ()
    zones: dict[str, Polygon] = Field(default_factory=dict)
    count: int = 0


def test_nested_boxes_at_any_depth_come_back_in_pixels() -> None:
    facing = model_facing(Shelf)
    assert facing.convert is not None
    answer = facing.annotation.model_validate(
        {
            "products": [{"name": "milk", "box": [100, 200, 300, 400]}],
            "label": [0, 900, 1000, 1000],
            "gaps": [[500, 0, 600, 100]],
            "zones": {"top": [[0, 0], [1000, 0], [1000, 500], [0, 500]]},
            "count": 1,
        }
    )
    shelf = facing.convert(answer, Frame(1000, 500))
    assert isinstance(shelf, Shelf)
    assert shelf.products[0].box == BoundingBox(x=100, y=100, width=200, height=100)
    assert shelf.label == BoundingBox(x=0, y=450, width=1000, height=50)
    assert shelf.gaps == (BoundingBox(x=500, y=0, width=100, height=50),)
    assert shelf.zones["top"].points[2] == Point(x=1000, y=250)
    assert shelf.count == 1


def test_model_facing_schema_says_grid_and_keeps_validators() -> None:
    facing = model_facing(Shelf).annotation
    schema = facing.model_json_schema()
    box = schema["$defs"]["Product"]["properties"]["box"]
    assert box["type"] == "array" and box["minItems"] == 4 and box["items"]["maximum"] == 1000
    assert "0-1000 grid" in box["description"]
    with pytest.raises(ValidationError, match="a product needs a name"):
        facing.model_validate({"products": [{"name": " ", "box": [0, 0, 10, 10]}]})


@pytest.mark.parametrize(
    "box", [[500, 0, 400, 100], [0, 0, 0, 10], [0, 0, 1001, 10], [-1, 0, 10, 10], [0, 0, 10]]
)
def test_impossible_boxes_fail_validation(box: list[int]) -> None:
    facing = model_facing(Shelf).annotation
    with pytest.raises(ValidationError):
        facing.model_validate({"products": [{"name": "x", "box": box}]})


def test_schema_without_boxes_is_used_as_is() -> None:
    class Plain(BaseModel):
        text: str

    facing = model_facing(Plain)
    assert facing.annotation is Plain and facing.convert is None


def test_annotated_box_keeps_its_metadata() -> None:
    class Doc(BaseModel):
        logo: Annotated[BoundingBox, Field(description="the logo")]

    facing = model_facing(Doc)
    assert facing.annotation.model_json_schema()["properties"]["logo"]["description"] == "the logo"


@pytest.mark.parametrize(
    "annotation",
    [
        set[BoundingBox],
        frozenset[Polygon],
        Union[BoundingBox, Polygon],  # noqa: UP007
        BoundingBox | int,
    ],
)
def test_unsupported_positions_fail_when_built(annotation: object) -> None:
    class Bad(BaseModel):
        value: annotation  # type: ignore[valid-type]

    with pytest.raises(SchemaError, match=r"Bad\.value"):
        model_facing(Bad)


def test_box_as_dict_key_is_refused() -> None:
    with pytest.raises(SchemaError, match="dict key"):
        model_facing(dict[BoundingBox, int])
