"""Light analyzer settings: what the command line's options are declared with.

Kept apart from `analyzers/base.py`, which imports the engine (and with it openai), so
that `viewfinder --help` declares its options without loading a model client.
`viewfinder.analyzers.base` re-exports them under their old names.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Detail"]

Detail = Literal["low", "high", "auto"]
"""The image `detail` sent to the model."""
