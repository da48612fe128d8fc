"""`viewfinder serve` (any ASGI app) run by uvicorn in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx2
import uvicorn

from viewfinder.compat.server import ANALYZE_PATH


class Serving:
    """uvicorn in a background thread, on `localhost` and a free port (HTTPS when given
    a certificate and its key)."""

    def __init__(
        self, app: Any, ssl_certfile: str | None = None, ssl_keyfile: str | None = None
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("localhost", 0))
        scheme = "https" if ssl_certfile else "http"
        self.endpoint = f"{scheme}://localhost:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            ws="none",
            lifespan="on",
            http="h11",
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.005)
        return self.endpoint

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def post_analyze(
    endpoint: str, query: str, *, key: str, image: bytes, **kwargs: Any
) -> httpx2.Response:
    """POST to the analyze route with a key header and, unless `json=` is given, `image`
    as an octet-stream body (`headers=` / `content=` override either)."""
    kwargs.setdefault("headers", {"Ocp-Apim-Subscription-Key": key})
    if "json" not in kwargs:
        kwargs["headers"].setdefault("Content-Type", "application/octet-stream")
        kwargs.setdefault("content", image)
    with httpx2.Client(trust_env=False, timeout=10) as client:
        return client.post(f"{endpoint}{ANALYZE_PATH}?{query}", **kwargs)
