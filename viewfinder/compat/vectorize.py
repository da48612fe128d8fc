"""Multimodal embeddings on `viewfinder serve`: Azure's vectorize REST calls and AI Search's
vectorizer and vectorize skill, answered by a `viewfinder.embed.Embedder`.

References are to `azure-vectorize-and-search.md`.

Routes (served only when the server has an embedder, `ServerSettings.embedder`; without
one each answers `NOT_CONFIGURED`, a 404 whose inner error says how to turn them on):

- `POST /computervision/retrieval:vectorizeImage` (A.1): a JSON `{"url"}` body (fetched
  under the server's URL policy), or the image's bytes (`application/octet-stream`, any
  `image/*`, or a `multipart/form-data` part, as `analyze` reads them).
- `POST /computervision/retrieval:vectorizeText` (A.1): a JSON `{"text"}` body.
  Both answer `{"modelVersion", "vector"}` or the service's `{"error": {...}}` with
  `x-ms-error-code` (A.1, A.5).
- `POST /vectorizers/multimodal`: the custom Web API vectorizer (`customWebApi`, B.6),
  query time: exactly one record whose `data` holds `text`, `imageUrl` (a string; an
  object's `url` is read too, as the type is UNVERIFIED) or `imageBinary.data` (base64).
- `POST /skills/vectorize`: a custom Web API skill replacing
  `#Microsoft.Skills.Vision.VectorizeSkill` (B.3, B.5, B.7), index time: records whose
  `data` holds `image` (base64, or the normalized-image object with its `data`), `text`,
  or `url` plus an optional `queryString` (e.g. a SAS token).

Query parameters (A.2): `api-version` must be `2023-02-01-preview`, `2023-04-01-preview`
or `2024-02-01` on the REST routes (else the 404 the server answers for `analyze`); the
AI Search routes take none. `model-version` (or the 2023 previews' `modelVersion`) may be
`2023-04-15`, `2022-04-11`, `latest`, or `2023-04-01-preview` (A.4's sample sends it);
another value is a 400 `InvalidModelVersion`. Every accepted value maps to the one
configured embedding model: the server has no second model, and no value can make the
vectors Azure's.

`modelVersion` in answers is `model_version(embedder)`,
`viewfinder-<backend>-<model>-<dimensions>` (e.g. `viewfinder-cohere-embed-v4.0-1024`),
never the requested Azure version: vectors from different models cannot be compared
(A.2: "Images vectorized by one model won't be searchable through a different model"), and
clients that store `modelVersion` beside their vectors must see that these are not
Azure's `2023-04-15` vectors, so an index is rebuilt rather than mixed.

Limits (A.3): an image under 20 MB (`ServerSettings.max_body_bytes`), more than 10 x 10
and less than 16,000 x 16,000 pixels; a text of 1 to 70 words (`MAX_WORDS`, counted as
whitespace-separated runs). A longer text is refused (400 `InvalidRequest`, inner
`TextTooLong`), not truncated: truncation would silently embed another query than the one
asked, and AI Search's documented remedy for long text is to split it first (B.3: "chunk
with Text Split"), which a refusal prompts.

Texts are embedded as queries (`input_type="search_query"`) on the REST and vectorizer
routes, as documents (`"search_document"`) by the skill: Cohere's models embed the two
sides differently; the others ignore it.

Errors in the AI Search contracts: the skill answers HTTP 200 with per-record `errors`
(`"<code>: <message>"`, as `viewfinder.compat.skill`) and 429 + `Retry-After` when every
record was throttled (the indexer retries 429s, B.5); records not done within
`DEADLINE_SHARE` of the skill's timeout get a `Timeout` error. The vectorizer ignores the
`errors` of an answer (B.6), so its failures are HTTP errors with the service's body: the
search request then fails saying why, instead of missing a vector.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from viewfinder.compat.handler import JSON_CONTENT_TYPE, media_type
from viewfinder.compat.ops32 import Host
from viewfinder.compat.service import RESOURCE_NOT_FOUND, ServiceError, service_error_for
from viewfinder.compat.skill import (
    DEADLINE_SHARE,
    Fetch,
    ReadBody,
    SkillSettings,
    read_records,
    skill_values,
)
from viewfinder.errors import ImageSizeError, ViewfinderError
from viewfinder.prepare.inputs import ImageLimits
from viewfinder.prepare.pixel_budget import budget_scope

if TYPE_CHECKING:
    from viewfinder.embed.embedder import Embedder, Embedding

__all__ = [
    "API_VERSIONS",
    "MAX_WORDS",
    "MIN_SIDE",
    "MODEL_VERSIONS",
    "NOT_CONFIGURED",
    "VECTORIZER_PATH",
    "VECTORIZE_IMAGE_PATH",
    "VECTORIZE_SKILL_PATH",
    "VECTORIZE_TEXT_PATH",
    "model_version",
    "register",
    "retrieval_limits",
]

VECTORIZE_IMAGE_PATH: Final = "/computervision/retrieval:vectorizeImage"
VECTORIZE_TEXT_PATH: Final = "/computervision/retrieval:vectorizeText"
VECTORIZER_PATH: Final = "/vectorizers/multimodal"
"""The `customWebApi` vectorizer's `uri` is `https://HOST:PORT` + this (B.6)."""
VECTORIZE_SKILL_PATH: Final = "/skills/vectorize"
"""The vectorize skill's `uri` is `https://HOST:PORT` + this (B.7)."""

