"""viewfinder: Azure AI Vision Image Analysis 4.0 features from GPT vision models.

```python
import viewfinder as vf

result = vf.analyze("photo.jpg", features=["caption", "tags", "objects"])
print(result.caption.text, [t.name for t in result.tags])
```
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Collection, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

from viewfinder.analyzers.features import ALL_FEATURES, Feature, FeatureName
from viewfinder.draw import draw, draw_comparison
from viewfinder.errors import (
    AuthenticationError,
    AzureInputError,
    BadRequestError,
    BatchFailedError,
    BatchLockedError,
    BatchTimeoutError,
    BudgetExceededError,
    ConfigurationError,
    ContentFilterError,
    DecodeBusyError,
    DecompressionBombError,
    ImageError,
    ImageFetchError,
    ImageFormatError,
    ImageSizeError,
    InvalidAnswerError,
    InvalidOptionError,
    ModelBehaviorError,
    OutputTruncatedError,
    ProviderError,
    RateLimitError,
    SchemaError,
    ServerError,
    TransportError,
    UserError,
    ViewfinderError,
)
from viewfinder.prepare import PreparedImage
from viewfinder.prepare.inputs import ImageLimits
from viewfinder.schemas import (
    AdultContent,
    AnalysisRun,
    BoundingBox,
    Caption,
    Category,
    ColorInfo,
    CropRegion,
    DenseCaption,
    Description,
    DetectedBrand,
    DetectedFace,
    DetectedObject,
    DetectedPerson,
    ImageAnalysisResult,
    ImageMetadata,
    ImageType,
    Landmark,
    ObjectParent,
    Point,
    Polygon,
    ReadBlock,
    ReadLine,
    ReadResult,
    ReadWord,
    Tag,
    Usage,
)

if TYPE_CHECKING:
    from viewfinder.analyzers import Analyzer, ImageAnalyzer
    from viewfinder.analyzers.image_analysis import FeatureArg
    from viewfinder.build.templates import PromptTemplate
    from viewfinder.embed import Embedder, Embedding, EmbeddingBudget
    from viewfinder.engine.budget import Budget
    from viewfinder.engine.cache import ResponseCache
    from viewfinder.engine.hooks import Hooks
    from viewfinder.engine.retry import RetryPolicy
    from viewfinder.prepare.load import ImageInput


def _installed_version() -> str:
    """This distribution's version, from its installed metadata: pyproject.toml is the one
    place it is written (`--version` and anything else printing it read it here). A source
    tree on `sys.path` without an install has no metadata: `0+unknown`, PEP 440's local form."""
    try:
        return metadata.version("viewfinder")
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _installed_version()

logging.getLogger("viewfinder").addHandler(logging.NullHandler())

__all__ = [
    "ALL_FEATURES",
    "AdultContent",
    "AnalysisRun",
    "Analyzer",
    "AuthenticationError",
    "AzureInputError",
    "BadRequestError",
    "BatchFailedError",
    "BatchLockedError",
    "BatchTimeoutError",
    "BoundingBox",
    "Budget",
    "BudgetExceededError",
    "Caption",
    "Category",
    "ColorInfo",
    "ConfigurationError",
    "ContentFilterError",
    "CropRegion",
    "DecodeBusyError",
    "DecompressionBombError",
    "DenseCaption",
    "Description",
    "DetectedBrand",
    "DetectedFace",
    "DetectedObject",
    "DetectedPerson",
    "Embedder",
    "Embedding",
    "EmbeddingBudget",
    "Feature",
    "FeatureName",
    "Hooks",
    "ImageAnalysisResult",
    "ImageAnalyzer",
    "ImageError",
    "ImageFetchError",
    "ImageFormatError",
    "ImageInput",
    "ImageLimits",
    "ImageMetadata",
    "ImageSizeError",
    "ImageType",
    "InvalidAnswerError",
    "InvalidOptionError",
    "Landmark",
    "ModelBehaviorError",
    "ObjectParent",
    "OutputTruncatedError",
    "Point",
    "Polygon",
    "PreparedImage",
    "PromptTemplate",
    "ProviderError",
    "RateLimitError",
    "ReadBlock",
    "ReadLine",
    "ReadResult",
    "ReadWord",
    "ResponseCache",
    "RetryPolicy",
    "SchemaError",
    "ServerError",
    "Tag",
    "TransportError",
    "Usage",
    "UserError",
    "ViewfinderError",
    "__version__",
    "aanalyze",
    "analyze",
    "draw",
    "draw_comparison",
]

