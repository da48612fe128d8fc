"""Computer Vision 3.2's features beyond Image Analysis 4.0, in pixels of the original image.

References are to `azure-computer-vision-3.2.md` (sections 4 and 5). Attributes are
snake_case like the rest of `viewfinder.schemas`; `viewfinder.compat.rest32` writes them
under the 3.2 wire names. Color and ImageType live in `viewfinder.schemas.color`; tags
and objects are the 4.0 types, with 3.2's `hint` and `parent` (`schemas.features`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from viewfinder.schemas.features import Caption
from viewfinder.schemas.geometry import BoundingBox

__all__ = [
    "AdultContent",
    "Category",
    "Description",
    "DetectedBrand",
    "DetectedFace",
    "Landmark",
]

_Confidence = Field(ge=0.0, le=1.0)


class Landmark(BaseModel):
    """A landmark the image shows (section 4 `LandmarksModel`)."""

    model_config = ConfigDict(frozen=True)

    name: str
    """Its name, e.g. "Eiffel Tower"."""
    confidence: float = _Confidence
    """The model's own estimate, 0-1."""


class Category(BaseModel):
    """One of the 86 categories of the 3.2 taxonomy (section 5.1), with its score."""

    model_config = ConfigDict(frozen=True)

    name: str
    """A taxonomy name, e.g. `outdoor_mountain`; names ending in `_` are parents."""
    confidence: float = _Confidence
    """The model's own estimate, 0-1 (3.2 calls it `score`)."""
    landmarks: tuple[Landmark, ...] | None = None
    """With the `landmarks` feature: the landmarks, on `building_` and `outdoor_`
    categories (the domain model's attachment, section 5.1); else None."""


class Description(BaseModel):
    """Captions and description tags (section 4 `ImageDescriptionDetails`)."""

    model_config = ConfigDict(frozen=True)

    captions: tuple[Caption, ...]
    """Candidate captions, best first (at most the call's `max_candidates`)."""
    tags: tuple[str, ...]
    """Words for what the image shows, as 3.2's description lists them."""


class DetectedBrand(BaseModel):
    """A brand's logo or name and where it is (section 5.6)."""

    model_config = ConfigDict(frozen=True)

    name: str
    """The brand, e.g. "Microsoft"."""
    confidence: float = _Confidence
    """The model's own estimate, 0-1."""
    box: BoundingBox
    """Where it is, in pixels."""


class DetectedFace(BaseModel):
    """A face and where it is (section 5.5): the rectangle only, no age or gender."""

    model_config = ConfigDict(frozen=True)

    box: BoundingBox
    """The face, in pixels (3.2's `faceRectangle`)."""
    confidence: float = _Confidence
    """The detector's own estimate, 0-1 (3.2 has none; the REST shape leaves it out)."""


class AdultContent(BaseModel):
    """Adult, racy and gory content (section 5.4), flags and scores.

    A flag is its score at 0.5 or more (the service's threshold is not published). When a
    provider's content filter refused the image (`filtered`), the flags the filter's
    categories imply are set, with the filter's words as `evidence`: the image's other
    features come from a second request without this section.
    """

    model_config = ConfigDict(frozen=True)

    is_adult_content: bool
    """Explicitly sexual content."""
    is_racy_content: bool
    """Sexually suggestive content."""
    is_gory_content: bool
    """Blood or gore."""
    adult_score: float = _Confidence
    """0-1."""
    racy_score: float = _Confidence
    """0-1."""
    gore_score: float = _Confidence
    """0-1."""
    filtered: bool = False
    """True when the flags come from a provider's content-filter refusal, not an answer."""
    evidence: str | None = None
    """What the content filter said, when `filtered`."""
