"""viewfinder's results written as Computer Vision 3.2 response bodies.

The way back of `compat/results32.py`: an `ImageAnalysisResult` becomes the `rest32`
model of a 3.2 operation's answer, so `viewfinder serve` answers `analyze`, `describe`,
`tag`, `detect`, `areaOfInterest`, `ocr` and `models/landmarks/analyze` in the shapes of
`azure-computer-vision-3.2.md` §4. Pure functions: no I/O, no web framework.

| `ImageAnalysisResult` field | 3.2 key (§4) |
|---|---|
| `categories` (`confidence`, `landmarks`) | `categories[]` `name`, `score`, `detail.landmarks` |
| `tags` (`hint`) | `tags[]` `name`, `confidence`, `hint` |
| `description` | `description` `tags`, `captions[]` |
| `objects` (`box`, `parent` chain) | `objects[]` `rectangle{x,y,w,h}`, `object`, `parent` |
| `brands` | `brands[]` `name`, `confidence`, `rectangle` |
| `faces` (`box`) | `faces[]` `faceRectangle` only (§5.5: no age, no gender) |
| `adult` | `adult` (the six fields; `filtered`/`evidence` stay viewfinder's) |
| `color`, `image_type` | `color`, `imageType` |
| `smart_crops[0].box` | `areaOfInterest` |
| `read` lines and words | `ocr` `regions[].lines[].words[]` with `"x,y,w,h"` boxes |
| `landmarks` | `models/landmarks/analyze` `result.landmarks` |
| `metadata` + the image's format | `metadata` `width`, `height`, `format` |

A feature the result does not hold (`None`) is left out of the body, as the service
leaves out what was not asked (§4).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from viewfinder.compat import rest32
from viewfinder.schemas.color import ColorInfo, ImageType
from viewfinder.schemas.cv32 import AdultContent, Category, Description
from viewfinder.schemas.features import DetectedObject, ObjectParent, ReadResult, Tag
from viewfinder.schemas.geometry import BoundingBox, Polygon
from viewfinder.schemas.result import ImageAnalysisResult

__all__ = [
    "DOMAIN_MODELS",
    "analysis",
    "area_of_interest",
    "description",
    "detect",
    "landmarks",
    "list_models",
    "metadata",
    "ocr",
    "tag",
]

DOMAIN_MODELS: Final = (("celebrities", ("people_",)), ("landmarks", ("building_",)))
"""`GET /models`: the two domain models and the categories they apply to, as the spec
example lists them (§8.7; the docs add `outdoor_` for landmarks, §5.1)."""


def metadata(result: ImageAnalysisResult, image_format: str | None) -> rest32.ImageMetadata:
    """`metadata`: the analysed image's size (as a viewer shows it) and its format."""
    return rest32.ImageMetadata(
        width=result.metadata.width, height=result.metadata.height, format=image_format
    )


def _rect(box: BoundingBox) -> rest32.BoundingRect:
    return rest32.BoundingRect(x=box.x, y=box.y, w=box.width, h=box.height)


def _categories(categories: Iterable[Category]) -> list[rest32.Category]:
    return [
        rest32.Category(
            name=c.name,
            score=c.confidence,
            detail=None
            if c.landmarks is None
            else rest32.CategoryDetail(
                landmarks=[
                    rest32.LandmarksModel(name=m.name, confidence=m.confidence) for m in c.landmarks
                ]
            ),
        )
        for c in categories
    ]


def _tags(tags: Iterable[Tag]) -> list[rest32.ImageTag]:
    return [
        rest32.ImageTag(name=t.name, confidence=t.confidence, hint=t.hint or None) for t in tags
    ]


def _hierarchy(parent: ObjectParent | None) -> rest32.ObjectHierarchy | None:
    if parent is None:
        return None
    return rest32.ObjectHierarchy(
        object_property=parent.name, confidence=parent.confidence, parent=_hierarchy(parent.parent)
    )


def _objects(objects: Iterable[DetectedObject]) -> list[rest32.DetectedObject]:
    return [
        rest32.DetectedObject(
            rectangle=_rect(o.box),
            object_property=o.name,
            confidence=o.confidence,
            parent=_hierarchy(o.parent),
        )
        for o in objects
    ]


def _description(d: Description) -> rest32.ImageDescriptionDetails:
    return rest32.ImageDescriptionDetails(
        tags=list(d.tags),
        captions=[rest32.ImageCaption(text=c.text, confidence=c.confidence) for c in d.captions],
    )


def _adult(a: AdultContent) -> rest32.AdultInfo:
    return rest32.AdultInfo(
        is_adult_content=a.is_adult_content,
        is_racy_content=a.is_racy_content,
        is_gory_content=a.is_gory_content,
        adult_score=a.adult_score,
        racy_score=a.racy_score,
        gore_score=a.gore_score,
    )


def _color(c: ColorInfo) -> rest32.ColorInfo:
    return rest32.ColorInfo(
        dominant_color_foreground=c.dominant_color_foreground,
        dominant_color_background=c.dominant_color_background,
        dominant_colors=list(c.dominant_colors),
        accent_color=c.accent_color,
        is_bw_img=c.is_bw_img,
    )


def _image_type(t: ImageType) -> rest32.ImageType:
    return rest32.ImageType(clip_art_type=t.clip_art_type, line_drawing_type=t.line_drawing_type)


