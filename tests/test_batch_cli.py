"""`viewfinder batch` through click's runner, against the scripted simulator (NOT a model)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_app import sub_commands
from endpoint_env import ENDPOINT_ENV_VARS, clear_endpoint_env
from local_images import serve_images, trust_local_images
from PIL import Image
from typer.testing import CliRunner

from viewfinder.cli.batch import register
from viewfinder.prepare.redact import safe_url
from viewfinder.testing.simulator import Reply, Simulator

CAPTION = {"caption": {"text": "a square", "conf": 90}}


@pytest.fixture(autouse=True)
def _no_endpoint_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_endpoint_env(monkeypatch)


@pytest.fixture
def app() -> typer.Typer:
    return sub_commands(register)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    reply = Reply(CAPTION, prompt_tokens=1000, completion_tokens=100)
    with Simulator(default=lambda body: reply) as simulator:
        yield simulator


def save(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (80, 60), (shade, 40, 90)).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Six images, two of them in a sub-directory, and a file that is not an image."""
    root = tmp_path / "photos"
    for i in range(4):
        save(root / f"p{i}.png", 20 * i)
    for i in range(2):
        save(root / "sub" / f"q{i}.jpg", 200 + 20 * i)
    (root / "notes.txt").write_text("not an image")
    return root


def args(sim: Simulator, source: Path | str, out: Path) -> list[str]:
    return [
        *("batch", str(source), "--out", str(out)),
        *("--base-url", sim.base_url, "--no-cache", "-f", "caption"),
    ]


