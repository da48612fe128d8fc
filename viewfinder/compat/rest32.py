"""Computer Vision 3.2 REST JSON: every response shape of the 3.2 API as a typed model.

What `compat/rest.py` is for Image Analysis 4.0, this module is for the older Computer
Vision 3.2 API (`{endpoint}/vision/v3.2/...`): the bodies of `analyze`, `describe`, `tag`,
`detect`, `areaOfInterest`, `models`, `models/{model}/analyze`, `ocr`, `read/analyzeResults`
and the error bodies, as pydantic models. Every fact comes from
`shared/reference/azure-computer-vision-3.2.md` (the "reference"): the schemas and their
fields from §4, the category names from §5.1 (`cv32_categories`), the error shapes and codes
from §6.1, the SDK's model names from §9.7.

Wire names and Python names:
    Each field's alias is its JSON name (`requestId`, `faceRectangle`, `isBWImg`), and the
    models validate and serialise by alias, so `Model.model_validate(body)` then
    `to_json(model)` gives `body` back (the tests prove it on every spec example of §8).
    The Python names are the snake_case names Microsoft's Python SDK gives the same fields
    (§9.7), so code ported from the SDK reads the same, including its two odd ones:
    `object_property` for `object` and `models_property` for `models`. Model names are the
    swagger's (= the SDK's) model names.

Nullability:
    As §4 states it. The swagger makes almost every response field optional (a key appears
    only for the features asked, and the SDK treats all as optional): those are
    `X | None = None`, and `to_json` leaves a `None` out rather than writing `null`. Required
    are exactly the fields §4 and §6.1 mark so: the Read result's (`analyzeResults`,
    `ReadResult`, `Line`, `Word`: "req"), the error bodies' `code` and `message` (and
    `error` of `ComputerVisionErrorResponse`), and the six `AdultInfo` fields, which §4
    calls "all non-nullable" (an adult section always carries all three flags and scores).
    Lists stay lists: an empty `categories: []` comes back as `[]`, not dropped.

Numbers:
    Swagger `int32` fields are `int` and `double` fields `float`. The Read result's
    `number` fields (`boundingBox`, `angle`, `width`, `height`) are `int | float`, so the
    spec's integer coordinates come back as integers, not as `202.0`.

Unknown fields are refused (`extra="forbid"`): these models are the contract between
`viewfinder serve` and Microsoft's SDK, and a key the reference does not list is either our
own typo (the server must not send it) or a shape this module does not know yet (a stored
result must not lose it silently on its way through). A refusal names the key.

Enumerations the swagger declares `modelAsString` (error codes) are plain `str`, with the
known values in `ERROR_CODES`, `INNER_ERROR_CODES`, `OCR_ERROR_CODES`; closed enumerations
(`gender`, Read `status`, `unit`, style `name`) are `Literal`s.

UNVERIFIED in the reference (§11), followed as it says:
    - whether a Read error body is wrapped in `{"error": ...}`: `ComputerVisionOcrError` is
      the swagger's top-level, unwrapped shape (§6.1);
    - the body while a Read runs: `{"status": "running", ...}` without `analyzeResult`, so
      `ReadOperationResult.analyze_result` is optional (§8.9);
    - what `faces[]` holds since the age/gender retirement: `age` and `gender` optional,
      `faceRectangle` too, as in the swagger (§4, §5.5);
    - that a result key is present only for the requested features: every feature of
      `ImageAnalysis` is optional (§4).

Needs no Azure package: this is plain JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from viewfinder.schemas.taxonomy import CV32_CATEGORY_COUNT, cv32_categories

__all__ = [
    "CV32_CATEGORY_COUNT",
    "ERROR_CODES",
    "INNER_ERROR_CODES",
    "OCR_ERROR_CODES",
    "AdultInfo",
    "AnalyzeResults",
    "Appearance",
    "AreaOfInterestResult",
    "BoundingRect",
    "Category",
    "CategoryDetail",
    "CelebritiesModel",
    "ColorInfo",
    "ComputerVisionError",
    "ComputerVisionErrorResponse",
    "ComputerVisionInnerError",
    "ComputerVisionOcrError",
    "DetectResult",
    "DetectedBrand",
    "DetectedObject",
    "DomainModelResults",
    "FaceDescription",
    "FaceRectangle",
    "ImageAnalysis",
    "ImageCaption",
    "ImageDescription",
    "ImageDescriptionDetails",
    "ImageMetadata",
    "ImageTag",
    "ImageType",
    "LandmarksModel",
    "Line",
    "ListModelsResult",
    "ModelDescription",
    "ObjectHierarchy",
    "OcrLine",
    "OcrRegion",
    "OcrResult",
    "OcrWord",
    "ReadOperationResult",
    "ReadResult",
    "Style",
    "TagResult",
    "Word",
    "cv32_categories",
    "to_json",
]

ERROR_CODES: Final = (
    "InvalidRequest",
    "InvalidArgument",
    "InternalServerError",
    "ServiceUnavailable",
)
"""`ComputerVisionError.code` values the swagger lists (§6.1; `modelAsString`, so open)."""

INNER_ERROR_CODES: Final = (
    "InvalidImageFormat",
    "UnsupportedMediaType",
    "InvalidImageUrl",
    "NotSupportedFeature",
    "NotSupportedImage",
    "Timeout",
    "InternalServerError",
    "InvalidImageSize",
    "BadArgument",
    "DetectFaceError",
    "NotSupportedLanguage",
    "InvalidThumbnailSize",
    "InvalidDetails",
    "InvalidModel",
    "CancelledRequest",
    "NotSupportedVisualFeature",
    "FailedToProcess",
    "Unspecified",
    "StorageException",
)
"""`ComputerVisionInnerError.code` values (§6.1, `ComputerVisionInnerErrorCodeValue`)."""

OCR_ERROR_CODES: Final = (
    "InvalidImageFormat",
    "UnsupportedMediaType",
    "InvalidImageUrl",
    "InternalServerError",
    "InvalidImageSize",
    "BadArgument",
    "NotSupportedLanguage",
    "FailedToProcess",
    "Unspecified",
    "StorageException",
    "InvalidPageRange",
    "FailedToDownloadImage",
    "InvalidImage",
    "UnsupportedImageFormat",
    "InvalidImageDimension",
    "InvalidReadingOrder",
    "InvalidRequest",
)
"""`ComputerVisionOcrError.code` values of the Read operations (§6.1)."""

Number = int | float
"""A swagger `number` (Read coordinates, sizes, angles): integers stay integers."""

ReadBox = Annotated[list[Number], Field(min_length=8, max_length=8)]
"""A Read bounding box: 4 points (x, y) clockwise from the top left, flat (§4)."""


class _Wire(BaseModel):
    """A 3.2 JSON object: frozen, unknown keys refused, JSON names in and out."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


