"""Azure AI Search's image-analysis skill on `viewfinder serve`: `POST /skills/image-analysis`.

A drop-in for the built-in `#Microsoft.Skills.Vision.ImageAnalysisSkill` (Computer Vision
3.2 under the hood), called by an indexer as a custom Web API skill
(`#Microsoft.Skills.Custom.WebApiSkill`). References are to
`azure-vectorize-and-search.md` Part B.

The contract (B.5): `{"values": [{"recordId", "data"}]}` in (POST or PUT, JSON),
`{"values": [{"recordId", "data", "errors", "warnings"}]}` out, HTTP 200 and one entry per
record; a record's failure is in its own `errors` (`[{"message": "<code>: <text>"}]`, B.7),
never failing the others. The whole call is refused (the service's error body) only when it
cannot be served at all: a bad key (401), a body that is not the contract's JSON (400),
more records than `SkillSettings.batch_size` (400, saying which `batchSize` to set), a
skill-wide parameter the service refuses (400; 403 for celebrities, as on
`/vision/v3.2/analyze`), or every record throttled (429 + `Retry-After`: the indexer
retries 429 twice, B.5, where a per-record error would not be retried).

Inputs (B.1, B.2): `data.image` is the normalized image as the built-in skill gets it
(`/document/normalized_images/*`: an object whose `data` is the base64 JPEG; `url` is
fetched under the server's URL policy when there is no `data`; other members such as
`width`, `rotationFromOriginal` or `$type` are ignored), or its base64 string alone
(`/document/normalized_images/*/data`).

Parameters: a Web API skill has no `visualFeatures`, `details` or `defaultLanguageCode`
properties (B.7), so they are the skill's `uri` query parameters, spelled and valued as
the built-in skill's (B.1): `visualFeatures` and `details` comma-separated (any case),
`defaultLanguageCode` (default `en`). Without `visualFeatures`, the built-in skill's seven
(adult, brands, categories, description, faces, objects, tags); `color` and `imageType`,
which the built-in skill deprecated, are served too. A record's own `languageCode` (or
`defaultLanguageCode`) input, e.g. from `/document/languageCode` as Microsoft's power
skill takes it (B.5), overrides the language for that record; a language 3.2 does not
support falls back to the skill's with a warning.

Outputs (B.1): the built-in skill's names and shapes, so output field mappings keep
working: the 3.2 `analyze` body (`viewfinder.compat.map32.analysis`) without `requestId`,
`metadata` and `modelVersion`, and each face as `{"faceBoundingBox": [4 x {"x", "y"}]}`
(the sample output's corners, clockwise from top-left) instead of 3.2's `faceRectangle`;
no `age` or `gender` (3.2 retired them). Coordinates are pixels of the image received,
the normalized image, as the built-in skill's are. One model request per record (faces,
color and imageType are computed on this machine).

Time: AI Search waits for the skill's `timeout` (30 s by default, B.5), so every record
must be answered within `SkillSettings.timeout`: records are analysed concurrently, under
the server's rate limiter and pixel budget, and those not done at `DEADLINE_SHARE` of the
timeout (measured from the request's arrival) are cancelled and answered with a
`Timeout` error, leaving the rest of the time for the response to travel.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from viewfinder.analyzers.features import Feature
from viewfinder.compat import map32, rest32
from viewfinder.compat.handler import JSON_CONTENT_TYPE, media_type
from viewfinder.compat.ops32 import LANGUAGES_32, Host, error32_for, visual_features
from viewfinder.compat.service import ServiceError
from viewfinder.errors import ConfigurationError, ImageSizeError
from viewfinder.prepare.pixel_budget import budget_scope
from viewfinder.schemas.geometry import BoundingBox

if TYPE_CHECKING:
    from viewfinder.analyzers.image_analysis import ImageAnalyzer
    from viewfinder.schemas.result import ImageAnalysisResult

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_FEATURES",
    "DEFAULT_TIMEOUT",
    "SKILL_PATH",
    "Fetch",
    "ReadBody",
    "SkillSettings",
    "read_records",
    "register",
    "skill_outputs",
    "skill_values",
]

SKILL_PATH: Final = "/skills/image-analysis"
"""Where the skill is served; the skillset's `uri` is `https://HOST:PORT` + this."""