API_VERSIONS: Final = ("2023-02-01-preview", "2023-04-01-preview", "2024-02-01")
"""The retrieval api-versions (A.2)."""
MODEL_VERSIONS: Final = ("2023-04-15", "2022-04-11", "latest", "2023-04-01-preview")
"""Accepted `model-version` values (A.2, A.4); all mean the configured embedding model."""
MAX_WORDS: Final = 70
"""Most words of a text (A.3: "between (inclusive) one word and 70 words")."""
MIN_SIDE: Final = 10
"""Width and height must be greater than this (A.3: "> 10 x 10")."""

NOT_CONFIGURED: Final = ServiceError(
    404,
    "404",
    "Resource not found",
    "EmbeddingsNotConfigured",
    "This viewfinder server has no embedding backend: start it with --embed-backend "
    "(or VIEWFINDER_EMBED_BACKEND) to serve the vectorize routes.",
)
"""The answer of every embeddings route when the server has no embedder."""

_RECORD_OVERHEAD: Final = 4096  # bytes of JSON around one record's base64 image
_MAX_TEXT_BYTES: Final = 64 * 1024  # a 70-word text is far below; a body larger is refused
_QUERY_INPUT: Final = "search_query"
_DOCUMENT_INPUT: Final = "search_document"
_IMAGE_SIZE: Final = (
    f"The image dimensions are not allowed to be smaller than {MIN_SIDE} x {MIN_SIDE} or "
    "larger than 16000 x 16000 pixels"
)

logger = logging.getLogger(__name__)


def retrieval_limits(max_bytes: int) -> ImageLimits:
    """The image limits of the retrieval routes (A.3): the analyzer's, but images down to
    11 x 11 pixels are taken, and files under `max_bytes`."""
    return replace(ImageLimits(), min_side=MIN_SIDE, max_bytes=max_bytes)


def model_version(embedder: Embedder) -> str:
    """`viewfinder-<backend>-<model>-<dimensions>`: what answers' `modelVersion` says.

    Names what made the vectors, so that they are never taken for Azure's (see the module
    docstring); `<dimensions>` is the configured length, `native` when the model's own.
    """
    dims = embedder.dims.expect or embedder.dims.truncate or embedder.dims.request
    width = str(dims) if dims is not None else "native"
    return f"viewfinder-{embedder.backend.name}-{embedder.backend.model}-{width}"


# --- checks -----------------------------------------------------------------------------


def _bad(message: str, inner_code: str | None = None) -> ServiceError:
    return ServiceError(400, "InvalidRequest", message, inner_code, message if inner_code else None)


def _check_query(params: Mapping[str, str], record: dict[str, Any]) -> None:
    """`api-version` and `model-version` as A.2 lists them.

    Raises:
        ServiceError: 404 for an unknown api-version (as for `analyze`), 400
            `InvalidModelVersion` for an unknown model version.
    """
    version = params.get("api-version")
    record["api_version"] = version if version in API_VERSIONS else "unsupported"
    if version not in API_VERSIONS:
        raise RESOURCE_NOT_FOUND
    asked = params.get("model-version", params.get("modelVersion"))
    if asked is not None and asked not in MODEL_VERSIONS:
        raise _bad(
            f"The model version '{asked[:64]}' is not supported; use one of "
            f"{', '.join(MODEL_VERSIONS)}.",
            "InvalidModelVersion",
        )


