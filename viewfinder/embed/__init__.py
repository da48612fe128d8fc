"""Multimodal embeddings: `Embedder` and its HTTP backends (issue 16).

`Embedder` (embedder.py) turns images and texts into L2-normalised float32 vectors in
one space, with the analyzer's image inputs and engine habits (cache, retries, rate
limiting, typed errors). backends.py holds the wire format of each embeddings API
(Cohere Embed v3/v4, OpenAI-compatible Infinity and vLLM servers) behind one Protocol.
"""

from viewfinder.embed.backends import (
    CohereBackend,
    EmbeddingBackend,
    OpenAICompatibleBackend,
    resolve_backend,
)
from viewfinder.embed.embedder import Embedder, Embedding, EmbeddingUsage

__all__ = [
    "CohereBackend",
    "Embedder",
    "Embedding",
    "EmbeddingBackend",
    "EmbeddingUsage",
    "OpenAICompatibleBackend",
    "resolve_backend",
]