DEFAULT_BATCH_SIZE: Final = 16
"""Records accepted per call unless configured: set the skill's `batchSize` to this or
less (AI Search's own default, 1000, is refused)."""

DEFAULT_TIMEOUT: Final = 30.0
"""The Web API skill's default `timeout` (B.5), in seconds."""

DEADLINE_SHARE: Final = 0.9
"""Records are answered by this share of the timeout; the rest is the response's travel."""

DEFAULT_FEATURES: Final = (
    "adult",
    "brands",
    "categories",
    "description",
    "faces",
    "objects",
    "tags",
)
"""`visualFeatures` when the `uri` names none: the built-in skill's seven (B.1)."""

_MAX_TIMEOUT: Final = 230.0  # the skill's largest `timeout` (B.5)
_RECORD_OVERHEAD: Final = 4096  # bytes of JSON around one record's base64 image
_LANGUAGE_INPUTS: Final = ("languageCode", "defaultLanguageCode")

ReadBody = Callable[[Request, int, ServiceError, dict[str, Any]], Awaitable[bytes]]
Fetch = Callable[[str], Awaitable[bytes]]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkillSettings:
    """How `POST /skills/image-analysis` serves an indexer.

    Attributes:
        batch_size: Most records per call; more is refused with a 400 naming it. Set the
            skillset's `batchSize` to this or less.
        timeout: Seconds the skillset's `timeout` allows (1-230, default 30 as AI
            Search's); records not analysed by `DEADLINE_SHARE` of it get a `Timeout` error.
    """

    batch_size: int = DEFAULT_BATCH_SIZE
    timeout: float = DEFAULT_TIMEOUT

    def validate(self) -> None:
        """Raises `ConfigurationError` for a batch size below 1 or a timeout not in (0, 230] s."""
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(f"skill batch_size must be an integer >= 1, not {size!r}")
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= _MAX_TIMEOUT):
            raise ConfigurationError("skill timeout must be more than 0 and at most 230 seconds")


# --- outputs ------------------------------------------------------------------------------


def _corners(box: BoundingBox) -> list[dict[str, int]]:
    """`faceBoundingBox`: the box's four corners, clockwise from top-left (B.1's sample)."""
    right, bottom = box.x + box.width, box.y + box.height
    return [
        {"x": box.x, "y": box.y},
        {"x": right, "y": box.y},
        {"x": right, "y": bottom},
        {"x": box.x, "y": bottom},
    ]


def skill_outputs(result: ImageAnalysisResult) -> dict[str, Any]:
    """The built-in skill's outputs (B.1) for `result`: the 3.2 `analyze` body of the
    features it holds, without `requestId`, `metadata`, `modelVersion`, faces as
    `faceBoundingBox` corners."""
    body = rest32.to_json(map32.analysis(result, request_id="", image_format=None))
    for key in ("requestId", "metadata", "modelVersion"):
        body.pop(key, None)
    if result.faces is not None:
        body["faces"] = [{"faceBoundingBox": _corners(face.box)} for face in result.faces]
    return body


# --- the request ----------------------------------------------------------------------------


def _bad(message: str, inner_code: str = "InvalidRequest") -> ServiceError:
    return ServiceError(400, "InvalidRequest", message, inner_code, message)


