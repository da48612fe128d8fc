"""The Computer Vision 3.2 image operations on `viewfinder serve`.

References are to `azure-computer-vision-3.2.md` (sections 1-4, 5.7, 5.8, 6, 7, 8, 9).
Read 3.2 lives in `read32.py`; this module serves the other operations of section 2 under
`/vision/v3.2/`, registered on the server's app by `register`:

| route | features asked (one model request at most) | body |
|---|---|---|
| `POST analyze` | `visualFeatures` (any case; none: Categories), `details` | `ImageAnalysis` |
| `POST describe` | description (`maxCandidates` captions) | `ImageDescription` |
| `POST tag` | tags with 3.2 hints | `TagResult` |
| `POST detect` | objects with 3.2 parents | `DetectResult` |
| `POST areaOfInterest` | smart_crops, no ratio: the region of interest | `AreaOfInterestResult` |
| `POST generateThumbnail` | smart_crops (`smartCropping=true`), else none | image bytes |
| `POST ocr` | read | `OcrResult` (legacy) |
| `GET models` | none | `ListModelsResult` (§8.7) |
| `POST models/{model}/analyze` | landmarks; celebrities refused | `DomainModelResults` |

Every route shares the 4.0 route's authentication, body limits (the server's
`max_body_bytes`, not 3.2's 4 MB: a larger image costs the same model request), URL
policy, pixel budget and rate limiter (the `Host` the server gives), and answers errors
in 3.2's `ComputerVisionErrorResponse` shape (§6.1; the same `{"error": {code, message,
innererror}}` as 4.0's), with §6.2's inner codes: `InvalidImageUrl`, `InvalidImageFormat`,
`InvalidImageSize` (too large a file, too small or large a side), `NotSupportedVisualFeature`,
`InvalidDetails`, `NotSupportedLanguage`, `InvalidThumbnailSize`, `InvalidModel`,
`BadArgument`; a body type other than JSON, `application/octet-stream`,
`multipart/form-data` or `image/*` is a 415 `UnsupportedMediaType` (§1). A bad key is the
4.0 route's 401, which the 3.2 SDK raises as `ComputerVisionErrorResponseException`.

Celebrities (`details=Celebrities`, `models/celebrities/analyze`) is a Limited Access
feature of the service (§5.7): approved customers only. viewfinder offers it to nobody and
answers 403 with inner code `NotSupportedFeature` and a message that says so (how the
service answers an unapproved caller is UNVERIFIED, §11; a 403 says "not for you" rather
than "your request is malformed"). `GET models` still lists it, as the service does.

`descriptionExclude` (Celebrities, Landmarks) is checked and then has nothing to turn off:
viewfinder's description uses no domain model. `model-version` must match the service's
values (`latest`, `2021-04-01`, `2021-05-01`); every one means viewfinder's model, and
results report the engine's true `<model>+<hash>` (as Read 3.2 does).

Thumbnails (§5.8, section 3 `width`, `height` 1-1024, `smartCropping`): the result is
exactly `width` x `height`. With smart cropping, the crop is the `smart_crops` feature's
for the requested ratio when 4.0 allows that ratio (0.75-1.8); for any other ratio it is
the region of interest (a crop asked without a ratio) grown along its short side to the
ratio around its centre, shrunk to fit the image if it must, and moved inside it
(`fit_ratio`). Without smart cropping the whole image is resized to the size, changing its
aspect ratio (the reference's wording; no model request). The image is written in its own
format when it is JPEG, PNG, GIF, BMP, WEBP or TIFF (Pillow writes them; transparency is
flattened onto white as for every decode), else JPEG, with the matching content type.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel

from viewfinder.analyzers.features import Feature
from viewfinder.compat import map32, rest32
from viewfinder.compat.handler import (
    JSON_CONTENT_TYPE,
    MODEL_VERSION_HEADER,
    is_image_type,
    media_type,
)
from viewfinder.compat.service import LANGUAGES, ServiceError, service_error_for
from viewfinder.errors import (
    ImageFetchError,
    ImageSizeError,
    InvalidOptionError,
    ViewfinderError,
)
from viewfinder.prepare.decode import DEFAULT_LIMITS, decode_rgb, open_checked
from viewfinder.prepare.pixel_budget import PixelBudget, budget_scope, run_decode
from viewfinder.schemas.geometry import BoundingBox

if TYPE_CHECKING:
    from viewfinder.analyzers.image_analysis import FeatureOptions, ImageAnalyzer
    from viewfinder.build.plan import CallPlan
    from viewfinder.schemas.result import ImageAnalysisResult

__all__ = [
    "BASE_PATH",
    "CELEBRITIES_REFUSED",
    "LANGUAGES_32",
    "OCR_LANGUAGES",
    "Host",
    "Query32",
    "error32_for",
    "fit_ratio",
    "register",
    "render_thumbnail",
    "visual_features",
]

BASE_PATH: Final = "/vision/v3.2"
"""Where the 3.2 operations live under the endpoint (§1)."""

LANGUAGES_32: Final = LANGUAGES | {"sr-Cyrl"}
"""`language` of analyze, describe, tag and models (§3: 52 codes; the 4.0 list spells
`sr-Cryl` as the docs do, the 3.2 swagger `sr-Cyrl`: both are accepted)."""

OCR_LANGUAGES: Final = frozenset(
    (  # noqa: SIM905 - a word list reads better than 27 quoted items
        "unk zh-Hans zh-Hant cs da nl en fi fr de el hu it ja ko nb pl pt ru es sv tr ar ro "
        "sr-Cyrl sr-Latn sk"
    ).split()
)
"""`language` of `ocr` (§3, enum `OcrLanguages`)."""

MODEL_VERSIONS: Final = frozenset(("latest", "2021-04-01", "2021-05-01"))
"""`model-version` values the 3.2 service accepts (§3); all mean viewfinder's model."""

