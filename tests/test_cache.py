"""Cache keys and the diskcache store, and why a damaged store never fails an analysis."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import re
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import httpx2
import pytest
from endpoint_env import clear_endpoint_env
from filelock import FileLock
from PIL import Image
from typer.testing import CliRunner

import viewfinder.engine.cache
from viewfinder import ImageAnalyzer
from viewfinder.engine.cache import ResponseCache, default_cache_dir, request_key
from viewfinder.prepare.redact import redact_image_payloads
from viewfinder.testing.simulator import Simulator

BASE: dict[str, Any] = {
    "endpoint": "http://127.0.0.1:8000/v1",
    "model": "gpt-4.1-mini",
    "mode": "json_mode",
    "messages": [
        {"role": "system", "content": "be precise"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "caption"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/jpeg;base64,QUJD", "detail": "high"},
                },
            ],
        },
    ],
    "schema": {"title": "ImageAnalysis", "properties": {"caption": {}}},
    "sampling": {"temperature": 0, "seed": 0, "max_tokens": 4096},
    "model_version": "gpt-4.1-mini+0123456789",
}


def _with(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_key_is_stable_and_hex() -> None:
    key = request_key(**BASE)
    assert key == request_key(**dict(BASE)) and len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"endpoint": "https://example.openai.azure.com/openai/deployments/x"},
        {"model": "gpt-4.1"},
        {"mode": "tool_call"},
        {"schema": {"title": "Other"}},
        {"sampling": {"temperature": 0, "seed": 1, "max_tokens": 4096}},
        {"model_version": "gpt-4.1-mini+fedcba9876"},
    ],
)
def test_everything_that_changes_an_answer_changes_the_key(change: dict[str, Any]) -> None:
    assert request_key(**_with(**change)) != request_key(**BASE)


def test_another_image_or_detail_changes_the_key() -> None:
    messages = redact_image_payloads(BASE["messages"])
    assert "QUJD" not in str(messages) and "sha256=" in str(messages)
    other = [
        BASE["messages"][0],
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "caption"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/jpeg;base64,REVG", "detail": "high"},
                },
            ],
        },
    ]
    low = [
        BASE["messages"][0],
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "caption"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/jpeg;base64,QUJD", "detail": "low"},
                },
            ],
        },
    ]
    keys = {
        request_key(**BASE),
        request_key(**_with(messages=other)),
        request_key(**_with(messages=low)),
    }
    assert len(keys) == 3


def test_store_roundtrip_ttl_and_clear(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    try:
        assert cache.get("k") is None
        cache.set("k", '{"a": 1}')
        assert cache.get("k") == '{"a": 1}' and len(cache) == 1
        cache.clear()
        assert cache.get("k") is None
    finally:
        cache.close()
    expiring = ResponseCache(tmp_path / "e", ttl=-1)  # already expired when stored
    try:
        expiring.set("k", "{}")
        assert expiring.get("k") is None
    finally:
        expiring.close()


def test_cache_dir_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("VIEWFINDER_CACHE_DIR")
    assert "viewfinder" in str(default_cache_dir())


def test_key_ignores_the_api_key_and_the_cache_dir(tmp_path: Path) -> None:
    from PIL import Image

    from viewfinder import ImageAnalyzer
    from viewfinder.analyzers.features import parse_features

    image = Image.new("RGB", (120, 80), "red")
    keys = []
    for secret in ("key-one", "key-two"):
        with ImageAnalyzer(
            base_url="http://127.0.0.1:9/v1", api_key=secret, cache=tmp_path / secret
        ) as analyzer:
            request = analyzer.build(analyzer.prepare(image), parse_features(["caption"]))
            keys.append(analyzer.engine._key(request))
    assert keys[0] == keys[1]


def test_a_cache_hit_needs_no_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    import viewfinder.analyzers.base as base
    from viewfinder import ImageAnalyzer
    from viewfinder.testing.simulator import Simulator

    photo = tmp_path / "photo.png"
    Image.new("RGB", (300, 200), "navy").save(photo)
    answer = {"caption": {"text": "a navy rectangle", "conf": 90}}
    with (
        Simulator(default=lambda body: answer) as sim,
        ImageAnalyzer(base_url=sim.base_url, cache=tmp_path / "cache") as analyzer,
    ):
        first = analyzer.analyze(photo, features=["caption"])

        def no_decoding(*args: object, **kwargs: object) -> None:
            raise AssertionError("a cache hit must not decode the image")

        monkeypatch.setattr(base, "prepare_image", no_decoding)
        second = analyzer.analyze(photo, features=["caption"])
        assert sim.stats.total == 1
    assert second.usage.cache_hit and second.usage.input_tokens == 0
    assert second.model_dump(exclude={"usage"}) == first.model_dump(exclude={"usage"})
    assert second.metadata.width == 300 and second.metadata.height == 200


def test_batch_cache_hits_need_no_decoding_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from PIL import Image

    import viewfinder.analyzers.base as base
    from viewfinder import ImageAnalyzer
    from viewfinder.testing.simulator import Simulator

    images = []
    for shade in (10, 90, 170):
        buffer = io.BytesIO()
        Image.new("RGB", (120, 80), (shade, 0, 0)).save(buffer, "PNG")
        images.append(buffer.getvalue())
    answer = {"caption": {"text": "a red rectangle", "conf": 90}}
    with (
        Simulator(default=lambda body: answer) as sim,
        ImageAnalyzer(base_url=sim.base_url, cache=tmp_path / "cache") as analyzer,
    ):
        first = list(analyzer.analyze_many(images, features=["caption"]))
        assert all(item.ok for item in first) and sim.stats.total == 3

        def no_decoding(*args: object, **kwargs: object) -> None:
            raise AssertionError("a cache hit must not decode the image")

        monkeypatch.setattr(base, "prepare_image", no_decoding)
        again = list(analyzer.analyze_many(images, features=["caption"]))
    assert all(item.ok and item.usage.cache_hit for item in again)
    assert sim.stats.total == 3
    assert {item.sha256 for item in again} == {item.sha256 for item in first}


# --- a damaged store never fails an analysis ------------------------------------------

CAPTION = {"caption": {"text": "a coloured rectangle", "conf": 90}}


def _filled(directory: Path, count: int = 40) -> dict[str, str]:
    """A closed cache at `directory` holding `count` entries; returns them."""
    entries = {f"key-{i}": json.dumps({"answer": "x" * 500, "i": i}) for i in range(count)}
    cache = ResponseCache(directory)
    for key, value in entries.items():
        cache.set(key, value)
    cache.close()
    return entries


def _truncate(directory: Path) -> None:
    """The issue's damage, `truncate -s 20480 cache.db`: sqlite no longer opens it."""
    os.truncate(directory / "cache.db", 20480)


