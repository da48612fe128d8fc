"""The local embedding backend (`viewfinder.embed.local`) on a tiny RANDOM-WEIGHT model.

`viewfinder.testing.tiny_embed` builds the model with `onnx.helper`: a few kilobytes of
seeded random numbers, NOT a model; its vectors mean nothing. What is tested is the real
code: the directory's loading and checks, the preprocessing (against an independent
numpy computation), tokenisation, ONNX Runtime batches, and the `Embedder`'s
normalisation, Matryoshka truncation, cache keys, usage and async path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import math
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import viewfinder as vf
from viewfinder.embed import resolve_backend
from viewfinder.embed.local import (
    EXTRA_HINT,
    LocalBackend,
    LocalModelConfig,
    preprocess,
    resolve_model_directory,
)
from viewfinder.engine.cache import ResponseCache
from viewfinder.errors import ConfigurationError, InvalidOptionError
from viewfinder.testing.tiny_embed import TINY_VOCABULARY, image_weights, write_tiny_model

SIZE = 8
DIMS = 16


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (random weights): crop resize with the box filter, so a block-
    constant image resizes to exactly its block values and numpy can check it."""
    return write_tiny_model(
        tmp_path_factory.mktemp("tiny") / "model", image_size=SIZE, resample="box", seed=3
    )


@pytest.fixture(scope="session")
def backend(tiny: Path) -> LocalBackend:
    return LocalBackend(tiny, batch_size=2, text_batch_size=2)


def _random(width: int, height: int, seed: int) -> np.ndarray:
    """A random uint8 RGB image (height x width x 3)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _blocky(rows: int, cols: int, tall: int, wide: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random rows x cols image, and it enlarged into tall x wide constant blocks: the
    box filter shrinks the second back to exactly the first."""
    small = _random(cols, rows, seed)
    return small, small.repeat(tall, axis=0).repeat(wide, axis=1)


def _normalised(pixels: np.ndarray, config: LocalModelConfig) -> np.ndarray:
    scaled = pixels.astype(np.float64) / 255.0
    return ((scaled - np.array(config.mean)) / np.array(config.std)).transpose(2, 0, 1)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_crop_preprocessing_and_vector_match_an_independent_numpy_computation(
    backend: LocalBackend,
) -> None:
    # 112 x 168 (w x h): shorter side to 8 → 8 x 12, each pixel one 14 x 14 block's
    # value; then the centre 8 x 8: rows 2 to 9.
    small, pixels = _blocky(12, 8, 14, 14, seed=1)
    expected = _normalised(small[2:10], backend.config)

    got = preprocess(Image.fromarray(pixels), backend.config)
    assert got.dtype == np.float32 and got.shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(got, expected, atol=1e-5)

    raw = expected.reshape(-1) @ image_weights(DIMS, SIZE, seed=3).astype(np.float64)
    (embedding,) = vf.Embedder(backend).embed_images([Image.fromarray(pixels)])
    np.testing.assert_allclose(embedding.vector, raw / np.linalg.norm(raw), atol=1e-5)


def test_squash_preprocessing_matches_numpy(backend: LocalBackend) -> None:
    config = dataclasses.replace(backend.config, resize="squash")
    small, pixels = _blocky(8, 8, 4, 2, seed=2)  # 16 x 32 (w x h) squashed to 8 x 8
    got = preprocess(Image.fromarray(pixels), config)
    np.testing.assert_allclose(got, _normalised(small, config), atol=1e-5)


def test_vectors_are_unit_length_deterministic_and_counted(backend: LocalBackend) -> None:
    embedder = vf.Embedder(backend)
    images = [_png(_random(64, 96, seed=s)) for s in range(3)]
    first = embedder.embed_images(images)
    assert [e.dimensions for e in first] == [DIMS] * 3
    assert all(math.isclose(math.fsum(v * v for v in e.vector), 1.0, rel_tol=1e-6) for e in first)
    assert embedder.embed_images(images) == first
    assert first[0].model == "viewfinder-tiny-random"
    # Two batches of at most 2: images counted, no tokens billed.
    assert sum((e.usage for e in first), vf.embed.EmbeddingUsage()) == vf.embed.EmbeddingUsage(
        input_tokens=0, images=3, requests=2
    )
    texts = embedder.embed_texts(["a photo of the cat", "a red car"])
    assert [len(e.vector) for e in texts] == [DIMS, DIMS]
    assert texts[0].usage.input_tokens == 0 and texts[0].usage.requests == 1
    assert texts[0].vector != texts[1].vector