class _RecordError(Exception):
    """A record that cannot be analysed: `<code>: <message>` in its `errors`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")


def _language(value: str) -> str | None:
    """`value` as listed in `LANGUAGES_32` (case-insensitive), else `None`."""
    return {code.lower(): code for code in LANGUAGES_32}.get(value.strip().lower())


@dataclass(frozen=True)
class _Query:
    """The skill-wide parameters of the `uri` query (B.7), checked as `analyze` checks them."""

    features: list[Feature]
    language: str

    @classmethod
    def of(cls, params: Sequence[tuple[str, str]]) -> _Query:
        names = {key for key, _ in params}
        values = [v.strip() for k, v in params if k == "visualFeatures" for v in v.split(",")]
        details = [v.strip() for k, v in params if k == "details" for v in v.split(",")]
        asked = [v for v in values if v] if "visualFeatures" in names else list(DEFAULT_FEATURES)
        features = visual_features(asked, [d for d in details if d])
        raw = dict(params).get("defaultLanguageCode", "en")
        language = _language(raw)
        if language is None:
            raise _bad(
                f"The requested operation isn't supported in the language '{raw}'.",
                "NotSupportedLanguage",
            )
        return cls(features, language)


def skill_values(body: bytes) -> list[dict[str, Any]]:
    """The `values` of the contract's request body (B.5), each with a string `recordId`
    (the vectorize skill and vectorizer of compat/vectorize.py read theirs here too).

    Raises:
        ServiceError: 400 for anything else.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        raise _bad("The request body is not JSON.") from None
    values = parsed.get("values") if isinstance(parsed, dict) else None
    if not isinstance(values, list):
        raise _bad('The request body must be {"values": [{"recordId": ..., "data": {...}}]}.')
    for value in values:
        if not isinstance(value, dict) or not isinstance(value.get("recordId"), str):
            raise _bad("Every item of 'values' must be an object with a string 'recordId'.")
    return values


async def read_records(
    request: Request,
    read_body: ReadBody,
    settings: SkillSettings,
    max_body: int,
    too_large: ServiceError,
    record: dict[str, Any],
) -> list[dict[str, Any]]:
    """A skill call's records (B.5): a JSON body of at most `settings.batch_size` of them.

    Raises:
        ServiceError: 415 for a body that is not JSON by its type, 400 for a malformed body
            or too many records (naming the settings to change), `too_large` past
            `max_body`.
    """
    if media_type(request.headers.get("content-type")) != "application/json":
        raise ServiceError(
            415, "InvalidRequest", "The skill's request body must be application/json."
        )
    values = skill_values(await read_body(request, max_body, too_large, record))
    record["records"] = len(values)
    if len(values) > settings.batch_size:
        raise _bad(
            f"This skill accepts at most {settings.batch_size} records per call, got "
            f"{len(values)}: set the skill's batchSize to {settings.batch_size} or "
            "less (or start viewfinder serve with a larger --skill-batch-size)."
        )
    return values


def _image_input(data: object) -> tuple[str | None, str | None]:
    """(base64, url) of a record's `image` input: a normalized image object or its base64."""
    image = data.get("image") if isinstance(data, Mapping) else None
    if isinstance(image, str):
        return image, None
    if isinstance(image, Mapping):
        encoded, url = image.get("data"), image.get("url")
        if isinstance(encoded, str) and encoded:
            return encoded, None
        if isinstance(url, str) and url:
            return None, url
    raise _RecordError(
        "InvalidImage",
        "Missing or invalid image input: map 'image' to /document/normalized_images/* "
        "(or its /data).",
    )


def _decode(encoded: str, max_bytes: int) -> bytes:
    if len(encoded) // 4 * 3 > max_bytes + 2:
        raise ImageSizeError("too large", limit="bytes")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _RecordError("InvalidImageFormat", "The image's data is not base64.") from None


# --- the route ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """One record's answer and, when it failed, the status its error would have had."""

    entry: dict[str, Any]
    status: int = 200
    error: ServiceError | None = None


