"""Pydantic models of what comes out. No I/O here."""

from viewfinder.schemas.color import ColorInfo, ImageType
from viewfinder.schemas.cv32 import (
    AdultContent,
    Category,
    Description,
    DetectedBrand,
    DetectedFace,
    Landmark,
)
from viewfinder.schemas.features import (
    Caption,
    CropRegion,
    DenseCaption,
    DetectedObject,
    DetectedPerson,
    ObjectParent,
    ReadBlock,
    ReadLine,
    ReadResult,
    ReadWord,
    Tag,
)
from viewfinder.schemas.geometry import BoundingBox, Point, Polygon
from viewfinder.schemas.result import AnalysisRun, ImageAnalysisResult, ImageMetadata, Usage

__all__ = [
    "AdultContent",
    "AnalysisRun",
    "BoundingBox",
    "Caption",
    "Category",
    "ColorInfo",
    "CropRegion",
    "DenseCaption",
    "Description",
    "DetectedBrand",
    "DetectedFace",
    "DetectedObject",
    "DetectedPerson",
    "ImageAnalysisResult",
    "ImageMetadata",
    "ImageType",
    "Landmark",
    "ObjectParent",
    "Point",
    "Polygon",
    "ReadBlock",
    "ReadLine",
    "ReadResult",
    "ReadWord",
    "Tag",
    "Usage",
]
