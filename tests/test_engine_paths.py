"""The engine's paths, through the in-process fake (`viewfinder.testing.fakes`): fast.

Refusals, truncation, the usage tally across re-asks and retries, per-call and per-batch
budgets and the deadline, each driven sync and async through the public analyzer with
scripted answers. No server and no socket: every answer is one scripted here (NOT a
model), rendered in the same JSON as the HTTP simulator's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import viewfinder as vf
from viewfinder.testing.fakes import FakeOpenAI
from viewfinder.testing.simulator import Reply

CAT = Path(__file__).parent / "assets" / "chelsea.png"
GOOD = {"caption": {"text": "a cat", "conf": 90}}
BAD = {"caption": {"text": "a cat", "conf": 300}}  # conf above 100: re-asked
NOW = {"retry-after": "0"}
"""Retry at once: the tests wait for nothing."""

Ask = Callable[..., vf.ImageAnalysisResult]


@pytest.fixture(params=["sync", "async"])
def ask(request: pytest.FixtureRequest) -> Callable[[vf.ImageAnalyzer], Ask]:
    """`ask(analyzer)(**options)`: one caption of the cat, through `analyze` or `aanalyze`."""

    def bind(analyzer: vf.ImageAnalyzer) -> Ask:
        def call(**options: Any) -> vf.ImageAnalysisResult:
            if request.param == "sync":
                return analyzer.analyze(CAT, features=["caption"], **options)
            return asyncio.run(analyzer.aanalyze(CAT, features=["caption"], **options))

        return call

    return bind


# --- refusals and truncation: never re-asked -------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        Reply(None, refusal="I can't help with that"),
        Reply(GOOD, finish_reason="content_filter"),
    ],
    ids=["refusal", "finish_reason_content_filter"],
)
def test_a_refusal_is_a_content_filter_error_and_is_not_reasked(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer], ask: Callable[..., Ask], reply: Reply
) -> None:
    fake.script(reply, GOOD)

    with pytest.raises(vf.ContentFilterError, match="refused") as caught:
        ask(make())()

    assert len(fake.requests) == 1 and fake.pending == 1  # the GOOD answer was never asked for
    assert caught.value.attempts == 1
    assert caught.value.usage is not None and caught.value.usage.requests == 1


def test_a_prompt_stopped_by_the_filter_is_a_content_filter_error_not_retried(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer], ask: Callable[..., Ask]
) -> None:
    fake.script(Reply(status=400, error_code="content_filter", error_message="flagged"), GOOD)

    with pytest.raises(vf.ContentFilterError, match=r"prompt or image.*flagged"):
        ask(make())()

    assert len(fake.requests) == 1


def test_a_truncated_answer_is_an_output_truncated_error_with_the_raw_answer(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer], ask: Callable[..., Ask]
) -> None:
    fake.script(Reply('{"caption": {"text": "a c', finish_reason="length"), GOOD)

    with pytest.raises(vf.OutputTruncatedError, match="finish_reason=length") as caught:
        ask(make(max_output_tokens=5))()

    assert caught.value.raw_answer == '{"caption": {"text": "a c'
    assert len(fake.requests) == 1 and fake.requests[0]["max_tokens"] == 5


# --- the usage tally -------------------------------------------------------------------


def test_usage_counts_every_completion_and_every_http_attempt(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer], ask: Callable[..., Ask]
) -> None:
    fake.script(
        Reply(status=503, headers=NOW),  # retried: an attempt, no completion
        Reply(BAD, prompt_tokens=100, completion_tokens=10),  # re-asked
        Reply(status=429, headers=NOW),  # the re-ask's first attempt, retried
        Reply(GOOD, prompt_tokens=150, completion_tokens=12),
    )

    result = ask(make())()

    assert result.caption is not None and result.caption.text == "a cat"
    assert result.usage == vf.Usage(input_tokens=250, output_tokens=22, requests=4, reasks=1)
    assert fake.pending == 0


def test_usage_of_an_answer_that_never_validates_is_on_the_error(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer], ask: Callable[..., Ask]
) -> None:
    fake.script(*[Reply(BAD, prompt_tokens=100, completion_tokens=10)] * 2)

    with pytest.raises(vf.InvalidAnswerError) as caught:
        ask(make(max_reasks=1))()

    assert caught.value.attempts == 2
    assert caught.value.usage == vf.Usage(input_tokens=200, output_tokens=20, requests=2, reasks=1)
    assert caught.value.raw_answer is not None and '"conf": 300' in caught.value.raw_answer


# --- budgets ---------------------------------------------------------------------------


def test_a_per_call_token_cap_stops_the_reask_before_it_is_sent(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer], ask: Callable[..., Ask]
) -> None:
    fake.script(Reply(BAD, prompt_tokens=1000, completion_tokens=20), GOOD)

    with pytest.raises(vf.BudgetExceededError) as caught:
        ask(make(max_tokens_per_call=1500))()

    # the first answer cost 1,020 tokens; the re-ask would resend at least 1,000 more
    assert caught.value.limit == "1500 tokens per call"
    assert caught.value.usage == vf.Usage(input_tokens=1000, output_tokens=20, requests=1)
    assert len(fake.requests) == 1 and fake.pending == 1


def test_a_per_call_dollar_cap_counts_retried_attempts_too(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer], ask: Callable[..., Ask]
) -> None:
    # gpt-4.1-mini input is $0.40 per million: 50,000 tokens are $0.02
    fake.script(Reply(BAD, prompt_tokens=50_000, completion_tokens=0), GOOD)

    with pytest.raises(vf.BudgetExceededError, match=r"\$0\.03 per call"):
        ask(make(model="gpt-4.1-mini", max_dollars_per_call=0.03))()

    assert len(fake.requests) == 1


def test_a_shared_budget_stops_the_call_after_it_is_spent(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer], ask: Callable[..., Ask]
) -> None:
    fake.script(*[Reply(GOOD, prompt_tokens=1000, completion_tokens=20)] * 3)
    batch = vf.Budget(max_tokens=1500, scope="per batch")
    call = ask(make())

    call(budget=batch)
    call(budget=batch)  # 1,020 spent: under the cap, so this one is sent (and crosses it)
    with pytest.raises(vf.BudgetExceededError, match="per batch") as caught:
        call(budget=batch)

    assert batch.spent.total_tokens == 2040
    assert caught.value.limit == "1500 tokens per batch"
    assert len(fake.requests) == 2 and fake.pending == 1


async def test_a_batch_budget_stops_starting_new_images(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer]
) -> None:
    fake.default = lambda body: Reply(GOOD, prompt_tokens=1000, completion_tokens=20)
    images = [(number, CAT) for number in range(4)]
    budget = vf.Budget(max_tokens=1500, scope="per batch")

    async with make().aanalyze_many(images, ["caption"], concurrency=1, budget=budget) as run:
        items = [item async for item in run]

    # 1,020 spent; the next image's request (1,000 input tokens expected) would cross 1,500
    assert [(item.id, item.ok) for item in items] == [(0, True)]
    assert run.summary.not_started == 3
    assert isinstance(run.summary.budget_error, vf.BudgetExceededError)
    assert len(fake.requests) == 1 and budget.spent.total_tokens == 1020


# --- the deadline ----------------------------------------------------------------------


def test_no_retry_starts_when_the_server_asks_to_wait_past_the_deadline(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer], ask: Callable[..., Ask]
) -> None:
    fake.script(Reply(status=503, headers={"retry-after": "30"}), GOOD)
    policy = vf.RetryPolicy(max_attempts=5, max_total_seconds=5.0)

    with pytest.raises(vf.ServerError, match=r"5 s deadline") as caught:
        ask(make(retry=policy))()

    assert caught.value.attempts == 1 and len(fake.requests) == 1  # no 30 s sleep either


async def test_an_async_attempt_is_cut_at_the_deadline(
    fake: FakeOpenAI, make: Callable[..., vf.ImageAnalyzer]
) -> None:
    fake.script(Reply(GOOD, delay=60))  # asyncio.sleep in the transport: cancelled
    analyzer = make(retry=vf.RetryPolicy(max_attempts=3, max_total_seconds=0.2))

    with pytest.raises(vf.TransportError, match=r"0\.2 s deadline"):
        await analyzer.aanalyze(CAT, features=["caption"])

    assert len(fake.requests) == 1
