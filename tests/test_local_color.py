"""Computer Vision 3.2's Color and ImageType from the pixels (viewfinder.local.color).

Synthetic images with known answers, photos pinned, determinism (two runs, re-encoded
copies), a 12-megapixel image, and the schemas' 3.2 JSON names. What is not checked:
closeness to the service's own numbers. The section 8.1 example's image is not in the
reference, so its values (Brown, Brown, [Brown, Black], 873B59) are only parsed here.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError

from viewfinder.local.color import WORK_SIDE, color_info, color_name, image_type, working_copy
from viewfinder.schemas.color import COLOR_NAMES, ColorInfo, ImageType

ASSETS = Path(__file__).parent / "assets"


def _reencoded(image: Image.Image, fmt: str) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt, quality=85)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _red_square() -> Image.Image:
    image = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(image).rectangle((76, 76, 179, 179), fill=(255, 0, 0))
    return image


def _line_page() -> Image.Image:
    """A black-and-white drawing: thin black strokes on white paper."""
    image = Image.new("L", (1024, 768), 255)
    draw = ImageDraw.Draw(image)
    draw.ellipse((200, 150, 800, 600), outline=0, width=4)
    draw.line((0, 700, 1024, 100), fill=0, width=4)
    for y in range(60, 740, 60):
        draw.line((60, y, 400, y), fill=0, width=3)
    return image


def _clip_art() -> Image.Image:
    """Four flat colours: sky, grass, sun, a red triangle."""
    image = Image.new("RGB", (600, 400), (30, 120, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 300, 600, 400), fill=(40, 160, 60))
    draw.ellipse((420, 40, 540, 160), fill=(250, 210, 30))
    draw.polygon([(100, 300), (200, 150), (300, 300)], fill=(200, 40, 40))
    return image


def _asset(name: str) -> Image.Image:
    image = Image.open(ASSETS / name)
    image.load()
    return image


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((0, 0, 0), "Black"),
        ((255, 255, 255), "White"),
        ((128, 128, 128), "Gray"),
        ((255, 0, 0), "Red"),
        ((128, 0, 0), "Red"),
        ((90, 20, 20), "Brown"),
        ((255, 182, 193), "Pink"),
        ((255, 140, 0), "Orange"),
        ((139, 69, 19), "Brown"),
        ((224, 172, 140), "Brown"),
        ((255, 230, 0), "Yellow"),
        ((0, 160, 0), "Green"),
        ((0, 128, 128), "Teal"),
        ((0, 0, 255), "Blue"),
        ((128, 0, 160), "Purple"),
        ((255, 0, 200), "Pink"),
    ],
)
def test_colour_names_follow_the_documented_table(rgb: tuple[int, int, int], name: str) -> None:
    assert color_name(*rgb) == name


def test_every_colour_gets_one_of_the_twelve_names() -> None:
    names = {color_name(r, g, b) for r in range(0, 256, 15) for g in range(0, 256, 15)
             for b in range(0, 256, 15)}  # fmt: skip
    assert names == set(COLOR_NAMES)


def test_a_red_square_on_white() -> None:
    color = color_info(_red_square())
    assert color.dominant_color_foreground == "Red"
    assert color.dominant_color_background == "White"
    assert color.dominant_colors == ("White", "Red")
    assert color.accent_color == "FF0000"
    assert color.is_bw_img is False
    assert image_type(_red_square()) == ImageType(clip_art_type=3, line_drawing_type=0)


def test_a_black_and_white_line_drawing() -> None:
    page = _line_page()
    color = color_info(page)
    assert color.is_bw_img is True
    assert color.dominant_colors == ("White",)
    assert image_type(page).line_drawing_type == 1
    # the same drawing filled in is no line drawing
    ImageDraw.Draw(page).ellipse((200, 150, 800, 600), fill=0)
    assert image_type(page).line_drawing_type == 0


def test_clip_art_of_few_flat_colours_is_good_clip_art() -> None:
    kind = image_type(_clip_art())
    assert kind == ImageType(clip_art_type=3, line_drawing_type=0)
    assert image_type(_reencoded(_clip_art(), "JPEG")) == kind
    assert color_info(_clip_art()).dominant_colors == ("Blue", "Green")


def test_a_dark_colour_photo_is_not_black_and_white() -> None:
    dark = Image.new("RGB", (64, 64), (40, 10, 10))  # named Black, yet it has a hue
    ImageDraw.Draw(dark).rectangle((0, 0, 63, 20), fill=(255, 255, 255))
    color = color_info(dark)
    assert color.dominant_colors == ("Black", "White")
    assert color.is_bw_img is False


PINNED = {
    "chelsea.png": (
        {
            "dominantColorForeground": "Brown",
            "dominantColorBackground": "Brown",
            "dominantColors": ["Brown"],
            "accentColor": "936B4E",
            "isBWImg": False,
        },
        {"clipArtType": 0, "lineDrawingType": 0},
    ),
    "rocket.jpg": (
        {
            "dominantColorForeground": "Blue",
            "dominantColorBackground": "Black",
            "dominantColors": ["Blue", "Black"],
            "accentColor": "2E3E5E",
            "isBWImg": False,
        },
        {"clipArtType": 1, "lineDrawingType": 0},
    ),
    "page.png": (
        {
            "dominantColorForeground": "Gray",
            "dominantColorBackground": "Gray",
            "dominantColors": ["Gray", "White"],
            "accentColor": "ACACAC",
            "isBWImg": True,
        },
        {"clipArtType": 0, "lineDrawingType": 0},
    ),
}
"""Our answers for the test assets, pinned so that a change of rule shows (not Azure's)."""


@pytest.mark.parametrize("name", sorted(PINNED))
def test_photos_give_their_pinned_values_and_the_same_twice(name: str) -> None:
    color, kind = PINNED[name]
    assert color_info(_asset(name)).to_rest() == color
    assert image_type(_asset(name)).to_rest() == kind
    assert color_info(_asset(name)) == color_info(_asset(name))


@pytest.mark.parametrize(("name", "fmt"), [("chelsea.png", "JPEG"), ("rocket.jpg", "PNG")])
def test_a_reencoded_copy_gives_the_same_names_and_types(name: str, fmt: str) -> None:
    original, copy = color_info(_asset(name)), color_info(_reencoded(_asset(name), fmt))
    assert copy.model_dump(exclude={"accent_color"}) == original.model_dump(
        exclude={"accent_color"}
    )
    assert color_name(*bytes.fromhex(copy.accent_color)) == color_name(
        *bytes.fromhex(original.accent_color)
    )
    assert image_type(_reencoded(_asset(name), fmt)) == image_type(_asset(name))


def test_a_twelve_megapixel_image_is_counted_on_a_small_copy() -> None:
    big = _asset("rocket.jpg").resize((4000, 3000), Image.Resampling.BICUBIC)
    assert max(working_copy(big).size) == WORK_SIDE
    small = color_info(_asset("rocket.jpg"))
    assert color_info(big).model_dump(exclude={"accent_color"}) == small.model_dump(
        exclude={"accent_color"}
    )
    assert image_type(big).clip_art_type == image_type(_asset("rocket.jpg")).clip_art_type


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "1", "CMYK"])
def test_any_mode_and_tiny_images(mode: str) -> None:
    image = _red_square().convert(mode) if mode != "I;16" else _line_page().convert(mode)
    assert color_info(image).dominant_color_background in COLOR_NAMES
    assert image_type(image).clip_art_type in (0, 1, 2, 3)
    one = Image.new("RGB", (1, 1), (0, 0, 255))
    assert color_info(one).to_rest()["dominantColors"] == ["Blue"]
    assert image_type(one).line_drawing_type == 0


