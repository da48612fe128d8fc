"""A live-mode stand-in for Microsoft's `devtools_testutils` (not on the package index).

Microsoft's tests of azure-ai-vision-imageanalysis import it for their recording proxy;
only their live mode exercises a service, so this is all of it they use, in live mode:
settings from the environment, no proxy, no recording. Ours, put on `PYTHONPATH` by
`tests/test_microsoft_conformance.py` for the subprocess that runs Microsoft's tests.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import pytest

__all__ = [
    "AzureRecordedTestCase",
    "EnvironmentVariableLoader",
    "recorded_by_proxy",
    "remove_batch_sanitizers",
    "test_proxy",
]


class EnvironmentVariableLoader:
    """`@EnvironmentVariableLoader("vision", vision_endpoint=fake, ...)`: each keyword is
    passed to the test, read from the upper-cased environment variable (`VISION_ENDPOINT`);
    the fake value is only for playback, which this stand-in does not do."""

    def __init__(self, directory: str, **fakes: str) -> None:
        self.names = list(fakes)

    def __call__(self, test: Callable[..., Any]) -> Callable[..., Any]:
        names = self.names

        def values() -> dict[str, str]:
            return {name: os.environ[name.upper()] for name in names}

        if _is_async(test):

            @functools.wraps(test)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await test(*args, **values(), **kwargs)

            return async_wrapper

        @functools.wraps(test)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return test(*args, **values(), **kwargs)

        return wrapper


def _is_async(test: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(test)


def recorded_by_proxy(test: Callable[..., Any]) -> Callable[..., Any]:
    """Live mode: the test runs as written, against the real endpoint."""
    return test


def remove_batch_sanitizers(names: list[str]) -> None:
    """Sanitizers belong to recordings: nothing to remove in live mode."""


@pytest.fixture(scope="session")
def test_proxy() -> None:
    """No recording proxy in live mode."""


class AzureRecordedTestCase:
    """The base of Microsoft's test classes; live mode needs only `get_credential`."""

    def get_credential(self, client_class: type, *, is_async: bool = False) -> Any:
        """Live mode's credential: azure-identity's `DefaultAzureCredential` (Entra ID)."""
        if is_async:
            from azure.identity.aio import DefaultAzureCredential
        else:
            from azure.identity import DefaultAzureCredential
        return DefaultAzureCredential()