def _damage_entries(directory: Path) -> None:
    """Zero the pages of the entries table and its indexes, leaving the settings intact.

    The store still opens; reading or writing an entry then fails with "database disk
    image is malformed", as when a disk goes bad under a running cache.
    """
    database = directory / "cache.db"
    with closing(sqlite3.connect(database)) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every entry into cache.db itself
        (first,) = con.execute(
            "SELECT min(rootpage) FROM sqlite_master WHERE tbl_name = 'Cache' AND rootpage > 0"
        ).fetchone()
        (page_size,) = con.execute("PRAGMA page_size").fetchone()
    start = (first - 1) * page_size
    with database.open("r+b") as file:
        file.seek(start)
        file.write(bytes(database.stat().st_size - start))
    with closing(sqlite3.connect(database)) as con, pytest.raises(sqlite3.DatabaseError):
        con.execute("SELECT count(*) FROM Cache").fetchall()


def _damaged_copies(directory: Path) -> list[Path]:
    return sorted(directory.parent.glob(f"{directory.name}.damaged-*"))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "viewfinder.cache" and record.levelno >= logging.WARNING
    ]


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 80), (shade, 40, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_truncated_store_is_moved_aside_and_a_fresh_one_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "answers"
    _filled(directory)
    _truncate(directory)

    cache = ResponseCache(directory)
    try:
        assert cache.get("key-1") is None
        cache.set("key-1", "{}")
        assert cache.get("key-1") == "{}" and len(cache) == 1
    finally:
        cache.close()

    (aside,) = _damaged_copies(directory)
    assert re.fullmatch(r"answers\.damaged-\d{8}T\d{6}Z-\d+", aside.name)
    assert (aside / "cache.db").stat().st_size == 20480  # kept as it was, for inspection
    (record,) = _warnings(caplog)
    message = record.getMessage()
    assert str(aside) in message and "continue without the old entries" in message
    assert record.exc_info is None


def _pickled_garbage(database: Path, key: str) -> None:
    with closing(sqlite3.connect(database)) as con, con:
        con.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = ?", (b"\x80\x05gar", key))


def _undecodable_file(database: Path, key: str) -> None:
    (database.parent / "garbage.val").write_bytes(b"\xff\xfe not utf-8 \xc3")
    with closing(sqlite3.connect(database)) as con, con:
        con.execute(
            "UPDATE Cache SET mode = 3, filename = 'garbage.val', value = NULL WHERE key = ?",
            (key,),
        )


@pytest.mark.parametrize("spoil", [_pickled_garbage, _undecodable_file])
def test_an_unreadable_entry_is_a_miss_and_the_rest_of_the_store_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil: Any
) -> None:
    directory = tmp_path / "answers"
    entries = _filled(directory)
    spoil(directory / "cache.db", "key-7")

    cache = ResponseCache(directory)
    try:
        assert cache.get("key-7") is None
        assert cache.get("key-8") == entries["key-8"] and len(cache) == len(entries)
        cache.set("key-7", "{}")  # the next answer simply replaces it
        assert cache.get("key-7") == "{}"
    finally:
        cache.close()
    assert not _damaged_copies(directory) and not _warnings(caplog)


