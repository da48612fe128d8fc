"""Light batch settings: what the command line's options are declared with.

Kept apart from `batch/online.py`, which imports the engine (and with it openai), so
that `viewfinder batch --help` shows its defaults without loading a model client.
`viewfinder.batch.online` re-exports them under their old names.
"""

from __future__ import annotations

__all__ = ["DEFAULT_CONCURRENCY"]

DEFAULT_CONCURRENCY = 8
"""Images analysed at the same time unless told otherwise."""
