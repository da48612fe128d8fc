"""`RateLimiter`: paces HTTP attempts to a requests- and tokens-per-minute budget.

It implements the engine's `Gate` (`acquire` / `aacquire` before every HTTP attempt,
`observe` after it), so one limiter shared by analyzers, threads and tasks keeps all of
them under the same limits.

The algorithm, in short:

- **Pacing** (GCRA, a token bucket without burst): each budget keeps the time its next
  slot frees. A request takes the earliest time at or after now, the end of any pause
  and both budgets' next slots, then pushes the request slot by `60 / rpm` seconds and
  the token slot by `tokens * 60 / tpm` seconds. Requests are spaced evenly at the bound,
  never in bursts. Each caller sleeps once, until its own slot; there is no polling.
- **Limits** are the configured `rpm=` / `tpm=`, or learned from the provider's
  `x-ratelimit-limit-requests` / `-tokens` headers (the lower one wins when both exist).
  When `x-ratelimit-remaining-*` reaches zero, everyone holds until the slot frees
  (`x-ratelimit-reset-*`, at most one slot's interval).
- **Headroom**: a known limit is paced at `headroom` (95%) of itself, so a server
  counting over a strict sliding window never sees a request a hair too early.
- **AIMD** on 429: every caller pauses (for `retry-after-ms` / `retry-after`, else an
  exponential backoff) and the rate is multiplied by `decrease` (at most once per
  `cooldown_seconds`, so one burst of 429s is one cut). A 429 whose headers show budget
  left (`x-ratelimit-remaining-*` above zero) is a transient refusal, not a sign of
  pacing too fast: it pauses, but does not cut the rate. With no limit known, the cut
  applies to the request rate measured over the last minute. Each quiet
  `recovery_seconds` with no 429 adds `increase` (a fraction of the limit) back, up to
  the limit; a measured limit is dropped once fully recovered.

- **Concurrency limits**: some servers cap how many requests they process at once and
  answer 429 beyond, with no rate headers at all (no `retry-after*`, no
  `x-ratelimit-*`). Halving the rate would not help them; holding fewer requests in
  flight does. The limiter counts attempts in flight (from `acquire` to the `observe`
  that reports how each ended; the engine guarantees one `observe` per attempt). A
  header-less 429 with several attempts in flight, and no cap yet or the cap reached,
  is a concurrency signal: the limiter caps attempts in flight one below the count the
  429 came with (at least 1), does not pause and does not cut the rate; callers beyond
  the cap wait until an attempt ends. Each quiet `recovery_seconds` without such a 429
  raises the cap by one, to probe for room. A header-less 429 below the cap (or with
  one attempt in flight) is a rate signal, handled as above.

Token sizes: `acquire(tokens)` counts `tokens` when given, else the running mean of the
request sizes observed so far (`record_request_tokens`, and the non-zero values passed
to `acquire`). Before any observation, requests are paced on the request budget only.

Waiting is unbounded by default. With `max_wait`, a caller whose slot is further away
than that (a long pause after a 429, a deep queue) is refused at once with a
`RateLimitError` whose `retry_after` says when to come back, and books nothing: the
callers behind it do not wait for a slot nobody will use. A server answers such a
refusal with its own 429 instead of holding the connection.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from viewfinder.engine.retry import parse_retry_after
from viewfinder.errors import InvalidOptionError, RateLimitError

__all__ = ["RateLimiter", "RateLimiterStats", "budget_left", "header_number", "parse_duration"]

_MINUTE = 60.0
_RECENT = 4096
"""Acquisition times kept to measure the request rate when no limit is known."""
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Seconds in an `x-ratelimit-reset-*` value: `"1s"`, `"6m0s"`, `"20ms"`, `"1h2m3.5s"`.

    A bare number counts as seconds. Returns None for anything else.
    """
    if text is None:
        return None
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
        value = sum(float(number) * scale[unit] for number, unit in parts)
    return value if math.isfinite(value) and value >= 0 else None