def test_damage_found_in_use_is_repaired_once_and_every_user_follows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "answers"
    entries = _filled(directory)
    # Two users of one directory, as two processes would be; `second` keeps its
    # connection to the old store open throughout.
    first, second = ResponseCache(directory), ResponseCache(directory)
    try:
        assert first.get("key-1") == entries["key-1"] == second.get("key-1")
        first.close()
        _damage_entries(directory)

        assert first.get("key-2") is None  # found the damage: moved aside, fresh store
        second.set("from-second", "2")
        assert first.get("from-second") == "2"
        first.set("from-first", "1")
        assert second.get("from-first") == "1" and second.get("key-3") is None
    finally:
        first.close()
        second.close()

    assert len(_damaged_copies(directory)) == 1
    (record,) = _warnings(caplog)
    assert "malformed" in record.getMessage()


def test_threads_finding_the_damage_together_repair_it_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "answers"
    _filled(directory)
    cache = ResponseCache(directory)
    cache.close()
    _damage_entries(directory)
    together = threading.Barrier(8)

    def read(key: str) -> str | None:
        together.wait(timeout=30)
        return cache.get(key)

    try:
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(read, [f"key-{i}" for i in range(8)])) == [None] * 8
        cache.set("after", "1")
        assert cache.get("after") == "1"
    finally:
        cache.close()
    assert len(_damaged_copies(directory)) == 1 and len(_warnings(caplog)) == 1


def _refuse(self: Path, target: object) -> Path:
    raise PermissionError(13, "Permission denied", str(self))


