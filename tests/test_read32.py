"""Computer Vision 3.2 Read on `viewfinder serve`, proven with Microsoft's 3.2 SDK.

`azure-cognitiveservices-vision-computervision` (installed from the package index by the
`test` extra) talks to the server over real HTTP on `localhost`; the model side is the
simulator on 127.0.0.1 (scripted answers, not a model), reached live (no cassette).
The SDK leaves polling to user code: `_poll` asks again at once, up to a deadline.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from azure.cognitiveservices.vision.computervision import ComputerVisionClient
from azure.cognitiveservices.vision.computervision.models import (
    ComputerVisionOcrErrorException,
    OperationStatusCodes,
    ReadOperationResult,
)
from msrest.authentication import CognitiveServicesCredentials
from PIL import Image

from viewfinder import ImageAnalyzer, RetryPolicy
from viewfinder.compat import read32
from viewfinder.compat.server import ServerSettings
from viewfinder.compat.service import (
    RESOURCE_NOT_FOUND,
    ServiceError,
    service_error_for,
    unauthorized,
)
from viewfinder.errors import ImageSizeError
from viewfinder.testing import compact_answer
from viewfinder.testing.simulator import Reply, Simulator

KEY = "read32-test-key-0b9d"
CAT = (Path(__file__).parent / "assets" / "chelsea.png").read_bytes()  # 451 x 300
TEXT_ANSWER = compact_answer(
    {
        "read": [
            {"text": "CAT CAFE", "box": [100, 100, 500, 200], "confidence": 0.96},
            {"text": "open daily", "box": [100, 300, 600, 380], "confidence": 0.88},
        ]
    }
)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
PENDING = (OperationStatusCodes.not_started, OperationStatusCodes.running)


def _analyzer(base_url: str) -> ImageAnalyzer:
    return ImageAnalyzer(
        base_url=base_url,
        api_key="test-key-placeholder",
        model="gpt-4.1-mini",
        cache=False,
        retry=RetryPolicy(max_attempts=1),
    )


@pytest.fixture
def server(
    serve: Callable[[ServerSettings], str], sim: Simulator, tmp_path: Path
) -> Iterator[Callable[..., str]]:
    """Start a server whose analyzer is wired to the simulator; returns its endpoint."""
    analyzers: list[ImageAnalyzer] = []

    def start(**overrides: Any) -> str:
        analyzers.append(_analyzer(sim.base_url))
        settings: dict[str, Any] = {
            "api_keys": (KEY,),
            "analyzer": analyzers[-1],
            "read_store": tmp_path / "read-operations",
        }
        settings.update(overrides)
        return serve(ServerSettings(**settings))

    yield start
    for analyzer in analyzers:
        analyzer.close()


def _client(endpoint: str, key: str = KEY) -> ComputerVisionClient:
    return ComputerVisionClient(endpoint, CognitiveServicesCredentials(key))


def _operation_id(raw: Any, endpoint: str) -> str:
    """The id, as Microsoft's quickstart takes it: the last segment of Operation-Location."""
    location = raw.headers["Operation-Location"]
    operation_id: str = location.split("/")[-1]
    assert location == f"{endpoint}/vision/v3.2/read/analyzeResults/{operation_id}"
    assert UUID.fullmatch(operation_id)
    return operation_id


def _poll(client: ComputerVisionClient, operation_id: str) -> ReadOperationResult:
    deadline = time.monotonic() + 20
    while True:
        result = client.get_read_result(operation_id)
        if result.status not in PENDING or time.monotonic() > deadline:
            return result
        time.sleep(0.01)  # the SDK's user code sleeps between polls (1 s in the quickstart)


def _check_text(result: ReadOperationResult) -> None:
    assert result.status == OperationStatusCodes.succeeded
    assert result.created_date_time and result.last_updated_date_time
    (page,) = result.analyze_result.read_results
    assert (page.page, page.angle, page.width, page.height) == (1, 0, 451, 300)
    assert page.unit == "pixel"
    assert [line.text for line in page.lines] == ["CAT CAFE", "open daily"]
    first = page.lines[0]
    # grid [100, 100, 500, 200] on 451 x 300: clockwise from the top-left
    assert first.bounding_box == [45, 30, 226, 30, 226, 60, 45, 60]
    assert first.appearance is None  # the read feature does not tell handwriting from print
    assert [word.text for word in first.words] == ["CAT", "CAFE"]
    assert all(len(word.bounding_box) == 8 for word in first.words)
    assert [word.confidence for word in page.lines[1].words] == [0.88, 0.88]
    assert result.analyze_result.version == "3.2"
    assert result.analyze_result.model_version.startswith("gpt-4.1-mini+")


