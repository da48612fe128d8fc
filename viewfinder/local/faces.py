"""Faces without a model endpoint: OpenCV 4's Haar cascades (Computer Vision 3.2 faces).

Computer Vision 3.2's `faces` feature now returns `faceRectangle` only (reference §5.5:
age and gender were retired), which a classic detector can give: the frontal and
profile Haar cascades of Viola & Jones (2001) that ship inside the OpenCV 4 wheel
(OpenCV 5 dropped them, hence the `<5` pin of the `local` extra). The profile cascade
runs on the mirrored image too, for faces turned either way. Detections of the cascades
go through one non-maximum suppression; everything runs on a downscaled, histogram-
equalised grey copy, and boxes are mapped back to pixels of the image given.

`face_boxes` is the one face detector of the package: `viewfinder.local.people` grows
its person boxes from the same faces, so this module also holds the box helpers both
share (`nms`, `working_copy`, `clip`, `to_pixels`, `logistic`).

**Confidences are heuristics, not probabilities**: a face's score is the number of
overlapping raw detections that agree on it (neighbours), through a logistic curve that
is 0.5 at `min_neighbors` and rises with the count. 3.2 gives faces no confidence at all.

OpenCV and NumPy are imported on first use, so `faces_available()` answers (False)
where the `local` extra is not installed instead of failing to import.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from viewfinder.schemas.cv32 import DetectedFace
from viewfinder.schemas.geometry import BoundingBox

if TYPE_CHECKING:
    import cv2
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_SETTINGS",
    "Box",
    "FaceSettings",
    "clip",
    "detect_faces",
    "face_boxes",
    "faces_available",
    "logistic",
    "nms",
    "settings_text",
    "to_pixels",
    "working_copy",
]

Box = tuple[float, float, float, float]
"""x, y, width, height in pixels of the image given (floats until the end)."""

FACE_NMS_IOU = 0.3
"""Faces overlapping a more confident face by more than this IoU are dropped."""


@dataclass(frozen=True)
class FaceSettings:
    """The face detectors' settings, and the body proportions people grows from a face.

    The last three fields are `viewfinder.local.people`'s (they stay here so its
    settings, and so its `model_version`, are what they were): the person box is
    centred on the face horizontally, `body_width` face widths wide; it starts
    `head_top` face heights above the face box (hair) and reaches `body_height` face
    heights below its top (about a standing adult), clipped to the image. Faces alone
    ignore them (`settings_text` leaves them out).

    Attributes:
        max_side: Long side, in pixels, of the working copy (only ever downscaled).
        scale: Ratio between pyramid levels of the cascades.
        min_size: Smallest face, in pixels of the working copy.
        min_neighbors: Overlapping raw detections a face needs to be kept.
        neighbor_scale: Width of the logistic curve mapping neighbours to a confidence.
        body_width: Person width, in face widths.
        head_top: Hair above the face box, in face heights.
        body_height: Person height below the face box's top, in face heights.
        cascades: Haar cascade files in `cv2.data.haarcascades`, each with whether to
            run it on the mirrored image too.
    """

    max_side: int = 512
    scale: float = 1.1
    min_size: int = 24
    min_neighbors: int = 6
    neighbor_scale: float = 4.0
    body_width: float = 3.6
    head_top: float = 0.35
    body_height: float = 7.0
    cascades: tuple[tuple[str, bool], ...] = (
        ("haarcascade_frontalface_alt2.xml", False),
        ("haarcascade_profileface.xml", True),
    )


DEFAULT_SETTINGS = FaceSettings()
"""The settings `detect_faces` uses unless told otherwise."""

_BODY_FIELDS = frozenset({"body_width", "head_top", "body_height"})


def settings_text(settings: FaceSettings = DEFAULT_SETTINGS) -> str:
    """A canonical text of the detector settings and OpenCV's version, for `model_version`.

    Args:
        settings: The detector settings (people's body proportions are left out: they
            do not change faces).

    Returns:
        Text that changes whenever `detect_faces`' answer may change; `faces:unavailable`
        when OpenCV is not installed.
    """
    try:
        import cv2
    except ImportError:
        return "faces:unavailable"
    fields = {k: v for k, v in asdict(settings).items() if k not in _BODY_FIELDS}
    return f"faces:opencv={cv2.__version__}:{sorted(fields.items())!r}"


# --- cascades, one set per thread (OpenCV's detectors keep state while they run) --------

_local = threading.local()


def _cascade(name: str) -> cv2.CascadeClassifier:
    import cv2
    import cv2.data

    cascades: dict[str, cv2.CascadeClassifier] = getattr(_local, "cascades", None) or {}
    _local.cascades = cascades
    if name not in cascades:
        path = Path(cv2.data.haarcascades) / name
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise RuntimeError(f"OpenCV's {name} is missing from {path.parent}")
        cascades[name] = cascade
    return cascades[name]


def faces_available(settings: FaceSettings = DEFAULT_SETTINGS) -> bool:
    """Whether `detect_faces` can run here: OpenCV importable and its cascades loadable.

    The analyzer asks this to detect faces locally where it can and with the model
    otherwise. Never raises.

    Args:
        settings: The detector settings, whose cascade files must load.

    Returns:
        True when every cascade of `settings` loads (built once per thread, then reused).
    """
    try:
        import numpy  # noqa: F401

        for name, _ in settings.cascades:
            _cascade(name)
    except Exception:  # ImportError, a missing or broken cascade file, a broken install
        return False
    return True


# --- boxes (shared with viewfinder.local.people) -----------------------------------------


def logistic(value: float, threshold: float, scale: float) -> float:
    """`1 / (1 + exp(-(value - threshold) / scale))`: 0.5 at `threshold`, rising with it."""
    return 1.0 / (1.0 + math.exp(-(value - threshold) / scale))


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def nms(candidates: Sequence[tuple[Box, float]], iou: float) -> list[tuple[Box, float]]:
    """Greedy non-maximum suppression: most confident first, overlaps dropped.

    Args:
        candidates: Boxes with their confidences.
        iou: Intersection over union above which the less confident box is dropped.

    Returns:
        The kept boxes, most confident first.
    """
    kept: list[tuple[Box, float]] = []
    for box, confidence in sorted(candidates, key=lambda item: -item[1]):
        if all(_iou(box, other) <= iou for other, _ in kept):
            kept.append((box, confidence))
    return kept


def clip(box: Box, width: int, height: int) -> Box | None:
    """`box` inside a `width` x `height` image, or None when less than a pixel of it is."""
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[0] + box[2]), min(float(height), box[1] + box[3])
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def to_pixels(box: Box, width: int, height: int) -> BoundingBox:
    """A clipped float box as whole pixels, at least 1 x 1, inside the image."""
    x0, y0 = round(box[0]), round(box[1])
    x1, y1 = min(width, round(box[0] + box[2])), min(height, round(box[1] + box[3]))
    return BoundingBox(x=x0, y=y0, width=max(1, x1 - x0), height=max(1, y1 - y0))


def working_copy(pixels: NDArray[np.uint8], max_side: int) -> tuple[NDArray[np.uint8], float]:
    """`pixels` downscaled so its long side is at most `max_side`, and the factor used."""
    import cv2
    import numpy as np

    height, width = pixels.shape[:2]
    factor = min(1.0, max_side / max(width, height))
    if factor >= 1.0:
        return pixels, 1.0
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small: NDArray[np.uint8] = np.asarray(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))
    return small, factor


# --- the detector --------------------------------------------------------------------------


def face_boxes(grey: NDArray[np.uint8], settings: FaceSettings) -> list[tuple[Box, float]]:
    """The face detector: faces of a grey image with confidences, most confident first.

    Args:
        grey: The image as 8-bit grey pixels (height x width).
        settings: The detector settings.

    Returns:
        Face boxes in pixels of `grey` (not clipped), after non-maximum suppression.
    """
    import cv2
    import numpy as np

    small, factor = working_copy(grey, settings.max_side)
    small = np.asarray(cv2.equalizeHist(small), dtype=np.uint8)
    width = small.shape[1]
    mirrored = np.ascontiguousarray(small[:, ::-1])
    faces: list[tuple[Box, float]] = []
    for name, both_ways in settings.cascades:
        cascade = _cascade(name)
        for flipped in (False, True) if both_ways else (False,):
            rects, neighbours = cascade.detectMultiScale2(
                mirrored if flipped else small,
                scaleFactor=settings.scale,
                minNeighbors=settings.min_neighbors,
                minSize=(settings.min_size, settings.min_size),
            )
            for (x, y, w, h), count in zip(rects, np.ravel(np.asarray(neighbours)), strict=True):
                left = width - x - w if flipped else x
                box = (left / factor, y / factor, w / factor, h / factor)
                confidence = logistic(float(count), settings.min_neighbors, settings.neighbor_scale)
                faces.append((box, confidence))
    return nms(faces, FACE_NMS_IOU)


def detect_faces(
    image: Image.Image, settings: FaceSettings = DEFAULT_SETTINGS
) -> list[DetectedFace]:
    """Find faces in `image`, most confident first (3.2 `faces`, reference §5.5).

    Args:
        image: The image, as a viewer shows it (EXIF orientation applied), any mode.
        settings: Detector settings.

    Returns:
        Faces with boxes in pixels of `image`, inside it, and heuristic confidences
        (see the module's documentation); `[]` when there is none.

    Raises:
        ImportError: OpenCV or NumPy is not installed (`faces_available()` is False).
    """
    import numpy as np

    width, height = image.size
    grey = np.asarray(image.convert("L"), dtype=np.uint8)
    return [
        DetectedFace(box=to_pixels(box, width, height), confidence=round(confidence, 4))
        for raw, confidence in face_boxes(grey, settings)
        if (box := clip(raw, width, height)) is not None
    ]
