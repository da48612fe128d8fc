"""Computer Vision 3.2 Read on `viewfinder serve`, proven with Microsoft's 3.2 SDK.

`azure-cognitiveservices-vision-computervision` (installed from the package index by the
`test` extra) talks to the server over real HTTP on `localhost`; the model side is the
simulator on 127.0.0.1 (scripted answers, not a model), reached live (no cassette).
The SDK leaves polling to user code: `_poll` asks again at once, up to a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
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
    ComputerVisionOcrError,
    ComputerVisionOcrErrorException,
    OperationStatusCodes,
    ReadOperationResult,
)
from msrest.authentication import CognitiveServicesCredentials
from PIL import Image, ImageDraw

from viewfinder import ImageAnalyzer, RetryPolicy
from viewfinder.compat import read32, read_pages
from viewfinder.compat.server import ServerSettings
from viewfinder.compat.service import RESOURCE_NOT_FOUND, ServiceError, unauthorized
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


def _ocr_error(refused: ComputerVisionOcrErrorException, status: int) -> tuple[str, str]:
    """The `(code, message)` of Read's error body (reference 6.1), checked top-level, with
    the request's id, and read by Microsoft's SDK: `e.error.code`, `e.error.message`."""
    response = refused.response
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"code", "message", "requestId"}
    assert body["requestId"] == response.headers["apim-request-id"]
    error = ComputerVisionOcrError.from_dict(body)  # the swagger's model takes the body
    assert (refused.error.code, refused.error.message) == (body["code"], body["message"])
    assert (refused.error.request_id, str(refused)) == (body["requestId"], body["message"])
    assert error.code == body["code"]
    return body["code"], body["message"]


def test_a_url_to_an_internal_host_is_refused_as_an_inaccessible_url(
    server: Callable[..., str], sim: Simulator, image_url: str
) -> None:
    with pytest.raises(ComputerVisionOcrErrorException) as refused:
        _client(server()).read(image_url, raw=True)
    assert _ocr_error(refused.value, 400) == (
        "InvalidImageUrl",
        "The provided image url is not accessible.",
    )
    assert sim.stats.total == 0


def test_a_bad_key_is_the_services_401(server: Callable[..., str], sim: Simulator) -> None:
    # The SDK's read operations raise ComputerVisionOcrErrorException (reference 9.5),
    # which reads a code and message only from Read's top-level shape.
    client = _client(server(), key="wrong-key")
    with pytest.raises(ComputerVisionOcrErrorException) as on_submit:
        client.read_in_stream(io.BytesIO(CAT), raw=True)
    with pytest.raises(ComputerVisionOcrErrorException) as on_poll:
        client.get_read_result("e56ffa6e-1ee4-4042-bc07-993db706c95f")
    for refused in (on_submit.value, on_poll.value):
        assert _ocr_error(refused, 401) == ("401", unauthorized().message)
    assert sim.stats.total == 0


def test_an_unknown_operation_id_is_not_found(server: Callable[..., str]) -> None:
    with pytest.raises(ComputerVisionOcrErrorException) as unknown:
        _client(server()).get_read_result("e56ffa6e-1ee4-4042-bc07-993db706c95f")
    assert _ocr_error(unknown.value, 404) == ("404", RESOURCE_NOT_FOUND.message)


def test_a_too_small_image_is_refused_before_the_202(
    server: Callable[..., str], sim: Simulator
) -> None:
    small = io.BytesIO()
    Image.new("RGB", (40, 40), "white").save(small, "PNG")
    small.seek(0)
    with pytest.raises(ComputerVisionOcrErrorException) as refused:
        _client(server()).read_in_stream(small, raw=True)
    code, message = _ocr_error(refused.value, 400)
    assert code == "InvalidImageDimension"
    assert "between 50 x 50 and 10000 x 10000 pixels" in message
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


def _submit(endpoint: str, query: str, key: str = KEY, body: bytes = CAT) -> httpx2.Response:
    with httpx2.Client(trust_env=False, timeout=10) as client:
        return client.post(
            f"{endpoint}{read32.READ_PATH}?{query}",
            content=body,
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
    assert response.json()["code"] == code
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

    operation_id = await operations.submit(analyze)
    await started.wait()
    running = await operations.result(operation_id)
    assert running is not None and running["status"] == "running"
    assert "analyzeResult" not in running
    await operations.aclose()
    reopened = read32.OperationStore(tmp_path / "ops")
    record = reopened.get(operation_id)
    assert record is not None and record["status"] == "failed"
    reopened.close()


async def test_a_long_operation_renews_its_record_while_it_runs(tmp_path: Path) -> None:
    """A document running longer than IN_FLIGHT_SECONDS must not expire (and turn 404)."""
    store = read32.OperationStore(tmp_path / "ops")
    operations = read32.ReadOperations(store, renew_seconds=0.01)
    started, never = asyncio.Event(), asyncio.Event()

    async def analyze() -> Any:
        started.set()
        await never.wait()

    operation_id = await operations.submit(analyze)
    await started.wait()
    _, first = store._open().get(operation_id, expire_time=True)
    deadline = time.monotonic() + 10
    while store._open().get(operation_id, expire_time=True)[1] == first:
        assert time.monotonic() < deadline, "the running record was never renewed"
        await asyncio.sleep(0.01)  # lets the renewal run (the event loop's turn)
    await operations.aclose()


async def test_too_many_operations_in_flight_are_the_services_429(tmp_path: Path) -> None:
    operations = read32.ReadOperations(read32.OperationStore(tmp_path / "ops"), max_in_flight=1)
    never = asyncio.Event()

    async def analyze() -> Any:
        await never.wait()

    await operations.submit(analyze)
    with pytest.raises(ServiceError) as busy:
        await operations.submit(analyze)
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


# --- documents: PDF and multi-page TIFF (reference 3 `pages`, 4 `unit`, 7) -------------------

PAGE_ONE = compact_answer(
    {"read": [{"text": "PAGE ONE", "box": [100, 100, 500, 200], "confidence": 0.9}]}
)
PAGE_TWO = compact_answer(
    {"read": [{"text": "PAGE TWO", "box": [200, 500, 800, 600], "confidence": 0.8}]}
)
_DATA_URL = re.compile(r"data:image/[a-z]+;base64,([A-Za-z0-9+/=]+)")


def _page(text: str, size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((40, 40), text, fill="black")
    return image


LANDSCAPE, PORTRAIT = (600, 400), (400, 600)


def _pdf(*sizes: tuple[int, int], resolution: float = 100) -> bytes:
    """A PDF of one page a size (Pillow's PDF writer: 600 px at 100 DPI is 6 inches)."""
    pages = [_page(f"page {n}", size) for n, size in enumerate(sizes, 1)]
    out = io.BytesIO()
    pages[0].save(out, "PDF", save_all=True, append_images=pages[1:], resolution=resolution)
    return out.getvalue()


def _tiff(*sizes: tuple[int, int]) -> bytes:
    pages = [_page(f"page {n}", size) for n, size in enumerate(sizes, 1)]
    out = io.BytesIO()
    pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:])
    return out.getvalue()


