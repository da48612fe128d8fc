"""Analyse many images through the OpenAI Batch API: half the price, answers within 24 h.

The steps, each resumable from the state file (`<work_dir>/state.json`):

1. **write**: one JSONL line per image, `{"custom_id", "method": "POST", "url", "body"}`,
   where `body` is exactly the chat-completions body the online path sends
   (`Engine.request_body`: the analyzer's mode, strict schema and cache key), streamed
   into shards of at most `max_requests_per_file` lines and `max_bytes_per_file` bytes;
2. **submit**: each shard through the Files API (`purpose="batch"`) and the Batches API
   (`completion_window="24h"`), recording the file and batch ids in the state file
   before anything waits on them;
3. **wait**: poll every batch until it is `completed`, `failed`, `expired` or `cancelled`,
   within a total timeout;
4. **download** the output and error files next to the state file;
5. **results**: one `viewfinder.batch.records.BatchItem` per input image, in input
   order, the same record as online. An answer goes through the same checks as online
   (refusal, content filter, truncation, then the mode's response parser and the
   analyzer's `finish()`), so it becomes the same result type with the same pixel boxes.
   A batch cannot re-ask: an invalid answer is an `InvalidAnswerError` result, which
   `rerun="online"` (re-asks allowed) or `rerun="batch"` (a follow-up batch) can fix.

Resumption never pays twice: a shard with a batch id is never uploaded or submitted again,
and a shard whose file was uploaded but whose batch id was not recorded (the process died
between `batches.create` and the state write) is first looked up among the account's
batches by its input file id.

One process at a time per work directory: every step, and `run` from start to the last
item, holds an OS lock on `state.json.lock` (`viewfinder.batch.locks.WriterLock`, dropped by
the kernel however the process ends). A second process on the same work directory gets
a `BatchLockedError` naming the first before it sends anything, and the state is read
again whenever the lock is taken, so a later process resumes where another one stopped.

```python
import viewfinder as vf
from viewfinder.batch.provider_api import run_batch

analyzer = vf.ImageAnalyzer(model="gpt-4.1-mini")
for item in run_batch(analyzer, paths, work_dir="runs/2025-06", timeout=26 * 3600,
                      features=["caption", "tags"], rerun="online"):
    print(item.source, item.result.caption if item.result else item.error)
```
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any, Concatenate, Literal, ParamSpec, TypeAlias, TypedDict, TypeVar, cast

import httpx2
import openai
from openai.types import Batch
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from viewfinder.analyzers.custom import Analyzer
from viewfinder.analyzers.image_analysis import FeatureOptions, ImageAnalyzer
from viewfinder.batch.locks import WriterLock
from viewfinder.batch.records import (
    BatchInput,
    BatchInputLike,
    BatchItem,
    BatchOutcome,
    batch_item,
    split_input,
)
from viewfinder.build.plan import CallPlan
from viewfinder.cost.pricing import cost_of
from viewfinder.engine.engine import (
    PARSE_ERRORS,
    Completed,
    Request,
    Tally,
    check_completion,
    parse_completion,
    raw_answer,
    request_body,
)
from viewfinder.engine.providers import Provider, ProviderKind
from viewfinder.engine.retry import sync_retrying, to_viewfinder_error
from viewfinder.errors import (
    BatchFailedError,
    BatchTimeoutError,
    ConfigurationError,
    ContentFilterError,
    InvalidAnswerError,
    InvalidOptionError,
    ProviderError,
    UserError,
    ViewfinderError,
)
from viewfinder.prepare import PreparedImage
from viewfinder.prepare.load import ImageInput, LoadedImage
from viewfinder.prepare.redact import safe_url
from viewfinder.schemas.result import AnalysisRun, ImageAnalysisResult, Usage

__all__ = [
    "AZURE_BATCH_URL",
    "MAX_BYTES_PER_FILE",
    "MAX_REQUESTS_PER_FILE",
    "OPENAI_BATCH_URL",
    "RERUN_ERRORS",
    "BatchJob",
    "BatchResult",
    "BatchState",
    "ShardState",
    "is_rerunnable",
    "request_body",
    "run_batch",
]

logger = logging.getLogger("viewfinder")

MAX_REQUESTS_PER_FILE = 50_000
"""OpenAI's cap on requests in one batch input file."""
MAX_BYTES_PER_FILE = 200_000_000
"""OpenAI's cap on a batch input file (200 MB, read as decimal megabytes to be safe)."""
OPENAI_BATCH_URL = "/v1/chat/completions"
"""`url` of every line and `endpoint` of every batch, on OpenAI and compatible servers."""
AZURE_BATCH_URL = "/chat/completions"
"""`url` and `endpoint` on Azure OpenAI Global Batch."""
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
"""Batch statuses that never change again."""
RERUN_ERRORS = frozenset(
    {
        "InvalidAnswerError",
        "ProviderError",
        "ServerError",
        "RateLimitError",
        "TransportError",
        "BatchFailedError",
    }
)
"""Error types `is_rerunnable` accepts: ones another attempt (or a re-ask) can fix."""

_STATE_VERSION = 1
_STATE_FILE = "state.json"
_MANIFEST_FILE = "manifest.jsonl"

BatchResult = ImageAnalysisResult | AnalysisRun[Any]
"""What one item yields: `ImageAnalyzer` gives `ImageAnalysisResult`, `Analyzer` gives
`AnalysisRun`, exactly as their online `analyze` / `analyze_detailed`."""


_Item: TypeAlias = BatchOutcome[BatchResult]
"""What a job yields per input."""


def is_rerunnable(item: BatchItem[Any]) -> bool:
    """Whether another attempt can fix `item`: an invalid answer (online re-runs re-ask),
    a server or rate-limit error, or a batch that ended without answering it."""
    return item.error is not None and type(item.error).__name__ in RERUN_ERRORS


