"""A tiny model directory for the local embedding backend: RANDOM WEIGHTS, NOT A MODEL.

`write_tiny_model` writes the layout `viewfinder.embed.local` reads (`image.onnx`,
`text.onnx`, `tokenizer.json`, `viewfinder-embed.json`) with graphs of a few kilobytes
built by `onnx.helper` from seeded random numbers. Its vectors mean nothing: it exists so
that the real loading, preprocessing, batching and ONNX Runtime code is tested (and
benchmarked, `benchmarks/`) without a download. Needs `onnx` (the `test` extra) and numpy.

- image tower: `pixel_values` [batch, 3, S, S] float32, flattened, times a random
  [3*S*S, dimensions] matrix: a linear function of every pixel, so a test can check the
  preprocessing exactly against its own numpy computation (`image_weights`).
- text tower: `input_ids` [batch, context_length] int64 → an embedding table (Gather) →
  mean over the tokens → times a random [width, dimensions] matrix.
- tokenizer: a whitespace-split WordLevel vocabulary of a few words, `[PAD]` = 0,
  `[UNK]` = 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

__all__ = ["TINY_VOCABULARY", "image_weights", "write_tiny_model"]

TINY_VOCABULARY: Final = (
    "[PAD]",
    "[UNK]",
    "a",
    "photo",
    "of",
    "the",
    "cat",
    "dog",
    "red",
    "blue",
    "car",
    "tree",
)
_TEXT_WIDTH: Final = 8
_OPSET: Final = 17
_IR_VERSION: Final = 8
"""ONNX IR 8 / opset 17: loaded by every onnxruntime the `embed-local` extra allows."""


def image_weights(dimensions: int, image_size: int, seed: int) -> Any:
    """The image tower's [3*S*S, dimensions] float32 matrix for this seed (numpy)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.standard_normal((3 * image_size * image_size, dimensions)).astype(np.float32)


def write_tiny_model(
    directory: str | Path,
    *,
    dimensions: int = 16,
    image_size: int = 8,
    context_length: int = 6,
    resize: str = "crop",
    resample: str = "bicubic",
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073),
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711),
    matryoshka: bool = True,
    seed: int = 0,
    image_output_rank: int = 2,
    model: str = "viewfinder-tiny-random",
) -> Path:
    """Write a tiny random-weight model directory and return its path.

    `image_output_rank=3` gives an image tower whose output is [batch, 1, dimensions], a
    broken graph for testing the backend's shape check.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    pixels = 3 * image_size * image_size

    image_nodes = [
        helper.make_node("Reshape", ["pixel_values", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "projection"], ["embeds"]),
    ]
    output_shape: list[str | int] = ["batch", dimensions]
    initializers = [
        numpy_helper.from_array(np.array([0, pixels], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(image_weights(dimensions, image_size, seed), "projection"),
    ]
    if image_output_rank == 3:
        initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"))
        image_nodes[-1] = helper.make_node("MatMul", ["flat", "projection"], ["flat_embeds"])
        image_nodes.append(helper.make_node("Unsqueeze", ["flat_embeds", "axis"], ["embeds"]))
        output_shape = ["batch", 1, dimensions]
    image_graph = helper.make_graph(
        image_nodes,
        "tiny_image_tower",
        [
            helper.make_tensor_value_info(
                "pixel_values", TensorProto.FLOAT, ["batch", 3, image_size, image_size]
            )
        ],
        [helper.make_tensor_value_info("embeds", TensorProto.FLOAT, output_shape)],
        initializer=initializers,
    )
    table = rng.standard_normal((len(TINY_VOCABULARY), _TEXT_WIDTH)).astype(np.float32)
    text_projection = rng.standard_normal((_TEXT_WIDTH, dimensions)).astype(np.float32)
    text_graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
            helper.make_node("ReduceMean", ["tokens"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "projection"], ["embeds"]),
        ],
        "tiny_text_tower",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", context_length])],
        [helper.make_tensor_value_info("embeds", TensorProto.FLOAT, ["batch", dimensions])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(text_projection, "projection"),
        ],
    )
    for name, graph in (("image.onnx", image_graph), ("text.onnx", text_graph)):
        proto = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", _OPSET)],
            ir_version=_IR_VERSION,
            producer_name="viewfinder.testing.tiny_embed (random weights)",
        )
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path / name))

    vocabulary = {word: index for index, word in enumerate(TINY_VOCABULARY)}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path / "tokenizer.json"))

    config = {
        "format": 1,
        "model": model,
        "image_size": image_size,
        "resize": resize,
        "resample": resample,
        "rescale": 1 / 255,
        "mean": list(mean),
        "std": list(std),
        "context_length": context_length,
        "pad_id": 0,
        "dimensions": dimensions,
        "matryoshka": matryoshka,
    }
    (path / "viewfinder-embed.json").write_text(json.dumps(config, indent=2) + "\n")
    return path
