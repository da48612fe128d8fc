"""The local embedding backend: SigLIP 2 / OpenCLIP towers in ONNX Runtime, in-process.

Install `pip install 'viewfinder[embed-local]'` (onnxruntime, tokenizers, numpy, Pillow;
no torch: see the comment on the extra in pyproject.toml). Choose it with
`vf.Embedder("local", model="/path/to/dir")`, `resolve_backend("local", model=...)`, or
`VIEWFINDER_EMBED_BACKEND=local` and `VIEWFINDER_EMBED_MODEL=/path/to/dir`.

The model directory (what the user exports or downloads once):

- `image.onnx`: the image tower. Input: float32 pixels [batch, 3, S, S] (NCHW, already
  preprocessed as the config says); first output: the image embedding [batch, dim].
- `text.onnx`: the text tower. Input: token ids [batch, context_length] (int64 or int32),
  plus `attention_mask` when the graph has such an input; first output [batch, dim].
  (Weights over 2 GB may sit beside each graph as ONNX external data, e.g.
  `image.onnx.data`; ONNX Runtime loads them from the same directory.)
- `tokenizer.json`: a Hugging Face `tokenizers` file (what `save_pretrained` writes for a
  fast tokenizer). Its own padding and truncation settings are replaced by the config's.
- `viewfinder-embed.json`, the preprocessing and the model's facts::

    {"format": 1, "model": "google/siglip2-base-patch16-224",
     "image_size": 224, "resize": "squash", "resample": "bilinear",
     "rescale": 0.00392156862745098, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
     "context_length": 64, "pad_id": 0, "lowercase": true,
     "dimensions": 768, "matryoshka": false}

  `resize`: `squash` (resize to S x S ignoring the aspect ratio: SigLIP / SigLIP 2) or
  `crop` (shorter side to S, the longer `int(S * long / short)`, then the centre S x S:
  torchvision's `Resize(S)` + `CenterCrop(S)`, as OpenCLIP and CLIP do). `resample`:
  `nearest`, `bilinear`, `bicubic`, `lanczos` or `box` (Pillow's filters, which the
  Hugging Face and OpenCLIP processors use on PIL images). Then pixels times `rescale`,
  minus `mean`, over `std`, per RGB channel. `lowercase`: the text is lowercased before
  tokenising (SigLIP 2 was trained on lowercased text). `dimensions`: the towers' output
  width; `matryoshka`: the model was trained so that leading values can be kept
  (`dimensions=` below the native width then truncates and re-normalises; otherwise only
  the native width is given). OpenCLIP ViT-B-32 is `"resize": "crop"`,
  `"resample": "bicubic"`, mean [0.48145466, 0.4578275, 0.40821073], std [0.26862954,
  0.26130258, 0.27577711], `"context_length": 77`, `"dimensions": 512`.

Producing it, where the user has torch (not needed, nor installed, here)::

    import json, torch
    from transformers import AutoModel, AutoTokenizer   # SigLIP 2 from the Hugging Face hub
    name, out = "google/siglip2-base-patch16-224", "siglip2-b16"
    model = AutoModel.from_pretrained(name).eval()
    AutoTokenizer.from_pretrained(name).save_pretrained(out)        # writes tokenizer.json

    class Image(torch.nn.Module):
        def forward(self, pixel_values):
            return model.get_image_features(pixel_values=pixel_values)

    class Text(torch.nn.Module):
        def forward(self, input_ids):
            return model.get_text_features(input_ids=input_ids)

    axes = {"pixel_values": {0: "batch"}, "input_ids": {0: "batch"}, "embeds": {0: "batch"}}
    torch.onnx.export(Image(), torch.zeros(1, 3, 224, 224), f"{out}/image.onnx",
                      input_names=["pixel_values"], output_names=["embeds"],
                      dynamic_axes=axes, opset_version=17)
    torch.onnx.export(Text(), torch.zeros(1, 64, dtype=torch.long), f"{out}/text.onnx",
                      input_names=["input_ids"], output_names=["embeds"],
                      dynamic_axes=axes, opset_version=17)
    # then write viewfinder-embed.json as above (the processor's preprocessor_config.json
    # has image_size, resample, rescale, mean and std). Where get_*_features returns an
    # output object rather than a tensor, return its `.pooler_output`.

For OpenCLIP, `model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32",
pretrained="laion2b_s34b_b79k")`; export `model.encode_image` and `model.encode_text`
(context 77) the same way; the tokenizer file is `openai/clip-vit-base-patch32`'s
`tokenizer.json` (`AutoTokenizer.from_pretrained(...).save_pretrained(out)`); `preprocess`
shows the resize (crop), filter (bicubic), mean and std.

A Hugging Face hub repo id (`owner/name`) instead of a path works only when a repo in this
layout is already in the local Hugging Face cache and `huggingface_hub` is installed
(nothing is downloaded at run time); a plain local directory path is enough and is the
documented way.

Vectors are the towers' raw outputs: the `Embedder` L2-normalises them (and truncates
Matryoshka models) exactly as for the HTTP backends, and keys its cache by backend `local`,
the config's model name, and `weights_digest` (sha256 of the directory's files), so changed
weights never hit old cache entries. One ONNX Runtime session per tower is loaded on first
use and reused (`InferenceSession.run` is thread-safe).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from viewfinder.embed.backends import Dimensions, Kind, Parsed, model_dimensions
from viewfinder.errors import ConfigurationError, InvalidOptionError, import_failure

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "CONFIG_FILE",
    "EXTRA_HINT",
    "IMAGE_FILE",
    "TEXT_FILE",
    "TOKENIZER_FILE",
    "LocalBackend",
    "LocalModelConfig",
    "preprocess",
]

CONFIG_FILE: Final = "viewfinder-embed.json"
IMAGE_FILE: Final = "image.onnx"
TEXT_FILE: Final = "text.onnx"
TOKENIZER_FILE: Final = "tokenizer.json"
EXTRA_HINT: Final = "pip install 'viewfinder[embed-local]'"
DEFAULT_IMAGE_BATCH: Final = 16
DEFAULT_TEXT_BATCH: Final = 64
_RESAMPLE: Final = ("nearest", "bilinear", "bicubic", "lanczos", "box")
_REPO_ID: Final = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class LocalModelConfig:
    """`viewfinder-embed.json`: how to preprocess, and what the towers give."""

    model: str
    image_size: int
    resize: Literal["crop", "squash"]
    resample: str
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int
    pad_id: int
    dimensions: int
    matryoshka: bool = False
    lowercase: bool = False

    @classmethod
    def read(cls, path: Path) -> LocalModelConfig:
        """Read and check the file.

        Raises:
            ConfigurationError: Not JSON, a missing or wrong field.
        """
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            if raw.get("format", 1) != 1:
                raise ValueError(f"format {raw.get('format')!r} is not 1")
            config = cls(
                model=_str(raw, "model"),
                image_size=_positive(raw, "image_size"),
                resize="crop" if _choice(raw, "resize", ("crop", "squash")) == "crop" else "squash",
                resample=_choice(raw, "resample", _RESAMPLE),
                rescale=float(raw.get("rescale", 1 / 255)),
                mean=_triple(raw, "mean"),
                std=_triple(raw, "std"),
                context_length=_positive(raw, "context_length"),
                pad_id=int(raw.get("pad_id", 0)),
                dimensions=_positive(raw, "dimensions"),
                matryoshka=bool(raw.get("matryoshka", False)),
                lowercase=bool(raw.get("lowercase", False)),
            )
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"{path}: not a usable {CONFIG_FILE}: {exc}") from exc
        if any(s <= 0 for s in config.std):
            raise ConfigurationError(f"{path}: std values must be positive")
        return config


def _str(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name!r} must be a non-empty string")
    return value


def _positive(raw: dict[str, Any], name: str) -> int:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name!r} must be a positive integer, got {value!r}")
    return value


def _choice(raw: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = raw.get(name)
    if value not in choices:
        raise ValueError(f"{name!r} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _triple(raw: dict[str, Any], name: str) -> tuple[float, float, float]:
    value = raw.get(name)
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"{name!r} must be a list of 3 numbers (R, G, B)")
    r, g, b = (float(v) for v in value)
    return (r, g, b)


def _require_extra() -> None:
    """Import the extra's packages once, so a missing one is named at construction."""
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            "the local embedding backend needs onnxruntime, tokenizers and numpy, and "
            f"{exc.name or 'one'} is {import_failure('embed-local', exc)}"
        ) from exc


