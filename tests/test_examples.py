"""The three scenarios in `examples/`, replayed from cassettes.

The cassettes in `cassettes/test_examples/` were recorded against
`viewfinder.testing.simulator`, a scripted OpenAI-compatible server these tests start on
127.0.0.1. Every answer in them is one scripted below, written by hand to be
plausible for the example's image; none comes from a model (see `cassettes/README.md`).
What the replay proves is viewfinder's side and the examples' own code: the prompts
and schemas sent, the re-asks the schemas' validators cause, the pixel boxes, the
derived checks, and what each `run.py` prints.

Record: `pytest tests/test_examples.py --record-mode=once`; replay: `pytest`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `examples` is not installed: import it from the checkout
    sys.path.insert(0, str(ROOT))

import viewfinder as vf  # noqa: E402
from examples.alt_text import run as alt_text_run  # noqa: E402
from examples.alt_text.schema import AltText, problems  # noqa: E402
from examples.receipt import run as receipt_run  # noqa: E402
from examples.receipt.schema import LineItem, Receipt  # noqa: E402
from examples.shelf_audit import run as shelf_run  # noqa: E402
from examples.shelf_audit.schema import Product, Shelf, ShelfRow  # noqa: E402
from viewfinder.testing.simulator import Simulator  # noqa: E402

pytestmark = pytest.mark.vcr

EXAMPLES = ROOT / "examples"
MODEL = "gpt-4.1-mini"
MODE = "json_schema"  # what OpenAI and Azure get by default; set so the env cannot change it
Box = vf.BoundingBox


def _options(sim: Simulator) -> list[str]:
    """`run.py` options that point it at the simulator with a fixed model and mode."""
    return ["--base-url", sim.base_url, "--model", MODEL, "--mode", MODE]


def _printed(out: str) -> tuple[Any, list[str]]:
    """Split what a `run.py` printed into its JSON document and the check lines after it."""
    document, end = json.JSONDecoder().raw_decode(out)
    return document, out[end:].strip().splitlines()


def _sent(vcr: Any, index: int) -> dict[str, Any]:
    """The body of the `index`-th request of the cassette (recorded or replayed)."""
    body = vcr.requests[index].body
    result: dict[str, Any] = json.loads(body)
    return result


def _texts(body: dict[str, Any]) -> list[str]:
    """Every text of a chat request, message by message (system, user, re-asks)."""
    texts: list[str] = []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.extend(part["text"] for part in content if part.get("type") == "text")
    return texts


# --- shelf_audit ------------------------------------------------------------------------

SHELF_IMAGE = EXAMPLES / "shelf_audit" / "shelf.png"  # 600x400
SHELF_ANSWER: dict[str, Any] = {
    "rows": [
        {
            "index": 1,
            "products": [
                {"name": "COLA", "box": [48, 122, 485, 302], "facings": 3},
                {"name": "LIME", "box": [498, 124, 785, 300], "facings": 2},
            ],
            "empty_slots": [[800, 125, 933, 300]],
        },
        {
            "index": 2,
            "products": [
                {"name": "CHIPS", "box": [50, 400, 333, 600], "facings": 2},
                {"name": "SOAP", "box": [500, 398, 935, 602], "facings": 3},
            ],
            "empty_slots": [[350, 400, 483, 600]],
        },
        {
            "index": 3,
            "products": [
                {"name": "MILK", "box": [50, 688, 633, 900], "facings": 4},
                {"name": "JAM", "box": [650, 688, 933, 900], "facings": 2},
            ],
            "empty_slots": [],
        },
    ]
}
"""Scripted, not a model's: close to what `make_image.py` drew, a few grid units off."""