class ShardState(TypedDict):
    """One batch input file and what became of it (an entry of `BatchState.shards`)."""

    index: int
    file: str
    """Name of the JSONL input file, in the work directory."""
    requests: int
    bytes: int
    sha256: str
    input_file_id: str | None
    file_created_at: int | None
    batch_id: str | None
    status: str | None
    output_file_id: str | None
    error_file_id: str | None
    errors: list[dict[str, Any]]
    """Batch-level errors (a `failed` batch says why here)."""
    downloaded: bool


@dataclass
class BatchState:
    """Everything a killed run needs to resume: written to `state.json` atomically.

    Attributes:
        fingerprint: Digest of the endpoint, model, mode, prompt version and options;
            a work directory only resumes the job that made it.
        url: `url` of every line and `endpoint` of every batch.
        model: `model` of every line (the Azure deployment on Azure).
        items: Input images (manifest lines).
        shards: The input files, their ids and statuses.
        version: Format version of this file.
    """

    fingerprint: str
    url: str
    model: str
    items: int
    shards: list[ShardState]
    version: int = _STATE_VERSION

    @classmethod
    def load(cls, path: Path) -> BatchState | None:
        """The state at `path`, or `None` when there is none.

        Raises:
            ConfigurationError: The file exists but is not a state file of this version.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the batch state {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
            raise ConfigurationError(f"{path} is not a version {_STATE_VERSION} batch state")
        return cls(**data)

    def save(self, path: Path) -> None:
        """Write the state atomically: temp file, fsync, rename, fsync of the directory."""
        _atomic_write(path, json.dumps(asdict(self), indent=1, sort_keys=True).encode())

    @property
    def batch_ids(self) -> list[str]:
        """Ids of the submitted batches."""
        return [s["batch_id"] for s in self.shards if s["batch_id"]]


# --- the request body -----------------------------------------------------------------------


# --- what to ask and how to finish: the analyzer's call plan ----------------------------------


def _plan_for(
    analyzer: ImageAnalyzer | Analyzer[Any], options: dict[str, Any]
) -> CallPlan[Any, BatchResult]:
    """The analyzer's plan for `options`: `ImageAnalyzer.plan` / `Analyzer.plan` check them."""
    if isinstance(analyzer, ImageAnalyzer):
        if analyzer.proposals is not None:
            # Its answers are finished in another run, where the detector's boxes are gone.
            raise InvalidOptionError(
                "the Batch API cannot verify proposals (ImageAnalyzer(proposals=...)): "
                "use analyze_many"
            )
        try:
            plan = analyzer.plan(**options)
        except TypeError as exc:
            raise InvalidOptionError(f"not an ImageAnalyzer.analyze option: {exc}") from None
        if analyzer.read_geometry == "detector" and "read" in plan.options.model_features:
            # Its regions come from the detector per image, in a request of their own.
            raise InvalidOptionError(
                "read_geometry='detector' is not available through the Batch API: "
                "use the online batch (viewfinder batch without --via batch-api)"
            )
        return plan
    if isinstance(analyzer, Analyzer):
        return analyzer.plan(**options)
    raise InvalidOptionError(f"analyzer must be an ImageAnalyzer or an Analyzer, not {analyzer!r}")


# --- writing the input files ----------------------------------------------------------------


class _ShardWriter:
    """Streams lines into numbered JSONL files, each within the request and byte caps."""

    def __init__(self, directory: Path, max_requests: int, max_bytes: int) -> None:
        self.directory = directory
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.shards: list[ShardState] = []
        self._stream: IO[bytes] | None = None
        self._digest = hashlib.sha256()

    def add(self, line: bytes) -> int | None:
        """Append `line` (newline included); its shard index, or None if it can never fit."""
        if len(line) > self.max_bytes:
            return None
        current = self.shards[-1] if self._stream is not None else None
        if (
            current is None
            or current["requests"] >= self.max_requests
            or current["bytes"] + len(line) > self.max_bytes
        ):
            current = self._open_next()
        assert self._stream is not None
        self._stream.write(line)
        self._stream.flush()
        self._digest.update(line)
        current["requests"] += 1
        current["bytes"] += len(line)
        return current["index"]

    def _open_next(self) -> ShardState:
        self._close_current()
        index = len(self.shards)
        name = f"shard-{index:04d}.jsonl"
        path = self.directory / f"{name}.part"
        self._stream = open(path, "wb")  # noqa: SIM115 - closed by _close_current
        self._digest = hashlib.sha256()
        shard = _new_shard(index, name)
        self.shards.append(shard)
        return shard

    def _close_current(self) -> None:
        if self._stream is None:
            return
        stream, self._stream = self._stream, None
        with stream:
            os.fsync(stream.fileno())
        shard = self.shards[-1]
        shard["sha256"] = self._digest.hexdigest()
        os.replace(self.directory / f"{shard['file']}.part", self.directory / shard["file"])

    def close(self) -> list[ShardState]:
        """Finish the last file; the shards written."""
        self._close_current()
        return self.shards

    def abort(self) -> None:
        """Close the open file without publishing it."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def _new_shard(index: int, name: str) -> ShardState:
    return ShardState(
        index=index,
        file=name,
        requests=0,
        bytes=0,
        sha256="",
        input_file_id=None,
        file_created_at=None,
        batch_id=None,
        status=None,
        output_file_id=None,
        error_file_id=None,
        errors=[],
        downloaded=False,
    )


def _reopenable(image: ImageInput) -> str | None:
    """The input as a path a later re-run can open again, or None (bytes, URLs...)."""
    if isinstance(image, os.PathLike):
        return os.fsdecode(os.fspath(image))
    if isinstance(image, str) and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", image):
        return image
    return None


def _label(image: ImageInput) -> str:
    """A printable description of an input that could not be prepared."""
    path = _reopenable(image)
    if path is not None:
        return path
    if isinstance(image, str):
        return safe_url(image)
    return "<bytes>" if isinstance(image, bytes | bytearray) else f"<{type(image).__name__}>"


def _split(plan: CallPlan[Any, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """An `ImageAnalyzer` plan's features computed here and those asked of the model; a
    custom `Analyzer`'s plan asks everything of the model."""
    options = plan.options
    if not isinstance(options, FeatureOptions):
        return (), ("custom",)
    return options.on_this_machine, options.model_features


