"""The SDK's result models, re-exported unchanged from `azure.ai.vision.imageanalysis.models`.

These are Microsoft's own classes, not copies: `viewfinder.azure.models.CaptionResult is
azure.ai.vision.imageanalysis.models.CaptionResult`. So attribute names, `as_dict()`,
wire-key access (`result["captionResult"]`) and `isinstance` checks are exactly the
SDK's, and code written against either import path works with results from both.

What differs is only where the values come from (see `viewfinder.azure`): confidences
are a GPT vision model's own estimates, and `ImageAnalysisResult.model_version` is
viewfinder's `<model>+<hash>`, not a date.
"""

from __future__ import annotations

from azure.ai.vision.imageanalysis.models import (
    CaptionResult,
    CropRegion,
    DenseCaption,
    DenseCaptionsResult,
    DetectedObject,
    DetectedPerson,
    DetectedTag,
    DetectedTextBlock,
    DetectedTextLine,
    DetectedTextWord,
    ImageAnalysisResult,
    ImageBoundingBox,
    ImageMetadata,
    ImagePoint,
    ObjectsResult,
    PeopleResult,
    ReadResult,
    SmartCropsResult,
    TagsResult,
    VisualFeatures,
)

__all__ = [
    "CaptionResult",
    "CropRegion",
    "DenseCaption",
    "DenseCaptionsResult",
    "DetectedObject",
    "DetectedPerson",
    "DetectedTag",
    "DetectedTextBlock",
    "DetectedTextLine",
    "DetectedTextWord",
    "ImageAnalysisResult",
    "ImageBoundingBox",
    "ImageMetadata",
    "ImagePoint",
    "ObjectsResult",
    "PeopleResult",
    "ReadResult",
    "SmartCropsResult",
    "TagsResult",
    "VisualFeatures",
]