MAX_THUMBNAIL_SIDE: Final = 1024
"""`width` and `height` of a thumbnail: 1 to this (§3, §7)."""

THUMBNAIL_FORMATS: Final = frozenset(("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"))
"""Input formats a thumbnail keeps; any other is written as JPEG."""

_VISUAL_FEATURES: Final = {
    "imagetype": Feature.IMAGE_TYPE,
    "faces": Feature.FACES,
    "adult": Feature.ADULT,
    "categories": Feature.CATEGORIES,
    "color": Feature.COLOR,
    "tags": Feature.TAGS,
    "description": Feature.DESCRIPTION,
    "objects": Feature.OBJECTS,
    "brands": Feature.BRANDS,
}
"""`visualFeatures` values (§3, lower-cased) -> viewfinder's features."""

logger = logging.getLogger(__name__)

_DOMAIN_NAMES: Final = ("celebrities", "landmarks")
_MODEL_VERSION = re.compile(r"^(latest|\d{4}-\d{2}-\d{2})(-preview)?$")


def _bad(inner_code: str, message: str, status: int = 400) -> ServiceError:
    """A 3.2 error: outer `InvalidRequest`, the detailed code and message inside (§6.1)."""
    return ServiceError(status, "InvalidRequest", message, inner_code, message)


CELEBRITIES_REFUSED: Final = _bad(
    "NotSupportedFeature",
    "Celebrity recognition is a Limited Access feature of Azure AI Vision, for approved "
    "customers only (https://aka.ms/facerecognition); this server does not offer it.",
    status=403,
)
"""The answer to `details=Celebrities` and `models/celebrities/analyze` (§5.7)."""

_UNSUPPORTED_MEDIA: Final = _bad(
    "UnsupportedMediaType",
    "Unsupported media type: send application/json with the image 'url', or the image "
    "as application/octet-stream or multipart/form-data.",
    status=415,
)
_TOO_LARGE: Final = _bad("InvalidImageSize", "Input image is too large.")
_TOO_LARGE_40: Final = service_error_for(ImageSizeError("too large", limit="bytes"))
_BAD_URL: Final = _bad("InvalidImageUrl", "Image URL is badly formatted or not accessible.")


