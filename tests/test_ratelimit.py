"""`RateLimiter`: pacing, learned limits, 429 pauses and AIMD, on a fake clock where possible."""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
from typing import Any

import pytest

import viewfinder as vf
from viewfinder.engine.ratelimit import RateLimiter, parse_duration


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def fake(clock: FakeClock, **options: Any) -> RateLimiter:
    """A limiter on the fake clock, pacing at exactly its limit unless told otherwise."""
    options.setdefault("headroom", 1.0)
    return RateLimiter(clock=clock, sleep=clock.sleep, async_sleep=clock.asleep, **options)


def times_of(limiter: RateLimiter, clock: FakeClock, count: int, tokens: int = 0) -> list[float]:
    """Clock readings (from 0) at which `count` successive acquisitions went out."""
    start = clock.now
    result = []
    for _ in range(count):
        limiter.acquire(tokens)
        result.append(round(clock.now - start, 6))
    return result


def test_durations_in_openai_format() -> None:
    assert parse_duration("1s") == 1.0
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("20ms") == 0.02
    assert parse_duration("1h2m3.5s") == 3723.5
    assert parse_duration("2") == 2.0
    assert parse_duration("soon") is None
    assert parse_duration("1s junk") is None


def test_rpm_pacing_spaces_acquisitions_evenly() -> None:
    clock = FakeClock()
    limiter = fake(clock, rpm=60)
    assert times_of(limiter, clock, 5) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert limiter.stats.acquired == 5
    assert limiter.stats.waited_seconds == pytest.approx(4.0)


def test_tpm_pacing_by_given_tokens_then_by_the_running_mean() -> None:
    clock = FakeClock()
    limiter = fake(clock, tpm=6000)
    # 1,000 tokens at 6,000 per minute: one request every 10 s
    assert times_of(limiter, clock, 3, tokens=1000) == [0.0, 10.0, 20.0]

    clock2 = FakeClock()
    limiter2 = fake(clock2, tpm=6000)
    assert times_of(limiter2, clock2, 3) == [0.0, 0.0, 0.0]  # no size known yet: unpaced
    limiter2.record_request_tokens(600)
    limiter2.record_request_tokens(600)
    assert times_of(limiter2, clock2, 3) == [0.0, 6.0, 12.0]


def test_limits_are_learned_from_headers_and_the_lower_one_wins() -> None:
    clock = FakeClock()
    limiter = fake(clock)
    assert times_of(limiter, clock, 3) == [0.0, 0.0, 0.0]
    limiter.observe(
        200,
        {
            "X-RateLimit-Limit-Requests": "120",
            "x-ratelimit-limit-tokens": "60000",
            "x-ratelimit-remaining-requests": "117",
            "x-ratelimit-remaining-tokens": "59000",
        },
    )
    assert limiter.stats.rpm_limit == 120 and limiter.stats.tpm_limit == 60000
    assert times_of(limiter, clock, 3) == [0.0, 0.5, 1.0]
    limiter.record_request_tokens(2000)  # now tokens bind: 2,000 / 60,000 per minute = 2 s
    assert times_of(limiter, clock, 3) == pytest.approx([0.5, 2.5, 4.5])

    configured = fake(clock, rpm=30)
    configured.observe(200, {"x-ratelimit-limit-requests": "120"})
    assert configured.stats.rpm_limit == 30


def test_an_exhausted_budget_holds_until_its_slot_frees() -> None:
    clock = FakeClock()
    limiter = fake(clock)
    limiter.observe(
        200,
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "20ms",
        },
    )
    assert times_of(limiter, clock, 1) == [0.02]
    assert limiter.stats.rate_limited == 0 and limiter.stats.pauses == 1


