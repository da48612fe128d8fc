"""Bounded retries around each single HTTP attempt, and openai errors mapped to ours.

The openai clients viewfinder builds have `max_retries=0`: this module owns the
retries, so that every attempt is counted, logged and bounded in time.

```python
for attempt in sync_retrying(policy):
    with attempt:
        raw = client.chat.completions.with_raw_response.create(...)
```

What is retried: 408, 409, 429 and 5xx answers (unless the server says
`x-should-retry: false`), timeouts, and connection failures whose cause chain holds a
genuine transport failure. A connection "failure" caused by anything else (a test
cassette miss, a network blocked by the test runner, a bug) surfaces at once, with its
root cause in the message.

`RetryPolicy.max_total_seconds` bounds the whole request through a `Deadline`: the
engine cuts each attempt's timeout to the time left, and no attempt or sleep starts
once it has passed.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx2
import openai
import tenacity
from tenacity import RetryCallState

from viewfinder.errors import (
    AuthenticationError,
    BadRequestError,
    InvalidOptionError,
    ProviderError,
    RateLimitError,
    ServerError,
    TransportError,
    ViewfinderError,
)
from viewfinder.prepare.redact import redact_text
from viewfinder.schemas.result import Usage

__all__ = [
    "NO_RETRY",
    "Deadline",
    "RetryPolicy",
    "async_retrying",
    "describe_cause",
    "is_retryable",
    "parse_retry_after",
    "retry_after_seconds",
    "retry_reason",
    "sync_retrying",
    "to_viewfinder_error",
    "wait_seconds",
]

logger = logging.getLogger("viewfinder")

_RETRYABLE_STATUSES = frozenset({408, 409, 429})
"""Statuses retried besides 5xx: request timeout, lock conflict, rate limit."""
_NEVER_RETRIED_STATUSES = frozenset({400, 401, 403, 404, 422})
"""Statuses never retried, even when the server sends `x-should-retry: true`."""
_LOCAL_OS_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)
"""`OSError`s about local files, not the network: never a transport failure."""
_NOT_TRANSPORT_HTTPX_ERRORS = (httpx2.UnsupportedProtocol, httpx2.LocalProtocolError)
"""`httpx2.TransportError`s that are our own mistakes: retrying cannot help."""
_MAX_CAUSE_TEXT = 2000
_MAX_CHAIN = 50


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one request is retried.

    Attributes:
        max_attempts: HTTP attempts per request, the first one included.
        max_total_seconds: Time for the whole request, every attempt, backoff and
            rate-limiter wait included, from its first attempt (a validation re-ask is
            a request of its own). Each attempt's timeout is cut to the time left (the
            client's own timeout applies when shorter), so the last attempt ends at
            the deadline instead of running a full client timeout past it; no sleep
            that would end past it and no attempt is started. With the async client
            the bound is strict; with the sync one each network wait of an attempt
            ends at the deadline (an endpoint trickling bytes could run past it), and
            a rate limiter's wait is checked when it ends. The error then raised says
            the deadline was reached.
        initial_backoff: Backoff before the first retry, in seconds; it doubles after
            each further failure.
        max_backoff: Cap for one computed backoff, in seconds.
        max_retry_after: A server's `retry-after` above this is capped to this value
            (and still honoured).
        jitter: Full-jitter fraction: a computed backoff `b` becomes a uniform draw
            in `[b * (1 - jitter), b]`. Server-given delays are never jittered.

    Raises:
        InvalidOptionError: A value is out of range.
    """

    max_attempts: int = 6
    max_total_seconds: float = 120.0
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 60.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidOptionError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise InvalidOptionError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if math.isnan(self.max_total_seconds) or self.max_total_seconds <= 0:
            raise InvalidOptionError(
                f"max_total_seconds must be positive, got {self.max_total_seconds}"
            )
        for name in ("initial_backoff", "max_backoff", "max_retry_after"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InvalidOptionError(f"{name} must be a finite number >= 0, got {value}")
        if self.max_backoff < self.initial_backoff:
            raise InvalidOptionError(
                f"max_backoff ({self.max_backoff}) must be >= initial_backoff "
                f"({self.initial_backoff})"
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise InvalidOptionError(f"jitter must be between 0 and 1, got {self.jitter}")


NO_RETRY = RetryPolicy(max_attempts=1)
"""One attempt, no retry."""


ClientTimeout = float | httpx2.Timeout | None
"""An openai client's `timeout`: seconds, httpx2's per-phase timeouts, or none."""


class Deadline:
    """The end of one request's time: `RetryPolicy.max_total_seconds` from its start.

    The engine makes one per request, passes it to `sync_retrying` / `async_retrying`
    (no sleep that would end past it) and asks it for each attempt's timeout.

    Args:
        seconds: The time allowed.
        clock: Monotonic clock, in seconds.

    Attributes:
        seconds: The time allowed.
        reached: True once the deadline stopped the request (a refused attempt or
            sleep); the error raised then says so.
    """

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.reached = False
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        """Seconds left; zero or less once the deadline has passed."""
        return self._end - self._clock()

    def attempt_timeout(self, client_timeout: ClientTimeout, *, attempts: int) -> ClientTimeout:
        """The `timeout=` of the next attempt: the client's own, cut to the time left.

        Args:
            client_timeout: The client's timeout (`client.timeout`).
            attempts: Attempts made so far, for the error.

        Returns:
            Seconds, or an `httpx2.Timeout` with each phase cut.

        Raises:
            TransportError: No time is left: no attempt may start.
        """
        left = self.remaining()
        if left <= 0:
            self.reached = True
            raise self.error(attempts)
        if isinstance(client_timeout, httpx2.Timeout):
            return httpx2.Timeout(
                connect=_cut(client_timeout.connect, left),
                read=_cut(client_timeout.read, left),
                write=_cut(client_timeout.write, left),
                pool=_cut(client_timeout.pool, left),
            )
        return _cut(client_timeout, left)

    def stop(self, state: RetryCallState) -> bool:
        """tenacity stop: True when the coming sleep would end at or past the deadline."""
        if self.remaining() - (state.upcoming_sleep or 0.0) <= 0:
            self.reached = True
            return True
        return False

    def note(self) -> str:
        """What error messages append when the deadline ended the request."""
        return f"gave up at the {self.seconds:g} s deadline (RetryPolicy.max_total_seconds)"

    def error(self, attempts: int) -> TransportError:
        """The error for a request whose deadline passed before an attempt could end."""
        return TransportError(
            f"No answer from the model endpoint in time: {self.note()}", attempts=attempts
        )


def _cut(timeout: float | None, left: float) -> float:
    return left if timeout is None else min(timeout, left)


# --- classification -------------------------------------------------------------------


def is_retryable(exc: BaseException) -> bool:
    """Tell whether another HTTP attempt may succeed where `exc` failed.

    Args:
        exc: The exception raised by one HTTP attempt.

    Returns:
        True for 408, 409, 429 and 5xx answers (an `x-should-retry` header overrides
        this, except that 400/401/403/404/422 are never retried), for timeouts, and for
        connection errors caused by a genuine transport failure. False otherwise.
    """
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in _NEVER_RETRIED_STATUSES:
            return False
        should_retry = exc.response.headers.get("x-should-retry", "").strip().lower()
        if should_retry in ("true", "false"):
            return should_retry == "true"
        return status in _RETRYABLE_STATUSES or status >= 500
    if isinstance(exc, openai.APITimeoutError):
        return True
    if isinstance(exc, openai.APIConnectionError):
        return any(_is_transport_failure(cause) for cause in _cause_chain(exc)[1:])
    return False


def _is_transport_failure(exc: BaseException) -> bool:
    """Tell whether `exc` is the network failing (not a test harness, not a bug)."""
    if isinstance(exc, _NOT_TRANSPORT_HTTPX_ERRORS):
        return False
    if isinstance(exc, httpx2.TransportError):
        return True
    legacy_httpx = sys.modules.get("httpx")  # openai also accepts legacy httpx clients
    legacy_error = getattr(legacy_httpx, "TransportError", None)
    if isinstance(legacy_error, type) and isinstance(exc, legacy_error):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, _LOCAL_OS_ERRORS)


def _cause_chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then what caused it, down to the root (as a traceback shows them)."""
    chain = [exc]
    seen = {id(exc)}
    current: BaseException | None = exc
    while current is not None and len(chain) < _MAX_CHAIN:
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
        if current is None or id(current) in seen:
            break
        chain.append(current)
        seen.add(id(current))
    return chain


def describe_cause(exc: BaseException) -> str:
    """Describe the root cause of `exc`, for an error message.

    Follows `__cause__` (else `__context__`) down to the root, so that an
    `APIConnectionError` wrapping a cassette miss reads
    `CannotOverwriteExistingCassetteException: Can't overwrite existing cassette ...`.
    URL query strings, URL credentials and anything shaped like an API key or bearer
    token are redacted; the text is capped at 2,000 characters.

    Args:
        exc: Any exception.

    Returns:
        `"<ExceptionClass>: <message>"`, or the class name alone when the message is empty.
    """
    root = _cause_chain(exc)[-1]
    text = str(root).strip()
    described = f"{type(root).__name__}: {text}" if text else type(root).__name__
    described = redact_text(described)
    if len(described) > _MAX_CAUSE_TEXT:
        described = described[: _MAX_CAUSE_TEXT - 1] + "…"
    return described


# --- waiting --------------------------------------------------------------------------


def parse_retry_after(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """The delay, in seconds, a response's headers ask for before the next attempt.

    The one reading of these headers, for retries and the rate limiter: `retry-after-ms`
    (milliseconds, as OpenAI and Azure send it) wins over `retry-after` (RFC 9110:
    seconds, or an HTTP date). A date in the past asks for no wait: 0. A header that is
    missing, unparsable, negative or not finite is skipped, and so is a date without a
    time zone (`-0000`), whose instant is unknown.

    Args:
        headers: Response headers (looked up by lower-case name).
        now: Wall clock, in seconds since the epoch, for an HTTP date.

    Returns:
        The delay in seconds, or None when the headers give none.
    """
    millis = _parse_seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    raw = headers.get("retry-after")
    seconds = _parse_seconds(raw)
    if seconds is not None or not raw:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now())


def retry_after_seconds(exc: BaseException) -> float | None:
    """The delay the server asked for in an `openai.APIStatusError` (`parse_retry_after`).

    Args:
        exc: The exception raised by one HTTP attempt.

    Returns:
        The delay in seconds, or None when the server gave none (or `exc` has no response).
    """
    if not isinstance(exc, openai.APIStatusError):
        return None
    return parse_retry_after(exc.response.headers)


def _parse_seconds(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def wait_seconds(
    policy: RetryPolicy,
    attempt_number: int,
    exc: BaseException | None,
    rng: random.Random | None = None,
) -> float:
    """Compute how long to sleep after failed attempt number `attempt_number`.

    Args:
        policy: The retry policy.
        attempt_number: The attempt that just failed, starting at 1.
        exc: What it failed with, if known.
        rng: Random source for the jitter (the `random` module when None).

    Returns:
        The server's `retry-after` capped at `policy.max_retry_after` when there is one;
        otherwise `min(initial_backoff * 2 ** (attempt_number - 1), max_backoff)`
        reduced by up to `jitter` of itself.
    """
    server_delay = retry_after_seconds(exc) if exc is not None else None
    if server_delay is not None:
        return min(server_delay, policy.max_retry_after)
    exponent = min(max(attempt_number, 1) - 1, 64)
    backoff = min(policy.initial_backoff * 2.0**exponent, policy.max_backoff)
    draw = rng.random() if rng is not None else random.random()
    return backoff * (1.0 - policy.jitter * draw)


# --- tenacity -------------------------------------------------------------------------


def sync_retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[RetryCallState], None] | None = None,
    deadline: Deadline | None = None,
) -> tenacity.Retrying:
    """Build the tenacity loop that retries one request according to `policy`.

    Stops after `max_attempts`, or as soon as the next sleep would end past
    `max_total_seconds` since the first attempt (a long `retry-after` then fails at once
    instead of sleeping in vain). The last exception is re-raised as is.

    Args:
        policy: The retry policy.
        sleep: Sleeps between attempts (tests pass a recorder).
        on_retry: Called before each sleep, after the retry is logged.
        deadline: The request's deadline, to stop by (and to record that it did);
            default: `max_total_seconds` from tenacity's first attempt.

    Returns:
        A `tenacity.Retrying`, to iterate (`for attempt in ...: with attempt: ...`) or call.
    """
    return tenacity.Retrying(
        sleep=sleep,
        stop=_stop(policy, deadline),
        wait=_wait(policy),
        retry=tenacity.retry_if_exception(is_retryable),
        before_sleep=_before_sleep(policy, on_retry),
        reraise=True,
    )


def async_retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[RetryCallState], None] | None = None,
    deadline: Deadline | None = None,
) -> tenacity.AsyncRetrying:
    """Build the asyncio twin of `sync_retrying`.

    Args:
        policy: The retry policy.
        sleep: Awaitable sleep between attempts (tests pass a recorder).
        on_retry: Called before each sleep, after the retry is logged.
        deadline: As for `sync_retrying`.

    Returns:
        A `tenacity.AsyncRetrying` (`async for attempt in ...: with attempt: ...`).
    """
    return tenacity.AsyncRetrying(
        sleep=sleep,
        stop=_stop(policy, deadline),
        wait=_wait(policy),
        retry=tenacity.retry_if_exception(is_retryable),
        before_sleep=_before_sleep(policy, on_retry),
        reraise=True,
    )


def _stop(policy: RetryPolicy, deadline: Deadline | None) -> tenacity.stop.stop_base:
    if deadline is not None:  # consulted first, so that it records a stop it causes
        return _StopAt(deadline) | tenacity.stop_after_attempt(policy.max_attempts)
    # stop_before_delay also stops when the next sleep alone would cross the deadline.
    return tenacity.stop_after_attempt(policy.max_attempts) | tenacity.stop_before_delay(
        policy.max_total_seconds
    )


class _StopAt(tenacity.stop.stop_base):
    """tenacity stop at a `Deadline`."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.deadline.stop(retry_state)


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        return wait_seconds(policy, state.attempt_number, _failure(state))

    return wait


def _before_sleep(
    policy: RetryPolicy, on_retry: Callable[[RetryCallState], None] | None
) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        _log_retry(policy, state)
        if on_retry is not None:
            on_retry(state)

    return before_sleep


def _failure(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()


def _log_retry(policy: RetryPolicy, state: RetryCallState) -> None:
    logger.info(
        "Model request failed (%s); retrying in %.2f s (attempt %d of %d failed)",
        _short_reason(_failure(state)),
        state.upcoming_sleep,
        state.attempt_number,
        policy.max_attempts,
    )


def retry_reason(state: RetryCallState) -> str:
    """Why the attempt of `state` failed, log-safe (as the INFO retry line says it)."""
    return _short_reason(_failure(state))


def _short_reason(exc: BaseException | None) -> str:
    """A log-safe reason: a status code or exception class names, never URLs or headers."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    root = _cause_chain(exc)[-1]
    if root is exc:
        return type(exc).__name__
    return f"{type(exc).__name__} caused by {type(root).__name__}"


# --- mapping to viewfinder errors -----------------------------------------------------


def to_viewfinder_error(
    exc: BaseException,
    *,
    attempts: int,
    usage: Usage | None = None,
    deadline: Deadline | None = None,
) -> ViewfinderError:
    """Map the exception that ended a request to viewfinder's error tree.

    401/403 give `AuthenticationError`, 429 `RateLimitError`, 5xx/408/409
    `ServerError`, other statuses `BadRequestError`, and connection errors or timeouts
    `TransportError` (with the root cause in the message). A status error keeps the
    answer's `retry-after` as `retry_after` and its allow-listed headers as `headers`. A
    `ViewfinderError` is returned unchanged.
    Messages quote the provider's error message, redacted, and never the request's
    headers.

    Args:
        exc: The exception that ended the request.
        attempts: HTTP attempts made for the request.
        usage: What the call spent before failing.
        deadline: The request's deadline; when it ended the request (`reached`), the
            message says so.

    Returns:
        The error to raise (`raise to_viewfinder_error(exc, ...) from exc`).
    """
    if isinstance(exc, ViewfinderError):
        return exc
    ending = f"; {deadline.note()}" if deadline is not None and deadline.reached else ""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        error_class, summary = _status_error(status)
        request_id = exc.request_id or exc.response.headers.get("x-request-id")
        return error_class(
            f"{summary} (HTTP {status}): {_provider_message(exc)}{ending}",
            status_code=status,
            request_id=request_id,
            attempts=attempts,
            retry_after=retry_after_seconds(exc),
            headers=exc.response.headers,
            usage=usage,
        )
    if isinstance(exc, openai.APITimeoutError):
        summary = "The model endpoint did not answer in time"
    elif isinstance(exc, openai.APIConnectionError):
        summary = "Could not get an answer from the model endpoint"
    elif isinstance(exc, openai.APIResponseValidationError):
        return ProviderError(
            f"The model endpoint answered with data that does not match its API: "
            f"{redact_text(exc.message)}",
            status_code=exc.status_code,
            request_id=exc.response.headers.get("x-request-id"),
            attempts=attempts,
            headers=exc.response.headers,
            usage=usage,
        )
    else:
        return ProviderError(
            f"Calling the model endpoint failed: {describe_cause(exc)}",
            attempts=attempts,
            usage=usage,
        )
    return TransportError(
        f"{summary}: {describe_cause(exc)}{ending}", attempts=attempts, usage=usage
    )


def _status_error(status: int) -> tuple[type[ProviderError], str]:
    if status == 401:
        return AuthenticationError, "The model endpoint rejected the credentials"
    if status == 403:
        return AuthenticationError, "The model endpoint denied access"
    if status == 429:
        return RateLimitError, "The model endpoint is rate limiting requests"
    if status >= 500 or status in _RETRYABLE_STATUSES:
        return ServerError, "The model endpoint failed"
    return BadRequestError, "The model endpoint rejected the request"


def _provider_message(exc: openai.APIStatusError) -> str:
    """The provider's own error message (`error.message` of the body), redacted."""
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    text = message if isinstance(message, str) and message.strip() else exc.message
    return redact_text(text.strip()) or "no error message"
