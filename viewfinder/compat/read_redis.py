"""The Read (3.2) operation store over Redis: one store for every replica (the `redis` extra).

Chosen by `ServerSettings.redis` (`read32.open_store`): a Read submitted on one replica is
polled on any other. The contract is `read32.OperationRecords`, as the disk store's:

- Records: `viewfinder:read:<operation id>` -> the record JSON, zlib-compressed (a
  multi-page PDF's result is large and repetitive). The expiry is Redis' own, set with
  each write: 48 hours once finished, `IN_FLIGHT_SECONDS` in flight (renewed while the
  operation runs).
- Outages (`viewfinder.engine.redis_link.Outage`, on the `viewfinder.compat.read32`
  logger): one warning, Redis skipped for `retry_interval` seconds, INFO when it is back;
  the password never shows. Unlike the answer cache, an outage is not a default value
  here: `put` and `get` raise `StoreUnavailable`, so a submit is refused (503) rather
  than lost and a poll is "try again" (503) rather than "unknown" (404). A record that
  does not decompress counts as unknown.

Every call blocks (a down Redis costs a connect timeout): `ReadOperations` runs them in a
worker thread, never on the event loop.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any

import redis

from viewfinder.compat.read32 import StoreUnavailable
from viewfinder.engine.redis_link import RETRY_INTERVAL, Outage, connect

__all__ = ["KEY_PREFIX", "RedisOperationStore"]

logger = logging.getLogger("viewfinder.compat.read32")

KEY_PREFIX = "viewfinder:read:"
"""Every record's key starts with this; the rest is the operation id."""

_UNREACHABLE: Any = object()
"""`Outage.run`'s default: Redis did not answer (not the same as "no such record")."""


class RedisOperationStore:
    """Read operation records in Redis, shared by every process that names the same server.

    Args:
        url: `redis://[:password@]host:port/db`, `rediss://...` (TLS) or `unix://path`.
        retry_interval: Seconds Redis is left alone after it was unreachable.
        client: A redis-py client to use instead of `connect(url)`'s (it stays open on
            `close()`).

    Raises:
        InvalidOptionError: redis-py cannot read `url` (shown without its password).
    """

    def __init__(
        self,
        url: str,
        *,
        retry_interval: float = RETRY_INTERVAL,
        client: redis.Redis | None = None,
    ) -> None:
        self._owned = client is None
        self._client = client if client is not None else connect(url)
        self._outage = Outage(
            url,
            logger=logger,
            user="the Read operation store",
            consequence="Read submits and polls are answered 503 meanwhile",
            retry_interval=retry_interval,
        )
        self.url = self._outage.shown
        """The server, without its password: `redis://host:6379/0`."""

    def put(self, operation_id: str, record: dict[str, Any], seconds: float) -> None:
        """Keep `record` for `seconds`.

        Raises:
            StoreUnavailable: Redis did not take it (unreachable, or refused the write).
        """
        value = zlib.compress(json.dumps(record, separators=(",", ":")).encode())
        expiry = max(1, round(seconds * 1000))

        def write() -> bool:
            self._client.set(KEY_PREFIX + operation_id, value, px=expiry)
            return True

        if not self._outage.run("record a Read operation", write, False):
            raise StoreUnavailable(f"the Read operation store at {self.url} is unavailable")

    def get(self, operation_id: str) -> dict[str, Any] | None:
        """The record, or `None` when it is unknown or expired.

        Raises:
            StoreUnavailable: Redis did not answer.
        """
        raw = self._outage.run(
            "read a Read operation",
            lambda: self._client.get(KEY_PREFIX + operation_id),
            _UNREACHABLE,
        )
        if raw is _UNREACHABLE:
            raise StoreUnavailable(f"the Read operation store at {self.url} is unavailable")
        if not isinstance(raw, bytes):
            return None
        try:
            record = json.loads(zlib.decompress(raw))
        except (zlib.error, ValueError) as exc:
            logger.debug("read store at %s: unreadable record %s (%s)", self.url, operation_id, exc)
            return None
        return record if isinstance(record, dict) else None

    def retry_now(self) -> None:
        """Let the next call try Redis even inside the retry interval (a last attempt)."""
        self._outage.retry_now()

    def close(self) -> None:
        """Close the connections this store opened (a client passed in stays open)."""
        if self._owned:
            try:
                self._client.close()
            except Exception as exc:
                logger.debug("closing the Redis Read store failed (%s)", type(exc).__name__)

    def __repr__(self) -> str:
        return f"RedisOperationStore(url={self.url!r})"
