"""`read_geometry="detector"`: polygons from the local text detector, text from the model.

The model is FakeOpenAI answering scripted region texts (not a model's reading); the
detector is the real local one (the `local` extra) on the OCR test images.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from endpoint_env import clear_endpoint_env

import viewfinder as vf
from viewfinder.analyzers import image_analysis
from viewfinder.analyzers.read_regions import RegionsAnswer, list_regions, words_along
from viewfinder.build.conventions import CONVENTIONS, DEFAULT
from viewfinder.build.plan import SourceRef
from viewfinder.errors import ConfigurationError, InvalidOptionError
from viewfinder.schemas.geometry import Point, Polygon
from viewfinder.testing import compact_answer
from viewfinder.testing.fakes import FakeOpenAI

pytest.importorskip("rapidocr")

RECEIPT = Path(__file__).parent / "assets" / "ocr" / "receipt.png"


@pytest.fixture(scope="module")
def regions() -> list[Polygon]:
    """The receipt's line polygons, as the analyzer will find them."""
    from PIL import Image

    from viewfinder.local import locate_text_lines

    with Image.open(RECEIPT) as image:
        return [region.polygon for region in locate_text_lines(image)]


def _inside(word: Polygon, line: Polygon) -> bool:
    box, bounds = word.bounds, line.bounds
    return (
        bounds.x <= box.x
        and box.x + box.width <= bounds.x + bounds.width
        and bounds.y <= box.y
        and box.y + box.height <= bounds.y + bounds.height
    )


@pytest.mark.parametrize("answer_format", ["compact", "verbose"])
def test_lines_take_the_detector_s_polygons_and_the_answer_s_text_and_order(
    regions: list[Polygon], answer_format: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(regions) >= 3
    # Regions 2 and 1 swapped (the order is the answer's), region 3 left out (no text),
    # a region that does not exist (dropped, logged).
    answer = {
        "lines": [
            {"region": 2, "text": "second  line here"},
            {"region": 1, "text": "first"},
            {"region": len(regions) + 5, "text": "nowhere"},
        ]
    }
    fake = FakeOpenAI(answer)
    with (
        caplog.at_level(logging.WARNING, logger="viewfinder"),
        vf.ImageAnalyzer(
            **fake.clients(), cache=False, read_geometry="detector", answer_format=answer_format
        ) as analyzer,
    ):
        result = analyzer.analyze(RECEIPT, ["read"])
    assert result.read is not None
    lines = result.read.lines
    assert [line.text for line in lines] == ["second line here", "first"]
    assert [line.polygon for line in lines] == [regions[1], regions[0]]
    for line in lines:
        assert [w.text for w in line.words] == line.text.split()
        assert all(_inside(word.polygon, line.polygon) for word in line.words)
        assert all(word.estimated for word in line.words)
    assert f"named region {len(regions) + 5} of {len(regions)}" in caplog.text
    assert result.model_version == analyzer.model_version
    (body,) = fake.requests
    schema = body["response_format"]["json_schema"]["schema"]
    assert set(schema["$defs"]["RegionText"]["properties"]) == {"region", "text"}  # no boxes
    prompt = body["messages"][1]["content"][0]["text"]
    assert f"\n{len(regions)}: [" in prompt and f"\n{len(regions) + 1}: [" not in prompt


def test_other_features_go_in_the_usual_request(regions: list[Polygon]) -> None:
    fake = FakeOpenAI()
    fake.script(
        compact_answer({"caption": {"text": "a receipt", "confidence": 0.9}}),
        {"lines": [{"region": 1, "text": "CORNER GROCER"}]},
    )
    with vf.ImageAnalyzer(**fake.clients(), cache=False, read_geometry="detector") as analyzer:
        result = analyzer.analyze(RECEIPT, ["caption", "read"])
    assert len(fake.requests) == 2
    assert result.caption is not None and result.caption.text == "a receipt"
    assert result.read is not None
    assert [(line.text, line.polygon) for line in result.read.lines] == [
        ("CORNER GROCER", regions[0])
    ]
    assert result.model_version == analyzer.model_version
    assert result.usage.input_tokens > 0


def test_off_is_byte_identical_and_on_changes_the_version() -> None:
    fake = FakeOpenAI()
    stub = SourceRef(sha256="0" * 64, max_side=1024)
    with (
        vf.ImageAnalyzer(**fake.clients(), cache=False) as default,
        vf.ImageAnalyzer(**fake.clients(), cache=False, read_geometry="model") as off,
        vf.ImageAnalyzer(**fake.clients(), cache=False, read_geometry="detector") as on,
    ):
        assert off.model_version == default.model_version
        body = default.engine.request_body(default.plan(["read", "caption"]).build(stub))
        assert off.engine.request_body(off.plan(["read", "caption"]).build(stub)) == body
        assert on.model_version != default.model_version
        assert type(default.path()) is type(off.path())


def test_a_bad_choice_and_a_missing_extra_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeOpenAI()
    with pytest.raises(InvalidOptionError, match="read_geometry"):
        vf.ImageAnalyzer(**fake.clients(), read_geometry="boxes")  # type: ignore[arg-type]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "rapidocr" else real(name)
    )
    with pytest.raises(ConfigurationError, match=r"viewfinder\[local\]"):
        vf.ImageAnalyzer(**fake.clients(), read_geometry="detector")
    assert image_analysis  # the module whose check this is


