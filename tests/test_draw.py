"""`viewfinder.draw.draw`: annotated copies for Image Analysis results and custom schemas."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from pydantic import BaseModel

import viewfinder as vf
from viewfinder.draw import _walk, draw
from viewfinder.schemas.features import (
    Caption,
    CropRegion,
    DenseCaption,
    DetectedObject,
    DetectedPerson,
    ReadBlock,
    ReadLine,
    ReadResult,
)

GREY = (128, 128, 128)


def _grey(width: int = 300, height: int = 200) -> Image.Image:
    return Image.new("RGB", (width, height), GREY)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _box(x: int, y: int, width: int, height: int) -> vf.BoundingBox:
    return vf.BoundingBox(x=x, y=y, width=width, height=height)


def _result(width: int = 300, height: int = 200, **features: object) -> vf.ImageAnalysisResult:
    return vf.ImageAnalysisResult(
        model_version="test+0",
        metadata=vf.ImageMetadata(width=width, height=height),
        **features,
    )


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


def test_draw_returns_an_rgb_image_of_the_original_size(cat_image: Path) -> None:
    with Image.open(cat_image) as original:
        size = original.size
    result = _result(
        *size,
        objects=[DetectedObject(name="cat", confidence=0.9, box=_box(45, 15, 361, 270))],
    )
    annotated = draw(result, cat_image)
    assert isinstance(annotated, Image.Image)
    assert annotated.mode == "RGB" and annotated.size == size == (451, 300)


def test_box_edges_change_pixels_and_the_input_is_untouched() -> None:
    image = _grey()
    result = _result(
        objects=[DetectedObject(name="laptop", confidence=0.8, box=_box(50, 60, 100, 80))],
        people=[DetectedPerson(box=_box(200, 40, 60, 120), confidence=0.7)],
    )
    annotated = draw(result, image)
    assert annotated is not image and image.getpixel((50, 100)) == GREY
    for edge in [(50, 100), (149, 100), (100, 139), (200, 100), (259, 100)]:
        assert annotated.getpixel(edge) != GREY, edge
    assert annotated.getpixel((100, 100)) == GREY  # inside the box, untouched
    assert annotated.getpixel((5, 195)) == GREY  # no caption: no banner
    # Objects and people get distinct colours.
    assert annotated.getpixel((50, 100)) != annotated.getpixel((200, 100))


def test_every_feature_is_drawn_from_bytes() -> None:
    image = _grey()
    result = _result(
        caption=Caption(text="a grey square", confidence=0.9),
        dense_captions=[DenseCaption(text="grey", confidence=0.9, box=_box(0, 0, 300, 200))],
        smart_crops=[CropRegion(aspect_ratio=1.0, box=_box(50, 0, 200, 200))],
        read=ReadResult(
            blocks=[
                ReadBlock(
                    lines=[
                        ReadLine(text="HELLO", polygon=_box(20, 100, 80, 20).to_polygon(), words=[])
                    ]
                )
            ]
        ),
    )
    annotated = draw(result, _png(image))
    assert annotated.size == (300, 200)
    assert annotated.getpixel((5, 195)) != GREY  # the caption banner
    left_edge = [annotated.getpixel((50, y)) != GREY for y in range(30, 170)]
    assert 20 < sum(left_edge) < len(left_edge)  # the crop's left edge is dashed
    assert annotated.getpixel((60, 110)) != GREY or annotated.getpixel((20, 110)) != GREY


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (120, 60), GREY)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    path = tmp_path / "rotated.jpg"
    stored.save(path, format="JPEG", exif=exif)
    result = _result(60, 120, people=[DetectedPerson(box=_box(2, 2, 10, 30), confidence=0.9)])
    annotated = draw(result, path)
    assert annotated.size == (60, 120)
    with pytest.raises(vf.InvalidOptionError, match="60x120"):
        draw(_result(120, 60, people=result.people), path)


def test_a_size_mismatch_is_refused() -> None:
    result = _result(100, 100, people=[DetectedPerson(box=_box(2, 2, 10, 30), confidence=0.9)])
    with pytest.raises(vf.InvalidOptionError, match="100x100"):
        draw(result, _grey())


def test_nothing_to_draw_returns_an_unchanged_copy() -> None:
    image = _grey()
    image.putpixel((10, 10), (1, 2, 3))
    for result in (_result(), _result(objects=[], people=[], read=ReadResult(blocks=[]))):
        annotated = draw(result, image)
        assert annotated is not image and _same(annotated, image)


class Product(BaseModel):
    name: str
    box: vf.BoundingBox


class Shelf(BaseModel):
    label: str
    outline: vf.Polygon
    products: list[Product]


class Store(BaseModel):
    shelves: list[Shelf]
    sign: vf.BoundingBox | None = None
    extra: dict[str, vf.BoundingBox] = {}
    note: str = ""


STORE = Store(
    shelves=[
        Shelf(
            label="top shelf",
            outline=_box(10, 10, 280, 80).to_polygon(),
            products=[
                Product(name="apple", box=_box(20, 20, 40, 40)),
                Product(name="", box=_box(100, 20, 40, 40)),
            ],
        )
    ],
    sign=_box(200, 120, 60, 50),
    extra={"door": _box(20, 120, 40, 60)},
)


def test_custom_schema_nested_geometry_is_drawn() -> None:
    image = _grey()
    annotated = draw(STORE, image)
    assert annotated.size == image.size
    edges = [(10, 50), (290, 50), (20, 50), (59, 50), (100, 50), (139, 50), (200, 150), (20, 150)]
    for edge in edges:
        assert annotated.getpixel(edge) != GREY, edge
    assert annotated.getpixel((40, 45)) == GREY  # inside the apple's box


def test_custom_schema_labels_use_a_sibling_name_or_the_path() -> None:
    labels = [mark.label for mark in _walk(STORE, "", None, False)]
    assert labels == ["top shelf", "apple", "shelves[0].products[1].box", "sign", "extra['door']"]


def test_an_analysis_run_is_drawn_through_its_output() -> None:
    run = vf.AnalysisRun[Store](
        output=STORE,
        usage=vf.Usage(),
        model_version="test+0",
        metadata=vf.ImageMetadata(width=300, height=200),
    )
    image = _grey()
    assert _same(draw(run, image), draw(STORE, image))
    with pytest.raises(vf.InvalidOptionError):
        draw(run, _grey(100, 100))


def test_a_model_without_geometry_gives_an_unchanged_copy() -> None:
    class Plain(BaseModel):
        title: str
        items: list[str]

    image = _grey()
    assert _same(draw(Plain(title="x", items=["a"]), image), image)
    assert _same(draw(Store(shelves=[]), image), image)


def test_draw_scales_with_the_image() -> None:
    small = draw(
        _result(people=[DetectedPerson(box=_box(50, 50, 100, 100), confidence=1)]), _grey()
    )
    big = draw(
        _result(3000, 2000, people=[DetectedPerson(box=_box(500, 500, 1000, 1000), confidence=1)]),
        _grey(3000, 2000),
    )

    def stroke(image: Image.Image, x: int, y: int) -> int:
        return sum(image.getpixel((x + dx, y)) != GREY for dx in range(-20, 20))

    assert stroke(big, 500, 1000) > stroke(small, 50, 100)
