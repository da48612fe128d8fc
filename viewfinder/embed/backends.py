"""Embedding backends: the wire format of each HTTP embeddings API, behind one Protocol.

A backend is pure: it says where to send a batch and with which body (`request`), reads
the answer (`parse`), and knows its model's limits (`max_batch`, `dimensions`). The
`Embedder` owns the HTTP, retries, cache and normalisation, written once for all of them.

- `CohereBackend`: Cohere Embed v3/v4, `POST /v2/embed` of Cohere's API, also through an
  Azure AI Foundry deployment (its base URL, the key in an `api-key` header). v3 takes one
  image per call (JPEG or PNG, at most 5 MB) and gives 1,024 dimensions (384 for the
  `-light-` models); v4 takes `output_dimension` 256, 512, 1,024 or 1,536.
- `OpenAICompatibleBackend`: `POST /v1/embeddings` servers that take images: Infinity
  (`"modality": "image"`, image URLs or data URLs in `input`) and vLLM (one image per
  request, as a chat-style `messages` list with an `image_url` part).

`resolve_backend` picks one from constructor arguments, else environment variables, as
`viewfinder.engine.providers` does for the analyzer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlsplit

from viewfinder.errors import ConfigurationError, InvalidOptionError

__all__ = [
    "COHERE_BASE_URL",
    "CohereBackend",
    "Dimensions",
    "EmbeddingBackend",
    "Kind",
    "OpenAICompatibleBackend",
    "Parsed",
    "resolve_backend",
]

Kind = Literal["image", "text"]
"""What a batch holds: images (as data URLs) or texts."""

COHERE_BASE_URL: Final = "https://api.cohere.com"
COHERE_MAX_IMAGE_BYTES: Final = 5 * 1024 * 1024
"""Cohere's limit on one image (v3: "at most 5 MB", JPEG or PNG)."""
_COHERE_MAX_TEXTS: Final = 96
_COHERE_V4_DIMENSIONS: Final = (256, 512, 1024, 1536)
_DEFAULT_DIMENSIONS: Final = 1024
"""Azure's multimodal embeddings have 1,024 dimensions (reference §A.3): the default."""
_OPENAI_MAX_INPUTS: Final = 32


@dataclass(frozen=True)
class Dimensions:
    """What is asked of the server and what is done on this machine.

    Attributes:
        request: Sent to the server (Cohere v4's `output_dimension`); None: not sent.
        truncate: Matryoshka truncation to this many leading values, then
            re-normalisation, on this machine; None: the vector is kept whole.
        expect: The length every vector must end with; None: whatever the server gives.
    """

    request: int | None
    truncate: int | None
    expect: int | None


@dataclass(frozen=True)
class Parsed:
    """One batch's answer: a vector per input, in input order, and what it cost."""

    vectors: list[list[float]]
    input_tokens: int
    images: int
    image_tokens: int = 0
    """Tokens billed for the images, where the API reports them (Cohere v4)."""


class EmbeddingBackend(Protocol):
    """One embeddings API. Pure: no I/O (the `Embedder` sends what `request` builds)."""

    @property
    def name(self) -> str:
        """`cohere`, `infinity` or `vllm`: part of the cache key."""
        ...

    @property
    def model(self) -> str:
        """The model name sent, and part of the cache key."""
        ...

    @property
    def base_url(self) -> str:
        """Where requests go; `request`'s path is appended."""
        ...

    @property
    def max_image_bytes(self) -> int | None:
        """Largest prepared image the API takes, or None."""
        ...

    def max_batch(self, kind: Kind) -> int:
        """Most inputs of this kind one request may carry."""
        ...

    def dimensions(self, requested: int | None) -> Dimensions:
        """Check `requested` (None: the default) against the model.

        Raises:
            InvalidOptionError: The model cannot give that many dimensions.
        """
        ...

    def headers(self) -> dict[str, str]:
        """Authentication headers for every request."""
        ...

    def request(
        self, kind: Kind, items: Sequence[str], dims: Dimensions, input_type: str
    ) -> tuple[str, dict[str, Any]]:
        """The path (after `base_url`) and JSON body that embed `items`."""
        ...

    def parse(self, kind: Kind, payload: Any, count: int) -> Parsed:
        """Read a 200 answer to a request for `count` inputs.

        Raises:
            ValueError: The answer does not have the API's shape.
        """
        ...


