"""A scripted, OpenAI-compatible HTTP server on the loopback interface.

See :mod:`viewfinder.testing.simulator` for what it simulates. This module holds the
HTTP side (routing, bodies, keep-alive connections, lifecycle) and :class:`Simulator`
itself, which takes its chat completions from :class:`ChatCompletions` and its Files and
Batches APIs from :class:`FilesAndBatches`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from viewfinder.testing.simulator.batches import (
    FILES_API_PATH,
    FilesAndBatches,
    StoredBatch,
    StoredFile,
)
from viewfinder.testing.simulator.chat import ChatCompletions, SimulatorStats
from viewfinder.testing.simulator.embeddings import EMBED_PATHS, Embeddings
from viewfinder.testing.simulator.replies import CREATED, BatchScript, Reply, ReplyLike, to_reply
from viewfinder.testing.simulator.wire import Response, error_body, models_body

__all__ = ["Simulator"]

_FIXED_DATE = formatdate(CREATED, usegmt=True)
_AZURE_PATH = re.compile(r"^/openai/deployments/(?P<name>[^/]+)/chat/completions/?$")
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_MAX_BODY_BYTES = 256 * 1024 * 1024


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

    def _send(self, response: Response) -> None:
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
            self._send(Response(200, b'{"status":"ok"}'))
        elif path in _MODELS_PATHS:
            self._send(Response(200, models_body(self._sim.model_name)))
        elif FILES_API_PATH.match(path):
            self._send(self._sim._handle_files_api("GET", path, url.query, b"", ""))
        else:
            self._send(
                Response(404, error_body(404, f"simulator: no route GET {path}", None, None))
            )

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        deployment: str | None = None
        azure = _AZURE_PATH.match(path)
        if azure:
            deployment = azure.group("name")
        elif FILES_API_PATH.match(path):
            try:
                raw_body = self._read_body()
            except (OSError, ValueError):
                self.close_connection = True
                self._send(Response(400, error_body(400, "simulator: bad body", None, None)))
                return
            content_type = self.headers.get("content-type", "")
            self._send(self._sim._handle_files_api("POST", path, url.query, raw_body, content_type))
            return
        elif path in EMBED_PATHS:
            try:
                raw_body = self._read_body()
            except (OSError, ValueError):
                self.close_connection = True
                self._send(Response(400, error_body(400, "simulator: bad body", None, None)))
                return
            lowered = {name.lower(): value for name, value in self.headers.items()}
            self._send(self._sim._handle_embed(path, raw_body, lowered))
            return
        elif path not in _CHAT_PATHS:
            try:
                self._read_body()
            except (OSError, ValueError):
                self.close_connection = True
            message = f"simulator: no route POST {path}"
            self._send(Response(404, error_body(404, message, None, None)))
            return
        try:
            raw = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            raw = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._send(self._sim._handle_chat(raw, headers, deployment))


class Simulator(ChatCompletions, FilesAndBatches, Embeddings):
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
        concurrency_retry_after: Whether that 429 says ``retry-after-ms``; False
            answers it with no rate headers at all, as servers that only cap
            concurrency do (the limiter must then tell it from a rate limit).
        rpm_limit: Requests admitted per sliding window (``rate_window``).
        tpm_limit: Tokens admitted per sliding window. A request is charged its
            :func:`estimate_prompt_tokens` plus its ``max_completion_tokens`` /
            ``max_tokens`` if set (as OpenAI's limiter does).
        default: Called with the request body when the script is empty.
        model_name: ``model`` of every answer; default echoes the request's
            ``model`` (or the Azure deployment name).
        rate_window: Length in seconds of the rate-limit window (60 like the
            real service; shorter values let tests watch slots free up).
        limits_per_minute: State the limits in ``x-ratelimit-limit-*`` per minute
            (``rpm_limit x 60 / rate_window``), as real services do, while counting them
            per ``rate_window``: a client that learns its pace from the header then
            paces at the window's rate, so a window scaled down for speed needs no
            scaling on the client's side (a process of its own, such as
            ``viewfinder serve``, cannot be given one). This is the scripted server's
            choice, not a real service's behaviour; the ``remaining`` and ``reset``
            headers stay the window's. Off (the default): stated per window.
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
        concurrency_retry_after: bool = True,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        default: Callable[[dict[str, Any]], ReplyLike] | None = None,
        model_name: str | None = None,
        rate_window: float = 60.0,
        batch_polls: int = 2,
        limits_per_minute: bool = False,
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
        self.concurrency_retry_after = concurrency_retry_after
        self.rpm_limit = rpm_limit
        self.tpm_limit = tpm_limit
        self.default = default
        self.model_name = model_name
        self.rate_window = rate_window
        self.limits_per_minute = limits_per_minute
        self.batch_polls = batch_polls
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.api_calls: list[str] = []
        self.batch_requests: list[dict[str, Any]] = []
        self._files: dict[str, StoredFile] = {}
        self._batches: dict[str, StoredBatch] = {}
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
        self._init_embeddings()

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
            self._queue.extend(to_reply(item) for item in replies)

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
        self.reset_embeddings()

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
