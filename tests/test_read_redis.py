"""The Read (3.2) operation store over a REAL Redis (tests/redis_server.py).

Two `viewfinder serve` processes (the real command, `VIEWFINDER_REDIS` set) sharing one
redis-server answer as one service: a Read submitted on one is polled on the other (with
Microsoft's 3.2 SDK), an image analysed on one is a cache hit on the other, and a 429 on
one pauses the other; a redis-server stopped mid-run (then
restarted on its port) refuses submits and polls with 503 rather than losing or denying an
operation, and a result finished meanwhile is served by its process and written when Redis
returns. Model answers come from the simulator (scripted, not a model).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
from local_server import post_analyze
from PIL import Image
from redis_server import RedisServer, free_port
from test_read32 import CAT, KEY, TEXT_ANSWER, _analyzer, _check_text, _client, _operation_id, _poll

from viewfinder import ConfigurationError
from viewfinder.compat import read32
from viewfinder.compat.read_redis import KEY_PREFIX, RedisOperationStore
from viewfinder.compat.server import ServerSettings, create_app
from viewfinder.testing.simulator import Reply, Simulator

SECRET = "r3ad-St0re-Pa55"


def _serve_command(port: int, model: str) -> list[str]:
    """One replica: the real command line, `viewfinder serve --redis` given by the
    environment (`VIEWFINDER_REDIS`), so the answer cache is that Redis too."""
    return [
        *(sys.executable, "-m", "viewfinder", "serve", "--host", "127.0.0.1"),
        *("--port", str(port), "--base-url", model, "--model", "gpt-4.1-mini"),
    ]


def _wait_for(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Poll `check()` until it is true (a condition, not a timing assumption)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


async def _until(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # the event loop's turn: the tasks under test run


@pytest.fixture
def replicas(sim: Simulator, redis_url: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two server processes sharing the session's Redis; their endpoints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIEWFINDER_", "OPENAI_"))}
    env |= {
        "VIEWFINDER_REDIS": redis_url,
        "VIEWFINDER_API_KEYS": KEY,
        "OPENAI_API_KEY": "test-key-placeholder",
    }
    ports = [free_port(), free_port()]
    logs = [(tmp_path / f"replica-{i}.log").open("wb") for i in range(2)]
    processes = [
        subprocess.Popen(
            _serve_command(port, sim.base_url),
            env=env | {"VIEWFINDER_CACHE_DIR": str(tmp_path / f"cache-{port}")},
            stdin=subprocess.DEVNULL,
            stderr=log,
        )
        for port, log in zip(ports, logs, strict=True)
    ]
    endpoints = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for process, endpoint, log in zip(processes, endpoints, logs, strict=True):

            def ready(process: Any = process, endpoint: str = endpoint, log: Any = log) -> bool:
                assert process.poll() is None, Path(log.name).read_text(errors="replace")
                try:
                    return httpx2.get(endpoint + "/readyz", timeout=5).status_code == 200
                except httpx2.TransportError:
                    return False

            _wait_for(ready, f"the replica at {endpoint}")
        yield endpoints
    finally:
        for process in processes:
            process.kill()  # nothing to finish: the test's operation is stored
        for process, log in zip(processes, logs, strict=True):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def test_two_serve_processes_behave_as_one_service(
    replicas: list[str], sim: Simulator, redis_url: str
) -> None:
    """Two `viewfinder serve` processes given one Redis (`VIEWFINDER_REDIS`): a Read
    submitted on one is polled on the other, an image analysed on one is a cache hit on the
    other, and a 429 answered to one pauses the other (one rate budget)."""
    sim.script(TEXT_ANSWER)
    first, second = replicas
    raw = _client(first).read_in_stream(io.BytesIO(CAT), raw=True)
    operation_id = _operation_id(raw, first)
    result = _poll(_client(second), operation_id)
    _check_text(result)
    assert _poll(_client(first), operation_id).as_dict() == result.as_dict()
    with redis.Redis.from_url(redis_url) as client:
        stored = client.get(KEY_PREFIX + operation_id)
        expires_in = client.ttl(KEY_PREFIX + operation_id)
    assert isinstance(stored, bytes)
    record = json.loads(zlib.decompress(stored))  # JSON, zlib-compressed
    assert record["status"] == "succeeded"
    assert read32.OPERATION_SECONDS - 60 < expires_in <= read32.OPERATION_SECONDS
    assert sim.stats.total == 1

    # one answer cache: the second replica answers from what the first one paid for
    query = "api-version=2024-02-01&features=caption"
    sim.script(Reply({"caption": {"text": "a cat", "conf": 90}}))
    first_answer = post_analyze(first, query, key=KEY, image=CAT)
    second_answer = post_analyze(second, query, key=KEY, image=CAT)
    assert first_answer.status_code == second_answer.status_code == 200, second_answer.text
    assert second_answer.json()["captionResult"] == first_answer.json()["captionResult"]
    assert sim.stats.total == 2

    # one rate budget: the model's 429 to the first replica holds the second one too
    sim.script(Reply(status=429, headers={"retry-after": "30"}, error_message="slow down"))
    other = io.BytesIO()
    Image.new("RGB", (200, 150), (200, 30, 30)).save(other, "PNG")  # no cache answers it
    refused = post_analyze(first, query, key=KEY, image=other.getvalue())
    held = post_analyze(second, query, key=KEY, image=other.getvalue())
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert held.status_code == 429 and held.headers["Retry-After"] in ("29", "30")
    assert sim.stats.total == 3  # the second replica did not call the model


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (it is stopped and started), with a password."""
    server = RedisServer(tmp_path, password=SECRET).start()
    yield server
    server.stop()


