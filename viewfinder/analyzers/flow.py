"""The flow of one call, written once: source cache -> load -> prepare -> send -> remember
-> finish, and the local fallback as a wrapper around it.

A flow is a generator (httpx writes `auth_flow` the same way): it runs the pure steps
itself and *yields* each step that blocks, an `Effect`, to its driver, which performs it
and sends the outcome back in (or throws its exception in). `drive` performs effects in
the calling thread, `adrive` off the event loop. So the order of the steps, the source
cache and the fallback exist once, and the only sync/async twin left is the engine's
send (`Engine.run` / `Engine.arun`).

Paths are what an analyzer answers with, and they compose (as pydantic-ai's
`FallbackModel` composes two models):

- `ModelPath`: the model endpoint through an `Engine`;
- `LocalPath`: the local engine (`viewfinder.local`), for `ImageAnalyzer(engine="local")`;
- `FallbackPath`: a primary path, and a second one made from the primary's error when
  that error is one it answers (`ImageAnalyzer(fallback="local")`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from viewfinder.build.plan import CallPlan, SourceRef
from viewfinder.engine.budget import Budget
from viewfinder.engine.engine import Completed, Engine, Request
from viewfinder.prepare import PreparedImage
from viewfinder.prepare.load import ImageInput, LoadedImage
from viewfinder.prepare.pixel_budget import run_decode
from viewfinder.schemas.result import ImageMetadata

__all__ = [
    "AnswerPath",
    "Effect",
    "FallbackPath",
    "Flow",
    "LocalPath",
    "ModelPath",
    "Preparer",
    "Send",
    "Work",
    "adrive",
    "drive",
]

T = TypeVar("T")
R = TypeVar("R")


# --- effects: the steps that block, performed by a driver --------------------------------


@dataclass(frozen=True)
class Work:
    """A blocking function (reading, fetching, decoding): called in place, or in a thread.

    Attributes:
        func: What to call.
        args: Its positional arguments.
        kwargs: Its keyword arguments.
        decodes: The encoded bytes and the long side `func` decodes them to (None: full
            size), when it decodes: asynchronously it then holds those pixels of the
            server's decode budget (`viewfinder.prepare.pixel_budget.run_decode`).
    """

    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    decodes: tuple[bytes, int | None] | None = None

    def run(self) -> Any:
        """Call it in this thread."""
        return self.func(*self.args, **self.kwargs)

    async def arun(self) -> Any:
        """Call it in a worker thread, holding its pixels when it decodes."""
        if self.decodes is None:
            return await asyncio.to_thread(self.func, *self.args, **self.kwargs)
        data, max_side = self.decodes
        return await run_decode(data, max_side, self.func, *self.args, **self.kwargs)


@dataclass(frozen=True)
class Send:
    """One request to the model, through `engine` (the engine's own sync/async twins)."""

    engine: Engine
    request: Request[BaseModel]
    budget: Budget | None

    def run(self) -> Completed[BaseModel]:
        """`Engine.run`."""
        return self.engine.run(self.request, budget=self.budget)

    async def arun(self) -> Completed[BaseModel]:
        """`Engine.arun`."""
        return await self.engine.arun(self.request, budget=self.budget)


Effect = Work | Send
"""A step a flow hands to its driver."""

Flow = Generator[Effect, Any, T]
"""A call's steps: yields effects, receives their outcomes, returns the result."""


def drive(flow: Flow[T]) -> T:
    """Run `flow` to its result, performing each effect in the calling thread.

    An effect's exception is thrown into the flow at the step that yielded it, so the
    flow handles it (or not) exactly where it would have raised inline.
    """
    try:
        outcome: Any = None
        error: Exception | None = None
        while True:
            try:
                effect = flow.send(outcome) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            try:
                outcome, error = effect.run(), None
            except Exception as exc:
                outcome, error = None, exc
    finally:
        flow.close()


async def adrive(flow: Flow[T]) -> T:
    """Async twin of `drive`: each effect runs off the event loop (`Effect.arun`)."""
    try:
        outcome: Any = None
        error: Exception | None = None
        while True:
            try:
                effect = flow.send(outcome) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            try:
                outcome, error = await effect.arun(), None
            except Exception as exc:
                outcome, error = None, exc
    finally:
        flow.close()


# --- paths: what answers a plan for an image ----------------------------------------------


class AnswerPath(Protocol[R]):
    """Answers a call plan for one image, as a flow."""

    def flow(
        self, plan: CallPlan[Any, R], image: ImageInput | LoadedImage, budget: Budget | None
    ) -> Flow[R]:
        """The steps answering `plan` for `image`, charging `budget` besides the per-call cap."""
        ...


class Preparer(Protocol):
    """Reads and prepares images for the model (an analyzer: its allowed hosts)."""

    def load(self, image: ImageInput | LoadedImage) -> LoadedImage: ...

    def prepare(
        self, image: ImageInput | LoadedImage, max_side: int | None = None
    ) -> PreparedImage: ...


@dataclass(frozen=True)
class ModelPath(Generic[R]):
    """The model endpoint: source cache, load, prepare, send, remember, finish.

    A source-cache hit needs no decoding: the request is first built around a
    `SourceRef` (the original bytes' digest), and only a miss prepares the image.

    Attributes:
        preparer: Loads and prepares the image (the analyzer).
        engine: Sends the request (the analyzer's, or a batch's with its pacing).
    """

    preparer: Preparer
    engine: Engine

    def flow(
        self, plan: CallPlan[Any, R], image: ImageInput | LoadedImage, budget: Budget | None
    ) -> Flow[R]:
        """See `AnswerPath.flow`."""
        loaded: LoadedImage = yield Work(self.preparer.load, (image,))
        by_source = plan.build(SourceRef(loaded.sha256, plan.max_side))
        hit = self.engine.lookup_source(by_source)
        if hit is not None:
            done, size = hit
            return plan.finish(done, size)
        prepared: PreparedImage = yield Work(
            self.preparer.prepare, (loaded, plan.max_side), decodes=(loaded.data, plan.max_side)
        )
        done = yield Send(self.engine, plan.build(prepared), budget)
        size = ImageMetadata(width=prepared.width, height=prepared.height)
        self.engine.remember_source(by_source, done, size)
        return plan.finish(done, size)


@dataclass(frozen=True)
class LocalPath(Generic[R]):
    """Answer on this machine: load, then one blocking call that decodes at full size.

    Attributes:
        load: Reads the image's bytes (the analyzer's `load`).
        answer: The local engine's analysis of a loaded image under the plan's options.
    """

    load: Callable[[ImageInput | LoadedImage], LoadedImage]
    answer: Callable[[LoadedImage, Any], R]

    def flow(
        self, plan: CallPlan[Any, R], image: ImageInput | LoadedImage, budget: Budget | None
    ) -> Flow[R]:
        """See `AnswerPath.flow`; `budget` does not apply (the local engine costs nothing)."""
        loaded: LoadedImage = yield Work(self.load, (image,))
        result: R = yield Work(self.answer, (loaded, plan.options), decodes=(loaded.data, None))
        return result


@dataclass(frozen=True)
class FallbackPath(Generic[R]):
    """`primary`, and when it fails with an error `fallback` answers, `fallback`'s path.

    The image is read once, before the primary path, so the fallback gets the same
    bytes (a file object cannot be read twice).

    Attributes:
        load: Reads the image's bytes.
        primary: The path tried first.
        fallback: The path for the primary's error, or None when that error is to raise.
    """

    load: Callable[[ImageInput | LoadedImage], LoadedImage]
    primary: AnswerPath[R]
    fallback: Callable[[Exception], AnswerPath[R] | None]

    def flow(
        self, plan: CallPlan[Any, R], image: ImageInput | LoadedImage, budget: Budget | None
    ) -> Flow[R]:
        """See `AnswerPath.flow`."""
        loaded: LoadedImage = yield Work(self.load, (image,))
        try:
            return (yield from self.primary.flow(plan, loaded, budget))
        except Exception as error:
            second = self.fallback(error)
            if second is None:
                raise
            return (yield from second.flow(plan, loaded, budget))
