"""Seeing inside (issue 18 §5): a DEBUG line per HTTP attempt, no instructor ERROR lines,
and hooks fired once per request, response, retry, re-ask and error.

Every answer is scripted through the in-process fake (`viewfinder.testing.fakes`), NOT a
model; retries wait for nothing (`retry-after: 0`, no backoff).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import viewfinder as vf
from viewfinder.engine.hooks import (
    ErrorEvent,
    Hooks,
    ReaskEvent,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
)
from viewfinder.testing.fakes import FAKE_API_KEY, FakeOpenAI
from viewfinder.testing.simulator import Reply

CAT = Path(__file__).parent / "assets" / "chelsea.png"
GOOD = {"caption": {"text": "a cat", "conf": 90}}
BAD = {"caption": {"text": "a cat", "conf": 300}}  # conf above 100: re-asked
NOW = {"retry-after": "0"}
SCRIPT = (
    Reply(status=503, headers=NOW),  # attempt 1, retried
    Reply(BAD, prompt_tokens=100, completion_tokens=10),  # attempt 2: re-asked
    Reply(status=429, headers=NOW),  # the re-ask's attempt 1, retried
    Reply(GOOD, prompt_tokens=150, completion_tokens=12),  # the re-ask's attempt 2
)


@pytest.fixture(params=["sync", "async"])
def ask(request: pytest.FixtureRequest) -> Callable[[vf.ImageAnalyzer], vf.ImageAnalysisResult]:
    def call(analyzer: vf.ImageAnalyzer) -> vf.ImageAnalysisResult:
        if request.param == "sync":
            return analyzer.analyze(CAT, features=["caption"])
        return asyncio.run(analyzer.aanalyze(CAT, features=["caption"]))

    return call


def recorder(analyzer: vf.ImageAnalyzer) -> list[Any]:
    """Every event `analyzer` fires, in order."""
    seen: list[Any] = []
    for name in ("request", "response", "retry", "reask", "error"):
        analyzer.on(name, seen.append)  # type: ignore[call-overload]
    return seen


def kinds(events: list[Any]) -> Counter[str]:
    return Counter(type(event).__name__ for event in events)


# --- the DEBUG line per attempt ----------------------------------------------------------


def request_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "viewfinder" and r.getMessage().startswith("model request:")
    ]


def test_one_debug_line_per_http_attempt_with_its_fields(
    fake: FakeOpenAI,
    make: Callable[..., vf.ImageAnalyzer],
    ask: Callable[..., vf.ImageAnalysisResult],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.script(*SCRIPT)
    caplog.set_level(logging.DEBUG, logger="viewfinder")

    ask(make(model="gpt-4.1-mini"))

    lines = request_lines(caplog)
    assert len(lines) == 4
    assert "attempt=1 reask=0 status=503" in lines[0]
    assert "attempt=2 reask=0 status=200" in lines[1] and "input_tokens=100" in lines[1]
    assert "attempt=1 reask=1 status=429" in lines[2]
    assert "attempt=2 reask=1 status=200" in lines[3] and "output_tokens=12" in lines[3]
    for line in lines:
        assert "model=gpt-4.1-mini" in line and "latency=" in line and "cache_hit=False" in line
        assert "endpoint=https://api.openai.com/v1" in line
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert FAKE_API_KEY not in everything and "base64" not in everything


def test_a_cache_hit_logs_one_line_and_fires_a_response(
    fake: FakeOpenAI,
    make: Callable[..., vf.ImageAnalyzer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.script(GOOD)
    analyzer = make(cache=tmp_path / "cache")
    analyzer.analyze(CAT, features=["caption"])
    events = recorder(analyzer)
    caplog.set_level(logging.DEBUG, logger="viewfinder")

    analyzer.analyze(CAT, features=["caption"])

    assert [line.split("cache_hit=")[1][:4] for line in request_lines(caplog)] == ["True"]
    assert len(events) == 1 and isinstance(events[0], ResponseEvent) and events[0].cache_hit


# --- instructor's own lines ----------------------------------------------------------------


def loud_instructor_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name.startswith("instructor") and r.levelno > logging.DEBUG
    ]


def test_no_instructor_error_lines_on_a_reask_that_succeeds_or_on_a_failure(
    fake: FakeOpenAI,
    make: Callable[..., vf.ImageAnalyzer],
    ask: Callable[..., vf.ImageAnalysisResult],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script(*SCRIPT)
    ask(make())
    fake.script(*[Reply(status=429, headers=NOW)] * 3)  # instructor logged 2 ERROR lines here

    with pytest.raises(vf.RateLimitError) as caught:
        ask(make())

    assert caught.value.attempts == 3
    assert loud_instructor_records(caplog) == []
    demoted = [r for r in caplog.records if r.name.startswith("instructor.")]
    assert any("API call failed" in r.getMessage() for r in demoted)  # kept, at DEBUG


def test_instructor_lines_outside_viewfinder_keep_their_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import viewfinder.engine.engine  # noqa: F401  # installs the filter

    caplog.set_level(logging.DEBUG)
    logging.getLogger("instructor.v2.retry").error("the application's own instructor call")

    assert [r.levelno for r in loud_instructor_records(caplog)] == [logging.ERROR]


# --- hooks ----------------------------------------------------------------------------------


def test_each_hook_fires_once_per_request_response_retry_and_reask(
    fake: FakeOpenAI,
    make: Callable[..., vf.ImageAnalyzer],
    ask: Callable[..., vf.ImageAnalysisResult],
) -> None:
    fake.script(*SCRIPT)
    analyzer = make(model="gpt-4.1-mini")
    events = recorder(analyzer)

    ask(analyzer)

    assert kinds(events) == {
        "RequestEvent": 4,
        "ResponseEvent": 2,
        "RetryEvent": 2,
        "ReaskEvent": 1,
    }
    requests = [e for e in events if isinstance(e, RequestEvent)]
    assert [(e.attempt, e.reask) for e in requests] == [(1, 0), (2, 0), (1, 1), (2, 1)]
    retries = [e for e in events if isinstance(e, RetryEvent)]
    assert [(e.attempt, e.reason) for e in retries] == [(1, "HTTP 503"), (1, "HTTP 429")]
    (reask,) = [e for e in events if isinstance(e, ReaskEvent)]
    assert reask.reask == 1 and "ValidationError" in reask.reason
    responses = [e for e in events if isinstance(e, ResponseEvent)]
    assert [e.usage.input_tokens for e in responses] == [100, 150]
    assert all(e.model == "gpt-4.1-mini" and e.latency >= 0 for e in responses)
    assert type(events[0]) is RequestEvent and type(events[-1]) is ResponseEvent


def test_the_error_hook_fires_once_with_the_raised_error(
    fake: FakeOpenAI,
    make: Callable[..., vf.ImageAnalyzer],
    ask: Callable[..., vf.ImageAnalysisResult],
) -> None:
    fake.script(*[Reply(status=500, headers=NOW)] * 3)
    analyzer = make()
    events = recorder(analyzer)

    with pytest.raises(vf.ServerError) as caught:
        ask(analyzer)

    assert kinds(events) == {"RequestEvent": 3, "RetryEvent": 2, "ErrorEvent": 1}
    (error,) = [e for e in events if isinstance(e, ErrorEvent)]
    assert error.error is caught.value and error.usage is not None and error.usage.requests == 3


def test_a_failing_hook_is_logged_and_never_breaks_the_analysis(
    fake: FakeOpenAI,
    make: Callable[..., vf.ImageAnalyzer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.script(GOOD)
    analyzer = make()
    later: list[ResponseEvent] = []

    def broken(event: ResponseEvent) -> None:
        raise RuntimeError("metrics backend down")

    analyzer.on("response", broken)
    analyzer.on("response", later.append)

    result = analyzer.analyze(CAT, features=["caption"])

    assert result.caption is not None and len(later) == 1
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "broken" in warning.getMessage() and "RuntimeError" in warning.getMessage()


async def test_hooks_are_shared_with_a_batch_and_between_analyzers(fake: FakeOpenAI) -> None:
    fake.script(GOOD, GOOD)
    hooks = Hooks()
    seen: list[RequestEvent] = []
    hooks.on("request", seen.append)
    async with vf.ImageAnalyzer(**fake.clients(), cache=False, hooks=hooks) as analyzer:
        items = [item async for item in analyzer.aanalyze_many([CAT, CAT], features="caption")]

    assert all(item.ok for item in items) and len(seen) == 2
    hooks.off("request", seen.append)
    assert not hooks


def test_an_unknown_event_is_refused() -> None:
    with pytest.raises(vf.InvalidOptionError, match="unknown hook event 'responce'"):
        Hooks().on("responce", print)  # type: ignore[call-overload]
