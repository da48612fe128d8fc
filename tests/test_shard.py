"""A job split across hosts: `batch --shard I/N` and `embed --shard I/N` against the
scripted simulator (NOT a model), and `viewfinder merge` joining their outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_app import sub_commands
from endpoint_env import clear_endpoint_env
from PIL import Image
from typer.testing import CliRunner

from viewfinder.batch.shard import Shard, shard_of
from viewfinder.cli import batch as batch_command
from viewfinder.cli import embed as embed_command
from viewfinder.cli import merge as merge_command
from viewfinder.cli.merge import merge_outputs
from viewfinder.testing.simulator import Reply, Simulator

CAPTION = {"caption": {"text": "a square", "conf": 90}}
N = 3


# --- the hash -------------------------------------------------------------------------------


def test_the_shard_of_an_id_is_pinned_and_the_same_in_a_fresh_process() -> None:
    idents = ["photos/p0.png", "https://example.com/a.jpg?id=1", "scans/été/ü.png", ""]
    # pinned: a re-run on another host, with another version or Python, takes the same share
    assert [shard_of(ident, 8) for ident in idents] == [4, 8, 1, 5]
    code = (
        "import json, sys\n"
        "from viewfinder.batch.shard import shard_of\n"
        "print(json.dumps([shard_of(i, 8) for i in json.loads(sys.argv[1])]))"
    )
    fresh = subprocess.run(  # another process, another seed of Python's own hash()
        [sys.executable, "-c", code, json.dumps(idents)],
        env=os.environ | {"PYTHONHASHSEED": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(fresh.stdout) == [4, 8, 1, 5]


def test_shard_specs_are_validated() -> None:
    assert Shard.parse("2/8") == Shard(2, 8) and str(Shard.parse(" 1 / 1 ")) == "1/1"
    for bad in ("0/8", "9/8", "1/0", "2", "a/b", "1/8/2", "-1/8", "1/70000"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    assert all(Shard(1, 1).takes(str(i)) for i in range(10))


# --- batch --shard against the simulator ---------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    reply = Reply(CAPTION, prompt_tokens=1000, completion_tokens=100)
    with Simulator(default=lambda body: reply) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return sub_commands(batch_command.register, embed_command.register, merge_command.register)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twenty images, a few in a sub-directory."""
    root = tmp_path_factory.mktemp("shard") / "photos"
    for i in range(20):
        path = root / ("sub" if i % 4 == 0 else "") / f"p{i:02}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (80, 60), (10 * i, 40, 90)).save(path)
    return root