def test_a_429_pauses_for_retry_after_else_backs_off() -> None:
    clock = FakeClock()
    limiter = fake(clock)
    limiter.observe(429, {"retry-after": "2"})
    assert times_of(limiter, clock, 1) == [2.0]
    limiter.observe(429, {"retry-after-ms": "250"})
    assert times_of(limiter, clock, 1) == [0.25]
    limiter.observe(429, {})  # no delay given: 1 s, then 2 s while 429s continue
    assert times_of(limiter, clock, 1) == [1.0]
    limiter.observe(429, {})
    assert times_of(limiter, clock, 1) == [2.0]
    limiter.observe(200, {})
    limiter.observe(429, {})
    assert times_of(limiter, clock, 1) == [1.0]
    stats = limiter.stats
    assert stats.rate_limited == 5 and stats.pauses == 5


def test_a_429_reads_retry_after_as_retries_do() -> None:
    """One parser (`parse_retry_after`): a date in the past is no wait, not a back-off."""
    clock = FakeClock()
    limiter = fake(clock)
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    limiter.observe(429, {"retry-after": past})
    assert times_of(limiter, clock, 1) == [0.0]
    limiter.observe(429, {"retry-after": "3s"})  # not RFC 9110, as for retries: back off
    assert times_of(limiter, clock, 1) == [1.0]


async def test_a_429_pauses_everyone_including_callers_already_waiting() -> None:
    slots: list[float] = []  # when the limiter asked each sleeper to wake (its booked slot)

    async def sleep_until_slot(delay: float) -> None:
        slots.append(time.monotonic() + delay - start)
        await asyncio.sleep(delay)

    limiter = RateLimiter(  # a slot every 25 ms
        rpm=2400, cooldown_seconds=0, headroom=1.0, async_sleep=sleep_until_slot
    )
    start = time.monotonic()
    await limiter.aacquire()  # goes at once
    times: list[float] = []

    async def acquire() -> None:
        await limiter.aacquire()
        times.append(time.monotonic() - start)

    waiting = asyncio.create_task(acquire())  # booked for +25 ms
    await asyncio.sleep(0.005)
    limiter.observe(429, {"retry-after-ms": "100"})
    late = [asyncio.create_task(acquire()) for _ in range(2)]
    await asyncio.gather(waiting, *late)
    assert min(times) >= 0.1  # nobody went during the pause, not even the early booking
    assert limiter.stats.rpm == 1200  # and the rate was halved: 50 ms apart after it
    # 50 ms apart as booked; when each task then wakes depends on the machine's load
    after = sorted(slot for slot in slots if slot >= 0.1)
    assert len(after) == 3
    assert after[1] - after[0] >= 0.049 and after[2] - after[1] >= 0.049


def test_aimd_cuts_once_per_burst_then_recovers_step_by_step() -> None:
    clock = FakeClock()
    limiter = fake(clock, rpm=60, recovery_seconds=10, increase=0.25, cooldown_seconds=5)
    limiter.observe(429, {"retry-after": "0"})
    assert limiter.stats.rpm == 30 and limiter.stats.factor == 0.5
    clock.now += 1
    limiter.observe(429, {"retry-after": "0"})  # same burst (within the cooldown): no cut
    assert limiter.stats.factor == 0.5
    clock.now += 5
    limiter.observe(429, {"retry-after": "0"})
    assert limiter.stats.factor == 0.25 and limiter.stats.decreases == 2
    assert times_of(limiter, clock, 2) == [0.0, 4.0]  # 15 rpm
    factors = []
    for _ in range(4):
        clock.now += 10
        factors.append(limiter.stats.factor)
    assert factors == [0.5, 0.75, 1.0, 1.0]
    assert limiter.stats.rpm == 60


def test_with_no_known_limit_a_429_cuts_the_measured_rate_until_recovered() -> None:
    clock = FakeClock()
    limiter = fake(clock, recovery_seconds=10, increase=0.5)
    for _ in range(10):
        limiter.acquire()
        clock.now += 0.5  # 120 requests per minute
    limiter.observe(429, {"retry-after": "0"})
    measured = limiter.stats.rpm_limit
    assert measured is not None and 110 < measured < 140
    assert limiter.stats.rpm == pytest.approx(measured / 2)
    clock.now += 30  # back to 1.0, then one more quiet period: the guess is dropped
    assert limiter.stats.rpm is None and limiter.stats.factor == 1.0


