"""`viewfinder.draw.draw`: annotated copies for Image Analysis results and custom schemas."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw
from pydantic import BaseModel

import viewfinder as vf
from viewfinder.draw import (
    COMPARED_FEATURES,
    OUTCOME_COLOURS,
    _canonical,
    _comparison_marks,
    _Drawing,
    _Layout,
    _overlaps,
    _prepare,
    _Style,
    _walk,
    draw,
    draw_comparison,
)
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


# --- options, layout and the comparison drawing (issue 18) ---------------------------------


def _layout(drawing: _Drawing) -> _Layout:
    """Where `drawing` puts its banner, legend and labels."""
    size = drawing.base.size
    return drawing.layout(ImageDraw.Draw(Image.new("RGBA", size)), _Style.for_size(*size))


def _options(**options: Any) -> dict[str, Any]:
    defaults = {
        "features": None,
        "min_confidence": 0.0,
        "labels": True,
        "legend": True,
        "colors": None,
        "allow_hosts": None,
    }
    return {**defaults, **options}


LAPTOP = DetectedObject(name="laptop", confidence=0.8, box=_box(50, 60, 100, 80))
PERSON = DetectedPerson(box=_box(200, 40, 60, 120), confidence=0.3)


def test_features_and_min_confidence_choose_the_marks() -> None:
    result = _result(
        caption=Caption(text="a desk", confidence=0.5), objects=[LAPTOP], people=[PERSON]
    )
    plain = {"labels": False, "legend": False}
    only_objects = draw(result, _grey(), features=["objects"], **plain)
    assert only_objects.getpixel((50, 100)) != GREY and only_objects.getpixel((200, 100)) == GREY
    assert only_objects.getpixel((5, 195)) == GREY  # the caption was not chosen
    confident = draw(result, _grey(), min_confidence=0.6, **plain)
    assert confident.getpixel((50, 100)) != GREY and confident.getpixel((200, 100)) == GREY
    assert confident.getpixel((5, 195)) == GREY  # the caption's 0.5 is below too
    assert _same(draw(result, _grey(), features="denseCaptions", **plain), _grey())
    with pytest.raises(vf.InvalidOptionError, match="tags"):
        draw(result, _grey(), features=["tags"])
    with pytest.raises(vf.InvalidOptionError, match="min_confidence"):
        draw(result, _grey(), min_confidence=1.5)


def test_custom_schemas_choose_by_field_and_sibling_confidence() -> None:
    class Item(BaseModel):
        name: str
        confidence: float
        box: vf.BoundingBox

    class Found(BaseModel):
        items: list[Item]
        sign: vf.BoundingBox

    found = Found(
        items=[Item(name="a", confidence=0.9, box=_box(20, 20, 40, 40))],
        sign=_box(200, 120, 60, 50),
    )
    plain = {"labels": False, "legend": False}
    items = draw(found, _grey(), features=["items"], **plain)
    assert items.getpixel((20, 40)) != GREY and items.getpixel((200, 150)) == GREY
    sign = draw(found, _grey(), min_confidence=0.95, **plain)
    assert sign.getpixel((20, 40)) == GREY and sign.getpixel((200, 150)) != GREY


def test_labels_off_leaves_only_the_shapes() -> None:
    result = _result(objects=[LAPTOP])
    labelled = draw(result, _grey(), legend=False)
    bare = draw(result, _grey(), labels=False, legend=False)
    assert labelled.getpixel((60, 50)) != GREY  # the tag above the box
    assert bare.getpixel((60, 50)) == GREY and bare.getpixel((50, 100)) != GREY


def test_colors_override_by_group_or_feature() -> None:
    result = _result(objects=[LAPTOP], people=[PERSON])
    drawn = draw(result, _grey(), colors={"laptop": (0, 0, 255), "people": "#00ff00"})
    assert drawn.getpixel((50, 100)) == (0, 0, 255)
    assert drawn.getpixel((200, 100)) == (0, 255, 0)
    feature = draw(result, _grey(), colors={"objects": "yellow"}, labels=False)
    assert feature.getpixel((50, 100)) == (255, 255, 0)
    with pytest.raises(vf.InvalidOptionError, match="not a colour"):
        draw(result, _grey(), colors={"laptop": "no-such-colour"})


def test_labels_stay_inside_the_image_and_apart() -> None:
    # Twelve boxes at one corner: their labels would stack there and run off the top.
    objects = [
        DetectedObject(name=f"thing {n}", confidence=0.5, box=_box(n, n, 120, 80))
        for n in range(12)
    ]
    result = _result(caption=Caption(text="many things", confidence=0.9), objects=objects)
    layout = _layout(_prepare(result, _grey(), **_options()))
    assert layout.legend is not None and layout.banner is not None
    rects = [label.rect for label in layout.labels]
    assert len(rects) == 12
    for left, top, right, bottom in rects:
        assert 0 <= left < right <= 300 and 0 <= top < bottom <= 200
    for index, rect in enumerate(rects):
        for other in [*rects[index + 1 :], layout.legend, layout.banner]:
            assert not _overlaps(rect, other), (rect, other)


def test_labels_without_room_are_left_out_not_stacked() -> None:
    objects = [
        DetectedObject(name=f"thing {n}", confidence=0.5, box=_box(n, n, 30, 20)) for n in range(12)
    ]
    result = _result(60, 40, objects=objects)
    layout = _layout(_prepare(result, _grey(60, 40), **_options(legend=False)))
    rects = [label.rect for label in layout.labels]
    assert 0 < len(rects) < 12
    for index, rect in enumerate(rects):
        assert all(not _overlaps(rect, other) for other in rects[index + 1 :])


def test_a_label_wider_than_the_image_is_shortened_to_fit() -> None:
    long = DetectedObject(name="x" * 40, confidence=0.5, box=_box(10, 40, 30, 30))
    layout = _layout(_prepare(_result(80, 100, objects=[long]), _grey(80, 100), **_options()))
    (label,) = layout.labels
    assert label.text.endswith("…") and label.rect[2] <= 80


def test_the_legend_names_each_group_in_its_colour() -> None:
    result = _result(objects=[LAPTOP], people=[PERSON])
    drawing = _prepare(result, _grey(), **_options(colors={"laptop": (0, 0, 255)}))
    layout = _layout(drawing)
    assert [(text, colour) for text, colour, _ in layout.legend_rows] == [
        ("person", drawing.colours["person"]),
        ("laptop", (0, 0, 255)),
    ]
    assert layout.legend is not None
    _, top, right, _ = layout.legend
    assert (right, top) == (300, 0)  # the top-right corner: no shape there
    with_legend = draw(result, _grey(), labels=False)
    without = draw(result, _grey(), labels=False, legend=False)
    assert with_legend.crop(layout.legend).getcolors() != without.crop(layout.legend).getcolors()
    assert _layout(_prepare(result, _grey(), **_options(legend=False))).legend is None


def _outcome_pixels(image: Image.Image, outcome: str) -> int:
    """How many pixels of `image` have exactly the colour of `outcome`."""
    counts = {colour: count for count, colour in image.getcolors(1 << 16) or []}
    return counts.get(OUTCOME_COLOURS[outcome], 0)  # type: ignore[index]


def test_comparison_colours_matched_missed_and_extra() -> None:
    ours = _result(
        objects=[
            DetectedObject(name="cat", confidence=0.9, box=_box(10, 10, 80, 60)),
            DetectedObject(name="dog", confidence=0.6, box=_box(200, 120, 60, 50)),
        ],
        people=[],
    )
    reference = _result(
        objects=[
            DetectedObject(name="Cat", confidence=0.8, box=_box(12, 12, 80, 60)),
            DetectedObject(name="dog", confidence=0.7, box=_box(120, 20, 50, 50)),
        ],
        people=[],
    )
    drawn = draw_comparison(_grey(), ours, reference, labels=False, legend=False)
    matched = drawn.crop((0, 0, 100, 100))
    missed = drawn.crop((110, 10, 180, 80))
    extra = drawn.crop((190, 110, 270, 180))
    assert _outcome_pixels(matched, "matched") > 100 and _outcome_pixels(matched, "missed") == 0
    assert _outcome_pixels(missed, "missed") > 20 and _outcome_pixels(missed, "extra") == 0
    assert _outcome_pixels(extra, "extra") > 20 and _outcome_pixels(extra, "matched") == 0
    # dashed and dotted: the line style tells them apart without colour
    top_of_missed = [drawn.getpixel((x, 20)) == OUTCOME_COLOURS["missed"] for x in range(120, 170)]
    assert 10 < sum(top_of_missed) < 45
    # the legend counts each outcome; a stricter threshold unpairs the cat
    _, counts = _comparison_marks(ours, reference, {"objects"}, 0.5, 0.0, _canonical(None, False))
    assert counts == {"matched": 1, "missed": 1, "extra": 1}
    _, strict = _comparison_marks(ours, reference, {"objects"}, 0.99, 0.0, _canonical(None, False))
    assert strict == {"matched": 0, "missed": 2, "extra": 2}
    recoloured = draw_comparison(
        _grey(), ours, reference, labels=False, legend=False, colors={"matched": "white"}
    )
    assert _outcome_pixels(recoloured.crop((0, 0, 100, 100)), "matched") == 0
    with pytest.raises(vf.InvalidOptionError, match="colors"):
        draw_comparison(_grey(), ours, reference, colors={"cat": "red"})


def test_comparison_draws_read_lines_and_people_and_skips_what_one_side_lacks() -> None:
    line = ReadLine(text="HELLO", polygon=_box(20, 100, 80, 20).to_polygon(), words=[])
    other = ReadLine(text="WORLD", polygon=_box(150, 100, 80, 20).to_polygon(), words=[])
    ours = _result(read=ReadResult(blocks=[ReadBlock(lines=[line])]), people=[PERSON])
    reference = _result(read=ReadResult(blocks=[ReadBlock(lines=[line, other])]))
    marks, counts = _comparison_marks(
        ours, reference, set(COMPARED_FEATURES), 0.5, 0.0, _canonical(None, False)
    )
    assert counts == {"matched": 1, "missed": 1, "extra": 0}  # people: the reference has none
    assert {(m.label, m.kind, m.stroke) for m in marks} == {
        ("HELLO", "polygon", "solid"),
        ("WORLD (missed)", "polygon", "dashed"),
    }
    drawn = draw_comparison(_png(_grey()), ours, reference, features=["read"])
    assert drawn.size == (300, 200)
    with pytest.raises(vf.InvalidOptionError, match="100x100"):
        draw_comparison(_grey(), ours, _result(100, 100))


def test_groups_sharing_a_feature_colour_share_one_legend_row() -> None:
    cup = DetectedObject(name="cup", confidence=0.9, box=_box(160, 20, 40, 40))
    result = _result(objects=[LAPTOP, cup], people=[PERSON])
    drawing = _prepare(result, _grey(), **_options(colors={"objects": "orange"}))
    rows = [(text, colour) for text, colour, _ in _layout(drawing).legend_rows]
    assert rows == [("person", drawing.colours["person"]), ("objects", (255, 165, 0))]
