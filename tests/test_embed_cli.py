"""`viewfinder embed` in process (click's runner) against the simulator's embeddings routes.

The simulator is NOT a model: its vectors come from the SHA-256 of each input string
(`fake_vector`), so a test can know which stored vector a text is closest to.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_app import sub_commands
from endpoint_env import ENDPOINT_ENV_VARS, clear_endpoint_env
from PIL import Image
from typer.testing import CliRunner

from viewfinder.cli.embed import register
from viewfinder.embed.embedder import normalise
from viewfinder.testing.simulator import Simulator, fake_vector


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    """One simulator for the module (NOT a model), reset before each test."""
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def sim(server: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    clear_endpoint_env(monkeypatch)
    for name in ("VIEWFINDER_EMBED_BACKEND", "VIEWFINDER_EMBED_MODEL", "COHERE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIM_KEY", "co-test")
    server.reset()
    return server


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return sub_commands(register)


def save(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 60), (shade, 40, 90)).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Five images, two in a sub-directory, and a file that is not an image."""
    root = tmp_path / "photos"
    for i in range(3):
        save(root / f"p{i}.png", 30 * i)
    for i in range(2):
        save(root / "sub" / f"q{i}.jpg", 200 + 20 * i)
    (root / "notes.txt").write_text("not an image")
    return root


def cohere(sim: Simulator, *rest: str, model: str = "embed-v4.0") -> list[str]:
    return [
        *("embed", *rest, "--backend", "cohere", "--model", model),
        *("--base-url", sim.endpoint, "--api-key-env", "SIM_KEY"),
    ]


