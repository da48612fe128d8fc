"""Embedding prices, `EmbeddingBudget` and `Embedder.embed_many`, against the simulator.

The simulator is NOT a model (hash-derived vectors); prices set through
`VIEWFINDER_EMBED_PRICES` here are scripted, not any provider's.
"""

from __future__ import annotations

import io
import json
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

import viewfinder as vf
from viewfinder.batch.records import ID_VERSION, BatchInput
from viewfinder.embed import (
    CohereBackend,
    EmbeddingBudget,
    EmbeddingUsage,
    OpenAICompatibleBackend,
    embedding_cost,
    embedding_price_for,
    many,
)
from viewfinder.errors import BudgetExceededError, InvalidOptionError
from viewfinder.testing.simulator import EmbedFault, Simulator


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.reset()
    return server


@pytest.fixture
def per_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scripted price of $0.01 per image for embed-english-v3.0 (not Cohere's)."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"embed-english-v3.0": {"image": 0.01}}}))
    monkeypatch.setenv("VIEWFINDER_EMBED_PRICES", str(prices))


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (shade, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bundled_prices_none_when_unknown_and_the_local_backend_is_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VIEWFINDER_EMBED_PRICES", raising=False)
    million_text = EmbeddingUsage(input_tokens=1_000_000, requests=1)
    assert embedding_cost(million_text, "embed-v4.0") == pytest.approx(0.12)
    assert embedding_cost(million_text, "cohere/embed-v4.0") == pytest.approx(0.12)
    images = EmbeddingUsage(images=1, image_tokens=1_000_000, requests=1)
    assert embedding_cost(images, "embed-v4.0") == pytest.approx(0.47)
    # v4 images whose tokens the server did not report: unknown, not 0.
    assert embedding_cost(EmbeddingUsage(images=1, requests=1), "embed-v4.0") is None
    assert embedding_price_for("embed-english-v3.0") is None  # no published self-serve price
    assert embedding_cost(million_text, "siglip2") is None
    assert embedding_cost(million_text, "siglip2", backend="local") == 0.0
    assert embedding_cost(EmbeddingUsage(cache_hit=True), "siglip2") == 0.0


def test_an_embedding_carries_its_cost(sim: Simulator, per_image: None) -> None:
    backend = CohereBackend(model="embed-english-v3.0", api_key="k", base_url=sim.endpoint)
    with vf.Embedder(backend) as embedder:
        first, second = embedder.embed_images([png(1), png(2)])
    assert first.cost == second.cost == pytest.approx(0.01)  # v3: a request per image


def test_the_budget_refuses_the_request_that_would_cross_it(
    sim: Simulator, per_image: None
) -> None:
    backend = CohereBackend(model="embed-english-v3.0", api_key="k", base_url=sim.endpoint)
    budget = EmbeddingBudget(max_dollars=0.015)
    embedder = vf.Embedder(backend, budget=budget)
    with embedder, pytest.raises(BudgetExceededError, match="dollar budget reached"):
        embedder.embed_images([png(1), png(2), png(3)])
    assert len(sim.embed_requests) == 1  # the second would have made $0.02
    assert budget.dollars == pytest.approx(0.01) and budget.requests == 1
    siglip = OpenAICompatibleBackend(model="siglip2", base_url=sim.base_url, flavor="infinity")
    with pytest.raises(InvalidOptionError, match="needs a price"):
        vf.Embedder(siglip, budget=EmbeddingBudget(max_dollars=1.0))


async def test_aembed_many_batches_streams_and_isolates_a_bad_image(sim: Simulator) -> None:
    backend = OpenAICompatibleBackend(model="siglip2", base_url=sim.base_url, flavor="infinity")
    embedder = vf.Embedder(backend)
    inputs = [("a", png(1)), BatchInput(png(2), id="b"), ("bad", b"not an image"), png(3)]
    async with embedder.aembed_many(inputs, concurrency=2) as run:
        items = {item.id: item async for item in run}
    assert set(items) == {"a", "b", "bad", 3}
    assert items["bad"].error is not None and not items["bad"].ok
    assert items["bad"].to_record()["error"]["type"] == "ImageFormatError"
    good = items["a"].to_record()
    assert good["status"] == "ok" and good["dimensions"] == len(good["vector"]) == 1024
    assert good["id_version"] == ID_VERSION == many.ID_VERSION
    embedding = items["a"].embedding
    assert embedding is not None  # the record's shorter numbers are the same float32s
    assert array("f", good["vector"]) == array("f", embedding.vector)
    # One batch of four (Infinity takes 32 images a request); "bad" only fails when it is
    # decoded, so the batch is halved: [a, b] in one request, then [bad] and [3] alone.
    assert [len(body["input"]) for _, body, _ in sim.embed_requests] == [2, 1]
    summary = run.summary
    assert (summary.ok, summary.failed, summary.usage.requests) == (3, 1, 2)
    assert summary.unpriced == 2 and summary.dollars == 0.0  # siglip2 has no price


def test_a_refused_request_of_several_images_is_retried_one_by_one(sim: Simulator) -> None:
    backend = OpenAICompatibleBackend(model="siglip2", base_url=sim.base_url, flavor="infinity")
    sim.script_embed_faults(EmbedFault(400, message="simulator: one image is bad"))
    with vf.Embedder(backend) as embedder, embedder.embed_many([png(1), png(2)]) as run:
        items = list(run)
    assert [item.ok for item in sorted(items, key=lambda i: i.index)] == [True, True]
    assert len(sim.embed_requests) == 3  # the refused pair, then each half alone


def test_a_run_sends_every_batch_through_one_connection_pool(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cohere v3 takes one image per request: a pool per request would be a new connection
    (a TLS handshake, against the real API) per image."""
    opened: list[object] = []
    original = many.httpx2.AsyncClient

    class Counting(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            opened.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(many.httpx2, "AsyncClient", Counting)
    backend = CohereBackend(model="embed-english-v3.0", api_key="k", base_url=sim.endpoint)
    with vf.Embedder(backend) as embedder:
        items = list(embedder.embed_many([png(shade) for shade in range(5)], concurrency=2))
        assert [item.ok for item in items] == [True] * 5
        assert len(sim.embed_requests) == 5
        assert len(opened) == 1
        embedder.embed_images([png(9)])  # outside a run: unchanged, its own client
    assert len(opened) == 1  # the sync path uses httpx2.Client


def test_the_simulators_rate_window_applies_to_embeddings_too() -> None:
    """The benchmark paces embeddings against the simulator's rpm window: a request past
    it is a 429 with the window's headers, as for chat completions."""
    from viewfinder.engine.retry import RetryPolicy
    from viewfinder.errors import RateLimitError

    with Simulator(rpm_limit=2, rate_window=60) as limited:
        backend = OpenAICompatibleBackend(model="m", base_url=limited.endpoint + "/v1")
        with vf.Embedder(backend, retry=RetryPolicy(max_attempts=1)) as embedder:
            embedder.embed_texts(["one"])
            embedder.embed_texts(["two"])
            with pytest.raises(RateLimitError):
                embedder.embed_texts(["three"])
        assert limited.stats.ok == 2 and limited.stats.rejected_429 == 1
