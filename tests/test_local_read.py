"""The local `read` engine (`viewfinder.local.read`): OCR on this machine, offline.

Skipped as a whole without the `local` extra. Each image is read once per module (OCR
takes about half a second an image); the quality is pinned loosely: each image's
character error rate may rise at most 3 points above what was measured when this file
was written (`benchmarks/bench_local_read.py` prints the current values).
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

pytest.importorskip("rapidocr", reason="the local extra is not installed")

from viewfinder.evaluate.compare import error_rate, levenshtein
from viewfinder.local import read as local_read
from viewfinder.local.read import detect_text_regions, read_text, reading_order
from viewfinder.schemas.features import ReadResult
from viewfinder.schemas.geometry import Polygon

ASSETS = Path(__file__).parent / "assets" / "ocr"
GROUND_TRUTH: dict[str, list[str]] = json.loads((ASSETS / "ground_truth.json").read_text())

MEASURED_CER = {"page.png": 0.003, "receipt.png": 0.0, "skewed.png": 0.0, "columns.png": 0.0}
"""Character error rates measured with rapidocr 3.10 (PP-OCRv6), onnxruntime 1.32 (1.4.4's
PP-OCRv4: page.png 0.010, WER 0.064; the others 0)."""
MEASURED_WER = {"page.png": 0.021, "receipt.png": 0.0, "skewed.png": 0.0, "columns.png": 0.0}
CER_MARGIN = 0.03
WER_MARGIN = 0.10
LINE_COUNT_SLACK = {"page.png": 1}
"""page.png is a real scan with a cut-off line at its foot: one line more or less is allowed."""


# --- measuring --------------------------------------------------------------------------


def normalise(lines: list[str]) -> str:
    """Lines in reading order joined with newlines, runs of spaces as one."""
    return "\n".join(" ".join(line.split()) for line in lines if line.strip())


def cer(found: list[str], truth: list[str]) -> float:
    """Character error rate: edit distance over the reference's length."""
    return error_rate(normalise(found), normalise(truth))


def wer(found: list[str], truth: list[str]) -> float:
    """Word error rate: word-level edit distance over the reference's word count."""
    return error_rate(normalise(found).split(), normalise(truth).split())


# --- reading each image once ------------------------------------------------------------


@dataclass
class Reading:
    image: Image.Image
    result: ReadResult
    seconds: float


@dataclass
class Run:
    readings: dict[str, Reading]
    exif_raw: Image.Image
    exif_result: ReadResult
    upside_down_result: ReadResult
    blank_result: ReadResult
    network_attempts: list[str]


def _exif_rotated_png(image: Image.Image) -> bytes:
    """The image stored turned a quarter left, with EXIF saying "turn right to view"."""
    stored = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    """Load the engine afresh and read every image, with every network call recorded."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{name}{args[1:] if name == 'connect' else args}")
            raise OSError(f"network blocked in test: {name}")

        return blocked

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local_read, "_engine", None)  # the model loading is under watch too
        patch.setattr(socket.socket, "connect", refuse("connect"))
        patch.setattr(socket, "create_connection", refuse("create_connection"))
        patch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        readings = {}
        for name in GROUND_TRUTH:
            image = Image.open(ASSETS / name)
            image.load()
            start = time.perf_counter()
            result = read_text(image)
            readings[name] = Reading(image, result, time.perf_counter() - start)
        exif_raw = Image.open(io.BytesIO(_exif_rotated_png(readings["columns.png"].image)))
        exif_result = read_text(exif_raw)
        upside_down = read_text(readings["columns.png"].image.rotate(180))
        blank_result = read_text(Image.new("RGB", (320, 200), "white"))
    yield Run(readings, exif_raw, exif_result, upside_down, blank_result, attempts)


# --- quality ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GROUND_TRUTH))
def test_character_and_word_error_rates_stay_near_the_measured(run: Run, name: str) -> None:
    found = [line.text for line in run.readings[name].result.lines]
    truth = GROUND_TRUTH[name]
    assert cer(found, truth) <= MEASURED_CER[name] + CER_MARGIN, found
    assert wer(found, truth) <= MEASURED_WER[name] + WER_MARGIN, found


@pytest.mark.parametrize("name", sorted(GROUND_TRUTH))
def test_every_line_is_found(run: Run, name: str) -> None:
    found = run.readings[name].result.lines
    assert abs(len(found) - len(GROUND_TRUTH[name])) <= LINE_COUNT_SLACK.get(name, 0)


@pytest.mark.parametrize("name", sorted(GROUND_TRUTH))
def test_lines_come_in_reading_order(run: Run, name: str) -> None:
    found = [" ".join(line.text.split()) for line in run.readings[name].result.lines]
    positions = [
        min(range(len(found)), key=lambda i: levenshtein(found[i], truth))
        for truth in GROUND_TRUTH[name]
    ]
    assert positions == sorted(positions), (positions, found)


def test_two_columns_read_column_by_column(run: Run) -> None:
    found = [line.text for line in run.readings["columns.png"].result.lines]
    assert found[0].startswith("Notes")
    assert found[1].startswith("The first") and found[4].startswith("The second")


def test_spaces_between_words_survive(run: Run) -> None:
    """PP-OCR's recogniser drops spaces; viewfinder puts back those it scored."""
    page = run.readings["page.png"].result.text
    assert "Region-based segmentation" in page
    assert "background. These" in page
    assert "CORNER GROCER" in run.readings["receipt.png"].result.text