def header_number(headers: Mapping[str, str], name: str) -> float | None:
    """The finite, non-negative number in header `name` (lower-cased names), else None."""
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True)
class RateLimiterStats:
    """A snapshot of a `RateLimiter`, for progress bars and tests.

    Attributes:
        rpm: Requests per minute currently paced at (limit x factor); None: unpaced.
        tpm: Tokens per minute currently paced at; None: unpaced.
        rpm_limit: The request limit in force (configured, learned or measured).
        tpm_limit: The token limit in force (configured or learned).
        factor: The AIMD multiplier, in `[min_factor, 1]`.
        acquired: Attempts let through.
        rate_limited: 429 answers observed.
        pauses: Times every caller was held (a 429, or a budget reported exhausted).
        decreases: Rate cuts made.
        waited_seconds: Total time callers slept in `acquire` / `aacquire`.
        paused_until: Clock time the current pause ends (in the limiter's clock).
        refused: Callers turned away because their slot was beyond `max_wait`.
        concurrency: The learned cap on attempts in flight; None: none learned.
        in_flight: Attempts let through whose outcome has not been observed yet.
    """

    rpm: float | None
    tpm: float | None
    rpm_limit: float | None
    tpm_limit: float | None
    factor: float
    acquired: int
    rate_limited: int
    pauses: int
    decreases: int
    waited_seconds: float
    paused_until: float
    refused: int = 0
    concurrency: int | None = None
    in_flight: int = 0


