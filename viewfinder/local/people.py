"""People without a model endpoint: OpenCV 4's HOG pedestrian detector, plus faces.

Two detectors, both shipped inside the OpenCV 4 wheel (OpenCV 5 dropped them, hence
the `<5` pin of the `local` extra):

- **HOG** (Dalal & Triggs 2005): `cv2.HOGDescriptor_getDefaultPeopleDetector`, a linear
  SVM over 64x128 windows of upright, whole pedestrians, scanned over an image pyramid.
  It finds standing people seen whole; it does not find portraits or people cut off
  by the frame.
- **Faces** (Viola & Jones 2001): `viewfinder.local.faces.face_boxes`, the frontal and
  profile Haar cascades (the profile one run on the mirrored image too, for faces
  turned either way), the same detector as the 3.2 `faces` feature. Each face is grown
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

import threading
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from viewfinder.local.faces import (
    Box,
    FaceSettings,
    clip,
    face_boxes,
    logistic,
    nms,
    to_pixels,
    working_copy,
)
from viewfinder.schemas.features import DetectedPerson

__all__ = [
    "DEFAULT_SETTINGS",
    "FaceSettings",
    "HogSettings",
    "PeopleSettings",
    "detect_people",
    "nms",
    "settings_text",
]


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


# --- the HOG detector, one per thread (OpenCV's detectors keep state while they run) ---

_local = threading.local()


def _hog() -> cv2.HOGDescriptor:
    hog: cv2.HOGDescriptor | None = getattr(_local, "hog", None)
    if hog is None:
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32))
        _local.hog = hog
    return hog


# --- the two detectors ------------------------------------------------------------------


def _hog_people(rgb: NDArray[np.uint8], settings: HogSettings) -> list[tuple[Box, float]]:
    small, factor = working_copy(rgb, settings.max_side)
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
        found.append((box, logistic(float(score), settings.min_score, settings.score_scale)))
    return found


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
            for face, confidence in face_boxes(grey, settings.faces)
        )
    clipped = [
        (box, confidence)
        for raw, confidence in candidates
        if (box := clip(raw, width, height)) is not None
    ]
    return [
        DetectedPerson(box=to_pixels(box, width, height), confidence=round(confidence, 4))
        for box, confidence in nms(clipped, settings.nms_iou)
    ]