def _text(value: object) -> str:
    """A text of 1 to `MAX_WORDS` words (A.3).

    Raises:
        ServiceError: 400 for a missing, empty or longer text.
    """
    if not isinstance(value, str) or not value.strip():
        raise _bad("The text must be a string of at least one word.", "InvalidText")
    words = len(value.split())
    if words > MAX_WORDS:
        raise _bad(
            f"The text has {words} words; at most {MAX_WORDS} are allowed: split it first.",
            "TextTooLong",
        )
    return value


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise _bad("The request body is not JSON.") from None


def _base64(encoded: object, max_bytes: int) -> bytes:
    if not isinstance(encoded, str) or not encoded:
        raise _bad("The image data must be a non-empty base64 string.", "InvalidImage")
    if len(encoded) // 4 * 3 > max_bytes + 2:
        raise service_error_for(ImageSizeError("too large", limit="bytes"))
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("The image's data is not base64.", "InvalidImageFormat") from None


def _error_for(exc: Exception) -> ServiceError:
    """The service's answer for a failure; the size error names the retrieval limits."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, ImageSizeError) and exc.limit != "bytes":
        return ServiceError(
            400, "InvalidRequest", "Image size is not valid", "InvalidImageSize", _IMAGE_SIZE
        )
    if isinstance(exc, ViewfinderError):
        return service_error_for(exc)
    return service_error_for(ViewfinderError("unexpected"))


def _message(error: ServiceError) -> str:
    """A record's error message: `<code>: <text>`, as the image-analysis skill writes it."""
    return f"{error.inner_code or error.code}: {error.inner_message or error.message}"


def _entry(record_id: str, vector: Sequence[float] | None, error: str | None) -> dict[str, Any]:
    """One item of an answer's `values` (B.5): `errors`/`warnings` `null` when empty."""
    return {
        "recordId": record_id,
        "data": {} if vector is None else {"vector": list(vector)},
        "errors": None if error is None else [{"message": error}],
        "warnings": None,
    }


def _with_query(url: str, query: object) -> str:
    """`url` with a skill's `queryString` (e.g. a SAS token, B.3) appended."""
    if not isinstance(query, str) or not query.strip():
        return url
    query = query.strip()
    if query[0] in "?&":
        query = query[1:]
    return f"{url}{'&' if '?' in url else '?'}{query}"


# --- what a record asks for ---------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    """One input: a text, an image's bytes, or an image URL still to fetch."""

    text: str | None = None
    image: bytes | None = None
    url: str | None = None


def _skill_input(data: object, max_bytes: int) -> _Input:
    """A vectorize skill record's input (B.3): `image`, `text`, or `url` + `queryString`."""
    if not isinstance(data, Mapping):
        raise _bad("The record has no 'data' object.", "InvalidInput")
    image = data.get("image")
    if isinstance(image, Mapping):
        image = image.get("data")
    if image is not None:
        return _Input(image=_base64(image, max_bytes))
    if data.get("text") is not None:
        return _Input(text=_text(data["text"]))
    url = data.get("url")
    if isinstance(url, str) and url:
        return _Input(url=_with_query(url, data.get("queryString")))
    raise _bad(
        "The record needs one input: 'image' (/document/normalized_images/* or its /data), "
        "'text', or 'url' (with an optional 'queryString').",
        "InvalidInput",
    )


def _vectorizer_input(data: object, max_bytes: int) -> _Input:
    """A vectorizer record's input (B.6): `text`, `imageUrl` or `imageBinary.data`."""
    if not isinstance(data, Mapping):
        raise _bad("The record has no 'data' object.", "InvalidInput")
    if data.get("text") is not None:
        return _Input(text=_text(data["text"]))
    url = data.get("imageUrl")
    if isinstance(url, Mapping):  # the value's type is UNVERIFIED (B.6): take {"url"} too
        url = url.get("url")
    if isinstance(url, str) and url:
        return _Input(url=url)
    binary = data.get("imageBinary")
    if isinstance(binary, Mapping):
        return _Input(image=_base64(binary.get("data"), max_bytes))
    raise _bad(
        "The record needs 'text', 'imageUrl' or 'imageBinary': {'data': <base64>}.",
        "InvalidInput",
    )


# --- the routes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """A record's vector, or its error."""

    vector: tuple[float, ...] | None = None
    error: ServiceError | None = None


