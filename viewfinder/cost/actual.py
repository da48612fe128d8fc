"""What a run really cost, from its records, beside what the estimate predicts.

`viewfinder cost --from results.jsonl` reads a `viewfinder batch` output: every line is
what one attempt at one image spent (a resumed run appends a line per retry, and each was
billed). This module adds those lines up (`run_cost`) and sets them beside the offline
estimate of the same images (`compare`), so a user can check the estimate against their
bill. It is pure: the command line reads the file (through `viewfinder.batch.records`,
which this part may not import) and makes the estimates.

Dollars are repriced from the recorded usage with today's price table
(`viewfinder.cost.pricing`, `VIEWFINDER_PRICES` overrides it): cached input tokens at the
cached price, Batch API answers at the Batch API price. The dollars the run itself wrote
(`"cost"`) are summed beside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from viewfinder.analyzers.features import ALL_FEATURES, Feature
from viewfinder.cost.estimate import Estimate
from viewfinder.cost.pricing import load_prices
from viewfinder.schemas.result import Usage

__all__ = [
    "ImageCheck",
    "RecordedResult",
    "RunCheck",
    "RunCost",
    "RunLine",
    "compare",
    "run_cost",
    "run_model",
]


class RecordedResult(BaseModel):
    """The little of a recorded `"result"` that pricing needs: its model and features.

    Every other key is kept unvalidated, so results written by any version (or by an
    `Analyzer` with your own schema) read alike.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    model_version: str = ""
    """`<model>+<hash>`, `local+<hash>` for the local engine; empty when absent."""

    @property
    def model(self) -> str | None:
        """The model named in `model_version`; None when it names none."""
        name = self.model_version.split("+", 1)[0].strip()
        return name or None

    @property
    def features(self) -> tuple[Feature, ...]:
        """The Image Analysis features present (requested) in the result, in order."""
        extra = self.model_extra or {}
        return tuple(f for f in ALL_FEATURES if extra.get(f.value) is not None)


@dataclass(frozen=True)
class RunLine:
    """One record of a run: who it is, what it spent, how it was billed.

    Attributes:
        id: The image's id in the run.
        source: The printable input (a path, a URL, `<bytes>`...).
        ok: Whether the image was analysed on this line.
        usage: Tokens and requests the line spent (failed attempts included).
        batch_priced: True when billed at Batch API prices.
        recorded_cost: Dollars the run wrote for the line; None if it wrote none.
        model: The model of its result (None for an error line).
        features: The features of its result (empty for an error line).
    """

    id: str
    source: str
    ok: bool
    usage: Usage
    batch_priced: bool = False
    recorded_cost: float | None = None
    model: str | None = None
    features: tuple[Feature, ...] = ()


class RunCost(BaseModel):
    """A run's real spend, added up over every line of its output.

    Dollars are `None` when a line that spent tokens has no price (a partial sum would
    look like a total).
    """

    model_config = ConfigDict(frozen=True)

    lines: int
    """Records read (a retried image has several)."""
    images: int
    """Distinct image ids."""
    ok: int
    """Images whose latest line is "ok"."""
    failed: int
    """Images whose latest line is an error."""
    cache_hits: int
    """Lines answered from viewfinder's own cache (no request, nothing billed)."""
    batch_priced_lines: int
    """Lines billed at Batch API prices."""
    models: tuple[str, ...]
    """Models the lines were priced with, in first-seen order."""
    features: tuple[Feature, ...]
    """Features found in the results (the run's request)."""
    input_tokens: int
    """Input tokens billed, cached ones included."""
    cached_input_tokens: int
    """Input tokens the provider served from its prompt cache (billed at the cached price)."""
    uncached_input_tokens: int
    """Input tokens billed at the full input price."""
    output_tokens: int
    requests: int
    reasks: int
    cost_usd: float | None
    """Dollars at today's price table: cached input at the cached price."""
    cost_without_prompt_cache_usd: float | None
    """The same usage with every input token at the full input price."""
    recorded_cost_usd: float | None
    """Dollars the run itself wrote, summed; None when some line wrote none."""
    cost_per_1000_images_usd: float | None
    """`cost_usd` per 1,000 distinct images."""


