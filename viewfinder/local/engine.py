"""`LocalEngine`: the features this machine can compute without a model endpoint.

What `ImageAnalyzer(engine="local")` runs (and `engine="auto"` when no endpoint is
configured, and `fallback="local"` when the endpoint fails):

| feature | served by | needs |
|---|---|---|
| metadata | always | - |
| `people` | `viewfinder.local.people` (HOG pedestrians + faces) | OpenCV 4, NumPy |
| `smart_crops` | `viewfinder.local.saliency` + `viewfinder.finish.crops.smart_crops` | NumPy |
| `read` | `viewfinder.local.read.read_text` | its OCR engine |
| `color`, `image_type` (3.2) | `viewfinder.local.color` | Pillow only |
| `faces` (3.2) | `viewfinder.local.faces` (Haar cascades) | OpenCV 4, NumPy |
| `caption`, `dense_captions`, `tags`, `objects` | never: a model is needed | - |
| `categories`, `description`, `brands`, `adult`, `landmarks` (3.2) | never | - |

`pixels` serves `color`, `image_type` and `faces` for the model path as well: they are
computed here whoever answers the rest (`ImageAnalyzer` never asks a model for them when
this machine can compute them).

A requested feature the engine cannot serve stays `None` in the result and is named,
with the reason, in `ImageAnalysisResult.unserved`; a served feature that found
nothing is an empty list. Geometry is in pixels of the original image after its EXIF
orientation: the engine decodes the image at full resolution, not the model's copy.

This module imports only the core package; OpenCV, NumPy and the OCR engine are
imported when a feature first needs them.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from PIL import Image

from viewfinder.analyzers.base import version_hash
from viewfinder.analyzers.features import Feature
from viewfinder.errors import import_failure
from viewfinder.prepare.decode import decode_rgb
from viewfinder.prepare.load import ImageInput, LoadedImage, load_image
from viewfinder.schemas.features import CropRegion, DetectedPerson, ReadResult
from viewfinder.schemas.result import ImageAnalysisResult, ImageMetadata, Usage

__all__ = [
    "INSTALL_HINT",
    "LOCAL_FEATURES",
    "MODEL_ONLY_FEATURES",
    "LocalEngine",
    "decode_full",
]

INSTALL_HINT: Final = "pip install 'viewfinder[local]'"
"""How to get what the local engine's features need."""

LOCAL_FEATURES: Final = frozenset(
    {
        Feature.PEOPLE,
        Feature.SMART_CROPS,
        Feature.READ,
        Feature.COLOR,
        Feature.IMAGE_TYPE,
        Feature.FACES,
    }
)
"""Features the local engine can serve (when their dependencies are installed)."""

_COLOUR_FEATURES: Final = frozenset({Feature.COLOR, Feature.IMAGE_TYPE})
"""Served together by `LocalEngine.pixels`, from one small working copy."""

MODEL_ONLY_FEATURES: Final = frozenset(
    {
        Feature.CAPTION,
        Feature.DENSE_CAPTIONS,
        Feature.TAGS,
        Feature.OBJECTS,
        Feature.CATEGORIES,
        Feature.DESCRIPTION,
        Feature.BRANDS,
        Feature.ADULT,
        Feature.LANDMARKS,
    }
)
"""Features only a model endpoint can serve."""

_READ_MODULE: Final = "viewfinder.local.read"


def decode_full(image: ImageInput | LoadedImage) -> Image.Image:
    """Decode `image` at full resolution, as a viewer shows it, in RGB.

    The same checks as the model path (`viewfinder.prepare.decode.decode_rgb`): size,
    format, decompression bombs; alpha is flattened onto white.

    Args:
        image: A path, bytes, a binary file object, a PIL image, an http(s) URL, or
            an already loaded image.

    Returns:
        The RGB image, EXIF orientation applied.

    Raises:
        ImageError: The image cannot be used (see `prepare_image`).
    """
    loaded = load_image(image)
    return decode_rgb(loaded.data, loaded.source)


def _missing(exc: ImportError) -> str:
    name = exc.name or "a package of the local extra"
    return f"needs {name}, which is {import_failure('local', exc)}"


