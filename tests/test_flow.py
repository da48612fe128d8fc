"""The flow written once: drivers, and fallback as a composition of paths.

A flow is a generator of blocking steps; `drive` and `adrive` perform them in the calling
thread or off the event loop. These tests use paths that need no model and no image
decoding, so they show the drivers and `FallbackPath` on their own.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

import viewfinder as vf
from viewfinder.analyzers.flow import (
    AnswerPath,
    FallbackPath,
    Flow,
    LocalPath,
    Work,
    adrive,
    drive,
)
from viewfinder.build.plan import CallPlan
from viewfinder.prepare.load import ImageInput, LoadedImage


def _steps(log: list[str]) -> Flow[str]:
    """Two blocking steps, the second failing once and handled by the flow itself."""
    first = yield Work(lambda: log.append("first") or "one")
    try:
        yield Work(_fail, (log,))
    except ValueError as exc:
        log.append(f"caught {exc}")
    return f"{first}+done"


def _fail(log: list[str]) -> None:
    log.append("second")
    raise ValueError("boom")


def test_drive_performs_each_step_in_order_and_throws_errors_back_in() -> None:
    log: list[str] = []

    assert drive(_steps(log)) == "one+done"
    assert log == ["first", "second", "caught boom"]


def test_adrive_runs_the_same_flow_with_its_steps_off_the_event_loop() -> None:
    log: list[str] = []
    threads: list[int] = []

    def step() -> str:
        threads.append(threading.get_ident())
        return "x"

    def flow() -> Flow[str]:
        yield from _steps(log)
        return (yield Work(step))

    async def main() -> tuple[str, int]:
        return await adrive(flow()), threading.get_ident()

    result, loop_thread = asyncio.run(main())

    assert result == "x"
    assert log == ["first", "second", "caught boom"]
    assert threads and threads[0] != loop_thread


def test_an_error_the_flow_does_not_handle_propagates_and_closes_it() -> None:
    closed: list[bool] = []

    def flow() -> Flow[None]:
        try:
            yield Work(_fail, ([],))
        finally:
            closed.append(True)

    with pytest.raises(ValueError, match="boom"):
        drive(flow())
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(adrive(flow()))
    assert closed == [True, True]


# --- fallback as a composition --------------------------------------------------------------


@dataclass
class Scripted:
    """A path answering `answer`, or raising `error`; counts the images it saw."""

    answer: str = "primary"
    error: Exception | None = None
    seen: list[Any] = field(default_factory=list)

    def flow(
        self, plan: CallPlan[Any, str], image: ImageInput | LoadedImage, budget: vf.Budget | None
    ) -> Flow[str]:
        self.seen.append(image)
        result: str = yield Work(self._answer)
        return result

    def _answer(self) -> str:
        if self.error is not None:
            raise self.error
        return self.answer


PLAN: CallPlan[None, str] = CallPlan(
    options=None,
    response_model=vf.Caption,
    fingerprint="test+0",
    max_side=1024,
    builder=lambda part: pytest.fail("no request is built"),
    finisher=lambda done, size: pytest.fail("nothing is finished"),
)
LOADED = LoadedImage(data=b"bytes", sha256="0" * 64, source="<bytes>")


def _loads(calls: list[Any]) -> Any:
    def load(image: Any) -> LoadedImage:
        calls.append(image)
        return LOADED

    return load


def _fallback(primary: AnswerPath[str], second: AnswerPath[str], loads: list[Any]) -> Any:
    def for_error(error: Exception) -> AnswerPath[str] | None:
        return second if isinstance(error, vf.ServerError) else None

    return FallbackPath(_loads(loads), primary, for_error)


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_fallback_answers_from_the_second_path_when_the_first_fails_with_its_error(
    driver: str,
) -> None:
    loads: list[Any] = []
    primary = Scripted(error=vf.ServerError("down", status_code=500))
    second = Scripted(answer="local")
    flow = _fallback(primary, second, loads).flow(PLAN, "image.png", None)

    result = drive(flow) if driver == "sync" else asyncio.run(adrive(flow))

    assert result == "local"
    assert loads == ["image.png"]  # read once, before the primary path
    assert primary.seen == [LOADED] and second.seen == [LOADED]


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_fallback_lets_other_errors_raise_and_never_asks_the_second_path(driver: str) -> None:
    primary = Scripted(error=vf.AuthenticationError("bad key", status_code=401))
    second = Scripted(answer="local")
    flow = _fallback(primary, second, []).flow(PLAN, "image.png", None)

    with pytest.raises(vf.AuthenticationError):
        drive(flow) if driver == "sync" else asyncio.run(adrive(flow))
    assert second.seen == []


def test_fallback_passes_a_good_answer_through() -> None:
    second = Scripted(answer="local")

    assert drive(_fallback(Scripted(), second, []).flow(PLAN, "image.png", None)) == "primary"
    assert second.seen == []


def test_the_local_path_hands_the_plans_options_to_its_engine() -> None:
    got: list[Any] = []

    def answer(loaded: LoadedImage, options: Any) -> str:
        got.append((loaded, options))
        return "local"

    plan: CallPlan[str, str] = CallPlan(
        options="the options",
        response_model=vf.Caption,
        fingerprint="local+0",
        max_side=1024,
        builder=PLAN.builder,
        finisher=PLAN.finisher,
    )

    assert drive(LocalPath(_loads([]), answer).flow(plan, "image.png", None)) == "local"
    assert got == [(LOADED, "the options")]


def test_an_image_analyzer_composes_its_path_from_engine_and_fallback(
    make_analyzer: Any,
) -> None:
    from viewfinder.analyzers.flow import ModelPath
    from viewfinder.analyzers.split import SplitPath

    plain = make_analyzer().path()
    assert isinstance(plain, SplitPath) and isinstance(plain.model, ModelPath)
    split = make_analyzer(fallback="local").path()
    assert isinstance(split, SplitPath)
    wrapped = split.model
    assert isinstance(wrapped, FallbackPath) and isinstance(wrapped.primary, ModelPath)
    assert wrapped.fallback(vf.ServerError("down", status_code=500)) is not None
    assert wrapped.fallback(vf.AuthenticationError("no", status_code=401)) is None
