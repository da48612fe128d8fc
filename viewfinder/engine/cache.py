"""The answer cache (diskcache) and its key.

The key is a sha256 over everything that changes an answer: endpoint, model, structured
output mode, the messages (prompt text, with the image replaced by its digest), the
model-facing schema, the sampling parameters and `model_version`. It never includes an
API key, a header, or a URL query string. The value is the model-facing answer as JSON;
`finish` runs again on a hit, so geometry fixes apply to cached answers too.

The cache is an optimisation, so it never fails an analysis: an unreadable entry is a
miss, a failed write is skipped, and a store sqlite reports as damaged is moved aside to
`<dir>.damaged-<UTC time>-<pid>` (kept for inspection) and replaced by a fresh one. The
move happens under a lock file beside the directory (`<dir>.lock`, not inside it, since
the directory moves), so processes sharing one directory heal it once and all carry on
with the same fresh store. If even that fails, the cache turns itself off. Each of these
is a record on the `viewfinder.engine.cache` logger, never an exception.

Where answers are kept is chosen by `open_cache`: a directory (this module's
`ResponseCache`, the default), or a `redis://` URL (`redis_cache.RedisCache`, shared by
every process and replica naming that server; the `redis` extra, imported only then).
`VIEWFINDER_CACHE` chooses it for `cache=True`. Both satisfy `AnswerCache`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import diskcache
import platformdirs
from filelock import FileLock

from viewfinder.errors import ConfigurationError, import_failure
from viewfinder.prepare.redact import redact_image_payloads

__all__ = [
    "CACHE_ENV",
    "DEFAULT_SIZE_LIMIT",
    "KEY_VERSION",
    "AnswerCache",
    "ResponseCache",
    "default_cache_dir",
    "is_redis_location",
    "open_cache",
    "request_key",
]

logger = logging.getLogger("viewfinder.cache")

T = TypeVar("T")

KEY_VERSION = 1
"""Bumped whenever the key's recipe changes (old entries then simply miss)."""

DEFAULT_SIZE_LIMIT = 1 << 30
"""1 GiB; least recently stored entries are evicted beyond it."""

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""As `redis_link.REDIS_SCHEMES` (not imported from there: that imports redis-py)."""

HEAL_LOCK_TIMEOUT = 10.0
"""Seconds to wait for another process's repair of a damaged store before going uncached."""

_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_DAMAGE_MESSAGES = ("database disk image is malformed", "file is not a database")


CACHE_ENV = "VIEWFINDER_CACHE"
"""Where `cache=True` keeps answers: a `redis://` URL or a directory (beats
`VIEWFINDER_CACHE_DIR`); unset or empty, `default_cache_dir()`."""


@runtime_checkable
class AnswerCache(Protocol):
    """What the engine and the embedder need of a cache: `ResponseCache` or `RedisCache`.

    Every method is guarded by the cache itself: `get` gives `None` rather than raise and
    `set` is skipped rather than raise, so a cache can never fail an analysis.
    """

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, answer_json: str) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...

    def __len__(self) -> int: ...


def open_cache(
    location: str | os.PathLike[str] | None = None,
    *,
    ttl: float | None = None,
    size_limit: int = DEFAULT_SIZE_LIMIT,
) -> AnswerCache:
    """The cache at `location`: a `redis://`, `rediss://` or `unix://` URL, or a directory.

    `None` reads `VIEWFINDER_CACHE`, else uses `default_cache_dir()`. `size_limit` bounds
    the disk cache; Redis is bounded by its own `maxmemory` (see `redis_cache`).

    Raises:
        ConfigurationError: A Redis URL without the `redis` extra installed.
        InvalidOptionError: A Redis URL redis-py cannot read.
    """
    if location is None:
        location = os.environ.get(CACHE_ENV, "").strip() or None
    if isinstance(location, str) and is_redis_location(location):
        try:
            from viewfinder.engine.redis_cache import RedisCache
        except ImportError as exc:
            raise ConfigurationError(
                f"a Redis cache needs redis-py, which is {import_failure('redis', exc)}"
            ) from exc
        return RedisCache(location.strip(), ttl=ttl)
    return ResponseCache(location, ttl=ttl, size_limit=size_limit)


def is_redis_location(location: str) -> bool:
    """Whether `open_cache(location)` opens Redis rather than a directory (no redis-py
    needed to ask: `viewfinder serve` decides its defaults with it)."""
    return location.strip().lower().startswith(_REDIS_SCHEMES)


