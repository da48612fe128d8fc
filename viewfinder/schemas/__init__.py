"""Pydantic models of what comes out. No I/O here."""

from viewfinder.schemas.features import (
    Caption,
    CropRegion,
    DenseCaption,
    DetectedObject,
    DetectedPerson,
    ReadBlock,
    ReadLine,
    ReadResult,
    ReadWord,
    Tag,
)
from viewfinder.schemas.geometry import BoundingBox, Point, Polygon
from viewfinder.schemas.result import AnalysisRun, ImageAnalysisResult, ImageMetadata, Usage

__all__ = [
    "AnalysisRun",
    "BoundingBox",
    "Caption",
    "CropRegion",
    "DenseCaption",
    "DetectedObject",
    "DetectedPerson",
    "ImageAnalysisResult",
    "ImageMetadata",
    "Point",
    "Polygon",
    "ReadBlock",
    "ReadLine",
    "ReadResult",
    "ReadWord",
    "Tag",
    "Usage",
]
