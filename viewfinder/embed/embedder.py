"""`Embedder`: images and texts in, L2-normalised float32 vectors in one space out.

One batch's steps, written once for every backend: images loaded and hashed
(`prepare.load`: the analyzer's inputs, limits and URL policy), the cache asked by the
input's sha256 (or text), misses prepared (`prepare_image`: a JPEG copy, made smaller
until it fits the backend's byte limit, e.g. Cohere v3's 5 MB) and sent in batches of
the backend's size through httpx2, each HTTP attempt paced (an optional `RateLimiter`)
and retried by the engine's one policy (`engine.retry`: tenacity, `Retry-After`); then
truncated (Matryoshka models), re-normalised, rounded to float32 and cached.

An in-process backend (`InProcessBackend`: `viewfinder.embed.local`, ONNX Runtime) takes
the same steps with `compute` in place of HTTP (in a worker thread in the async methods):
images decoded batch by batch (`decode_rgb`, the same limits) instead of made into JPEG
data URLs, and its `weights_digest` added to the cache keys. Nothing else changes.

Vectors are tuples of Python floats holding float32 values: numpy stays out of the core
install (it is in the `local` extra only) and `import viewfinder` stays light;
`numpy.asarray(e.vector, dtype=numpy.float32)` or `Embedding.to_bytes()` give a packed
array without a copy through JSON.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import math
from array import array
from collections.abc import AsyncIterable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import httpx2
import openai

from viewfinder.embed.backends import (
    Dimensions,
    EmbeddingBackend,
    InProcessBackend,
    Kind,
    Parsed,
    resolve_backend,
)
from viewfinder.embed.pricing import EmbeddingBudget, embedding_cost
from viewfinder.engine.cache import AnswerCache
from viewfinder.engine.progress import ProgressArg
from viewfinder.engine.ratelimit import RateLimiter
from viewfinder.engine.retry import RetryPolicy, async_retrying, sync_retrying, to_viewfinder_error
from viewfinder.errors import (
    BadRequestError,
    ImageSizeError,
    InvalidOptionError,
    ModelBehaviorError,
    ProviderError,
)
from viewfinder.prepare import DEFAULT_MAX_SIDE, MIN_MAX_SIDE, prepare_image
from viewfinder.prepare.inputs import DEFAULT_LIMITS, ImageLimits
from viewfinder.prepare.load import ImageInput, LoadedImage, load_image
from viewfinder.prepare.pixel_budget import run_decode

if TYPE_CHECKING:
    from PIL import Image

if TYPE_CHECKING:
    from viewfinder.embed.many import EmbedRun

__all__ = ["Embedder", "Embedding", "EmbeddingUsage"]

CACHE_KEY_VERSION: Final = 1
_SHARED_CLIENT: contextvars.ContextVar[tuple[object, httpx2.AsyncClient] | None] = (
    contextvars.ContextVar("viewfinder_embed_shared_client", default=None)
)
"""The connection pool an async call of this context uses (`share_client`), if any."""
_REFUSED_IMAGE_STATUSES: Final = frozenset({400, 415, 422})


@dataclass(frozen=True)
class EmbeddingUsage:
    """What producing embeddings spent. Cache hits spend nothing.

    A request's tokens and images are counted on the first embedding of its batch (the
    others carry zeros), so summing the usages of a call's results gives its total.
    """

    input_tokens: int = 0
    images: int = 0
    requests: int = 0
    cache_hit: bool = False
    image_tokens: int = 0
    """Tokens billed for images, where the provider bills them so (Cohere v4)."""

    def __add__(self, other: EmbeddingUsage) -> EmbeddingUsage:
        return EmbeddingUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            images=self.images + other.images,
            requests=self.requests + other.requests,
            cache_hit=self.cache_hit and other.cache_hit,
            image_tokens=self.image_tokens + other.image_tokens,
        )


@dataclass(frozen=True)
class Embedding:
    """One input's vector: L2-normalised, float32 values, `dimensions` long.

    `cost` is the dollars of `usage` (`viewfinder.embed.pricing`): 0 for a cache hit or
    the local backend, None when the model has no price.
    """

    vector: tuple[float, ...]
    model: str
    dimensions: int
    usage: EmbeddingUsage = EmbeddingUsage()
    cost: float | None = 0.0

    def to_bytes(self) -> bytes:
        """The vector as packed float32 values, in the machine's byte order."""
        return array("f", self.vector).tobytes()