# --- geometry and confidences -----------------------------------------------------------


def _signed_area(polygon: Polygon) -> float:
    points = [(p.x, p.y) for p in polygon]
    pairs = zip(points, [*points[1:], points[0]], strict=True)
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairs) / 2


@pytest.mark.parametrize("name", sorted(GROUND_TRUTH))
def test_polygons_are_clockwise_quads_inside_the_image(run: Run, name: str) -> None:
    reading = run.readings[name]
    width, height = reading.image.size
    for line in reading.result.lines:
        assert len(line.polygon) == 4
        assert _signed_area(line.polygon) > 0  # clockwise on screen (y down)
        first, second, _, fourth = line.polygon
        assert first.x < second.x and first.y < fourth.y  # upright text starts top-left
        line_box = line.polygon.bounds
        for polygon in [line.polygon, *(word.polygon for word in line.words)]:
            assert all(0 <= p.x <= width and 0 <= p.y <= height for p in polygon)
        for word in line.words:
            assert len(word.polygon) == 4
            assert _signed_area(word.polygon) > 0
            box = word.polygon.bounds
            assert line_box.x - 2 <= box.x and box.x + box.width <= line_box.x + line_box.width + 2
            assert (
                line_box.y - 2 <= box.y and box.y + box.height <= line_box.y + line_box.height + 2
            )


@pytest.mark.parametrize("name", sorted(GROUND_TRUTH))
def test_words_carry_engine_geometry_and_confidences(run: Run, name: str) -> None:
    lines = run.readings[name].result.lines
    words = [word for line in lines for word in line.words]
    assert words
    assert all(0.0 <= word.confidence <= 1.0 for word in words)
    assert not any(word.estimated for word in words)
    assert sum(word.confidence for word in words) / len(words) > 0.8
    for line in lines:
        assert " ".join(word.text for word in line.words) == line.text
        starts = [word.polygon.bounds.x for word in line.words]
        assert starts == sorted(starts)  # left to right


def test_words_are_where_the_text_is(run: Run) -> None:
    """The receipt's amounts are drawn right-aligned at x=280 (make_image.py)."""
    lines = run.readings["receipt.png"].result.lines
    amount = next(line for line in lines if line.text == "8.90")
    box = amount.polygon.bounds
    assert 275 <= box.x + box.width <= 285
    assert 137 <= box.y + box.height / 2 <= 153  # drawn centred on y=145
    title = lines[0].words
    assert [w.text for w in title] == ["CORNER", "GROCER"]
    assert title[0].polygon.bounds.x + title[0].polygon.bounds.width < title[1].polygon.bounds.x


def test_an_exif_rotated_copy_reads_the_same(run: Run) -> None:
    original = run.readings["columns.png"]
    assert run.exif_raw.size == (original.image.height, original.image.width)  # stored turned
    assert run.exif_result.text == original.result.text
    for turned, upright in zip(run.exif_result.lines, original.result.lines, strict=True):
        assert turned.polygon == upright.polygon
    # the engine path hands over an oriented image: the same again
    assert ImageOps.exif_transpose(run.exif_raw).size == original.image.size


def test_an_upside_down_page_reads_the_same(run: Run) -> None:
    """The direction classifier turns each line; the order follows the page's direction."""
    upright = run.readings["columns.png"]
    assert run.upside_down_result.text == upright.result.text
    width, height = upright.image.size
    for turned, line in zip(run.upside_down_result.lines, upright.result.lines, strict=True):
        first = turned.polygon[0]  # the text's own top-left: bottom-right on the page
        assert abs(first.x - (width - line.polygon[0].x)) <= 3
        assert abs(first.y - (height - line.polygon[0].y)) <= 3
        assert _signed_area(turned.polygon) > 0


def test_an_image_without_text_gives_no_blocks(run: Run) -> None:
    assert run.blank_result.blocks == []
    assert run.blank_result.text == ""


def test_no_network_is_touched(run: Run) -> None:
    """Model loading and reading, under a socket guard (the suite also runs --block-network)."""
    assert run.network_attempts == []
    assert len(run.readings) == len(GROUND_TRUTH)


# --- the detector's regions -------------------------------------------------------------


def test_detected_regions_are_the_lines_where_the_text_is(run: Run) -> None:
    """The detector alone finds every line, in reading order, around read's own polygon;
    with words the regions are read's lines exactly (receipt: 16 short lines)."""
    reading = run.readings["receipt.png"]
    lines = reading.result.lines
    regions = detect_text_regions(reading.image)
    assert len(regions) == len(lines)
    width, height = reading.image.size
    for region, line in zip(regions, lines, strict=True):
        assert region.words == []
        assert len(region.polygon) == 4 and _signed_area(region.polygon) > 0
        assert all(0 <= p.x <= width and 0 <= p.y <= height for p in region.polygon)
        outer, inner = region.polygon.bounds, line.polygon.bounds  # detector box pads the ink
        assert outer.x <= inner.x + 2 and outer.y <= inner.y + 2
        assert inner.x + inner.width <= outer.x + outer.width + 2
        assert inner.y + inner.height <= outer.y + outer.height + 2
    with_words = detect_text_regions(reading.image, words=True)
    assert [region.polygon for region in with_words] == [line.polygon for line in lines]
    assert [region.words for region in with_words] == [line.words for line in lines]
    assert detect_text_regions(Image.new("RGB", (320, 200), "white")) == []


