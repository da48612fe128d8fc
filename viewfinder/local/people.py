"""People without a model endpoint: OpenCV 4's HOG pedestrian detector, plus faces.

Two detectors, both shipped inside the OpenCV 4 wheel (OpenCV 5 dropped them, hence
the `<5` pin of the `local` extra):

- **HOG** (Dalal & Triggs 2005): `cv2.HOGDescriptor_getDefaultPeopleDetector`, a linear
  SVM over 64x128 windows of upright, whole pedestrians, scanned over an image pyramid.
  It finds standing people seen whole; it does not find portraits or people cut off
  by the frame.
- **Faces** (Viola & Jones 2001): the frontal and profile Haar cascades (the profile
  one run on the mirrored image too, for faces turned either way). Each face is grown
  into a person box with fixed body proportions (`FaceSettings`), which is what finds
  portraits and upper bodies, the most common way people appear in photos.

Boxes from both go through one non-maximum suppression. Everything runs on a
downscaled grey or RGB copy, and boxes are mapped back to pixels of the image given.

**Confidences are heuristics, not probabilities.** A HOG detection's score is the SVM
margin; a face's is the number of overlapping raw detections that agree on it
(neighbours). Each goes through a logistic curve that is 0.5 at the acceptance
threshold and rises with the score: `1 / (1 + exp(-(score - threshold) / scale))`.
Neither was calibrated against data.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import cv2.data
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from viewfinder.schemas.features import DetectedPerson
from viewfinder.schemas.geometry import BoundingBox

__all__ = [
    "DEFAULT_SETTINGS",
    "FaceSettings",
    "HogSettings",
    "PeopleSettings",
    "detect_people",
    "nms",
    "settings_text",
]

Box = tuple[float, float, float, float]
"""x, y, width, height in pixels of the image given (floats until the end)."""


@dataclass(frozen=True)
class HogSettings:
    """The HOG pedestrian detector's settings.

    Attributes:
        max_side: Long side, in pixels, of the working copy (only ever downscaled).
            Pedestrians shorter than about 96 px in that copy are missed.
        win_stride: Window step, in pixels of the working copy.
        padding: Padding added around each window, in pixels.
        scale: Ratio between pyramid levels.
        group_threshold: OpenCV's grouping of overlapping windows: a detection needs
            more than this many agreeing windows (removes isolated false positives).
        min_score: SVM score a detection needs to be kept. OpenCV's own default is 0;
            0.75 was set after two false positives scored 0.61 and 0.72 on the
            labelled images of tests/assets/people (which hold no true HOG detection).
        score_scale: Width of the logistic curve mapping the score to a confidence.
    """

    max_side: int = 640
    win_stride: int = 8
    padding: int = 16
    scale: float = 1.05
    group_threshold: int = 2
    min_score: float = 0.75
    score_scale: float = 0.5


@dataclass(frozen=True)
class FaceSettings:
    """The face detectors' settings and the body proportions grown from a face.

    The person box is centred on the face horizontally, `body_width` face widths
    wide; it starts `head_top` face heights above the face box (hair) and reaches
    `body_height` face heights below its top (about a standing adult), clipped to the
    image.

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


@dataclass(frozen=True)
class PeopleSettings:
    """Everything that decides `detect_people`'s answer (part of `model_version`).

    Attributes:
        hog: The HOG pedestrian detector; None switches it off.
        faces: The face-anchored detector; None switches it off.
        nms_iou: Boxes overlapping a more confident one by more than this
            intersection over union are dropped.
    """

    hog: HogSettings | None = field(default_factory=HogSettings)
    faces: FaceSettings | None = field(default_factory=FaceSettings)
    nms_iou: float = 0.3


DEFAULT_SETTINGS = PeopleSettings()
"""The settings `detect_people` uses unless told otherwise."""


def settings_text(settings: PeopleSettings = DEFAULT_SETTINGS) -> str:
    """A canonical text of `settings` and OpenCV's version, for `model_version`.

    Args:
        settings: The detector settings.

    Returns:
        Text that changes whenever the detector's answer may change.
    """
    return f"people:opencv={cv2.__version__}:{sorted(asdict(settings).items())!r}"


# --- detectors, one set per thread (OpenCV's detectors keep state while they run) ----

_local = threading.local()


