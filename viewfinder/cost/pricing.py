"""What tokens cost: a per-model price table (a data file users can override).

Prices live in `viewfinder/data/prices.json` (USD per million tokens: input, cached
input, output, and the Batch API discount). Set `VIEWFINDER_PRICES` to a JSON file of the
same shape, or call `load_prices(path)`, to use your own (negotiated, regional, or newer).
A model missing from the table has no price: costs are then `None`, never a guess.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from viewfinder.errors import ConfigurationError
from viewfinder.schemas.result import Usage

__all__ = ["ModelPrice", "PriceTable", "cost_of", "load_prices", "price_for"]


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens for one model."""

    input: float
    cached_input: float
    output: float

    def cost(self, usage: Usage, *, batch_discount: float = 1.0) -> float:
        """Dollars for `usage` (cache hits cost nothing). `batch_discount` multiplies it."""
        if usage.cache_hit:
            return 0.0
        uncached = max(usage.input_tokens - usage.cached_input_tokens, 0)
        dollars = (
            uncached * self.input
            + usage.cached_input_tokens * self.cached_input
            + usage.output_tokens * self.output
        ) / 1_000_000
        return dollars * batch_discount


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name, and the Batch API discount."""

    models: dict[str, ModelPrice]
    batch_discount: float = 0.5
    source: str = ""

    def price_for(self, model: str) -> ModelPrice | None:
        """The price of `model`; dated snapshots (`gpt-4o-2024-08-06`) use their family's."""
        name = model.lower().rsplit("/", 1)[-1]
        if name in self.models:
            return self.models[name]
        base = re.sub(r"-\d{4}-\d{2}-\d{2}$", "", name)
        return self.models.get(base)


def _parse(data: dict[str, Any], origin: str) -> PriceTable:
    try:
        models = {
            name.lower(): ModelPrice(
                input=float(entry["input"]),
                cached_input=float(entry.get("cached_input", entry["input"])),
                output=float(entry["output"]),
            )
            for name, entry in data["models"].items()
        }
        return PriceTable(
            models=models,
            batch_discount=float(data.get("batch_discount", 0.5)),
            source=str(data.get("_source", origin)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigurationError(f"price table {origin} is not valid: {exc!r}") from exc


def load_prices(path: str | os.PathLike[str] | None = None) -> PriceTable:
    """The price table at `path`, else `VIEWFINDER_PRICES`, else the bundled one."""
    chosen = path or os.environ.get("VIEWFINDER_PRICES")
    if chosen:
        try:
            text = Path(chosen).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read price table {chosen}: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"price table {chosen} is not JSON: {exc}") from exc
        return _parse(data, str(chosen))
    return _bundled()


@cache
def _bundled() -> PriceTable:
    text = (resources.files("viewfinder") / "data" / "prices.json").read_text(encoding="utf-8")
    return _parse(json.loads(text), "viewfinder/data/prices.json")


def price_for(model: str) -> ModelPrice | None:
    """The price of `model` in the current table, or `None` when it has none."""
    return load_prices().price_for(model)


def cost_of(usage: Usage, model: str, *, batch: bool = False) -> float | None:
    """Dollars `usage` cost on `model` (`None` if the model has no price)."""
    table = load_prices()
    price = table.price_for(model)
    if price is None:
        return None
    return price.cost(usage, batch_discount=table.batch_discount if batch else 1.0)
