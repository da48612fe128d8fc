"""`viewfinder serve` under bad input and model-side throttling.

The server runs in this process (uvicorn in a thread) on `localhost`, as in
`test_server.py` (whose fixtures are copied small here, not imported, so the two files
change independently). The model side is `viewfinder.testing.simulator.Simulator` answering
live on 127.0.0.1 with scripted statuses: no cassette, nothing reaches a real model.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest
from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from local_server import post_analyze
from PIL import Image
from typer.testing import CliRunner

import viewfinder as vf
import viewfinder.compat.server as server_module
from viewfinder import DecompressionBombError, ImageAnalyzer, ImageSizeError, RetryPolicy
from viewfinder.azure import ImageAnalysisClient as LookAlikeClient
from viewfinder.cli import app as cli_app
from viewfinder.compat.server import (
    MAX_QUEUE_SECONDS,
    SERVER_RETRY,
    ServerSettings,
    create_app,
)
from viewfinder.engine.ratelimit import RateLimiter
from viewfinder.testing.simulator import Reply, Simulator

KEY = "limits-test-key-0b7d41"
CAT = (Path(__file__).parent / "assets" / "chelsea.png").read_bytes()
QUERY = "api-version=2023-10-01&features=caption"


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
    return post_analyze(endpoint, query, key=KEY, image=CAT, **kwargs)


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
    image = _png_with_declared_size(15_999, 15_000)
    with (
        ImageAnalyzer(base_url="http://127.0.0.1:9/v1", api_key="unused", cache=False) as library,
        pytest.raises(DecompressionBombError),
    ):
        library.analyze(image, features=["caption"])
    response = _post(offline, content=image)
    assert response.status_code == 400
    inner = response.json()["error"]["innererror"]
    assert inner["code"] == "InvalidImageSize" and "smaller image" in inner["message"]


# --- model-side throttling ------------------------------------------------------------


class _RecordedSleeps(RequestsTransport):
    """The SDK's default transport, except that its retry sleeps are recorded, not slept:
    the SDK's own retry policy (defaults: 3 retries, `Retry-After` honoured) runs as is."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    def sleep(self, duration: float) -> None:
        self.slept.append(duration)


def _throttled(reply: Reply) -> Simulator:
    """A model endpoint answering every request with `reply`."""
    return Simulator(default=lambda body: reply)


def _eager_analyzer(sim: Simulator) -> ImageAnalyzer:
    """An analyzer that would retry 6 times on its own (no real waits, for speed)."""
    return ImageAnalyzer(
        base_url=sim.base_url,
        api_key="test-key-placeholder",
        model="gpt-4.1-mini",
        cache=False,
        retry=RetryPolicy(
            max_attempts=6, initial_backoff=0.001, max_backoff=0.001, max_retry_after=0.001
        ),
    )


def _sdk_analyze(endpoint: str) -> tuple[HttpResponseError, list[float]]:
    """One call of Microsoft's SDK, default retry policy; its error and retry sleeps."""
    transport = _RecordedSleeps()
    client = ImageAnalysisClient(endpoint, AzureKeyCredential(KEY), transport=transport)
    with client, pytest.raises(HttpResponseError) as caught:
        client.analyze(CAT, [VisualFeatures.CAPTION])
    return caught.value, transport.slept


def test_a_model_side_503_costs_one_model_call_per_sdk_attempt(
    serve: Callable[[ServerSettings], str],
) -> None:
    """The issue's case: the SDK's 4 attempts times the server's own retries made 24
    model calls. The server now answers 503 + Retry-After after one call each time."""
    with _throttled(Reply(status=503, error_message="overloaded")) as sim:
        with _eager_analyzer(sim) as analyzer:
            endpoint = serve(ServerSettings(api_keys=(KEY,), analyzer=analyzer))
            error, slept = _sdk_analyze(endpoint)
        assert error.status_code == 503 and error.error is not None
        assert error.error.code == "ServiceUnavailable"
        assert error.response is not None and error.response.headers["Retry-After"] == "1"
        assert slept == [1.0, 1.0, 1.0]  # the SDK retried 3 times, as told by Retry-After
        assert sim.stats.total == 4  # 4 SDK attempts x 1 model call


def test_an_unreachable_model_endpoint_is_a_503_with_retry_after(offline: str) -> None:
    response = _post(offline)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [({"retry-after": "7"}, "7"), ({"retry-after-ms": "2500"}, "3"), ({}, "1")],
    ids=["retry-after", "retry-after-ms", "unsaid"],
)
def test_a_model_side_429_is_a_429_with_retry_after(
    serve: Callable[[ServerSettings], str], upstream: dict[str, str], expected: str
) -> None:
    with _throttled(Reply(status=429, headers=upstream)) as sim, _eager_analyzer(sim) as analyzer:
        endpoint = serve(ServerSettings(api_keys=(KEY,), analyzer=analyzer))
        response = _post(endpoint)
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "429"
        # the endpoint's delay, else the shared limiter's own pause (1 s after a first 429)
        assert response.headers["Retry-After"] == expected
        assert sim.stats.total == 1  # not retried by the server


