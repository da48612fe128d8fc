"""Talking to Redis: one way to connect, and one rule for an outage (the `redis` extra).

Everything viewfinder keeps in Redis (the answer cache today; the Read operation store and
the shared rate limit next) connects the same way and survives Redis the same way, so both
live here, apart from what each keeps:

- `connect(url)`: a redis-py client for a `redis://`, `rediss://` or `unix://` URL, with
  short socket timeouts and ONE immediate retry (a pooled connection that went stale when
  Redis restarted is replaced silently), never redis-py's backoff, which would hold an
  analysis for seconds while Redis is down. A client is thread safe and fork safe (its
  pool re-connects in a child process); one client can serve several users of one URL.
- `Outage`: runs each operation guarded. A connection failure (refused, timed out, auth
  refused) says so ONCE as a warning on the user's logger, then skips Redis entirely for
  `retry_interval` seconds (so an unreachable host costs one connect timeout per interval,
  not one per call), then tries again; the first success after an outage says so at
  INFO. Any other Redis error (out of memory under `maxmemory` with `noeviction`, a
  read-only replica) is a warning the first time and debug after. Each gives the
  operation's default instead of raising: what is kept in Redis must never be the reason
  an analysis fails. What the default means is the user's: a miss for the cache.

A URL's password never reaches a log line, an error or a `repr`: they show `redact_url`'s
form (`redis://host:6379/0`), and exception text is scrubbed of the password too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from viewfinder.errors import InvalidOptionError
from viewfinder.prepare.redact import redact_text, redact_url

__all__ = ["REDIS_SCHEMES", "RETRY_INTERVAL", "SOCKET_TIMEOUT", "Outage", "connect", "is_redis_url"]

T = TypeVar("T")

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""URL prefixes that mean Redis (redis-py's own schemes): anything else is a directory."""

SOCKET_TIMEOUT = 2.0
"""Seconds to connect, and to wait for one reply, before Redis counts as unreachable."""

RETRY_INTERVAL = 5.0
"""Seconds Redis is left alone after a connection failure before it is tried again."""


def is_redis_url(location: str) -> bool:
    """Whether `location` names a Redis server rather than a directory."""
    return location.strip().lower().startswith(REDIS_SCHEMES)


def connect(url: str, *, timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A redis-py client for `url`; nothing is sent until it is used.

    Raises:
        InvalidOptionError: redis-py cannot read the URL (shown without its password).
    """
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
    except (ValueError, TypeError) as exc:
        raise InvalidOptionError(
            f"{redact_url(url)} is not a Redis URL redis-py can open "
            f"({type(exc).__name__}: {scrub(str(exc), url)})"
        ) from None


def scrub(text: str, url: str) -> str:
    """`text` without `url`'s password (even unquoted), URL user info or query strings."""
    password = urlsplit(url).password
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(str(secret), "<redacted>")
    return redact_text(text)


class Outage:
    """Runs operations against Redis, turning failures into defaults (module docstring).

    Args:
        url: The server's URL (only its redacted form is kept).
        logger: Where the warnings go (the user's, e.g. `viewfinder.cache`).
        user: Who is talking, for the messages: `"the answer cache"`.
        consequence: What happens meanwhile: `"analyses continue without a cache"`.
        retry_interval: Seconds to skip Redis after a connection failure.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        url: str,
        *,
        logger: logging.Logger,
        user: str,
        consequence: str,
        retry_interval: float = RETRY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shown = redact_url(url)
        self._url = url
        self._logger = logger
        self._user = user
        self._consequence = consequence
        self._retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._warned_error = False

    @property
    def down(self) -> bool:
        """Whether the last attempt failed to reach Redis (and no later one succeeded)."""
        return self._down

    def retry_now(self) -> None:
        """Let the next `run` try Redis even inside the retry interval: a last attempt
        (before a process stops) must not be skipped because of an earlier failure."""
        with self._lock:
            self._retry_at = 0.0

    def run(self, what: str, operation: Callable[[], T], default: T) -> T:
        """`operation()`, or `default` while Redis is down or when it fails."""
        with self._lock:
            if self._down and self._clock() < self._retry_at:
                return default
        try:
            value = operation()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._went_down(what, exc)
            return default
        except Exception as exc:  # anything at all: Redis must not stop an analysis
            self._failed(what, exc)
            return default
        self._came_back()
        return value

    def _went_down(self, what: str, exc: BaseException) -> None:
        with self._lock:
            first = not self._down
            self._down = True
            self._retry_at = self._clock() + self._retry_interval
        if first:
            self._logger.warning(
                "%s at %s is unreachable (could not %s: %s); %s, and Redis is tried again "
                "every %g s",
                self._user,
                self.shown,
                what,
                self._describe(exc),
                self._consequence,
                self._retry_interval,
            )
        else:
            self._logger.debug("%s at %s: still unreachable", self._user, self.shown)

    def _came_back(self) -> None:
        with self._lock:
            was_down = self._down
            self._down = False
        if was_down:
            self._logger.info("%s at %s is reachable again", self._user, self.shown)

    def _failed(self, what: str, exc: BaseException) -> None:
        with self._lock:
            loud = not self._warned_error
            self._warned_error = True
        if loud:
            self._logger.warning(
                "%s at %s: could not %s (%s); %s (further failures are logged at debug level)",
                self._user,
                self.shown,
                what,
                self._describe(exc),
                self._consequence,
            )
        else:
            self._logger.debug(
                "%s at %s: could not %s (%s)", self._user, self.shown, what, self._describe(exc)
            )

    def _describe(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {scrub(str(exc), self._url)}"
