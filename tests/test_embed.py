"""`vf.Embedder` and its HTTP backends, offline, against the scripted simulator.

The simulator's embeddings routes are NOT a model: each vector comes from the SHA-256 of
the input string and is deliberately not unit length, so the tests see the client's
request shapes, batching, normalisation, truncation, retries, cache and errors.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

import viewfinder as vf
from viewfinder.embed import (
    CohereBackend,
    EmbeddingUsage,
    OpenAICompatibleBackend,
    resolve_backend,
)
from viewfinder.engine.cache import AnswerCache, ResponseCache, open_cache
from viewfinder.engine.retry import RetryPolicy
from viewfinder.testing.simulator import EmbedFault, Simulator, fake_vector

NO_WAIT = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0, jitter=0.0)


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    """One simulator for the module (NOT a model), reset before each test."""
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.reset()
    return server


def _png(color: tuple[int, int, int], side: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, format="PNG")
    return buffer.getvalue()


RED, GREEN, BLUE = _png((255, 0, 0)), _png((0, 255, 0)), _png((0, 0, 255))


def _cohere(sim: Simulator, model: str = "embed-v4.0", **kwargs: object) -> vf.Embedder:
    backend = CohereBackend(model=model, api_key="co-test", base_url=sim.endpoint)
    return vf.Embedder(backend, retry=NO_WAIT, **kwargs)  # type: ignore[arg-type]


def _openai(sim: Simulator, flavor: str = "infinity", **kwargs: object) -> vf.Embedder:
    backend = OpenAICompatibleBackend(
        model="siglip2",
        base_url=sim.base_url,
        flavor=flavor,  # type: ignore[arg-type]
        native_dimensions=kwargs.pop("native", None),  # type: ignore[arg-type]
        matryoshka=bool(kwargs.pop("matryoshka", False)),
    )
    return vf.Embedder(backend, retry=NO_WAIT, **kwargs)  # type: ignore[arg-type]


def _unit(vector: tuple[float, ...]) -> bool:
    return math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)


def test_cohere_v4_request_shape_normalisation_and_dimensions(sim: Simulator) -> None:
    with _cohere(sim, dimensions=512) as embedder:
        images = embedder.embed_images([RED, GREEN])
        texts = embedder.embed_texts(["a red square"])
    (path, body, headers), (_, text_body, _) = sim.embed_requests
    assert path == "/v2/embed" and headers["authorization"] == "Bearer co-test"
    assert body["model"] == "embed-v4.0" and body["input_type"] == "image"
    assert body["embedding_types"] == ["float"] and body["output_dimension"] == 512
    assert len(body["images"]) == 2  # v4: one call for the batch
    assert body["images"][0].startswith("data:image/jpeg;base64,")
    assert text_body["texts"] == ["a red square"] and text_body["input_type"] == "search_query"
    for result in [*images, *texts]:
        assert result.dimensions == 512 == len(result.vector) and _unit(result.vector)
        assert result.model == "embed-v4.0"
    raw = fake_vector(body["images"][0], 512)
    norm = math.sqrt(sum(v * v for v in raw))
    assert images[0].vector[0] == pytest.approx(raw[0] / norm, rel=1e-6)
    assert sum((r.usage for r in images), EmbeddingUsage()).images == 2


def test_cohere_v3_sends_one_image_per_call_and_refuses_other_dimensions(sim: Simulator) -> None:
    with _cohere(sim, model="embed-english-v3.0") as embedder:
        results = embedder.embed_images([RED, GREEN, BLUE])
    assert [len(body["images"]) for _, body, _ in sim.embed_requests] == [1, 1, 1]
    assert all("output_dimension" not in body for _, body, _ in sim.embed_requests)
    assert [r.dimensions for r in results] == [1024] * 3
    assert [r.usage.requests for r in results] == [1, 1, 1]
    with pytest.raises(vf.InvalidOptionError, match="not a Matryoshka"):
        _cohere(sim, model="embed-english-v3.0", dimensions=256)
    with pytest.raises(vf.InvalidOptionError, match="256, 512, 1024, 1536"):
        _cohere(sim, dimensions=300)


def test_an_image_over_5_mb_is_prepared_down_for_cohere_v3(sim: Simulator, tmp_path: Path) -> None:
    noise = Image.frombytes("RGB", (1500, 1500), os.urandom(1500 * 1500 * 3))
    path = tmp_path / "noise.png"
    noise.save(path, format="PNG", compress_level=0)
    assert path.stat().st_size > 5 * 1024 * 1024
    with _cohere(sim, model="embed-english-v3.0") as embedder:
        embedder.embed_images([path])
    (url,) = sim.embed_requests[0][1]["images"]
    sent = base64.b64decode(url.split(",", 1)[1])
    assert url.startswith("data:image/jpeg;") and len(sent) <= 5 * 1024 * 1024
    assert max(Image.open(io.BytesIO(sent)).size) <= 1024


def test_azure_ai_foundry_gets_the_key_as_a_bearer_token() -> None:
    # Microsoft documents `Authorization: Bearer <TOKEN>` for the deployment's Cohere route.
    backend = CohereBackend(api_key="k", base_url="https://x.eastus.models.ai.azure.com")
    assert backend.headers() == {"authorization": "Bearer k"}
    assert CohereBackend(api_key="k", azure=True).headers() == {"api-key": "k"}


def test_cohere_v4_batches_stay_under_its_20_mb_request_limit(sim: Simulator) -> None:
    v4, v3 = CohereBackend(), CohereBackend(model="embed-multilingual-v3.0")
    assert v4.max_batch("image") * v4.max_image_bytes * 4 / 3 < 20_000_000
    assert (v3.max_batch("image"), v3.max_image_bytes) == (1, 5 * 1024 * 1024)
    assert v4.max_batch("text") == v3.max_batch("text") == 96
    with _cohere(sim) as embedder:
        embedder.embed_images([_png((i, 0, 0)) for i in range(15)])
    assert [len(body["images"]) for _, body, _ in sim.embed_requests] == [14, 1]


def test_cohere_v4_image_tokens_are_read_apart_from_text_tokens() -> None:
    payload = {
        "embeddings": {"float": [[0.5, 0.5]]},
        "meta": {"billed_units": {"images": 1, "image_tokens": 1610}},
    }
    parsed = CohereBackend().parse("image", payload, 1)
    assert (parsed.images, parsed.image_tokens, parsed.input_tokens) == (1, 1610, 0)


def test_infinity_request_shape_and_batching(sim: Simulator) -> None:
    with _openai(sim) as embedder:
        embedder.embed_images([RED, GREEN, BLUE] * 11)  # 33 images: 32 + 1
        embedder.embed_texts(["a cat"])
    bodies = [body for _, body, _ in sim.embed_requests]
    assert [len(b["input"]) for b in bodies] == [32, 1, 1]
    assert bodies[0]["modality"] == "image" and bodies[0]["model"] == "siglip2"
    assert bodies[0]["input"][0].startswith("data:image/jpeg;base64,")
    assert bodies[2] == {
        "model": "siglip2",
        "encoding_format": "float",
        "input": ["a cat"],
        "modality": "text",
    }
    assert sim.embed_requests[0][0] == "/v1/embeddings"


def test_vllm_sends_each_image_as_a_chat_message(sim: Simulator) -> None:
    with _openai(sim, flavor="vllm") as embedder:
        embedder.embed_images([RED, GREEN])
        embedder.embed_texts(["a cat", "a dog"])
    bodies = [body for _, body, _ in sim.embed_requests]
    assert len(bodies) == 3
    (message,) = bodies[0]["messages"]
    assert message["role"] == "user"
    assert message["content"][0]["type"] == "image_url"
    assert message["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert bodies[2]["input"] == ["a cat", "a dog"] and "modality" not in bodies[2]


def test_matryoshka_truncates_and_renormalises(sim: Simulator) -> None:
    with _openai(sim, matryoshka=True, dimensions=64) as embedder:
        (text,) = embedder.embed_texts(["a cat"])
    raw = fake_vector("a cat", 1024)[:64]
    norm = math.sqrt(sum(v * v for v in raw))
    assert text.dimensions == 64 and _unit(text.vector)
    assert text.vector[5] == pytest.approx(raw[5] / norm, rel=1e-6)
    with pytest.raises(vf.InvalidOptionError, match="cannot be truncated"):
        _openai(sim, native=768, dimensions=256)
    unknown_width = _openai(sim, dimensions=256)  # not Matryoshka, width unknown
    with unknown_width, pytest.raises(vf.InvalidOptionError, match="gave 1024 dimensions"):
        unknown_width.embed_texts(["a cat"])


def test_a_429_with_retry_after_is_retried(sim: Simulator) -> None:
    sim.script_embed_faults(EmbedFault(429, {"retry-after": "0"}))
    with _cohere(sim) as embedder:
        (result,) = embedder.embed_texts(["a cat"])
    assert len(sim.embed_requests) == 2 and _unit(result.vector)


def test_5xx_exhausting_the_attempts_is_a_server_error(sim: Simulator) -> None:
    sim.script_embed_faults(*[EmbedFault(503)] * 3)
    with _openai(sim) as embedder, pytest.raises(vf.ServerError) as caught:
        embedder.embed_texts(["a cat"])
    assert caught.value.attempts == 3 and caught.value.status_code == 503
    assert len(sim.embed_requests) == 3


def test_a_text_only_server_refusing_images_says_so(sim: Simulator) -> None:
    sim.embed_text_only = True
    with _openai(sim) as embedder, pytest.raises(vf.BadRequestError, match="text-only"):
        embedder.embed_images([RED])
    assert len(sim.embed_requests) == 1  # a 400 is never retried


@pytest.mark.parametrize("where", ["disk", "redis"])
def test_a_cache_hit_sends_nothing(
    sim: Simulator, tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    cache: AnswerCache = (
        ResponseCache(tmp_path / "cache")
        if where == "disk"
        else open_cache(request.getfixturevalue("redis_url"))  # one Redis, as disk
    )
    with _cohere(sim, cache=cache) as embedder:
        first = embedder.embed_images([RED]) + embedder.embed_texts(["a cat"])
        sent = len(sim.embed_requests)
        again = embedder.embed_images([RED]) + embedder.embed_texts(["a cat"])
    with _cohere(sim, cache=cache, dimensions=256) as narrower:
        narrower.embed_texts(["a cat"])  # another width: another key
    cache.close()
    assert sent == 2 and len(sim.embed_requests) == 3
    assert [r.vector for r in again] == [r.vector for r in first]
    assert all(r.usage.cache_hit and r.usage.requests == 0 for r in again)


def test_async_twins_give_the_same_vectors(sim: Simulator) -> None:
    with _openai(sim) as embedder:
        sync = embedder.embed_images([RED, GREEN])
        texts = embedder.embed_texts(["a cat"])

        async def run() -> tuple[list[vf.Embedding], list[vf.Embedding]]:
            return await embedder.aembed_images([RED, GREEN]), await embedder.aembed_texts(
                ["a cat"]
            )

        images, atexts = asyncio.run(run())
    assert [e.vector for e in images] == [e.vector for e in sync]
    assert atexts[0].vector == texts[0].vector


def test_the_analyzers_image_rules_apply(sim: Simulator) -> None:
    with _cohere(sim) as embedder:
        with pytest.raises(vf.ImageFormatError):
            embedder.embed_images([b"not an image"])
        with pytest.raises(vf.ImageFetchError):
            embedder.embed_images(["http://127.0.0.1:1/private.png"])
    assert sim.embed_requests == []


def test_configuration_by_environment() -> None:
    backend = resolve_backend(env={"COHERE_API_KEY": "k"})
    assert isinstance(backend, CohereBackend) and backend.model == "embed-v4.0"
    vllm = resolve_backend(
        env={
            "VIEWFINDER_EMBED_BACKEND": "vllm",
            "VIEWFINDER_EMBED_MODEL": "m",
            "VIEWFINDER_EMBED_BASE_URL": "http://127.0.0.1:9/v1/",
        }
    )
    assert isinstance(vllm, OpenAICompatibleBackend) and vllm.flavor == "vllm"
    assert vllm.base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(vf.ConfigurationError, match="COHERE_API_KEY"):
        resolve_backend(env={})
    with pytest.raises(vf.ConfigurationError, match="base URL"):
        resolve_backend(env={"VIEWFINDER_EMBED_BACKEND": "infinity"})
