"""`SharedRateLimiter`: one rate budget per model deployment, shared through Redis.

Every replica and process pacing the same deployment (endpoint + model) holds a
`SharedRateLimiter` on the same Redis: a 429 seen by one pauses all, a limit learned from
one's `x-ratelimit-*` headers paces all, and the slots they book never overlap, so together
they stay under the provider's limit instead of each discovering it alone.

Algorithm: the same GCRA (a token bucket without burst) and AIMD as `RateLimiter`, each
operation ONE atomic Lua script (redis-py `register_script`, run by EVALSHA) over ONE hash
per deployment, `viewfinder:rate:<id>` (`id`: 16 hex digits of the SHA-256 of the endpoint
URL, without query or credentials, and the model; never the key). Its fields: the request
and token budgets' next slots, the pause's end and epoch, the AIMD factor, the last cut,
the start of the quiet period, the backoff, the learned limits and the measured rate.

- `reserve`: recover (additive increase), then book the earliest slot at or after now, the
  pause's end and both budgets' next slots; past `max_wait` it books nothing. Returns the
  delay: the caller sleeps locally (no polling) and then re-queues if the epoch moved (a
  pause began meanwhile), as `RateLimiter` does.
- `observe`: learn limits, hold on an exhausted budget, and on a 429 pause everyone and cut
  the rate (once per cooldown; not when the headers show budget left); back off.
- `peek`: the rates and pause, for `stats` and `paused_for`.

Time is Redis' own (`TIME`), so hosts with skewed clocks share one clock; only delays
(slot - Redis' now) cross to the client. The hash expires an hour after its last use.
With no limit known, the rate measured for the first cut is global too: the slots granted
in the last minute (a sorted set beside the hash, at most 4096 entries).

Per process (kept local, as they cannot or need not be shared): attempts in flight and the
learned concurrency cap (a server's cap on parallel requests is per connection pool as far
as we can tell), the running mean of request sizes, and the `stats` counters (`acquired`,
`rate_limited`, `pauses` and `decreases` this process caused, `waited_seconds`, `refused`).

A Redis that is down or failing (`redis_link.Outage`: one warning, Redis skipped for a few
seconds, INFO when back, the password never shown) is never an error: the process paces
on its own in-process budget with the same settings meanwhile, and returns to the shared
one when Redis answers again.

The `limits` library was considered: its Redis strategies count requests in windows (hit /
test) but do not book a future slot, adapt to 429s or learn limits from headers.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from viewfinder.engine.ratelimit import (
    RateLimiter,
    RateLimiterStats,
    budget_left,
    header_number,
    parse_duration,
)
from viewfinder.engine.redis_link import RETRY_INTERVAL, Outage, connect
from viewfinder.engine.retry import parse_retry_after
from viewfinder.errors import InvalidOptionError

__all__ = ["KEY_PREFIX", "SharedRateLimiter", "deployment_id", "shared_limiter"]

logger = logging.getLogger("viewfinder.ratelimit")

KEY_PREFIX = "viewfinder:rate:"
"""Each deployment's hash is `KEY_PREFIX + id`; its recent grants `... + id + ":recent"`."""

TTL_SECONDS = 3600.0
"""A deployment's state expires this long after its last use."""

_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end -- TIME, then writes (Redis < 5)
local function num(v)
  if v == nil or v == '' or v == false then return nil end
  return tonumber(v)