def register(
    app: FastAPI,
    host: Host,
    embedder: Embedder | None,
    settings: SkillSettings,
    *,
    read_body: ReadBody,
    fetch: Fetch,
    max_image_bytes: int,
) -> None:
    """Add the four embeddings routes to the server's `app`.

    Args:
        app: The server's app.
        host: The server's key check, errors, `read_image` and access log.
        embedder: The server's embedder (its retry policy and rate limiter set by the
            server), or `None`: every route answers `NOT_CONFIGURED`.
        settings: The skill's batch size and timeout (shared with the image-analysis skill).
        read_body: Reads a request's body, refusing it at a size limit.
        fetch: Fetches an image URL under the server's address policy and limits.
        max_image_bytes: Largest image, as for the server's other routes.
    """
    max_body = settings.batch_size * (math.ceil(max_image_bytes / 3) * 4 + _RECORD_OVERHEAD)
    too_large = _bad(f"The request body must be smaller than {max_body} bytes.")
    one_record = math.ceil(max_image_bytes / 3) * 4 + _RECORD_OVERHEAD
    record_too_large = _bad(f"The request body must be smaller than {one_record} bytes.")
    text_too_large = _bad(f"The request body must be smaller than {_MAX_TEXT_BYTES} bytes.")

    async def start(request: Request, record: dict[str, Any], api: str) -> Embedder:
        """Authenticate, then the embedder (`NOT_CONFIGURED` without one)."""
        record["api_version"] = api
        await host.check(request, record)
        if embedder is None:
            raise NOT_CONFIGURED
        return embedder

    def answer(vector: Sequence[float], used: Embedder) -> Response:
        body = {"modelVersion": model_version(used), "vector": list(vector)}
        return JSONResponse(body, media_type=JSON_CONTENT_TYPE)

    def refused(exc: Exception, record: dict[str, Any]) -> Response:
        """The service's answer for `exc`; a failure of this server's side is logged (an
        unexpected one with its traceback), never the request's content."""
        error = _error_for(exc)
        request_id = record.get("request_id")
        if not isinstance(exc, ServiceError | ViewfinderError):
            logger.error("request %s: unexpected error", request_id, exc_info=exc)
        elif error.status >= 500:
            logger.warning(
                "request %s: embedding failed: %s: %s", request_id, type(exc).__name__, exc
            )
        return host.error_response(error, record)

    async def embed_one(used: Embedder, item: _Input, input_type: str) -> tuple[float, ...]:
        if item.text is not None:
            found = await used.aembed_texts([item.text], input_type=input_type)
        else:
            image = item.image if item.image is not None else await fetch(item.url or "")
            with budget_scope(host.pixels, host.decode_wait):
                found = await used.aembed_images([image])
        return found[0].vector

    async def vectorize_image(request: Request) -> Response:
        """`retrieval:vectorizeImage` (A.1): a JSON `{"url"}` or the image's bytes."""
        record = host.record(request)
        try:
            used = await start(request, record, "unsupported")
            _check_query(request.query_params, record)
            image = await host.read_image(request, record)
            vector = await embed_one(used, _Input(image=image), _QUERY_INPUT)
        except Exception as exc:
            return refused(exc, record)
        return answer(vector, used)

    async def vectorize_text(request: Request) -> Response:
        """`retrieval:vectorizeText` (A.1): a JSON `{"text"}` of 1 to 70 words."""
        record = host.record(request)
        try:
            used = await start(request, record, "unsupported")
            _check_query(request.query_params, record)
            if media_type(request.headers.get("content-type")) != "application/json":
                raise _bad('The request body must be application/json: {"text": ...}.')
            parsed = _json(await read_body(request, _MAX_TEXT_BYTES, text_too_large, record))
            text = _text(parsed.get("text") if isinstance(parsed, dict) else None)
            vector = await embed_one(used, _Input(text=text), _QUERY_INPUT)
        except Exception as exc:
            return refused(exc, record)
        return answer(vector, used)

    async def vectorizer(request: Request) -> Response:
        """The `customWebApi` vectorizer (B.6): one record in, its vector out."""
        record = host.record(request)
        try:
            used = await start(request, record, "vectorizer")
            values = skill_values(await read_body(request, one_record, record_too_large, record))
            if len(values) != 1:
                raise _bad(f"The vectorizer takes exactly one record, got {len(values)}.")
            item = _vectorizer_input(values[0].get("data"), max_image_bytes)
            vector = await embed_one(used, item, _QUERY_INPUT)
        except Exception as exc:
            return refused(exc, record)
        entry = _entry(values[0]["recordId"], vector, None)
        return JSONResponse({"values": [entry]}, media_type=JSON_CONTENT_TYPE)

    async def skill(request: Request) -> Response:
        """The vectorize skill (B.3, B.5): every record's vector or error, HTTP 200."""
        started = time.monotonic()
        record = host.record(request)
        try:
            used = await start(request, record, "skill")
            values = await read_records(request, read_body, settings, max_body, too_large, record)
        except Exception as exc:
            return refused(exc, record)
        remaining = settings.timeout * DEADLINE_SHARE - (time.monotonic() - started)
        found: list[_Outcome | None] = [None] * len(values)
        with budget_scope(host.pixels, host.decode_wait):  # the task inherits the scope
            work = asyncio.ensure_future(
                _skill_records(used, values, found, fetch, max_image_bytes)
            )
        await asyncio.wait([work], timeout=max(0.0, remaining))
        if not work.done():
            work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        late = _Outcome(
            error=ServiceError(
                504,
                "Timeout",
                f"The record was not vectorised within the skill's {settings.timeout:g} s "
                "timeout; lower the skill's batchSize or raise its timeout and viewfinder "
                "serve's --skill-timeout together.",
            )
        )
        outcomes = [late if o is None else o for o in found]
        errors = [o.error for o in outcomes if o.error is not None]
        record["failed"] = len(errors)
        if values and len(errors) == len(values) and all(e.status == 429 for e in errors):
            return host.error_response(errors[0], record)  # the indexer retries 429s (B.5)
        entries = [
            _entry(value["recordId"], o.vector, None if o.error is None else _message(o.error))
            for value, o in zip(values, outcomes, strict=True)
        ]
        return JSONResponse({"values": entries}, media_type=JSON_CONTENT_TYPE)

    for path, route, name in (
        (VECTORIZE_IMAGE_PATH, vectorize_image, "vectorize_image"),
        (VECTORIZE_TEXT_PATH, vectorize_text, "vectorize_text"),
        (VECTORIZER_PATH, vectorizer, "multimodal_vectorizer"),
        (VECTORIZE_SKILL_PATH, skill, "vectorize_skill"),
    ):
        route.__name__ = name
        methods = ["POST"] if path.startswith("/computervision") else ["POST", "PUT"]
        app.add_api_route(path, route, methods=methods, response_model=None)


