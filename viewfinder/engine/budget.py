"""Caps on what calls may spend, in tokens or dollars, retries and re-asks included.

A `Budget` is charged by every completion of every call it is given to, the moment the
completion arrives, and checked before every HTTP request: a call (or a whole batch)
that has reached its cap sends nothing more and raises `BudgetExceededError`. Re-ask
amplification (each re-ask resends the whole conversation) is what this guards against.

The check before a request also counts what that request is expected to cost: the input
tokens of the call's previous request (a retry or re-ask sends at least as much). The
first request of a call is not predicted, so a per-call cap can be overshot by that one
request; a batch cap stops the batch at the first request that would cross it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from viewfinder.cost.pricing import ModelPrice, price_for
from viewfinder.errors import BudgetExceededError, InvalidOptionError
from viewfinder.schemas.result import Usage

__all__ = ["Budget"]


@dataclass
class Budget:
    """A cap in tokens and/or dollars, shared by every request charged to it.

    Args:
        max_tokens: Input plus output tokens allowed.
        max_dollars: Dollars allowed, at `model`'s price (or `price`).
        model: Model whose price turns tokens into dollars.
        price: An explicit price (overrides the table).
        scope: Words for error messages, e.g. "per call" or "per batch".
    """

    max_tokens: int | None = None
    max_dollars: float | None = None
    model: str | None = None
    price: ModelPrice | None = None
    scope: str = "per call"
    spent: Usage = field(default_factory=Usage, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidOptionError("max_tokens must be at least 1")
        if self.max_dollars is not None and self.max_dollars <= 0:
            raise InvalidOptionError("max_dollars must be positive")
        if self.max_dollars is not None and self.price is None:
            self.price = price_for(self.model or "")
            if self.price is None:
                raise InvalidOptionError(
                    f"a dollar budget needs a price for model {self.model!r}: add it to the "
                    "price table (VIEWFINDER_PRICES) or pass price="
                )

    def copy_fresh(self) -> Budget:
        """The same caps with nothing spent (for a per-call budget)."""
        return Budget(self.max_tokens, self.max_dollars, self.model, self.price, self.scope)

    @property
    def dollars_spent(self) -> float:
        """Dollars spent so far (0 when the budget has no price)."""
        return 0.0 if self.price is None else self.price.cost(self.spent)

    def charge(self, usage: Usage) -> None:
        """Add what one completion cost."""
        with self._lock:
            self.spent = self.spent + usage

    def check(self, expected_tokens: int = 0) -> None:
        """Raise `BudgetExceededError` if the next request would cross a cap."""
        with self._lock:
            spent = self.spent
        if self.max_tokens is not None and spent.total_tokens + expected_tokens > self.max_tokens:
            raise BudgetExceededError(
                f"token budget reached: {spent.total_tokens} tokens spent "
                f"(+{expected_tokens} expected) of {self.max_tokens} {self.scope}",
                limit=f"{self.max_tokens} tokens {self.scope}",
                usage=spent,
            )
        if self.max_dollars is not None and self.price is not None:
            expected = self.price.cost(Usage(input_tokens=expected_tokens))
            if self.dollars_spent + expected > self.max_dollars:
                raise BudgetExceededError(
                    f"dollar budget reached: ${self.dollars_spent:.4f} spent "
                    f"(+${expected:.4f} expected) of ${self.max_dollars:.2f} {self.scope}",
                    limit=f"${self.max_dollars:.2f} {self.scope}",
                    usage=spent,
                )
