"""A pixel budget: how many pixels may be decoded at once, the server's memory bound.

Decoding an image holds memory in proportion to the pixels it decodes (about 4 bytes
each while the model copy is made, see `viewfinder.prepare.decode`), so a server decoding
several large uploads at once can run out of memory. A `PixelBudget` is an asyncio
budget of pixels: each decode holds its image's pixels while it runs, and waits, first
come first served, while they are spent; past the wait it is refused with
`DecodeBusyError`. An image larger than the whole budget is still decoded, alone,
holding all of it.

The analyzers decode through `run_decode`. It holds pixels of the budget that
`budget_scope` set for the current task (the server sets one around each request), and
just runs the decode in a worker thread when none is set. Pixels are read from the
image's header, counting what is decoded (a large JPEG decodes at reduced scale).

After a large decode under a budget, the worker thread calls glibc's `malloc_trim(0)`:
Pillow's 16 MiB blocks, once freed, raise glibc's mmap threshold, so later blocks come
from heaps that keep their pages after `free`. Without it, four 13000 x 13000 uploads
left the server at 548 MiB instead of 113 (see BENCHMARKS.md). Elsewhere than glibc
nothing is called.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import sys
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from viewfinder.errors import DecodeBusyError, InvalidOptionError
from viewfinder.prepare.decode import decode_pixels

__all__ = [
    "TRIM_PIXELS",
    "PixelBudget",
    "budget_scope",
    "run_decode",
    "run_holding",
    "trim_heap",
]

T = TypeVar("T")

TRIM_PIXELS: Final = 16_000_000
"""Decodes of at least this many pixels (about 64 MiB) give freed heap memory back to the
system when they end (`malloc_trim`, glibc only); a trim takes up to about 50 ms."""


@dataclass(frozen=True)
class _Scope:
    budget: PixelBudget
    wait: float


_SCOPE: ContextVar[_Scope | None] = ContextVar("viewfinder_pixel_budget", default=None)


class PixelBudget:
    """Pixels that may be decoded at once, handed out first come first served.

    Not thread-safe: use it from one event loop.

    Args:
        total: Pixels available at once; at least 1.

    Raises:
        InvalidOptionError: `total` is not a positive integer.
    """

    def __init__(self, total: int) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise InvalidOptionError(f"a pixel budget must be a positive integer, not {total!r}")
        self.total = total
        """Pixels available at once."""
        self._available = total
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def available(self) -> int:
        """Pixels not held right now."""
        return self._available

    @property
    def waiting(self) -> int:
        """Decodes waiting for pixels right now."""
        return len(self._waiters)

    async def acquire(self, pixels: int, wait: float) -> int:
        """Hold `pixels` (at most the whole budget), waiting up to `wait` seconds.

        Returns:
            The pixels held: give exactly these back to `release`.

        Raises:
            DecodeBusyError: They could not be had within `wait` seconds.
        """
        amount = max(0, min(pixels, self.total))
        if amount == 0:
            return 0  # nothing to decode (an unreadable header): never queued
        if not self._waiters and amount <= self._available:
            self._available -= amount
            return amount
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (amount, granted)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(wait):
                await granted
        except BaseException as exc:
            if granted.done() and not granted.cancelled():
                self.release(amount)  # granted as the wait ended: hand it on
            else:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                self._grant()  # a large waiter gone may let smaller ones through
            if isinstance(exc, TimeoutError):
                raise DecodeBusyError(
                    f"{self.total - self._available} of {self.total} pixels are being "
                    f"decoded; {amount} more could not be had within {wait:g} s",
                    retry_after=max(1.0, wait),
                ) from None
            raise
        return amount

    def release(self, pixels: int) -> None:
        """Give back pixels that `acquire` returned, and wake who they let through."""
        self._available = min(self.total, self._available + pixels)
        self._grant()

    def _grant(self) -> None:
        """Hand pixels to the waiters at the head of the line, in order, while they fit."""
        while self._waiters:
            amount, granted = self._waiters[0]
            if granted.done():  # cancelled, its task not yet resumed: drop it
                self._waiters.popleft()
                continue
            if amount > self._available:
                return
            self._waiters.popleft()
            self._available -= amount
            granted.set_result(None)

    def __repr__(self) -> str:
        return f"PixelBudget(total={self.total}, available={self._available})"


@contextmanager
def budget_scope(budget: PixelBudget, wait: float) -> Iterator[None]:
    """Decodes run by this task (and tasks it starts) inside the block hold `budget`.

    Args:
        budget: The budget.
        wait: Seconds a decode waits for its pixels before `DecodeBusyError`.
    """
    token = _SCOPE.set(_Scope(budget, wait))
    try:
        yield
    finally:
        _SCOPE.reset(token)


async def run_decode(
    data: bytes, max_side: int | None, func: Callable[..., T], /, *args: Any, **kwargs: Any
) -> T:
    """`func(*args, **kwargs)` in a worker thread, holding the pixels it decodes.

    Outside `budget_scope` this is `asyncio.to_thread`. Inside, the pixels of `data`
    (see `viewfinder.prepare.decode.decode_pixels`) are held from before the thread
    starts until it ends, also when the caller is cancelled meanwhile: the thread cannot
    be stopped, and its memory is in use until it returns.

    Raises:
        DecodeBusyError: The pixels could not be had within the scope's wait.
    """
    if _SCOPE.get() is None:
        return await asyncio.to_thread(func, *args, **kwargs)
    return await run_holding(decode_pixels(data, max_side), func, *args, **kwargs)


async def run_holding(pixels: int, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`func(*args, **kwargs)` in a worker thread, holding `pixels` of the scope's budget.

    `run_decode` for work whose size no image header tells: a PDF page rendered at a
    known size, a TIFF frame. Outside `budget_scope` this is `asyncio.to_thread`.

    Raises:
        DecodeBusyError: The pixels could not be had within the scope's wait.
    """
    scope = _SCOPE.get()
    if scope is None:
        return await asyncio.to_thread(func, *args, **kwargs)
    budget = scope.budget
    held = await budget.acquire(pixels, scope.wait)

    def decode() -> T:
        try:
            return func(*args, **kwargs)
        finally:
            if pixels >= TRIM_PIXELS:
                trim_heap()

    work = asyncio.ensure_future(asyncio.to_thread(decode))

    def give_back(done: asyncio.Future[T]) -> None:
        budget.release(held)
        if not done.cancelled():
            done.exception()  # retrieved: nobody awaits it once the caller is cancelled

    work.add_done_callback(give_back)
    return await asyncio.shield(work)


def trim_heap() -> bool:
    """Give the heap's free memory back to the system (glibc's `malloc_trim(0)`).

    Returns:
        Whether it was called: `False` where there is no glibc (musl, macOS, Windows).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim() -> Any:
    """glibc's `malloc_trim`, looked up once; `None` without glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols: its libc
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