def test_during_a_model_side_pause_requests_are_answered_429_without_model_calls(
    serve: Callable[[ServerSettings], str],
) -> None:
    """One upstream 429 pauses every request of the server: the others are refused at
    once (the limiter's pause is longer than `max_queue_seconds`), never queued for 30 s,
    and the SDK's retries during the pause cost no model call either."""
    limited = Reply(status=429, headers={"retry-after": "30"}, error_message="slow down")
    with _throttled(limited) as sim, _eager_analyzer(sim) as analyzer:
        endpoint = serve(ServerSettings(api_keys=(KEY,), analyzer=analyzer))
        first = _post(endpoint)
        assert (first.status_code, first.headers["Retry-After"]) == (429, "30")

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: _post(endpoint), range(6)))
        error, slept = _sdk_analyze(endpoint)
        elapsed = time.monotonic() - started

        assert [a.status_code for a in answers] == [429] * 6
        assert all(a.headers["Retry-After"] in ("29", "30") for a in answers)
        assert error.status_code == 429
        assert len(slept) == 3 and all(29 <= s <= 30 for s in slept)  # told to wait it out
        assert sim.stats.total == 1  # only the first request reached the model
        assert elapsed < 10  # queued behind the pause, they would have taken 30 s


def test_the_server_gives_its_analyzer_one_attempt_and_a_shared_limiter() -> None:
    options: dict[str, Any] = {"base_url": "http://127.0.0.1:9/v1", "api_key": "x", "cache": False}
    with ImageAnalyzer(retry=RetryPolicy(max_attempts=6), **options) as analyzer:
        create_app(ServerSettings(api_keys=(KEY,), analyzer=analyzer))
        assert analyzer.engine.retry == SERVER_RETRY and SERVER_RETRY.max_attempts == 1
        limiter = analyzer.engine.gate
        assert isinstance(limiter, RateLimiter)
        limiter.observe(429, {"retry-after": "30"})  # a pause longer than the queue allows
        with pytest.raises(vf.RateLimitError):
            limiter.acquire()
    assert MAX_QUEUE_SECONDS < 30

    own = RateLimiter(rpm=100)
    own_policy = RetryPolicy(max_attempts=3)
    with ImageAnalyzer(rate_limiter=own, retry=own_policy, **options) as analyzer:
        create_app(ServerSettings(api_keys=(KEY,), analyzer=analyzer, retry=None))
        assert analyzer.engine.gate is own and analyzer.engine.retry is own_policy


# --- keys on the command line ---------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[ServerSettings]]:
    """What `viewfinder serve` would serve with (the server itself is not started)."""
    seen: list[ServerSettings] = []
    monkeypatch.delenv("VIEWFINDER_API_KEYS", raising=False)
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(server_module, "run", lambda settings, **_: seen.append(settings))
    yield seen
    for settings in seen:
        assert settings.analyzer is not None
        settings.analyzer.close()


def _serve(*args: str) -> Any:
    return CliRunner().invoke(cli_app, ["serve", "--base-url", "http://127.0.0.1:9/v1", *args])


def test_a_key_on_the_command_line_is_warned_about(served: list[ServerSettings]) -> None:
    result = _serve("--api-key", KEY)
    assert result.exit_code == 0, result.output
    assert served[0].api_keys == (KEY,)
    assert "visible in ps" in result.stderr
    assert "VIEWFINDER_API_KEYS or --api-key-file" in result.stderr
    assert KEY not in result.output


def test_keys_from_a_file_one_per_line(served: list[ServerSettings], tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# rotated monthly\nfirst-key-123\n\n  second-key-456  \n")
    result = _serve("--api-key-file", str(key_file))
    assert result.exit_code == 0, result.output
    assert served[0].api_keys == ("first-key-123", "second-key-456")
    assert "warning" not in result.stderr and "first-key-123" not in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read --api-key-file"), ("# none yet\n\n", "holds no key")],
    ids=["missing", "empty"],
)
def test_a_key_file_without_keys_refuses_to_start(
    served: list[ServerSettings], tmp_path: Path, content: str | None, message: str
) -> None:
    key_file = tmp_path / "keys"
    if content is not None:
        key_file.write_text(content)
    result = _serve("--api-key-file", str(key_file))
    assert result.exit_code == 2 and message in result.output
    assert served == []