def error32_for(
    exc: Exception, fallback: Callable[[ViewfinderError], ServiceError]
) -> ServiceError:
    """The 3.2 error answer for what a route caught (§6.2's inner codes).

    The 4.0 answers that lack 3.2's detail get it: a too large body `InvalidImageSize`, an
    image URL that cannot be fetched `InvalidImageUrl`. Size and format errors already
    carry `InvalidImageSize` / `InvalidImageFormat`; rate limits, busy decodes and model
    failures are `fallback`'s (the server's, with the limiter's `Retry-After`).
    """
    if isinstance(exc, ServiceError):
        return _TOO_LARGE if exc == _TOO_LARGE_40 else exc
    if isinstance(exc, ImageFetchError):
        return _BAD_URL
    if isinstance(exc, ImageSizeError) and exc.limit == "bytes":
        return _TOO_LARGE
    if isinstance(exc, InvalidOptionError):
        return _bad("BadArgument", str(exc))
    if isinstance(exc, ViewfinderError):
        return fallback(exc)
    return service_error_for(ViewfinderError("unexpected"))


# --- the query --------------------------------------------------------------------------


def _csv(params: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [
        item.strip()
        for key, value in params
        if key == name
        for item in value.split(",")
        if item.strip()
    ]


def visual_features(values: Sequence[str], details: Sequence[str]) -> list[Feature]:
    """The features of `analyze`'s `visualFeatures` and `details` (§3), case-insensitive.

    No visual feature: Categories ("By default, image categories are returned").
    `details=Landmarks` adds the landmarks feature and Categories, whose `detail` holds
    them (§5.1).

    Raises:
        ServiceError: 400 `NotSupportedVisualFeature` or `InvalidDetails`; 403 for
            `Celebrities` (`CELEBRITIES_REFUSED`).
    """
    chosen: list[Feature] = []
    for value in values:
        feature = _VISUAL_FEATURES.get(value.lower())
        if feature is None:
            raise _bad(
                "NotSupportedVisualFeature", f"Specified feature type '{value}' isn't valid."
            )
        chosen.append(feature)
    wanted = [_detail(value) for value in details]
    if "celebrities" in wanted:
        raise CELEBRITIES_REFUSED
    if not chosen or "landmarks" in wanted:
        chosen.insert(0, Feature.CATEGORIES)
    if "landmarks" in wanted:
        chosen.append(Feature.LANDMARKS)
    return list(dict.fromkeys(chosen))


def _detail(value: str) -> str:
    if value.lower() not in _DOMAIN_NAMES:
        raise _bad("InvalidDetails", f"Unsupported detail parameter value '{value}'.")
    return value.lower()


@dataclass(frozen=True)
class Query32:
    """A 3.2 operation's query (§3), read from `(name, value)` pairs; the last value of
    a repeated single-valued parameter counts, unknown parameters are ignored."""

    params: Sequence[tuple[str, str]]

    def get(self, name: str) -> str | None:
        value: str | None = dict(self.params).get(name)
        return value

    def csv(self, name: str) -> list[str]:
        """Repeated and comma-separated values, flattened."""
        return _csv(self.params, name)

    def flag(self, name: str, default: bool) -> bool:
        """A boolean parameter (`true` / `false`, any case).

        Raises:
            ServiceError: 400 `BadArgument`.
        """
        value = self.get(name)
        if value is None:
            return default
        if value.strip().lower() not in ("true", "false"):
            raise _bad("BadArgument", f"'{name}' must be 'true' or 'false'.")
        return value.strip().lower() == "true"

    def language(self, allowed: frozenset[str], default: str) -> str:
        """`language`, one of `allowed` (compared case-insensitively, returned as listed).

        Raises:
            ServiceError: 400 `NotSupportedLanguage`.
        """
        value = self.get("language")
        if value is None:
            return default
        found = {code.lower(): code for code in allowed}.get(value.strip().lower())
        if found is None:
            raise _bad(
                "NotSupportedLanguage",
                f"The requested operation isn't supported in the language '{value}'.",
            )
        return found

    def check_model_version(self) -> None:
        """`model-version`: one the service accepts, else 400 `BadArgument`."""
        value = self.get("model-version")
        if value is not None and (not _MODEL_VERSION.match(value) or value not in MODEL_VERSIONS):
            raise _bad(
                "BadArgument",
                f"The model version '{value}' is not supported; use one of "
                f"{', '.join(sorted(MODEL_VERSIONS))}.",
            )

    def description_exclude(self) -> list[str]:
        """`descriptionExclude` values, checked (Celebrities, Landmarks); nothing to turn
        off in viewfinder's description, which uses no domain model.

        Raises:
            ServiceError: 400 `BadArgument` for another value.
        """
        values = self.csv("descriptionExclude")
        for value in values:
            if value.lower() not in _DOMAIN_NAMES:
                raise _bad("BadArgument", f"Unsupported descriptionExclude value '{value}'.")
        return values

    def integer(self, name: str, low: int, high: int, inner_code: str) -> int:
        """A required integer in `low`-`high`.

        Raises:
            ServiceError: 400 with `inner_code`.
        """
        value = self.get(name)
        if value is None or not value.strip().isdigit() or not low <= int(value) <= high:
            raise _bad(inner_code, f"'{name}' must be an integer from {low} to {high}.")
        return int(value)


# --- thumbnails ---------------------------------------------------------------------------


def fit_ratio(box: BoundingBox, ratio: float, width: int, height: int) -> BoundingBox:
    """The box of aspect `ratio` (width / height) around `box`'s centre, inside a
    `width` x `height` image: `box` grown along its short side to the ratio, shrunk to fit
    the image when it must (cutting the long side), then moved inside it.
    """
    w, h = float(max(box.width, 1)), float(max(box.height, 1))
    if w / h < ratio:
        w = h * ratio
    else:
        h = w / ratio
    if w > width:
        w, h = float(width), width / ratio
    if h > height:
        w, h = height * ratio, float(height)
    w_px, h_px = min(width, max(1, round(w))), min(height, max(1, round(h)))
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    x = min(max(0, round(cx - w_px / 2)), width - w_px)
    y = min(max(0, round(cy - h_px / 2)), height - h_px)
    return BoundingBox(x=x, y=y, width=w_px, height=h_px)


def render_thumbnail(
    data: bytes, box: BoundingBox | None, width: int, height: int
) -> tuple[bytes, str]:
    """The thumbnail's bytes and content type: `data` decoded (the 4.0 checks: format,
    sides, pixels), cropped to `box` (pixels of the upright image) when given, resized to
    exactly `width` x `height`, written in its own format when it is one of
    `THUMBNAIL_FORMATS`, else JPEG.

    Raises:
        ImageError: The image is refused or cannot be decoded.
    """
    picture = decode_rgb(data, "the image")
    if box is not None:
        picture = picture.crop((box.x, box.y, box.x + box.width, box.y + box.height))
    picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    found = open_checked(data, "the image", DEFAULT_LIMITS).format
    fmt = found if found in THUMBNAIL_FORMATS else "JPEG"
    out = io.BytesIO()
    picture.save(out, format=fmt)
    return out.getvalue(), Image.MIME.get(fmt, "image/jpeg")


def _image_format(data: bytes) -> str | None:
    """`metadata.format` as the service spells it (`Jpeg`, `Png`), from the header."""
    try:
        found = open_checked(data, "the image", DEFAULT_LIMITS).format
    except ViewfinderError:  # the image was analysed: its format is only a label
        return None
    return found.title() if found else None


# --- the routes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """What the server lends the 3.2 routes, so they serve with the 4.0 route's rules.

    Attributes:
        check: Authenticates a request (raises the 401 `ServiceError`).
        analyzer: The server's analyzer (its retry policy, its rate limiter).
        service_error: A `ViewfinderError`'s answer (429s with the limiter's pause).
        read_image: The image of a request's body: bytes, a form part or a fetched URL,
            with the server's limits and address policy.
        pixels: The server's pixel budget; `decode_wait` its longest wait.
        record: The request's access-log record.
        error_response: A `ServiceError` as the server answers it (and logs its code).
    """

    check: Callable[[Request, dict[str, Any]], Awaitable[None]]
    analyzer: Callable[[], ImageAnalyzer]
    service_error: Callable[[ViewfinderError], ServiceError]
    read_image: Callable[[Request, dict[str, Any]], Awaitable[bytes]]
    pixels: PixelBudget
    decode_wait: float
    record: Callable[[Request], dict[str, Any]]
    error_response: Callable[[ServiceError, dict[str, Any]], Response]


PlanFor = Callable[[Query32, "ImageAnalyzer"], "CallPlan[FeatureOptions, ImageAnalysisResult]"]
Answer = Callable[["ImageAnalysisResult", Query32, str, str | None], BaseModel]


def _plan(analyzer: ImageAnalyzer, features: Sequence[Feature], **options: Any) -> Any:
    """`analyzer.plan`, its refusal of an option answered 400 `BadArgument`."""
    try:
        return analyzer.plan(list(features), **options)
    except InvalidOptionError as exc:
        raise _bad("BadArgument", str(exc)) from None


def _check_media(request: Request) -> None:
    media = media_type(request.headers.get("content-type"))
    if media not in ("application/json", "multipart/form-data") and not is_image_type(media):
        raise _UNSUPPORTED_MEDIA


def _json(model: BaseModel, model_version: str | None = None) -> Response:
    headers = {} if model_version is None else {MODEL_VERSION_HEADER: model_version}
    return JSONResponse(rest32.to_json(model), media_type=JSON_CONTENT_TYPE, headers=headers)


def register(app: FastAPI, host: Host) -> None:
    """Add the 3.2 image operations (the module's table) to the server's `app`."""

    def refused(exc: Exception, record: dict[str, Any]) -> Response:
        error = error32_for(exc, host.service_error)
        if error.status >= 500:
            logger.warning("request %s: %s: %s", record.get("request_id"), type(exc).__name__, exc)
        return host.error_response(error, record)

    async def analyzed(
        request: Request, plan_for: PlanFor
    ) -> tuple[ImageAnalysisResult, Query32, dict[str, Any], bytes]:
        """Authenticate, plan (query before body, as the 4.0 route), read, analyse."""
        record = host.record(request)
        record["api_version"] = "3.2"
        await host.check(request, record)
        analyzer = host.analyzer()
        query = Query32(request.query_params.multi_items())
        query.check_model_version()
        plan = plan_for(query, analyzer)
        record["features"] = [f.azure_name for f in plan.options.features]
        _check_media(request)
        image = await host.read_image(request, record)
        with budget_scope(host.pixels, host.decode_wait):
            result = await analyzer.arun(plan, image)
        return result, query, record, image

    def json_route(path: str, plan_for: PlanFor, answer: Answer) -> None:
        async def route(request: Request) -> Response:
            try:
                result, query, record, image = await analyzed(request, plan_for)
                body = answer(result, query, str(record.get("request_id")), _image_format(image))
            except Exception as exc:
                return refused(exc, host.record(request))
            return _json(body, result.model_version)

        route.__name__ = "v32_" + path.replace("/", "_").replace("{", "").replace("}", "")
        app.add_api_route(BASE_PATH + "/" + path, route, methods=["POST"], response_model=None)

    def analyze_plan(query: Query32, analyzer: ImageAnalyzer) -> Any:
        features = visual_features(query.csv("visualFeatures"), query.csv("details"))
        language = query.language(LANGUAGES_32, "en")
        query.description_exclude()
        return _plan(analyzer, features, language=language, tag_hints=True, object_parents=True)

    json_route(
        "analyze",
        analyze_plan,
        lambda r, q, rid, fmt: map32.analysis(r, request_id=rid, image_format=fmt),
    )

    def describe_plan(query: Query32, analyzer: ImageAnalyzer) -> Any:
        language = query.language(LANGUAGES_32, "en")
        query.description_exclude()
        raw = query.get("maxCandidates") or "1"
        if not raw.strip().isdigit():
            raise _bad("BadArgument", "'maxCandidates' must be a positive integer.")
        return _plan(analyzer, [Feature.DESCRIPTION], language=language, max_candidates=int(raw))

    json_route(
        "describe",
        describe_plan,
        lambda r, q, rid, fmt: map32.description(r, request_id=rid, image_format=fmt),
    )
    json_route(
        "tag",
        lambda q, a: _plan(
            a, [Feature.TAGS], language=q.language(LANGUAGES_32, "en"), tag_hints=True
        ),
        lambda r, q, rid, fmt: map32.tag(r, request_id=rid, image_format=fmt),
    )
    json_route(
        "detect",
        lambda q, a: _plan(a, [Feature.OBJECTS], object_parents=True),
        lambda r, q, rid, fmt: map32.detect(r, request_id=rid, image_format=fmt),
    )
    json_route(
        "areaOfInterest",
        lambda q, a: _plan(a, [Feature.SMART_CROPS]),
        lambda r, q, rid, fmt: map32.area_of_interest(r, request_id=rid, image_format=fmt),
    )

    def ocr_plan(query: Query32, analyzer: ImageAnalyzer) -> Any:
        query.flag("detectOrientation", True)
        query.language(OCR_LANGUAGES, "unk")
        return _plan(analyzer, [Feature.READ])

    json_route(
        "ocr",
        ocr_plan,
        lambda r, q, rid, fmt: map32.ocr(
            r.read,
            language=q.language(OCR_LANGUAGES, "unk"),
            detect_orientation=q.flag("detectOrientation", True),
            model_version=r.model_version,
        ),
    )

    @app.post(BASE_PATH + "/models/{model}/analyze", response_model=None)
    async def domain_analyze(request: Request, model: str) -> Response:
        """`models/landmarks/analyze`; celebrities refused (Limited Access, §5.7)."""

        def plan_for(query: Query32, analyzer: ImageAnalyzer) -> Any:
            name = model.lower()
            if name == "celebrities":
                raise CELEBRITIES_REFUSED
            if name != "landmarks":
                raise _bad("InvalidModel", f"The model '{model}' does not exist.")
            return _plan(analyzer, [Feature.LANDMARKS], language=query.language(LANGUAGES_32, "en"))

        try:
            result, _, record, image = await analyzed(request, plan_for)
            body = map32.landmarks(
                result, request_id=str(record.get("request_id")), image_format=_image_format(image)
            )
        except Exception as exc:
            return refused(exc, host.record(request))
        return _json(body, result.model_version)

    @app.get(BASE_PATH + "/models", response_model=None)
    async def list_models(request: Request) -> Response:
        """`GET models`: the two domain models (§8.7)."""
        record = host.record(request)
        record["api_version"] = "3.2"
        try:
            await host.check(request, record)
        except Exception as exc:
            return refused(exc, record)
        return _json(map32.list_models())

    @app.post(BASE_PATH + "/generateThumbnail", response_model=None)
    async def generate_thumbnail(request: Request) -> Response:
        """`generateThumbnail`: image bytes of exactly `width` x `height`."""
        record = host.record(request)
        record["api_version"] = "3.2"
        try:
            await host.check(request, record)
            analyzer = host.analyzer()
            query = Query32(request.query_params.multi_items())
            query.check_model_version()
            width = query.integer("width", 1, MAX_THUMBNAIL_SIDE, "InvalidThumbnailSize")
            height = query.integer("height", 1, MAX_THUMBNAIL_SIDE, "InvalidThumbnailSize")
            smart = query.flag("smartCropping", False)
            record["features"] = ["smartCrops"] if smart else []
            _check_media(request)
            image = await host.read_image(request, record)
            headers: dict[str, str] = {}
            with budget_scope(host.pixels, host.decode_wait):
                box = None
                if smart:
                    box, version = await _smart_box(analyzer, image, width / height)
                    headers[MODEL_VERSION_HEADER] = version
                data, content_type = await run_decode(
                    image, None, render_thumbnail, image, box, width, height
                )
        except Exception as exc:
            return refused(exc, record)
        return Response(data, media_type=content_type, headers=headers)


async def _smart_box(
    analyzer: ImageAnalyzer, image: bytes, ratio: float
) -> tuple[BoundingBox, str]:
    """The smart crop of `ratio` (one model request) and the result's model version: the
    `smart_crops` crop when 4.0 allows the ratio, else `fit_ratio` of the region of
    interest (a crop asked without a ratio)."""
    try:
        plan = analyzer.plan([Feature.SMART_CROPS], smart_crops_aspect_ratios=[ratio])
        in_range = True
    except InvalidOptionError:
        plan = analyzer.plan([Feature.SMART_CROPS])
        in_range = False
    result = await analyzer.arun(plan, image)
    size = result.metadata
    crops = result.smart_crops or ()
    box = crops[0].box if crops else BoundingBox(x=0, y=0, width=size.width, height=size.height)
    if not in_range:
        box = fit_ratio(box, ratio, size.width, size.height)
    return box, result.model_version