def _pixels(
    analyzer: ImageAnalyzer | Analyzer[Any], loaded: LoadedImage, here: tuple[Any, ...]
) -> dict[str, Any]:
    """The pixel features (colour, image type, local faces) of an image, as JSON for its
    manifest entry: computed while the image is at hand, merged into its result later, so
    a Batch API run loses none of them."""
    assert isinstance(analyzer, ImageAnalyzer)
    _, parts = analyzer.local_engine.pixels_of(loaded, here)
    return {
        name: [item.model_dump(mode="json") for item in value]
        if isinstance(value, list)
        else value.model_dump(mode="json")
        for name, value in parts.items()
    }


def _geometry(prepared: PreparedImage) -> dict[str, Any]:
    """What a manifest entry keeps of a prepared image (all `finish()` needs)."""
    return {
        "source": prepared.source,
        "sha256": prepared.sha256,
        "width": prepared.width,
        "height": prepared.height,
        "format": prepared.format,
        "media_type": prepared.model_media_type,
        "model_width": prepared.model_width,
        "model_height": prepared.model_height,
        "error": None,
    }


def _stub_image(entry: Mapping[str, Any]) -> PreparedImage:
    """The geometry of a prepared image, from its manifest entry (finish() needs no pixels)."""
    return PreparedImage(
        width=entry["width"],
        height=entry["height"],
        format=entry["format"],
        sha256=entry["sha256"],
        model_bytes=b"",
        model_media_type=entry["media_type"],
        model_width=entry["model_width"],
        model_height=entry["model_height"],
        source=entry["source"],
    )


class _ShardAnswers:
    """The downloaded output and error lines of one shard, by custom_id (offsets only)."""

    def __init__(self, index: int, paths: Iterable[Path]) -> None:
        self.index = index
        self._stack = contextlib.ExitStack()
        self._offsets: dict[str, tuple[IO[bytes], int]] = {}
        for path in paths:
            if path.exists():
                stream = open(path, "rb")  # noqa: SIM115 - closed by close()
                self._stack.callback(stream.close)
                self._scan(stream)

    def _scan(self, stream: IO[bytes]) -> None:
        offset = 0
        for raw in stream:
            if raw.strip():
                custom_id = str(json.loads(raw).get("custom_id"))
                self._offsets.setdefault(custom_id, (stream, offset))
            offset += len(raw)

    def get(self, custom_id: str) -> dict[str, Any] | None:
        """The output or error line of `custom_id`, or None when the batch gave none."""
        found = self._offsets.get(custom_id)
        if found is None:
            return None
        stream, offset = found
        stream.seek(offset)
        record: dict[str, Any] = json.loads(stream.readline())
        return record

    def close(self) -> None:
        self._stack.close()


