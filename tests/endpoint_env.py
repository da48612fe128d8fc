"""The environment variables that configure a model endpoint, for tests that must start
with none configured (only what the test passes may configure it)."""

from __future__ import annotations

import pytest

from viewfinder.analyzers.base import ENDPOINT_ENV_VARS as analyzer_endpoint_vars

ENDPOINT_ENV_VARS = (*analyzer_endpoint_vars, "VIEWFINDER_MODEL", "VIEWFINDER_MODE")


def clear_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every endpoint variable for the rest of the test."""
    for name in ENDPOINT_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
