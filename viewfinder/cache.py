"""The answer cache (diskcache) and its key.

The key is a sha256 over everything that changes an answer: endpoint, model, structured
output mode, the messages (prompt text, with the image replaced by its digest), the
model-facing schema, the sampling parameters and `model_version`. It never includes an
API key, a header, or a URL query string. The value is the model-facing answer as JSON;
`finish` runs again on a hit, so geometry fixes apply to cached answers too.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import diskcache
import platformdirs

from viewfinder.payloads import redact_image_payloads

__all__ = ["DEFAULT_SIZE_LIMIT", "KEY_VERSION", "ResponseCache", "default_cache_dir", "request_key"]

KEY_VERSION = 1
"""Bumped whenever the key's recipe changes (old entries then simply miss)."""

DEFAULT_SIZE_LIMIT = 1 << 30
"""1 GiB; least recently stored entries are evicted beyond it."""


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


class ResponseCache:
    """Model answers on disk, shared safely by threads and processes.

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
        self._store = diskcache.Cache(
            str(self.directory), size_limit=size_limit, eviction_policy="least-recently-stored"
        )

    def get(self, key: str) -> str | None:
        """The stored answer JSON, or `None`."""
        value = self._store.get(key)
        return value if isinstance(value, str) else None

    def set(self, key: str, answer_json: str) -> None:
        """Store an answer JSON under `key`."""
        self._store.set(key, answer_json, expire=self.ttl)

    def clear(self) -> None:
        """Remove every entry."""
        self._store.clear()

    def close(self) -> None:
        """Close the underlying database files."""
        self._store.close()

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"ResponseCache(directory={str(self.directory)!r}, ttl={self.ttl})"
