"""What each of the seven Image Analysis 4.0 features returns, in pixels of the original image."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from viewfinder.schemas.geometry import BoundingBox, Polygon

__all__ = [
    "Caption",
    "CropRegion",
    "DenseCaption",
    "DetectedObject",
    "DetectedPerson",
    "ObjectParent",
    "ReadBlock",
    "ReadLine",
    "ReadResult",
    "ReadWord",
    "Tag",
]

_Confidence = Field(ge=0.0, le=1.0)


class Caption(BaseModel):
    """One sentence describing the whole image."""

    model_config = ConfigDict(frozen=True)

    text: str
    """The caption."""
    confidence: float = _Confidence
    """The model's own estimate, 0-1 (not a calibrated score)."""


class DenseCaption(BaseModel):
    """A caption for one region. The first of a result always covers the whole image."""

    model_config = ConfigDict(frozen=True)

    text: str
    """The caption of the region."""
    confidence: float = _Confidence
    """The model's own estimate, 0-1."""
    box: BoundingBox
    """The region, in pixels."""


class Tag(BaseModel):
    """A word for something seen: an object, a scene, an action."""

    model_config = ConfigDict(frozen=True)

    name: str
    """Lower-case tag name."""
    confidence: float = _Confidence
    """The model's own estimate, 0-1."""
    hint: str | None = None
    """3.2's disambiguation of an ambiguous name (`ascomycete` -> `fungus`), when the call
    asked for hints (`tag_hints`) and the name needs one; else None."""


class ObjectParent(BaseModel):
    """A broader kind of an object (3.2's `ObjectHierarchy`: a bulldog's parent is dog)."""

    model_config = ConfigDict(frozen=True)

    name: str
    """The broader kind."""
    confidence: float = _Confidence
    """The model's own estimate, 0-1."""
    parent: ObjectParent | None = None
    """A broader kind still, or None."""


class DetectedObject(BaseModel):
    """A physical object and where it is."""

    model_config = ConfigDict(frozen=True)

    name: str
    """What the object is (Azure gives one tag per object; this is it)."""
    confidence: float = _Confidence
    """The model's own estimate, 0-1."""
    box: BoundingBox
    """Where it is, in pixels."""
    parent: ObjectParent | None = None
    """Its broader kind (3.2), when the call asked for it (`object_parents`); else None."""


class DetectedPerson(BaseModel):
    """A person and where they are."""

    model_config = ConfigDict(frozen=True)

    box: BoundingBox
    """Where the person is, in pixels."""
    confidence: float = _Confidence
    """The model's own estimate, 0-1."""


class CropRegion(BaseModel):
    """A suggested crop for thumbnails."""

    model_config = ConfigDict(frozen=True)

    aspect_ratio: float
    """Width over height: the requested ratio, or the crop's own when none was requested."""
    box: BoundingBox
    """The crop, in pixels, inside the image."""


class ReadWord(BaseModel):
    """One word of text."""

    model_config = ConfigDict(frozen=True)

    text: str
    """The word."""
    polygon: Polygon
    """Where it is: four points clockwise from top-left, in pixels."""
    confidence: float = _Confidence
    """The model's own estimate, 0-1."""
    estimated: bool = False
    """True when the model gave no geometry for this word and its polygon was split
    from the line's box in proportion to character counts."""


class ReadLine(BaseModel):
    """One line of text, in reading order."""

    model_config = ConfigDict(frozen=True)

    text: str
    """The whole line."""
    polygon: Polygon
    """Where it is: four points clockwise from top-left, in pixels."""
    words: list[ReadWord]
    """The words of the line, left to right."""


class ReadBlock(BaseModel):
    """A block of lines. Azure returns exactly one."""

    model_config = ConfigDict(frozen=True)

    lines: list[ReadLine]
    """Lines in reading order."""


class ReadResult(BaseModel):
    """Text found in the image (OCR)."""

    model_config = ConfigDict(frozen=True)

    blocks: list[ReadBlock]
    """One block, as Azure returns (empty when no text was found)."""

    @property
    def lines(self) -> list[ReadLine]:
        """All lines of all blocks, in reading order."""
        return [line for block in self.blocks for line in block.lines]

    @property
    def text(self) -> str:
        """All text in reading order, one line per line."""
        return "\n".join(line.text for line in self.lines)
