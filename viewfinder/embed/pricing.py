"""What embeddings cost, and a cap on it: prices per model and `EmbeddingBudget`.

Prices live in `viewfinder/data/embedding_prices.json` (its `_source` cites where each
came from and when it was read). Each model's entry has any of `text_tokens` and
`image_tokens` (USD per million billed tokens) and `image` (USD per image). Set
`VIEWFINDER_EMBED_PRICES` to a JSON file of the same shape to use your own (negotiated,
Azure AI Foundry, newer). A model missing from the table, or a usage the entry cannot
price (e.g. images billed in tokens the server did not report), costs None, never a
guess. The local backend (`name == "local"`) costs 0: it sends nothing anywhere.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from viewfinder.errors import BudgetExceededError, ConfigurationError, InvalidOptionError

if TYPE_CHECKING:
    from viewfinder.embed.embedder import EmbeddingUsage

__all__ = [
    "EmbeddingBudget",
    "EmbeddingPrice",
    "embedding_cost",
    "embedding_price_for",
    "load_embedding_prices",
]

LOCAL_BACKENDS = frozenset({"local"})
"""Backends that run on this machine: their embeddings cost nothing."""


@dataclass(frozen=True)
class EmbeddingPrice:
    """USD for one embedding model; None where the model's price is not known."""

    text_tokens: float | None = None
    """Per million billed text tokens."""
    image_tokens: float | None = None
    """Per million billed image tokens (Cohere v4 bills images in tokens)."""
    image: float | None = None
    """Per image (models that bill images one by one)."""

    def cost(self, usage: EmbeddingUsage) -> float | None:
        """Dollars for `usage`, or None when part of it has no price. Cache hits cost 0."""
        if usage.cache_hit:
            return 0.0
        dollars = 0.0
        if usage.input_tokens:
            if self.text_tokens is None:
                return None
            dollars += usage.input_tokens * self.text_tokens / 1_000_000
        if usage.images:
            if self.image is not None:
                dollars += usage.images * self.image
            elif self.image_tokens is not None and usage.image_tokens:
                dollars += usage.image_tokens * self.image_tokens / 1_000_000
            else:
                return None
        return dollars


def _optional(entry: dict[str, Any], key: str) -> float | None:
    value = entry.get(key)
    return None if value is None else float(value)


def _parse(data: Any, origin: str) -> dict[str, EmbeddingPrice]:
    try:
        return {
            name.lower(): EmbeddingPrice(
                text_tokens=_optional(entry, "text_tokens"),
                image_tokens=_optional(entry, "image_tokens"),
                image=_optional(entry, "image"),
            )
            for name, entry in data["models"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigurationError(f"embedding price table {origin} is not valid: {exc!r}") from exc


@cache
def _bundled() -> dict[str, EmbeddingPrice]:
    path = resources.files("viewfinder") / "data" / "embedding_prices.json"
    return _parse(json.loads(path.read_text(encoding="utf-8")), "embedding_prices.json")


def load_embedding_prices(path: str | os.PathLike[str] | None = None) -> dict[str, EmbeddingPrice]:
    """The table at `path`, else `VIEWFINDER_EMBED_PRICES`, else the bundled one.

    Raises:
        ConfigurationError: The file cannot be read or is not a valid table.
    """
    chosen = path or os.environ.get("VIEWFINDER_EMBED_PRICES")
    if not chosen:
        return _bundled()
    try:
        data = json.loads(Path(chosen).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read embedding price table {chosen}: {exc}") from exc
    return _parse(data, str(chosen))


def embedding_price_for(model: str, backend: str = "") -> EmbeddingPrice | None:
    """The price of `model` (a provider prefix such as `cohere/` is ignored); the local
    backend is free; None when the table has no entry."""
    if backend in LOCAL_BACKENDS:
        return EmbeddingPrice(0.0, 0.0, 0.0)
    return load_embedding_prices().get(model.lower().rsplit("/", 1)[-1])


def embedding_cost(usage: EmbeddingUsage, model: str, backend: str = "") -> float | None:
    """Dollars `usage` cost on `model` through `backend`; None when it has no price."""
    if usage.cache_hit:
        return 0.0
    price = embedding_price_for(model, backend)
    return None if price is None else price.cost(usage)


@dataclass
class EmbeddingBudget:
    """A cap in dollars and/or billed tokens, checked before every embeddings request.

    The embeddings sibling of `viewfinder.engine.budget.Budget` (whose prices are per
    chat token and know nothing of images). A request is refused once what was spent
    plus what the next request is expected to cost (`expected_*`, the mean of the
    requests so far) would cross a cap, so a run stops before the request that would
    overshoot, not after it.

    Args:
        max_dollars: Dollars allowed (the model needs a price: `embedding_price_for`).
        max_tokens: Billed tokens (text and image) allowed.
        scope: Words for error messages, e.g. "per run".
    """

    max_dollars: float | None = None
    max_tokens: int | None = None
    scope: str = "per run"
    dollars: float = field(default=0.0, init=False)
    tokens: int = field(default=0, init=False)
    requests: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_dollars is not None and self.max_dollars <= 0:
            raise InvalidOptionError("max_dollars must be positive")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidOptionError("max_tokens must be at least 1")

    def require_price(self, model: str, backend: str = "") -> None:
        """Refuse a dollar cap on a model with no price (it could never be enforced)."""
        if self.max_dollars is not None and embedding_price_for(model, backend) is None:
            raise InvalidOptionError(
                f"a dollar budget needs a price for embedding model {model!r}: add it to "
                "the table (VIEWFINDER_EMBED_PRICES)"
            )

    def charge(self, usage: EmbeddingUsage, dollars: float | None) -> None:
        """Add what one request cost (`dollars` None: unpriced, tokens still count)."""
        with self._lock:
            self.tokens += usage.input_tokens + usage.image_tokens
            self.dollars += dollars or 0.0
            self.requests += usage.requests

    def check(self) -> None:
        """Raise `BudgetExceededError` if the next request is expected to cross a cap."""
        with self._lock:
            dollars, tokens, requests = self.dollars, self.tokens, self.requests
        mean_dollars = dollars / requests if requests else 0.0
        mean_tokens = tokens // requests if requests else 0
        if self.max_tokens is not None and tokens + mean_tokens > self.max_tokens:
            raise BudgetExceededError(
                f"token budget reached: {tokens} tokens spent (+{mean_tokens} expected) "
                f"of {self.max_tokens} {self.scope}",
                limit=f"{self.max_tokens} tokens {self.scope}",
            )
        if self.max_dollars is not None and dollars + mean_dollars > self.max_dollars:
            raise BudgetExceededError(
                f"dollar budget reached: ${dollars:.4f} spent (+${mean_dollars:.4f} "
                f"expected) of ${self.max_dollars:.2f} {self.scope}",
                limit=f"${self.max_dollars:.2f} {self.scope}",
            )