# --- the job ----------------------------------------------------------------------------------

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _locked(
    method: Callable[Concatenate[BatchJob, _P], _T],
) -> Callable[Concatenate[BatchJob, _P], _T]:
    """`method`, run holding the work directory's lock (`BatchJob._hold`)."""

    def locked(self: BatchJob, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self._hold():
            return method(self, *args, **kwargs)

    functools.update_wrapper(locked, method)  # name and docstring, for help()
    return locked


def _release_after(items: Iterator[_T], hold: contextlib.ExitStack) -> Iterator[_T]:
    """`items`, closing `hold` once they run out or the iterator is closed (or dropped)."""
    with hold:
        yield from items


class BatchJob:
    """One batch run of an analyzer over many images, kept in a work directory.

    Every step can be called again, by this process or a later one with the same work
    directory and options: it resumes from `state.json` and never repeats a paid step.

    Args:
        analyzer: An `ImageAnalyzer` or an `Analyzer`; its client, model, mode, sampling
            and prompts make the requests, and its retry policy covers the Files and
            Batches API calls (batch creation excepted: see `submit`).
        work_dir: Where the state, manifest, input shards and downloaded outputs live.
        max_requests_per_file: Cap on lines per input file (OpenAI: 50,000).
        max_bytes_per_file: Cap on bytes per input file (OpenAI: 200 MB).
        batch_model: `model` of every line. Default: the analyzer's model; on Azure, the
            deployment of the analyzer's client (Global Batch needs a GlobalBatch
            deployment: name it here if the online one is not).
        **options: What `analyze` takes besides the image: `features`,
            `smart_crops_aspect_ratios`, `gender_neutral_caption`, `language` for an
            `ImageAnalyzer`; template variables for an `Analyzer`.

    Only one process at a time may work on a work directory: each step holds its lock
    (`run` holds it until its last item), and a step of a second process raises
    `BatchLockedError`, naming the first, before it sends anything.

    Raises:
        InvalidOptionError: A cap below 1, or an option `analyze` would refuse.
        ConfigurationError: The work directory holds a different job's state.
    """

    def __init__(
        self,
        analyzer: ImageAnalyzer | Analyzer[Any],
        work_dir: str | os.PathLike[str],
        *,
        max_requests_per_file: int = MAX_REQUESTS_PER_FILE,
        max_bytes_per_file: int = MAX_BYTES_PER_FILE,
        batch_model: str | None = None,
        **options: Any,
    ) -> None:
        if max_requests_per_file < 1 or max_bytes_per_file < 1:
            raise InvalidOptionError("max_requests_per_file and max_bytes_per_file must be >= 1")
        self.analyzer = analyzer
        self.work_dir = Path(work_dir)
        self.max_requests_per_file = max_requests_per_file
        self.max_bytes_per_file = max_bytes_per_file
        self.options = dict(options)
        self._plan = _plan_for(analyzer, self.options)
        provider: Provider = analyzer.provider
        self.url = AZURE_BATCH_URL if provider.kind is ProviderKind.AZURE else OPENAI_BATCH_URL
        self.model = batch_model or _default_batch_model(provider)
        self.fingerprint = _digest(
            provider.kind.value,
            provider.endpoint,
            self.model,
            str(provider.mode.value),
            analyzer.model_version,
            self._plan.describe(),
        )
        self._parse_model: type[BaseModel] | None = None
        self._lock = WriterLock(
            self.state_path,
            hint="wait for it or use another work directory",
            doing="in use by another viewfinder batch job",
        )
        self.state = self._load_state()

    def _load_state(self) -> BatchState | None:
        state = BatchState.load(self.state_path)
        if state is not None and state.fingerprint != self.fingerprint:
            raise ConfigurationError(
                f"{self.work_dir} holds a batch job with another endpoint, model, prompt or "
                "options; use a new work directory"
            )
        return state

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        """Hold the work directory's lock (reentrant). On taking it, read the state again:
        another process may have moved the job on since this object last read it.

        Raises:
            BatchLockedError: Another process (or `BatchJob`) is working on the directory.
        """
        first = not self._lock.held
        if first:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if first:
                self.state = self._load_state()
            yield

    @property
    def state_path(self) -> Path:
        """`<work_dir>/state.json`."""
        return self.work_dir / _STATE_FILE

    @property
    def manifest_path(self) -> Path:
        """`<work_dir>/manifest.jsonl`: one line per input image, in input order."""
        return self.work_dir / _MANIFEST_FILE

    @property
    def _client(self) -> openai.OpenAI:
        return self.analyzer.provider.client

    def _save(self) -> None:
        assert self.state is not None
        self.state.save(self.state_path)

    # --- 1. write ---------------------------------------------------------------------------

    @_locked
    def write(self, images: Iterable[BatchInputLike]) -> BatchState:
        """Prepare every image and stream its request line into the input shards.

        Does nothing when the work directory already has its shards (a resumed run does
        not read `images` again). An image that cannot be used (unreadable, too large, a
        line over `max_bytes_per_file`) is not sent: its result is its typed error.

        Args:
            images: Images, or `BatchInput(image, id)` for your own ids; read lazily, once.

        Returns:
            The state, shards listed, nothing submitted.
        """
        if self.state is not None:
            return self.state
        self.work_dir.mkdir(parents=True, exist_ok=True)
        writer = _ShardWriter(self.work_dir, self.max_requests_per_file, self.max_bytes_per_file)
        manifest_part = self.manifest_path.with_name(f"{_MANIFEST_FILE}.part")
        count = 0
        try:
            with open(manifest_part, "wb") as manifest:
                seen: set[str] = set()
                for count, item in enumerate(images, start=1):
                    entry = self._write_one(count - 1, item, writer, seen)
                    manifest.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
                manifest.flush()
                os.fsync(manifest.fileno())
            shards = writer.close()
        except BaseException:
            writer.abort()
            raise
        os.replace(manifest_part, self.manifest_path)
        self.state = BatchState(self.fingerprint, self.url, self.model, count, shards)
        self._save()
        logger.info(
            "batch: wrote %d request(s) in %d file(s) to %s", count, len(shards), self.work_dir
        )
        return self.state

    def _write_one(
        self, index: int, item: BatchInputLike, writer: _ShardWriter, seen: set[str]
    ) -> dict[str, Any]:
        """Prepare one image and write its line; its manifest entry."""
        given_id, image = split_input(item)
        path = _reopenable(image)
        url = safe_url(image) if isinstance(image, str) and path is None else None
        base_id = str(given_id) if given_id is not None else path or url or f"item-{index}"
        entry: dict[str, Any] = {"index": index, "base_id": base_id, "path": path, "shard": None}
        here, asked = _split(self._plan)
        try:
            loaded = self.analyzer.load(image)
            prepared = self.analyzer.prepare(loaded, self._plan.max_side)
            if here:
                entry["pixels"] = _pixels(self.analyzer, loaded, here)
        except ViewfinderError as exc:
            entry["custom_id"] = _unique(f"{base_id}#unreadable", seen)
            entry |= {"source": _label(image), "sha256": None, "error": exc.to_record()}
            return entry
        entry["custom_id"] = _unique(f"{base_id}#{prepared.sha256[:12]}", seen)
        entry |= _geometry(prepared)
        if url is not None:
            entry["source"] = url  # the prepared image's source has no query string at all
        if not asked:  # pixel features only: nothing to ask the model
            return entry
        line = self._line(entry["custom_id"], self._plan.build(prepared))
        entry["shard"] = writer.add(line)
        if entry["shard"] is None:
            too_big = InvalidOptionError(
                f"the request is {len(line)} bytes, over max_bytes_per_file="
                f"{self.max_bytes_per_file}; lower max_side or raise the cap"
            )
            entry["error"] = too_big.to_record()
        return entry

    def _line(self, custom_id: str, request: Request[BaseModel]) -> bytes:
        body = self.analyzer.engine.request_body(request, model=self.model)
        line = {"custom_id": custom_id, "method": "POST", "url": self.url, "body": body}
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    # --- 2. submit --------------------------------------------------------------------------

    @_locked
    def submit(self) -> BatchState:
        """Upload each shard and create its batch, recording every id as soon as it exists.

        A shard with a batch id is skipped. A shard uploaded by an earlier run but
        without a batch id is first looked up among the account's batches (by input
        file id), so a run killed right after `batches.create` does not submit twice.
        `batches.create` itself is never retried blindly: after a failure the batch is
        looked up the same way, and the typed error is raised when it is not found (run
        again later to resume).

        Returns:
            The state, every shard with a batch id.

        Raises:
            ProviderError: An upload or a batch creation failed (after retries for uploads).
        """
        state = self._require_state()
        for shard in state.shards:
            if shard["batch_id"] is not None:
                continue
            uploaded_before = shard["input_file_id"] is not None
            if not uploaded_before:
                self._upload(shard)
            found = self._find_batch(shard) if uploaded_before else None
            if found is not None:
                logger.info("batch: shard %d already has batch %s", shard["index"], found.id)
                self._record(shard, found)
            else:
                self._create(shard)
        return state

    def _upload(self, shard: ShardState) -> None:
        path = self.work_dir / shard["file"]

        def upload() -> Any:
            with open(path, "rb") as stream:
                return self._client.files.create(file=(shard["file"], stream), purpose="batch")

        uploaded = self._call(upload)
        shard["input_file_id"], shard["file_created_at"] = uploaded.id, uploaded.created_at
        self._save()

    def _create(self, shard: ShardState) -> None:
        assert shard["input_file_id"] is not None
        try:
            batch = self._client.batches.create(
                input_file_id=shard["input_file_id"],
                endpoint=cast(Any, self.url),
                completion_window="24h",
            )
        except openai.OpenAIError as exc:
            found = self._find_batch(shard, quiet=True)
            if found is None:
                raise to_viewfinder_error(exc, attempts=1) from exc
            batch = found
        self._record(shard, batch)
        logger.info("batch: shard %d submitted as %s", shard["index"], batch.id)

    def _find_batch(self, shard: ShardState, *, quiet: bool = False) -> Batch | None:
        """The account's batch made from this shard's input file, if any (newest first)."""
        try:
            for batch in self._client.batches.list(limit=100):
                if batch.input_file_id == shard["input_file_id"]:
                    return batch
                if batch.created_at < (shard["file_created_at"] or 0):
                    return None  # listed newest first: older batches cannot use our file
        except openai.OpenAIError as exc:
            if quiet:
                return None
            raise to_viewfinder_error(exc, attempts=1) from exc
        return None

    def _record(self, shard: ShardState, batch: Batch) -> None:
        """Copy what matters of `batch` into the shard and save the state."""
        shard["batch_id"] = batch.id
        shard["status"] = batch.status
        shard["output_file_id"] = batch.output_file_id
        shard["error_file_id"] = batch.error_file_id
        if batch.errors is not None and batch.errors.data:
            shard["errors"] = [error.model_dump(exclude_none=True) for error in batch.errors.data]
        self._save()

    # --- 3. wait ------------------------------------------------------------------------------

    @_locked
    def wait(
        self,
        *,
        timeout: float,
        poll_interval: float = 60.0,
        on_poll: Callable[[BatchState], None] | None = None,
    ) -> BatchState:
        """Poll every unfinished batch until all are `completed`, `failed`, `expired` or
        `cancelled`.

        Args:
            timeout: Seconds to wait in all (required: a batch may take 24 hours).
            poll_interval: Seconds between polling rounds.
            on_poll: Called with the state after each round (saved before the call).

        Returns:
            The state, every shard in a final status.

        Raises:
            BatchTimeoutError: Still unfinished after `timeout`; run again to resume.
            ProviderError: Polling failed after the analyzer's retries.
        """
        if not timeout > 0 or not poll_interval > 0:
            raise InvalidOptionError("timeout and poll_interval must be positive")
        state = self._require_state(submitted=True)
        deadline = time.monotonic() + timeout
        while True:
            for shard in state.shards:
                if shard["status"] not in TERMINAL_STATUSES:
                    self._refresh(shard)
            if on_poll is not None:
                on_poll(state)
            pending = {
                s["batch_id"] or "": s["status"] or ""
                for s in state.shards
                if s["status"] not in TERMINAL_STATUSES
            }
            if not pending:
                return state
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BatchTimeoutError(
                    f"{len(pending)} batch(es) still unfinished after {timeout:g} s: {pending}; "
                    f"run again with the work directory {self.work_dir} to keep waiting",
                    statuses=pending,
                )
            time.sleep(min(poll_interval, remaining))

    def _refresh(self, shard: ShardState) -> None:
        batch_id = shard["batch_id"]
        assert batch_id is not None
        batch: Batch = self._call(lambda: self._client.batches.retrieve(batch_id))
        if (batch.status, batch.output_file_id, batch.error_file_id) != (
            shard["status"],
            shard["output_file_id"],
            shard["error_file_id"],
        ):
            self._record(shard, batch)

    # --- 4. download ----------------------------------------------------------------------

    @_locked
    def download(self) -> BatchState:
        """Download the output and error files of every finished batch, once.

        Returns:
            The state.

        Raises:
            ProviderError: A download failed after the analyzer's retries.
        """
        state = self._require_state(submitted=True)
        for shard in state.shards:
            if shard["status"] in TERMINAL_STATUSES and not shard["downloaded"]:
                files = {"output": shard["output_file_id"], "errors": shard["error_file_id"]}
                for suffix, file_id in files.items():
                    if file_id is not None:
                        self._download(file_id, self._result_path(shard, suffix))
                shard["downloaded"] = True
                self._save()
        return state

    def _result_path(self, shard: ShardState, suffix: str) -> Path:
        return self.work_dir / shard["file"].replace(".jsonl", f".{suffix}.jsonl")

    def _download(self, file_id: str, destination: Path) -> None:
        def fetch() -> None:
            with (
                self._client.files.with_streaming_response.content(file_id) as response,
                _atomic_stream(destination) as out,
            ):
                for chunk in response.iter_bytes():
                    out.write(chunk)

        self._call(fetch)

    # --- 5. results -------------------------------------------------------------------------

    def results(self) -> Iterator[_Item]:
        """One result per input image, in input order (finished batches only).

        Yields:
            `BatchItem`s; answers checked and finished as online, errors typed.

        Raises:
            UserError: A batch is not finished yet (call `wait` first).
        """
        state = self.download()
        unfinished = [s["batch_id"] for s in state.shards if s["status"] not in TERMINAL_STATUSES]
        if unfinished:
            raise UserError(f"batches {unfinished} are not finished: call wait() first")
        return self._results(state)

    def _results(self, state: BatchState) -> Iterator[_Item]:
        """Walk the manifest; shards fill in input order, so one shard is indexed at a time."""
        answers: _ShardAnswers | None = None
        try:
            for entry in _read_jsonl(self.manifest_path):
                shard = entry["shard"]
                if shard is not None and (answers is None or answers.index != shard):
                    if answers is not None:
                        answers.close()
                    answers = _ShardAnswers(shard, self._answer_paths(state.shards[shard]))
                found = answers.get(entry["custom_id"]) if answers and shard is not None else None
                yield self._item(entry, found, state)
        finally:
            if answers is not None:
                answers.close()

    def _answer_paths(self, shard: ShardState) -> list[Path]:
        return [self._result_path(shard, suffix) for suffix in ("output", "errors")]

    def _item(
        self, entry: dict[str, Any], record: dict[str, Any] | None, state: BatchState
    ) -> _Item:
        """The result of one manifest entry, from its output or error line if any."""
        if entry["error"] is not None:
            return self._failure(entry, ViewfinderError.from_record(entry["error"]), Usage())
        if entry["shard"] is None and "pixels" in entry:  # nothing was asked of the model
            only = ImageAnalysisResult(
                model_version=self._plan.fingerprint,
                metadata={"width": entry["width"], "height": entry["height"]},
                **entry["pixels"],
            )
            return self._item_result(entry, only, None, Usage(), batch=True)
        if record is None:
            return self._failure(entry, _missing(state.shards[entry["shard"]]))
        response = record.get("response") or {}
        if record.get("error") or response.get("status_code") != 200:
            batch_id = state.shards[entry["shard"]]["batch_id"]
            error = _line_error(record, batch_id)
            return self._failure(entry, error, Usage(requests=1 if response else 0))
        return self._answer(entry, response)

    def _answer(self, entry: dict[str, Any], response: dict[str, Any]) -> _Item:
        """Check, parse and finish one answered line exactly as the online path does."""
        tally = Tally()
        tally.attempt()
        request_id = response.get("request_id")
        try:
            completion = ChatCompletion.model_validate(response.get("body"))
        except ValidationError as exc:
            error = InvalidAnswerError(f"the batch answer is not a chat completion: {exc}")
            return self._failure(entry, error, tally.usage())
        tally.record(completion, {"x-request-id": request_id} if request_id else {})
        usage = tally.usage()
        model = self._response_model()
        try:
            check_completion(completion, tally)
            parsed = parse_completion(completion, model, self.analyzer.provider.mode)
        except ViewfinderError as exc:
            return self._failure(entry, exc, usage)
        except PARSE_ERRORS as exc:
            error = InvalidAnswerError(
                f"the answer failed validation (a batch cannot re-ask): {exc}",
                raw_answer=raw_answer(completion),
                usage=usage,
            )
            return self._failure(entry, error, usage)
        clean = model.model_validate_json(parsed.model_dump_json())  # as Engine._completed
        result = self._plan.finish(Completed(clean, usage, request_id), _stub_image(entry))
        if entry.get("pixels") and isinstance(result, ImageAnalysisResult):
            result = ImageAnalysisResult.model_validate(result.model_dump() | entry["pixels"])
        return self._item_result(entry, result, None, usage, batch=True)

    def _response_model(self) -> type[BaseModel]:
        """The model-facing schema answers are parsed with (same for every image)."""
        if self._parse_model is None:
            self._parse_model = self._plan.build(_stub_image(_STUB_ENTRY)).response_model
        return self._parse_model

    def _failure(
        self, entry: dict[str, Any], error: ViewfinderError, usage: Usage | None = None
    ) -> _Item:
        return self._item_result(entry, None, error, usage or Usage(), batch=True)

    def _item_result(
        self,
        entry: Mapping[str, Any],
        result: BatchResult | None,
        error: ViewfinderError | None,
        usage: Usage,
        *,
        batch: bool,
    ) -> _Item:
        return batch_item(
            id=entry["base_id"],
            index=entry["index"],
            source=entry["source"],
            sha256=entry["sha256"],
            result=result,
            error=error,
            usage=usage,
            cost=cost_of(usage, self.analyzer.provider.model, batch=batch),
            batch_priced=batch,
            custom_id=entry["custom_id"],
        )

    # --- 6. re-run failures -------------------------------------------------------------------

    def rerun_failed(
        self,
        items: Iterable[_Item],
        *,
        via: Literal["online", "batch"] = "online",
        rerun_if: Callable[[_Item], bool] = is_rerunnable,
        resolve: Callable[[_Item], ImageInput | None] | None = None,
        timeout: float | None = None,
        poll_interval: float = 60.0,
    ) -> Iterator[_Item]:
        """Run the failed items again; every item comes back, failed ones replaced, in order.

        Args:
            items: Results of this job (`results()`). `via="batch"` keeps them in memory.
            via: `"online"`: `analyze` each image as it comes (full price, re-asks
                allowed); `"batch"`: one follow-up batch in `<work_dir>/rerun`, run
                before this returns (batch price, no re-ask; resumable like this one).
            rerun_if: Which failures to re-run (default: `is_rerunnable`).
            resolve: The image of an item; default: the path it was given as. Items
                given as bytes, file objects, PIL images or URLs need it (URLs are not
                stored: their query strings may hold secrets). Items it cannot resolve
                keep their error.
            timeout: Total wait of the follow-up batch (required with `via="batch"`).
            poll_interval: Polling interval of the follow-up batch.

        Returns:
            Every item of `items`; a re-run one with its new outcome.
        """
        if via == "online":
            return self._rerun_online(items, rerun_if, resolve)
        if timeout is None:
            raise InvalidOptionError("rerun_failed(via='batch') needs a timeout")
        kept = list(items)
        redone = self._follow_up(kept, rerun_if, resolve, timeout, poll_interval)
        return iter([redone.get(item.index, item) for item in kept])

    def _rerun_online(
        self,
        items: Iterable[_Item],
        rerun_if: Callable[[_Item], bool],
        resolve: Callable[[_Item], ImageInput | None] | None,
    ) -> Iterator[_Item]:
        inputs: dict[int, tuple[str | None, str]] | None = None
        with self._hold():  # two processes re-running the same items would pay twice
            for item in items:
                if not rerun_if(item):
                    yield item
                    continue
                inputs = inputs if inputs is not None else self._inputs()
                image = resolve(item) if resolve is not None else inputs[item.index][0]
                yield item if image is None else self._analyze_online(item, image)

    def _analyze_online(self, item: _Item, image: ImageInput) -> _Item:
        entry = {
            "base_id": item.id,
            "index": item.index,
            "custom_id": item.custom_id,
            "source": item.source,
            "sha256": item.sha256,
        }
        try:
            result = self.analyzer.run(self._plan, image)
        except ViewfinderError as exc:
            usage = getattr(exc, "usage", None) or Usage()
            return self._item_result(entry, None, exc, usage, batch=False)
        return self._item_result(entry, result, None, result.usage, batch=False)

    def _follow_up(
        self,
        items: Iterable[_Item],
        rerun_if: Callable[[_Item], bool],
        resolve: Callable[[_Item], ImageInput | None] | None,
        timeout: float,
        poll_interval: float,
    ) -> dict[int, _Item]:
        """Re-run the failed `items` in one follow-up batch; their new results by index."""
        inputs = self._inputs()
        retry: list[tuple[int, BatchInput]] = []
        for item in items:
            if rerun_if(item):
                path, base_id = inputs[item.index]
                image = resolve(item) if resolve is not None else path
                if image is not None:
                    retry.append((item.index, BatchInput(image, base_id)))
        if not retry:
            return {}
        follow_up = BatchJob(
            self.analyzer,
            self.work_dir / "rerun",
            max_requests_per_file=self.max_requests_per_file,
            max_bytes_per_file=self.max_bytes_per_file,
            batch_model=self.model,
            **self.options,
        )
        redone = follow_up.run(
            [given for _, given in retry], timeout=timeout, poll_interval=poll_interval
        )
        return {
            index: replace(new, index=index) for (index, _), new in zip(retry, redone, strict=True)
        }

    def _inputs(self) -> dict[int, tuple[str | None, str]]:
        """`index -> (re-openable path, base id)` of every input, from the manifest."""
        return {e["index"]: (e["path"], e["base_id"]) for e in _read_jsonl(self.manifest_path)}

    # --- all at once --------------------------------------------------------------------------

    def run(
        self,
        images: Iterable[BatchInputLike],
        *,
        timeout: float,
        poll_interval: float = 60.0,
        on_poll: Callable[[BatchState], None] | None = None,
        rerun: Literal["online", "batch"] | None = None,
        rerun_if: Callable[[_Item], bool] = is_rerunnable,
        resolve: Callable[[_Item], ImageInput | None] | None = None,
    ) -> Iterator[_Item]:
        """Write, submit, wait and download now; then iterate over the results.

        Args:
            images: The images (not read again when resuming).
            timeout: Seconds to wait for the batches (and again for a follow-up batch).
            poll_interval: Seconds between polling rounds.
            on_poll: Called with the state after each polling round.
            rerun: Re-run failed items `"online"` or in a follow-up `"batch"`; None: don't.
            rerun_if: Which failures to re-run.
            resolve: The image of a failed item when it was not given as a path.

        Returns:
            The results in input order (failed ones replaced by their re-run). The work
            directory stays locked until they run out or the iterator is closed.

        Raises:
            BatchLockedError: Another process is working on this work directory.
        """
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._hold())
            self.write(images)
            self.submit()
            self.wait(timeout=timeout, poll_interval=poll_interval, on_poll=on_poll)
            items: Iterator[_Item]
            if rerun is None:
                items = self.results()
            elif rerun == "online":
                items = self.rerun_failed(self.results(), rerun_if=rerun_if, resolve=resolve)
            else:
                # Two passes over the downloaded files: only the failed items stay in memory.
                redone = self._follow_up(self.results(), rerun_if, resolve, timeout, poll_interval)
                items = (redone.get(item.index, item) for item in self.results())
            hold = stack.pop_all()  # handed over: released after the last item
        return _release_after(items, hold)

    # --- shared -----------------------------------------------------------------------------

    def _require_state(self, *, submitted: bool = False) -> BatchState:
        if self.state is None:
            raise UserError("nothing written yet: call write(images) first")
        if submitted and any(s["batch_id"] is None for s in self.state.shards):
            raise UserError("not every shard is submitted: call submit() first")
        return self.state

    def _call(self, fn: Callable[[], Any]) -> Any:
        """`fn()` under the analyzer's retry policy, failures as typed errors."""
        attempts = 0
        try:
            for attempt in sync_retrying(self.analyzer.engine.retry):
                with attempt:
                    attempts += 1
                    return fn()
        except openai.OpenAIError as exc:
            raise to_viewfinder_error(exc, attempts=attempts) from exc
        raise AssertionError("unreachable: the retry loop returns or raises")  # pragma: no cover


