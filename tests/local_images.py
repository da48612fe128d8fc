"""A throwaway image server on 127.0.0.1 for tests whose inputs are http URLs."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest


@contextmanager
def serve_images(images: Mapping[str, bytes], seen: list[str] | None = None) -> Iterator[str]:
    """Serve `images` by path (the query string is ignored); yield the base URL.

    Args:
        images: Body by path, e.g. `{"/a.png": b"..."}`; other paths are 404.
        seen: If given, receives every requested path with its query string.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if seen is not None:
                seen.append(self.path)
            body = images.get(urlsplit(self.path).path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        yield base


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 in a thread; yield its base URL, stop it on exit."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def trust_local_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the library fetch from `serve_images`: no proxy in between, and its loopback
    host allow-listed (internal addresses are refused by default)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VIEWFINDER_ALLOW_HOSTS", "127.0.0.1")