def _hog() -> cv2.HOGDescriptor:
    hog: cv2.HOGDescriptor | None = getattr(_local, "hog", None)
    if hog is None:
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32))
        _local.hog = hog
    return hog


def _cascade(name: str) -> cv2.CascadeClassifier:
    cascades: dict[str, cv2.CascadeClassifier] = getattr(_local, "cascades", None) or {}
    _local.cascades = cascades
    if name not in cascades:
        path = Path(cv2.data.haarcascades) / name
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise RuntimeError(f"OpenCV's {name} is missing from {path.parent}")
        cascades[name] = cascade
    return cascades[name]


# --- geometry ---------------------------------------------------------------------------


def _logistic(value: float, threshold: float, scale: float) -> float:
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


def _clip(box: Box, width: int, height: int) -> Box | None:
    """`box` inside the image, or None when less than a pixel of it is."""
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[0] + box[2]), min(float(height), box[1] + box[3])
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def _pixels(box: Box, width: int, height: int) -> BoundingBox:
    x0, y0 = round(box[0]), round(box[1])
    x1, y1 = min(width, round(box[0] + box[2])), min(height, round(box[1] + box[3]))
    return BoundingBox(x=x0, y=y0, width=max(1, x1 - x0), height=max(1, y1 - y0))


def _working_copy(pixels: NDArray[np.uint8], max_side: int) -> tuple[NDArray[np.uint8], float]:
    """`pixels` downscaled so its long side is at most `max_side`, and the factor used."""
    height, width = pixels.shape[:2]
    factor = min(1.0, max_side / max(width, height))
    if factor >= 1.0:
        return pixels, 1.0
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small: NDArray[np.uint8] = np.asarray(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))
    return small, factor


# --- the two detectors ------------------------------------------------------------------


def _hog_people(rgb: NDArray[np.uint8], settings: HogSettings) -> list[tuple[Box, float]]:
    small, factor = _working_copy(rgb, settings.max_side)
    height, width = small.shape[:2]
    if width < 64 or height < 128:  # smaller than one detection window
        return []
    rects, scores = _hog().detectMultiScale(
        small,
        hitThreshold=0.0,
        winStride=(settings.win_stride, settings.win_stride),
        padding=(settings.padding, settings.padding),
        scale=settings.scale,
        groupThreshold=settings.group_threshold,
    )
    found = []
    for (x, y, w, h), score in zip(rects, np.ravel(np.asarray(scores)), strict=True):
        if float(score) < settings.min_score:
            continue
        box = (x / factor, y / factor, w / factor, h / factor)
        found.append((box, _logistic(float(score), settings.min_score, settings.score_scale)))
    return found


def _faces(grey: NDArray[np.uint8], settings: FaceSettings) -> list[tuple[Box, float]]:
    small, factor = _working_copy(grey, settings.max_side)
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
                confidence = _logistic(
                    float(count), settings.min_neighbors, settings.neighbor_scale
                )
                faces.append((box, confidence))
    return nms(faces, 0.3)


def _body(face: Box, settings: FaceSettings) -> Box:
    """The person box grown from a face box with fixed body proportions."""
    x, y, w, h = face
    top = y - settings.head_top * h
    return (
        x + w / 2 - settings.body_width * w / 2,
        top,
        settings.body_width * w,
        y + settings.body_height * h - top,
    )


def detect_people(
    image: Image.Image, settings: PeopleSettings = DEFAULT_SETTINGS
) -> list[DetectedPerson]:
    """Find people in `image`, most confident first.

    Args:
        image: The image, as a viewer shows it (EXIF orientation applied), any mode.
        settings: Detector settings.

    Returns:
        People with boxes in pixels of `image`, inside it, and heuristic confidences
        (see the module's documentation).
    """
    width, height = image.size
    candidates: list[tuple[Box, float]] = []
    if settings.hog is not None:
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
        candidates.extend(_hog_people(rgb, settings.hog))
    if settings.faces is not None:
        grey = np.asarray(image.convert("L"), dtype=np.uint8)
        candidates.extend(
            (_body(face, settings.faces), confidence)
            for face, confidence in _faces(grey, settings.faces)
        )
    clipped = [
        (box, confidence)
        for raw, confidence in candidates
        if (box := _clip(raw, width, height)) is not None
    ]
    return [
        DetectedPerson(box=_pixels(box, width, height), confidence=round(confidence, 4))
        for box, confidence in nms(clipped, settings.nms_iou)
    ]