def run_batch(
    analyzer: ImageAnalyzer | Analyzer[Any],
    images: Iterable[BatchInputLike],
    *,
    work_dir: str | os.PathLike[str],
    timeout: float,
    poll_interval: float = 60.0,
    on_poll: Callable[[BatchState], None] | None = None,
    rerun: Literal["online", "batch"] | None = None,
    max_requests_per_file: int = MAX_REQUESTS_PER_FILE,
    max_bytes_per_file: int = MAX_BYTES_PER_FILE,
    batch_model: str | None = None,
    **options: Any,
) -> Iterator[_Item]:
    """Analyse `images` through the Batch API; see `BatchJob` and `BatchJob.run`.

    Everything up to the download happens before this returns; the results are then
    read lazily, in input order. Run it again with the same `work_dir` to resume.

    Returns:
        One `BatchItem` per image, in input order.
    """
    job = BatchJob(
        analyzer,
        work_dir,
        max_requests_per_file=max_requests_per_file,
        max_bytes_per_file=max_bytes_per_file,
        batch_model=batch_model,
        **options,
    )
    return job.run(
        images, timeout=timeout, poll_interval=poll_interval, on_poll=on_poll, rerun=rerun
    )


# --- line helpers ---------------------------------------------------------------------------------

_STUB_ENTRY: dict[str, Any] = {
    "width": 1000,
    "height": 1000,
    "format": "PNG",
    "sha256": "",
    "media_type": "image/jpeg",
    "model_width": 1000,
    "model_height": 1000,
    "source": "<stub>",
}
"""A geometry for building the one request whose response model every item shares."""


