"""A scripted, OpenAI-compatible HTTP server on the loopback interface.

This is **not a model**. It never looks at the images or the prompt to decide
what to say: every answer it gives is one that the calling test or benchmark
queued with :meth:`Simulator.script` (or produced with the ``default``
callable). Its purpose is to let tests record cassettes and let benchmarks
measure client behaviour (retries, rate limiting, concurrency, parsing)
against a server that speaks the OpenAI wire format without any network or
real model behind it.

What it does simulate, honestly labelled:

* the JSON shape of ``POST /v1/chat/completions`` answers (plain content,
  instructor ``TOOLS``-mode ``tool_calls``, refusals, finish reasons, and a
  minimal server-sent-events stream when ``"stream": true`` is requested), also
  under the Azure OpenAI path ``/openai/deployments/{name}/chat/completions``;
* OpenAI-shaped error bodies for scripted failures;
* ``429`` rate limiting (concurrency cap, requests-per-minute and
  tokens-per-minute over a sliding window) with ``retry-after``,
  ``retry-after-ms`` and ``x-ratelimit-*`` headers;
* latency, via a sleep in the handler thread;
* the Files and Batches APIs a Batch API client needs (``POST /v1/files``
  multipart upload, ``GET /v1/files/{id}[/content]``, ``POST /v1/batches``,
  ``GET /v1/batches[/{id}]``, also under Azure's ``/openai/files`` and
  ``/openai/batches``): a batch moves ``validating -> in_progress -> completed``
  one step per retrieve, and its output file answers every input line through
  the SAME script as chat completions (see :class:`BatchScript`). Files live in
  memory; nothing is processed in the background.

The ``usage`` token counts are **not real usage**: unless the scripted
:class:`Reply` sets them, ``prompt_tokens`` is a deterministic estimate of
``(characters of all text parts) // 4 + 85 per image part`` and
``completion_tokens`` is ``len(answer text) // 4 + 1``.

Everything is deterministic for cassettes: ids are numbered per simulator
instance (``chatcmpl-sim-<n>``, ``call_sim_<n>``, ``req_sim_<n>``), ``created``
is the fixed :data:`CREATED` timestamp and the ``Date`` response header is the
same fixed instant. Only the standard library is used.

Example:
    >>> import openai
    >>> with Simulator() as sim:
    ...     sim.script({"caption": "a cat"})
    ...     client = openai.OpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0)
    ...     answer = client.chat.completions.create(
    ...         model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    ...     )
    ...     client.close()
    >>> answer.choices[0].message.content
    '{"caption": "a cat"}'
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.parser import HeaderParser
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "CREATED",
    "SYSTEM_FINGERPRINT",
    "BatchScript",
    "Reply",
    "ReplyLike",
    "Simulator",
    "SimulatorStats",
    "estimate_prompt_tokens",
]

CREATED = 1_700_000_000
"""Fixed ``created`` timestamp of every answer (2023-11-14T22:13:20Z)."""

SYSTEM_FINGERPRINT = "viewfinder-simulator"
"""``system_fingerprint`` of every answer; also the default model name."""

IMAGE_PART_TOKENS = 85
"""Tokens the prompt estimate charges per image part (the low-detail tile cost)."""

_FIXED_DATE = formatdate(CREATED, usegmt=True)
_AZURE_PATH = re.compile(r"^/openai/deployments/(?P<name>[^/]+)/chat/completions/?$")
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_MAX_BODY_BYTES = 256 * 1024 * 1024
_FILES_API_PATH = re.compile(
    r"^(?:/v1|/openai)?/(?P<kind>files|batches)(?:/(?P<id>[^/]+))?(?:/(?P<action>content))?/?$"
)
_TERMINAL_BATCH = frozenset({"completed", "failed", "expired", "cancelled"})

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout", None),
    409: ("conflict", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        content: The answer. A ``dict``/``list`` is JSON-encoded; a ``str`` is
            sent verbatim (so malformed JSON can be scripted); an object with
            ``model_dump_json()`` (a pydantic model) is dumped with it;
            ``None`` sends ``content: null`` and no tool call.
        status: HTTP status. Anything other than 200 sends an OpenAI-shaped
            error body ``{"error": {"message", "type", "param", "code"}}``.
        error_message: ``error.message`` of a non-200 answer.
        headers: Extra response headers, e.g. ``{"retry-after": "0"}``.
            ``x-request-id: req_sim_<n>`` is added unless given here.
        finish_reason: ``choices[0].finish_reason``. ``None`` means ``"stop"``,
            or ``"tool_calls"`` when the answer is delivered as a tool call.
        refusal: ``message.refusal``.
        prompt_tokens: ``usage.prompt_tokens``; default is the deterministic
            estimate from :func:`estimate_prompt_tokens` (NOT real usage).
        completion_tokens: ``usage.completion_tokens``; default
            ``len(answer text) // 4 + 1`` (NOT real usage).
        delay: Seconds to wait before answering, on top of the simulator's
            ``latency``.
        error_type: ``error.type`` of a non-200 answer; default derived from
            ``status`` (e.g. ``invalid_request_error``, ``requests``,
            ``server_error``).
        error_code: ``error.code`` of a non-200 answer, e.g.
            ``"content_filter"``; default derived from ``status``.
    """

    content: Any = None
    status: int = 200
    error_message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str | None = None
    refusal: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    delay: float = 0.0
    error_type: str | None = None
    error_code: str | None = None


