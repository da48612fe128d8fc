"""`devtools_testutils.aio`: the async pass-through (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["recorded_by_proxy_async"]


def recorded_by_proxy_async(test: Callable[..., Any]) -> Callable[..., Any]:
    """Live mode: the test runs as written, against the real endpoint."""
    return test