def _missing(shard: ShardState) -> ViewfinderError:
    """Why a submitted request has no output or error line."""
    status = shard["status"] or "unknown"
    if status == "completed":
        return ProviderError(f"batch {shard['batch_id']} completed without answering this request")
    reasons = "; ".join(str(e.get("message", e)) for e in shard["errors"]) or "no reason given"
    return BatchFailedError(
        f"batch {shard['batch_id']} ended {status} before answering: {reasons}",
        batch_id=shard["batch_id"],
        batch_status=status,
    )


def _line_error(record: Mapping[str, Any], batch_id: str | None) -> ViewfinderError:
    """The typed error of an error-file line: a non-200 response, or no response."""
    response = record.get("response")
    if not response:
        return _not_run_error(record.get("error") or {}, batch_id)
    return _response_error(response)


def _not_run_error(error: Mapping[str, Any], batch_id: str | None) -> ViewfinderError:
    """A request the batch never ran (it expired or was cancelled first)."""
    code = str(error.get("code") or "")
    message = str(error.get("message") or code or "the batch did not run this request")
    if code in ("batch_expired", "batch_cancelled"):
        status = code.removeprefix("batch_")
        return BatchFailedError(message, batch_id=batch_id, batch_status=status)
    return ProviderError(f"the batch did not run this request: {message}")