ReplyLike = Reply | dict[str, Any] | list[Any] | str
"""What :meth:`Simulator.script` and ``default`` accept; non-Replies become ``Reply(content=x)``."""


BatchStatus = Literal["completed", "failed", "expired", "cancelled"]


@dataclass
class BatchScript:
    """How the next created batch ends (queue with :meth:`Simulator.script_batch`).

    Unscripted batches complete after :attr:`Simulator.batch_polls` retrieves.

    Attributes:
        status: Final status. ``completed`` answers every line; ``expired`` and
            ``cancelled`` answer the first ``answered`` lines and put the rest in
            the error file (codes ``batch_expired`` / ``batch_cancelled``);
            ``failed`` answers nothing and sets the batch's ``errors``.
        polls: Retrieves before the final status (default
            :attr:`Simulator.batch_polls`).
        answered: Lines answered before an ``expired`` / ``cancelled`` batch stops.
        error_message: ``errors.data[0].message`` of a ``failed`` batch.
    """

    status: BatchStatus = "completed"
    polls: int | None = None
    answered: int = 0
    error_message: str = "simulator: scripted batch failure"


@dataclass
class _StoredFile:
    meta: dict[str, Any]
    data: bytes = field(repr=False)


@dataclass
class _StoredBatch:
    batch: dict[str, Any]
    script: BatchScript
    polls_seen: int = 0


def _multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Parse a ``multipart/form-data`` body into ``{name: (filename, bytes)}``."""
    header = HeaderParser().parsestr(f"Content-Type: {content_type}\r\n\r\n")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ValueError("multipart body without a boundary")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for chunk in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part without headers")
        part = HeaderParser().parsestr(head.decode("latin-1") + "\r\n\r\n")
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = (part.get_filename(), content.removesuffix(b"\r\n"))
    return fields


def _batch_line_problem(
    number: int, line: bytes, endpoint: str, seen: set[str]
) -> dict[str, Any] | None:
    """The batch-validation error of one input line (1-based ``number``), or None."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        request = None
    problem: tuple[str, str] | None = None
    if not isinstance(request, dict) or not isinstance(request.get("body"), dict):
        problem = ("invalid_json_line", "the line is not a JSON object with a 'body' object")
    elif not isinstance(request.get("custom_id"), str) or not request["custom_id"]:
        problem = ("missing_required_parameter", "'custom_id' must be a non-empty string")
    elif request["custom_id"] in seen:
        problem = ("duplicate_custom_id", f"duplicate custom_id {request['custom_id']!r}")
    elif request.get("method") != "POST":
        problem = ("invalid_method", "'method' must be POST")
    elif request.get("url") != endpoint:
        problem = ("invalid_url", f"'url' must be the batch endpoint {endpoint!r}")
    elif not isinstance(request["body"].get("messages"), list):
        problem = ("invalid_request", "'body.messages' must be a list")
    if problem is None:
        seen.add(request["custom_id"])
        return None
    code, message = problem
    return {"code": code, "message": message, "param": None, "line": number}