def test_acquire_is_thread_safe() -> None:
    limiter = RateLimiter(rpm=120_000)  # a slot every half millisecond
    start = time.monotonic()

    def worker() -> None:
        for _ in range(25):
            limiter.acquire()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in threads)
    assert limiter.stats.acquired == 200
    assert time.monotonic() - start >= 0.0995  # 200 slots, 0.5 ms apart: none shared


async def test_async_acquire_does_not_block_the_loop() -> None:
    limiter = RateLimiter(rpm=1200)  # a slot every 50 ms
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    for _ in range(4):
        await limiter.aacquire()
    stop.set()
    await task
    assert ticks >= 15  # ~30 ticks fit in the 150 ms the acquisitions waited


def test_bad_settings_are_refused_and_transport_failures_ignored() -> None:
    with pytest.raises(vf.InvalidOptionError):
        RateLimiter(rpm=0)
    with pytest.raises(vf.InvalidOptionError):
        RateLimiter(decrease=1.5)
    limiter = RateLimiter()
    limiter.observe(None, {})
    assert limiter.stats.pauses == 0 and limiter.stats.rpm is None


def test_a_known_limit_is_paced_with_headroom() -> None:
    clock = FakeClock()
    limiter = fake(clock, rpm=600, headroom=0.95)  # 600 rpm paced at 570: a slot every 105 ms
    times = times_of(limiter, clock, 5)
    assert times == pytest.approx([i * 60 / 570 for i in range(5)], abs=1e-5)
    assert limiter.stats.rpm_limit == 600 and limiter.stats.rpm == pytest.approx(570)


def test_a_429_with_budget_left_pauses_but_does_not_cut_the_rate() -> None:
    clock = FakeClock()
    limiter = fake(clock, rpm=600)
    limiter.observe(429, {"retry-after-ms": "50", "x-ratelimit-remaining-requests": "40"})
    stats = limiter.stats
    assert stats.rate_limited == 1 and stats.pauses == 1 and stats.decreases == 0
    assert stats.factor == 1.0
    limiter.observe(429, {"retry-after-ms": "50", "x-ratelimit-remaining-requests": "0"})
    assert limiter.stats.decreases == 1 and limiter.stats.factor == 0.5


def test_max_wait_refuses_a_far_slot_at_once_and_books_nothing() -> None:
    clock = FakeClock()
    limiter = fake(clock, rpm=60, max_wait=2.0)
    assert times_of(limiter, clock, 3) == [0.0, 1.0, 2.0]  # slots within 2 s: waited for
    limiter.observe(429, {"retry-after": "30"})
    before = clock.now
    for _ in range(5):  # every caller during the pause: refused, none of them queued
        with pytest.raises(vf.RateLimitError) as refused:
            limiter.acquire()
        assert refused.value.retry_after == pytest.approx(30.0)
        assert refused.value.attempts == 0
    assert clock.now == before  # nobody slept
    assert limiter.paused_for == pytest.approx(30.0)
    stats = limiter.stats
    assert stats.refused == 5 and stats.acquired == 3
    clock.now += 30.0  # the pause is over: the next caller goes at once, not after 5 phantoms
    assert times_of(limiter, clock, 1) == [0.0]
    assert limiter.paused_for == 0.0


async def test_max_wait_applies_to_async_callers_too() -> None:
    clock = FakeClock()
    limiter = fake(clock, rpm=60, max_wait=1.5)
    await limiter.aacquire()
    limiter.observe(429, {"retry-after": "0.5"})
    await limiter.aacquire()  # 0.5 s away: waited for
    assert clock.now == pytest.approx(1000.5)
    limiter.observe(429, {"retry-after": "10"})
    with pytest.raises(vf.RateLimitError) as refused:
        await limiter.aacquire()
    assert refused.value.retry_after == pytest.approx(10.0)
    with pytest.raises(vf.InvalidOptionError):
        RateLimiter(max_wait=-1)


# --- concurrency limits (429s with no rate headers) ------------------------------------