# Pixels of the 600x400 image: x = round(g * 600 / 1000), y = round(g * 400 / 1000),
# width = round(x_max * 600 / 1000) - x. COLA [48, 122, 485, 302]: x = round(28.8) = 29,
# y = round(48.8) = 49, width = round(291.0) - 29 = 262, height = round(120.8) - 49 = 72.
SHELF_PIXELS: list[tuple[list[tuple[str, Box, int]], list[Box]]] = [
    (
        [
            ("COLA", Box(x=29, y=49, width=262, height=72), 3),
            ("LIME", Box(x=299, y=50, width=172, height=70), 2),  # 298.8, 49.6, 471.0, 120.0
        ],
        [Box(x=480, y=50, width=80, height=70)],  # 480.0, 50.0, 559.8, 120.0
    ),
    (
        [
            ("CHIPS", Box(x=30, y=160, width=170, height=80), 2),  # 30.0, 160.0, 199.8, 240.0
            ("SOAP", Box(x=300, y=159, width=261, height=82), 3),  # 300.0, 159.2, 561.0, 240.8
        ],
        [Box(x=210, y=160, width=80, height=80)],  # 210.0, 160.0, 289.8, 240.0
    ),
    (
        [
            ("MILK", Box(x=30, y=275, width=350, height=85), 4),  # 30.0, 275.2, 379.8, 360.0
            ("JAM", Box(x=390, y=275, width=170, height=85), 2),  # 390.0, 275.2, 559.8, 360.0
        ],
        [],
    ),
]


def test_shelf_audit_boxes_in_pixels_and_restock(
    viewfinder_analyzer: Callable[..., Any], sim: Simulator, vcr: Any
) -> None:
    sim.script(SHELF_ANSWER)
    audit = viewfinder_analyzer(
        schema=Shelf,
        prompt=EXAMPLES / "shelf_audit" / "prompt.j2",
        base_url=sim.base_url,
        model=MODEL,
        mode=MODE,
    )
    run = audit.analyze_detailed(SHELF_IMAGE, store="Main Street")
    shelf = run.output
    assert isinstance(shelf, Shelf) and run.metadata == vf.ImageMetadata(width=600, height=400)
    assert [row.index for row in shelf.rows] == [1, 2, 3]
    for row, (products, gaps) in zip(shelf.rows, SHELF_PIXELS, strict=True):
        assert isinstance(row, ShelfRow) and all(isinstance(p, Product) for p in row.products)
        assert [(p.name, p.box, p.facings) for p in row.products] == products
        assert row.empty_slots == gaps
    assert shelf.count_by_name() == {
        "MILK": 4,
        "COLA": 3,
        "SOAP": 3,
        "LIME": 2,
        "CHIPS": 2,
        "JAM": 2,
    }
    assert shelf.empty_slot_count == 2 and shelf.needs_restock
    assert run.usage.requests == 1 and run.usage.reasks == 0
    assert "store shelf in Main Street" in _texts(_sent(vcr, 0))[1]  # the template variable
    assert vcr.play_count + len(sim.requests) == 1  # replayed or recorded: one request