def lines(out: Path) -> list[dict[str, Any]]:
    text = out.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_directory_gives_one_ok_line_per_image_and_a_rerun_sends_nothing(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    result = runner.invoke(app, args(sim, photos, out))
    assert result.exit_code == 0, result.output
    records = lines(out)
    assert len(records) == 6 and sim.stats.total == 6
    assert {Path(r["id"]).name for r in records} == {"p0.png", "p1.png", "p2.png", "p3.png"} | {
        "q0.jpg",
        "q1.jpg",
    }
    for record in records:
        assert list(record) == [
            *("id", "index", "source", "sha256", "status", "result", "usage", "cost"),
            *("batch_priced", "custom_id", "id_version"),
        ]
        assert record["id_version"] == 2 and not record["batch_priced"]
        assert record["status"] == "ok" and record["source"] == record["id"]
        assert record["sha256"] == hashlib.sha256(Path(record["id"]).read_bytes()).hexdigest()
        assert record["result"]["caption"]["text"] == "a square"
        assert record["usage"]["input_tokens"] == 1000 and record["cost"] > 0
    assert "6 ok, 0 failed" in result.stderr

    again = runner.invoke(app, args(sim, photos, out))
    assert again.exit_code == 0, again.output
    assert sim.stats.total == 6 and len(lines(out)) == 6
    assert "0 ok, 0 failed, 0 cached, 6 skipped (already done)" in again.stderr


def test_a_corrupt_image_is_an_error_line_and_only_it_is_retried(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    broken = photos / "broken.png"
    broken.write_bytes(b"not a png at all")
    out = tmp_path / "results.jsonl"
    result = runner.invoke(app, args(sim, photos, out))
    assert result.exit_code == 1, result.output
    records = lines(out)
    assert len(records) == 7 and sim.stats.total == 6
    (error,) = [r for r in records if r["status"] == "error"]
    assert error["id"] == str(broken) and error["error"]["type"] == "ImageFormatError"
    assert error["sha256"] == hashlib.sha256(b"not a png at all").hexdigest()
    assert "result" not in error and "6 ok, 1 failed" in result.stderr

    still = runner.invoke(app, args(sim, photos, out))  # only the failed one is tried again
    assert still.exit_code == 1 and len(lines(out)) == 8 and sim.stats.total == 6

    save(broken, 123)
    fixed = runner.invoke(app, args(sim, photos, out))
    assert fixed.exit_code == 0, fixed.output
    records = lines(out)
    assert len(records) == 9 and sim.stats.total == 7
    assert records[-1]["id"] == str(broken) and records[-1]["status"] == "ok"  # latest wins
    assert "1 ok, 0 failed, 0 cached, 6 skipped" in fixed.stderr


def test_a_torn_last_line_is_cut_off_and_its_image_redone(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    assert runner.invoke(app, args(sim, photos, out)).exit_code == 0
    text = out.read_text()
    last = text.splitlines(keepends=True)[-1]
    out.write_text(text[: len(text) - len(last)] + last[: len(last) // 2])  # killed mid-write

    result = runner.invoke(app, args(sim, photos, out))
    assert result.exit_code == 0, result.output
    records = lines(out)  # every line parses again
    assert len(records) == 6 and sim.stats.total == 7
    assert records[-1]["id"] == json.loads(last)["id"]
    assert "repaired a torn last line" in result.stderr


def test_max_tokens_stops_the_batch_with_a_summary(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    result = runner.invoke(
        app, [*args(sim, photos, out), "--max-tokens", "2500", "--concurrency", "1"]
    )
    # 2 x 1,100 tokens spent; the next request (1,000 input tokens expected) would cross 2,500
    assert result.exit_code == 1, result.output
    assert len(lines(out)) == 2 and sim.stats.total == 2
    assert "2 ok, 0 failed, 0 cached, 0 skipped (already done), 4 not started" in result.stderr
    assert "stopped: token budget reached" in result.stderr


def test_a_list_from_stdin_and_usage_errors(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    listing = f"# two of them\n{photos / 'p0.png'}\n\n{photos / 'sub' / 'q1.jpg'}\n"
    result = runner.invoke(app, [*args(sim, "-", out), "--progress"], input=listing)
    assert result.exit_code == 0, result.output
    assert sorted(r["id"] for r in lines(out)) == [
        str(photos / "p0.png"),
        str(photos / "sub" / "q1.jpg"),
    ]

    missing = runner.invoke(app, args(sim, tmp_path / "nowhere", out))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    via = runner.invoke(app, [*args(sim, photos, out), "--via", "carrier-pigeon"])
    assert via.exit_code == 2
    unpriced = runner.invoke(
        app, [*args(sim, photos, out), "--model", "my-local-llava", "--max-dollars", "1"]
    )
    assert unpriced.exit_code == 2 and "needs a price" in unpriced.stderr
    assert sim.stats.total == 2


def test_via_batch_api_writes_the_same_lines_and_resumes_without_paying_twice(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    batch_args = [*args(sim, photos, out), "--via", "batch-api", "--poll-interval", "0.01"]
    result = runner.invoke(app, batch_args)
    assert result.exit_code == 0, result.output
    records = lines(out)
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    assert all(r["batch_priced"] and r["result"]["caption"]["text"] == "a square" for r in records)
    online_keys = ["id", "index", "source", "sha256", "status", "result", "usage", "cost"]
    assert all(
        list(r) == [*online_keys, "batch_priced", "custom_id", "id_version"] for r in records
    )
    assert all(r["custom_id"].startswith(f"{r['id']}#") for r in records)
    assert {Path(r["id"]).name for r in records} >= {"p0.png", "q1.jpg"}
    assert sim.stats.total == 0  # no online request: the answers came from the batch
    assert sim.api_calls.count("POST /v1/files") == 1
    assert sim.api_calls.count("POST /v1/batches") == 1
    assert (tmp_path / "results.jsonl.batch").is_dir()

    again = runner.invoke(app, batch_args)  # everything is done: nothing is sent again
    assert again.exit_code == 0, again.output
    assert len(lines(out)) == 6
    assert sim.api_calls.count("POST /v1/files") == 1


# --- one writer per output file -------------------------------------------------------------


def command_env() -> dict[str, str]:
    """This environment for a `python -m viewfinder` child: no endpoint, no proxy."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ENDPOINT_ENV_VARS and "proxy" not in name.lower()
    }
    return env | {"NO_COLOR": "1", "COLUMNS": "200"}


def test_a_second_batch_on_the_same_output_is_refused_at_once_naming_the_first(
    runner: CliRunner, app: typer.Typer, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    first_request = threading.Event()

    def answer(body: dict[str, Any]) -> Reply:
        first_request.set()
        return Reply(CAPTION, prompt_tokens=1000, completion_tokens=100)

    with Simulator(default=answer) as sim:
        viewfinder = [sys.executable, "-m", "viewfinder"]
        env = command_env()
        # The holder reads its image list from a stdin kept open: it analyses one image,
        # then waits for more, holding the lock, until it is killed.
        holder = subprocess.Popen(
            [*viewfinder, *args(sim, "-", out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            assert holder.stdin is not None
            holder.stdin.write(f"{photos / 'p0.png'}\n".encode())
            holder.stdin.flush()
            assert first_request.wait(timeout=60), "the holder never sent its request"
            sent = sim.stats.total

            refused = subprocess.run(
                [*viewfinder, *args(sim, photos, out)],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )

            assert holder.poll() is None  # the first one still runs, still holds the lock
            assert refused.returncode == 2, refused.stderr
            assert "is being written by another viewfinder batch" in refused.stderr
            assert f"(pid {holder.pid} on {socket.gethostname()}, since " in refused.stderr
            assert f": python -m viewfinder batch - --out {out} " in refused.stderr
            assert "wait for it or choose another --out" in refused.stderr
            assert sim.stats.total == sent  # the refused run sent no request at all
        finally:
            holder.kill()  # SIGKILL: no clean-up code runs in the holder
            holder.communicate()

        third = runner.invoke(app, args(sim, photos, out))  # the kernel freed the lock

    assert third.exit_code == 0, third.output
    records = lines(out)
    assert {Path(r["id"]).name for r in records} == {f"p{i}.png" for i in range(4)} | {
        "q0.jpg",
        "q1.jpg",
    }
    assert sim.stats.total >= sent + 5
    assert not (tmp_path / "results.jsonl.lock.json").exists()  # removed by the third on exit


# --- URL ids ------------------------------------------------------------------------------------

SECRET = "SECRETSIG0123456789"


def url_list(path: Path, urls: list[str]) -> Path:
    path.write_text("".join(f"{url}\n" for url in urls))
    return path


def test_urls_differing_in_their_query_are_two_images_and_no_secret_is_shown(
    runner: CliRunner,
    app: typer.Typer,
    sim: Simulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trust_local_images(monkeypatch)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "results.jsonl"
    served = {"/img.png": save(tmp_path / "img.png", 10).read_bytes()}
    with serve_images(served) as base:
        urls = [
            f"{base}/img.png?id=1&sv=2024-05-04&sig={SECRET}",
            f"{base}/img.png?id=2&sv=2024-05-04&sig={SECRET}",
            f"{base}/gone.png?X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}",
        ]
        first = runner.invoke(app, args(sim, url_list(tmp_path / "a.txt", urls), out))
        later = [*urls, f"{base}/img.png?id=3&sv=2024-05-04&sig={SECRET}"]
        second = runner.invoke(app, args(sim, url_list(tmp_path / "b.txt", later), out))

    assert first.exit_code == 1 and second.exit_code == 1  # gone.png is a 404 both times
    records = lines(out)
    ok = [r["id"] for r in records if r["status"] == "ok"]
    # id=3 was added later: analysed, not skipped as done
    assert sorted(ok) == sorted(safe_url(later[i]) for i in (0, 1, 3))
    assert all(r["source"] == r["id"] for r in records)
    assert sim.stats.total == 3
    assert "1 ok, 1 failed, 0 cached, 2 skipped" in second.stderr
    errors = [r for r in records if r["status"] == "error"]
    assert len(errors) == 2 and errors[0]["error"]["type"] == "ImageFetchError"
    shown = out.read_text() + first.output + second.output + caplog.text
    assert SECRET not in shown
    assert "sig=~" in out.read_text()  # the digest stands in for the secret


def old_line(ident: str, status: str = "ok") -> str:
    """A line as viewfinder batch wrote it before URL ids kept their query string."""
    record: dict[str, Any] = {"id": ident, "source": ident, "sha256": "0" * 64, "status": status}
    if status == "ok":
        record["result"] = {"caption": {"text": "old", "confidence": 0.5}}
    else:
        record["error"] = {"type": "ImageFetchError", "message": "HTTP 503"}
    record |= {"usage": {}, "cost": 0.001}
    return json.dumps(record) + "\n"


def test_an_old_output_file_resumes_without_analysing_twice(
    runner: CliRunner,
    app: typer.Typer,
    sim: Simulator,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trust_local_images(monkeypatch)
    served = {
        f"/{name}.png": save(tmp_path / f"{name}.png", i).read_bytes()
        for i, name in enumerate(["img", "b", "c", "d"])
    }
    with serve_images(served) as base:
        out = tmp_path / "results.jsonl"
        new_d = json.dumps({"id": f"{base}/d.png", "status": "ok", "id_version": 2}) + "\n"
        out.write_text(
            old_line(str(photos / "p0.png"))
            + old_line(f"{base}/img.png")  # one query variant of img.png, which one unknown
            + old_line(f"{base}/b.png", status="error")
            + new_d  # written since: the query-less d.png itself, not a variant
        )
        urls = [
            f"{base}/img.png?id=1&sig={SECRET}",  # done by the old run, or its twin was
            f"{base}/img.png?id=2&sig={SECRET}",
            f"{base}/b.png?sig={SECRET}",  # failed then: tried again
            f"{base}/c.png?id=1",  # never seen
            f"{base}/d.png?v=2",  # a variant of a version 2 line: a different image
            str(photos / "p0.png"),
        ]
        result = runner.invoke(app, args(sim, url_list(tmp_path / "list.txt", urls), out))
        again = runner.invoke(app, args(sim, url_list(tmp_path / "list.txt", urls), out))

    assert result.exit_code == 0, result.output
    new = lines(out)[4:]
    assert sorted(r["id"] for r in new) == sorted(safe_url(u) for u in urls[2:5])
    assert all(r["status"] == "ok" and r["id_version"] == 2 for r in new)
    assert sim.stats.total == 3
    assert "3 ok, 0 failed, 0 cached, 3 skipped (already done)" in result.stderr
    assert "2 of the skipped URLs matched a line written without the query string" in (
        result.stderr
    )
    assert again.exit_code == 0 and sim.stats.total == 3  # nothing twice
    assert "0 ok, 0 failed, 0 cached, 6 skipped" in again.stderr


# --- progress, failures, Ctrl-C ------------------------------------------------------------


def test_off_a_terminal_progress_is_plain_lines_counted_less_what_a_resume_skips(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    first = runner.invoke(app, [*args(sim, photos / "sub", out), "--progress-every", "0"])
    assert first.exit_code == 0, first.output
    # CliRunner's stderr is not a terminal: a line at the start and (every 0 s) per image
    progress = [line for line in first.stderr.splitlines() if " of 2 (" in line]
    assert progress[0].startswith("batch: 0 of 2 (0%) · 0 failed · 0 cached · ")
    assert len(progress) == 3 and progress[-1].startswith("batch: 2 of 2 (100%) · 0 failed")
    assert "images/min" in progress[-1] and "$0.00" in progress[-1] and "x 429" in progress[-1]
    assert "\x1b[" not in first.stderr  # no terminal control codes in a log

    again = runner.invoke(app, [*args(sim, photos, out), "--progress-every", "0"])
    assert again.exit_code == 0, again.output
    assert "batch: 0 of 4 (0%) · 0 failed · 0 cached · 2 skipped" in again.stderr
    assert "batch: 4 of 4 (100%)" in again.stderr

    quiet = runner.invoke(app, [*args(sim, photos, out), "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert "of 6" not in quiet.stderr and "0 ok, 0 failed, 0 cached, 6 skipped" in quiet.stderr
    default = runner.invoke(app, args(sim, photos, out))  # a line at the start, by default
    assert "batch: 0 of 0 (100%)" in default.stderr


def test_the_summary_groups_failed_images_by_error_type(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    for i in range(4):
        (photos / f"broken{i}.png").write_bytes(b"not a png at all")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos / 'p0.png'}\n{tmp_path / 'gone.png'}\n")
    out = tmp_path / "results.jsonl"
    result = runner.invoke(app, [*args(sim, listing, out), str(photos / "broken*.png")])
    assert result.exit_code == 1, result.output
    assert "1 ok, 5 failed" in result.stderr
    report = result.stderr[result.stderr.index("failed by error type:") :].splitlines()
    assert report[1].startswith("  ImageFormatError: 4 (") and report[1].endswith(", ...)")
    assert report[1].count("broken") == 3  # a few ids, not all
    assert report[2] == f"  ImageFetchError: 1 ({tmp_path / 'gone.png'})"


def test_ctrl_c_stops_between_lines_says_how_far_and_exits_130_and_a_rerun_resumes(
    runner: CliRunner, app: typer.Typer, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    answered = 0

    def answer(body: dict[str, Any]) -> Reply:
        nonlocal answered
        answered += 1  # the first two are answered; the third hangs until the test ends
        return Reply(
            CAPTION, prompt_tokens=1000, completion_tokens=100, delay=0 if answered <= 2 else 60
        )

    with Simulator(default=answer) as sim:
        batch = subprocess.Popen(
            [sys.executable, "-m", "viewfinder", *args(sim, photos, out), "--concurrency", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=command_env(),
        )
        try:
            deadline = time.monotonic() + 60
            while not (out.exists() and out.read_text().count("\n") == 2):
                assert batch.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)  # polling the file, not waiting out a race
            while answered < 3:  # the third image is in flight
                assert time.monotonic() < deadline
                time.sleep(0.02)
            batch.send_signal(signal.SIGINT)
            _, stderr = batch.communicate(timeout=60)
        finally:
            batch.kill()

        assert batch.returncode == 130, stderr
        assert "interrupted after 2 of 6; re-run the same command to resume" in stderr
        assert "Traceback" not in stderr
        assert [r["status"] for r in lines(out)] == ["ok", "ok"]  # whole lines only

        answered = -10  # the re-run is answered at once
        resumed = runner.invoke(app, args(sim, photos, out))
    assert resumed.exit_code == 0, resumed.output
    assert "4 ok, 0 failed, 0 cached, 2 skipped (already done)" in resumed.stderr
    assert len(lines(out)) == 6


def test_hosts_sharing_a_redis_share_the_answer_cache_and_one_rate_limit(
    runner: CliRunner,
    app: typer.Typer,
    sim: Simulator,
    photos: Path,
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--redis URL` (no VIEWFINDER_CACHE): the answers go to that Redis, so a host re-running
    what another host's shard did pays nothing, and the run is paced by the deployment's
    shared budget (its hash is in Redis), as `viewfinder serve --redis` replicas are."""
    import redis

    from viewfinder.engine.shared_limit import KEY_PREFIX

    monkeypatch.delenv("VIEWFINDER_CACHE", raising=False)
    monkeypatch.delenv("VIEWFINDER_REDIS", raising=False)
    common = ["-f", "caption", "--base-url", sim.base_url, "--redis", redis_url]
    first = ["batch", str(photos), "--out", str(tmp_path / "host-1.jsonl"), "--shard", "1/2"]
    result = runner.invoke(app, [*first, *common])
    assert result.exit_code == 0, result.output
    done_on_host_1 = sim.stats.total
    assert len(lines(tmp_path / "host-1.jsonl")) == done_on_host_1

    whole = ["batch", str(photos), "--out", str(tmp_path / "host-2.jsonl")]
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", str(tmp_path / "host-2-cache"))  # another disk
    result = runner.invoke(app, [*whole, *common])
    assert result.exit_code == 0, result.output
    assert sim.stats.total == 6  # only the images shard 1 did not have were sent
    assert f"6 ok, 0 failed, {done_on_host_1} cached" in result.stderr
    with redis.Redis.from_url(redis_url) as client:
        assert client.keys("viewfinder:answer:*")  # in Redis, not in either host's directory
        budgets = {key for key in client.keys(KEY_PREFIX + "*") if not key.endswith(b":recent")}
        assert len(budgets) == 1  # both hosts paced by one deployment's budget


def test_a_bad_redis_url_is_a_usage_error_without_its_password(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    bad = "http://:s3cret-pass@127.0.0.1:1/0"
    result = runner.invoke(app, [*args(sim, photos, out), "--redis", bad])
    assert result.exit_code == 2, result.output
    assert "Redis URL" in result.stderr and "s3cret-pass" not in result.output
    assert sim.stats.total == 0 and not out.exists()