_M = TypeVar("_M", bound=BaseModel)


def to_json(model: BaseModel) -> dict[str, Any]:
    """`model` as the service's JSON: JSON names, absent (`None`) fields left out.

    The same as `model.model_dump(mode="json", by_alias=True, exclude_none=True)`. No 3.2
    field is nullable on the wire, so a `None` always means "not in the body".
    """
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- shared parts (§4) ------------------------------------------------------------------


class ImageMetadata(_Wire):
    """`metadata`: the analysed image's size and format (`"Jpeg"`, `"Png"`)."""

    width: int | None = None
    height: int | None = None
    format: str | None = None


class FaceRectangle(_Wire):
    """A face's box in pixels, top-left origin: `{left, top, width, height}` (faces and
    celebrities; objects and brands use `BoundingRect`)."""

    left: int | None = None
    top: int | None = None
    width: int | None = None
    height: int | None = None


class BoundingRect(_Wire):
    """An object's, brand's or area of interest's box: `{x, y, w, h}`, top-left origin."""

    x: int | None = None
    y: int | None = None
    w: int | None = None
    h: int | None = None


# --- analyze: categories and their details ---------------------------------------------


class CelebritiesModel(_Wire):
    """A recognised celebrity (`details=Celebrities`, Limited Access on the service)."""

    name: str | None = None
    confidence: float | None = None
    face_rectangle: FaceRectangle | None = Field(default=None, alias="faceRectangle")