class RateLimiter:
    """Paces HTTP attempts to requests- and tokens-per-minute limits, and adapts on 429.

    Thread-safe, and usable from any number of event loops at once: `acquire` sleeps
    the calling thread, `aacquire` awaits, and both only hold an internal lock for a few
    arithmetic operations.

    Args:
        rpm: Requests per minute allowed (default: learned from headers, else unpaced).
        tpm: Tokens per minute allowed (default: learned from headers, else unpaced).
        headroom: Fraction of a known limit to pace at (a margin against edge effects).
        decrease: Rate multiplier applied on a 429 (multiplicative decrease).
        increase: Fraction of the limit added back per quiet period (additive increase).
        recovery_seconds: Quiet time (no 429) before each increase.
        cooldown_seconds: Minimum time between two cuts: 429s of requests already in
            flight when the rate was cut do not cut it again.
        min_factor: The lowest the multiplier goes.
        initial_backoff: Pause after a 429 that names no delay; doubles while 429s
            continue, back to this after a success.
        max_pause: Cap on one pause, in seconds (server-given delays included).
        max_wait: Longest one `acquire` / `aacquire` waits, in seconds. A caller whose
            slot is further away raises `RateLimitError` (with `retry_after`) at once
            and books nothing. None: wait as long as the pacing and pauses need.
        clock: Monotonic clock, in seconds.
        sleep: Blocking sleep used by `acquire`.
        async_sleep: Awaitable sleep used by `aacquire`.

    Raises:
        InvalidOptionError: A setting is out of range.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        headroom: float = 0.95,
        decrease: float = 0.5,
        increase: float = 0.1,
        recovery_seconds: float = 10.0,
        cooldown_seconds: float = 5.0,
        min_factor: float = 0.05,
        initial_backoff: float = 1.0,
        max_pause: float = 60.0,
        max_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise InvalidOptionError(f"{name} must be a positive number, not {value!r}")
        if not 0 < headroom <= 1:
            raise InvalidOptionError(f"headroom must be in (0, 1], not {headroom}")
        if not 0 < decrease < 1:
            raise InvalidOptionError(f"decrease must be between 0 and 1, not {decrease}")
        if not 0 < min_factor <= 1:
            raise InvalidOptionError(f"min_factor must be in (0, 1], not {min_factor}")
        for name, value in (
            ("increase", increase),
            ("recovery_seconds", recovery_seconds),
            ("initial_backoff", initial_backoff),
            ("max_pause", max_pause),
        ):
            if not (math.isfinite(value) and value > 0):
                raise InvalidOptionError(f"{name} must be a positive number, not {value!r}")
        if not (math.isfinite(cooldown_seconds) and cooldown_seconds >= 0):
            raise InvalidOptionError(f"cooldown_seconds must be >= 0, not {cooldown_seconds}")
        if max_wait is not None and not (math.isfinite(max_wait) and max_wait >= 0):
            raise InvalidOptionError(f"max_wait must be None or >= 0, not {max_wait!r}")
        self._rpm, self._tpm = rpm, tpm
        self._headroom = headroom
        self._decrease, self._increase, self._min_factor = decrease, increase, min_factor
        self._recovery, self._cooldown = recovery_seconds, cooldown_seconds
        self._initial_backoff, self._max_pause = initial_backoff, max_pause
        self._max_wait = max_wait
        self._clock, self._sleep, self._async_sleep = clock, sleep, async_sleep
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # sync callers waiting for a slot
        self._room_futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

        self._learned_rpm: float | None = None
        self._learned_tpm: float | None = None
        self._measured_rpm: float | None = None
        self._factor = 1.0
        self._next_request = -math.inf  # when the request budget's next slot frees
        self._next_tokens = -math.inf  # when the token budget's next slot frees
        self._paused_until = -math.inf
        self._epoch = 0  # bumped by each pause: callers that slept through one re-queue
        self._last_cut = -math.inf
        self._quiet_since = clock()
        self._backoff = initial_backoff
        self._recent: deque[float] = deque(maxlen=_RECENT)
        self._token_total = 0
        self._token_count = 0
        self._acquired = self._rate_limited = self._pauses = self._decreases = 0
        self._refused = 0
        self._waited = 0.0
        self._in_flight = 0
        self._concurrency: int | None = None  # learned cap on attempts in flight
        self._concurrency_since = clock()  # start of the quiet period before a raise

    # --- the Gate protocol ---------------------------------------------------------------

    def acquire(self, tokens: int = 0) -> None:
        """Block the calling thread until an attempt of `tokens` tokens may go out.

        Raises:
            RateLimitError: The slot is more than `max_wait` away (nothing is booked).
        """
        deadline = self._deadline()
        while True:
            self._wait_for_room(deadline)
            at, epoch = self._reserve(tokens, deadline)
            delay = at - self._clock()
            if delay > 0:
                self._sleep(delay)
            if self._granted(epoch, delay):
                return

    async def aacquire(self, tokens: int = 0) -> None:
        """Await until an attempt of `tokens` tokens may go out; never blocks the loop.

        Raises:
            RateLimitError: The slot is more than `max_wait` away (nothing is booked).
        """
        deadline = self._deadline()
        while True:
            await self._await_room(deadline)
            at, epoch = self._reserve(tokens, deadline)
            delay = at - self._clock()
            if delay > 0:
                await self._async_sleep(delay)
            if self._granted(epoch, delay):
                return

    def observe(self, status: int | None, headers: Mapping[str, str]) -> None:
        """Learn from what an attempt got back: limits, remaining budget, 429s.

        Each call also ends one attempt in flight (status None: it got no response).
        """
        lowered = {name.lower(): value for name, value in headers.items()}
        with self._lock:
            now = self._clock()
            if not self._end_attempt(status, lowered, now):
                self._adapt(status, lowered, now)
            self._recover(now)
            self._wake()

    # --- extras --------------------------------------------------------------------------

    def record_request_tokens(self, tokens: float) -> None:
        """Tell the limiter how many tokens a request counted (for the running mean)."""
        if tokens > 0:
            with self._lock:
                self._token_total += round(tokens)
                self._token_count += 1

    @property
    def paused_for(self) -> float:
        """Seconds until the current pause (after a 429 or an exhausted budget) ends; 0: none."""
        with self._lock:
            return max(0.0, self._paused_until - self._clock())

    @property
    def stats(self) -> RateLimiterStats:
        """A consistent snapshot of the current rates and counters."""
        with self._lock:
            self._recover(self._clock())
            rpm_pace, tpm_pace = self._limits()
            rpm_limit, tpm_limit = self._known_limits()
            return RateLimiterStats(
                rpm=None if rpm_pace is None else rpm_pace * self._factor,
                tpm=None if tpm_pace is None else tpm_pace * self._factor,
                rpm_limit=rpm_limit if rpm_limit is not None else rpm_pace,
                tpm_limit=tpm_limit,
                factor=self._factor,
                acquired=self._acquired,
                rate_limited=self._rate_limited,
                pauses=self._pauses,
                decreases=self._decreases,
                waited_seconds=self._waited,
                paused_until=self._paused_until,
                refused=self._refused,
                concurrency=self._concurrency,
                in_flight=self._in_flight,
            )

    def close(self) -> None:
        """Release what the limiter holds: nothing here (a `SharedRateLimiter` closes its
        Redis connections), so callers close any limiter the same way."""

    def __repr__(self) -> str:
        s = self.stats
        return f"{type(self).__name__}(rpm={s.rpm}, tpm={s.tpm}, factor={s.factor:.2f})"

    # --- internals (callers hold the lock where noted) -------------------------------------

    def _deadline(self) -> float | None:
        """The clock time past which a caller entering now is refused (`max_wait`)."""
        return None if self._max_wait is None else self._clock() + self._max_wait

    def _reserve(self, tokens: int, deadline: float | None) -> tuple[float, object]:
        """Book the earliest slot for one request; returns its time and the pause epoch.

        Raises:
            RateLimitError: The slot is past `deadline`; nothing was booked or counted.
        """
        with self._lock:
            now = self._clock()
            self._recover(now)
            cost = tokens if tokens > 0 else self._mean_tokens()
            rpm_limit, tpm_limit = self._limits()
            paced_tokens = tpm_limit is not None and cost > 0
            at = max(now, self._paused_until)
            if rpm_limit is not None:
                at = max(at, self._next_request)
            if paced_tokens:
                at = max(at, self._next_tokens)
            if deadline is not None and at > deadline:
                raise self._refuse(at - now)
            if tokens > 0:
                self._token_total += tokens
                self._token_count += 1
            if rpm_limit is not None:
                self._next_request = at + _MINUTE / (rpm_limit * self._factor)
            if tpm_limit is not None and paced_tokens:
                self._next_tokens = at + cost * _MINUTE / (tpm_limit * self._factor)
            return at, self._epoch

    def _refuse(self, wait: float) -> RateLimitError:
        """The error for a caller whose slot is `wait` s away, past `max_wait` (lock held)."""
        self._refused += 1
        return RateLimitError(
            f"the rate limiter would hold this request {wait:.2f} s, longer than "
            f"max_wait ({self._max_wait} s): not sent",
            attempts=0,
            retry_after=wait,
        )

    def _pause_began(self, epoch: object) -> bool:
        """Whether a pause began since `_reserve` handed out `epoch` (it erased the booking)."""
        with self._lock:
            return self._epoch != epoch

    def _granted(self, epoch: object, slept: float) -> bool:
        """After waiting: go, unless a pause began meanwhile (it erased the booking)."""
        paused = self._pause_began(epoch)
        with self._lock:
            self._waited += max(slept, 0.0)
            if paused:
                return False
            if not self._has_room():
                return False  # another caller took the last slot: wait for the next
            self._acquired += 1
            self._in_flight += 1
            self._recent.append(self._clock())
            return True

    def _has_room(self) -> bool:
        """Whether one more attempt may be in flight (lock held)."""
        return self._concurrency is None or self._in_flight < self._concurrency

    def _wait_for_room(self, deadline: float | None) -> None:
        """Block until fewer attempts than the learned cap are in flight.

        Raises:
            RateLimitError: Still no room at `deadline` (`max_wait`).
        """
        with self._room:
            while not self._has_room():
                left = None if deadline is None else deadline - self._clock()
                if left is not None and (left <= 0 or not self._room.wait(left)):
                    raise self._refuse_for_room()
                if left is None:
                    self._room.wait()

    async def _await_room(self, deadline: float | None) -> None:
        """Async twin of `_wait_for_room`: awaits an attempt's end, never blocks the loop."""
        while True:
            with self._lock:
                if self._has_room():
                    return
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    raise self._refuse_for_room()
                loop = asyncio.get_running_loop()
                woken: asyncio.Future[None] = loop.create_future()
                self._room_futures.append((loop, woken))
            try:
                await asyncio.wait_for(woken, left)
            except TimeoutError:
                with self._lock:
                    raise self._refuse_for_room() from None
            finally:
                with self._lock:
                    if (loop, woken) in self._room_futures:
                        self._room_futures.remove((loop, woken))

    def _refuse_for_room(self) -> RateLimitError:
        """The error for a caller that found no room in flight before `max_wait` (lock held)."""
        self._refused += 1
        return RateLimitError(
            f"the rate limiter would hold this request longer than max_wait ({self._max_wait} s):"
            f" {self._in_flight} attempts in flight, the server's learned cap: not sent",
            attempts=0,
        )

    def _wake(self) -> None:
        """An attempt ended or the cap rose: let waiting callers re-check (lock held)."""
        self._room.notify_all()
        for loop, woken in self._room_futures:
            loop.call_soon_threadsafe(_resolve, woken)
        self._room_futures.clear()

    def _end_attempt(self, status: int | None, headers: Mapping[str, str], now: float) -> bool:
        """One attempt in flight ended; True if its 429 was a concurrency signal, handled
        here (lock held). `headers` are lower-cased."""
        in_flight = self._in_flight  # this attempt included
        self._in_flight = max(0, self._in_flight - 1)
        if status == 429 and self._concurrency_signal(headers, in_flight):
            self._on_concurrency_limited(in_flight, now)
            return True
        return False

    def _adapt(self, status: int | None, headers: Mapping[str, str], now: float) -> None:
        """The budget learns from a response: limits, exhausted budgets, a 429 (lock held)."""
        self._learn(headers, now)
        if status == 429:
            self._on_rate_limited(headers, now)
        elif status is not None and status < 400:
            self._backoff = self._initial_backoff

    def _concurrency_signal(self, headers: Mapping[str, str], in_flight: int) -> bool:
        """Whether a 429 says "too many at once" rather than "too fast" (lock held).

        Only a 429 with no rate headers qualifies, and only with several attempts in
        flight and no cap yet or the cap reached: below the cap, the server is refusing
        a pace, not a crowd.
        """
        if any(name.startswith(("x-ratelimit-", "retry-after")) for name in headers):
            return False
        return in_flight > 1 and (self._concurrency is None or in_flight >= self._concurrency)

    def _on_concurrency_limited(self, in_flight: int, now: float) -> None:
        """A header-less 429 at the cap: hold one attempt fewer in flight (lock held)."""
        self._rate_limited += 1
        cap = in_flight - 1
        self._concurrency_since = now
        if self._concurrency is None or cap < self._concurrency:
            self._concurrency = cap
            self._decreases += 1

    def _mean_tokens(self) -> float:
        return self._token_total / self._token_count if self._token_count else 0.0

    def _known_limits(self) -> tuple[float | None, float | None]:
        """The request and token limits, configured or learned (lock held)."""
        return _lowest(self._rpm, self._learned_rpm), _lowest(self._tpm, self._learned_tpm)

    def _limits(self) -> tuple[float | None, float | None]:
        """The request and token rates to pace at, headroom included (lock held)."""
        rpm, tpm = self._known_limits()
        if rpm is None and tpm is None:
            return self._measured_rpm, None  # a measurement, not a limit: no headroom
        return _scaled(rpm, self._headroom), _scaled(tpm, self._headroom)

    def _learn(self, headers: Mapping[str, str], now: float) -> None:
        """Limits and exhausted budgets from `x-ratelimit-*` headers (lock held)."""
        limit_requests = header_number(headers, "x-ratelimit-limit-requests")
        limit_tokens = header_number(headers, "x-ratelimit-limit-tokens")
        if limit_requests:
            self._learned_rpm, self._measured_rpm = limit_requests, None
        if limit_tokens:
            self._learned_tpm, self._measured_rpm = limit_tokens, None
        rpm_limit, tpm_limit = self._limits()
        remaining = header_number(headers, "x-ratelimit-remaining-requests")
        if remaining is not None and remaining < 1:
            slot = None if rpm_limit is None else _MINUTE / rpm_limit
            self._hold(now, parse_duration(headers.get("x-ratelimit-reset-requests")), slot)
        remaining = header_number(headers, "x-ratelimit-remaining-tokens")
        if remaining is not None and remaining < max(1.0, self._mean_tokens()):
            needed = max(1.0, self._mean_tokens())
            slot = None if tpm_limit is None else needed * _MINUTE / tpm_limit
            self._hold(now, parse_duration(headers.get("x-ratelimit-reset-tokens")), slot)

    def _hold(self, now: float, reset: float | None, slot: float | None) -> None:
        """A budget is exhausted: hold until it frees (reset, at most one slot)."""
        candidates = [d for d in (reset, slot) if d is not None]
        delay = min(candidates) if candidates else self._initial_backoff
        self._pause(now + min(delay, self._max_pause))

    def _on_rate_limited(self, headers: Mapping[str, str], now: float) -> None:
        """A 429: pause everyone and cut the rate (lock held)."""
        self._rate_limited += 1
        delay = parse_retry_after(headers)
        if delay is None:
            delay = self._backoff
            self._backoff = min(self._backoff * 2, self._max_pause)
        self._pause(now + min(delay, self._max_pause))
        if budget_left(headers):
            return  # refused for another reason than our pace: pause, but keep the rate
        self._quiet_since = now
        if now - self._last_cut < self._cooldown:
            return
        self._last_cut = now
        if self._limits() == (None, None):
            self._measured_rpm = self._measure(now)
        self._factor = max(self._min_factor, self._factor * self._decrease)
        self._decreases += 1

    def _measure(self, now: float) -> float | None:
        """Requests per minute let through over the last minute (lock held)."""
        while self._recent and self._recent[0] < now - _MINUTE:
            self._recent.popleft()
        if len(self._recent) < 2:
            return None
        span = max(now - self._recent[0], 1e-3)
        return len(self._recent) * _MINUTE / span

    def _pause(self, until: float) -> None:
        """Hold every caller until `until` (lock held). Bookings restart from there."""
        if until <= self._paused_until:
            return
        self._paused_until = until
        self._epoch += 1
        self._pauses += 1
        self._next_request = self._next_tokens = until

    def _recover(self, now: float) -> None:
        """Additive increase: one step per quiet period since the last 429 (lock held)."""
        if self._concurrency is not None:
            raises = math.floor((now - self._concurrency_since) / self._recovery)
            if raises >= 1:
                self._concurrency_since += raises * self._recovery
                self._concurrency += raises
                self._wake()
        steps = math.floor((now - self._quiet_since) / self._recovery)
        if steps < 1:
            return
        self._quiet_since += steps * self._recovery
        needed = math.ceil(round((1.0 - self._factor) / self._increase, 9))
        if steps > needed:
            self._measured_rpm = None  # fully recovered: stop pacing at a guess
        self._factor = min(1.0, self._factor + steps * self._increase)


def _resolve(future: asyncio.Future[None]) -> None:
    """Wake one async waiter (on its own loop); it may have given up already."""
    if not future.done():
        future.set_result(None)


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def budget_left(headers: Mapping[str, str]) -> bool:
    """Whether a 429's headers say both budgets still had room (absent: unknown, no)."""
    left = [
        header_number(headers, "x-ratelimit-remaining-requests"),
        header_number(headers, "x-ratelimit-remaining-tokens"),
    ]
    known = [value for value in left if value is not None]
    return bool(known) and all(value >= 1 for value in known)


def _lowest(*values: float | None) -> float | None:
    given = [value for value in values if value is not None]
    return min(given) if given else None