def default_cache_dir() -> Path:
    """`VIEWFINDER_CACHE_DIR`, else the per-user cache directory of the platform."""
    override = os.environ.get("VIEWFINDER_CACHE_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("viewfinder")) / "answers"


def request_key(
    *,
    endpoint: str,
    model: str,
    mode: str,
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    sampling: dict[str, Any],
    model_version: str,
) -> str:
    """The cache key of one request: a sha256 hex digest of its canonical JSON."""
    material = {
        "v": KEY_VERSION,
        "endpoint": endpoint,
        "model": model,
        "mode": mode,
        "messages": redact_image_payloads(messages),
        "schema": schema,
        "sampling": sampling,
        "model_version": model_version,
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _is_damage(exc: BaseException) -> bool:
    """Whether sqlite says the database file itself is damaged.

    Only corruption counts: a busy, locked, full or read-only database is not repaired
    by moving it aside, so those errors are misses and skipped writes instead.
    """
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _DAMAGE_CODES  # extended codes keep the primary in the low byte
    return any(message in str(exc) for message in _DAMAGE_MESSAGES)


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, or `None` when there is none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _describe(exc: BaseException) -> str:
    """`DatabaseError: database disk image is malformed`: what failed, for a log line."""
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _Store:
    """An open diskcache and the database file it was opened on."""

    cache: Any  # diskcache.Cache (untyped)
    identity: tuple[int, int] | None
    """Of `cache.db` when opened: a different file at the path means another process
    replaced the store, so this one re-opens the path."""


class ResponseCache:
    """Model answers on disk, shared safely by threads and processes.

    Every operation is guarded: reading returns `None` rather than raise, writing is
    skipped rather than raise, and a damaged store is repaired in place (see the module
    docstring). Failures are logged on `viewfinder.engine.cache`.

    Args:
        directory: Where to keep the cache; `None` means `default_cache_dir()`.
        size_limit: Bytes on disk before the oldest entries are evicted.
        ttl: Seconds an entry lives; `None` keeps it until evicted.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        ttl: float | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.ttl = ttl
        self._size_limit = size_limit
        # What diskcache would open (it expands ~ and $VARS), made absolute so that
        # every thread's connection and every identity check see the same file.
        self._path = Path(os.path.expandvars(os.path.expanduser(self.directory))).absolute()
        self._database = self._path / diskcache.core.DBNAME
        self._lock = threading.Lock()
        self._off = False
        self._warned = False  # about a failed write
        self._store: _Store | None = None
        try:
            self._store = self._open()
        except Exception as exc:  # anything at all: the cache must not stop an analysis
            # Damage is repaired; any other failure is tried once more under the lock
            # beside the directory, since another process repairing the store may have
            # renamed the directory while this open ran (sqlite: "unable to open database
            # file"). Holding the lock nobody moves it: a second failure is real and turns
            # the cache off.
            self._recover(None, exc if _is_damage(exc) else None)

    # --- the guarded operations ------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The stored answer JSON, or `None` (also when the entry cannot be read)."""
        value = self._guarded("read an entry", lambda cache: cache.get(key), None)
        return value if isinstance(value, str) else None

    def set(self, key: str, answer_json: str) -> None:
        """Store an answer JSON under `key`; skipped (and logged) when the store fails."""
        self._guarded(
            "store an answer",
            lambda cache: cache.set(key, answer_json, expire=self.ttl),
            None,
            warn_once=True,
        )

    def clear(self) -> None:
        """Remove every entry."""
        self._guarded("clear", lambda cache: cache.clear(), None)

    def close(self) -> None:
        """Close the underlying database files."""
        store = self._store
        if store is not None:
            _close_quietly(store)

    def __len__(self) -> int:
        count = self._guarded("count entries", lambda cache: len(cache), 0)
        return count if isinstance(count, int) else 0

    def __repr__(self) -> str:
        return f"ResponseCache(directory={str(self.directory)!r}, ttl={self.ttl})"

    def _guarded(
        self, what: str, operation: Callable[[Any], T], default: T, *, warn_once: bool = False
    ) -> T:
        """`operation` on the current store; on damage, once more on the repaired one.

        Any other failure (an unreadable value, a locked or full database, a missing
        value file) gives `default`: the cache is an optimisation, never the reason an
        analysis fails. It is logged at debug level, or at warning level the first time
        when `warn_once` (a write that keeps failing deserves one visible line).
        """
        store = self._current()
        for attempt in (1, 2):
            if store is None:
                return default
            try:
                return operation(store.cache)
            except Exception as exc:
                if attempt == 1 and _is_damage(exc):
                    store = self._recover(store, exc)
                    continue
                self._failed(what, exc, warn_once=warn_once)
                return default
        return default

    def _failed(self, what: str, exc: BaseException, *, warn_once: bool) -> None:
        with self._lock:
            loud = warn_once and not self._warned
            self._warned = self._warned or loud
        if loud:
            logger.warning(
                "could not %s in the cache at %s (%s); analyses continue, uncached "
                "(further failures are logged at debug level)",
                what,
                self._path,
                _describe(exc),
            )
        else:
            logger.debug("cache at %s: could not %s (%s)", self._path, what, _describe(exc))

    # --- opening and repairing -------------------------------------------------------

    def _open(self) -> _Store:
        """Open (creating if needed) the store at the path; raises what diskcache raises."""
        before = _identity(self._database)
        cache = diskcache.Cache(
            str(self._path), size_limit=self._size_limit, eviction_policy="least-recently-stored"
        )
        # Recorded before opening: if another process swapped the file meanwhile, the
        # mismatch only costs a re-open; it can never make us move a healthy store aside.
        return _Store(cache, before if before is not None else _identity(self._database))

    def _current(self) -> _Store | None:
        """The store to use: re-opened first when another process replaced the file."""
        store = self._store
        if store is None or self._off:
            return None
        if _identity(self._database) != store.identity:
            return self._recover(store, None)
        return store

    def _recover(self, broken: _Store | None, damage: BaseException | None) -> _Store | None:
        """Replace `broken` (damaged, replaced elsewhere, or never opened) by a good store.

        Under the lock beside the directory: if the path now holds a different file that
        opens, another process already repaired it and we join it; if it holds the very
        file that failed, or a file that fails to open as damaged, it is moved aside and a
        fresh store is opened. If that fails too, the cache turns itself off.
        """
        with self._lock:
            if self._store is not broken:  # another thread of this process got here first
                return self._store_in_use()
            try:
                with FileLock(
                    self._path.with_name(self._path.name + ".lock"), timeout=HEAL_LOCK_TIMEOUT
                ):
                    fresh = self._reopen_or_replace(broken, damage)
            except Exception as exc:
                self._turn_off(exc)
                fresh = None
            if broken is not None:
                _close_quietly(broken)
            self._store = fresh
            return fresh

    def _store_in_use(self) -> _Store | None:
        return None if self._off else self._store

    def _reopen_or_replace(self, broken: _Store | None, damage: BaseException | None) -> _Store:
        """Holding the lock: the store at the path, moving a damaged one aside first."""
        here = _identity(self._database)
        same_file = broken is not None and here is not None and here == broken.identity
        if damage is None or not same_file:
            try:
                store = self._open()
            except Exception as exc:
                if not _is_damage(exc):
                    raise
                damage = exc
            else:
                logger.debug("re-opened the cache at %s (its store was replaced)", self._path)
                return store
        aside = self._move_aside()
        # Said before the fresh store opens, so the moved copy is named even if that fails.
        logger.warning(
            "the answer cache at %s is damaged (%s): moved it aside to %s and started a "
            "fresh one; analyses continue without the old entries",
            self._path,
            _describe(damage),
            aside,
        )
        return self._open()

    def _move_aside(self) -> Path:
        """Rename the directory to `<dir>.damaged-<UTC time>-<pid>[-n]` beside it."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        base = f"{self._path.name}.damaged-{stamp}-{os.getpid()}"
        target = self._path.with_name(base)
        number = 0
        while target.exists():
            number += 1
            target = self._path.with_name(f"{base}-{number}")
        self._path.rename(target)
        return target

    def _turn_off(self, exc: BaseException) -> None:
        """Run without a cache from now on, saying so once."""
        if not self._off:
            self._off = True
            logger.warning(
                "the answer cache at %s cannot be used (%s); analyses continue without a cache",
                self._path,
                _describe(exc),
            )


def _close_quietly(store: _Store) -> None:
    """Close this thread's connection to `store`; a failure to close changes nothing."""
    try:
        store.cache.close()
    except Exception as exc:
        logger.debug("closing the cache failed (%s)", _describe(exc))
