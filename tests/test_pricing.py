"""The price table and what usage costs."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import genai_prices
import pytest
from genai_prices.data_snapshot import get_snapshot

import viewfinder as vf
from viewfinder.cost import pricing
from viewfinder.cost.pricing import cost_of, load_prices, price_for


def test_bundled_table_prices_the_default_model() -> None:
    price = price_for("gpt-4.1-mini")
    assert price is not None and (price.input, price.cached_input, price.output) == (
        0.40,
        0.10,
        1.60,
    )
    assert price_for("gpt-4.1-mini-2025-04-14") == price  # dated snapshots use the family
    assert price_for("qwen2.5vl:7b") is None


def test_cost_counts_cached_input_at_its_own_price_and_cache_hits_free() -> None:
    usage = vf.Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000)
    # 600k x 0.40 + 400k x 0.10 + 100k x 1.60, per million
    assert cost_of(usage, "gpt-4.1-mini") == pytest.approx(0.24 + 0.04 + 0.16)
    assert cost_of(usage, "gpt-4.1-mini", batch=True) == pytest.approx(0.22)
    assert cost_of(vf.Usage(cache_hit=True), "gpt-4.1-mini") == 0.0
    assert cost_of(usage, "unknown-model") is None


def test_users_override_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"models": {"my-model": {"input": 1, "output": 2}}}))
    monkeypatch.setenv("VIEWFINDER_PRICES", str(table))
    assert cost_of(vf.Usage(input_tokens=1_000_000, output_tokens=1_000_000), "my-model") == 3.0
    # The user's table replaces ours; what it lacks genai-prices prices, unless turned off.
    assert price_for("gpt-4.1-mini") == pricing.genai_price("gpt-4.1-mini")
    table.write_text(json.dumps({"models": {}, "genai_prices": False}))
    assert price_for("gpt-4.1-mini") is None
    table.write_text("{not json")
    with pytest.raises(vf.ConfigurationError, match="not JSON"):
        load_prices()
    table.write_text(json.dumps({"models": {}, "genai_prices": "no"}))
    with pytest.raises(vf.ConfigurationError, match="genai_prices must be true or false"):
        load_prices()
    table.write_text(json.dumps({"models": {"m": {"input": "cheap"}}}))
    with pytest.raises(vf.ConfigurationError):
        load_prices()


USAGE = vf.Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000)


def _genai_dollars(model: str, *, batch: bool = False) -> float:
    """What genai-prices itself says `USAGE` costs on OpenAI's `model`."""
    usage = genai_prices.Usage(
        input_tokens=1_000_000, cache_read_tokens=400_000, output_tokens=100_000
    )
    context = {"processing": "batch"} if batch else None
    found = genai_prices.calc_price(usage, model, provider_id="openai", price_context=context)
    return float(found.total_price)


def test_a_model_the_table_lacks_costs_what_genai_prices_says() -> None:
    assert "gpt-5-nano" not in load_prices().models
    assert cost_of(USAGE, "gpt-5-nano") == pytest.approx(_genai_dollars("gpt-5-nano"))
    # Its own Batch API rates, cached input included (not the table's flat discount).
    assert cost_of(USAGE, "gpt-5-nano", batch=True) == pytest.approx(
        _genai_dollars("gpt-5-nano", batch=True)
    )
    assert cost_of(USAGE, "azure/gpt-5-nano-2025-08-07") == cost_of(USAGE, "gpt-5-nano")


def test_self_hosted_and_unpriced_models_stay_unpriced() -> None:
    # OpenAI's models only: a model on an OpenAI-compatible server has no list price.
    for model in ("qwen2.5vl:7b", "llama3.2-vision", "claude-sonnet-4-5", "whisper-1", ""):
        assert price_for(model) is None, model


def test_the_table_wins_over_genai_prices() -> None:
    # gpt-4o-2024-05-13 cost more than gpt-4o; the table's family rule keeps its price.
    assert price_for("gpt-4o-2024-05-13") == price_for("gpt-4o")
    assert price_for("gpt-4o") != pricing.genai_price("gpt-4o-2024-05-13")


def test_our_table_agrees_with_genai_prices_at_list_price() -> None:
    # On a fixed day, so a later genai-prices release cannot move it; the Batch API's
    # cached input is where they differ: the table halves it, genai-prices does not for
    # the gpt-4o and gpt-4.1 families (the CHANGELOG and the data README say so).
    table = load_prices()
    for model, ours in table.models.items():
        theirs = pricing.genai_price(model, date(2026, 11, 1))
        assert theirs is not None, model
        assert (ours.input, ours.cached_input, ours.output) == (
            theirs.input,
            theirs.cached_input,
            theirs.output,
        ), model


def test_genai_prices_data_is_the_bundled_one(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fetch(*args: object, **kwargs: object) -> None:
        raise AssertionError("viewfinder started genai-prices' price updates")

    monkeypatch.setattr(genai_prices.UpdatePrices, "start", no_fetch)
    monkeypatch.setattr(genai_prices.UpdatePrices, "__enter__", no_fetch)
    assert price_for("o4-mini") is not None  # network blocked in the tests as well
    assert get_snapshot().from_auto_update is False
