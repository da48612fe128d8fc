"""`ImageAnalysisResult.to_supervision` against supervision itself, beside the local
engine's headless OpenCV, and the notebook summary (`_repr_html_`).

The results are HAND-WRITTEN (tests/export_samples.py): no model ran.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
from export_samples import ROOM, STREET

from viewfinder.errors import InvalidOptionError
from viewfinder.schemas import Tag

# --- supervision ----------------------------------------------------------------------------


def test_objects_as_supervision_detections() -> None:
    detections = STREET.to_supervision()
    assert detections.xyxy.tolist() == [[10, 20, 60, 60], [100, 0, 200, 100], [0, 0, 20, 10]]
    assert detections.confidence is not None
    assert detections.confidence.tolist() == pytest.approx([0.8, 0.6, 0.7])
    assert detections.data["class_name"].tolist() == ["cat", "dog", "cat"]
    assert detections.class_id is not None
    assert detections.class_id.tolist() == [0, 1, 0]


def test_supervision_parses_the_same_objects_from_our_azure_json() -> None:
    import supervision as sv

    theirs = sv.Detections.from_azure_analyze_image(STREET.to_azure_json())
    ours = STREET.to_supervision("objects")
    np.testing.assert_array_equal(theirs.xyxy, ours.xyxy)
    assert theirs.class_id is not None and ours.class_id is not None
    np.testing.assert_array_equal(theirs.class_id, ours.class_id)
    assert theirs.confidence is not None and ours.confidence is not None
    np.testing.assert_allclose(theirs.confidence, ours.confidence, atol=1e-3)


def test_people_dense_captions_and_read_lines_as_detections() -> None:
    people = STREET.to_supervision("people")
    assert people.data["class_name"].tolist() == ["person"]
    assert people.xyxy.tolist() == [[60, 10, 90, 90]]
    dense = STREET.to_supervision("dense_captions")
    assert dense.data["class_name"].tolist() == ["a street"]
    lines = STREET.to_supervision("read")
    assert lines.data["class_name"].tolist() == ["NO PARKING", "exit"]
    assert lines.xyxy.tolist() == [[20, 60, 80, 70], [150, 80, 190, 95]]
    assert lines.confidence is not None
    assert lines.confidence.tolist() == pytest.approx([0.8, 1.0])  # the words' mean


def test_a_feature_not_requested_gives_empty_detections_and_tags_have_no_boxes() -> None:
    empty = ROOM.to_supervision("read")
    assert len(empty) == 0 and empty.xyxy.shape == (0, 4)
    assert empty.data["class_name"].tolist() == []
    with pytest.raises(InvalidOptionError, match="has no boxes"):
        STREET.to_supervision("tags")  # type: ignore[arg-type]


def test_supervision_sits_beside_the_headless_opencv_of_the_local_engine() -> None:
    """supervision >= 0.30 requires no opencv-python: the one cv2 is the headless
    distribution `local` needs, with the HOG people detector and the Haar cascades."""
    import cv2
    import supervision  # noqa: F401  # imports beside it

    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("opencv-python")
    assert importlib.metadata.distribution("opencv-python-headless")
    assert cv2.HOGDescriptor_getDefaultPeopleDetector().size > 0
    assert Path(cv2.data.haarcascades, "haarcascade_frontalface_default.xml").is_file()


# --- notebooks ------------------------------------------------------------------------------


def test_the_html_summary_is_escaped_and_bounded() -> None:
    page = STREET._repr_html_()
    assert "A cat &amp; a dog &lt;outside&gt; (0.90)" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "objects: 3" in page and "read: 2 lines" in page and "NO PARKING" in page
    assert "1000 in (200 cached), 50 out" in page
    many = ROOM.model_copy(update={"tags": [Tag(name="x" * 500, confidence=0.5)] * 1000})
    page = many._repr_html_()
    assert "… 980 more" in page and len(page) < 10_000
    assert "http" not in page and "src=" not in page