def test_with_redis_down_submits_and_polls_are_503_not_404(
    private_redis: RedisServer,
    serve: Callable[[ServerSettings], str],
    sim: Simulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="viewfinder")
    sim.script(TEXT_ANSWER)
    with _analyzer(sim.base_url) as analyzer:
        endpoint = serve(
            ServerSettings(api_keys=(KEY,), analyzer=analyzer, redis=private_redis.url())
        )
        client = _client(endpoint)
        operation_id = _operation_id(client.read_in_stream(io.BytesIO(CAT), raw=True), endpoint)
        _check_text(_poll(client, operation_id))
        headers = {"Ocp-Apim-Subscription-Key": KEY}
        unknown = httpx2.get(f"{endpoint}{read32.RESULTS_PATH}/{'0' * 32}", headers=headers)
        assert unknown.status_code == 404  # Redis up: an id nobody knows

        private_redis.stop()
        submitted = httpx2.post(
            endpoint + read32.READ_PATH,
            content=CAT,
            headers=headers | {"Content-Type": "application/octet-stream"},
        )
        polled = httpx2.get(f"{endpoint}{read32.RESULTS_PATH}/{operation_id}", headers=headers)
    for refused in (submitted, polled):
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert refused.json()["code"] == "StorageException"
        assert "unavailable" in refused.json()["message"]
    assert sim.stats.total == 1  # the refused submit started nothing
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Read operation store" in warnings[0], warnings
    assert "unreachable" in warnings[0] and "127.0.0.1" in warnings[0]
    assert SECRET not in caplog.text


def _waiting_work() -> tuple[asyncio.Event, asyncio.Event, Callable[[], Awaitable[Any]]]:
    started, finish = asyncio.Event(), asyncio.Event()

    async def work() -> dict[str, Any]:
        started.set()
        await finish.wait()
        return {"version": "3.2", "readResults": []}

    return started, finish, work