@dataclass
class SimulatorStats:
    """Counters over chat-completion requests (a snapshot; see :attr:`Simulator.stats`).

    ``total == ok + rejected_429 + errors`` always holds.

    Attributes:
        total: Chat-completion requests received.
        ok: Answered with HTTP 200.
        rejected_429: Answered with HTTP 429, by the rate limiter or scripted.
        errors: Answered with any other non-200 status (scripted errors, bad
            JSON, an empty script).
        in_flight_max: Highest number of admitted requests being processed at
            the same time (rate-limited rejections are never admitted).
    """

    total: int = 0
    ok: int = 0
    rejected_429: int = 0
    errors: int = 0
    in_flight_max: int = 0


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Estimate prompt tokens of a chat-completion request. NOT real usage.

    The estimate is ``(characters of all text parts) // 4 + 85`` per image
    part. Text parts are string message contents and ``{"type": "text"}``
    parts; image parts are ``{"type": "image_url"}`` parts. The (large) base64
    image payload is deliberately not counted as text.

    Args:
        body: The parsed request body.

    Returns:
        The deterministic estimate.
    """
    chars = 0
    images = 0
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    chars += len(part["text"])
                elif part.get("type") == "image_url":
                    images += 1
    return chars // 4 + IMAGE_PART_TOKENS * images


def _to_reply(item: ReplyLike) -> Reply:
    return item if isinstance(item, Reply) else Reply(content=item)


def _answer_text(content: Any) -> str | None:
    if content is None:
        return None
    if isinstance(content, str):
        return content
    dump = getattr(content, "model_dump_json", None)
    if callable(dump):
        return cast(str, dump())
    return json.dumps(content, ensure_ascii=False)


def _format_reset(seconds: float) -> str:
    """Format a duration like OpenAI's ``x-ratelimit-reset-*`` headers ("1.5s", "20ms", "1m0s")."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    rest_text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{rest_text}s" if minutes else f"{rest_text}s"