async def _skill_records(
    embedder: Embedder,
    values: Sequence[Mapping[str, Any]],
    outcomes: list[_Outcome | None],
    fetch: Fetch,
    max_image_bytes: int,
) -> None:
    """Set every record's outcome in `outcomes` (in the records' order) as it is known:
    inputs read (URLs fetched concurrently), then the texts in one `aembed_texts` call and
    the images in one `aembed_images` call, so the embedder batches them to its backend's
    limits. Records still `None` when the deadline cancels this were not done in time."""

    async def read(value: Mapping[str, Any]) -> _Input | ServiceError:
        try:
            item = _skill_input(value.get("data"), max_image_bytes)
            return _Input(image=await fetch(item.url)) if item.url is not None else item
        except Exception as exc:  # one record's failure, never the others'
            return _error_for(exc)

    inputs = await asyncio.gather(*(read(value) for value in values))
    for n, read_input in enumerate(inputs):
        if isinstance(read_input, ServiceError):
            outcomes[n] = _Outcome(error=read_input)
    texts = [n for n, i in enumerate(inputs) if isinstance(i, _Input) and i.text is not None]
    images = [n for n, i in enumerate(inputs) if isinstance(i, _Input) and i.image is not None]

    async def embed(indexes: list[int], kind: str) -> None:
        if not indexes:
            return
        chosen = [inputs[n] for n in indexes]
        for n, outcome in zip(indexes, await _embed_each(embedder, chosen, kind), strict=True):
            outcomes[n] = outcome

    await asyncio.gather(embed(texts, "text"), embed(images, "image"))


async def _embed_each(embedder: Embedder, inputs: Sequence[Any], kind: str) -> list[_Outcome]:
    """The inputs' vectors in one call; when the call fails on an input (an image that
    does not decode, say: refused before anything is sent), each input alone, so only the
    bad ones fail. A failure of the endpoint (429, 503) is every input's error."""

    async def call(chosen: Sequence[Any]) -> list[Embedding]:
        if kind == "text":
            return await embedder.aembed_texts([i.text for i in chosen], input_type=_DOCUMENT_INPUT)
        return await embedder.aembed_images([i.image for i in chosen])

    try:
        return [_Outcome(vector=e.vector) for e in await call(inputs)]
    except Exception as exc:
        error = _error_for(exc)
        if error.status != 400 or len(inputs) == 1:
            return [_Outcome(error=error)] * len(inputs)

    async def alone(item: Any) -> _Outcome:
        try:
            return _Outcome(vector=(await call([item]))[0].vector)
        except Exception as exc:
            return _Outcome(error=_error_for(exc))

    return list(await asyncio.gather(*(alone(i) for i in inputs)))