# --- the engine object ------------------------------------------------------------------


def test_the_engine_is_created_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []

    class SlowEngine:
        def __init__(self) -> None:
            time.sleep(0.05)
            made.append(self)

    monkeypatch.setattr(local_read, "_engine", None)
    monkeypatch.setattr(local_read, "_Engine", SlowEngine)
    got: list[object] = []
    threads = [
        threading.Thread(target=lambda: got.append(local_read._get_engine())) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1
    assert all(engine is made[0] for engine in got)


def test_a_missing_ocr_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_read, "_engine", None)
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'viewfinder\[local\]'") as caught:
        read_text(Image.new("RGB", (64, 64), "white"))
    assert caught.value.name == "rapidocr"


def test_version_names_the_engine_and_settings() -> None:
    assert local_read.VERSION.startswith("rapidocr 3.")
    assert "side=960" in local_read.VERSION


def test_deep_and_transparent_images_are_converted() -> None:
    deep = Image.new("I;16", (4, 2), 65535)
    assert local_read._to_bgr(deep).tolist()[0][0] == [255, 255, 255]
    clear = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    assert local_read._to_bgr(clear).tolist()[0][0] == [255, 255, 255]  # onto white


# --- reading order without OCR ----------------------------------------------------------


def _quad(x: float, y: float, width: float, height: float = 20) -> list[tuple[float, float]]:
    return [(x, y), (x + width, y), (x + width, y + height), (x, y + height)]


def test_reading_order_reads_side_by_side_columns_one_after_the_other() -> None:
    heading = _quad(30, 10, 500)
    left = [_quad(30, 60 + 30 * i, 240) for i in range(3)]
    right = [_quad(320, 60 + 30 * i, 250) for i in range(3)]
    quads = [right[1], left[2], heading, right[0], left[0], right[2], left[1]]
    names = ["r1", "l2", "h", "r0", "l0", "r2", "l1"]
    assert [names[i] for i in reading_order(quads)] == ["h", "l0", "l1", "l2", "r0", "r1", "r2"]


def test_reading_order_reads_a_table_row_by_row() -> None:
    """A receipt's amounts are short cells, not a text column."""
    rows = [("Coffee beans 250g", "8.90"), ("Oat milk 1 L", "2.49"), ("Croissant x2", "3.60")]
    quads, names = [], []
    for index, (item, amount) in enumerate(rows):
        quads += [_quad(280, 100 + 30 * index, 40, 15), _quad(20, 101 + 30 * index, 125, 15)]
        names += [amount, item]
    ordered = [names[i] for i in reading_order(quads)]
    assert ordered == [text for row in rows for text in row]


def test_reading_order_follows_tilted_lines() -> None:
    """Lines tilted by 6 degrees overlap vertically; levelled first, they read in order."""
    import math

    slope = math.tan(math.radians(-6))
    quads = []
    for index in range(4):
        x0, y0, x1 = 20.0, 60.0 + 28 * index, 520.0
        y1 = y0 + (x1 - x0) * slope
        quads.append([(x0, y0), (x1, y1), (x1, y1 + 20), (x0, y0 + 20)])
    assert reading_order(list(reversed(quads))) == [3, 2, 1, 0]


def test_reading_order_of_an_upside_down_page_follows_the_text() -> None:
    heading = _quad(30, 10, 500)
    left = [_quad(30, 60 + 30 * i, 240) for i in range(3)]
    right = [_quad(320, 60 + 30 * i, 250) for i in range(3)]
    upright = [heading, *left, *right]
    turned = [[(600 - x, 200 - y) for x, y in quad] for quad in upright]
    assert reading_order(turned[::-1]) == list(range(len(turned)))[::-1]


def test_pieces_of_one_line_are_joined_but_table_cells_are_not() -> None:
    def line(text: str, x: float, width: float, y: float = 50) -> Any:
        quad = _quad(x, y, width, 20)
        words = [local_read._Word(text, quad, 0.9)]
        return local_read._Line(quad, text, 0.9, upright=True, words=words)

    merged = local_read._merge_pieces(
        [line("wide gap", 110, 80), line("A line with a", 10, 90), line("8.90", 400, 40)]
    )
    assert [piece.text for piece in merged] == ["A line with a wide gap", "8.90"]
    assert merged[0].frame == [(10, 50), (190, 50), (190, 70), (10, 70)]
    assert [word.text for word in merged[0].words] == ["A line with a", "wide gap"]


def test_reading_order_of_nothing_is_empty() -> None:
    assert reading_order([]) == []