# --- Microsoft's SDK against the server ---------------------------------------------------


def test_the_sdk_reads_an_uploaded_image(server: Callable[..., str], sim: Simulator) -> None:
    sim.script(TEXT_ANSWER)
    endpoint = server()
    client = _client(endpoint)
    raw = client.read_in_stream(io.BytesIO(CAT), raw=True)
    assert raw.response.status_code == 202
    assert raw.response.content == b""
    assert UUID.fullmatch(raw.response.headers["apim-request-id"])
    result = _poll(client, _operation_id(raw, endpoint))
    _check_text(result)
    assert result.analyze_result.read_results[0].language is None
    assert sim.stats.total == 1  # one model request for the image
    client.close()


class _ImageHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(CAT)))
        self.end_headers()
        self.wfile.write(CAT)


@pytest.fixture
def image_url() -> Iterator[str]:
    """The cat, served on localhost."""
    host = ThreadingHTTPServer(("localhost", 0), _ImageHandler)
    thread = threading.Thread(target=host.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://localhost:{host.server_port}/cat.png"
    host.shutdown()
    host.server_close()
    thread.join(5)


def test_the_sdk_reads_an_image_url_with_every_option(
    server: Callable[..., str], sim: Simulator, image_url: str
) -> None:
    sim.script(TEXT_ANSWER)
    endpoint = server(allow_hosts=("localhost",))
    client = _client(endpoint)
    raw = client.read(
        image_url,
        language="en",
        pages=["1"],
        model_version="2022-04-30",
        reading_order="natural",
        raw=True,
    )
    result = _poll(client, _operation_id(raw, endpoint))
    _check_text(result)
    assert result.analyze_result.read_results[0].language == "en"
    client.close()


def test_a_url_to_an_internal_host_is_refused_as_the_40_route_refuses_it(
    server: Callable[..., str], sim: Simulator, image_url: str
) -> None:
    with pytest.raises(ComputerVisionOcrErrorException) as refused:
        _client(server()).read(image_url, raw=True)
    assert refused.value.response.status_code == 400
    assert refused.value.response.json() == {
        "error": {"code": "InvalidRequest", "message": "The provided image url is not accessible."}
    }
    assert sim.stats.total == 0


def test_a_bad_key_is_the_services_401(server: Callable[..., str], sim: Simulator) -> None:
    # The SDK's read operations raise ComputerVisionOcrErrorException (reference 9.5).
    client = _client(server(), key="wrong-key")
    with pytest.raises(ComputerVisionOcrErrorException) as on_submit:
        client.read_in_stream(io.BytesIO(CAT), raw=True)
    with pytest.raises(ComputerVisionOcrErrorException) as on_poll:
        client.get_read_result("e56ffa6e-1ee4-4042-bc07-993db706c95f")
    for refused in (on_submit.value, on_poll.value):
        assert refused.response.status_code == 401
        assert refused.response.json() == unauthorized().body()
    assert sim.stats.total == 0


def test_an_unknown_operation_id_is_not_found(server: Callable[..., str]) -> None:
    with pytest.raises(ComputerVisionOcrErrorException) as unknown:
        _client(server()).get_read_result("e56ffa6e-1ee4-4042-bc07-993db706c95f")
    assert unknown.value.response.status_code == 404
    assert unknown.value.response.json() == RESOURCE_NOT_FOUND.body()


def test_a_too_small_image_is_refused_before_the_202(
    server: Callable[..., str], sim: Simulator
) -> None:
    small = io.BytesIO()
    Image.new("RGB", (40, 40), "white").save(small, "PNG")
    small.seek(0)
    with pytest.raises(ComputerVisionOcrErrorException) as refused:
        _client(server()).read_in_stream(small, raw=True)
    assert refused.value.response.status_code == 400
    size_error = service_error_for(ImageSizeError("small", limit="dimensions"))
    assert refused.value.response.json() == size_error.body()
    assert sim.stats.total == 0


def test_a_model_failure_fails_the_operation(server: Callable[..., str], sim: Simulator) -> None:
    sim.script(Reply(status=400, error_message="scripted refusal"))
    endpoint = server()
    client = _client(endpoint)
    raw = client.read_in_stream(io.BytesIO(CAT), raw=True)
    result = _poll(client, _operation_id(raw, endpoint))
    assert result.status == OperationStatusCodes.failed
    assert result.analyze_result is None


def test_every_worker_given_the_store_sees_the_operation(
    server: Callable[..., str], sim: Simulator
) -> None:
    """Two servers (two workers) on one store directory: submit on one, poll the other."""
    sim.script(TEXT_ANSWER)
    first, second = server(), server()
    raw = _client(first).read_in_stream(io.BytesIO(CAT), raw=True)
    operation_id = _operation_id(raw, first)
    _check_text(_poll(_client(second), operation_id))


def test_the_store_keeps_no_image_bytes(
    server: Callable[..., str], sim: Simulator, tmp_path: Path
) -> None:
    sim.script(TEXT_ANSWER)
    endpoint = server()
    client = _client(endpoint)
    raw = client.read_in_stream(io.BytesIO(CAT), raw=True)
    _check_text(_poll(client, _operation_id(raw, endpoint)))
    stored = b"".join(
        p.read_bytes() for p in (tmp_path / "read-operations").rglob("*") if p.is_file()
    )
    assert stored and CAT[100:164] not in stored


# --- the query, refused as the service refuses it ------------------------------------------


def _submit(endpoint: str, query: str, key: str = KEY) -> httpx2.Response:
    with httpx2.Client(trust_env=False, timeout=10) as client:
        return client.post(
            f"{endpoint}{read32.READ_PATH}?{query}",
            content=CAT,
            headers={"Ocp-Apim-Subscription-Key": key, "Content-Type": "application/octet-stream"},
        )


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("pages=2", "InvalidPageRange"),
        ("pages=1,2", "InvalidPageRange"),
        ("pages=1-3", "InvalidPageRange"),
        ("pages=0", "InvalidPageRange"),
        ("pages=3-1", "InvalidPageRange"),
        ("pages=one", "InvalidPageRange"),
        ("readingOrder=random", "InvalidReadingOrder"),
        ("model-version=2019-01-01", "BadArgument"),
        ("language=not%20a%20language", "NotSupportedLanguage"),
    ],
)
def test_bad_queries_are_refused_before_any_work(
    server: Callable[..., str], sim: Simulator, query: str, code: str
) -> None:
    response = _submit(server(), query)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert sim.stats.total == 0


