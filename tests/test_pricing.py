"""The price table and what usage costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import viewfinder as vf
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
    assert price_for("gpt-4.1-mini") is None
    table.write_text("{not json")
    with pytest.raises(vf.ConfigurationError, match="not JSON"):
        load_prices()
    table.write_text(json.dumps({"models": {"m": {"input": "cheap"}}}))
    with pytest.raises(vf.ConfigurationError):
        load_prices()