def test_transparency_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((80, 80, 219, 219), fill=(0, 0, 255, 255))
    color = color_info(image)
    assert (color.dominant_color_background, color.dominant_color_foreground) == ("White", "Blue")


def test_the_section_8_1_example_parses_and_serialises_back_equal() -> None:
    color = {
        "dominantColorForeground": "Brown",
        "dominantColorBackground": "Brown",
        "dominantColors": ["Brown", "Black"],
        "accentColor": "873B59",
        "isBWImg": False,
    }
    kind = {"clipArtType": 0, "lineDrawingType": 0}
    assert ColorInfo.from_rest(color).to_rest() == color
    assert list(ColorInfo.from_rest(color).to_rest()) == list(color)  # section 4's order
    assert ImageType.from_rest(kind).to_rest() == kind
    assert json.dumps(ColorInfo.from_rest(color).to_rest())  # plain JSON types


def test_the_schemas_are_frozen_and_strict() -> None:
    color = color_info(_red_square())
    with pytest.raises(ValidationError):
        color.accent_color = "000000"  # type: ignore[misc]
    assert ColorInfo.from_rest({**color.to_rest(), "accentColor": "#ff0000"}).accent_color == (
        "FF0000"
    )
    with pytest.raises(ValidationError):
        ColorInfo.from_rest({**color.to_rest(), "dominantColors": ["Beige"]})
    with pytest.raises(ValidationError):
        ImageType(clip_art_type=4, line_drawing_type=0)  # type: ignore[arg-type]


def test_importable_and_working_without_numpy_or_opencv() -> None:
    """Pillow is a core dependency; NumPy and OpenCV come only with the `local` extra."""
    code = (
        "import sys; sys.modules['numpy'] = None; sys.modules['cv2'] = None\n"
        "from PIL import Image\n"
        "from viewfinder.local.color import color_info, image_type\n"
        "image = Image.new('RGB', (40, 30), 'red')\n"
        "print(color_info(image).dominant_color_foreground, image_type(image).clip_art_type)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["Red", "3"]