def test_shelf_audit_run_py_prints_json_and_checks(
    sim: Simulator, vcr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.script(SHELF_ANSWER)
    code = shelf_run.main([str(SHELF_IMAGE), *_options(sim)])
    out, err = capsys.readouterr()
    assert code == 0, err
    document, checks = _printed(out)
    assert document["rows"][0]["products"][0] == {
        "name": "COLA",
        "box": {"x": 29, "y": 49, "width": 262, "height": 72},
        "facings": 3,
    }
    assert document["rows"][1]["empty_slots"] == [{"x": 210, "y": 160, "width": 80, "height": 80}]
    assert checks == [
        "facings: MILK x4, COLA x3, SOAP x3, LIME x2, CHIPS x2, JAM x2",
        "empty slots: 2",
        "needs restock: yes",
        "requests: 1 (re-asks: 0)",
    ]
    assert vcr.play_count + len(sim.requests) == 1


def test_shelf_without_gaps_needs_no_restock() -> None:
    full = Shelf(
        rows=[
            ShelfRow(
                index=1,
                products=[Product(name="COLA", box=Box(x=0, y=0, width=10, height=10), facings=2)],
            )
        ]
    )
    assert full.empty_slot_count == 0 and not full.needs_restock
    assert full.count_by_name() == {"COLA": 2}


# --- receipt ----------------------------------------------------------------------------

RECEIPT_IMAGE = EXAMPLES / "receipt" / "receipt.png"  # 300x420
RECEIPT_ANSWER: dict[str, Any] = {
    "merchant": "CORNER GROCER",
    "date": "2025-03-14",
    "currency": "EUR",
    "items": [
        {"description": "Coffee beans 250g", "amount": 8.90},
        {"description": "Oat milk 1 L", "amount": 2.49},
        {"description": "Croissant x2", "amount": 3.60},
        {"description": "Dark chocolate", "amount": 2.75},
    ],
    "total": 17.74,
}
"""Scripted, not a model's: what the receipt drawn by `make_image.py` says."""
RECEIPT_MISSED_LINE: dict[str, Any] = {
    **RECEIPT_ANSWER,
    "items": [item for item in RECEIPT_ANSWER["items"] if item["description"] != "Oat milk 1 L"],
}
"""A scripted first answer that skips a line: its items add up to 15.25, not 17.74."""
VALIDATOR_ERROR = (
    "total 17.74 differs from the sum of the items (15.25); check for a missed or misread line"
)


def test_receipt_total_mismatch_is_reasked_and_fixed(
    viewfinder_analyzer: Callable[..., Any], sim: Simulator, vcr: Any
) -> None:
    sim.script(RECEIPT_MISSED_LINE, RECEIPT_ANSWER)
    reader = viewfinder_analyzer(
        schema=Receipt,
        prompt=EXAMPLES / "receipt" / "prompt.j2",
        base_url=sim.base_url,
        model=MODEL,
        mode=MODE,
    )
    run = reader.analyze_detailed(RECEIPT_IMAGE)
    receipt = run.output
    assert run.usage.reasks == 1 and run.usage.requests == 2
    assert isinstance(receipt, Receipt)
    assert receipt.merchant == "CORNER GROCER" and receipt.currency == "EUR"
    assert receipt.date.isoformat() == "2025-03-14"
    assert receipt.items == [
        LineItem(description="Coffee beans 250g", amount=Decimal("8.90")),
        LineItem(description="Oat milk 1 L", amount=Decimal("2.49")),
        LineItem(description="Croissant x2", amount=Decimal("3.60")),
        LineItem(description="Dark chocolate", amount=Decimal("2.75")),
    ]
    assert receipt.total == receipt.items_total == Decimal("17.74")
    assert str(receipt.items[0].amount) == "8.90"  # two decimals kept
    # the re-ask (second request) carries the first answer and the validator's message
    first, reask = _sent(vcr, 0), _sent(vcr, 1)
    assert len(reask["messages"]) == len(first["messages"]) + 2
    assert reask["messages"][-2]["role"] == "assistant"
    assert '"Croissant x2"' in reask["messages"][-2]["content"]
    assert VALIDATOR_ERROR in reask["messages"][-1]["content"]
    assert not any(VALIDATOR_ERROR in text for text in _texts(first))
    assert vcr.play_count + len(sim.requests) == 2  # replayed or recorded: two requests


def test_receipt_run_py_prints_the_corrected_receipt(
    sim: Simulator, vcr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.script(RECEIPT_MISSED_LINE, RECEIPT_ANSWER)
    code = receipt_run.main([str(RECEIPT_IMAGE), *_options(sim)])
    out, err = capsys.readouterr()
    assert code == 0, err
    document, checks = _printed(out)
    assert document == {
        "merchant": "CORNER GROCER",
        "date": "2025-03-14",
        "currency": "EUR",
        "items": [
            {"description": "Coffee beans 250g", "amount": "8.90"},
            {"description": "Oat milk 1 L", "amount": "2.49"},
            {"description": "Croissant x2", "amount": "3.60"},
            {"description": "Dark chocolate", "amount": "2.75"},
        ],
        "total": "17.74",
    }
    assert checks == [
        "items: 4, sum 17.74 EUR",
        "total: 17.74 EUR (matches the items)",
        "requests: 2 (re-asks: 1)",
    ]
    assert vcr.play_count + len(sim.requests) == 2


def test_receipt_run_py_exits_1_when_the_reasks_run_out(
    sim: Simulator, vcr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.script(RECEIPT_MISSED_LINE)
    code = receipt_run.main([str(RECEIPT_IMAGE), "--max-reasks", "0", "--no-cache", *_options(sim)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("error: ") and VALIDATOR_ERROR in err
    assert vcr.play_count + len(sim.requests) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"date": "2024-02-30"}, "day value is outside expected range"),
        ({"date": "2999-01-01"}, "is in the future"),
        ({"date": "1998-06-01"}, "is before 2000"),
        ({"currency": "dollars"}, "String should match pattern '^[A-Z]{3}$'"),
        ({"total": 17.7}, "differs from the sum of the items (17.74)"),
        ({"items": [{"description": "Tea", "amount": 1.999}], "total": 2}, "2 decimal places"),
        ({"items": [{"description": "Refund", "amount": -1.00}], "total": 0}, "greater than 0"),
    ],
)
def test_receipt_validators_reject_bad_answers(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="validation error") as caught:
        Receipt.model_validate({**RECEIPT_ANSWER, **change})
    assert message in str(caught.value)


# --- alt_text ---------------------------------------------------------------------------

ALT_IMAGE = EXAMPLES / "alt_text" / "rocket.jpg"  # 640x427
ALT_TOO_LONG = (
    "Une grande fusée blanche est debout sur son pas de tir le soir, sous un ciel bleu "
    "foncé, entre quatre hautes tours en métal et des lampes qui brillent fort."
)
ALT_ANSWER: dict[str, Any] = {
    "alt": "Une fusée blanche attend le départ, le soir, entre de hautes tours en métal.",
    "long_description": (
        "Une grande fusée blanche est debout au milieu de l'image. Elle attend de partir "
        "dans l'espace. Le ciel est bleu foncé : c'est le soir. Autour de la fusée, il y a "
        "quatre hautes tours faites de barres de métal croisées. En bas, des lampes très "
        "fortes brillent comme des étoiles. En haut de la fusée, on voit un petit dessin "
        "rond, trop petit pour être lu."
    ),
    "language": "fr",
    "reading_level": "simple",
    "contains_text": False,
}
"""Scripted, not a model's: written in simple French for the rocket on its pad at dusk."""


def test_alt_text_too_long_is_reasked_in_french(
    viewfinder_analyzer: Callable[..., Any], sim: Simulator, vcr: Any
) -> None:
    assert len(ALT_TOO_LONG) > 125
    sim.script({**ALT_ANSWER, "alt": ALT_TOO_LONG}, ALT_ANSWER)
    writer = viewfinder_analyzer(
        schema=AltText,
        prompt=EXAMPLES / "alt_text" / "prompt.j2",
        base_url=sim.base_url,
        model=MODEL,
        mode=MODE,
    )
    run = writer.analyze_detailed(ALT_IMAGE, language="fr", reading_level="simple")
    answer = run.output
    assert isinstance(answer, AltText) and answer.model_dump() == ALT_ANSWER
    assert len(answer.alt) <= 125 and problems(answer, "fr", "simple") == []
    assert run.usage.reasks == 1 and run.usage.requests == 2
    assert run.metadata == vf.ImageMetadata(width=640, height=427)
    # `language` fills both viewfinder's system prompt and the example's prompt
    system, user = _texts(_sent(vcr, 0))
    assert 'in the language with code "fr"' in system
    assert 'write `alt` and `long_description` in the language with code "fr"' in user
    assert 'Reading level: "simple"' in user and "short, everyday words" in user
    assert "precise technical names" not in user
    reask = _sent(vcr, 1)["messages"][-1]["content"]
    assert "alt\n  String should have at most 125 characters" in reask
    assert vcr.play_count + len(sim.requests) == 2


def test_alt_text_run_py_passes_language_and_level(
    sim: Simulator, vcr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.script(ALT_ANSWER)
    argv = [str(ALT_IMAGE), "--language", "fr", "--reading-level", "simple", *_options(sim)]
    code = alt_text_run.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    document, checks = _printed(out)
    assert document == ALT_ANSWER
    assert checks == [
        f"alt text: {len(ALT_ANSWER['alt'])}/125 characters",
        "review: ok",
        "requests: 1 (re-asks: 0)",
    ]
    system, user = _texts(_sent(vcr, 0))
    assert '"fr"' in system and 'Reading level: "simple"' in user
    assert vcr.play_count + len(sim.requests) == 1


def test_alt_text_review_flags_a_mismatch() -> None:
    answer = AltText.model_validate(
        {**ALT_ANSWER, "alt": "Image of a rocket.", "language": "en", "reading_level": "expert"}
    )
    assert problems(answer, "fr", "simple") == [
        "language is 'en', 'fr' was asked for",
        "reading level is 'expert', 'simple' was asked for",
        "alt text opens with a redundant 'image of'",
    ]
