"""The HTTP embedding backends replayed from cassettes, with no server running.

The cassettes in `cassettes/test_embed_cassettes/` were recorded against the simulator's
embeddings routes on 127.0.0.1 (`viewfinder.testing.simulator`), NOT against Cohere, an
Azure AI Foundry deployment, Infinity or vLLM: every vector in them is derived from the
SHA-256 of the input, not computed by a model (see `cassettes/test_embed_cassettes/README.md`).
A replay proves viewfinder's side of each conversation: the path, the exact request body
(model, `input_type`, `embedding_types`, `output_dimension`, `modality`, chat `messages`,
the image's digest), how many requests a batch makes, and that the answers are read and
normalised. Requests match on method, path and canonical body (`viewfinder.testing`).

Re-record (starts one simulator for the module):

    pytest tests/test_embed_cassettes.py --record-mode=rewrite
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import viewfinder as vf
from viewfinder.embed import CohereBackend, EmbeddingBackend, OpenAICompatibleBackend
from viewfinder.engine.retry import RetryPolicy
from viewfinder.testing.simulator import Simulator, fake_vector

pytestmark = pytest.mark.vcr

CASSETTES = Path(__file__).parent / "cassettes" / "test_embed_cassettes"
TEST_KEY = "vf-embed-cassette-test-key-0123456789"
"""The key the tests send: it must never reach a cassette."""
ONE_ATTEMPT = RetryPolicy(max_attempts=1)
"""On replay a retry could only hide a cassette miss."""
UNREACHABLE = "http://127.0.0.1:9"
"""The endpoint used on replay: nothing listens there, so only the cassette can answer."""


@pytest.fixture(scope="module")
def recording(request: pytest.FixtureRequest) -> Iterator[Simulator | None]:
    """The simulator when recording (one for the module); None on replay: no server."""
    if request.config.getoption("--record-mode") in (None, "none"):
        yield None
        return
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def root(recording: Simulator | None) -> str:
    """The server's root URL (Cohere's base URL; `/v1` is appended for OpenAI's)."""
    if recording is None:
        return UNREACHABLE
    recording.reset()
    return recording.endpoint.rstrip("/")


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


RED, GREEN, BLUE = _png((255, 0, 0)), _png((0, 255, 0)), _png((0, 0, 255))


def _embedder(backend: EmbeddingBackend, **options: Any) -> vf.Embedder:
    return vf.Embedder(backend, retry=ONE_ATTEMPT, **options)


def _unit(vector: tuple[float, ...]) -> bool:
    return math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)


def _normalised(text: str, dimensions: int) -> list[float]:
    raw = fake_vector(text, dimensions)
    norm = math.sqrt(math.fsum(v * v for v in raw))
    return [v / norm for v in raw]


def _check_text(result: vf.Embedding, text: str, dimensions: int) -> None:
    """The replayed answer is the simulator's vector for `text`, normalised here."""
    assert result.dimensions == dimensions == len(result.vector) and _unit(result.vector)
    assert result.vector[:4] == pytest.approx(_normalised(text, dimensions)[:4], rel=1e-5)


def test_cohere_v4_images_and_a_query(root: str, vcr: Any, recording: Simulator | None) -> None:
    backend = CohereBackend(model="embed-v4.0", api_key=TEST_KEY, base_url=root)
    with _embedder(backend, dimensions=512) as embedder:
        images = embedder.embed_images([RED, GREEN, BLUE])
        (query,) = embedder.embed_texts(["a red square"])
    assert vcr.play_count + (len(recording.embed_requests) if recording else 0) == 2
    assert all(r.dimensions == 512 and _unit(r.vector) for r in images)
    assert images[0].usage.requests == 1 and images[0].usage.images == 3
    _check_text(query, "a red square", 512)


def test_cohere_v3_one_image_per_call(root: str, vcr: Any, recording: Simulator | None) -> None:
    backend = CohereBackend(model="embed-english-v3.0", api_key=TEST_KEY, base_url=root)
    with _embedder(backend) as embedder:
        images = embedder.embed_images([RED, GREEN])
        (document,) = embedder.embed_texts(["a green square"], input_type="search_document")
    assert vcr.play_count + (len(recording.embed_requests) if recording else 0) == 3
    assert [r.usage.requests for r in images] == [1, 1]
    assert all(r.dimensions == 1024 and _unit(r.vector) for r in images)
    _check_text(document, "a green square", 1024)


def test_cohere_v4_through_azure_ai_foundry(
    root: str, vcr: Any, recording: Simulator | None
) -> None:
    """An Azure AI Foundry deployment: the same `/v2/embed` route, the key as a bearer token.

    The header itself never reaches the cassette (secret headers are dropped), so it is
    checked on the simulator while recording and on the backend always.
    """
    backend = CohereBackend(model="embed-v4.0", api_key=TEST_KEY, base_url=root)
    assert backend.headers() == {"authorization": f"Bearer {TEST_KEY}"}
    with _embedder(backend) as embedder:
        (image,) = embedder.embed_images([BLUE])
    assert image.dimensions == 1024 and _unit(image.vector)
    if recording is not None:
        ((path, _, headers),) = recording.embed_requests
        assert path == "/v2/embed" and headers["authorization"] == f"Bearer {TEST_KEY}"
        assert "api-key" not in headers
    else:
        assert vcr.play_count == 1


def test_infinity_images_and_texts(root: str, vcr: Any, recording: Simulator | None) -> None:
    backend = OpenAICompatibleBackend(
        model="google/siglip2-base-patch16-224",
        base_url=root + "/v1",
        flavor="infinity",
        api_key=TEST_KEY,
        native_dimensions=768,
    )
    if recording is not None:
        recording.embed_dimensions = 768
    with _embedder(backend, dimensions=768) as embedder:
        images = embedder.embed_images([RED, GREEN])
        (text,) = embedder.embed_texts(["a red square"])
    assert vcr.play_count + (len(recording.embed_requests) if recording else 0) == 2
    assert images[0].usage.requests == 1 and all(_unit(r.vector) for r in images)
    _check_text(text, "a red square", 768)


def test_vllm_one_chat_message_per_image(root: str, vcr: Any, recording: Simulator | None) -> None:
    backend = OpenAICompatibleBackend(
        model="TIGER-Lab/VLM2Vec-Full", base_url=root + "/v1", flavor="vllm", api_key=TEST_KEY
    )
    with _embedder(backend) as embedder:
        images = embedder.embed_images([RED, GREEN])
        (text,) = embedder.embed_texts(["a green square"])
    assert vcr.play_count + (len(recording.embed_requests) if recording else 0) == 3
    assert [r.usage.requests for r in images] == [1, 1]
    _check_text(text, "a green square", 1024)


def test_no_embeddings_cassette_holds_the_key_or_an_image() -> None:
    """The test key is filtered out, and images are kept as digests, not base64."""
    files = sorted(CASSETTES.glob("*.yaml"))
    assert len(files) == 5
    for file in files:
        text = file.read_text(encoding="utf-8")
        assert TEST_KEY not in text, file
        assert ";base64," not in text, file
        assert "data:image/jpeg;sha256=" in text, file
