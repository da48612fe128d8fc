"""Hooks: what the engine tells your metrics and tracing code, as typed events.

Like instructor's `client.on(...)`: register a function for an event name and the
engine calls it with that event's payload, a frozen dataclass:

```
analyzer = vf.ImageAnalyzer()
analyzer.on("response", lambda event: histogram.observe(event.latency))
analyzer.on("retry", lambda event: print(event.reason, event.wait))
```

| event | fired | payload |
|---|---|---|
| `"request"` | before each HTTP attempt (retries and re-asks included) | `RequestEvent` |
| `"response"` | for each completion received, and for each cache hit | `ResponseEvent` |
| `"retry"` | before the engine sleeps to retry a failed HTTP attempt | `RetryEvent` |
| `"reask"` | before an answer that failed validation is asked again | `ReaskEvent` |
| `"error"` | once, when a call fails for good (the error it raises) | `ErrorEvent` |

Payloads carry counts, timings and names, never the messages, the image, keys or URLs
with their query strings. Handlers run synchronously where the event happens (on the
event loop for `aanalyze`): keep them quick. A handler that raises is logged at WARNING
on the `viewfinder` logger and otherwise ignored: a metrics bug never fails an analysis.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args, overload

from viewfinder.errors import InvalidOptionError, ViewfinderError
from viewfinder.schemas.result import Usage

__all__ = [
    "ErrorEvent",
    "HookEvent",
    "HookName",
    "Hooks",
    "ReaskEvent",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
]

logger = logging.getLogger("viewfinder")

HookName: TypeAlias = Literal["request", "response", "retry", "reask", "error"]
"""The events a `Hooks` fires (see the module docstring)."""
HOOK_NAMES: tuple[HookName, ...] = get_args(HookName)


@dataclass(frozen=True)
class RequestEvent:
    """An HTTP attempt about to go out."""

    model: str
    """The model (or Azure deployment) asked."""
    attempt: int
    """Attempt of this request, from 1 (2 and up: retries after a failed attempt)."""
    reask: int
    """0 for the first question, n for the n-th validation re-ask."""


@dataclass(frozen=True)
class ResponseEvent:
    """A completion received (or a cached answer found: `cache_hit`)."""

    model: str
    attempt: int
    """The attempt that got it (0 for a cache hit)."""
    reask: int
    """0 for the first question, n for the n-th validation re-ask."""
    usage: Usage
    """This completion's tokens alone (a cache hit: no tokens, `cache_hit=True`)."""
    latency: float
    """Seconds the HTTP attempt took (0.0 for a cache hit)."""
    cache_hit: bool = False
    request_id: str | None = None
    """The provider's `x-request-id`, when it sent one."""


@dataclass(frozen=True)
class RetryEvent:
    """A failed HTTP attempt that will be retried after `wait` seconds."""

    model: str
    attempt: int
    """The attempt that failed, from 1."""
    reask: int
    reason: str
    """Log-safe reason: `"HTTP 429"`, or exception class names."""
    wait: float
    """Seconds until the next attempt."""


@dataclass(frozen=True)
class ReaskEvent:
    """An answer that failed validation, about to be asked again with the error."""

    model: str
    reask: int
    """The re-ask about to be sent, from 1."""
    reason: str
    """What failed: the validation error's class and message (redacted, shortened)."""


@dataclass(frozen=True)
class ErrorEvent:
    """A call that failed for good: `error` is what the call raises."""

    model: str
    error: ViewfinderError
    usage: Usage | None
    """What the call spent before failing (`error.usage`), when known."""


HookEvent: TypeAlias = RequestEvent | ResponseEvent | RetryEvent | ReaskEvent | ErrorEvent
"""Any event's payload."""

_PAYLOADS: dict[HookName, type[HookEvent]] = {
    "request": RequestEvent,
    "response": ResponseEvent,
    "retry": RetryEvent,
    "reask": ReaskEvent,
    "error": ErrorEvent,
}


class Hooks:
    """Handlers per event; shared by an analyzer, its engine and its batches' engines."""

    def __init__(self) -> None:
        self._handlers: dict[HookName, tuple[Callable[[Any], object], ...]] = {}
        self._lock = threading.Lock()

    @overload
    def on(self, event: Literal["request"], handler: Callable[[RequestEvent], object]) -> None: ...
    @overload
    def on(
        self, event: Literal["response"], handler: Callable[[ResponseEvent], object]
    ) -> None: ...
    @overload
    def on(self, event: Literal["retry"], handler: Callable[[RetryEvent], object]) -> None: ...
    @overload
    def on(self, event: Literal["reask"], handler: Callable[[ReaskEvent], object]) -> None: ...
    @overload
    def on(self, event: Literal["error"], handler: Callable[[ErrorEvent], object]) -> None: ...

    def on(self, event: HookName, handler: Callable[[Any], object]) -> None:
        """Call `handler(payload)` whenever `event` happens (after earlier handlers).

        Raises:
            InvalidOptionError: `event` is not one of `HookName`.
        """
        name = _checked(event)
        with self._lock:
            self._handlers[name] = (*self._handlers.get(name, ()), handler)

    def off(self, event: HookName, handler: Callable[[Any], object]) -> None:
        """Stop calling `handler` for `event` (nothing happens if it was not registered)."""
        name = _checked(event)
        with self._lock:
            self._handlers[name] = tuple(h for h in self._handlers.get(name, ()) if h != handler)

    def clear(self, event: HookName | None = None) -> None:
        """Remove every handler of `event`, or of every event."""
        with self._lock:
            if event is None:
                self._handlers.clear()
            else:
                self._handlers.pop(_checked(event), None)

    def __bool__(self) -> bool:
        """Whether any handler is registered (the engine skips building payloads if not)."""
        return any(self._handlers.values())

    def emit(self, event: HookName, payload: HookEvent) -> None:
        """Call `event`'s handlers with `payload`; a handler's exception is logged, not raised."""
        for handler in self._handlers.get(event, ()):
            try:
                handler(payload)
            except Exception as exc:  # a user's metrics bug must not fail the analysis
                logger.warning(
                    "viewfinder hook %r for %r failed (%s); the analysis goes on",
                    getattr(handler, "__qualname__", handler),
                    event,
                    type(exc).__name__,
                    exc_info=True,
                )


def _checked(event: str) -> HookName:
    if event not in _PAYLOADS:
        raise InvalidOptionError(f"unknown hook event {event!r}; choose from {HOOK_NAMES}")
    return event