@pytest.mark.parametrize("pages", ["1", "1-1", "-1", "1-"])
def test_page_selections_of_page_one_are_served(
    server: Callable[..., str], sim: Simulator, pages: str
) -> None:
    sim.script(TEXT_ANSWER)
    response = _submit(server(), f"pages={pages}&readingOrder=basic&model-version=latest")
    assert response.status_code == 202


# --- the operations and their store ----------------------------------------------------------


async def test_a_stop_fails_the_operations_in_flight(tmp_path: Path) -> None:
    """A restart loses what is in flight: a graceful stop records it `failed`."""
    store = read32.OperationStore(tmp_path / "ops")
    operations = read32.ReadOperations(store)
    started, never = asyncio.Event(), asyncio.Event()

    async def analyze() -> Any:
        started.set()
        await never.wait()

    operation_id = operations.submit(analyze, read32.ReadQuery())
    await started.wait()
    running = operations.result(operation_id)
    assert running is not None and running["status"] == "running"
    assert "analyzeResult" not in running
    await operations.aclose()
    reopened = read32.OperationStore(tmp_path / "ops")
    record = reopened.get(operation_id)
    assert record is not None and record["status"] == "failed"
    reopened.close()


async def test_too_many_operations_in_flight_are_the_services_429(tmp_path: Path) -> None:
    operations = read32.ReadOperations(read32.OperationStore(tmp_path / "ops"), max_in_flight=1)
    never = asyncio.Event()

    async def analyze() -> Any:
        await never.wait()

    operations.submit(analyze, read32.ReadQuery())
    with pytest.raises(ServiceError) as busy:
        operations.submit(analyze, read32.ReadQuery())
    assert (busy.value.status, busy.value.retry_after) == (429, 1)
    await operations.aclose()


def test_records_expire_48_hours_after_the_end_and_sooner_in_flight(tmp_path: Path) -> None:
    store = read32.OperationStore(tmp_path / "ops")
    now = time.time()
    store.put("done", {"status": "succeeded"}, read32.OPERATION_SECONDS)
    store.put("busy", {"status": "running"}, read32.IN_FLIGHT_SECONDS)
    _, done_expires = store._open().get("done", expire_time=True)
    _, busy_expires = store._open().get("busy", expire_time=True)
    assert read32.OPERATION_SECONDS == 48 * 3600  # "The operation ID will expire in 48 hours"
    assert done_expires == pytest.approx(now + 48 * 3600, abs=60)
    assert busy_expires == pytest.approx(now + read32.IN_FLIGHT_SECONDS, abs=60)
    store.close()


def test_a_temp_store_is_removed_when_closed() -> None:
    store = read32.OperationStore()
    store.put("x", {"status": "notStarted"}, 10)
    directory = Path(store._open().directory)
    assert directory.is_dir()
    store.close()
    assert not directory.exists()