async def test_a_result_finished_while_redis_is_down_is_served_then_written(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="viewfinder")
    store = RedisOperationStore(private_redis.url(), retry_interval=0)
    operations = read32.ReadOperations(store, retry_seconds=0.01)
    started, finish, work = _waiting_work()
    operation_id = await operations.submit(work)
    await started.wait()

    private_redis.stop()
    finish.set()
    await _until(lambda: operation_id in operations._pending, "the result to be held")
    held = await operations.result(operation_id)  # served from this process's memory
    assert held is not None and held["status"] == "succeeded"
    assert held["analyzeResult"]["version"] == "3.2"
    with pytest.raises(read32.ServiceError) as refused:
        await operations.result("an-id-this-process-does-not-hold")
    assert refused.value.status == 503

    private_redis.start()  # empty (no persistence), same port
    await _until(lambda: not operations._pending, "the held result to be written")
    with redis.Redis.from_url(private_redis.url()) as client:
        stored = client.get(KEY_PREFIX + operation_id)
    assert isinstance(stored, bytes)
    assert json.loads(zlib.decompress(stored)) == held
    assert await operations.result(operation_id) == held  # now from Redis
    await operations.aclose()

    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    warnings = [m for level, m in messages if level == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "unreachable" in warnings[0]  # the store's one outage warning, then ...
    assert operation_id in warnings[1] and "keeps the record" in warnings[1]  # ... the held one
    infos = [m for level, m in messages if level == logging.INFO]
    assert any("reachable again" in m for m in infos)
    assert f"read {operation_id}: its record is now in the store" in infos
    assert SECRET not in caplog.text


async def test_a_stop_writes_what_is_held_once_more_or_names_what_is_lost(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="viewfinder")
    url = private_redis.url()
    outcomes: list[str] = []
    for redis_back in (False, True):
        # neither the store nor the retry loop would try again before the stop
        store = RedisOperationStore(url, retry_interval=3600)
        operations = read32.ReadOperations(store, retry_seconds=3600)
        started, finish, work = _waiting_work()
        operation_id = await operations.submit(work)
        await started.wait()
        private_redis.stop()
        finish.set()
        pending = operations._pending
        await _until(lambda: operation_id in pending, "the result to be held")  # noqa: B023
        if redis_back:
            private_redis.start()
        await operations.aclose()
        if not redis_back:
            private_redis.start()  # for the next round's submit
        outcomes.append(operation_id)
    lost, written = outcomes
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "1 operation record(s) are lost" in error and lost in error and written not in error
    with redis.Redis.from_url(url) as client:
        stored = client.get(KEY_PREFIX + written)
    assert isinstance(stored, bytes)
    assert json.loads(zlib.decompress(stored))["status"] == "succeeded"
    assert SECRET not in caplog.text


class _SlowStore(read32.OperationStore):
    """A disk store whose writes wait for the test, as a write to an unreachable host waits
    for its connect timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def put(self, operation_id: str, record: dict[str, Any], seconds: float) -> None:
        self.entered.set()
        assert self.release.wait(10), "the store was called on the event loop, which stalled"
        super().put(operation_id, record, seconds)


async def test_a_slow_store_never_stalls_the_event_loop() -> None:
    store = _SlowStore()
    operations = read32.ReadOperations(store)
    _, finish, work = _waiting_work()
    submitting = asyncio.get_running_loop().create_task(operations.submit(work))
    await _until(store.entered.is_set, "the store's write to start")  # the loop still turns
    store.release.set()
    operation_id = await submitting
    finish.set()
    await operations.aclose()
    assert operation_id


def test_without_redis_py_the_disk_store_serves_and_a_redis_setting_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` fails, as uninstalled
    for module in ("viewfinder.compat.read_redis", "viewfinder.engine.redis_link"):
        monkeypatch.delitem(sys.modules, module)  # imported afresh, so they fail too
    create_app(ServerSettings(no_auth=True))  # the disk store: redis-py never needed
    settings = ServerSettings(no_auth=True, redis=f"redis://:{SECRET}@127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError) as refused:
        create_app(settings)
    assert "pip install 'viewfinder[redis]'" in str(refused.value)
    assert SECRET not in str(refused.value) and SECRET not in repr(settings)
