"""An in-process scripted OpenAI endpoint for fast unit tests: no server, no socket.

:class:`FakeOpenAI` answers chat completions from a script, like
:class:`~viewfinder.testing.simulator.Simulator`, in the same
:class:`~viewfinder.testing.simulator.Reply` vocabulary and the same JSON (both render
through :mod:`viewfinder.testing.simulator.wire`), but inside the test's process: its
openai clients send through an ``httpx2.MockTransport`` (as instructor's and openai's own
tests do), so a request costs microseconds and nothing listens on a port.

It is **not a model**: every answer is one the test queued with :meth:`FakeOpenAI.script`
(FIFO), else what ``default(request_body)`` returns, else an HTTP 500 ``"fake: no scripted
reply left"`` so a test sending more requests than it scripted fails loudly. Usage counts
are the simulator's deterministic estimates unless the :class:`Reply` sets them.

Use the simulator instead for end-to-end tests that need real HTTP: rate limiting
(``max_concurrency``, ``rpm_limit``, ``tpm_limit``), the Files and Batches APIs, cassettes,
``viewfinder serve``, the CLI, or the sync ``analyze_many`` (it copies the async client onto
an event loop of its own, which a client with a custom transport does not allow; use
``aanalyze_many`` with the fake).

Example:
    >>> import viewfinder as vf
    >>> from viewfinder.testing.fakes import FakeOpenAI
    >>> from viewfinder.testing.simulator import Reply
    >>> fake = FakeOpenAI()
    >>> fake.script(Reply(None, refusal="I can't help with that"))
    >>> analyzer = vf.ImageAnalyzer(**fake.clients(), cache=False)
    >>> analyzer.analyze("photo.jpg", features=["caption"])  # doctest: +SKIP
    Traceback (most recent call last):
    viewfinder.errors.ContentFilterError: the model refused to answer: I can't help with that

``Reply.delay`` is slept in the transport (``asyncio.sleep`` with the async client, so an
async deadline cancels it); client timeouts do not apply to an in-process transport.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx2
import openai

from viewfinder.testing.simulator.replies import Reply, ReplyLike, to_reply
from viewfinder.testing.simulator.wire import Response, error_body, render_reply

__all__ = ["FAKE_API_KEY", "FAKE_BASE_URL", "FakeOpenAI"]

FAKE_BASE_URL = "https://api.openai.com/v1"
"""Default base URL of the fake's clients. Nothing is sent there (the transport answers);
it makes the fake resolve like OpenAI itself (structured outputs, `json_schema` mode)."""
FAKE_API_KEY = "sk-fake-viewfinder"
"""API key of the fake's clients: never checked, never sent over a network."""

_CHAT_PATH = re.compile(
    r"^(?:/openai/deployments/(?P<deployment>[^/]+)|(?:/v1)?)/chat/completions/?$"
)