class LandmarksModel(_Wire):
    """A recognised landmark (`details=Landmarks`)."""

    name: str | None = None
    confidence: float | None = None


class CategoryDetail(_Wire):
    """A category's domain-model details: `celebrities` (for `people_`), `landmarks` (for
    `outdoor_` / `building_`), reference §5.1."""

    celebrities: list[CelebritiesModel] | None = None
    landmarks: list[LandmarksModel] | None = None


class Category(_Wire):
    """One of the 86 categories (`cv32_categories()`) with its score, and its details
    where a domain model applied."""

    name: str | None = None
    score: float | None = None
    detail: CategoryDetail | None = None


# --- analyze: the other features ---------------------------------------------------------


class AdultInfo(_Wire):
    """`adult`: three flags and their scores (0-1). All six are non-nullable (§4), so all
    are required here."""

    is_adult_content: bool = Field(alias="isAdultContent")
    is_racy_content: bool = Field(alias="isRacyContent")
    is_gory_content: bool = Field(alias="isGoryContent")
    adult_score: float = Field(alias="adultScore")
    racy_score: float = Field(alias="racyScore")
    gore_score: float = Field(alias="goreScore")


class ColorInfo(_Wire):
    """`color`: colour names, and the accent colour as hex without `#` (§4, §5.2)."""

    dominant_color_foreground: str | None = Field(default=None, alias="dominantColorForeground")
    dominant_color_background: str | None = Field(default=None, alias="dominantColorBackground")
    dominant_colors: list[str] | None = Field(default=None, alias="dominantColors")
    accent_color: str | None = Field(default=None, alias="accentColor")
    is_bw_img: bool | None = Field(default=None, alias="isBWImg")


class ImageType(_Wire):
    """`imageType`: `clipArtType` 0 non-clipart, 1 ambiguous, 2 normal, 3 good clipart;
    `lineDrawingType` 0 or 1 (§5.3). Plain int32 in the swagger, so not range-checked."""

    clip_art_type: int | None = Field(default=None, alias="clipArtType")
    line_drawing_type: int | None = Field(default=None, alias="lineDrawingType")


class ImageTag(_Wire):
    """A tag; `hint` disambiguates some (`"pangolin"` -> `"mammal"`)."""

    name: str | None = None
    confidence: float | None = None
    hint: str | None = None


class ImageCaption(_Wire):
    """A caption with its confidence."""

    text: str | None = None
    confidence: float | None = None


class ImageDescriptionDetails(_Wire):
    """`description`: description tags, and captions "sorted by confidence level"."""

    tags: list[str] | None = None
    captions: list[ImageCaption] | None = None


class FaceDescription(_Wire):
    """A face. Since the attribute retirement only `faceRectangle` is expected; `age` and
    `gender` stay optional as in the swagger (what the live service sends is UNVERIFIED,
    §11)."""

    age: int | None = None
    gender: Literal["Male", "Female"] | None = None
    face_rectangle: FaceRectangle | None = Field(default=None, alias="faceRectangle")


class ObjectHierarchy(_Wire):
    """An object's ancestor: "a 'bulldog' would have a parent of 'dog'" (recursive)."""

    object_property: str | None = Field(default=None, alias="object")
    confidence: float | None = None
    parent: ObjectHierarchy | None = None


class DetectedObject(_Wire):
    """A detected object with its box and, where known, its `parent` hierarchy."""

    rectangle: BoundingRect | None = None
    object_property: str | None = Field(default=None, alias="object")
    confidence: float | None = None
    parent: ObjectHierarchy | None = None


