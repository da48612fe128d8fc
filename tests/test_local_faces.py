"""The local face detector (3.2 `faces`, reference §5.5) on public-domain photographs.

`diptych.png` (tests/assets/people, see its README: astronaut.png and camera.png side by
side, NASA public domain and CC0) shows two faces: the astronaut's, frontal, and the
cameraman's, in profile behind his camera. Their boxes below were labelled by eye.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("cv2")
pytest.importorskip("numpy")

from viewfinder.local import faces, people
from viewfinder.local.engine import decode_full
from viewfinder.schemas.cv32 import DetectedFace
from viewfinder.schemas.geometry import BoundingBox

PEOPLE = Path(__file__).parent / "assets" / "people"

EYE_LABELLED = {
    "astronaut": BoundingBox(x=112, y=40, width=58, height=62),
    "cameraman": BoundingBox(x=424, y=48, width=78, height=80),
}
"""The two faces of diptych.png (640x320), forehead to chin, labelled by eye."""


def _iou(a: BoundingBox, b: BoundingBox) -> float:
    ax0, ay0, ax1, ay1 = a.xyxy
    bx0, by0, bx1, by1 = b.xyxy
    inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
    return inter / (a.area + b.area - inter)


@pytest.fixture(scope="module")
def diptych() -> Image.Image:
    return decode_full(PEOPLE / "diptych.png")


@pytest.fixture(scope="module")
def found(diptych: Image.Image) -> list[DetectedFace]:
    return faces.detect_faces(diptych)


def test_finds_both_faces_where_they_are(diptych: Image.Image, found: list[DetectedFace]) -> None:
    assert len(found) == 2
    for face in found:
        assert face.box.x >= 0 and face.box.y >= 0
        assert face.box.x + face.box.width <= diptych.width
        assert face.box.y + face.box.height <= diptych.height
        assert 0.5 < face.confidence <= 1.0
    assert [f.confidence for f in found] == sorted((f.confidence for f in found), reverse=True)
    for name, truth in EYE_LABELLED.items():
        assert max(_iou(face.box, truth) for face in found) >= 0.5, name


def test_a_picture_without_a_face_gives_none() -> None:
    assert faces.detect_faces(decode_full(PEOPLE / "coffee.png")) == []


def test_any_image_mode_is_read_as_grey(diptych: Image.Image, found: list[DetectedFace]) -> None:
    assert faces.detect_faces(diptych.convert("RGBA")) == found


def test_people_grow_from_the_same_face_detector(
    monkeypatch: pytest.MonkeyPatch, diptych: Image.Image
) -> None:
    seen: list[tuple[int, int]] = []

    def one_face(grey: object, settings: faces.FaceSettings) -> list[tuple[faces.Box, float]]:
        seen.append(getattr(grey, "shape", (0, 0))[:2])
        return [((100.0, 40.0, 60.0, 60.0), 0.9)]

    monkeypatch.setattr(people, "face_boxes", one_face)
    (person,) = people.detect_people(diptych, replace(people.DEFAULT_SETTINGS, hog=None))

    assert seen == [(320, 640)]
    # FaceSettings' body proportions: 3.6 face widths wide, 0.35 face heights of hair.
    assert person.box == BoundingBox(x=22, y=19, width=216, height=301)


def test_available_here_and_not_without_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    assert faces.faces_available()
    assert not faces.faces_available(
        replace(faces.DEFAULT_SETTINGS, cascades=(("none.xml", False),))
    )

    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    assert not faces.faces_available()
    assert faces.settings_text() == "faces:unavailable"


def test_settings_text_names_the_detector_settings_only() -> None:
    text = faces.settings_text()
    assert text.startswith("faces:opencv=4.")
    assert "haarcascade_frontalface_alt2.xml" in text and "body_width" not in text
    assert faces.settings_text(replace(faces.DEFAULT_SETTINGS, body_width=9.0)) == text
    assert faces.settings_text(replace(faces.DEFAULT_SETTINGS, min_neighbors=3)) != text