def test_a_headerless_429_with_many_in_flight_caps_concurrency_not_the_rate() -> None:
    clock = FakeClock()
    limiter = fake(clock)
    for _ in range(8):
        limiter.acquire()
    limiter.observe(429, {})  # refused with 8 in flight: the server holds fewer
    stats = limiter.stats
    assert (stats.concurrency, stats.in_flight) == (7, 7)
    assert (stats.factor, stats.rpm, stats.pauses, limiter.paused_for) == (1.0, None, 0, 0.0)
    for in_flight in (7, 6, 5):  # the rest of the burst: down to the server's cap
        assert limiter.stats.in_flight == in_flight
        limiter.observe(429, {})
    assert (limiter.stats.concurrency, limiter.stats.in_flight) == (4, 4)
    limiter.observe(200, {})
    assert limiter.stats.concurrency == 4 and limiter.stats.factor == 1.0


async def test_callers_beyond_the_cap_wait_until_an_attempt_ends() -> None:
    clock = FakeClock()
    limiter = fake(clock)
    for _ in range(3):
        await limiter.aacquire()
    limiter.observe(429, {})  # cap 2, 2 in flight
    waiter = asyncio.create_task(limiter.aacquire())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    limiter.observe(200, {})  # one ends: the waiter goes, without any clock time passing
    await asyncio.wait_for(waiter, 1)
    assert limiter.stats.in_flight == 2 and clock.now == 1000.0


def test_a_thread_beyond_the_cap_waits_until_an_attempt_ends() -> None:
    clock = FakeClock()
    limiter = fake(clock)
    for _ in range(2):
        limiter.acquire()
    limiter.observe(429, {})  # cap 1, 1 in flight
    went = threading.Event()
    thread = threading.Thread(target=lambda: (limiter.acquire(), went.set()))
    thread.start()
    assert not went.wait(0.05)
    limiter.observe(None, {})  # an attempt that got no response ends too
    assert went.wait(5)
    thread.join(5)
    assert limiter.stats.in_flight == 1


def test_the_cap_rises_by_one_per_quiet_period_and_a_probe_429_lowers_it_again() -> None:
    clock = FakeClock()
    limiter = fake(clock, recovery_seconds=10.0)
    for _ in range(5):
        limiter.acquire()
    limiter.observe(429, {})  # cap 4
    clock.sleep(10.0)
    assert limiter.stats.concurrency == 5
    limiter.acquire()  # the probe: 5 in flight
    limiter.observe(429, {})
    assert limiter.stats.concurrency == 4 and limiter.stats.factor == 1.0


def test_a_headerless_429_below_the_cap_or_alone_is_a_rate_limit() -> None:
    clock = FakeClock()
    limiter = fake(clock)
    for _ in range(5):
        limiter.acquire()
    limiter.observe(429, {})  # cap 4, 4 in flight
    limiter.observe(200, {})
    limiter.observe(200, {})
    limiter.observe(429, {})  # 2 in flight, under the cap of 4: the pace is refused
    stats = limiter.stats
    assert stats.concurrency == 4 and stats.factor == 0.5 and stats.pauses == 1
    alone = fake(FakeClock())
    alone.acquire()
    alone.observe(429, {})  # one in flight: not a crowd
    assert alone.stats.concurrency is None and alone.stats.factor == 0.5


def test_a_429_with_rate_headers_never_caps_concurrency() -> None:
    limiter = fake(FakeClock())
    for _ in range(8):
        limiter.acquire()
    limiter.observe(429, {"retry-after-ms": "50"})
    limiter.observe(429, {"x-ratelimit-remaining-requests": "0"})
    assert limiter.stats.concurrency is None


def test_max_wait_refuses_a_caller_when_no_attempt_ends_in_time() -> None:
    limiter = fake(FakeClock(), max_wait=0.0)
    limiter.acquire()
    limiter.acquire()
    limiter.observe(429, {})  # cap 1, 1 in flight
    with pytest.raises(vf.RateLimitError):
        limiter.acquire()
    assert limiter.stats.refused == 1 and limiter.stats.in_flight == 1