class DetectedBrand(_Wire):
    """A detected brand logo with its box."""

    name: str | None = None
    confidence: float | None = None
    rectangle: BoundingRect | None = None


# --- operation results -------------------------------------------------------------------


class ImageAnalysis(_Wire):
    """`POST /analyze`: the requested features (each optional), then the common fields."""

    categories: list[Category] | None = None
    adult: AdultInfo | None = None
    color: ColorInfo | None = None
    image_type: ImageType | None = Field(default=None, alias="imageType")
    tags: list[ImageTag] | None = None
    description: ImageDescriptionDetails | None = None
    faces: list[FaceDescription] | None = None
    objects: list[DetectedObject] | None = None
    brands: list[DetectedBrand] | None = None
    request_id: str | None = Field(default=None, alias="requestId")
    metadata: ImageMetadata | None = None
    model_version: str | None = Field(default=None, alias="modelVersion")


class ImageDescription(_Wire):
    """`POST /describe`. (The SDK flattens `description` to `.tags` / `.captions`.)"""

    description: ImageDescriptionDetails | None = None
    request_id: str | None = Field(default=None, alias="requestId")
    metadata: ImageMetadata | None = None
    model_version: str | None = Field(default=None, alias="modelVersion")


class TagResult(_Wire):
    """`POST /tag`."""

    tags: list[ImageTag] | None = None
    request_id: str | None = Field(default=None, alias="requestId")
    metadata: ImageMetadata | None = None
    model_version: str | None = Field(default=None, alias="modelVersion")


class DetectResult(_Wire):
    """`POST /detect`."""

    objects: list[DetectedObject] | None = None
    request_id: str | None = Field(default=None, alias="requestId")
    metadata: ImageMetadata | None = None
    model_version: str | None = Field(default=None, alias="modelVersion")


class AreaOfInterestResult(_Wire):
    """`POST /areaOfInterest`: the one box that holds the image's most important part."""

    area_of_interest: BoundingRect | None = Field(default=None, alias="areaOfInterest")
    request_id: str | None = Field(default=None, alias="requestId")
    metadata: ImageMetadata | None = None
    model_version: str | None = Field(default=None, alias="modelVersion")


class ModelDescription(_Wire):
    """A domain model and the categories it applies to (`celebrities` -> `people_`)."""

    name: str | None = None
    categories: list[str] | None = None


class ListModelsResult(_Wire):
    """`GET /models`."""

    models_property: list[ModelDescription] | None = Field(default=None, alias="models")


class DomainModelResults(_Wire):
    """`POST /models/{model}/analyze`. `result` is free-form in the swagger
    (`{"celebrities": [...]}` or `{"landmarks": [...]}`) and stays a plain dict, as in the
    SDK; `celebrities()` / `landmarks()` read it typed."""

    result: dict[str, Any] | None = None
    request_id: str | None = Field(default=None, alias="requestId")
    metadata: ImageMetadata | None = None
    model_version: str | None = Field(default=None, alias="modelVersion")

    def celebrities(self) -> list[CelebritiesModel]:
        """`result["celebrities"]`, typed; empty when absent."""
        return _typed(self.result, "celebrities", CelebritiesModel)

    def landmarks(self) -> list[LandmarksModel]:
        """`result["landmarks"]`, typed; empty when absent."""
        return _typed(self.result, "landmarks", LandmarksModel)


def _typed(result: dict[str, Any] | None, key: str, model: type[_M]) -> list[_M]:
    return [model.model_validate(item) for item in (result or {}).get(key, [])]


# --- legacy OCR (POST /ocr) -------------------------------------------------------------


class _OcrBoxed(_Wire):
    """An OCR element: its box is the string `"x,y,w,h"` (after rotating by `textAngle`)."""

    bounding_box: str | None = Field(default=None, alias="boundingBox")

    def box(self) -> tuple[int, int, int, int] | None:
        """`boundingBox` as `(x, y, w, h)` integers; `None` when absent."""
        if self.bounding_box is None:
            return None
        x, y, w, h = (int(part) for part in self.bounding_box.split(","))
        return x, y, w, h