def _requested_tool_name(body: dict[str, Any]) -> str | None:
    """Name of the function to answer with: the forced ``tool_choice``, else the first tool."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return cast(str, function["name"])
    first = tools[0]
    if isinstance(first, dict):
        function = first.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return cast(str, function["name"])
    return "function"


def _error_body(status: int, message: str, error_type: str | None, code: str | None) -> bytes:
    default_type, default_code = _ERROR_KINDS.get(
        status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    )
    error = {
        "message": message,
        "type": error_type or default_type,
        "param": None,
        "code": code if code is not None else default_code,
    }
    return json.dumps({"error": error}).encode()


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: a client hanging up is not the simulator's problem."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    server_version = "viewfinder-simulator"
    sys_version = ""

    @property
    def _sim(self) -> Simulator:
        return cast(_Server, self.server).simulator

    def setup(self) -> None:
        super().setup()
        self._sim._register(self.connection)

    def finish(self) -> None:
        self._sim._unregister(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Print nothing."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """Fixed ``Date`` header so recorded cassettes are byte-stable."""
        return _FIXED_DATE

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("content-length") or 0)
        if length < 0 or length > _MAX_BODY_BYTES:
            raise ValueError("bad content-length")
        return self.rfile.read(length) if length else b""

    def _send(self, response: _Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        if path == "/health":
            self._send(_Response(200, b'{"status":"ok"}'))
        elif path in _MODELS_PATHS:
            self._send(_Response(200, self._sim._models_body()))
        elif _FILES_API_PATH.match(path):
            self._send(self._sim._handle_files_api("GET", path, url.query, b"", ""))
        else:
            self._send(
                _Response(404, _error_body(404, f"simulator: no route GET {path}", None, None))
            )

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        deployment: str | None = None
        azure = _AZURE_PATH.match(path)
        if azure:
            deployment = azure.group("name")
        elif _FILES_API_PATH.match(path):
            try:
                raw_body = self._read_body()
            except (OSError, ValueError):
                self.close_connection = True
                self._send(_Response(400, _error_body(400, "simulator: bad body", None, None)))
                return
            content_type = self.headers.get("content-type", "")
            self._send(self._sim._handle_files_api("POST", path, url.query, raw_body, content_type))
            return
        elif path not in _CHAT_PATHS:
            try:
                self._read_body()
            except (OSError, ValueError):
                self.close_connection = True
            message = f"simulator: no route POST {path}"
            self._send(_Response(404, _error_body(404, message, None, None)))
            return
        try:
            raw = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            raw = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._send(self._sim._handle_chat(raw, headers, deployment))


class Simulator:
    """Scripted OpenAI-compatible server on 127.0.0.1; it is NOT a model.

    Every chat completion answer is the next :class:`Reply` queued with
    :meth:`script` (FIFO), else ``default(request_body)``, else an HTTP 500
    ``"simulator: no scripted reply left"`` so a test sending more requests than
    it scripted fails loudly.

    Args:
        host: Interface to bind; keep it on loopback.
        port: Port to bind; 0 picks a free one.
        latency: Seconds every admitted chat completion waits before
            answering (added to :attr:`Reply.delay`).
        max_concurrency: A request arriving while this many are being
            processed gets a 429 with ``retry-after-ms``.
        rpm_limit: Requests admitted per sliding window (``rate_window``).
        tpm_limit: Tokens admitted per sliding window. A request is charged its
            :func:`estimate_prompt_tokens` plus its ``max_completion_tokens`` /
            ``max_tokens`` if set (as OpenAI's limiter does).
        default: Called with the request body when the script is empty.
        model_name: ``model`` of every answer; default echoes the request's
            ``model`` (or the Azure deployment name).
        rate_window: Length in seconds of the rate-limit window (60 like the
            real service; shorter values let tests watch slots free up).
        batch_polls: Retrieves of a batch before it reaches its final status
            (the first one moves it to ``in_progress``); at least 1.

    Attributes:
        requests: Every chat-completion request body that parsed as a JSON
            object, in arrival order (including ones then rate limited).
        headers_seen: The request headers (lower-cased names) of those same
            requests, index-aligned with :attr:`requests`.
        api_calls: ``"<METHOD> <path>"`` of every Files / Batches API request, in
            arrival order (e.g. ``"POST /v1/files"``), to count uploads and creates.
        batch_requests: The ``body`` of every batch input line answered, in the
            order answered (batch lines are not in :attr:`requests` or :attr:`stats`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        max_concurrency: int | None = None,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        default: Callable[[dict[str, Any]], ReplyLike] | None = None,
        model_name: str | None = None,
        rate_window: float = 60.0,
        batch_polls: int = 2,
    ) -> None:
        for name, limit in (
            ("max_concurrency", max_concurrency),
            ("rpm_limit", rpm_limit),
            ("tpm_limit", tpm_limit),
        ):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be at least 1, got {limit}")
        if latency < 0 or rate_window <= 0:
            raise ValueError("latency must be >= 0 and rate_window > 0")
        if batch_polls < 1:
            raise ValueError(f"batch_polls must be at least 1, got {batch_polls}")
        self.host = host
        self.latency = latency
        self.max_concurrency = max_concurrency
        self.rpm_limit = rpm_limit
        self.tpm_limit = tpm_limit
        self.default = default
        self.model_name = model_name
        self.rate_window = rate_window
        self.batch_polls = batch_polls
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.api_calls: list[str] = []
        self.batch_requests: list[dict[str, Any]] = []
        self._files: dict[str, _StoredFile] = {}
        self._batches: dict[str, _StoredBatch] = {}
        self._batch_scripts: deque[BatchScript] = deque()
        self._file_counter = 0
        self._batch_counter = 0
        self._requested_port = port
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._stats = SimulatorStats()
        self._counter = 0
        self._in_flight = 0
        self._in_flight_ends: dict[int, float] = {}
        self._window: deque[tuple[float, int]] = deque()
        self._window_tokens = 0
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Simulator:
        """Bind and serve in a daemon thread.

        Returns:
            ``self``, for chaining.

        Raises:
            RuntimeError: If already started.
        """
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        server = _Server((self.host, self._requested_port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"viewfinder-simulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open keep-alive connections and close the socket.

        Handlers that are sleeping (latency/delay) are woken up. Safe to call
        twice or before :meth:`start`.
        """
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        with self._lock:
            self._stopping.set()
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins the handler threads
        if thread is not None:
            thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: If not started.
        """
        if self._server is None:
            raise RuntimeError("simulator not started")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``; use as ``azure_endpoint`` for ``AzureOpenAI``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``; use as ``base_url`` for ``OpenAI``."""
        return f"{self.endpoint}/v1"

    # ------------------------------------------------------------------ scripting

    def script(self, *replies: ReplyLike) -> None:
        """Queue answers for successive chat-completion requests (FIFO).

        Args:
            *replies: :class:`Reply` objects, or contents (``dict``, ``list``,
                ``str``) that become ``Reply(content=...)``.
        """
        with self._lock:
            self._queue.extend(_to_reply(item) for item in replies)

    def script_batch(self, *scripts: BatchScript) -> None:
        """Queue how successive created batches end (FIFO); unscripted ones complete.

        Args:
            *scripts: One :class:`BatchScript` per batch to be created.
        """
        with self._lock:
            self._batch_scripts.extend(scripts)

    @property
    def pending(self) -> int:
        """Number of scripted replies not consumed yet."""
        with self._lock:
            return len(self._queue)

    @property
    def stats(self) -> SimulatorStats:
        """A snapshot of the counters."""
        with self._lock:
            return replace(self._stats)

    def reset(self) -> None:
        """Forget the scripts, recorded requests, counters, ids, rate windows, files and batches."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.headers_seen.clear()
            self._stats = SimulatorStats(in_flight_max=self._in_flight)
            self._counter = 0
            self._window.clear()
            self._window_tokens = 0
            self.api_calls.clear()
            self.batch_requests.clear()
            self._files.clear()
            self._batches.clear()
            self._batch_scripts.clear()
            self._file_counter = 0
            self._batch_counter = 0

    # ------------------------------------------------------------------ internals

    def _register(self, connection: socket.socket) -> None:
        with self._lock:
            if self._stopping.is_set():
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._connections.add(connection)

    def _unregister(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _models_body(self) -> bytes:
        name = self.model_name or SYSTEM_FINGERPRINT
        model = {"id": name, "object": "model", "created": CREATED, "owned_by": SYSTEM_FINGERPRINT}
        return json.dumps({"object": "list", "data": [model]}).encode()

    def _count(self, status: int) -> None:
        """Bump the outcome counter; caller holds the lock."""
        if status == 200:
            self._stats.ok += 1
        elif status == 429:
            self._stats.rejected_429 += 1
        else:
            self._stats.errors += 1

    def _expire(self, now: float) -> None:
        """Drop window entries older than the window; caller holds the lock."""
        while self._window and self._window[0][0] <= now - self.rate_window:
            self._window_tokens -= self._window.popleft()[1]

    def _ratelimit_headers(self, now: float) -> dict[str, str]:
        """``x-ratelimit-*`` headers for the current window; caller holds the lock."""
        headers: dict[str, str] = {}
        reset = _format_reset(self._window[-1][0] + self.rate_window - now if self._window else 0)
        if self.rpm_limit is not None:
            headers["x-ratelimit-limit-requests"] = str(self.rpm_limit)
            headers["x-ratelimit-remaining-requests"] = str(
                max(0, self.rpm_limit - len(self._window))
            )
            headers["x-ratelimit-reset-requests"] = reset
        if self.tpm_limit is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.tpm_limit)
            headers["x-ratelimit-remaining-tokens"] = str(
                max(0, self.tpm_limit - self._window_tokens)
            )
            headers["x-ratelimit-reset-tokens"] = reset
        return headers

    def _rate_limited(self, n: int, body: dict[str, Any], now: float) -> _Response | None:
        """Apply the concurrency cap and the rpm/tpm windows; caller holds the lock.

        Returns:
            A 429 response, or ``None`` when admitted (the request is then
            counted in flight and in the window).
        """
        request_id = {"x-request-id": f"req_sim_{n}"}
        if self.max_concurrency is not None and self._in_flight >= self.max_concurrency:
            soonest = min(self._in_flight_ends.values(), default=now) - now
            headers = {**request_id, "retry-after-ms": str(max(1, math.ceil(soonest * 1000)))}
            message = (
                f"simulator: {self._in_flight} requests in flight, "
                f"max_concurrency={self.max_concurrency}"
            )
            return _Response(429, _error_body(429, message, "requests", None), headers)

        self._expire(now)
        cost = estimate_prompt_tokens(body)
        for key in ("max_completion_tokens", "max_tokens"):
            if isinstance(body.get(key), int):
                cost += body[key]
                break
        wait: float | None = None
        message = ""
        kind = "requests"
        if self.rpm_limit is not None and len(self._window) >= self.rpm_limit:
            wait = self._window[0][0] + self.rate_window - now
            message = f"simulator: rate limit reached for requests (rpm_limit={self.rpm_limit})"
        elif self.tpm_limit is not None and self._window_tokens + cost > self.tpm_limit:
            kind = "tokens"
            if cost > self.tpm_limit:
                message = (
                    f"simulator: request too large: {cost} tokens > tpm_limit={self.tpm_limit}"
                )
                wait = self.rate_window
            else:
                freed = self.tpm_limit - self._window_tokens
                wait = 0.0
                for at, tokens in self._window:
                    freed += tokens
                    wait = at + self.rate_window - now
                    if freed >= cost:
                        break
                message = (
                    f"simulator: rate limit reached for tokens (tpm_limit={self.tpm_limit}, "
                    f"used {self._window_tokens}, requested {cost})"
                )
        if wait is not None:
            wait = max(0.001, wait)
            headers = {
                **request_id,
                "retry-after": str(max(1, math.ceil(wait))),
                "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
                **self._ratelimit_headers(now),
            }
            return _Response(429, _error_body(429, message, kind, None), headers)

        if self.rpm_limit is not None or self.tpm_limit is not None:
            self._window.append((now, cost))
            self._window_tokens += cost
        return None

    def _handle_chat(
        self, raw: bytes | None, headers: dict[str, str], deployment: str | None
    ) -> _Response:
        """Answer one chat-completion request (runs in a handler thread)."""
        body: Any = None
        problem: str | None = None
        if raw is None:
            problem = "simulator: could not read the request body"
        else:
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                problem = f"simulator: request body is not valid JSON: {exc}"
            else:
                if not isinstance(body, dict):
                    problem = "simulator: request body must be a JSON object"
                elif not isinstance(body.get("messages"), list):
                    problem = "simulator: 'messages' must be a list"

        with self._lock:
            self._counter += 1
            self._stats.total += 1
            n = self._counter
            if isinstance(body, dict):
                self.requests.append(body)
                self.headers_seen.append(headers)
            if problem is not None:
                self._count(400)
                return _Response(
                    400, _error_body(400, problem, None, None), {"x-request-id": f"req_sim_{n}"}
                )
            assert isinstance(body, dict)
            now = time.monotonic()
            limited = self._rate_limited(n, body, now)
            if limited is not None:
                self._count(429)
                return limited
            self._in_flight += 1
            self._stats.in_flight_max = max(self._stats.in_flight_max, self._in_flight)
            reply = self._queue.popleft() if self._queue else None
            ratelimit_headers = self._ratelimit_headers(now)
            planned = self.latency + (reply.delay if reply is not None else 0.0)
            self._in_flight_ends[n] = now + planned

        status = 500
        try:
            if reply is None and self.default is not None:
                try:
                    reply = _to_reply(self.default(body))
                except Exception as exc:
                    response = _Response(
                        500, _error_body(500, f"simulator: default raised {exc!r}", None, None)
                    )
                    return self._finish(response, n, ratelimit_headers)
                with self._lock:
                    self._in_flight_ends[n] = now + self.latency + reply.delay
            if reply is None:
                message = "simulator: no scripted reply left"
                wait_time = self.latency
                response = _Response(500, _error_body(500, message, None, None))
            else:
                wait_time = self.latency + reply.delay
                try:
                    response = self._build(reply, body, n, deployment)
                except Exception as exc:  # a reply the simulator cannot render
                    message = f"simulator: could not render the scripted reply: {exc!r}"
                    response = _Response(500, _error_body(500, message, None, None))
            if wait_time > 0:
                self._stopping.wait(wait_time)
            status = response.status
            return self._finish(response, n, ratelimit_headers)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._in_flight_ends.pop(n, None)
                self._count(status)

    @staticmethod
    def _finish(response: _Response, n: int, ratelimit_headers: dict[str, str]) -> _Response:
        lowered = {name.lower() for name in response.headers}
        extra = {k: v for k, v in ratelimit_headers.items() if k not in lowered}
        if "x-request-id" not in lowered:
            extra["x-request-id"] = f"req_sim_{n}"
        response.headers = {**extra, **response.headers}
        return response

    def _build(
        self, reply: Reply, body: dict[str, Any], n: int, deployment: str | None
    ) -> _Response:
        """Render a scripted reply into a response for this request."""
        if reply.status != 200:
            error = _error_body(
                reply.status, reply.error_message, reply.error_type, reply.error_code
            )
            return _Response(reply.status, error, dict(reply.headers))

        text = _answer_text(reply.content)
        tool_name = _requested_tool_name(body)
        tool_call: dict[str, Any] | None = None
        if tool_name is not None and text is not None:
            tool_call = {
                "id": f"call_sim_{n}",
                "type": "function",
                "function": {"name": tool_name, "arguments": text},
            }
        finish_reason = reply.finish_reason or ("tool_calls" if tool_call else "stop")
        prompt_tokens = (
            reply.prompt_tokens if reply.prompt_tokens is not None else estimate_prompt_tokens(body)
        )
        completion_tokens = (
            reply.completion_tokens
            if reply.completion_tokens is not None
            else len(text or reply.refusal or "") // 4 + 1
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        model = self.model_name or body.get("model") or deployment or SYSTEM_FINGERPRINT
        common = {
            "id": f"chatcmpl-sim-{n}",
            "created": CREATED,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

        if body.get("stream") is True:
            stream_body = self._stream(common, text, tool_call, reply, finish_reason, usage, body)
            return _Response(200, stream_body, dict(reply.headers), "text/event-stream")

        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if tool_call else text,
            "refusal": reply.refusal,
        }
        if tool_call:
            message["tool_calls"] = [tool_call]
        completion = {
            **common,
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
            ],
            "usage": usage,
        }
        return _Response(200, json.dumps(completion).encode(), dict(reply.headers))

    @staticmethod
    def _stream(
        common: dict[str, Any],
        text: str | None,
        tool_call: dict[str, Any] | None,
        reply: Reply,
        finish_reason: str,
        usage: dict[str, Any],
        body: dict[str, Any],
    ) -> bytes:
        """Render a reply as a (single-content-chunk) server-sent-events stream."""
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            data: dict[str, Any] = {**common, "object": "chat.completion.chunk"}
            data["choices"] = [choice]
            if include_usage:
                data["usage"] = None
            return data

        chunks: list[dict[str, Any]] = []
        if tool_call:
            head = {**tool_call, "index": 0, "function": {**tool_call["function"], "arguments": ""}}
            chunks.append(chunk({"role": "assistant", "content": None, "tool_calls": [head]}, None))
            arguments = tool_call["function"]["arguments"]
            chunks.append(
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}, None)
            )
        else:
            chunks.append(chunk({"role": "assistant", "content": "", "refusal": None}, None))
            if text:
                chunks.append(chunk({"content": text}, None))
        if reply.refusal:
            chunks.append(chunk({"refusal": reply.refusal}, None))
        chunks.append(chunk({}, finish_reason))
        if include_usage:
            chunks.append(
                {**common, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            )
        events = [f"data: {json.dumps(item)}\n\n" for item in chunks]
        events.append("data: [DONE]\n\n")
        return "".join(events).encode()

    # ------------------------------------------------------------ files and batches

    def _handle_files_api(
        self, method: str, path: str, query: str, raw: bytes, content_type: str
    ) -> _Response:
        """Answer one Files / Batches API request (runs in a handler thread)."""
        match = _FILES_API_PATH.match(path)
        assert match is not None
        kind, object_id, action = match.group("kind", "id", "action")
        with self._lock:
            self.api_calls.append(f"{method} {path}")
        if kind == "files":
            if method == "POST" and object_id is None:
                return self._upload_file(raw, content_type)
            if method == "GET" and object_id is not None:
                return self._get_file(object_id, content=action == "content")
        elif action is None:
            if method == "POST" and object_id is None:
                return self._create_batch(raw)
            if method == "GET" and object_id is None:
                return self._list_batches(query)
            if method == "GET" and object_id is not None:
                return self._retrieve_batch(object_id)
        message = f"simulator: no route {method} {path}"
        return _Response(404, _error_body(404, message, None, None))

    @staticmethod
    def _json(data: Any, status: int = 200) -> _Response:
        return _Response(status, json.dumps(data).encode())

    @staticmethod
    def _client_error(status: int, message: str) -> _Response:
        return _Response(status, _error_body(status, f"simulator: {message}", None, None))

    def _store_file(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        """Keep `data` as a new file; caller holds the lock."""
        self._file_counter += 1
        file_id = f"file-sim-{self._file_counter}"
        meta: dict[str, Any] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": CREATED,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self._files[file_id] = _StoredFile(meta, data)
        return meta

    def _upload_file(self, raw: bytes, content_type: str) -> _Response:
        try:
            fields = _multipart_fields(content_type, raw)
        except ValueError as exc:
            return self._client_error(400, f"the upload is not multipart/form-data: {exc}")
        filename, data = fields.get("file", (None, b""))
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if filename is None or not purpose:
            return self._client_error(400, "an upload needs a 'file' part and a 'purpose'")
        with self._lock:
            meta = self._store_file(filename, purpose, data)
        return self._json(meta)

    def _get_file(self, file_id: str, *, content: bool) -> _Response:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            return self._client_error(404, f"no such file {file_id!r}")
        if content:
            return _Response(200, stored.data, content_type="application/octet-stream")
        return self._json(stored.meta)

    def _create_batch(self, raw: bytes) -> _Response:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("endpoint"), str):
            return self._client_error(400, "a batch needs 'input_file_id' and 'endpoint'")
        if body.get("completion_window") != "24h":
            return self._client_error(400, "'completion_window' must be '24h'")
        with self._lock:
            input_file_id = body.get("input_file_id")
            if not isinstance(input_file_id, str) or input_file_id not in self._files:
                return self._client_error(404, f"no such file {input_file_id!r}")
            self._batch_counter += 1
            batch: dict[str, Any] = {
                "id": f"batch_sim_{self._batch_counter}",
                "object": "batch",
                "endpoint": body["endpoint"],
                "errors": None,
                "input_file_id": input_file_id,
                "completion_window": "24h",
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": CREATED,
                "in_progress_at": None,
                "expires_at": CREATED + 86_400,
                "finalizing_at": None,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelling_at": None,
                "cancelled_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
            }
            script = self._batch_scripts.popleft() if self._batch_scripts else BatchScript()
            self._batches[batch["id"]] = _StoredBatch(batch, script)
            return self._json(batch)

    def _list_batches(self, query: str) -> _Response:
        params = parse_qs(query)
        after = params.get("after", [None])[0]
        try:
            limit = max(1, min(100, int(params.get("limit", ["20"])[0])))
        except ValueError:
            return self._client_error(400, "'limit' must be an integer")
        with self._lock:
            newest_first = [stored.batch for stored in reversed(self._batches.values())]
            ids = [batch["id"] for batch in newest_first]
            start = ids.index(after) + 1 if after in ids else 0
            page = [dict(batch) for batch in newest_first[start : start + limit]]
        return self._json(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": start + limit < len(newest_first),
            }
        )

    def _retrieve_batch(self, batch_id: str) -> _Response:
        """Return the batch, advancing it one step (answering its lines when it finishes)."""
        with self._lock:
            stored = self._batches.get(batch_id)
            if stored is None:
                return self._client_error(404, f"no such batch {batch_id!r}")
            batch = stored.batch
            if batch["status"] in _TERMINAL_BATCH or batch["status"] == "finalizing":
                return self._json(batch)
            stored.polls_seen += 1
            data = self._files[batch["input_file_id"]].data
            if batch["status"] == "validating":
                problems = self._validate_batch(batch, data)
                if problems:
                    self._fail_batch(batch, problems)
                    return self._json(batch)
                batch["status"], batch["in_progress_at"] = "in_progress", CREATED
            polls = stored.script.polls if stored.script.polls is not None else self.batch_polls
            if stored.polls_seen < polls:
                return self._json(batch)
            if stored.script.status == "failed":
                problem = {"code": "scripted_failure", "message": stored.script.error_message}
                self._fail_batch(batch, [{**problem, "param": None, "line": None}])
                return self._json(batch)
            batch["status"], batch["finalizing_at"] = "finalizing", CREATED
        self._run_batch(stored, data)
        with self._lock:
            return self._json(batch)

    @staticmethod
    def _validate_batch(batch: dict[str, Any], data: bytes) -> list[dict[str, Any]]:
        """Validation errors of the input file (empty when valid); sets the total count."""
        lines = [line for line in data.splitlines() if line.strip()]
        seen: set[str] = set()
        problems = [
            problem
            for number, line in enumerate(lines, start=1)
            if (problem := _batch_line_problem(number, line, batch["endpoint"], seen)) is not None
        ]
        if not lines:
            problems.append({"code": "empty_file", "message": "no requests", "param": None})
        batch["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
        return problems

    @staticmethod
    def _fail_batch(batch: dict[str, Any], problems: list[dict[str, Any]]) -> None:
        batch["status"], batch["failed_at"] = "failed", CREATED
        batch["errors"] = {"object": "list", "data": problems}

    def _run_batch(self, stored: _StoredBatch, data: bytes) -> None:
        """Answer every input line through the script; write the output and error files."""
        script, batch = stored.script, stored.batch
        outputs: list[bytes] = []
        errors: list[bytes] = []
        lines = [json.loads(line) for line in data.splitlines() if line.strip()]
        for index, request in enumerate(lines):
            if script.status in ("expired", "cancelled") and index >= script.answered:
                code = f"batch_{script.status}"
                error = {"code": code, "message": f"simulator: the batch was {script.status}"}
                record = {"id": None, "custom_id": request["custom_id"], "response": None}
                errors.append(json.dumps({**record, "error": error}).encode())
                continue
            record = self._answer_batch_line(request)
            ok = record["response"]["status_code"] == 200
            (outputs if ok else errors).append(json.dumps(record).encode())
        with self._lock:
            stem = batch["id"]
            if outputs:
                output = self._store_file(f"{stem}_output.jsonl", "batch_output", _jsonl(outputs))
                batch["output_file_id"] = output["id"]
            if errors:
                error_file = self._store_file(f"{stem}_error.jsonl", "batch_output", _jsonl(errors))
                batch["error_file_id"] = error_file["id"]
            total = len(lines)
            batch["request_counts"] = {
                "total": total,
                "completed": len(outputs),
                "failed": len(errors),
            }
            batch["status"], batch[f"{script.status}_at"] = script.status, CREATED

    def _answer_batch_line(self, request: dict[str, Any]) -> dict[str, Any]:
        """One output-file record: the scripted reply to `request["body"]`."""
        body = request["body"]
        with self._lock:
            self._counter += 1
            n = self._counter
            self.batch_requests.append(body)
            reply = self._queue.popleft() if self._queue else None
        response: _Response | None = None
        if reply is None and self.default is not None:
            try:
                reply = _to_reply(self.default(body))
            except Exception as exc:
                message = f"simulator: default raised {exc!r}"
                response = _Response(500, _error_body(500, message, None, None))
        if response is None and reply is None:
            message = "simulator: no scripted reply left"
            response = _Response(500, _error_body(500, message, None, None))
        if response is None and reply is not None:
            try:
                response = self._build(reply, {**body, "stream": False}, n, None)
            except Exception as exc:
                message = f"simulator: could not render the scripted reply: {exc!r}"
                response = _Response(500, _error_body(500, message, None, None))
        assert response is not None
        return {
            "id": f"batch_req_sim_{n}",
            "custom_id": request["custom_id"],
            "response": {
                "status_code": response.status,
                "request_id": response.headers.get("x-request-id", f"req_sim_{n}"),
                "body": json.loads(response.body),
            },
            "error": None,
        }


def _jsonl(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)