def lines(out: Path) -> list[dict[str, Any]]:
    text = out.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_directory_gives_one_vector_line_per_image_and_a_rerun_sends_nothing(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "vectors.jsonl"
    result = runner.invoke(app, cohere(sim, str(photos), "--out", str(out), "--dimensions", "256"))
    assert result.exit_code == 0, result.output
    records = lines(out)
    assert {Path(r["id"]).name for r in records} == {
        "p0.png",
        "p1.png",
        "p2.png",
        "q0.jpg",
        "q1.jpg",
    }
    for record in records:
        assert record["status"] == "ok" and record["model"] == "embed-v4.0"
        assert record["dimensions"] == 256 == len(record["vector"])
        assert math.isclose(math.fsum(v * v for v in record["vector"]), 1.0, rel_tol=1e-5)
    assert "embed: 5 ok, 0 failed" in result.output
    assert "5 images" in result.output
    sent = len(sim.embed_requests)

    again = runner.invoke(app, cohere(sim, str(photos), "--out", str(out), "--dimensions", "256"))
    assert again.exit_code == 0, again.output
    assert "5 skipped (already done)" in again.output
    assert len(sim.embed_requests) == sent and len(lines(out)) == 5


def test_a_glob_and_a_jsonl_of_ids(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    listing = tmp_path / "items.jsonl"
    listing.write_text(
        json.dumps({"id": "first", "path": str(photos / "p0.png")})
        + "\n"
        + json.dumps({"id": "second", "path": str(photos / "sub" / "q1.jpg")})
        + "\n"
    )
    out = tmp_path / "vectors.jsonl"
    pattern = str(photos / "sub" / "*.jpg")
    result = runner.invoke(app, cohere(sim, pattern, str(listing), "--out", str(out)))
    assert result.exit_code == 0, result.output
    ids = sorted(r["id"] for r in lines(out))
    assert ids == sorted(
        ["first", "second", str(photos / "sub" / "q0.jpg"), str(photos / "sub" / "q1.jpg")]
    )


def test_a_bad_image_is_an_error_line_the_rest_succeed_and_a_rerun_retries_it(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    bad = photos / "broken.png"
    bad.write_bytes(b"not a png at all")
    out = tmp_path / "vectors.jsonl"
    result = runner.invoke(app, cohere(sim, str(photos), "--out", str(out)))
    assert result.exit_code == 1, result.output
    records = {r["id"]: r for r in lines(out)}
    assert len(records) == 6
    assert records[str(bad)]["status"] == "error"
    assert records[str(bad)]["error"]["type"] == "ImageFormatError"
    assert "5 ok, 1 failed" in result.output
    assert "embed: 0 of 6 (0%)" in result.output  # counted before the run: a total at once
    assert f"failed by error type:\n  ImageFormatError: 1 ({bad})" in result.output

    save(bad, 99)  # fixed: the re-run retries only it
    before = len(sim.embed_requests)
    again = runner.invoke(app, cohere(sim, str(photos), "--out", str(out)))
    assert again.exit_code == 0, again.output
    assert "1 ok, 0 failed, 0 cached, 5 skipped" in again.output
    assert "embed: 0 of 1 (0%) · 0 failed · 0 cached · 5 skipped" in again.output
    assert len(sim.embed_requests) == before + 1
    assert lines(out)[-1]["id"] == str(bad) and lines(out)[-1]["status"] == "ok"


def test_resume_after_a_line_torn_by_a_kill_gives_every_id_exactly_once(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "vectors.jsonl"
    assert runner.invoke(app, cohere(sim, str(photos), "--out", str(out))).exit_code == 0
    text = out.read_text()
    kept = text.splitlines(keepends=True)[:2]
    torn = text.splitlines(keepends=True)[2]
    out.write_text("".join(kept) + torn[: len(torn) // 2])  # killed mid-write of line 3

    result = runner.invoke(app, cohere(sim, str(photos), "--out", str(out)))
    assert result.exit_code == 0, result.output
    assert "2 skipped" in result.output and "repaired a torn last line" in result.output
    ids = [r["id"] for r in lines(out)]
    assert len(ids) == len(set(ids)) == 5


def test_the_budget_stops_the_run_before_the_request_that_would_cross_it(
    runner: CliRunner,
    app: typer.Typer,
    sim: Simulator,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prices = tmp_path / "prices.json"  # a scripted price, per image: not Cohere's
    prices.write_text(json.dumps({"models": {"embed-english-v3.0": {"image": 0.01}}}))
    monkeypatch.setenv("VIEWFINDER_EMBED_PRICES", str(prices))
    out = tmp_path / "vectors.jsonl"
    args = [str(photos), "--out", str(out), "--concurrency", "1", "--max-dollars", "0.025"]
    result = runner.invoke(app, cohere(sim, *args, model="embed-english-v3.0"))
    assert result.exit_code == 1, result.output
    # v3 sends one image per request: two cost $0.02, a third would cross $0.025.
    assert len(sim.embed_requests) == 2
    assert len(lines(out)) == 2
    assert "2 ok, 0 failed" in result.output and "3 not started (budget)" in result.output
    assert "2 requests" in result.output and "$0.0200" in result.output
    assert "stopped: dollar budget reached" in result.output


def test_parquet_conversion_keeps_the_last_ok_line_per_id(
    runner: CliRunner, app: typer.Typer, tmp_path: Path
) -> None:
    pyarrow = pytest.importorskip("pyarrow")  # in the test extra; skipped only without it
    import pyarrow.parquet as pq

    run = tmp_path / "run.jsonl"
    vector = [0.6, 0.8]
    rows = [
        {"id": "a", "status": "error", "error": {"type": "ServerError", "message": "x"}},
        {"id": "a", "vector": vector, "model": "m", "dimensions": 2, "status": "ok"},
        {"id": "b", "vector": [1.0, 0.0], "model": "m", "dimensions": 2, "status": "ok"},
        {"id": "c", "status": "error", "error": {"type": "ImageFormatError", "message": "y"}},
    ]
    run.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run.parquet"
    result = runner.invoke(app, ["embed", "--to-parquet", str(out), str(run)])
    assert result.exit_code == 0, result.output
    # "a" failed, then succeeded: only "c" is missing from the table.
    assert "2 rows" in result.output and "1 ids left out" in result.output
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == ["a", "b"]
    assert pyarrow.types.is_float32(table.schema.field("vector").type.value_type)
    assert table.column("vector").to_pylist()[0] == pytest.approx(vector)
    assert table.column("dimensions").to_pylist() == [2, 2]


def test_query_ranks_the_stored_vector_of_the_same_text_first(
    runner: CliRunner, app: typer.Typer, sim: Simulator, tmp_path: Path
) -> None:
    run = tmp_path / "run.jsonl"
    texts = {"bike": "a red bicycle", "cat": "a sleeping cat", "boat": "a blue boat"}
    run.write_text(
        "".join(
            json.dumps(
                {
                    "id": ident,
                    "vector": list(normalise(fake_vector(text, 256))),
                    "model": "embed-v4.0",
                    "dimensions": 256,
                    "status": "ok",
                }
            )
            + "\n"
            for ident, text in texts.items()
        )
    )
    result = runner.invoke(app, cohere(sim, "--query", "a sleeping cat", str(run), "--top", "2"))
    assert result.exit_code == 0, result.output
    ranked = result.stdout.splitlines()
    assert len(ranked) == 2
    score, ident = ranked[0].split("\t")
    assert ident == "cat" and float(score) == pytest.approx(1.0, abs=1e-5)

    refused = runner.invoke(app, cohere(sim, "--query", "x", str(run), "--dimensions", "512"))
    assert refused.exit_code == 2
    assert "cannot be compared" in refused.output


def test_kill_9_mid_run_then_a_second_writer_is_refused_and_a_rerun_completes(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "vectors.jsonl"
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ENDPOINT_ENV_VARS and "proxy" not in name.lower()
    } | {"NO_COLOR": "1", "COLUMNS": "200", "SIM_KEY": "co-test"}
    # The holder reads its list from a stdin kept open: it embeds one image, then waits
    # for more, holding the lock, until it is killed.
    holder = subprocess.Popen(
        [sys.executable, "-m", "viewfinder", *cohere(sim, "-", "--out", str(out))],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert holder.stdin is not None
        holder.stdin.write(f"{photos / 'p0.png'}\n".encode())
        holder.stdin.flush()
        deadline = time.monotonic() + 30
        while not (out.exists() and out.read_text().endswith("\n")):
            assert time.monotonic() < deadline and holder.poll() is None, "no line written"
            time.sleep(0.02)  # polling for the holder's first line, not fixing a race

        refused = runner.invoke(app, cohere(sim, str(photos), "--out", str(out)))
        assert refused.exit_code == 2, refused.output
        assert "is being written by viewfinder embed" in refused.output
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs in the holder
        holder.communicate()

    result = runner.invoke(app, cohere(sim, str(photos), "--out", str(out)))
    assert result.exit_code == 0, result.output
    assert "1 skipped" in result.output
    ids = [r["id"] for r in lines(out)]
    assert len(ids) == len(set(ids)) == 5


@pytest.mark.parametrize("where", ["directory", "redis"])
def test_a_cache_makes_a_second_collection_free(
    runner: CliRunner,
    app: typer.Typer,
    sim: Simulator,
    photos: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    where: str,
) -> None:
    """`--cache DIR` or `--cache redis://...` (the one a job's hosts share)."""
    cache = tmp_path / "cache" if where == "directory" else request.getfixturevalue("redis_url")
    first = runner.invoke(
        app, cohere(sim, str(photos), "--out", str(tmp_path / "a.jsonl"), "--cache", str(cache))
    )
    assert first.exit_code == 0, first.output
    sent = len(sim.embed_requests)
    second = runner.invoke(
        app, cohere(sim, str(photos), "--out", str(tmp_path / "b.jsonl"), "--cache", str(cache))
    )
    assert second.exit_code == 0, second.output
    assert "5 ok, 0 failed, 5 cached" in second.output and "0 requests" in second.output
    assert len(sim.embed_requests) == sent
    by_id = [{r["id"]: r for r in lines(tmp_path / n)} for n in ("a.jsonl", "b.jsonl")]
    assert by_id[0] == by_id[1]


def test_the_local_backend_embeds_a_collection_and_answers_a_query(
    runner: CliRunner, app: typer.Typer, sim: Simulator, photos: Path, tmp_path: Path
) -> None:
    """`--backend local --model DIR`: in-process, no request sent (a tiny random-weight
    model, NOT a real one: the ranking itself means nothing, only its plumbing)."""
    pytest.importorskip("onnxruntime")
    from viewfinder.embed import Embedder
    from viewfinder.testing.tiny_embed import write_tiny_model

    model = write_tiny_model(tmp_path / "tiny")
    out = tmp_path / "vectors.jsonl"
    local = ("--backend", "local", "--model", str(model))
    result = runner.invoke(app, ["embed", str(photos), "--out", str(out), *local])
    assert result.exit_code == 0, result.output
    records = {Path(r["id"]).name: r for r in lines(out)}
    assert len(records) == 5 and not sim.embed_requests
    with Embedder("local", model=str(model)) as embedder:
        (direct,) = embedder.embed_images([photos / "p1.png"])
    assert records["p1.png"]["vector"] == pytest.approx(list(direct.vector), abs=1e-6)

    ranked = runner.invoke(app, ["embed", "--query", "a photo", str(out), "--top", "3", *local])
    assert ranked.exit_code == 0, ranked.output
    rows = [line.split("\t") for line in ranked.stdout.splitlines()]
    assert len(rows) == 3 and all(-1.0 <= float(score) <= 1.0 for score, _ in rows)
    assert [float(score) for score, _ in rows] == sorted((float(s) for s, _ in rows), reverse=True)


def test_redis_gives_the_hosts_of_a_job_one_cache_and_one_rate_limit(
    runner: CliRunner,
    app: typer.Typer,
    sim: Simulator,
    photos: Path,
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--redis URL` without `--cache`: vectors cached in that Redis, paced by the
    deployment's shared budget, as `viewfinder batch --redis` does for analyses."""
    import redis

    from viewfinder.engine.shared_limit import KEY_PREFIX

    monkeypatch.delenv("VIEWFINDER_CACHE", raising=False)
    monkeypatch.delenv("VIEWFINDER_REDIS", raising=False)
    for host in ("a", "b"):
        out = str(tmp_path / f"{host}.jsonl")
        result = runner.invoke(app, cohere(sim, str(photos), "--out", out, "--redis", redis_url))
        assert result.exit_code == 0, result.output
    assert "5 ok, 0 failed, 5 cached" in result.output  # the second host paid nothing
    with redis.Redis.from_url(redis_url) as client:
        budgets = {key for key in client.keys(KEY_PREFIX + "*") if not key.endswith(b":recent")}
        assert len(budgets) == 1
