"""Hand-written results for the bridge tests (test_export.py and
test_notebook_and_supervision.py).

HAND-WRITTEN, no model ran: a street with objects, people, read lines and dense captions
chosen so every exported number can be checked by hand, and a room with one object.
"""

from __future__ import annotations

from viewfinder.schemas import (
    BoundingBox,
    Caption,
    DenseCaption,
    DetectedObject,
    DetectedPerson,
    ImageAnalysisResult,
    ImageMetadata,
    Point,
    Polygon,
    ReadBlock,
    ReadLine,
    ReadResult,
    ReadWord,
    Tag,
    Usage,
)


def _box(x: int, y: int, w: int, h: int) -> BoundingBox:
    return BoundingBox(x=x, y=y, width=w, height=h)


def _quad(x0: int, y0: int, x1: int, y1: int) -> Polygon:
    points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return Polygon(points=[Point(x=x, y=y) for x, y in points])


def _line(text: str, quad: Polygon, *confidences: float) -> ReadLine:
    words = [
        ReadWord(text=w, polygon=quad, confidence=c)
        for w, c in zip(text.split(), confidences, strict=True)
    ]
    return ReadLine(text=text, polygon=quad, words=words)


STREET = ImageAnalysisResult(
    model_version="gpt-4.1-mini+abc123",
    metadata=ImageMetadata(width=200, height=100),
    caption=Caption(text="A cat & a dog <outside>", confidence=0.9),
    tags=[Tag(name="cat", confidence=0.95), Tag(name="<script>", confidence=0.5)],
    objects=[
        DetectedObject(name="cat", confidence=0.8, box=_box(10, 20, 50, 40)),
        DetectedObject(name="dog", confidence=0.6, box=_box(100, 0, 100, 100)),
        DetectedObject(name="cat", confidence=0.7, box=_box(0, 0, 20, 10)),
    ],
    people=[DetectedPerson(box=_box(60, 10, 30, 80), confidence=0.75)],
    dense_captions=[DenseCaption(text="a street", confidence=0.5, box=_box(0, 0, 200, 100))],
    read=ReadResult(
        blocks=[
            ReadBlock(
                lines=[
                    _line("NO PARKING", _quad(20, 60, 80, 70), 0.9, 0.7),
                    _line("exit", _quad(150, 80, 190, 95), 1.0),
                ]
            )
        ]
    ),
    usage=Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=50, requests=1),
)
ROOM = ImageAnalysisResult(
    model_version="gpt-4.1-mini+abc123",
    metadata=ImageMetadata(width=64, height=32),
    objects=[DetectedObject(name="cat", confidence=0.9, box=_box(0, 0, 32, 32))],
    people=[],
)