def _response_error(response: Mapping[str, Any]) -> ViewfinderError:
    """A non-200 answer, mapped exactly as the online path maps the same HTTP error."""
    status_code = int(response.get("status_code") or 500)
    body = response.get("body")
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict) and status_code == 400 and detail.get("code") == "content_filter":
        return ContentFilterError(
            f"the prompt or image was stopped by the content filter: {detail.get('message')}"
        )
    request_id = response.get("request_id")
    http_response = httpx2.Response(
        status_code,
        headers={"x-request-id": request_id} if request_id else {},
        request=httpx2.Request("POST", "https://batch.invalid/chat/completions"),
    )
    message = str(detail.get("message")) if isinstance(detail, dict) else f"HTTP {status_code}"
    api_error = openai.APIStatusError(message, response=http_response, body=detail)
    return to_viewfinder_error(api_error, attempts=1)


def _default_batch_model(provider: Provider) -> str:
    """The model (OpenAI) or deployment (Azure, from the client's URL) of every line."""
    if provider.kind is ProviderKind.AZURE:
        found = re.search(r"/deployments/([^/]+)", provider.endpoint)
        if found:
            return found.group(1)
    return provider.model


def _unique(custom_id: str, seen: set[str]) -> str:
    """`custom_id`, suffixed when an earlier line of the job already uses it."""
    candidate, n = custom_id, 1
    while candidate in seen:
        n += 1
        candidate = f"{custom_id}~{n}"
    seen.add(candidate)
    return candidate


def _digest(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as stream:
        for raw in stream:
            if raw.strip():
                yield json.loads(raw)


# --- files ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_stream(path: Path) -> Iterator[IO[bytes]]:
    """A temp file next to `path` that replaces it, fsynced, only if the block succeeds."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old or the new file, whole."""
    with _atomic_stream(path) as stream:
        stream.write(data)


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
