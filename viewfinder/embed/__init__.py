"""Multimodal embeddings: `Embedder` and its backends (issue 16).

`Embedder` (embedder.py) turns images and texts into L2-normalised float32 vectors in
one space, with the analyzer's image inputs and engine habits (cache, retries, rate
limiting, typed errors). backends.py holds the wire format of each embeddings API
(Cohere Embed v3/v4, OpenAI-compatible Infinity and vLLM servers) behind one Protocol;
local.py the in-process `LocalBackend` (SigLIP 2 / OpenCLIP in ONNX Runtime, the
`embed-local` extra: its packages are imported on first use).
(Cohere Embed v3/v4, OpenAI-compatible Infinity and vLLM servers) behind one Protocol.
many.py streams a collection through an embedder (`Embedder.embed_many`); pricing.py
holds embedding prices and `EmbeddingBudget`.
"""

from viewfinder.embed.backends import (
    CohereBackend,
    EmbeddingBackend,
    InProcessBackend,
    OpenAICompatibleBackend,
    resolve_backend,
)
from viewfinder.embed.embedder import Embedder, Embedding, EmbeddingUsage
from viewfinder.embed.local import LocalBackend
from viewfinder.embed.many import (
    EmbedError,
    EmbedItem,
    EmbedOk,
    EmbedOutcome,
    EmbedRun,
    EmbedSummary,
)
from viewfinder.embed.pricing import (
    EmbeddingBudget,
    EmbeddingPrice,
    embedding_cost,
    embedding_price_for,
)

__all__ = [
    "CohereBackend",
    "EmbedError",
    "EmbedItem",
    "EmbedOk",
    "EmbedOutcome",
    "EmbedRun",
    "EmbedSummary",
    "Embedder",
    "Embedding",
    "EmbeddingBackend",
    "EmbeddingBudget",
    "EmbeddingPrice",
    "EmbeddingUsage",
    "InProcessBackend",
    "LocalBackend",
    "OpenAICompatibleBackend",
    "embedding_cost",
    "embedding_price_for",
    "resolve_backend",
]