def test_batches_equal_one_by_one(tiny: Path, backend: LocalBackend) -> None:
    images = [_png(_random(64, 64, seed=s)) for s in range(5)]
    texts = ["the cat", "a blue car", "tree", "a photo of a dog", "red"]
    single = vf.Embedder(LocalBackend(tiny, batch_size=1, text_batch_size=1))
    batched = vf.Embedder(backend)
    for one, many in (
        (single.embed_images(images), batched.embed_images(images)),
        (single.embed_texts(texts), batched.embed_texts(texts)),
    ):
        # Equal up to float32 rounding: a batch may take another matrix kernel.
        np.testing.assert_allclose([e.vector for e in one], [e.vector for e in many], atol=1e-6)


def test_text_is_tokenised_padded_and_truncated_to_the_context(backend: LocalBackend) -> None:
    feeds = backend._text_feeds(["the cat", "a photo of the red blue car tree"])
    ids = TINY_VOCABULARY.index
    assert feeds["input_ids"].dtype == np.int64
    assert feeds["input_ids"].tolist() == [
        [ids("the"), ids("cat"), 0, 0, 0, 0],
        [ids(w) for w in ("a", "photo", "of", "the", "red", "blue")],
    ]


def test_lowercase_config(tmp_path: Path, tiny: Path) -> None:
    directory = shutil.copytree(tiny, tmp_path / "model")
    _edit_config(directory, lowercase=True)
    lower = LocalBackend(directory)
    assert lower._text_feeds(["The CAT"])["input_ids"][0, :2].tolist() == [5, 6]
    assert LocalBackend(tiny)._text_feeds(["The CAT"])["input_ids"][0, :2].tolist() == [1, 1]


def test_matryoshka_truncation_and_refusal(tmp_path: Path, tiny: Path) -> None:
    image = _png(_random(64, 64, seed=9))
    (full,) = vf.Embedder("local", model=str(tiny)).embed_images([image])
    (short,) = vf.Embedder("local", model=str(tiny), dimensions=4).embed_images([image])
    head = np.array(full.vector[:4])
    np.testing.assert_allclose(short.vector, head / np.linalg.norm(head), atol=1e-6)
    assert short.dimensions == 4

    directory = shutil.copytree(tiny, tmp_path / "model")
    _edit_config(directory, matryoshka=False)
    with pytest.raises(InvalidOptionError, match="not declared a Matryoshka"):
        vf.Embedder("local", model=str(directory), dimensions=4)
    assert vf.Embedder("local", model=str(directory)).dims.expect == DIMS


def test_cache_key_holds_the_weights_digest(tmp_path: Path, tiny: Path) -> None:
    cache = ResponseCache(tmp_path / "cache")
    image = _png(_random(64, 64, seed=4))
    (first,) = vf.Embedder("local", model=str(tiny), cache=cache).embed_images([image])
    (again,) = vf.Embedder("local", model=str(tiny), cache=cache).embed_images([image])
    assert again.usage.cache_hit and again.vector == first.vector

    # Same model name, other weights: a miss, and another vector.
    other = write_tiny_model(tmp_path / "other", image_size=SIZE, resample="box", seed=4)
    retrained = vf.Embedder("local", model=str(other), cache=cache)
    (changed,) = retrained.embed_images([image])
    assert not changed.usage.cache_hit and changed.vector != first.vector
    assert retrained.backend.model == first.model


