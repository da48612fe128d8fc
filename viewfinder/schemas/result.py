"""The result of an analysis, its image metadata and what it cost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

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
    ReadResult,
    Tag,
)

if TYPE_CHECKING:  # supervision (numpy, matplotlib, scipy) loads only in to_supervision
    import supervision as sv

    from viewfinder.schemas.regions import RegionFeature

__all__ = ["AnalysisRun", "ImageAnalysisResult", "ImageMetadata", "Usage"]

T = TypeVar("T", bound=BaseModel)


class Usage(BaseModel):
    """What one analysis spent. Cache hits spend nothing."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    """Prompt tokens billed, image included, summed over every completion (re-asks too)."""
    cached_input_tokens: int = 0
    """Part of `input_tokens` the provider served from its prompt cache."""
    output_tokens: int = 0
    """Completion tokens billed, summed over every completion."""
    requests: int = 0
    """HTTP requests sent: first attempt, transport retries and re-asks."""
    reasks: int = 0
    """Validation re-asks: completions after the first."""
    cache_hit: bool = False
    """True when the answer came from viewfinder's cache and no request was sent."""

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            requests=self.requests + other.requests,
            reasks=self.reasks + other.reasks,
            cache_hit=self.cache_hit and other.cache_hit,
        )


class ImageMetadata(BaseModel):
    """Size of the analysed image, in pixels, after EXIF orientation."""

    model_config = ConfigDict(frozen=True)

    width: int = Field(ge=1)
    """Width in pixels."""
    height: int = Field(ge=1)
    """Height in pixels."""


class ImageAnalysisResult(BaseModel):
    """Everything one `ImageAnalyzer.analyze` call found. Features not requested are `None`."""

    model_config = ConfigDict(frozen=True)

    model_version: str
    """`<model>+<hash of the prompt templates and schemas>`, or `local+<hash of the local
    engine's libraries and settings>` when the local engine produced it."""
    metadata: ImageMetadata
    """Size of the analysed image."""
    caption: Caption | None = None
    """One sentence for the whole image."""
    dense_captions: list[DenseCaption] | None = None
    """Up to 10 region captions; the first covers the whole image."""
    tags: list[Tag] | None = None
    """Tags, best first."""
    objects: list[DetectedObject] | None = None
    """Objects with boxes."""
    people: list[DetectedPerson] | None = None
    """People with boxes."""
    smart_crops: list[CropRegion] | None = None
    """One crop per requested aspect ratio, in request order."""
    read: ReadResult | None = None
    """Text in the image."""
    categories: list[Category] | None = None
    """Computer Vision 3.2: categories of the 86-category taxonomy, best first."""
    description: Description | None = None
    """Computer Vision 3.2: candidate captions and description tags."""
    brands: list[DetectedBrand] | None = None
    """Computer Vision 3.2: brands (logos and names) with boxes."""
    adult: AdultContent | None = None
    """Computer Vision 3.2: adult, racy and gory content."""
    faces: list[DetectedFace] | None = None
    """Computer Vision 3.2: face rectangles (a local detector where installed)."""
    color: ColorInfo | None = None
    """Computer Vision 3.2: the colour scheme, computed from the pixels."""
    image_type: ImageType | None = None
    """Computer Vision 3.2: clip art and line drawing, computed from the pixels."""
    landmarks: list[Landmark] | None = None
    """Computer Vision 3.2's landmarks detail, best first."""
    usage: Usage = Field(default_factory=Usage)
    """What this analysis spent."""
    unserved: dict[str, str] | None = None
    """Requested features that were not served, by name, with the reason; they are `None`
    above (a served feature that found nothing is an empty list). `None` when the model
    served every requested feature; a dict, possibly empty, from the local engine."""

    def to_azure_json(self) -> dict[str, Any]:
        """Exactly the JSON Azure's REST API answers, for the requested features."""
        from viewfinder.compat.rest import to_azure_json

        return to_azure_json(self)

    def to_supervision(self, feature: RegionFeature = "objects") -> sv.Detections:
        """One feature's findings as supervision's `sv.Detections`, for its annotators,
        trackers and metrics.

        Each detection has its box as `xyxy` (pixels of the original image), its
        `confidence`, a `class_id` per distinct name in order of first appearance (as
        `sv.Detections.from_azure_analyze_image` numbers them) and its name in
        `data["class_name"]` (class ids restart with each feature: to merge features with
        `sv.Detections.merge`, tell classes apart by name).

        Args:
            feature: `objects` (class: the object's name), `people` (`person`),
                `dense_captions` (the caption), `read` (each line: its text, its
                polygon's bounds, the mean of its words' confidences), `brands` (the
                brand) or `faces` (`face`). A feature not requested gives no detections.

        Raises:
            InvalidOptionError: `feature` has no boxes.
            ImportError: supervision is not installed (`pip install 'viewfinder[supervision]'`).
        """
        from viewfinder.schemas.regions import to_supervision

        return to_supervision(self, feature)

    def _repr_html_(self) -> str:
        """A compact HTML summary for notebooks: caption, tags, counts, usage."""
        from viewfinder.schemas.html import summary_html

        return summary_html(self)


class AnalysisRun(BaseModel, Generic[T]):
    """A custom analysis with what it cost: returned by `Analyzer.analyze_detailed`."""

    model_config = ConfigDict(frozen=True)

    output: T
    """The filled schema, boxes in pixels of the original image."""
    usage: Usage
    """What the analysis spent."""
    model_version: str
    """`<model>+<hash of the prompt template and schema>`."""
    metadata: ImageMetadata
    """Size of the analysed image."""
