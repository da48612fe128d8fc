"""The chat-completions side of the simulator: admission (rate limits) and answers.

:class:`ChatCompletions` is a mixin of :class:`~viewfinder.testing.simulator.Simulator`:
it owns the concurrency cap, the requests/tokens-per-minute window and the counters, and
answers one ``POST .../chat/completions`` from the shared script. The HTTP server
(:mod:`viewfinder.testing.simulator.server`) calls :meth:`ChatCompletions._handle_chat`
from its handler threads; every shared attribute is guarded by ``_lock``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from viewfinder.testing.simulator.replies import Reply, ReplyLike, estimate_prompt_tokens, to_reply
from viewfinder.testing.simulator.wire import Response, error_body, render_reply

__all__ = ["ChatCompletions", "SimulatorStats"]


@dataclass
class SimulatorStats:
    """Counters over chat-completion requests (a snapshot; see :attr:`Simulator.stats`).

    ``total == ok + rejected_429 + errors`` always holds.

    Attributes:
        total: Chat-completion requests received.
        ok: Answered with HTTP 200.
        rejected_429: Answered with HTTP 429, by the rate limiter or scripted.
        errors: Answered with any other non-200 status (scripted errors, bad
            JSON, an empty script).
        in_flight_max: Highest number of admitted requests being processed at
            the same time (rate-limited rejections are never admitted).
    """

    total: int = 0
    ok: int = 0
    rejected_429: int = 0
    errors: int = 0
    in_flight_max: int = 0


def _format_reset(seconds: float) -> str:
    """Format a duration like OpenAI's ``x-ratelimit-reset-*`` headers ("1.5s", "20ms", "1m0s")."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    rest_text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{rest_text}s" if minutes else f"{rest_text}s"


def _stated(limit: float) -> str:
    """A limit as a header states it: a whole number without a decimal point."""
    return str(int(limit)) if limit == int(limit) else str(limit)