@pytest.mark.parametrize("obstacle", ["the move is refused", "another process holds the lock"])
def test_when_the_repair_fails_the_cache_is_off_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, obstacle: str
) -> None:
    directory = tmp_path / "answers"
    _filled(directory)
    _truncate(directory)
    with ExitStack() as stack:
        if obstacle == "the move is refused":
            monkeypatch.setattr(Path, "rename", _refuse)
        else:
            monkeypatch.setattr(viewfinder.engine.cache, "HEAL_LOCK_TIMEOUT", 0.05)
            stack.enter_context(FileLock(tmp_path / "answers.lock"))
        cache = ResponseCache(directory)
        for _ in range(2):
            cache.set("k", "v")
            assert cache.get("k") is None and len(cache) == 0
        cache.clear()
        cache.close()

    (record,) = _warnings(caplog)
    assert "analyses continue without a cache" in record.getMessage()
    assert not _damaged_copies(directory)


def test_a_directory_that_cannot_be_created_means_no_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = ResponseCache(blocker / "answers")
    cache.set("k", "v")
    assert cache.get("k") is None and len(cache) == 0
    cache.close()
    (record,) = _warnings(caplog)
    assert "without a cache" in record.getMessage()


def _open_together(directory: str, name: str, other: str, together: Any, results: Any) -> None:
    """One of two processes: open the damaged cache at the same moment as the other and
    use it, then, once both are past the repair, store an entry and read the other's.

    (A write racing the repair itself may land in the store being moved aside: for a cache
    that is one lost entry, a later miss. Entries written after both processes have used
    the repaired store must be shared, which is what this checks.)"""
    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    logging.getLogger("viewfinder.cache").addHandler(Keep(logging.WARNING))
    try:
        together.wait(timeout=60)
        cache = ResponseCache(directory)
        cache.set(f"{name}-during", name)  # finds the damage, or the repaired store
        together.wait(timeout=60)
        cache.set(name, name)
        together.wait(timeout=60)
        results.put((name, cache.get(other), said))
        cache.close()
    except BaseException as exc:  # reported, so the parent fails at once
        results.put((name, f"failed: {exc!r}", said))


def test_an_open_that_lost_the_directory_to_another_repair_is_tried_again_under_the_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's repair renames the directory while this one opens it: sqlite says
    "unable to open database file" (not damage). Tried again holding the repair lock, the
    open finds the fresh store, and the cache stays on, silently. (The race itself is rare:
    the two-process test below met it once in nine clean-clone CI runs, and it turned
    that process's cache off.)"""
    real = viewfinder.engine.cache.diskcache.Cache
    calls: list[str] = []

    def open_once_lost(directory: str, **options: Any) -> Any:
        calls.append(directory)
        if len(calls) == 1:
            raise sqlite3.OperationalError("unable to open database file")
        return real(directory, **options)

    monkeypatch.setattr(viewfinder.engine.cache.diskcache, "Cache", open_once_lost)
    cache = ResponseCache(tmp_path / "answers")
    cache.set("k", "v")
    assert cache.get("k") == "v" and len(calls) == 2
    cache.close()
    assert not _warnings(caplog)


def test_two_processes_repairing_at_once_move_it_aside_once_and_share_the_fresh_store(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "answers"
    _filled(directory)
    _truncate(directory)
    context = multiprocessing.get_context("spawn")
    together, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_open_together, args=(str(directory), me, you, together, results))
        for me, you in (("one", "two"), ("two", "one"))
    ]
    for process in processes:
        process.start()
    try:
        seen = {
            name: (value, said)
            for name, value, said in (results.get(timeout=120) for _ in processes)
        }
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join(timeout=30)

    assert seen["one"][0] == "two" and seen["two"][0] == "one", seen
    assert [process.exitcode for process in processes] == [0, 0]
    assert len(_damaged_copies(directory)) == 1
    said = [line for _, lines in seen.values() for line in lines]
    assert len(said) == 1 and "moved it aside" in said[0], said


# --- end to end: the CLI, the server and a batch on a damaged cache ----------------------