def test_async_path_matches_sync(backend: LocalBackend) -> None:
    embedder = vf.Embedder(backend)
    images = [_png(_random(64, 64, seed=s)) for s in range(3)]
    texts = ["the dog", "a tree", "blue"]

    async def both() -> tuple[list[vf.Embedding], list[vf.Embedding]]:
        return await embedder.aembed_images(images), await embedder.aembed_texts(texts)

    got_images, got_texts = asyncio.run(both())
    assert got_images == embedder.embed_images(images)
    assert got_texts == embedder.embed_texts(texts)


def test_threads_share_one_session_per_tower(tiny: Path) -> None:
    shared = LocalBackend(tiny, text_batch_size=2)
    texts = ["the cat", "a red car", "blue tree"]
    alone = vf.Embedder(LocalBackend(tiny, text_batch_size=2)).embed_texts(texts)
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: vf.Embedder(shared).embed_texts(texts), range(8)))
    assert all(run == alone for run in runs)
    assert list(shared._sessions) == ["text"]  # loaded once, on first use


def test_path_bytes_and_pil_give_the_same_vector(tmp_path: Path, backend: LocalBackend) -> None:
    pixels = _random(80, 60, seed=5)
    path = tmp_path / "image.png"
    path.write_bytes(_png(pixels))
    vectors = vf.Embedder(backend).embed_images([path, _png(pixels), Image.fromarray(pixels)])
    assert vectors[0].vector == vectors[1].vector == vectors[2].vector


def test_configuration_by_name_and_environment(tiny: Path) -> None:
    env = {"VIEWFINDER_EMBED_BACKEND": "local", "VIEWFINDER_EMBED_MODEL": str(tiny)}
    assert isinstance(resolve_backend(env=env), LocalBackend)
    assert resolve_backend("local", model=str(tiny)).name == "local"
    with pytest.raises(ConfigurationError, match="VIEWFINDER_EMBED_MODEL"):
        resolve_backend("local", env={})


@pytest.mark.parametrize(
    ("remove", "config", "message"),
    [
        ("text.onnx", None, "missing text.onnx"),
        ("tokenizer.json", None, "missing tokenizer.json"),
        (None, "{not json", "not a usable viewfinder-embed.json"),
        (None, json.dumps({"model": "m", "image_size": 8}), "'resize' must be one of"),
    ],
)
def test_bad_directory_is_a_configuration_error(
    tmp_path: Path, tiny: Path, remove: str | None, config: str | None, message: str
) -> None:
    directory = shutil.copytree(tiny, tmp_path / "model")
    if remove:
        (directory / remove).unlink()
    if config:
        (directory / "viewfinder-embed.json").write_text(config)
    with pytest.raises(ConfigurationError, match=message):
        LocalBackend(directory)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a model directory"):
        LocalBackend(tmp_path / "nowhere" / "model")


def test_wrong_output_shape_is_a_configuration_error(tmp_path: Path) -> None:
    directory = write_tiny_model(tmp_path / "bad", image_output_rank=3)
    embedder = vf.Embedder("local", model=str(directory))
    with pytest.raises(ConfigurationError, match=r"not \[batch, 16\]"):
        embedder.embed_images([_png(_random(64, 64, seed=0))])
    assert len(embedder.embed_texts(["the cat"])[0].vector) == DIMS  # the text tower is fine


def test_garbage_graph_is_a_configuration_error(tmp_path: Path, tiny: Path) -> None:
    directory = shutil.copytree(tiny, tmp_path / "model")
    (directory / "image.onnx").write_bytes(b"not a graph")
    with pytest.raises(ConfigurationError, match="not a loadable ONNX graph"):
        vf.Embedder("local", model=str(directory)).embed_images([_png(_random(64, 64, seed=0))])


def test_missing_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tiny: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigurationError, match="onnxruntime") as raised:
        resolve_backend("local", model=str(tiny))
    assert EXTRA_HINT in str(raised.value)


def _edit_config(directory: Path, **changes: Any) -> None:
    path = directory / "viewfinder-embed.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_hub_repo_id_only_from_the_local_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ConfigurationError, match=r"nothing is downloaded|huggingface_hub is not installed"
    ):
        resolve_model_directory("viewfinder-tests/no-such-model")