def test_regions_are_listed_in_the_model_s_convention() -> None:
    square = Polygon(
        points=[Point(x=100, y=50), Point(x=300, y=50), Point(x=300, y=150), Point(x=100, y=150)]
    )
    assert list_regions([square], DEFAULT, (1000, 500), (1000, 500)) == "1: [100, 100, 300, 300]"
    gemini = CONVENTIONS["gemini"]  # y first, 0-1000
    assert list_regions([square], gemini, (1000, 500), (1000, 500)) == "1: [100, 100, 300, 300]"
    tall = list_regions([square], gemini, (1000, 1000), (500, 500))
    assert tall == "1: [50, 100, 150, 300]"


def test_words_follow_a_slanted_line_and_an_empty_answer_is_no_text() -> None:
    line = Polygon(
        points=[Point(x=0, y=0), Point(x=110, y=11), Point(x=108, y=31), Point(x=2, y=20)]
    )
    words = words_along("ab cd", line)
    assert [w.text for w in words] == ["ab", "cd"]
    assert words[0].polygon.points[0] == line.points[0]
    assert words[1].polygon.points[1] == line.points[1]
    assert words[1].polygon.points[0].y > 0  # on the slant
    assert RegionsAnswer(lines=[]).lines == []


def test_the_batch_api_refuses_detector_read(tmp_path: Path) -> None:
    from viewfinder.batch.provider_api import BatchJob

    fake = FakeOpenAI()
    with vf.ImageAnalyzer(**fake.clients(), cache=False, read_geometry="detector") as analyzer:
        BatchJob(analyzer, tmp_path / "caption", features=["caption"])  # no read: as before
        with pytest.raises(InvalidOptionError, match="Batch API"):
            BatchJob(analyzer, tmp_path / "read", features=["read"])


def test_the_command_line_reads_with_detector_geometry(
    regions: list[Polygon], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from viewfinder.cli import app
    from viewfinder.testing.simulator import Simulator

    clear_endpoint_env(monkeypatch)
    with Simulator() as sim:
        sim.script({"lines": [{"region": 1, "text": "CORNER GROCER"}]})
        args = ["analyze", str(RECEIPT), "-f", "read", "--read-geometry", "detector"]
        result = CliRunner().invoke(
            app, [*args, "--json", "--no-cache", "--base-url", sim.base_url]
        )
    assert result.exit_code == 0, result.output
    (line,) = json.loads(result.stdout)["result"]["read"]["blocks"][0]["lines"]
    assert line["text"] == "CORNER GROCER"
    assert line["polygon"] == regions[0].model_dump()


def test_aanalyze_takes_the_same_path(regions: list[Polygon]) -> None:
    import asyncio

    fake = FakeOpenAI({"lines": [{"region": 2, "text": "12 Rue Victor Hugo, Lyon"}]})
    with vf.ImageAnalyzer(**fake.clients(), cache=False, read_geometry="detector") as analyzer:
        result = asyncio.run(analyzer.aanalyze(RECEIPT, ["read"]))
    assert result.read is not None
    assert [line.polygon for line in result.read.lines] == [regions[1]]


def test_located_lines_are_ink_tight_where_read_and_the_detector_s_region_where_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The detector's regions are padded around the text; a line the recogniser reads
    takes read_text's tight polygon and word boxes instead, one it cannot keeps the
    region (a model may still read it)."""
    from PIL import Image

    from viewfinder.local import detect_text_regions, locate_text_lines, read
    from viewfinder.local.read import _read_lines

    with Image.open(RECEIPT) as opened:
        image = opened.copy()
    padded = [region.polygon for region in detect_text_regions(image, words=False)]
    tight = _read_lines(image)
    located = locate_text_lines(image)
    assert len(located) == len(padded) == len(tight)
    assert [region.polygon for region in located] == [line.polygon for line in tight]
    assert all(region.words for region in located)
    # tight is smaller than padded, and inside it
    assert all(
        t.bounds.width * t.bounds.height < p.bounds.width * p.bounds.height
        for t, p in zip([r.polygon for r in located], padded, strict=True)
    )

    unread = tight[1:]  # the recogniser reads every line but the first
    monkeypatch.setattr(read, "_lines_of", lambda raw, size: unread)
    located = locate_text_lines(image)
    assert located[0].polygon == padded[0] and not located[0].words
    assert [region.polygon for region in located[1:]] == [line.polygon for line in unread]


def test_words_keep_the_recogniser_s_boxes_when_the_answer_has_its_words() -> None:
    from viewfinder.analyzers.read_regions import RegionsAnswer, RegionText, read_from_regions
    from viewfinder.local.read import TextRegion
    from viewfinder.schemas.features import ReadWord
    from viewfinder.schemas.geometry import BoundingBox

    line = BoundingBox(x=10, y=10, width=200, height=20).to_polygon()
    words = [
        ReadWord(
            text="TOTAL",
            polygon=BoundingBox(x=12, y=11, width=60, height=18).to_polygon(),
            confidence=0.9,
        ),
        ReadWord(
            text="12.50",
            polygon=BoundingBox(x=150, y=11, width=55, height=18).to_polygon(),
            confidence=0.8,
        ),
    ]
    region = TextRegion(polygon=line, words=words)
    same = read_from_regions(
        RegionsAnswer(lines=[RegionText(region=1, text="TOTAL  12.50")]), [region]
    )
    assert same.lines[0].words == words  # the recogniser's boxes and confidences
    other = read_from_regions(
        RegionsAnswer(lines=[RegionText(region=1, text="TOTAL 12.60")]), [region]
    )
    assert [w.text for w in other.lines[0].words] == ["TOTAL", "12.60"]
    assert all(w.estimated for w in other.lines[0].words)  # placed along the line
