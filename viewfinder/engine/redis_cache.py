"""The answer cache over Redis: one cache for every process and replica (the `redis` extra).

Chosen by URL: `cache="redis://host:6379/0"` or `VIEWFINDER_CACHE=redis://...` (see
`viewfinder.engine.cache.open_cache`). It keeps what `ResponseCache` keeps, under the same
keys (`request_key`, the source key, the embedder's keys), so an answer stored by one
process is a hit for every other process using the same Redis.

- Entries: `viewfinder:answer:<key>` -> the answer JSON, zlib-compressed (answers are
  repetitive JSON; a few kB become under one). `ttl` is Redis' own per-entry expiry.
- Size: diskcache evicts the least recently stored entries beyond a byte limit; Redis has
  no client-side equivalent, so the bound is Redis' own: run it with `maxmemory` and
  `maxmemory-policy allkeys-lru` (`volatile-lru` evicts only entries with a TTL). Here, an
  entry whose compressed value exceeds `max_entry_bytes` is not stored, so one answer can
  never take a large share of the memory. `cache_size_limit` applies to the disk cache only.
- Outages (`redis_link.Outage`): never an exception. Unreachable Redis is one warning on
  `viewfinder.cache`, then misses and skipped writes, with Redis tried again every
  `retry_interval` seconds; a value that does not decompress is a miss.
- `clear()` and `len()` walk this prefix's keys (SCAN), never the whole database: the
  database may hold other things, and `FLUSHDB` would remove them.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator

import redis

from viewfinder.engine.redis_link import RETRY_INTERVAL, Outage, connect

__all__ = ["DEFAULT_MAX_ENTRY_BYTES", "KEY_PREFIX", "RedisCache"]

logger = logging.getLogger("viewfinder.cache")

KEY_PREFIX = "viewfinder:answer:"
"""Every entry's key starts with this; the rest is the cache key (a sha256 hex digest)."""

DEFAULT_MAX_ENTRY_BYTES = 1 << 20
"""1 MiB compressed: larger answers are not stored (the model's answers are kilobytes)."""

_SCAN_BATCH = 1000


class RedisCache:
    """Model answers in Redis, shared by every process that names the same server.

    Same interface as `ResponseCache` (`get`, `set`, `clear`, `close`, `len`), and the same
    rule: reading gives `None` rather than raise, writing is skipped rather than raise.

    Args:
        url: `redis://[:password@]host:port/db`, `rediss://...` (TLS) or `unix://path`.
        ttl: Seconds an entry lives; `None` keeps it until Redis evicts it.
        max_entry_bytes: Compressed values above this are not stored.
        retry_interval: Seconds Redis is left alone after it was unreachable.
        client: A redis-py client to use instead of `connect(url)`'s (it stays open on
            `close()`; share one client among the Redis users of one server).

    Raises:
        InvalidOptionError: redis-py cannot read `url`.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float | None = None,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        retry_interval: float = RETRY_INTERVAL,
        client: redis.Redis | None = None,
    ) -> None:
        self.ttl = ttl
        self.max_entry_bytes = max_entry_bytes
        self._owned = client is None
        self._client = client if client is not None else connect(url)
        self._outage = Outage(
            url,
            logger=logger,
            user="the answer cache",
            consequence="analyses continue uncached",
            retry_interval=retry_interval,
        )
        self.url = self._outage.shown
        """The server, without its password: `redis://host:6379/0`."""

    def get(self, key: str) -> str | None:
        """The stored answer JSON, or `None` (also when Redis or the entry fails)."""
        raw = self._outage.run("read an entry", lambda: self._client.get(KEY_PREFIX + key), None)
        if not isinstance(raw, bytes):
            return None
        try:
            return zlib.decompress(raw).decode()
        except (zlib.error, UnicodeDecodeError) as exc:
            logger.debug("cache at %s: unreadable entry %s (%s)", self.url, key[:12], exc)
            return None

    def set(self, key: str, answer_json: str) -> None:
        """Store an answer JSON under `key`; skipped when too large, expired or failing."""
        if self.ttl is not None and self.ttl <= 0:
            return  # already expired: Redis refuses a non-positive expiry
        value = zlib.compress(answer_json.encode())
        if len(value) > self.max_entry_bytes:
            logger.debug(
                "cache at %s: not storing %s (%d bytes compressed, over max_entry_bytes %d)",
                self.url,
                key[:12],
                len(value),
                self.max_entry_bytes,
            )
            return
        expiry = None if self.ttl is None else max(1, round(self.ttl * 1000))
        self._outage.run(
            "store an answer", lambda: self._client.set(KEY_PREFIX + key, value, px=expiry), None
        )

    def clear(self) -> None:
        """Remove every entry of this cache (keys under `KEY_PREFIX` only)."""

        def unlink_all() -> None:
            batch: list[bytes] = []
            for name in self._keys():
                batch.append(name)
                if len(batch) >= _SCAN_BATCH:
                    self._client.unlink(*batch)
                    batch.clear()
            if batch:
                self._client.unlink(*batch)

        self._outage.run("clear", unlink_all, None)

    def close(self) -> None:
        """Close the connections this cache opened (a client passed in stays open)."""
        if self._owned:
            try:
                self._client.close()
            except Exception as exc:
                logger.debug("closing the Redis cache failed (%s)", type(exc).__name__)

    def __len__(self) -> int:
        return self._outage.run("count entries", lambda: sum(1 for _ in self._keys()), 0)

    def __repr__(self) -> str:
        return f"RedisCache(url={self.url!r}, ttl={self.ttl})"

    def _keys(self) -> Iterator[bytes]:
        names: Iterator[bytes] = self._client.scan_iter(match=KEY_PREFIX + "*", count=_SCAN_BATCH)
        return names
