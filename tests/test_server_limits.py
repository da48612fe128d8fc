"""`viewfinder serve` under bad input and model-side throttling.

The server runs in this process (uvicorn in a thread) on `localhost`, as in
`test_server.py` (whose fixtures are copied small here, not imported, so the two files
change independently). The model side is `viewfinder.simulator.Simulator` answering
live on 127.0.0.1 with scripted statuses: no cassette, nothing reaches a real model.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from PIL import Image

from viewfinder import DecompressionBombError, ImageAnalyzer, ImageSizeError, RetryPolicy
from viewfinder.azure import ImageAnalysisClient as LookAlikeClient
from viewfinder.server import ANALYZE_PATH, ServerSettings, create_app

KEY = "limits-test-key-0b7d41"
CAT = (Path(__file__).parent / "assets" / "chelsea.png").read_bytes()
QUERY = "api-version=2023-10-01&features=caption"


class _Serving:
    """uvicorn in a background thread, on `localhost` and a free port."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("localhost", 0))
        self.endpoint = f"http://localhost:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_config=None, access_log=False, ws="none", lifespan="on", http="h11"
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


@pytest.fixture
def serve() -> Iterator[Callable[[ServerSettings], str]]:
    """Start a server for some settings; returns its endpoint. Stopped after the test."""
    with ExitStack() as stack:

        def start(settings: ServerSettings) -> str:
            serving = _Serving(create_app(settings))
            stack.callback(serving.stop)
            return serving.start()

        yield start


@pytest.fixture
def offline(serve: Callable[[ServerSettings], str]) -> Iterator[str]:
    """A server whose model endpoint is a closed loopback port: reaching it is a 503."""
    analyzer = ImageAnalyzer(
        base_url="http://127.0.0.1:9/v1",
        api_key="unused",
        model="gpt-4.1-mini",
        cache=False,
        retry=RetryPolicy(max_attempts=1),
    )
    with analyzer:
        yield serve(ServerSettings(api_keys=(KEY,), analyzer=analyzer))


def _post(endpoint: str, query: str = QUERY, **kwargs: Any) -> httpx2.Response:
    kwargs.setdefault("headers", {"Ocp-Apim-Subscription-Key": KEY})
    if "json" not in kwargs:
        kwargs["headers"].setdefault("Content-Type", "application/octet-stream")
        kwargs.setdefault("content", CAT)
    with httpx2.Client(trust_env=False, timeout=10) as client:
        return client.post(f"{endpoint}{ANALYZE_PATH}?{query}", **kwargs)


# --- bad JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"url": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"a": ' * 5_000,
    ],
    ids=["nested-arrays", "nested-url-value", "unclosed-objects"],
)
def test_deeply_nested_json_is_the_services_400(offline: str, body: bytes) -> None:
    headers = {"Ocp-Apim-Subscription-Key": KEY, "Content-Type": "application/json"}
    response = _post(offline, headers=headers, content=body)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "InvalidRequest",
            "message": "The request body must be a JSON object with the image 'url'.",
        }
    }
    assert response.headers["x-ms-error-code"] == "InvalidRequest"


# --- image dimensions -----------------------------------------------------------------


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A valid tiny PNG whose IHDR is patched to declare `width` x `height`."""
    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


SIZE_BODY = {
    "error": {
        "code": "InvalidRequest",
        "message": "Image size is not valid",
        "innererror": {
            "code": "InvalidImageSize",
            "message": "The image dimensions are not allowed to be smaller than 50 x 50 or "
            "larger than 16000 x 16000 pixels",
        },
    }
}


@pytest.mark.parametrize(("width", "height"), [(30_000, 30_000), (16_001, 60), (40, 40)], ids=str)
def test_a_side_out_of_range_is_invalid_image_size_everywhere(
    offline: str, width: int, height: int
) -> None:
    """Library, SDK look-alike and server give the same answer, even for a 30000x30000
    PNG that Pillow refuses as a decompression bomb before its size is known."""
    image = _png_with_declared_size(width, height)
    with ImageAnalyzer(base_url="http://127.0.0.1:9/v1", api_key="unused", cache=False) as library:
        with pytest.raises(ImageSizeError) as caught:
            library.analyze(image, features=["caption"])
        assert caught.value.limit == "dimensions"

        lookalike = LookAlikeClient(
            "https://unused.example", AzureKeyCredential(KEY), analyzer=library
        )
        with lookalike, pytest.raises(HttpResponseError) as refused:
            lookalike.analyze(image, ["caption"])
    assert refused.value.status_code == 400 and refused.value.error is not None
    assert refused.value.error.innererror == SIZE_BODY["error"]["innererror"]

    response = _post(offline, content=image)
    assert response.status_code == 400
    assert response.json() == SIZE_BODY


def test_too_many_pixels_within_the_side_limits_is_invalid_image_size(offline: str) -> None:
    """Over the pixel ceiling, within the sides: still a size problem, not a format one."""
    image = _png_with_declared_size(16_000, 15_000)
    with (
        ImageAnalyzer(base_url="http://127.0.0.1:9/v1", api_key="unused", cache=False) as library,
        pytest.raises(DecompressionBombError),
    ):
        library.analyze(image, features=["caption"])
    response = _post(offline, content=image)
    assert response.status_code == 400
    inner = response.json()["error"]["innererror"]
    assert inner["code"] == "InvalidImageSize" and "smaller image" in inner["message"]