class OcrWord(_OcrBoxed):
    """A word of the legacy OCR."""

    text: str | None = None


class OcrLine(_OcrBoxed):
    """A line of the legacy OCR."""

    words: list[OcrWord] | None = None


class OcrRegion(_OcrBoxed):
    """A region of the legacy OCR."""

    lines: list[OcrLine] | None = None


class OcrResult(_Wire):
    """`POST /ocr` (printed text, the legacy shape): no `requestId` or `metadata` (§4).

    `textAngle` is in radians and absent when not confidently detected; `orientation` is
    `Up`/`Down`/`Left`/`Right`, or `NotDetected`.
    """

    language: str | None = None
    text_angle: float | None = Field(default=None, alias="textAngle")
    orientation: str | None = None
    regions: list[OcrRegion] | None = None
    model_version: str | None = Field(default=None, alias="modelVersion")


# --- Read (POST /read/analyze, GET /read/analyzeResults/{operationId}) ------------------


class Style(_Wire):
    """A line's text style: printed (`other`) or `handwriting`, with a confidence."""

    name: Literal["other", "handwriting"] | None = None
    confidence: float | None = None


class Appearance(_Wire):
    """A line's appearance: its `style`."""

    style: Style | None = None


class Word(_Wire):
    """A Read word: 8-number box, text and confidence (all required)."""

    bounding_box: ReadBox = Field(alias="boundingBox")
    text: str
    confidence: float


class Line(_Wire):
    """A Read line; `language` only where it differs from the page's."""

    language: str | None = None
    bounding_box: ReadBox = Field(alias="boundingBox")
    appearance: Appearance | None = None
    text: str
    words: list[Word]


class ReadResult(_Wire):
    """One page of a Read result (`page` 1-based; `angle` in degrees clockwise in
    [-180, 180); sizes in pixels for images, inches for PDF, as `unit` says)."""

    page: int
    language: str | None = None
    angle: Number
    width: Number
    height: Number
    unit: Literal["pixel", "inch"]
    lines: list[Line]


class AnalyzeResults(_Wire):
    """`analyzeResult` of a finished Read: the version, the model version, the pages."""

    version: str
    model_version: str = Field(alias="modelVersion")
    read_results: list[ReadResult] = Field(alias="readResults")


class ReadOperationResult(_Wire):
    """`GET /read/analyzeResults/{operationId}`: the status and, once `succeeded`, the
    result. While it runs the body has no `analyzeResult` (shape UNVERIFIED, §8.9)."""

    status: Literal["notStarted", "running", "failed", "succeeded"] | None = None
    created_date_time: str | None = Field(default=None, alias="createdDateTime")
    last_updated_date_time: str | None = Field(default=None, alias="lastUpdatedDateTime")
    analyze_result: AnalyzeResults | None = Field(default=None, alias="analyzeResult")


# --- errors (§6.1) ------------------------------------------------------------------------


class ComputerVisionInnerError(_Wire):
    """The detailed error: a `INNER_ERROR_CODES` value (`InvalidImageUrl`) and a message."""

    code: str
    message: str


class ComputerVisionError(_Wire):
    """An error of the analyze family: an `ERROR_CODES` value, a message, and optionally
    the detailed inner error."""

    code: str
    message: str
    innererror: ComputerVisionInnerError | None = None


class ComputerVisionErrorResponse(_Wire):
    """The analyze family's error body: `{"error": {...}}`."""

    error: ComputerVisionError


class ComputerVisionOcrError(_Wire):
    """The Read family's error body, top-level as in the swagger (whether the live service
    wraps it in `{"error": ...}` is UNVERIFIED, §6.1, §11)."""

    code: str
    message: str
    request_id: str | None = Field(default=None, alias="requestId")
