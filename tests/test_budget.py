"""Budgets: caps in tokens or dollars, per call and per batch, re-asks included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import viewfinder as vf
from viewfinder.testing.simulator import Reply, Simulator

BAD = {"caption": {"text": "a cat", "conf": 300}}
GOOD = {"caption": {"text": "a cat", "conf": 90}}


def test_budget_arithmetic() -> None:
    budget = vf.Budget(max_tokens=100)
    budget.check(expected_tokens=100)
    budget.charge(vf.Usage(input_tokens=60, output_tokens=30))
    budget.check()
    with pytest.raises(vf.BudgetExceededError, match="90 tokens spent") as caught:
        budget.check(expected_tokens=11)
    assert caught.value.usage == vf.Usage(input_tokens=60, output_tokens=30)
    dollars = vf.Budget(max_dollars=0.01, model="gpt-4.1-mini", scope="per batch")
    dollars.charge(vf.Usage(input_tokens=20_000))  # $0.008
    with pytest.raises(vf.BudgetExceededError, match=r"\$0\.01 per batch"):
        dollars.check(expected_tokens=10_000)
    with pytest.raises(vf.InvalidOptionError, match="needs a price"):
        vf.Budget(max_dollars=1, model="my-local-llava")


@pytest.mark.vcr
def test_a_per_call_cap_stops_the_reask(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script(Reply(BAD, prompt_tokens=1000, completion_tokens=20), GOOD)
    analyzer = make_analyzer(max_tokens_per_call=1500)
    with pytest.raises(vf.BudgetExceededError) as caught:
        analyzer.analyze(cat_image, features=["caption"])
    # the first answer cost 1,020 tokens; the re-ask would resend at least 1,000
    assert caught.value.usage is not None
    assert caught.value.usage.requests == 1 and caught.value.usage.input_tokens == 1000
    assert caught.value.limit == "1500 tokens per call"


@pytest.mark.vcr
def test_a_shared_budget_stops_the_next_call(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script(Reply(GOOD, prompt_tokens=1000, completion_tokens=20))
    analyzer = make_analyzer(cache=False)
    batch = vf.Budget(max_tokens=1500, scope="per batch")
    first = analyzer.analyze(cat_image, features=["caption"], budget=batch)
    assert first.usage.total_tokens == 1020 and batch.spent.total_tokens == 1020
    batch.charge(vf.Usage(input_tokens=500))  # another worker's spending
    with pytest.raises(vf.BudgetExceededError, match="per batch"):
        analyzer.analyze(cat_image, features=["tags"], budget=batch)