class LocalEngine:
    """Computes metadata, people, smart crops and read on this machine.

    Thread-safe; the detectors are built once per thread on first use.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: str | None = None

    # --- the features and the version -------------------------------------------------

    @staticmethod
    def _people(picture: Image.Image) -> list[DetectedPerson]:
        from viewfinder.local.people import detect_people

        return detect_people(picture)

    @staticmethod
    def _smart_crops(picture: Image.Image, ratios: Sequence[float]) -> list[CropRegion]:
        from viewfinder.local.saliency import local_smart_crops

        return local_smart_crops(picture, ratios)

    @staticmethod
    def _read(picture: Image.Image) -> ReadResult:
        module = importlib.import_module(_READ_MODULE)  # ImportError: not installed
        read_text: Callable[[Image.Image], ReadResult] = module.read_text
        return read_text(picture)

    @property
    def version(self) -> str:
        """`local+<hash>` of the engine's libraries, versions and settings."""
        with self._lock:
            if self._version is None:
                self._version = "local+" + version_hash(*self._version_parts())
            return self._version

    def _version_parts(self) -> list[str]:
        parts = []
        try:
            from viewfinder.local import people

            parts.append(people.settings_text())
        except ImportError:
            parts.append("people:unavailable")
        try:
            from viewfinder.local import saliency

            parts.append(saliency.settings_text())
        except ImportError:
            parts.append("saliency:unavailable")
        try:
            module = importlib.import_module(_READ_MODULE)
            marker = getattr(module, "VERSION", None) or getattr(module, "__version__", "")
            parts.append(f"read:{marker or 'unversioned'}")
        except ImportError:
            parts.append("read:unavailable")
        from viewfinder.local import color, faces

        parts += [f"color:{color.VERSION}", faces.settings_text()]
        return parts

    # --- the analysis -----------------------------------------------------------------

    def analyze(
        self,
        image: ImageInput | LoadedImage,
        features: Sequence[Feature],
        *,
        smart_crops_aspect_ratios: Sequence[float] = (),
        model_reason: str = "needs a model endpoint",
        prefix: str = "",
        usage: Usage | None = None,
    ) -> ImageAnalysisResult:
        """Analyse `image` for whichever of `features` this engine can serve.

        Args:
            image: A path, bytes, a binary file object, a PIL image, an http(s) URL,
                or an already loaded image.
            features: Parsed features (`viewfinder.analyzers.features.parse_features`).
            smart_crops_aspect_ratios: Validated ratios, one crop each.
            model_reason: The `unserved` reason of features only a model serves.
            prefix: Put before every `unserved` reason (e.g. that this is a fallback).
            usage: What was spent before this engine ran (a failed model call).

        Returns:
            The result: unserved features `None` and listed in `unserved` with their
            reasons; `model_version` is `local+<hash>`.
        """
        picture = decode_full(image)
        parts: dict[str, Any] = {}
        unserved: dict[str, str] = {}
        colours = tuple(f for f in features if f in _COLOUR_FEATURES)
        if colours:  # one working copy for both (Pillow only: never an ImportError)
            parts.update(self.pixels(picture, colours))
        for feature in features:
            if feature in _COLOUR_FEATURES:
                continue
            if feature in MODEL_ONLY_FEATURES:
                unserved[feature.value] = prefix + model_reason
                continue
            try:
                parts[feature.value] = self._serve(feature, picture, smart_crops_aspect_ratios)
            except ImportError as exc:
                unserved[feature.value] = prefix + _missing(exc)
        return ImageAnalysisResult(
            model_version=self.version,
            metadata=ImageMetadata(width=picture.width, height=picture.height),
            usage=usage or Usage(),
            unserved=unserved,
            **parts,
        )

    def _serve(self, feature: Feature, picture: Image.Image, ratios: Sequence[float]) -> Any:
        if feature is Feature.PEOPLE:
            return self._people(picture)
        if feature is Feature.SMART_CROPS:
            return self._smart_crops(picture, ratios)
        if feature is Feature.FACES:
            return self.pixels(picture, (feature,))[feature.value]
        return self._read(picture)

    def pixels(self, picture: Image.Image, features: Sequence[Feature]) -> dict[str, Any]:
        """`color`, `image_type` and `faces` of `picture`, those of `features` asked.

        Deterministic; no model. Colour and image type share one small working copy.

        Raises:
            ImportError: `faces` was asked and OpenCV is not installed.
        """
        from viewfinder.local import color

        parts: dict[str, Any] = {}
        if Feature.COLOR in features or Feature.IMAGE_TYPE in features:
            small = color.working_copy(picture)
            if Feature.COLOR in features:
                parts[Feature.COLOR.value] = color.color_info(small)
            if Feature.IMAGE_TYPE in features:
                parts[Feature.IMAGE_TYPE.value] = color.image_type(small)
        if Feature.FACES in features:
            from viewfinder.local.faces import detect_faces

            parts[Feature.FACES.value] = detect_faces(picture)
        return parts

    def pixels_of(
        self, image: ImageInput | LoadedImage, features: Sequence[Feature]
    ) -> tuple[ImageMetadata, dict[str, Any]]:
        """`pixels` of an image still to decode (at full size), with its size."""
        picture = decode_full(image)
        size = ImageMetadata(width=picture.width, height=picture.height)
        return size, self.pixels(picture, features)