def _check_dimensions(value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidOptionError(f"dimensions must be a positive integer, got {value!r}")


def _vectors(items: Any, count: int) -> list[list[float]]:
    if not isinstance(items, list) or len(items) != count:
        raise ValueError(f"expected {count} vectors")
    vectors: list[list[float]] = []
    for item in items:
        if not isinstance(item, list) or not item:
            raise ValueError("a vector is not a non-empty list of numbers")
        vectors.append([float(v) for v in item])
    return vectors


@dataclass(frozen=True)
class CohereBackend:
    """Cohere Embed v3 or v4 through `POST /v2/embed` (Cohere's API or Azure AI Foundry).

    Args:
        model: `embed-v4.0`, `embed-english-v3.0`, `embed-multilingual-v3.0`, or a
            `-light-v3.0` model (384 dimensions).
        api_key: Sent as `Authorization: Bearer`, or as `api-key` for an Azure AI
            Foundry deployment.
        base_url: Cohere's API by default; an Azure AI Foundry deployment's URL.
        azure: Send the key as `api-key` (Azure AI Foundry). None: when the base URL's
            host ends in `.azure.com`.
    """

    model: str = "embed-v4.0"
    api_key: str = ""
    base_url: str = COHERE_BASE_URL
    azure: bool | None = None
    name: str = "cohere"
    max_image_bytes: int | None = COHERE_MAX_IMAGE_BYTES

    @property
    def is_v4(self) -> bool:
        """v4 takes several images per call and `output_dimension`."""
        return "v4" in self.model

    @property
    def native(self) -> int:
        """The v3 model's only width (v4: its default)."""
        return 384 if "light" in self.model else _DEFAULT_DIMENSIONS

    def max_batch(self, kind: Kind) -> int:
        """v3: one image per call; 96 inputs otherwise."""
        return 1 if kind == "image" and not self.is_v4 else _COHERE_MAX_TEXTS

    def dimensions(self, requested: int | None) -> Dimensions:
        """v4: one of 256/512/1,024/1,536 asked of the server; v3: its native width only."""
        _check_dimensions(requested)
        if self.is_v4:
            value = _DEFAULT_DIMENSIONS if requested is None else requested
            if value not in _COHERE_V4_DIMENSIONS:
                raise InvalidOptionError(
                    f"{self.model} gives {', '.join(map(str, _COHERE_V4_DIMENSIONS))} "
                    f"dimensions, not {value}"
                )
            return Dimensions(request=value, truncate=None, expect=value)
        if requested is not None and requested != self.native:
            raise InvalidOptionError(
                f"{self.model} gives {self.native} dimensions only (it is not a Matryoshka "
                f"model, so its vectors cannot be truncated): got dimensions={requested}"
            )
        return Dimensions(request=None, truncate=None, expect=self.native)

    def headers(self) -> dict[str, str]:
        """`api-key` for Azure AI Foundry, else a bearer token."""
        if not self.api_key:
            return {}
        azure = self.azure
        if azure is None:
            azure = (urlsplit(self.base_url).hostname or "").endswith(".azure.com")
        return {"api-key": self.api_key} if azure else {"authorization": f"Bearer {self.api_key}"}

    def request(
        self, kind: Kind, items: Sequence[str], dims: Dimensions, input_type: str
    ) -> tuple[str, dict[str, Any]]:
        """`{"model", "input_type", "images"|"texts", "embedding_types": ["float"]}`."""
        body: dict[str, Any] = {
            "model": self.model,
            "input_type": "image" if kind == "image" else input_type,
            "images" if kind == "image" else "texts": list(items),
            "embedding_types": ["float"],
        }
        if dims.request is not None:
            body["output_dimension"] = dims.request
        return "/v2/embed", body

    def parse(self, kind: Kind, payload: Any, count: int) -> Parsed:
        """`embeddings.float` (one list per input) and `meta.billed_units`."""
        if not isinstance(payload, dict) or not isinstance(payload.get("embeddings"), dict):
            raise ValueError("no 'embeddings' object")
        vectors = _vectors(payload["embeddings"].get("float"), count)
        meta = payload.get("meta")
        billed = meta.get("billed_units") if isinstance(meta, dict) else None
        billed = billed if isinstance(billed, dict) else {}
        tokens = int(billed.get("input_tokens") or 0)
        images = int(billed.get("images") or (count if kind == "image" else 0))
        image_tokens = int(billed.get("image_tokens") or 0)
        return Parsed(vectors, input_tokens=tokens, images=images, image_tokens=image_tokens)


@dataclass(frozen=True)
class OpenAICompatibleBackend:
    """An OpenAI-compatible `POST /v1/embeddings` server that takes images.

    Args:
        model: The served model's name.
        base_url: The server's base URL, `/v1` included (as for an OpenAI client).
        flavor: `infinity` (`"modality"` and a list of image URLs in `input`) or `vllm`
            (one image per request, as chat-style `messages`).
        api_key: Sent as a bearer token when given.
        native_dimensions: The model's vector length, when known (checked at once).
        matryoshka: The model was trained for truncation (Matryoshka representation
            learning): `dimensions` below the native width truncate and re-normalise.
    """

    model: str
    base_url: str
    flavor: Literal["infinity", "vllm"] = "infinity"
    api_key: str = ""
    native_dimensions: int | None = None
    matryoshka: bool = False
    max_image_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.flavor not in ("infinity", "vllm"):
            raise InvalidOptionError(f"flavor must be 'infinity' or 'vllm', got {self.flavor!r}")
        _check_dimensions(self.native_dimensions)

    @property
    def name(self) -> str:
        """The flavor: the two servers take images differently."""
        return self.flavor

    def max_batch(self, kind: Kind) -> int:
        """vLLM: one image per request (one chat conversation); 32 inputs otherwise."""
        return 1 if kind == "image" and self.flavor == "vllm" else _OPENAI_MAX_INPUTS

    def dimensions(self, requested: int | None) -> Dimensions:
        """Matryoshka models truncate on this machine (1,024 by default when the model
        is wider); other models give their native width only."""
        _check_dimensions(requested)
        native = self.native_dimensions
        if self.matryoshka:
            if requested is None:
                wide = native is None or native >= _DEFAULT_DIMENSIONS
                requested = _DEFAULT_DIMENSIONS if wide else native
            if native is not None and requested is not None and requested > native:
                raise InvalidOptionError(
                    f"{self.model} gives {native} dimensions: cannot give {requested}"
                )
            return Dimensions(request=None, truncate=requested, expect=requested)
        if requested is not None and native is not None and requested != native:
            raise InvalidOptionError(
                f"{self.model} gives {native} dimensions only (not declared a Matryoshka "
                f"model, so its vectors cannot be truncated): got dimensions={requested}"
            )
        return Dimensions(request=None, truncate=None, expect=requested or native)

    def headers(self) -> dict[str, str]:
        """A bearer token when a key is set."""
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def request(
        self, kind: Kind, items: Sequence[str], dims: Dimensions, input_type: str
    ) -> tuple[str, dict[str, Any]]:
        """Infinity: `{"model", "input", "modality"}`; vLLM images: `{"model", "messages"}`."""
        body: dict[str, Any] = {"model": self.model, "encoding_format": "float"}
        if kind == "image" and self.flavor == "vllm":
            (url,) = items
            part = {"type": "image_url", "image_url": {"url": url}}
            body["messages"] = [{"role": "user", "content": [part]}]
        else:
            body["input"] = list(items)
            if self.flavor == "infinity":
                body["modality"] = kind
        return "/embeddings", body

    def parse(self, kind: Kind, payload: Any, count: int) -> Parsed:
        """OpenAI's `data[].embedding` (ordered by `index`) and `usage.prompt_tokens`."""
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise ValueError("no 'data' list")
        ordered = sorted(data, key=lambda d: int(d.get("index", 0)) if isinstance(d, dict) else 0)
        vectors = _vectors([d.get("embedding") for d in ordered if isinstance(d, dict)], count)
        usage = payload.get("usage")
        tokens = int(usage.get("prompt_tokens") or 0) if isinstance(usage, dict) else 0
        return Parsed(vectors=vectors, input_tokens=tokens, images=count if kind == "image" else 0)


def resolve_backend(
    backend: EmbeddingBackend | str | None = None,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
) -> EmbeddingBackend:
    """The backend from arguments, else `VIEWFINDER_EMBED_*` environment variables.

    `VIEWFINDER_EMBED_BACKEND` (`cohere`, `infinity` or `vllm`; default `cohere` when
    `COHERE_API_KEY` is set), `VIEWFINDER_EMBED_MODEL`, `VIEWFINDER_EMBED_BASE_URL` and
    `VIEWFINDER_EMBED_API_KEY` (Cohere: `COHERE_API_KEY` too). An argument wins over its
    variable.

    Raises:
        ConfigurationError: No backend is named, or a required setting is missing.
    """
    if backend is not None and not isinstance(backend, str):
        return backend
    env = os.environ if env is None else env
    kind = (backend or env.get("VIEWFINDER_EMBED_BACKEND", "")).strip().lower()
    if not kind and env.get("COHERE_API_KEY"):
        kind = "cohere"
    model = model or env.get("VIEWFINDER_EMBED_MODEL") or None
    base_url = base_url or env.get("VIEWFINDER_EMBED_BASE_URL") or None
    key = api_key or env.get("VIEWFINDER_EMBED_API_KEY") or ""
    if kind == "cohere":
        return CohereBackend(
            model=model or "embed-v4.0",
            api_key=key or env.get("COHERE_API_KEY", ""),
            base_url=(base_url or COHERE_BASE_URL).rstrip("/"),
        )
    if kind in ("infinity", "vllm"):
        if not model or not base_url:
            raise ConfigurationError(
                f"the {kind} backend needs a model and a base URL: set "
                "VIEWFINDER_EMBED_MODEL and VIEWFINDER_EMBED_BASE_URL (or pass them)"
            )
        flavor: Literal["infinity", "vllm"] = "vllm" if kind == "vllm" else "infinity"
        return OpenAICompatibleBackend(
            model=model, base_url=base_url.rstrip("/"), flavor=flavor, api_key=key
        )
    if kind:
        raise ConfigurationError(
            f"unknown embedding backend {kind!r}: use 'cohere', 'infinity' or 'vllm'"
        )
    raise ConfigurationError(
        "no embedding backend configured: set COHERE_API_KEY, or VIEWFINDER_EMBED_BACKEND "
        "(cohere, infinity or vllm) with VIEWFINDER_EMBED_MODEL and VIEWFINDER_EMBED_BASE_URL"
    )