class FakeOpenAI:
    """Scripted chat completions answered in-process through ``httpx2.MockTransport``.

    Args:
        *replies: Answers to queue at once (see :meth:`script`).
        default: Called with the request body when the script is empty.
        model_name: ``model`` of every answer; default echoes the request's ``model``.

    Attributes:
        requests: Every chat-completion request body, in arrival order.
        headers_seen: The request headers (lower-cased names) of those requests,
            index-aligned with :attr:`requests`.
    """

    def __init__(
        self,
        *replies: ReplyLike,
        default: Callable[[dict[str, Any]], ReplyLike] | None = None,
        model_name: str | None = None,
    ) -> None:
        self.default = default
        self.model_name = model_name
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque(to_reply(item) for item in replies)
        self._counter = 0

    # --- scripting -----------------------------------------------------------------------

    def script(self, *replies: ReplyLike) -> None:
        """Queue answers for successive chat-completion requests (FIFO).

        Args:
            *replies: :class:`Reply` objects, or contents (``dict``, ``list``, ``str``,
                a pydantic model) that become ``Reply(content=...)``.
        """
        with self._lock:
            self._queue.extend(to_reply(item) for item in replies)

    @property
    def pending(self) -> int:
        """Number of scripted replies not consumed yet."""
        with self._lock:
            return len(self._queue)

    # --- clients -------------------------------------------------------------------------

    def http_client(self) -> httpx2.Client:
        """An httpx2 client (openai's defaults) whose requests this fake answers.

        Pass it as ``http_client=`` to any sync openai client, e.g. ``openai.AzureOpenAI``.
        """
        return openai.DefaultHttpxClient(transport=httpx2.MockTransport(self._handle))

    def async_http_client(self) -> httpx2.AsyncClient:
        """The async twin of :meth:`http_client`."""
        return openai.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(self._ahandle))

    def client(self, *, base_url: str = FAKE_BASE_URL, **options: Any) -> openai.OpenAI:
        """An ``openai.OpenAI`` answered by this fake (``max_retries=0`` unless overridden).

        Args:
            base_url: The base URL the client believes it talks to (decides the provider
                kind, and so viewfinder's default mode and the cache keys' endpoint).
            **options: More ``openai.OpenAI`` arguments.
        """
        settings: dict[str, Any] = {"api_key": FAKE_API_KEY, "max_retries": 0, **options}
        return openai.OpenAI(base_url=base_url, http_client=self.http_client(), **settings)

    def async_client(self, *, base_url: str = FAKE_BASE_URL, **options: Any) -> openai.AsyncOpenAI:
        """The async twin of :meth:`client`."""
        settings: dict[str, Any] = {"api_key": FAKE_API_KEY, "max_retries": 0, **options}
        return openai.AsyncOpenAI(
            base_url=base_url, http_client=self.async_http_client(), **settings
        )

    def clients(self, *, base_url: str = FAKE_BASE_URL) -> dict[str, Any]:
        """``client=`` and ``async_client=`` for an analyzer: ``ImageAnalyzer(**fake.clients())``.

        Both clients are new; the analyzer closes them in its ``close()``.
        """
        return {
            "client": self.client(base_url=base_url),
            "async_client": self.async_client(base_url=base_url),
        }

    # --- answering -----------------------------------------------------------------------

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        """Answer one request from a sync client."""
        reply, response = self._answer(request)
        if reply is not None and reply.delay > 0:
            time.sleep(reply.delay)
        return response

    async def _ahandle(self, request: httpx2.Request) -> httpx2.Response:
        """Answer one request from an async client."""
        reply, response = self._answer(request)
        if reply is not None and reply.delay > 0:
            await asyncio.sleep(reply.delay)
        return response

    def _answer(self, request: httpx2.Request) -> tuple[Reply | None, httpx2.Response]:
        """The scripted reply to `request` (None when none was used) and its response."""
        match = _CHAT_PATH.match(request.url.path)
        if request.method != "POST" or match is None:
            message = f"fake: no route {request.method} {request.url.path}"
            return None, self._to_httpx(Response(404, error_body(404, message, None, None)), 0)
        try:
            body = json.loads(request.content)
        except (ValueError, UnicodeDecodeError) as exc:
            body = f"fake: request body is not valid JSON: {exc}"
        with self._lock:
            self._counter += 1
            n = self._counter
            if isinstance(body, dict):
                self.requests.append(body)
                self.headers_seen.append({k.lower(): v for k, v in request.headers.items()})
            reply = self._queue.popleft() if self._queue else None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            problem = body if isinstance(body, str) else "fake: 'messages' must be a list"
            return None, self._to_httpx(Response(400, error_body(400, problem, None, None)), n)
        if reply is None and self.default is not None:
            try:
                reply = to_reply(self.default(body))
            except Exception as exc:  # as the simulator: a 500, not a crash in the client
                message = f"fake: default raised {exc!r}"
                return None, self._to_httpx(Response(500, error_body(500, message, None, None)), n)
        if reply is None:
            message = "fake: no scripted reply left"
            return None, self._to_httpx(Response(500, error_body(500, message, None, None)), n)
        rendered = render_reply(
            reply, body, n, model_name=self.model_name, deployment=match.group("deployment")
        )
        return reply, self._to_httpx(rendered, n)

    @staticmethod
    def _to_httpx(response: Response, n: int) -> httpx2.Response:
        headers = {"content-type": response.content_type, "x-request-id": f"req_sim_{n}"}
        headers.update({name.lower(): value for name, value in response.headers.items()})
        return httpx2.Response(response.status, headers=headers, content=response.body)