end
local function fmt(v) if v == nil then return '' end return string.format('%.6f', v) end
local key, recent = KEYS[1], KEYS[2]
local now = num(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local cfg_rpm, cfg_tpm, headroom = num(ARGV[2]), num(ARGV[3]), tonumber(ARGV[4])
local increase, recovery = tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl_ms, initial_backoff = math.floor(tonumber(ARGV[7]) * 1000), tonumber(ARGV[8])
local FIELDS = {'next_request', 'next_tokens', 'paused_until', 'epoch', 'factor', 'last_cut',
  'quiet_since', 'backoff', 'learned_rpm', 'learned_tpm', 'measured_rpm'}
local s = {}
local raw = redis.call('HMGET', key, unpack(FIELDS))
for i, name in ipairs(FIELDS) do s[name] = num(raw[i]) end
s.epoch = s.epoch or 0
s.factor = s.factor or 1
s.quiet_since = s.quiet_since or now
s.backoff = s.backoff or initial_backoff

local function save()
  local pairs_, gone = {}, {}
  for _, name in ipairs(FIELDS) do
    if s[name] ~= nil then
      table.insert(pairs_, name)
      table.insert(pairs_, string.format('%.17g', s[name]))
    else
      table.insert(gone, name)
    end
  end
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  redis.call('HSET', key, unpack(pairs_))
  redis.call('PEXPIRE', key, ttl_ms)
end
local function lowest(a, b)
  if a == nil then return b end
  if b == nil then return a end
  return math.min(a, b)
end
local function known() return lowest(cfg_rpm, s.learned_rpm), lowest(cfg_tpm, s.learned_tpm) end
local function limits()
  local r, t = known()
  if r == nil and t == nil then return s.measured_rpm, nil end
  return r and r * headroom, t and t * headroom
end
local function recover()
  local steps = math.floor((now - s.quiet_since) / recovery)
  if steps < 1 then return end
  s.quiet_since = s.quiet_since + steps * recovery
  local needed = math.ceil(math.floor((1 - s.factor) / increase * 1e9 + 0.5) / 1e9)
  if steps > needed then s.measured_rpm = nil end
  s.factor = math.min(1, s.factor + steps * increase)
end
"""

_RESERVE = (
    _PRELUDE
    + """
recover()
local rpm, tpm = limits()
local cost, max_wait = tonumber(ARGV[9]), num(ARGV[10])
local paced_tokens = tpm ~= nil and cost > 0
local at = math.max(now, s.paused_until or now)
if rpm then at = math.max(at, s.next_request or at) end
if paced_tokens then at = math.max(at, s.next_tokens or at) end
if max_wait ~= nil and at - now > max_wait then
  save()
  return {0, fmt(at - now), s.epoch, fmt(at)}
end
if rpm then s.next_request = at + 60 / (rpm * s.factor) end
if paced_tokens then s.next_tokens = at + cost * 60 / (tpm * s.factor) end
local r, t = known()
if r == nil and t == nil then
  local seq = redis.call('HINCRBY', key, 'seq', 1)
  redis.call('ZADD', recent, at, seq)
  redis.call('ZREMRANGEBYSCORE', recent, '-inf', '(' .. (now - 60))
  local extra = redis.call('ZCARD', recent) - 4096
  if extra > 0 then redis.call('ZREMRANGEBYRANK', recent, 0, extra - 1) end
  redis.call('PEXPIRE', recent, ttl_ms)
end
save()
return {1, fmt(at - now), s.epoch, fmt(at)}
"""
)

_OBSERVE = (
    _PRELUDE
    + """
local kind = ARGV[9]
local decrease, min_factor = tonumber(ARGV[19]), tonumber(ARGV[20])
local cooldown, max_pause = tonumber(ARGV[21]), tonumber(ARGV[22])
local pauses, decreases = 0, 0
local function pause(until_)
  if s.paused_until ~= nil and until_ <= s.paused_until then return end
  s.paused_until = until_
  s.epoch = s.epoch + 1
  pauses = pauses + 1
  s.next_request, s.next_tokens = until_, until_
end
local function hold(reset, slot)
  local delay = lowest(reset, slot) or initial_backoff
  pause(now + math.min(delay, max_pause))
end
local function measure()
  local first = redis.call('ZRANGEBYSCORE', recent, now - 60, now, 'WITHSCORES', 'LIMIT', 0, 1)
  local n = redis.call('ZCOUNT', recent, now - 60, now)
  if n < 2 then return nil end
  return n * 60 / math.max(now - tonumber(first[2]), 0.001)
end
local limit_requests, limit_tokens = num(ARGV[10]), num(ARGV[11])
if limit_requests and limit_requests > 0 then
  s.learned_rpm, s.measured_rpm = limit_requests, nil
end
if limit_tokens and limit_tokens > 0 then
  s.learned_tpm, s.measured_rpm = limit_tokens, nil
end
local rpm, tpm = limits()
local remaining = num(ARGV[12])
if remaining ~= nil and remaining < 1 then hold(num(ARGV[13]), rpm and 60 / rpm) end
local needed = math.max(1, tonumber(ARGV[16]))
remaining = num(ARGV[14])
if remaining ~= nil and remaining < needed then
  hold(num(ARGV[15]), tpm and needed * 60 / tpm)
end
if kind == '429' then
  local delay = num(ARGV[17])
  if delay == nil then
    delay = s.backoff
    s.backoff = math.min(s.backoff * 2, max_pause)
  end
  pause(now + math.min(delay, max_pause))
  if ARGV[18] ~= '1' then
    s.quiet_since = now
    if s.last_cut == nil or now - s.last_cut >= cooldown then
      s.last_cut = now
      local r, t = limits()
      if r == nil and t == nil then s.measured_rpm = measure() end
      s.factor = math.max(min_factor, s.factor * decrease)
      decreases = 1
    end
  end
elseif kind == 'ok' then
  s.backoff = initial_backoff
end
recover()
save()
return {pauses, decreases}
"""
)

_PEEK = (
    _PRELUDE
    + """
recover()
save()
local rpm, tpm = limits()
local r, t = known()
local pause = (s.paused_until or now) - now
return {fmt(s.factor), fmt(rpm), fmt(tpm), fmt(r or rpm), fmt(t), fmt(pause)}
"""
)


def deployment_id(endpoint: str, model: str) -> str:
    """16 hex digits naming a deployment: its endpoint URL (no credentials, query or
    fragment, no trailing slash) and model or deployment name. Never the API key."""
    parts = urlsplit(endpoint.strip())
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    where = f"{parts.scheme.lower()}://{host.lower()}{parts.path.rstrip('/')}"
    return hashlib.sha256(f"{where}\n{model}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _SharedEpoch:
    """The shared pause epoch a booking was made in (local bookings carry an int)."""

    value: int


class SharedRateLimiter(RateLimiter):
    """A `RateLimiter` whose budget lives in Redis, shared by every holder of one deployment.

    Same settings, `Gate` protocol, `stats` and `paused_for` as `RateLimiter` (module
    docstring: what is shared and what stays per process). Each booking, report and
    `stats` is one round trip to Redis in the caller's thread, from `aacquire` too (as the
    Redis answer cache's are): a fraction of a millisecond on a nearby Redis, at most the
    connect timeout once per retry interval when it is down.

    Args:
        url: The Redis URL (`redis://host:6379/0`); its password is never shown.
        deployment: The deployment's id, `deployment_id(endpoint, model)`: limiters with the
            same id on the same Redis share one budget.
        rpm: Requests per minute allowed (give every holder the same value).
        tpm: Tokens per minute allowed.
        ttl: Seconds the shared state outlives its last use.
        retry_interval: Seconds Redis is skipped after a connection failure.
        redis_clock: Seconds replacing Redis' `TIME` (tests only; None: Redis' clock).
        **options: `RateLimiter`'s other keyword arguments (headroom, max_wait, clock...).

    Raises:
        InvalidOptionError: A setting is out of range, or `url` is not a Redis URL.
    """

    def __init__(
        self,
        url: str,
        deployment: str,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        ttl: float = TTL_SECONDS,
        retry_interval: float = RETRY_INTERVAL,
        redis_clock: Callable[[], float] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(rpm, tpm, **options)
        if not (math.isfinite(ttl) and ttl > 0):
            raise InvalidOptionError(f"ttl must be a positive number, not {ttl!r}")
        self._client = connect(url)
        self._key = KEY_PREFIX + deployment
        self._keys = [self._key, self._key + ":recent"]
        self._ttl = ttl
        self._redis_clock = redis_clock
        self._outage = Outage(
            url,
            logger=logger,
            user="the shared rate limit",
            consequence="each process paces on its own budget meanwhile",
            retry_interval=retry_interval,
        )
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (("reserve", _RESERVE), ("observe", _OBSERVE), ("peek", _PEEK))
        }

    @property
    def key(self) -> str:
        """The Redis hash holding this deployment's budget."""
        return self._key

    @property
    def paused_for(self) -> float:
        """Seconds until the shared pause ends (this process's own while Redis is down)."""
        peek = self._outage.run("read the rate limit", self._peek, None)
        return super().paused_for if peek is None else max(0.0, peek[5])

    @property
    def stats(self) -> RateLimiterStats:
        """The shared rates, limits and pause, with this process's counters."""
        local = super().stats
        peek = self._outage.run("read the rate limit", self._peek, None)
        if peek is None:
            return local
        factor, rpm, tpm, rpm_limit, tpm_limit, pause = peek
        return replace(
            local,
            rpm=None if math.isnan(rpm) else rpm * factor,
            tpm=None if math.isnan(tpm) else tpm * factor,
            rpm_limit=None if math.isnan(rpm_limit) else rpm_limit,
            tpm_limit=None if math.isnan(tpm_limit) else tpm_limit,
            factor=factor,
            paused_until=self._clock() + max(0.0, pause),
        )

    def close(self) -> None:
        """Close the Redis connections (the shared state stays for the other holders)."""
        self._client.close()

    # --- the shared budget ----------------------------------------------------------------

    def _common(self) -> list[str]:
        """ARGV 1-8 of every script: the clock override and the budget's settings."""
        return [
            "" if self._redis_clock is None else repr(self._redis_clock()),
            _arg(self._rpm),
            _arg(self._tpm),
            repr(self._headroom),
            repr(self._increase),
            repr(self._recovery),
            repr(self._ttl),
            repr(self._initial_backoff),
        ]

    def _book(self, cost: float, wait: float | None) -> tuple[bool, float, int, float]:
        """Run `reserve`: (granted, delay, epoch, slot in Redis time)."""
        reply = self._scripts["reserve"](keys=self._keys, args=[*self._common(), cost, _arg(wait)])
        granted, delay, epoch, slot = reply
        return bool(granted), float(delay), int(epoch), float(slot)

    def _report(self, status: int | None, headers: Mapping[str, str], mean: float) -> list[int]:
        """Run `observe` with what the headers say: [pauses made, cuts made]."""
        kind = "429" if status == 429 else "ok" if status is not None and status < 400 else ""
        args = [
            *self._common(),
            kind,
            _arg(header_number(headers, "x-ratelimit-limit-requests")),
            _arg(header_number(headers, "x-ratelimit-limit-tokens")),
            _arg(header_number(headers, "x-ratelimit-remaining-requests")),
            _arg(parse_duration(headers.get("x-ratelimit-reset-requests"))),
            _arg(header_number(headers, "x-ratelimit-remaining-tokens")),
            _arg(parse_duration(headers.get("x-ratelimit-reset-tokens"))),
            repr(mean),
            _arg(parse_retry_after(headers)),
            "1" if budget_left(headers) else "",
            repr(self._decrease),
            repr(self._min_factor),
            repr(self._cooldown),
            repr(self._max_pause),
        ]
        pauses, decreases = self._scripts["observe"](keys=self._keys, args=args)
        return [int(pauses), int(decreases)]

    def _peek(self) -> tuple[float, float, float, float, float, float]:
        """Run `peek`: factor, paced rpm, paced tpm, rpm limit, tpm limit, pause left (NaN:
        none)."""
        reply = self._scripts["peek"](keys=self._keys, args=self._common())
        factor, rpm, tpm, rpm_limit, tpm_limit, pause = (_float(value) for value in reply)
        return factor, rpm, tpm, rpm_limit, tpm_limit, pause

    # --- RateLimiter's seams ----------------------------------------------------------------

    def _reserve(self, tokens: int, deadline: float | None) -> tuple[float, object]:
        """Book the shared slot; this process's own budget while Redis is down."""
        with self._lock:
            cost = tokens if tokens > 0 else self._mean_tokens()
        wait = None if deadline is None else deadline - self._clock()
        booked = self._outage.run("book a slot", lambda: self._book(cost, wait), None)
        if booked is None:
            return super()._reserve(tokens, deadline)
        granted, delay, epoch, _slot = booked
        with self._lock:
            if not granted:
                raise self._refuse(delay)
            if tokens > 0:
                self._token_total += tokens
                self._token_count += 1
            return self._clock() + delay, _SharedEpoch(epoch)

    def _pause_began(self, epoch: object) -> bool:
        """Whether the shared epoch moved while the caller slept (a cheap HGET)."""
        if not isinstance(epoch, _SharedEpoch):
            return super()._pause_began(epoch)
        current = self._outage.run(
            "read the pause epoch", lambda: self._client.hget(self._key, "epoch"), None
        )
        return current is not None and int(current) != epoch.value

    def observe(self, status: int | None, headers: Mapping[str, str]) -> None:
        """End one attempt in flight (per process) and report what it got to the shared
        budget; to this process's own budget while Redis is down."""
        lowered = {name.lower(): value for name, value in headers.items()}
        with self._lock:
            now = self._clock()
            crowd = self._end_attempt(status, lowered, now)
            mean = self._mean_tokens()
            self._recover(now)
            self._wake()
        if crowd:
            return  # a concurrency signal: the per-process cap handled it
        reported = self._outage.run(
            "report a response", lambda: self._report(status, lowered, mean), None
        )
        with self._lock:
            if reported is None:
                self._adapt(status, lowered, self._clock())
                return
            self._rate_limited += int(status == 429)
            self._pauses += reported[0]
            self._decreases += reported[1]


def shared_limiter(
    url: str,
    endpoint: str,
    model: str,
    rpm: float | None = None,
    tpm: float | None = None,
    **options: Any,
) -> SharedRateLimiter:
    """A `SharedRateLimiter` for the deployment `model` at `endpoint`, on the Redis at `url`
    (for `viewfinder serve` replicas, and batches split across hosts)."""
    return SharedRateLimiter(url, deployment_id(endpoint, model), rpm, tpm, **options)


def _arg(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _float(value: bytes | str) -> float:
    text = value.decode() if isinstance(value, bytes) else value
    return float(text) if text else math.nan