def analysis(
    result: ImageAnalysisResult, *, request_id: str, image_format: str | None
) -> rest32.ImageAnalysis:
    """`POST /analyze`: every 3.2 feature the result holds (see the module's table).

    Faces carry `faceRectangle` only (§5.5's safe choice: age and gender are retired);
    landmarks appear where the service puts them, on their categories' `detail`.
    """
    r = result
    return rest32.ImageAnalysis(
        categories=None if r.categories is None else _categories(r.categories),
        adult=None if r.adult is None else _adult(r.adult),
        color=None if r.color is None else _color(r.color),
        image_type=None if r.image_type is None else _image_type(r.image_type),
        tags=None if r.tags is None else _tags(r.tags),
        description=None if r.description is None else _description(r.description),
        faces=None
        if r.faces is None
        else [
            rest32.FaceDescription(
                face_rectangle=rest32.FaceRectangle(
                    left=f.box.x, top=f.box.y, width=f.box.width, height=f.box.height
                )
            )
            for f in r.faces
        ],
        objects=None if r.objects is None else _objects(r.objects),
        brands=None
        if r.brands is None
        else [
            rest32.DetectedBrand(name=b.name, confidence=b.confidence, rectangle=_rect(b.box))
            for b in r.brands
        ],
        request_id=request_id,
        metadata=metadata(r, image_format),
        model_version=r.model_version,
    )


def description(
    result: ImageAnalysisResult, *, request_id: str, image_format: str | None
) -> rest32.ImageDescription:
    """`POST /describe`: the description (empty when the result holds none)."""
    found = result.description or Description(captions=(), tags=())
    return rest32.ImageDescription(
        description=_description(found),
        request_id=request_id,
        metadata=metadata(result, image_format),
        model_version=result.model_version,
    )


def tag(
    result: ImageAnalysisResult, *, request_id: str, image_format: str | None
) -> rest32.TagResult:
    """`POST /tag`: the tags, with their hints."""
    return rest32.TagResult(
        tags=_tags(result.tags or ()),
        request_id=request_id,
        metadata=metadata(result, image_format),
        model_version=result.model_version,
    )


def detect(
    result: ImageAnalysisResult, *, request_id: str, image_format: str | None
) -> rest32.DetectResult:
    """`POST /detect`: the objects, with their parent chains."""
    return rest32.DetectResult(
        objects=_objects(result.objects or ()),
        request_id=request_id,
        metadata=metadata(result, image_format),
        model_version=result.model_version,
    )


def area_of_interest(
    result: ImageAnalysisResult, *, request_id: str, image_format: str | None
) -> rest32.AreaOfInterestResult:
    """`POST /areaOfInterest`: the first smart crop's box (the one asked without a ratio:
    the region of interest), else the whole image."""
    crops = result.smart_crops or ()
    whole = BoundingBox(x=0, y=0, width=result.metadata.width, height=result.metadata.height)
    return rest32.AreaOfInterestResult(
        area_of_interest=_rect(crops[0].box if crops else whole),
        request_id=request_id,
        metadata=metadata(result, image_format),
        model_version=result.model_version,
    )


def landmarks(
    result: ImageAnalysisResult, *, request_id: str, image_format: str | None
) -> rest32.DomainModelResults:
    """`POST /models/landmarks/analyze`: `{"result": {"landmarks": [...]}}` (§4, §8.7)."""
    found = [
        rest32.to_json(rest32.LandmarksModel(name=m.name, confidence=m.confidence))
        for m in result.landmarks or ()
    ]
    return rest32.DomainModelResults(
        result={"landmarks": found},
        request_id=request_id,
        metadata=metadata(result, image_format),
        model_version=result.model_version,
    )


def list_models() -> rest32.ListModelsResult:
    """`GET /models`: `DOMAIN_MODELS` (§8.7)."""
    return rest32.ListModelsResult(
        models_property=[
            rest32.ModelDescription(name=name, categories=list(categories))
            for name, categories in DOMAIN_MODELS
        ]
    )


def _span(polygons: Sequence[Polygon]) -> str:
    """The legacy OCR's box: `"x,y,w,h"` around every point of `polygons`."""
    xs = [p.x for polygon in polygons for p in polygon.points]
    ys = [p.y for polygon in polygons for p in polygon.points]
    x, y = max(0, min(xs)), max(0, min(ys))
    return f"{x},{y},{max(xs) - x},{max(ys) - y}"


def ocr(
    read: ReadResult | None, *, language: str, detect_orientation: bool, model_version: str
) -> rest32.OcrResult:
    """`POST /ocr`, the legacy printed-text shape (§4 `OcrResult`, §8.6).

    One region per block of the `read` feature (it has one), its lines and words with
    `"x,y,w,h"` boxes around their polygons. The text is read upright, so `textAngle`
    is 0.0 and `orientation` is `Up` when orientation was asked and text was found,
    else `NotDetected` (§4). `language` is the one asked (`unk` when none was: the
    `read` feature reports no language).
    """
    regions = [
        rest32.OcrRegion(
            bounding_box=_span([line.polygon for line in block.lines]),
            lines=[
                rest32.OcrLine(
                    bounding_box=_span([line.polygon]),
                    words=[
                        rest32.OcrWord(bounding_box=_span([word.polygon]), text=word.text)
                        for word in line.words
                    ],
                )
                for line in block.lines
            ],
        )
        for block in (read.blocks if read is not None else ())
        if block.lines
    ]
    return rest32.OcrResult(
        language=language,
        text_angle=0.0,
        orientation="Up" if detect_orientation and regions else "NotDetected",
        regions=regions,
        model_version=model_version,
    )
