"""Pulling a caller's inputs one at a time, and running an async stream on a thread.

The plumbing shared by the two streaming front ends, `viewfinder.batch.online`
(`analyze_many`) and `viewfinder.embed.many` (`Embedder.embed_many`): sources that pull
one input only when asked (a sync iterable on the loop or in a worker thread, for a
blocking one such as stdin; an async iterable), and `in_thread`, which runs an async
generator on an event loop of its own thread and hands its items over through a bounded
queue, so a sync caller gets the async core with bounded read-ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Generator, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from viewfinder.prepare.load import is_url
from viewfinder.prepare.redact import safe_url

__all__ = [
    "END",
    "AsyncSource",
    "InlineSource",
    "PullSource",
    "ThreadedSource",
    "describe_input",
    "in_thread",
]

T = TypeVar("T")
"""What `in_thread` hands over."""

END = object()
"""Returned by a source when the inputs are exhausted."""


class PullSource(Protocol):
    async def next(self) -> object:
        """The next input, or `END`."""

    async def count_rest(self) -> int:
        """Consume what is left, counting it (nothing is kept)."""


class InlineSource:
    """A sync iterable pulled on the event loop (`aanalyze_many` with a list or generator)."""

    def __init__(self, items: Iterable[object]) -> None:
        self._items = iter(items)

    async def next(self) -> object:
        return next(self._items, END)

    async def count_rest(self) -> int:
        return sum(1 for _ in self._items)


class AsyncSource:
    """An async iterable."""

    def __init__(self, items: AsyncIterable[object]) -> None:
        self._items = aiter(items)

    async def next(self) -> object:
        return await anext(self._items, END)

    async def count_rest(self) -> int:
        count = 0
        async for _ in self._items:
            count += 1
        return count


class ThreadedSource:
    """A sync iterable pulled in worker threads (`analyze_many`): it may block (stdin)."""

    def __init__(self, items: Iterable[object]) -> None:
        self._items = items
        self._iterator: Iterator[object] | None = None
        self._stop = threading.Event()

    def _next(self) -> object:
        if self._iterator is None:
            self._iterator = iter(self._items)
        return next(self._iterator, END)

    def _count(self) -> int:
        count = 0
        while not self._stop.is_set() and self._next() is not END:
            count += 1
        return count

    async def next(self) -> object:
        return await asyncio.to_thread(self._next)

    async def count_rest(self) -> int:
        try:
            return await asyncio.to_thread(self._count)
        except asyncio.CancelledError:
            self._stop.set()  # the counting thread stops at its next item
            raise


def describe_input(image: object) -> str:
    """A printable source: the path, the URL (`safe_url`), or what kind of input it is."""
    if isinstance(image, str):
        return safe_url(image) if is_url(image) else image
    if isinstance(image, os.PathLike):
        return os.fsdecode(os.fspath(image))
    if isinstance(image, bytes | bytearray):
        return "<bytes>"
    if callable(getattr(image, "read", None)):
        return "<file object>"
    if hasattr(image, "getbbox"):
        return "<PIL image>"
    return f"<{type(image).__name__}>"


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop already closed: nothing to do
        loop.call_soon_threadsafe(callback)


def in_thread(
    produce: Callable[[], AsyncGenerator[T, None]],
    queue_size: int,
    thread_name: str = "viewfinder-batch",
) -> Generator[T, None, None]:
    """Run an async generator on an event loop of its own thread; yield its items here.

    The thread may be at most `queue_size` items ahead of this generator. Closing this
    generator cancels the async one and joins the thread.
    """
    out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    ready = threading.Event()
    handle: dict[str, Any] = {}

    async def pump() -> None:
        credits = asyncio.Semaphore(queue_size)
        handle.update(loop=asyncio.get_running_loop(), task=asyncio.current_task(), credits=credits)
        ready.set()
        try:
            async with contextlib.aclosing(produce()) as items:
                async for item in items:
                    await credits.acquire()
                    out.put(("item", item))
        except asyncio.CancelledError:
            out.put(("end", None))
            raise
        except BaseException as exc:  # handed to the consumer, raised in its thread
            out.put(("error", exc))
        else:
            out.put(("end", None))

    def main() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(pump())

    thread = threading.Thread(target=main, name=thread_name, daemon=True)
    thread.start()
    ready.wait()
    loop: asyncio.AbstractEventLoop = handle["loop"]
    finished = False
    try:
        while True:
            kind, value = out.get()
            if kind == "item":
                _call_soon(loop, handle["credits"].release)
                yield value
            elif kind == "error":
                finished = True
                raise value
            else:
                finished = True
                return
    finally:
        if not finished:
            _call_soon(loop, handle["task"].cancel)
        thread.join()