def test_cli_analyze_on_a_truncated_cache_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from viewfinder.cli import app

    clear_endpoint_env(monkeypatch)  # only the command line configures the endpoint
    directory = tmp_path / "answers"
    _filled(directory)
    _truncate(directory)
    photo = tmp_path / "x.png"
    photo.write_bytes(_png(10))
    runner = CliRunner(env={"VIEWFINDER_CACHE_DIR": str(directory), "COLUMNS": "200"})

    with Simulator(default=lambda body: CAPTION) as sim:
        arguments = ["analyze", str(photo), "-f", "caption", "--base-url", sim.base_url]
        result = runner.invoke(app, arguments)
        again = runner.invoke(app, arguments)
        assert sim.stats.total == 1  # the second run was answered by the fresh store

    assert result.exit_code == 0, result.output
    assert result.exception is None and "Traceback" not in result.output
    assert "a coloured rectangle" in result.stdout
    assert again.exit_code == 0 and "cache hit" in again.stdout
    assert len(_damaged_copies(directory)) == 1


def test_the_console_script_shows_the_repair_as_one_warning_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from viewfinder.cli import main

    clear_endpoint_env(monkeypatch)
    directory = tmp_path / "answers"
    _filled(directory)
    _truncate(directory)
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(directory))
    photo = tmp_path / "x.png"
    photo.write_bytes(_png(30))
    handlers = list(logging.getLogger("viewfinder.cache").handlers)

    with Simulator(default=lambda body: CAPTION) as sim:
        arguments = ["viewfinder", "analyze", str(photo), "-f", "caption", "--base-url"]
        monkeypatch.setattr(sys, "argv", [*arguments, sim.base_url])
        with pytest.raises(SystemExit) as exited:
            main()

    assert exited.value.code == 0
    (aside,) = _damaged_copies(directory)
    err = capsys.readouterr().err
    (line,) = err.splitlines()
    assert line.startswith("warning: the answer cache at ") and str(aside) in line
    assert logging.getLogger("viewfinder.cache").handlers == handlers  # removed again


async def test_the_server_starts_and_answers_on_a_truncated_cache(tmp_path: Path) -> None:
    from viewfinder.compat.server import ANALYZE_PATH, ServerSettings, create_app

    directory = tmp_path / "answers"
    _filled(directory)
    _truncate(directory)
    key = "cache-test-key"
    with Simulator(default=lambda body: CAPTION) as sim:
        options = {"base_url": sim.base_url, "api_key": "test-key-placeholder", "cache": directory}
        app = create_app(ServerSettings(api_keys=(key,), analyzer_options=options))
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://testserver"
            ) as client,
        ):
            response = await client.post(
                ANALYZE_PATH,
                params={"api-version": "2023-10-01", "features": "caption"},
                headers={"Ocp-Apim-Subscription-Key": key, "Content-Type": "image/png"},
                content=_png(20),
            )
    assert response.status_code == 200, response.text
    assert response.json()["captionResult"]["text"] == "a coloured rectangle"
    assert len(_damaged_copies(directory)) == 1


def test_a_batch_over_a_cache_damaged_mid_use_yields_every_item(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "answers"
    images = [_png(shade) for shade in range(0, 200, 10)]
    with Simulator(default=lambda body: CAPTION) as sim:
        options = {"base_url": sim.base_url, "api_key": "test-key-placeholder", "cache": directory}
        with ImageAnalyzer(**options) as analyzer:
            assert all(item.ok for item in analyzer.analyze_many(images[:5], features=["caption"]))
        _damage_entries(directory)

        with ImageAnalyzer(**options) as analyzer:
            items = list(analyzer.analyze_many(images, features=["caption"], concurrency=4))

    assert len(items) == len(images) == 20
    assert all(item.ok for item in items), [item.error for item in items if not item.ok]
    assert len(_damaged_copies(directory)) == 1
    assert len(_warnings(caplog)) == 1