def _by_orientation(body: dict[str, Any]) -> Any:
    """The model side: a landscape page reads "PAGE ONE", a portrait one "PAGE TWO"
    (pages run concurrently, so answers cannot be scripted in order)."""
    found = _DATA_URL.search(json.dumps(body))
    assert found is not None
    with Image.open(io.BytesIO(base64.b64decode(found.group(1)))) as image:
        width, height = image.size
    return PAGE_ONE if width > height else PAGE_TWO


def _read(endpoint: str, document: bytes, **options: Any) -> ReadOperationResult:
    client = _client(endpoint)
    raw = client.read_in_stream(io.BytesIO(document), raw=True, **options)
    result = _poll(client, _operation_id(raw, endpoint))
    client.close()
    return result


def test_the_sdk_reads_a_two_page_pdf_in_inches(server: Callable[..., str], sim: Simulator) -> None:
    sim.default = _by_orientation
    result = _read(server(), _pdf(LANDSCAPE, PORTRAIT))
    assert result.status == OperationStatusCodes.succeeded
    first, second = result.analyze_result.read_results
    assert [(p.page, p.unit, p.width, p.height) for p in (first, second)] == [
        (1, "inch", 6, 4),
        (2, "inch", 4, 6),
    ]
    assert [line.text for line in first.lines] == ["PAGE ONE"]
    assert [line.text for line in second.lines] == ["PAGE TWO"]
    # grid [100, 100, 500, 200] of a 6 x 4 inch page; [200, 500, 800, 600] of 4 x 6
    assert first.lines[0].bounding_box == pytest.approx(
        [0.6, 0.4, 3, 0.4, 3, 0.8, 0.6, 0.8], abs=0.01
    )
    assert [word.text for word in second.lines[0].words] == ["PAGE", "TWO"]
    assert second.lines[0].bounding_box == pytest.approx(
        [0.8, 3, 3.2, 3, 3.2, 3.6, 0.8, 3.6], abs=0.01
    )
    assert sim.stats.total == 2  # one model request a page


def test_the_sdk_reads_the_selected_pages_of_a_tiff_in_pixels(
    server: Callable[..., str], sim: Simulator
) -> None:
    sim.default = _by_orientation
    result = _read(server(), _tiff(LANDSCAPE, PORTRAIT, LANDSCAPE), pages=["2-"])
    assert result.status == OperationStatusCodes.succeeded
    pages = result.analyze_result.read_results
    assert [(p.page, p.unit, p.width, p.height) for p in pages] == [
        (2, "pixel", 400, 600),
        (3, "pixel", 600, 400),
    ]
    assert [p.lines[0].text for p in pages] == ["PAGE TWO", "PAGE ONE"]
    assert pages[0].lines[0].bounding_box == [80, 300, 320, 300, 320, 360, 80, 360]
    assert sim.stats.total == 2