def normalise(values: Sequence[float], truncate: int | None = None) -> tuple[float, ...]:
    """Truncate (Matryoshka) then scale to unit L2 norm, rounded to float32.

    Raises:
        ModelBehaviorError: The vector is zero or not finite: it has no direction.
    """
    kept = list(values[:truncate]) if truncate is not None else list(values)
    norm = math.sqrt(math.fsum(v * v for v in kept))
    if not math.isfinite(norm) or norm == 0.0:
        raise ModelBehaviorError("the embeddings endpoint returned a zero or non-finite vector")
    return tuple(array("f", [v / norm for v in kept]))


@dataclass
class _Item:
    """One input on its way: its cache key, then its payload (a data URL or the text;
    for an in-process backend, the image's bytes in `image`, decoded batch by batch)."""

    key: str
    payload: str | None = None
    result: Embedding | None = None
    image: LoadedImage | None = None


class Embedder:
    """Images and texts to vectors in one space, through one backend.

    Args:
        backend: An `EmbeddingBackend`, a backend name (`cohere`, `infinity`, `vllm`,
            `local`: `model` is then the model directory), or None to read
            `VIEWFINDER_EMBED_*` (see `resolve_backend`).
        model, base_url, api_key: Override the environment for a named backend.
        dimensions: Vector length; None: 1,024 where the model allows it, else its own.
            Matryoshka models are truncated and re-normalised; others refuse a length
            they do not give (`InvalidOptionError`, at once where it is known).
        cache: A cache (`open_cache(path)` or `open_cache("redis://host:6379/0")`, a
            `ResponseCache` or `RedisCache`), or None for no cache.
            Keyed by backend, model, dimensions and the input's sha256 (or text).
        retry: The engine's retry policy for each request.
        rate_limiter: Paces every HTTP attempt (share one per endpoint and key).
        timeout: Seconds allowed per HTTP attempt.
        max_side: Long side of the image copy sent, in pixels.
        limits, fetch_timeout, allow_hosts: Image input rules, as for the analyzer.
        max_concurrency: Requests in flight at once in the async methods.
        budget: An `EmbeddingBudget` checked before every request and charged after
            it (`BudgetExceededError` once reached); share one across embedders.
        env: Environment to read instead of `os.environ`.

    Raises:
        ConfigurationError: No backend is configured.
        InvalidOptionError: A bad option, or `dimensions` the model cannot give.
    """

    def __init__(
        self,
        backend: EmbeddingBackend | str | None = None,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        cache: AnswerCache | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        timeout: float = 60.0,
        max_side: int = DEFAULT_MAX_SIDE,
        limits: ImageLimits = DEFAULT_LIMITS,
        fetch_timeout: float = 30.0,
        allow_hosts: Collection[str] | None = None,
        max_concurrency: int = 4,
        budget: EmbeddingBudget | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.backend = resolve_backend(
            backend, model=model, base_url=base_url, api_key=api_key, env=env
        )
        self.dims: Dimensions = self.backend.dimensions(dimensions)
        if max_side < MIN_MAX_SIDE:
            raise InvalidOptionError(f"max_side must be >= {MIN_MAX_SIDE}, got {max_side}")
        if max_concurrency < 1:
            raise InvalidOptionError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.cache = cache
        self.retry = retry if retry is not None else RetryPolicy()
        self.rate_limiter = rate_limiter
        self.timeout = timeout
        self.max_side = max_side
        self.limits = limits
        self.fetch_timeout = fetch_timeout
        self.allow_hosts = allow_hosts
        self.max_concurrency = max_concurrency
        self.budget = budget
        if budget is not None:
            budget.require_price(self.backend.model, self.backend.name)
        self._client: httpx2.Client | None = None

    # --- public API ---------------------------------------------------------------------

    def embed_images(self, images: Sequence[ImageInput | LoadedImage]) -> list[Embedding]:
        """One embedding per image, in order (any input `vf.analyze` accepts)."""
        items = [self._image_item(image) for image in images]
        for batch in self._batches(items, "image"):
            self._fill(batch, "image", self._send(batch, "image", "image"))
        return _results(items)

    def embed_texts(
        self, texts: Sequence[str], *, input_type: str = "search_query"
    ) -> list[Embedding]:
        """One embedding per text, in the images' space (Cohere: `input_type`)."""
        items = [self._text_item(text, input_type) for text in texts]
        for batch in self._batches(items, "text"):
            self._fill(batch, "text", self._send(batch, "text", input_type))
        return _results(items)

    async def aembed_images(self, images: Sequence[ImageInput | LoadedImage]) -> list[Embedding]:
        """`embed_images`, awaited: images read in a thread, batches sent concurrently.

        Image bytes are decoded under the caller's `budget_scope`, if any (`viewfinder
        serve`'s pixel budget); outside one, as plain threads.
        """
        items = list(await asyncio.gather(*(self._aimage_item(i) for i in images)))
        await self._asend_all(items, "image", "image")
        return _results(items)

    async def aembed_texts(
        self, texts: Sequence[str], *, input_type: str = "search_query"
    ) -> list[Embedding]:
        """`embed_texts`, awaited."""
        items = [self._text_item(text, input_type) for text in texts]
        await self._asend_all(items, "text", input_type)
        return _results(items)

    def embed_many(
        self,
        images: Iterable[object],
        *,
        concurrency: int = 4,
        rate_limiter: RateLimiter | None = None,
        progress: ProgressArg = None,
    ) -> EmbedRun:
        """Embed a stream of images (or `(id, image)` pairs, `BatchInput`s): one
        `EmbedItem` each as its batch completes, at most `concurrency` batches in flight,
        a bad image an error item; see `viewfinder.embed.many`. `progress`: a tqdm-like
        object or True, as `ImageAnalyzer.analyze_many`'s (`viewfinder.engine.progress`)."""
        from viewfinder.embed.many import embed_many

        return embed_many(
            self, images, concurrency=concurrency, rate_limiter=rate_limiter, progress=progress
        )

    def aembed_many(
        self,
        images: Iterable[object] | AsyncIterable[object],
        *,
        concurrency: int = 4,
        rate_limiter: RateLimiter | None = None,
        progress: ProgressArg = None,
    ) -> EmbedRun:
        """`embed_many` in the caller's event loop: `async for item in run`."""
        from viewfinder.embed.many import aembed_many

        return aembed_many(
            self, images, concurrency=concurrency, rate_limiter=rate_limiter, progress=progress
        )

    def close(self) -> None:
        """Close the sync HTTP client (the async methods close theirs per call)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Embedder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- items and the cache ------------------------------------------------------------

    def _key(self, kind: Kind, identity: Mapping[str, Any]) -> str:
        material = {
            "v": CACHE_KEY_VERSION,
            "backend": self.backend.name,
            "model": self.backend.model,
            "dimensions": [self.dims.request, self.dims.truncate, self.dims.expect],
            "kind": kind,
            **identity,
        }
        if isinstance(self.backend, InProcessBackend):
            material["weights"] = self.backend.weights_digest
        canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def _cached(self, key: str) -> Embedding | None:
        raw = self.cache.get(key) if self.cache is not None else None
        if raw is None:
            return None
        try:
            stored = json.loads(raw)
            vector = tuple(float(v) for v in stored["vector"])
            return Embedding(
                vector, str(stored["model"]), len(vector), EmbeddingUsage(cache_hit=True)
            )
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable entry is a miss

    def _image_item(self, image: ImageInput | LoadedImage) -> _Item:
        loaded = load_image(
            image,
            limits=self.limits,
            fetch_timeout=self.fetch_timeout,
            allow_hosts=self.allow_hosts,
        )
        key = self._key("image", {"sha256": loaded.sha256, "max_side": self.max_side})
        item = _Item(key=key, result=self._cached(key))
        if item.result is None and isinstance(self.backend, InProcessBackend):
            item.image = loaded
        elif item.result is None:
            item.payload = self._data_url(loaded)
        return item

    async def _aimage_item(self, image: ImageInput | LoadedImage) -> _Item:
        """`_image_item` in a thread; bytes hold their decoded pixels of a pixel budget."""
        if isinstance(image, bytes | bytearray):
            return await run_decode(bytes(image), self.max_side, self._image_item, image)
        return await asyncio.to_thread(self._image_item, image)

    def _text_item(self, text: str, input_type: str) -> _Item:
        if not isinstance(text, str) or not text.strip():
            raise InvalidOptionError("each text must be a non-empty string")
        key = self._key("text", {"text": text, "input_type": input_type})
        return _Item(key=key, payload=text, result=self._cached(key))

    def _data_url(self, loaded: LoadedImage) -> str:
        """The JPEG copy as a data URL, halved until it fits the backend's byte limit."""
        side = self.max_side
        limit = self.backend.max_image_bytes
        while True:
            prepared = prepare_image(loaded, max_side=side, limits=self.limits)
            if limit is None or len(prepared.model_bytes) <= limit:
                return prepared.data_url()
            if side // 2 < MIN_MAX_SIDE:
                raise ImageSizeError(f"{loaded.source}: cannot be prepared under {limit} bytes")
            side //= 2

    def _batches(self, items: list[_Item], kind: Kind) -> Iterator[list[_Item]]:
        misses = [item for item in items if item.result is None]
        size = self.backend.max_batch(kind)
        for start in range(0, len(misses), size):
            yield misses[start : start + size]

    def _fill(self, batch: list[_Item], kind: Kind, parsed: Parsed) -> None:
        for index, (item, values) in enumerate(zip(batch, parsed.vectors, strict=True)):
            vector = normalise(values, self.dims.truncate)
            if self.dims.expect is not None and len(vector) != self.dims.expect:
                raise InvalidOptionError(
                    f"{self.backend.model} gave {len(vector)} dimensions, not "
                    f"{self.dims.expect}: pass dimensions={len(vector)} (or declare the model "
                    "Matryoshka to truncate)"
                )
            usage = (
                EmbeddingUsage(
                    parsed.input_tokens, parsed.images, 1, image_tokens=parsed.image_tokens
                )
                if index == 0
                else EmbeddingUsage()
            )
            cost = embedding_cost(usage, self.backend.model, self.backend.name)
            if index == 0 and self.budget is not None:
                self.budget.charge(usage, cost)
            item.result = Embedding(vector, self.backend.model, len(vector), usage, cost)
            if self.cache is not None:
                self.cache.set(
                    item.key, json.dumps({"vector": vector, "model": self.backend.model})
                )

    # --- HTTP ---------------------------------------------------------------------------

    def _request(
        self, batch: list[_Item], kind: Kind, input_type: str
    ) -> tuple[str, dict[str, Any]]:
        path, body = self.backend.request(
            kind, [item.payload or "" for item in batch], self.dims, input_type
        )
        return self.backend.base_url.rstrip("/") + path, body

    def _compute(self, batch: list[_Item], kind: Kind) -> Parsed:
        """An in-process backend's batch: images decoded here (the image limits apply),
        one batch at a time so memory stays bounded."""
        from viewfinder.prepare.decode import decode_rgb

        assert isinstance(self.backend, InProcessBackend)
        inputs: list[Image.Image | str] = [
            decode_rgb(item.image.data, item.image.source, self.limits)
            if item.image is not None
            else item.payload or ""
            for item in batch
        ]
        return self.backend.compute(kind, inputs)

    def _send(self, batch: list[_Item], kind: Kind, input_type: str) -> Parsed:
        if isinstance(self.backend, InProcessBackend):
            return self._compute(batch, kind)
        url, body = self._request(batch, kind, input_type)
        if self.budget is not None:
            self.budget.check()
        if self._client is None:
            self._client = httpx2.Client(timeout=self.timeout)
        client = self._client
        attempts = 0
        try:
            for attempt in sync_retrying(self.retry):
                with attempt:
                    attempts += 1
                    if self.rate_limiter is not None:
                        self.rate_limiter.acquire()
                    response = _checked(
                        lambda: client.post(url, json=body, headers=self.backend.headers()),
                        self.rate_limiter,
                    )
        except Exception as exc:
            raise _error(exc, kind, attempts) from exc
        return self._parse(response, kind, len(batch))

    async def _asend_all(self, items: list[_Item], kind: Kind, input_type: str) -> None:
        if isinstance(self.backend, InProcessBackend):  # CPU-bound: a worker thread
            for batch in self._batches(items, kind):
                self._fill(batch, kind, await asyncio.to_thread(self._compute, batch, kind))
            return
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(client: httpx2.AsyncClient, batch: list[_Item]) -> None:
            async with gate:
                self._fill(batch, kind, await self._asend(client, batch, kind, input_type))

        shared = _SHARED_CLIENT.get()
        if shared is not None and shared[0] is self:
            await asyncio.gather(*(one(shared[1], b) for b in self._batches(items, kind)))
            return
        async with httpx2.AsyncClient(timeout=self.timeout) as client:
            await asyncio.gather(*(one(client, b) for b in self._batches(items, kind)))

    async def _asend(
        self, client: httpx2.AsyncClient, batch: list[_Item], kind: Kind, input_type: str
    ) -> Parsed:
        url, body = self._request(batch, kind, input_type)
        if self.budget is not None:
            self.budget.check()
        attempts = 0
        try:
            async for attempt in async_retrying(self.retry):
                with attempt:
                    attempts += 1
                    if self.rate_limiter is not None:
                        await self.rate_limiter.aacquire()
                    try:
                        response = await client.post(url, json=body, headers=self.backend.headers())
                    except httpx2.HTTPError as exc:
                        _observe(self.rate_limiter, None, {})
                        raise _as_openai(exc) from exc
                    _raise_for_status(response, self.rate_limiter)
        except Exception as exc:
            raise _error(exc, kind, attempts) from exc
        return self._parse(response, kind, len(batch))

    def _parse(self, response: httpx2.Response, kind: Kind, count: int) -> Parsed:
        try:
            return self.backend.parse(kind, response.json(), count)
        except ValueError as exc:
            raise ProviderError(
                f"the embeddings endpoint answered with data that does not match its API: {exc}",
                status_code=response.status_code,
                headers=response.headers,
            ) from exc


def share_client(embedder: Embedder, client: httpx2.AsyncClient) -> None:
    """Make `embedder`'s async calls in the current context (a task of the caller's)
    send through `client`, keeping its connections open from one call to the next.

    `embed_many` runs each batch in its own task and binds the run's one client there:
    without it every batch (every image, for Cohere v3) would open a new connection, a
    TLS handshake each against a real provider. The caller owns and closes `client`.
    """
    _SHARED_CLIENT.set((embedder, client))


def _results(items: list[_Item]) -> list[Embedding]:
    return [item.result for item in items if item.result is not None]


def _observe(limiter: RateLimiter | None, status: int | None, headers: Mapping[str, str]) -> None:
    if limiter is not None:
        limiter.observe(status, headers)


def _checked(send: Any, limiter: RateLimiter | None) -> httpx2.Response:
    """One sync attempt: transport failures and error statuses as openai's exceptions."""
    try:
        response: httpx2.Response = send()
    except httpx2.HTTPError as exc:
        _observe(limiter, None, {})
        raise _as_openai(exc) from exc
    _raise_for_status(response, limiter)
    return response


def _raise_for_status(response: httpx2.Response, limiter: RateLimiter | None) -> None:
    """Raise an error status as `openai.APIStatusError`, the type the engine's retry
    policy and error mapping (`engine.retry`) read: the one classification of statuses,
    `Retry-After` and `x-should-retry`, for embeddings as for analysis."""
    _observe(limiter, response.status_code, response.headers)
    if response.status_code < 400:
        return
    try:
        body: object = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    message = error if isinstance(error, str) else None
    if isinstance(error, dict):
        message = str(error.get("message") or "") or None
    if message is None and isinstance(body, dict):
        message = str(body.get("message") or body.get("detail") or "") or None
    message = message or response.text[:500] or f"HTTP {response.status_code}"
    raise openai.APIStatusError(message, response=response, body={"message": message})


def _as_openai(exc: httpx2.HTTPError) -> openai.APIError:
    try:
        request = exc.request
    except RuntimeError:  # httpx2 raises when the error carries no request
        request = httpx2.Request("POST", "http://unknown")
    if isinstance(exc, httpx2.TimeoutException):
        return openai.APITimeoutError(request=request)
    return openai.APIConnectionError(message=str(exc) or type(exc).__name__, request=request)


def _error(exc: Exception, kind: Kind, attempts: int) -> Exception:
    """The typed error for a request that failed: a text-only server refusing images
    says so."""
    if not isinstance(exc, openai.APIError):
        return exc
    error = to_viewfinder_error(exc, attempts=attempts)
    status = getattr(error, "status_code", None)
    if kind == "image" and isinstance(error, BadRequestError) and status in _REFUSED_IMAGE_STATUSES:
        return BadRequestError(
            f"The embeddings endpoint refused image input (HTTP {status}): is the model "
            f"text-only? Serve a multimodal embedding model. {error.message}",
            status_code=status,
            request_id=error.request_id,
            attempts=attempts,
            headers=error.headers,
        )
    return error
