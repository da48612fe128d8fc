"""Scripted embeddings routes: Cohere's `/v1/embed` and `/v2/embed`, OpenAI's `/v1/embeddings`.

**Not a model.** Every vector is derived from the SHA-256 of the input string (a data
URL's bytes or a text): the same input always gets the same vector, different inputs
get unrelated ones, and nothing about the image or the text's meaning is looked at.
Tests check request shapes, batching, normalisation and truncation with it; its vectors
are deliberately NOT unit length, so that the client's normalisation shows.

Embeddings requests go through the chat routes' admission (`latency`, `max_concurrency`,
`rpm_limit` per `rate_window`, `x-ratelimit-*` headers), so benchmarks can pace them.

What a test can script (FIFO, before the deterministic answers): failures, as
`EmbedFault(status, headers)`. `embed_text_only = True` makes `/v1/embeddings` answer
image input with a 400, as a text-only embedding server does.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

from viewfinder.testing.simulator.wire import Response, error_body

__all__ = ["EMBED_PATHS", "EmbedFault", "Embeddings"]

EMBED_PATHS = frozenset({"/v1/embed", "/v2/embed", "/v1/embeddings", "/embeddings"})
_DEFAULT_DIMENSIONS = 1024


@dataclass(frozen=True)
class EmbedFault:
    """One scripted failure of an embeddings request."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "simulator: scripted failure"


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic vector from `text`'s SHA-256: NOT an embedding, and not unit length."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    return [round(rng.uniform(-2.0, 2.0), 6) for _ in range(dimensions)]


class Embeddings:
    """The embeddings half of the simulator (mixed into `Simulator`).

    Attributes:
        embed_requests: `(path, body, headers)` of every embeddings request, in order.
        embed_dimensions: Vector length when the request asks none (`output_dimension`).
        embed_text_only: Refuse image input on `/v1/embeddings` with a 400.
    """

    def _init_embeddings(self) -> None:
        self.embed_requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.embed_dimensions = _DEFAULT_DIMENSIONS
        self.embed_text_only = False
        self._embed_faults: deque[EmbedFault] = deque()
        self._embed_lock = threading.Lock()

    def script_embed_faults(self, *faults: EmbedFault) -> None:
        """Queue failures for the next embeddings requests (FIFO)."""
        with self._embed_lock:
            self._embed_faults.extend(faults)

    def reset_embeddings(self) -> None:
        """Forget recorded embeddings requests and scripted faults; back to defaults."""
        with self._embed_lock:
            self.embed_requests.clear()
            self._embed_faults.clear()
            self.embed_dimensions = _DEFAULT_DIMENSIONS
            self.embed_text_only = False

    def _handle_embed(self, path: str, raw: bytes, headers: dict[str, str]) -> Response:
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return Response(
                400, error_body(400, "simulator: body is not a JSON object", None, None)
            )
        with self._embed_lock:
            self.embed_requests.append((path, body, headers))
            fault = self._embed_faults.popleft() if self._embed_faults else None
        if fault is not None:
            return Response(
                fault.status, error_body(fault.status, fault.message, None, None), fault.headers
            )
        return self._admitted(path, body)

    def _admitted(self, path: str, body: dict[str, Any]) -> Response:
        """The answer, through the chat routes' admission: the same `latency`, concurrency
        cap and rpm window (`rate_window`) and `x-ratelimit-*` headers, so a benchmark
        measures embeddings against a rate-limit bound as it does analysis."""
        sim: Any = self  # mixed into `Simulator` with `ChatCompletions`
        with sim._lock:
            sim._counter += 1
            sim._stats.total += 1
            n = sim._counter
            now = time.monotonic()
            limited = sim._rate_limited(n, {"messages": []}, now)
            if limited is not None:
                sim._count(429)
                return cast(Response, limited)
            sim._enter()
            headers = sim._ratelimit_headers(now)
            sim._in_flight_ends[n] = now + sim.latency
        status = 500
        try:
            if sim.latency > 0:
                sim._stopping.wait(sim.latency)
            response = self._cohere(body) if path.endswith("/embed") else self._openai(body)
            status = response.status
            return cast(Response, sim._finish(response, n, headers))
        finally:
            sim._leave(n, status)

    def _cohere(self, body: dict[str, Any]) -> Response:
        images = body.get("images") or []
        texts = body.get("texts") or []
        inputs = [str(x) for x in (images or texts)]
        if not inputs or (images and texts):
            return Response(400, json.dumps({"message": "give images or texts"}).encode())
        dims = int(body.get("output_dimension") or self.embed_dimensions)
        answer = {
            "id": "embed-sim",
            "embeddings": {"float": [fake_vector(x, dims) for x in inputs]},
            "texts": texts,
            "response_type": "embeddings_by_type",
            "meta": {
                "api_version": {"version": "2"},
                "billed_units": {"input_tokens": sum(len(t) // 4 + 1 for t in texts)}
                | ({"images": len(images)} if images else {}),
            },
        }
        return Response(200, json.dumps(answer).encode())

    def _openai(self, body: dict[str, Any]) -> Response:
        if "messages" in body:
            inputs = [json.dumps(body["messages"], sort_keys=True)]
            is_image = True
        else:
            raw = body.get("input")
            inputs = [str(x) for x in (raw if isinstance(raw, list) else [raw]) if x]
            if not inputs:
                return Response(400, error_body(400, "simulator: no input", None, None))
            is_image = body.get("modality") == "image" or any(
                x.startswith("data:image/") for x in inputs
            )
        if is_image and self.embed_text_only:
            message = "simulator: this model does not support image input"
            return Response(400, error_body(400, message, None, None))
        dims = int(body.get("dimensions") or self.embed_dimensions)
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(x, dims)}
            for i, x in enumerate(inputs)
        ]
        tokens = sum(85 if is_image else len(x) // 4 + 1 for x in inputs)
        answer = {
            "object": "list",
            "model": body.get("model"),
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Response(200, json.dumps(answer).encode())