@pytest.fixture(scope="module")
def shard_outputs(
    app: typer.Typer, sim: Simulator, photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    """The three shards' outputs of one job over `photos`, each run once."""
    directory = tmp_path_factory.mktemp("outputs")
    outs = [directory / f"shard-{i}.jsonl" for i in range(1, N + 1)]
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    with pytest.MonkeyPatch.context() as monkeypatch:
        clear_endpoint_env(monkeypatch)
        for i, out in enumerate(outs, 1):
            result = runner.invoke(app, [*batch_args(sim, photos, out), "--shard", f"{i}/{N}"])
            assert result.exit_code == 0, result.output
    return outs


def batch_args(sim: Simulator, source: Path, out: Path) -> list[str]:
    return [
        *("batch", str(source), "--out", str(out)),
        *("--base-url", sim.base_url, "--no-cache", "-f", "caption", "--progress-every", "0"),
    ]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def all_ids(photos: Path) -> set[str]:
    return {str(path) for path in photos.rglob("*.png")}


def test_shards_partition_the_ids_and_each_resumes_only_its_own(
    runner: CliRunner,
    app: typer.Typer,
    sim: Simulator,
    photos: Path,
    shard_outputs: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear_endpoint_env(monkeypatch)
    shares = [{record["id"] for record in records(out)} for out in shard_outputs]
    assert set().union(*shares) == all_ids(photos)  # all of them...
    assert sum(len(share) for share in shares) == 20  # ...each taken once
    assert all(shares)  # twenty ids over three shards: none empty
    for i, share in enumerate(shares, 1):  # by the hash of exactly the record's id
        assert share == {ident for ident in all_ids(photos) if shard_of(ident, N) == i}
    assert sim.stats.total == 20  # one request per image, over the three hosts

    # the same command again: the same share, all of it skipped, counted as its own
    out = shard_outputs[1]
    again = runner.invoke(app, [*batch_args(sim, photos, out), "--shard", f"2/{N}"])
    assert again.exit_code == 0, again.output
    own = len(shares[1])
    assert f"0 ok, 0 failed, 0 cached, {own} skipped (already done)" in again.stderr
    assert "batch: 0 of 0 (100%)" in again.stderr and sim.stats.total == 20

    # a shard's progress total is its own share, before anything is done
    fresh = out.with_name("fresh.jsonl")
    second = runner.invoke(app, [*batch_args(sim, photos, fresh), "--shard", f"2/{N}"])
    assert second.exit_code == 0, second.output
    assert f"batch: 0 of {own} (0%)" in second.stderr
    assert {record["id"] for record in records(fresh)} == shares[1]  # the same partition

    bad = runner.invoke(app, [*batch_args(sim, photos, fresh), "--shard", "4/3"])
    assert bad.exit_code == 2 and "the shard must be 1 to 3" in bad.output


def test_embed_takes_the_same_share_of_the_same_ids(
    runner: CliRunner,
    app: typer.Typer,
    sim: Simulator,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear_endpoint_env(monkeypatch)
    monkeypatch.setenv("SIM_KEY", "co-test")
    shares = []
    for i in (1, 2):
        out = tmp_path / f"vectors-{i}.jsonl"
        result = runner.invoke(
            app,
            [
                *("embed", str(photos / "sub"), "--out", str(out), "--shard", f"{i}/2"),
                *("--backend", "cohere", "--model", "embed-v4.0", "--base-url", sim.endpoint),
                *("--api-key-env", "SIM_KEY"),
            ],
        )
        assert result.exit_code == 0, result.output
        shares.append({record["id"] for record in records(out)})
    assert shares[0].isdisjoint(shares[1])
    assert shares[0] | shares[1] == all_ids(photos / "sub")
    assert shares[0] == {ident for ident in shares[0] | shares[1] if shard_of(ident, 2) == 1}


# --- merge ----------------------------------------------------------------------------------


def test_merge_gives_every_id_once_and_checks_the_shards(
    runner: CliRunner, app: typer.Typer, photos: Path, shard_outputs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "merged.jsonl"
    inputs = [str(path) for path in shard_outputs]
    result = runner.invoke(app, ["merge", str(out), *inputs, "--expect-shards", str(N)])
    assert result.exit_code == 0, result.output
    merged = records(out)
    assert sorted(r["id"] for r in merged) == sorted(all_ids(photos))
    assert all(r["status"] == "ok" for r in merged)
    assert "merge: 20 ids (20 ok, 0 failed) from 3 inputs (20 lines)" in result.stderr
    assert "warning" not in result.stderr

    missing = runner.invoke(app, ["merge", str(out), *inputs[:2], "--expect-shards", str(N)])
    assert missing.exit_code == 1 and "no input holds shard 3/3" in missing.stderr

    twice = runner.invoke(app, ["merge", str(out), *inputs, inputs[0]])
    assert twice.exit_code == 1, twice.output
    assert f"{len(records(shard_outputs[0]))} ids are in more than one input" in twice.stderr
    assert len(records(out)) == 20  # still once each

    mixed = tmp_path / "mixed.jsonl"  # shard 1's file with one line of shard 2
    first_line = shard_outputs[1].read_text().splitlines(keepends=True)[0]
    mixed.write_text(shard_outputs[0].read_text() + first_line)
    wrong = runner.invoke(
        app, ["merge", str(out), str(mixed), *inputs[1:], "--expect-shards", str(N)]
    )
    assert wrong.exit_code == 1
    assert f"{mixed} holds shard 1/3, but 1 of its lines belong to other shards" in wrong.stderr

    into_input = runner.invoke(app, ["merge", inputs[0], *inputs])
    assert into_input.exit_code == 2 and "is one of the inputs" in into_input.stderr
    nowhere = runner.invoke(app, ["merge", str(out), str(tmp_path / "nowhere.jsonl")])
    assert nowhere.exit_code == 2


def line(ident: str, status: str, mark: int) -> str:
    body = {"result": {"mark": mark}} if status == "ok" else {"error": {"type": "X"}}
    return json.dumps({"id": ident, "status": status, **body, "id_version": 2}) + "\n"


def test_ok_beats_error_the_last_ok_wins_and_torn_or_foreign_lines_are_said(
    tmp_path: Path,
) -> None:
    a, b, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "out.jsonl"
    a.write_text(
        line("x", "error", 1)
        + line("y", "ok", 2)
        + line("z", "error", 3)
        + "not json\n\n"
        + line("w", "ok", 4)
        + line("w", "ok", 5)  # a resume's later line in the same file
    )
    b.write_text(line("x", "ok", 6) + line("y", "ok", 7) + line("z", "error", 8) + '{"id": "t"')
    report = merge_outputs(out, [a, b])
    by_id = {r["id"]: r for r in records(out)}
    assert len(records(out)) == 4 == report.ids
    assert by_id["x"]["result"] == {"mark": 6}  # ok wins over an error, wherever it is
    assert by_id["y"]["result"] == {"mark": 7}  # among ok lines the last wins
    assert by_id["z"]["status"] == "error" and by_id["z"]["error"] == {"type": "X"}  # kept
    assert by_id["w"]["result"] == {"mark": 5}
    assert (report.ok, report.failed, report.lines) == (3, 1, 8)
    assert report.duplicates == 3 and report.duplicate_examples == ["x", "y", "z"]
    assert report.torn == [b] and report.unreadable == {a: 1}
    problems = report.problems()
    assert len(problems) == 4
    assert "3 ids are in more than one input" in problems[0]
    assert "1 ids failed in every input" in problems[1]
    assert f"{b}: a torn last line" in problems[2]
    assert f"{a}: 1 lines that are not records" in problems[3]
    assert b.read_text().endswith('{"id": "t"')  # inputs are only read
    assert not list(tmp_path.glob(".out.jsonl.*"))  # no temporary file left behind
