"""A `requests` transport adapter answered in-process by an ASGI app: no socket, no port.

The Computer Vision 3.2 import swap (`viewfinder.azure.computervision`) mounts it on the
`requests.Session` of Microsoft's msrest client, so each SDK call is answered by
`viewfinder serve`'s own FastAPI app (`viewfinder.compat.server.create_app`: the 3.2
routes of `compat/ops32.py` and `compat/read32.py`), byte for byte as over HTTP.

Why an ASGI app on a private event loop, rather than calling the service code directly:
the 3.2 operations are FastAPI routes (no web-framework-free handler as for 4.0), and
Read's operations run as background tasks of the server's event loop after the 202, so
the loop must outlive each call. The adapter owns one event loop in a daemon thread for
the client's lifetime, runs the app's lifespan on it (startup at construction, shutdown
at `shutdown`), and hands each request to the app with `run_coroutine_threadsafe`, as
starlette's TestClient does with its blocking portal (that one needs `httpx`, which
viewfinder does not depend on). Requests from several threads share the one loop.

The adapter never retries (requests' and urllib3's `max_retries` do not apply to it), so
msrest's retry policy, 3 retries of a 5xx by default, does not multiply the engine's.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

__all__ = ["ASGIAdapter"]

_Message = dict[str, Any]


class ASGIAdapter(BaseAdapter):
    """Answers a `requests.Session`'s requests with an ASGI app, on a private event loop.

    Args:
        app: The ASGI application (its lifespan is started here).

    Raises:
        RuntimeError: The app's lifespan startup failed.
    """

    def __init__(self, app: Any) -> None:
        super().__init__()
        self._app = app
        self._state: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="viewfinder-asgi", daemon=True
        )
        self._thread.start()
        self._lifespan_in: asyncio.Queue[_Message] | None = None
        self._lifespan_out: asyncio.Queue[_Message] | None = None
        self._lifespan: asyncio.Future[None] | None = None
        try:
            self._call(self._start())
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coroutine: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # --- the lifespan -------------------------------------------------------------------

    async def _start(self) -> None:
        self._lifespan_in, self._lifespan_out = asyncio.Queue(), asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self._state}
        self._lifespan = asyncio.ensure_future(
            self._app(scope, self._lifespan_in.get, self._lifespan_out.put)
        )
        await self._lifespan_in.put({"type": "lifespan.startup"})
        answer = await self._lifespan_out.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {answer.get('message', '')}")

    async def _finish(self) -> None:
        if self._lifespan_in is None or self._lifespan_out is None or self._lifespan is None:
            return
        await self._lifespan_in.put({"type": "lifespan.shutdown"})
        answer = await self._lifespan_out.get()
        await self._lifespan
        if answer["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"the app did not stop cleanly: {answer.get('message', '')}")

    def shutdown(self) -> None:
        """Run the app's lifespan shutdown, then stop the loop and its thread (idempotent).

        Not `close`: `requests.Session.close` closes its adapters, and msrest closes its
        session after calls when it does not keep it alive; the app must outlive that.
        """
        if self._loop.is_closed():
            return
        try:
            self._call(self._finish())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        """Join the loop's executor threads (`asyncio.to_thread`: decodes, the store),
        then stop the loop and its thread."""
        try:
            self._call(self._loop.shutdown_asyncgens())
            self._call(self._loop.shutdown_default_executor())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    # --- requests ---------------------------------------------------------------------

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """The app's answer to `request`; `verify`, `cert` and `proxies` do nothing.

        Raises:
            requests.exceptions.ReadTimeout: No answer within `timeout` (the read part of
                a `(connect, read)` pair); the request's task is cancelled.
            requests.exceptions.ConnectionError: The adapter was shut down.
        """
        if self._loop.is_closed():
            raise requests.exceptions.ConnectionError("the client is closed", request=request)
        seconds = timeout[1] if isinstance(timeout, tuple) else timeout
        future = asyncio.run_coroutine_threadsafe(self._exchange(request), self._loop)
        try:
            status, headers, body = future.result(seconds)
        except FutureTimeout:
            future.cancel()
            raise requests.exceptions.ReadTimeout(
                f"no answer within {seconds} s", request=request
            ) from None
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict()
        for name, value in headers:
            known = response.headers.get(name)
            response.headers[name] = value if known is None else f"{known}, {value}"
        response.raw = io.BytesIO(body)
        response.reason = _phrase(status)
        response.encoding = get_encoding_from_headers(response.headers)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing: the app lives until `shutdown` (see there)."""

    async def _exchange(
        self, request: requests.PreparedRequest
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One HTTP exchange with the app: the whole body in, the whole answer out."""
        url = urlsplit(request.url or "")
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in _headers(request)]
        if not any(name == b"host" for name, _ in headers):
            headers.append((b"host", url.netloc.encode("latin-1")))
        port = url.port or (443 if url.scheme == "https" else 80)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": (request.method or "GET").upper(),
            "scheme": url.scheme,
            "path": unquote(url.path),
            "raw_path": url.path.encode("latin-1"),
            "query_string": url.query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "server": (url.hostname or "", port),
            "client": None,
            "state": dict(self._state),
        }
        body = _body(request.body)
        sent = False
        start: _Message = {}
        chunks: list[bytes] = []

        async def receive() -> _Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect until the answer is sent
            return {"type": "http.disconnect"}  # pragma: no cover - never reached

        async def send(message: _Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await self._app(scope, receive, send)
        answer = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]
        return int(start.get("status", 500)), answer, b"".join(chunks)


def _headers(request: requests.PreparedRequest) -> Iterable[tuple[str, str]]:
    return [(str(name), str(value)) for name, value in request.headers.items()]


def _body(body: Any) -> bytes:
    """The request body as bytes: msrest sends bytes, text, or (for the stream operations)
    a generator of chunks (`ServiceClient.stream_upload`); requests also allows a file."""
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    read = getattr(body, "read", None)
    if callable(read):
        data = read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return b"".join(
        chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk) for chunk in body
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