class ChatCompletions:
    """Mixin: answers chat completions through the script, behind the rate limiter.

    The attributes below are set by ``Simulator.__init__`` (see its docstring).
    """

    latency: float
    max_concurrency: int | None
    concurrency_retry_after: bool
    rpm_limit: int | None
    tpm_limit: int | None
    default: Callable[[dict[str, Any]], ReplyLike] | None
    model_name: str | None
    rate_window: float
    limits_per_minute: bool
    requests: list[dict[str, Any]]
    headers_seen: list[dict[str, str]]
    _lock: threading.Lock
    _queue: deque[Reply]
    _stats: SimulatorStats
    _counter: int
    _in_flight: int
    _in_flight_ends: dict[int, float]
    _window: deque[tuple[float, int]]
    _window_tokens: int
    _stopping: threading.Event

    def _count(self, status: int) -> None:
        """Bump the outcome counter; caller holds the lock."""
        if status == 200:
            self._stats.ok += 1
        elif status == 429:
            self._stats.rejected_429 += 1
        else:
            self._stats.errors += 1

    def _enter(self) -> None:
        """Count an admitted request in flight; caller holds the lock."""
        self._in_flight += 1
        self._stats.in_flight_max = max(self._stats.in_flight_max, self._in_flight)

    def _leave(self, n: int, status: int) -> None:
        """An admitted request is answered: out of flight, its outcome counted."""
        with self._lock:
            self._in_flight -= 1
            self._in_flight_ends.pop(n, None)
            self._count(status)

    def _expire(self, now: float) -> None:
        """Drop window entries older than the window; caller holds the lock."""
        while self._window and self._window[0][0] <= now - self.rate_window:
            self._window_tokens -= self._window.popleft()[1]

    def _ratelimit_headers(self, now: float) -> dict[str, str]:
        """``x-ratelimit-*`` headers for the current window; caller holds the lock.

        The limits are stated per window, or per minute with ``limits_per_minute``; what
        remains and when it resets are always the window's.
        """
        headers: dict[str, str] = {}
        reset = _format_reset(self._window[-1][0] + self.rate_window - now if self._window else 0)
        scale = 60.0 / self.rate_window if self.limits_per_minute else 1.0
        if self.rpm_limit is not None:
            headers["x-ratelimit-limit-requests"] = _stated(self.rpm_limit * scale)
            headers["x-ratelimit-remaining-requests"] = str(
                max(0, self.rpm_limit - len(self._window))
            )
            headers["x-ratelimit-reset-requests"] = reset
        if self.tpm_limit is not None:
            headers["x-ratelimit-limit-tokens"] = _stated(self.tpm_limit * scale)
            headers["x-ratelimit-remaining-tokens"] = str(
                max(0, self.tpm_limit - self._window_tokens)
            )
            headers["x-ratelimit-reset-tokens"] = reset
        return headers

    def _rate_limited(self, n: int, body: dict[str, Any], now: float) -> Response | None:
        """Apply the concurrency cap and the rpm/tpm windows; caller holds the lock.

        Returns:
            A 429 response, or ``None`` when admitted (the request is then
            counted in flight and in the window).
        """
        request_id = {"x-request-id": f"req_sim_{n}"}
        if self.max_concurrency is not None and self._in_flight >= self.max_concurrency:
            headers = dict(request_id)
            if self.concurrency_retry_after:
                soonest = min(self._in_flight_ends.values(), default=now) - now
                headers["retry-after-ms"] = str(max(1, math.ceil(soonest * 1000)))
            message = (
                f"simulator: {self._in_flight} requests in flight, "
                f"max_concurrency={self.max_concurrency}"
            )
            return Response(429, error_body(429, message, "requests", None), headers)

        self._expire(now)
        cost = estimate_prompt_tokens(body)
        for key in ("max_completion_tokens", "max_tokens"):
            if isinstance(body.get(key), int):
                cost += body[key]
                break
        wait: float | None = None
        message = ""
        kind = "requests"
        if self.rpm_limit is not None and len(self._window) >= self.rpm_limit:
            wait = self._window[0][0] + self.rate_window - now
            message = f"simulator: rate limit reached for requests (rpm_limit={self.rpm_limit})"
        elif self.tpm_limit is not None and self._window_tokens + cost > self.tpm_limit:
            kind = "tokens"
            if cost > self.tpm_limit:
                message = (
                    f"simulator: request too large: {cost} tokens > tpm_limit={self.tpm_limit}"
                )
                wait = self.rate_window
            else:
                freed = self.tpm_limit - self._window_tokens
                wait = 0.0
                for at, tokens in self._window:
                    freed += tokens
                    wait = at + self.rate_window - now
                    if freed >= cost:
                        break
                message = (
                    f"simulator: rate limit reached for tokens (tpm_limit={self.tpm_limit}, "
                    f"used {self._window_tokens}, requested {cost})"
                )
        if wait is not None:
            wait = max(0.001, wait)
            headers = {
                **request_id,
                "retry-after": str(max(1, math.ceil(wait))),
                "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
                **self._ratelimit_headers(now),
            }
            return Response(429, error_body(429, message, kind, None), headers)

        if self.rpm_limit is not None or self.tpm_limit is not None:
            self._window.append((now, cost))
            self._window_tokens += cost
        return None

    def _handle_chat(
        self, raw: bytes | None, headers: dict[str, str], deployment: str | None
    ) -> Response:
        """Answer one chat-completion request (runs in a handler thread)."""
        body: Any = None
        problem: str | None = None
        if raw is None:
            problem = "simulator: could not read the request body"
        else:
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                problem = f"simulator: request body is not valid JSON: {exc}"
            else:
                if not isinstance(body, dict):
                    problem = "simulator: request body must be a JSON object"
                elif not isinstance(body.get("messages"), list):
                    problem = "simulator: 'messages' must be a list"

        with self._lock:
            self._counter += 1
            self._stats.total += 1
            n = self._counter
            if isinstance(body, dict):
                self.requests.append(body)
                self.headers_seen.append(headers)
            if problem is not None:
                self._count(400)
                return Response(
                    400, error_body(400, problem, None, None), {"x-request-id": f"req_sim_{n}"}
                )
            assert isinstance(body, dict)
            now = time.monotonic()
            limited = self._rate_limited(n, body, now)
            if limited is not None:
                self._count(429)
                return limited
            self._enter()
            reply = self._queue.popleft() if self._queue else None
            ratelimit_headers = self._ratelimit_headers(now)
            planned = self.latency + (reply.delay if reply is not None else 0.0)
            self._in_flight_ends[n] = now + planned

        status = 500
        try:
            if reply is None and self.default is not None:
                try:
                    reply = to_reply(self.default(body))
                except Exception as exc:
                    response = Response(
                        500, error_body(500, f"simulator: default raised {exc!r}", None, None)
                    )
                    return self._finish(response, n, ratelimit_headers)
                with self._lock:
                    self._in_flight_ends[n] = now + self.latency + reply.delay
            if reply is None:
                message = "simulator: no scripted reply left"
                wait_time = self.latency
                response = Response(500, error_body(500, message, None, None))
            else:
                wait_time = self.latency + reply.delay
                try:
                    response = render_reply(
                        reply, body, n, model_name=self.model_name, deployment=deployment
                    )
                except Exception as exc:  # a reply the simulator cannot render
                    message = f"simulator: could not render the scripted reply: {exc!r}"
                    response = Response(500, error_body(500, message, None, None))
            if wait_time > 0:
                self._stopping.wait(wait_time)
            status = response.status
            return self._finish(response, n, ratelimit_headers)
        finally:
            self._leave(n, status)

    @staticmethod
    def _finish(response: Response, n: int, ratelimit_headers: dict[str, str]) -> Response:
        lowered = {name.lower() for name in response.headers}
        extra = {k: v for k, v in ratelimit_headers.items() if k not in lowered}
        if "x-request-id" not in lowered:
            extra["x-request-id"] = f"req_sim_{n}"
        response.headers = {**extra, **response.headers}
        return response
