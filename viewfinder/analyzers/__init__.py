"""How a question becomes an answer: custom schemas and the seven built-in features.

The analyzers are imported on first use (PEP 562 `__getattr__`): they pull in the engine,
and with it openai and instructor, which would otherwise be most of `import viewfinder`'s
time. `viewfinder.analyzers.features` (the feature names) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from viewfinder.analyzers.base import BaseAnalyzer
    from viewfinder.analyzers.custom import Analyzer
    from viewfinder.analyzers.features import ALL_FEATURES, Feature
    from viewfinder.analyzers.image_analysis import ImageAnalyzer

__all__ = ["ALL_FEATURES", "Analyzer", "BaseAnalyzer", "Feature", "ImageAnalyzer"]

_HOMES = {
    "ALL_FEATURES": "viewfinder.analyzers.features",
    "Analyzer": "viewfinder.analyzers.custom",
    "BaseAnalyzer": "viewfinder.analyzers.base",
    "Feature": "viewfinder.analyzers.features",
    "ImageAnalyzer": "viewfinder.analyzers.image_analysis",
}
"""Each exported name -> the module that defines it, imported when the name is first read."""


def __getattr__(name: str) -> Any:
    """Import an exported name's module on first access, and keep the name here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