def register(
    app: FastAPI,
    host: Host,
    settings: SkillSettings,
    *,
    read_body: ReadBody,
    fetch: Fetch,
    max_image_bytes: int,
) -> None:
    """Add `POST`/`PUT` `SKILL_PATH` to the server's `app`.

    Args:
        app: The server's app.
        host: The server's key check, analyzer, errors, pixel budget and access log (the
            3.2 routes' `Host`; its `read_image` is not used: images come in the JSON).
        settings: Batch size and timeout.
        read_body: Reads a request's body, refusing it at a size limit.
        fetch: Fetches an image URL under the server's address policy and limits.
        max_image_bytes: Largest image, decoded, as for the server's other routes.
    """
    max_body = settings.batch_size * (math.ceil(max_image_bytes / 3) * 4 + _RECORD_OVERHEAD)
    too_large = _bad(
        f"The request body must be smaller than {max_body} bytes "
        f"({settings.batch_size} records of images under {max_image_bytes} bytes)."
    )

    async def image_of(data: object) -> bytes:
        encoded, url = _image_input(data)
        if encoded is not None:
            return _decode(encoded, max_image_bytes)
        assert url is not None  # _image_input returns one of the two
        return await fetch(url)

    async def one(analyzer: ImageAnalyzer, query: _Query, value: Mapping[str, Any]) -> _Outcome:
        record_id = value["recordId"]
        data = value.get("data")
        warnings: list[dict[str, str]] = []
        try:
            language = query.language
            asked = data.get(_LANGUAGE_INPUTS[0]) if isinstance(data, Mapping) else None
            if asked is None and isinstance(data, Mapping):
                asked = data.get(_LANGUAGE_INPUTS[1])
            if isinstance(asked, str) and asked.strip():
                found = _language(asked)
                if found is None:
                    warnings.append(
                        {
                            "message": f"NotSupportedLanguage: '{asked}' is not supported; "
                            f"answered in '{language}'."
                        }
                    )
                else:
                    language = found
            image = await image_of(data)
            plan = analyzer.plan(
                list(query.features), language=language, tag_hints=True, object_parents=True
            )
            result = await analyzer.arun(plan, image)
        except _RecordError as exc:
            return _Outcome(_entry(record_id, errors=[str(exc)]), 400)
        except Exception as exc:  # one record's failure, never the others'
            error = error32_for(exc, host.service_error)
            if error.status >= 500:
                logger.warning("skill record failed: %s: %s", type(exc).__name__, exc)
            message = f"{error.inner_code or error.code}: {error.inner_message or error.message}"
            return _Outcome(_entry(record_id, errors=[message]), error.status, error)
        return _Outcome(_entry(record_id, data=skill_outputs(result), warnings=warnings))

    async def route(request: Request) -> Response:
        """The custom Web API skill call: every record analysed within the timeout."""
        started = time.monotonic()
        record = host.record(request)
        record["api_version"] = "skill"
        try:
            await host.check(request, record)
            analyzer = host.analyzer()
            query = _Query.of(request.query_params.multi_items())
            record["features"] = [f.azure_name for f in query.features]
            values = await read_records(request, read_body, settings, max_body, too_large, record)
        except ServiceError as refused:
            return host.error_response(refused, record)
        with budget_scope(host.pixels, host.decode_wait):
            tasks = [asyncio.create_task(one(analyzer, query, value)) for value in values]
        remaining = settings.timeout * DEADLINE_SHARE - (time.monotonic() - started)
        outcomes = await _within(tasks, values, remaining, settings.timeout)
        failed = [o for o in outcomes if o.status != 200]
        record["failed"] = len(failed)
        if outcomes and all(o.status == 429 and o.error is not None for o in outcomes):
            assert failed[0].error is not None
            return host.error_response(failed[0].error, record)  # the indexer retries 429s
        return JSONResponse({"values": [o.entry for o in outcomes]}, media_type=JSON_CONTENT_TYPE)

    route.__name__ = "image_analysis_skill"
    app.add_api_route(SKILL_PATH, route, methods=["POST", "PUT"], response_model=None)


async def _within(
    tasks: list[asyncio.Task[_Outcome]],
    values: Sequence[Mapping[str, Any]],
    remaining: float,
    timeout: float,
) -> list[_Outcome]:
    """The tasks' outcomes, in order; those not done within `remaining` seconds are
    cancelled and answered with a `Timeout` error."""
    if tasks:
        await asyncio.wait(tasks, timeout=max(0.0, remaining))
    late = [task for task in tasks if not task.done()]
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    message = (
        f"Timeout: the record was not analysed within the skill's {timeout:g} s timeout; "
        "lower the skill's batchSize or degreeOfParallelism, or raise its timeout and "
        "viewfinder serve's --skill-timeout together."
    )
    return [
        _Outcome(_entry(value["recordId"], errors=[message]), 504)
        if task.cancelled()
        else task.result()
        for task, value in zip(tasks, values, strict=True)
    ]


def _entry(
    record_id: str,
    *,
    data: dict[str, Any] | None = None,
    errors: Sequence[str] = (),
    warnings: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """One item of the response's `values` (B.5): `errors`/`warnings` `null` when empty."""
    return {
        "recordId": record_id,
        "data": data or {},
        "errors": [{"message": m} for m in errors] or None,
        "warnings": list(warnings) or None,
    }
