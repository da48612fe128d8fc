"""What tokens cost: a price table (a data file users can override), then genai-prices.

Prices live in `viewfinder/data/prices.json` (USD per million tokens: input, cached
input, output, and the Batch API discount). Set `VIEWFINDER_PRICES` to a JSON file of the
same shape, or call `load_prices(path)`, to use your own (negotiated, regional, or newer)
instead. The table is the override: a model it lacks is priced from genai-prices (the
pydantic team's price data, kept current with each release), OpenAI's models only (the
models viewfinder's providers, OpenAI and Azure OpenAI, serve; a self-hosted model on an
OpenAI-compatible server has no list price), with its own Batch API rates, as the data
bundled in the installed package: nothing is fetched, unless the user starts
`genai_prices.UpdatePrices()` themselves. Long-context tiers (from 272K input tokens) are
not applied: the base rate is taken, as a request for one image is far below them. A table
with `"genai_prices": false` turns this off. A model neither knows has no price: costs are
then `None`, never a guess.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from viewfinder.errors import ConfigurationError
from viewfinder.schemas.result import Usage

if TYPE_CHECKING:
    from genai_prices.types import TieredPrices

__all__ = ["ModelPrice", "PriceTable", "cost_of", "genai_price", "load_prices", "price_for"]


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens for one model."""

    input: float
    cached_input: float
    output: float
    batch: ModelPrice | None = None
    """The Batch API's own rates, where the source states them (genai-prices); else the
    table's `batch_discount` applies to these."""

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
    genai_prices: bool = True
    """Whether a model missing from `models` is priced from genai-prices' bundled data."""

    def price_for(self, model: str) -> ModelPrice | None:
        """The price of `model`; dated snapshots (`gpt-4o-2024-08-06`) use their family's.

        The table first; a model it lacks from genai-prices (OpenAI's models), if allowed.
        """
        name = model.lower().rsplit("/", 1)[-1]
        if name in self.models:
            return self.models[name]
        base = re.sub(r"-\d{4}-\d{2}-\d{2}$", "", name)
        if base in self.models:
            return self.models[base]
        return genai_price(name) if self.genai_prices else None

    def cost(self, price: ModelPrice, usage: Usage, *, batch: bool = False) -> float:
        """Dollars for `usage` at `price`; `batch`: at the Batch API's rates (the price's
        own, else the table's discount)."""
        if batch and price.batch is not None:
            return price.batch.cost(usage)
        return price.cost(usage, batch_discount=self.batch_discount if batch else 1.0)


def _rate(value: Decimal | TieredPrices | None) -> float | None:
    """A genai-prices rate as USD per million tokens: a tiered one's base rate."""
    if value is None:
        return None
    return float(value if isinstance(value, Decimal) else value.base)


def genai_price(model: str, day: date | None = None) -> ModelPrice | None:
    """genai-prices' price of OpenAI's `model` on `day` (today by default), the table aside.

    Args:
        model: A model name, as `PriceTable.price_for` takes it.
        day: The day whose prices apply (prices change on dates), UTC.

    Returns:
        The price, its Batch API rates in `batch`; `None` when genai-prices has none.
    """
    name = model.lower().rsplit("/", 1)[-1]
    if not name:
        return None
    # Imported here, not at the top: genai-prices loads httpx2 and 1.6 MB of price data,
    # which a run priced from the table alone never needs (tests/test_startup.py).
    from genai_prices.data_snapshot import get_snapshot

    # The snapshot's timestamp: prices a user's own `UpdatePrices` fetched are used at once.
    return _genai_price(name, day or datetime.now(UTC).date(), get_snapshot().timestamp)


@lru_cache(maxsize=256)
def _genai_price(name: str, day: date, snapshot: datetime) -> ModelPrice | None:
    """genai-prices' price on `day` for OpenAI's model `name`, or `None` if it has none.

    Kept per day and snapshot (a look-up takes about half a millisecond).
    """
    from genai_prices import Usage as GenaiUsage
    from genai_prices import calc_price

    rates: list[ModelPrice] = []
    for context in (None, {"processing": "batch"}):
        try:
            found = calc_price(
                GenaiUsage(),
                name,
                provider_id="openai",
                genai_request_timestamp=datetime.combine(day, time(12), UTC),
                price_context=context,
            )
        except LookupError:
            return None
        prices = found.model_price
        input_rate, output_rate = _rate(prices.input_mtok), _rate(prices.output_mtok)
        if input_rate is None or output_rate is None:
            return None  # audio, speech or moderation: not priced by tokens in and out
        cached = _rate(prices.cache_read_mtok)
        rates.append(ModelPrice(input_rate, input_rate if cached is None else cached, output_rate))
    standard, batch = rates
    return ModelPrice(standard.input, standard.cached_input, standard.output, batch=batch)


def _flag(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false, not {value!r}")
    return value


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
            genai_prices=_flag(data.get("genai_prices", True), "genai_prices"),
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
    return table.cost(price, usage, batch=batch)