def _price_line(line: RunLine, model: str | None) -> tuple[float | None, float | None]:
    """Dollars of `line` on `model`: as billed, and with no prompt-cache discount."""
    table = load_prices()
    price = None if model is None else table.price_for(model)
    if price is None:
        return (None, None) if line.usage.total_tokens else (0.0, 0.0)
    uncached = line.usage.model_copy(update={"cached_input_tokens": 0})
    return (
        table.cost(price, line.usage, batch=line.batch_priced),
        table.cost(price, uncached, batch=line.batch_priced),
    )


def _add(total: float | None, value: float | None) -> float | None:
    return None if total is None or value is None else total + value


def run_model(lines: Sequence[RunLine], model: str | None = None) -> str | None:
    """The model to price the run with: `model`, else the one most of its results name."""
    if model:
        return model
    counts: dict[str, int] = {}
    for line in lines:
        if line.model:
            counts[line.model] = counts.get(line.model, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None


def run_cost(lines: Sequence[RunLine], *, model: str | None = None) -> RunCost:
    """Add up what every line of a run spent, repriced with today's price table.

    Args:
        lines: The run's records, in file order (the latest line of an id wins its status).
        model: Price every line as this model (e.g. the model behind an Azure deployment
            name); default: each result's own model, error lines the run's main model.

    Returns:
        The totals.
    """
    main = run_model(lines, model)
    usage = Usage()
    cost: float | None = 0.0
    list_cost: float | None = 0.0
    recorded: float | None = 0.0
    latest: dict[str, bool] = {}
    models: dict[str, None] = {}
    features: dict[Feature, None] = {}
    for line in lines:
        priced_as = model or line.model or main
        if priced_as and line.usage.total_tokens:
            models[priced_as] = None
        billed, at_list = _price_line(line, priced_as)
        cost, list_cost = _add(cost, billed), _add(list_cost, at_list)
        recorded = _add(recorded, line.recorded_cost)
        usage = usage + line.usage
        latest[line.id] = line.ok
        features.update(dict.fromkeys(line.features))
    images = len(latest)
    return RunCost(
        lines=len(lines),
        images=images,
        ok=sum(latest.values()),
        failed=images - sum(latest.values()),
        cache_hits=sum(line.usage.cache_hit for line in lines),
        batch_priced_lines=sum(line.batch_priced for line in lines),
        models=tuple(models),
        features=tuple(f for f in ALL_FEATURES if f in features),
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        uncached_input_tokens=max(usage.input_tokens - usage.cached_input_tokens, 0),
        output_tokens=usage.output_tokens,
        requests=usage.requests,
        reasks=usage.reasks,
        cost_usd=cost,
        cost_without_prompt_cache_usd=list_cost,
        recorded_cost_usd=recorded,
        cost_per_1000_images_usd=None if cost is None or not images else cost / images * 1000,
    )


class ImageCheck(BaseModel):
    """One image of the run: what it spent over all its lines, and what was predicted."""

    model_config = ConfigDict(frozen=True)

    id: str
    source: str
    batch_priced: bool
    """Its latest line was billed at Batch API prices (so is the prediction)."""
    actual: RunCost
    """What its lines spent."""
    estimate: Estimate | None
    """The offline estimate of one request for it; None when it was not estimated."""
    predicted_cost_usd: float | None
    """The estimate's dollars at the price the image was billed at (list or Batch API),
    with no prompt-cache hit."""
    predicted_best_cost_usd: float | None = None
    """The same in the best case: the prefix before the image served from the prompt cache."""
    not_estimated: str | None = None
    """Why there is no estimate, or why the image is left out of the comparison."""


class RunCheck(BaseModel):
    """The estimate beside the bill, over the images compared (both sides the same images).

    Only images that sent a request and were estimated are compared: an answer from
    viewfinder's cache cost nothing, and an image that could not be read has no estimate.
    """

    model_config = ConfigDict(frozen=True)

    compared: int
    """Images in the comparison."""
    predicted_input_tokens: int | None
    predicted_output_tokens: int
    predicted_cost_usd: float | None
    """One request per image, every input token at the list price (no prompt cache)."""
    predicted_best_cost_usd: float | None = None
    """One request per image, the cacheable prefix at the cached price (the best case)."""
    actual: RunCost
    """What the same images spent (every line of each, re-asks and retries included)."""
    ratio: float | None
    """`actual.cost_usd / predicted_cost_usd`; None when either is unknown or zero."""


def _checks(
    lines: Sequence[RunLine],
    estimates: Mapping[str, Estimate | str],
    model: str | None,
) -> list[ImageCheck]:
    by_id: dict[str, list[RunLine]] = {}
    for line in lines:
        by_id.setdefault(line.id, []).append(line)
    checks: list[ImageCheck] = []
    main = run_model(lines, model)
    for image_id, own in by_id.items():
        last = own[-1]
        actual = run_cost(own, model=model or main)
        outcome = estimates.get(image_id, "not estimated")
        estimate = outcome if isinstance(outcome, Estimate) else None
        reason = None if estimate is not None else str(outcome)
        if estimate is not None and actual.requests == 0:
            reason = "no request sent (answered from viewfinder's cache or failed before)"
        predicted = best = None
        if estimate is not None:
            predicted = estimate.batch_cost_usd if last.batch_priced else estimate.cost_usd
            best = estimate.batch_cached_cost_usd if last.batch_priced else estimate.cached_cost_usd
        checks.append(
            ImageCheck(
                id=image_id,
                source=last.source,
                batch_priced=last.batch_priced,
                actual=actual,
                estimate=estimate,
                predicted_cost_usd=predicted,
                predicted_best_cost_usd=best,
                not_estimated=reason,
            )
        )
    return checks


def compare(
    lines: Sequence[RunLine],
    estimates: Mapping[str, Estimate | str],
    *,
    model: str | None = None,
) -> tuple[list[ImageCheck], RunCheck]:
    """Set the estimate of each image beside what its lines spent.

    Args:
        lines: The run's records, in file order.
        estimates: By image id, its estimate, or why it has none (e.g. "not a readable
            file").
        model: As for `run_cost`.

    Returns:
        One check per distinct image (first-seen order), and the totals over the images
        compared.
    """
    checks = _checks(lines, estimates, model)
    compared = [c for c in checks if c.not_estimated is None]
    chosen = {c.id for c in compared}
    actual = run_cost([line for line in lines if line.id in chosen], model=run_model(lines, model))
    predicted_input: int | None = 0
    predicted_cost: float | None = 0.0
    predicted_best: float | None = 0.0
    predicted_output = 0
    for check in compared:
        estimate = check.estimate
        if estimate is None:  # pragma: no cover - filtered above
            continue
        tokens = estimate.input_tokens
        predicted_input = (
            None if predicted_input is None or tokens is None else predicted_input + tokens
        )
        predicted_output += estimate.output_tokens
        predicted_cost = _add(predicted_cost, check.predicted_cost_usd)
        predicted_best = _add(predicted_best, check.predicted_best_cost_usd)
    ratio = None
    if predicted_cost and actual.cost_usd is not None:
        ratio = actual.cost_usd / predicted_cost
    return checks, RunCheck(
        compared=len(compared),
        predicted_input_tokens=predicted_input,
        predicted_output_tokens=predicted_output,
        predicted_cost_usd=predicted_cost,
        predicted_best_cost_usd=predicted_best,
        actual=actual,
        ratio=ratio,
    )