def preprocess(image: Image.Image, config: LocalModelConfig) -> Any:
    """An RGB image as the image tower's input: float32 [3, S, S] (numpy), exactly as
    the config says: resized (crop or squash), rescaled, normalised per channel."""
    import numpy as np
    from PIL import Image

    resample = Image.Resampling[config.resample.upper()]
    size = config.image_size
    if config.resize == "squash":
        image = image.resize((size, size), resample)
    else:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        other = int(size * long / short)
        new = (size, other) if width <= height else (other, size)
        if new != image.size:
            image = image.resize(new, resample)
        left = round((new[0] - size) / 2.0)  # torchvision CenterCrop: round half to even
        top = round((new[1] - size) / 2.0)
        image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32) * np.float32(config.rescale)
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1)


def resolve_model_directory(spec: str | Path) -> Path:
    """A local directory, or a hub repo id already in the local Hugging Face cache.

    Raises:
        ConfigurationError: Neither.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    text = str(spec)
    if not _REPO_ID.match(text) or path.exists():
        raise ConfigurationError(
            f"{text}: not a model directory (expected {IMAGE_FILE}, {TEXT_FILE}, "
            f"{TOKENIZER_FILE} and {CONFIG_FILE}; see viewfinder.embed.local)"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ConfigurationError(
            f"{text}: not a directory, and huggingface_hub is not installed to look it up "
            "in the Hugging Face cache: pass the model directory's path"
        ) from exc
    try:
        return Path(snapshot_download(text, local_files_only=True))
    except Exception as exc:  # huggingface_hub's errors vary by version
        raise ConfigurationError(
            f"{text}: not a directory, nor in the local Hugging Face cache (nothing is "
            f"downloaded at run time: download it once, or pass a directory): {exc}"
        ) from exc


class LocalBackend:
    """SigLIP 2 / OpenCLIP image and text towers run in-process by ONNX Runtime.

    Args:
        directory: The model directory (see the module docstring), or a hub repo id
            already in the local Hugging Face cache.
        batch_size: Most images per run of the image tower (texts: `text_batch_size`).
        text_batch_size: Most texts per run of the text tower.
        threads: ONNX Runtime intra-op threads per run; None: its default (the cores).

    Raises:
        ConfigurationError: The extra is not installed, a file is missing, or the
            config is not usable.
        InvalidOptionError: A batch size or thread count below 1.
    """

    name: Final = "local"
    base_url: Final = ""
    """No URL: computed in-process."""
    max_image_bytes: Final = None

    def __init__(
        self,
        directory: str | Path,
        *,
        batch_size: int = DEFAULT_IMAGE_BATCH,
        text_batch_size: int = DEFAULT_TEXT_BATCH,
        threads: int | None = None,
    ) -> None:
        _require_extra()
        for label, value in (("batch_size", batch_size), ("text_batch_size", text_batch_size)):
            if value < 1:
                raise InvalidOptionError(f"{label} must be >= 1, got {value}")
        if threads is not None and threads < 1:
            raise InvalidOptionError(f"threads must be >= 1, got {threads}")
        self.directory = resolve_model_directory(directory)
        missing = [
            name
            for name in (CONFIG_FILE, IMAGE_FILE, TEXT_FILE, TOKENIZER_FILE)
            if not (self.directory / name).is_file()
        ]
        if missing:
            raise ConfigurationError(
                f"{self.directory}: missing {', '.join(missing)} (a local embedding model "
                "directory holds image.onnx, text.onnx, tokenizer.json and "
                "viewfinder-embed.json; see viewfinder.embed.local)"
            )
        self.config = LocalModelConfig.read(self.directory / CONFIG_FILE)
        self.batch_size = batch_size
        self.text_batch_size = text_batch_size
        self.threads = threads
        self._lock = threading.Lock()
        self._sessions: dict[Kind, Any] = {}
        self._tokenizer: Any = None
        self._digest: str | None = None

    @property
    def model(self) -> str:
        """The config's model name."""
        return self.config.model

    @property
    def weights_digest(self) -> str:
        """sha256 over the directory's graphs (and their external data), tokenizer and
        config, computed once (about a second per GB): part of the cache key."""
        with self._lock:
            if self._digest is None:
                digest = hashlib.sha256()
                files = sorted(
                    p
                    for p in self.directory.iterdir()
                    if p.is_file()
                    and (
                        p.name.startswith((IMAGE_FILE, TEXT_FILE))
                        or p.name in (TOKENIZER_FILE, CONFIG_FILE)
                    )
                )
                for path in files:
                    digest.update(path.name.encode() + b"\0")
                    with path.open("rb") as stream:
                        while chunk := stream.read(1 << 20):
                            digest.update(chunk)
                self._digest = digest.hexdigest()
            return self._digest

    def max_batch(self, kind: Kind) -> int:
        """`batch_size` images or `text_batch_size` texts per run."""
        return self.batch_size if kind == "image" else self.text_batch_size

    def dimensions(self, requested: int | None) -> Dimensions:
        """The config's width; a Matryoshka model truncates (1,024 by default if wider)."""
        return model_dimensions(
            self.model, self.config.dimensions, self.config.matryoshka, requested
        )

    def headers(self) -> dict[str, str]:
        """None: nothing is sent."""
        return {}

    def request(
        self, kind: Kind, items: Sequence[str], dims: Dimensions, input_type: str
    ) -> tuple[str, dict[str, Any]]:
        """Not used: the `Embedder` calls `compute` for an in-process backend."""
        raise NotImplementedError("the local backend computes in-process: use compute()")

    def parse(self, kind: Kind, payload: Any, count: int) -> Parsed:
        """Not used: the `Embedder` calls `compute` for an in-process backend."""
        raise NotImplementedError("the local backend computes in-process: use compute()")

    def compute(self, kind: Kind, inputs: Sequence[Image.Image | str]) -> Parsed:
        """Run one batch through a tower: RGB images or texts in, raw vectors out.

        Raises:
            ConfigurationError: The graph cannot be loaded or run, or its output is not
                [batch, dimensions].
        """
        import numpy as np

        if kind == "image":
            feeds = self._image_feeds([i for i in inputs if not isinstance(i, str)])
        else:
            feeds = self._text_feeds([t for t in inputs if isinstance(t, str)])
        session = self._session(kind)
        path = self.directory / (IMAGE_FILE if kind == "image" else TEXT_FILE)
        try:
            (output,) = session.run([session.get_outputs()[0].name], feeds)
        except Exception as exc:  # onnxruntime's errors are not one public type
            raise ConfigurationError(f"{path}: the graph failed to run: {exc}") from exc
        shape = tuple(np.shape(output))
        if shape != (len(inputs), self.config.dimensions):
            raise ConfigurationError(
                f"{path}: the output is {list(shape)}, not [batch, dimensions] = "
                f"[{len(inputs)}, {self.config.dimensions}]"
            )
        vectors: list[list[float]] = np.asarray(output, dtype=np.float32).tolist()
        return Parsed(vectors=vectors, input_tokens=0, images=len(inputs) if kind == "image" else 0)

    def _image_feeds(self, images: Sequence[Image.Image]) -> dict[str, Any]:
        import numpy as np

        session = self._session("image")
        batch = np.stack([preprocess(image, self.config) for image in images])
        return {session.get_inputs()[0].name: batch}

    def _text_feeds(self, texts: Sequence[str]) -> dict[str, Any]:
        import numpy as np

        session = self._session("text")
        tokenizer = self._text_tokenizer()
        if self.config.lowercase:
            texts = [text.lower() for text in texts]
        encodings = tokenizer.encode_batch(list(texts))
        inputs = session.get_inputs()
        dtype = np.int32 if inputs[0].type == "tensor(int32)" else np.int64
        feeds = {inputs[0].name: np.array([e.ids for e in encodings], dtype=dtype)}
        for extra in inputs[1:]:
            if extra.name == "attention_mask":
                feeds[extra.name] = np.array([e.attention_mask for e in encodings], dtype=dtype)
        return feeds

    def _text_tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                from tokenizers import Tokenizer

                path = self.directory / TOKENIZER_FILE
                try:
                    tokenizer = Tokenizer.from_file(str(path))
                except Exception as exc:  # tokenizers raises a bare Exception
                    raise ConfigurationError(f"{path}: not a tokenizers file: {exc}") from exc
                length = self.config.context_length
                tokenizer.enable_truncation(max_length=length)
                tokenizer.enable_padding(length=length, pad_id=self.config.pad_id)
                self._tokenizer = tokenizer
            return self._tokenizer

    def _session(self, kind: Kind) -> Any:
        """The tower's ONNX Runtime session, loaded and checked on first use."""
        with self._lock:
            session = self._sessions.get(kind)
            if session is None:
                session = self._load(kind)
                self._sessions[kind] = session
            return session

    def _load(self, kind: Kind) -> Any:
        import onnxruntime

        path = self.directory / (IMAGE_FILE if kind == "image" else TEXT_FILE)
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        try:
            session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's errors are not one public type
            raise ConfigurationError(f"{path}: not a loadable ONNX graph: {exc}") from exc
        output = session.get_outputs()[0]
        width = output.shape[-1] if output.shape else None
        if len(output.shape) != 2 or (isinstance(width, int) and width != self.config.dimensions):
            raise ConfigurationError(
                f"{path}: its output {output.name!r} is {output.shape}, not [batch, "
                f"{self.config.dimensions}] (the config's dimensions)"
            )
        expected = 4 if kind == "image" else 2
        if len(session.get_inputs()[0].shape) != expected:
            raise ConfigurationError(
                f"{path}: its first input is {session.get_inputs()[0].shape}, not "
                + ("[batch, 3, size, size]" if kind == "image" else "[batch, context_length]")
            )
        return session