def test_a_pdf_page_selection_reads_only_those_pages(
    server: Callable[..., str], sim: Simulator
) -> None:
    sim.default = _by_orientation
    result = _read(server(), _pdf(LANDSCAPE, PORTRAIT, LANDSCAPE), pages=["2"])
    assert [(p.page, p.lines[0].text) for p in result.analyze_result.read_results] == [
        (2, "PAGE TWO")
    ]
    assert sim.stats.total == 1


def test_a_failing_page_fails_the_whole_operation(
    server: Callable[..., str], sim: Simulator
) -> None:
    """The service has one status per operation: no result that silently lacks a page."""

    def second_fails(body: dict[str, Any]) -> Any:
        answer = _by_orientation(body)
        return Reply(status=400, error_message="scripted") if answer is PAGE_TWO else answer

    sim.default = second_fails
    result = _read(server(), _pdf(LANDSCAPE, PORTRAIT))
    assert result.status == OperationStatusCodes.failed
    assert result.analyze_result is None


@pytest.mark.parametrize(
    ("document", "options", "code"),
    [
        (_pdf(LANDSCAPE, PORTRAIT), {"pages": ["3"]}, "InvalidPageRange"),
        (_tiff(LANDSCAPE, PORTRAIT), {"pages": ["1", "2-4"]}, "InvalidPageRange"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog", {}, "InvalidImage"),
        (b"not an image at all", {}, "InvalidImage"),
        (_pdf(LANDSCAPE)[:200], {}, "InvalidImage"),  # truncated
        (_tiff((600, 40), LANDSCAPE), {"pages": ["1"]}, "InvalidImageDimension"),
    ],
    ids=["pdf-page-range", "tiff-page-range", "corrupt-pdf", "not-an-image", "cut-pdf", "thin"],
)
def test_bad_documents_are_refused_before_the_202(
    server: Callable[..., str], sim: Simulator, document: bytes, options: Any, code: str
) -> None:
    with pytest.raises(ComputerVisionOcrErrorException) as refused:
        _client(server()).read_in_stream(io.BytesIO(document), raw=True, **options)
    assert _ocr_error(refused.value, 400)[0] == code
    assert sim.stats.total == 0


def test_formats_read_does_not_take_are_refused(server: Callable[..., str]) -> None:
    """Read takes JPEG, PNG, BMP, PDF and TIFF (reference 7): a GIF is not a Read input."""
    gif = io.BytesIO()
    _page("gif", LANDSCAPE).save(gif, "GIF")
    response = _submit(server(), "", body=gif.getvalue())
    assert response.status_code == 400
    assert response.json()["code"] == "UnsupportedImageFormat"


@pytest.mark.parametrize(
    ("pages", "count", "selected"),
    [
        ("", 3, (1, 2, 3)),
        ("pages=1-3,5", 6, (1, 2, 3, 5)),
        ("pages=2-", 4, (2, 3, 4)),
        ("pages=-2", 4, (1, 2)),
        ("pages=3,1-2&pages=2", 3, (1, 2, 3)),
    ],
)
def test_page_selections(pages: str, count: int, selected: tuple[int, ...]) -> None:
    query = read32.ReadQuery.of(httpx2.QueryParams(pages).multi_items())
    assert query.select(count) == selected


def test_pdf_pages_render_at_150_dpi_within_2048_pixels_and_the_pixel_budget() -> None:
    def every(count: int) -> tuple[int, ...]:
        return tuple(range(1, count + 1))

    letter = read_pages.open_document(_pdf((850, 1100)), every, 10**9)  # 8.5 x 11 inches
    poster = read_pages.open_document(_pdf((600, 400), resolution=10), every, 10**9)  # 60 x 40
    tight = read_pages.open_document(_pdf((850, 1100)), every, 100_000)
    try:
        sizes = [
            Image.open(io.BytesIO(doc.page_image(doc.pages[0]))).size
            for doc in (letter, poster, tight)
        ]
        assert letter.pages[0].inches == (8.5, 11)
        assert poster.pages[0].inches == (60, 40)
    finally:
        for doc in (letter, poster, tight):
            doc.close()
    assert sizes[0] == pytest.approx((1275, 1650), abs=1)  # 150 DPI
    assert max(sizes[1]) <= read_pages.MAX_RENDER_SIDE
    assert sizes[1][0] == pytest.approx(2048, abs=1)
    assert sizes[2][0] * sizes[2][1] <= 100_000 * 1.01


def test_more_than_2000_pages_are_refused() -> None:
    with pytest.raises(ServiceError) as refused:
        read_pages.open_document(CAT, lambda count: tuple(range(1, 2002)), 10**9)
    assert (refused.value.status, refused.value.code) == (400, "InvalidPageRange")