_LAZY = {
    "Analyzer": "viewfinder.analyzers.custom",
    "ImageAnalyzer": "viewfinder.analyzers.image_analysis",
    "Budget": "viewfinder.engine.budget",
    "Hooks": "viewfinder.engine.hooks",
    "PromptTemplate": "viewfinder.build.templates",
    "ResponseCache": "viewfinder.engine.cache",
    "RetryPolicy": "viewfinder.engine.retry",
    "ImageInput": "viewfinder.prepare.load",
    "Embedder": "viewfinder.embed",
    "Embedding": "viewfinder.embed",
    "EmbeddingBudget": "viewfinder.embed",
}
"""Exported names imported on first access (PEP 562), not by `import viewfinder`: the
analyzers and the engine pull in openai and instructor, most of the start-up time, and
the image loader Pillow and httpx2 (`draw` and `analyze` import it when they run).
`test_startup.py` keeps them out of `import viewfinder`."""


def __getattr__(name: str) -> Any:
    """Import a lazily exported name's module on first access, and keep the name here."""
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


_ENV_KEYS = (
    "VIEWFINDER_MODEL",
    "VIEWFINDER_MODE",
    "VIEWFINDER_CACHE",
    "VIEWFINDER_CACHE_DIR",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_DEPLOYMENT",
    "OPENAI_API_VERSION",
    "AZURE_OPENAI_API_VERSION",
)
_defaults: dict[tuple[Any, ...], ImageAnalyzer] = {}


def _default_analyzer(model: str | None) -> ImageAnalyzer:
    """One `ImageAnalyzer` per model and environment, made on first use."""
    from viewfinder.analyzers.image_analysis import ImageAnalyzer

    key = (model, *(os.environ.get(name) for name in _ENV_KEYS))
    if key not in _defaults:
        _defaults.clear()
        _defaults[key] = ImageAnalyzer(model=model)
    return _defaults[key]


def analyze(
    image: ImageInput,
    features: FeatureArg = ALL_FEATURES,
    *,
    model: str | None = None,
    smart_crops_aspect_ratios: Sequence[float] | None = None,
    gender_neutral_caption: bool = False,
    language: str = "en",
    allow_hosts: Collection[str] | None = None,
) -> ImageAnalysisResult:
    """Analyse one image with a default `ImageAnalyzer` configured from the environment.

    See `ImageAnalyzer.analyze` for the arguments. An image URL whose host is, or
    resolves to, a loopback, private, link-local or cloud metadata address is refused
    before any connection unless its host is in `allow_hosts` (default:
    `VIEWFINDER_ALLOW_HOSTS`, comma-separated; a value, even `()`, replaces it).
    """
    from viewfinder.prepare.load import load_image

    analyzer = _default_analyzer(model)
    # Loaded here, not by the analyzer: the default analyzer is shared between calls.
    loaded = load_image(image, allow_hosts=allow_hosts)
    return analyzer.analyze(
        loaded,
        features,
        smart_crops_aspect_ratios=smart_crops_aspect_ratios,
        gender_neutral_caption=gender_neutral_caption,
        language=language,
    )


async def aanalyze(
    image: ImageInput,
    features: FeatureArg = ALL_FEATURES,
    *,
    model: str | None = None,
    smart_crops_aspect_ratios: Sequence[float] | None = None,
    gender_neutral_caption: bool = False,
    language: str = "en",
    allow_hosts: Collection[str] | None = None,
) -> ImageAnalysisResult:
    """Async twin of `analyze`."""
    import asyncio

    from viewfinder.prepare.load import load_image

    analyzer = _default_analyzer(model)
    loaded = await asyncio.to_thread(load_image, image, allow_hosts=allow_hosts)
    return await analyzer.aanalyze(
        loaded,
        features,
        smart_crops_aspect_ratios=smart_crops_aspect_ratios,
        gender_neutral_caption=gender_neutral_caption,
        language=language,
    )
