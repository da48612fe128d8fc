"""The Batch API path, end to end against the scripted simulator on 127.0.0.1.

The simulator is not a model: every answer below is scripted. What these tests prove is
viewfinder's side: the lines it writes (the same body as online), sharding, the Files and
Batches calls, the state file that makes a killed run resume without paying twice, and
that a batch answer becomes the same typed result (or typed error) as online.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from local_images import serve_images, trust_local_images
from PIL import Image
from pydantic import BaseModel

import viewfinder as vf
from viewfinder.batch.provider_api import (
    AZURE_BATCH_URL,
    OPENAI_BATCH_URL,
    BatchJob,
    BatchState,
    run_batch,
)
from viewfinder.batch.records import BatchInput, BatchItem
from viewfinder.cost.pricing import cost_of
from viewfinder.errors import BatchFailedError, BatchTimeoutError
from viewfinder.prepare.redact import safe_url
from viewfinder.testing.simulator import BatchScript, Reply, ReplyLike, Simulator

FEATURES = ["caption", "objects", "tags"]
MODEL = "gpt-4.1-mini"
FAST: dict[str, Any] = {"timeout": 5.0, "poll_interval": 0.01}
SIZES = [(200, 100), (120, 160), (300, 300), (90, 60), (640, 480)]
FAST_RETRY = vf.RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


def answer(i: int) -> dict[str, Any]:
    """A scripted compact answer for image `i` (different boxes per image)."""
    return {
        "caption": {"text": f"picture number {i}", "conf": 90},
        "objects": [{"name": "thing", "conf": 80, "box": [50 * i, 100, 50 * i + 400, 900]}],
        "tags": [{"name": f"tag{i}", "conf": 70}],
    }


INVALID = {**answer(0), "objects": [{"name": "x", "conf": 50, "box": [0, 0, 5000, 10]}]}


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Five small distinct PNGs."""
    paths = []
    for i, size in enumerate(SIZES):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", size, (40 * i, 255 - 40 * i, 90)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def analyzer_for(sim: Simulator) -> Iterator[Callable[..., vf.ImageAnalyzer]]:
    made: list[Any] = []

    def make(cls: Any = vf.ImageAnalyzer, **options: Any) -> Any:
        settings = {
            "base_url": sim.base_url,
            "api_key": "test-key-placeholder",
            "model": MODEL,
            "cache": False,
            "retry": FAST_RETRY,
            **options,
        }
        analyzer = cls(**settings)
        made.append(analyzer)
        return analyzer

    yield make
    for analyzer in made:
        analyzer.close()


@pytest.fixture
def analyzer(analyzer_for: Callable[..., vf.ImageAnalyzer]) -> vf.ImageAnalyzer:
    return analyzer_for()


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def calls(sim: Simulator, call: str) -> int:
    return sum(1 for seen in sim.api_calls if seen == call)


def online(analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path]) -> list[Any]:
    sim.script(*(answer(i) for i in range(len(images))))
    return [analyzer.analyze(path, features=FEATURES) for path in images]


# --- the simulator's Files and Batches APIs ---------------------------------------------


def test_simulator_files_and_batches_through_the_sdk(sim: Simulator) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}
    requests = [
        {"custom_id": f"r{i}", "method": "POST", "url": OPENAI_BATCH_URL, "body": body}
        for i in range(3)
    ]
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests).encode()
    sim.script({"a": 1}, Reply(status=500, error_message="boom"), {"a": 3})
    with openai.OpenAI(api_key="k", base_url=sim.base_url, max_retries=0) as client:
        uploaded = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
        assert (uploaded.id, uploaded.bytes, uploaded.filename) == (
            "file-sim-1",
            len(data),
            "in.jsonl",
        )
        assert client.files.content(uploaded.id).content == data  # byte-exact multipart

        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert (batch.id, batch.status, batch.output_file_id) == ("batch_sim_1", "validating", None)
        statuses = [client.batches.retrieve(batch.id).status for _ in range(3)]
        assert statuses == ["in_progress", "completed", "completed"]
        done = client.batches.retrieve(batch.id)
        assert done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
        assert done.output_file_id and done.error_file_id
        out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
        err = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        assert [x["custom_id"] for x in out] == ["r0", "r2"]
        assert out[0]["response"]["status_code"] == 200
        content = out[0]["response"]["body"]["choices"][0]["message"]["content"]
        assert json.loads(content) == {"a": 1}
        assert err[0]["custom_id"] == "r1" and err[0]["response"]["status_code"] == 500
        assert err[0]["response"]["body"]["error"]["message"] == "boom"
        assert [b.id for b in client.batches.list()] == ["batch_sim_1"]
        with pytest.raises(openai.NotFoundError):
            client.batches.create(
                input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
            )
    assert sim.batch_requests == [body, body, body]
    assert sim.requests == []  # batch lines are not chat requests
    assert calls(sim, "POST /v1/files") == 1 and calls(sim, "POST /v1/batches") == 2
    sim.reset()
    assert sim.api_calls == [] and sim.batch_requests == []
    with openai.OpenAI(api_key="k", base_url=sim.base_url, max_retries=0) as client:
        assert client.files.create(file=("a.jsonl", b"{}"), purpose="batch").id == "file-sim-1"


def test_simulator_fails_an_invalid_input_file(sim: Simulator) -> None:
    line = {"custom_id": "same", "method": "POST", "url": "/v1/embeddings", "body": {}}
    data = (json.dumps(line) + "\n").encode()
    with openai.OpenAI(api_key="k", base_url=sim.base_url, max_retries=0) as client:
        uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        failed = client.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.errors is not None and failed.errors.data
    assert failed.errors.data[0].code == "invalid_url"


# --- writing -----------------------------------------------------------------------------


def test_shards_by_count_stream_lines_in_input_order(
    analyzer: vf.ImageAnalyzer, images: list[Path], tmp_path: Path
) -> None:
    work = tmp_path / "job"
    seen_on_disk: list[int] = []

    def lazily() -> Iterator[Path]:
        for path in images:
            # Lines already consumed are on disk before the next image is read.
            seen_on_disk.append(sum(len(lines_of(p)) for p in work.glob("shard-*.jsonl*")))
            yield path

    job = BatchJob(analyzer, work, max_requests_per_file=2, features=FEATURES)
    state = job.write(lazily())

    assert seen_on_disk == [0, 1, 2, 3, 4]
    assert [s["requests"] for s in state.shards] == [2, 2, 1]
    assert not list(work.glob("*.part"))
    lines = [line for s in state.shards for line in lines_of(work / s["file"])]
    assert [line["custom_id"].split("#")[0] for line in lines] == [str(p) for p in images]
    assert all(line["method"] == "POST" and line["url"] == OPENAI_BATCH_URL for line in lines)
    assert BatchState.load(job.state_path) == state


def test_shards_by_bytes(analyzer: vf.ImageAnalyzer, images: list[Path], tmp_path: Path) -> None:
    BatchJob(analyzer, tmp_path / "probe", features=FEATURES).write(images)
    probe = (tmp_path / "probe" / "shard-0000.jsonl").read_bytes()
    sizes = [len(line) for line in probe.splitlines(keepends=True)]
    cap = 2 * max(sizes) - 1  # never two of the largest, often two of others

    job = BatchJob(analyzer, tmp_path / "job", max_bytes_per_file=cap, features=FEATURES)
    state = job.write(images)

    assert sum(s["requests"] for s in state.shards) == 5 and len(state.shards) > 1
    for shard, following in zip(state.shards, state.shards[1:], strict=False):
        assert shard["bytes"] <= cap
        first_of_next = len((tmp_path / "job" / following["file"]).read_bytes().split(b"\n")[0]) + 1
        assert shard["bytes"] + first_of_next > cap  # greedy: the next line did not fit
    for shard in state.shards:
        assert (tmp_path / "job" / shard["file"]).stat().st_size == shard["bytes"] <= cap


def test_a_line_over_the_byte_cap_is_an_error_result_never_sent(
    analyzer: vf.ImageAnalyzer, images: list[Path], tmp_path: Path, sim: Simulator
) -> None:
    job = BatchJob(analyzer, tmp_path / "job", max_bytes_per_file=1000, features=FEATURES)
    items = list(job.run(images[:2], **FAST))
    assert job.state is not None and job.state.shards == []
    assert [type(item.error).__name__ for item in items] == ["InvalidOptionError"] * 2
    assert isinstance(items[0].error, vf.InvalidOptionError)
    assert sim.api_calls == []


@pytest.mark.parametrize("mode", ["json_schema", "tools", "json", "md_json"])
def test_the_batch_body_is_the_online_body(
    analyzer_for: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    images: list[Path],
    tmp_path: Path,
    mode: str,
) -> None:
    analyzer = analyzer_for(mode=mode)
    sim.script(answer(0))
    analyzer.analyze(images[0], features=FEATURES, smart_crops_aspect_ratios=None)
    sent_online = sim.requests[-1]

    job = BatchJob(analyzer, tmp_path / "job", features=FEATURES)
    job.write([images[0]])
    (line,) = lines_of(tmp_path / "job" / "shard-0000.jsonl")

    assert line["body"] == sent_online


def test_the_batch_body_is_the_online_body_for_a_custom_schema(
    analyzer_for: Callable[..., Any], sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    class Thing(BaseModel):
        name: str
        box: vf.BoundingBox

    audit = analyzer_for(vf.Analyzer, schema=Thing, prompt="Find the {{ what }}.")
    sim.script({"name": "square", "box": [100, 100, 600, 900]})
    expected = audit.analyze_detailed(images[2], what="square")
    sent_online = sim.requests[-1]

    sim.script({"name": "square", "box": [100, 100, 600, 900]})
    items = list(run_batch(audit, [images[2]], work_dir=tmp_path / "job", what="square", **FAST))

    assert lines_of(tmp_path / "job" / "shard-0000.jsonl")[0]["body"] == sent_online
    assert items[0].result == expected
    assert isinstance(items[0].result, vf.AnalysisRun)
    assert items[0].result.output.box == vf.BoundingBox(x=30, y=30, width=150, height=240)


# --- a whole run --------------------------------------------------------------------------


def test_full_run_gives_the_online_results_at_batch_price(
    analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    expected = online(analyzer, sim, images)
    job = BatchJob(analyzer, tmp_path / "job", features=FEATURES)

    job.write(images)
    assert sim.api_calls == []
    job.submit()
    on_disk = BatchState.load(job.state_path)
    assert on_disk is not None and on_disk.batch_ids == ["batch_sim_1"]
    assert on_disk.shards[0]["input_file_id"] == "file-sim-1"
    assert sim.api_calls == ["POST /v1/files", "POST /v1/batches"]  # ids saved, no poll yet

    sim.script(*(answer(i) for i in range(5)))
    polls: list[str | None] = []
    job.wait(**FAST, on_poll=lambda state: polls.append(state.shards[0]["status"]))
    items = list(job.results())

    assert polls == ["in_progress", "completed"]
    assert [item.result for item in items] == expected  # same boxes, same usage
    assert [item.index for item in items] == list(range(5))
    assert [item.source for item in items] == [str(p) for p in images]
    first = items[0]
    assert first.ok and first.batch_priced and first.error is None and first.error is None
    assert first.usage == expected[0].usage and first.usage.requests == 1
    full_price = cost_of(first.usage, MODEL)
    assert first.cost == cost_of(first.usage, MODEL, batch=True)
    assert full_price is not None and first.cost == pytest.approx(full_price / 2)
    assert isinstance(first.result, vf.ImageAnalysisResult) and first.result.objects
    assert first.result.objects[0].box == expected[0].objects[0].box
    # Results can be read again, from the downloaded files, without any request.
    before = len(sim.api_calls)
    assert list(job.results()) == items and len(sim.api_calls) == before
    assert not [p.name for p in job.work_dir.iterdir() if p.name.endswith((".tmp", ".part"))]


class Killed(Exception):
    pass


def test_a_killed_run_resumes_without_uploading_or_submitting_again(
    analyzer_for: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    images: list[Path],
    tmp_path: Path,
) -> None:
    work = tmp_path / "job"

    def kill(state: BatchState) -> None:
        raise Killed

    with pytest.raises(Killed):
        run_batch(analyzer_for(), images, work_dir=work, features=FEATURES, on_poll=kill, **FAST)

    def not_again() -> Iterator[Path]:
        raise AssertionError("a resumed run must not read the images again")
        yield  # pragma: no cover

    sim.script(*(answer(i) for i in range(5)))
    resumed = run_batch(analyzer_for(), not_again(), work_dir=work, features=FEATURES, **FAST)
    items = list(resumed)

    assert all(item.ok for item in items) and len(items) == 5
    assert calls(sim, "POST /v1/files") == 1
    assert calls(sim, "POST /v1/batches") == 1


def test_a_batch_created_but_not_recorded_is_found_not_submitted_again(
    analyzer: vf.ImageAnalyzer,
    sim: Simulator,
    images: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = BatchJob(analyzer, tmp_path / "job", features=FEATURES)
    job.write(images)

    def die(*args: Any, **kwargs: Any) -> None:
        raise Killed  # killed after batches.create answered, before the id was saved

    with monkeypatch.context() as patch:
        patch.setattr(BatchJob, "_record", die)
        with pytest.raises(Killed):
            job.submit()
    on_disk = BatchState.load(job.state_path)
    assert on_disk is not None and on_disk.shards[0]["batch_id"] is None
    assert on_disk.shards[0]["input_file_id"] == "file-sim-1"

    resumed = BatchJob(analyzer, tmp_path / "job", features=FEATURES)
    state = resumed.submit()

    assert state.batch_ids == ["batch_sim_1"]
    assert calls(sim, "POST /v1/files") == 1 and calls(sim, "POST /v1/batches") == 1
    assert calls(sim, "GET /v1/batches") == 1  # the look-up


def test_a_work_dir_resumes_only_its_own_job(
    analyzer: vf.ImageAnalyzer, images: list[Path], tmp_path: Path
) -> None:
    BatchJob(analyzer, tmp_path / "job", features=FEATURES).write(images[:1])
    with pytest.raises(vf.ConfigurationError, match="another"):
        BatchJob(analyzer, tmp_path / "job", features=["caption"])


def test_one_process_at_a_time_per_work_dir_and_the_next_resumes(
    analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    work = tmp_path / "job"
    early = BatchJob(analyzer, work, features=FEATURES)  # made before anything was written
    refusals: list[vf.BatchLockedError] = []

    def meanwhile(state: BatchState) -> None:  # another job, while the first one waits
        with pytest.raises(vf.BatchLockedError) as caught:
            BatchJob(analyzer, work, features=FEATURES).run(images, **FAST)
        refusals.append(caught.value)

    sim.script(*(answer(i) for i in range(5)))
    first = BatchJob(analyzer, work, features=FEATURES).run(images, on_poll=meanwhile, **FAST)
    with pytest.raises(vf.BatchLockedError):  # still held: its results are not read yet
        early.submit()
    items = list(first)
    again = list(early.run(images, **FAST))  # free now, and it resumes the first one's job
    unread = early.run(images, **FAST)
    del unread  # dropped without reading a single item: the lock goes with it
    BatchJob(analyzer, work, features=FEATURES).download()

    assert refusals and all(e.pid == os.getpid() for e in refusals)
    assert str(refusals[0]) == (
        f"{work / 'state.json'} is in use by another viewfinder batch job (pid {os.getpid()} "
        f"on {socket.gethostname()}, since {refusals[0].since}: {refusals[0].command}): "
        "wait for it or use another work directory"
    )
    assert calls(sim, "POST /v1/files") == 1 and calls(sim, "POST /v1/batches") == 1
    assert [item.result for item in again] == [item.result for item in items]
    assert all(item.ok for item in items)


# --- typed errors per line, and re-runs ----------------------------------------------------


ERROR_SCRIPT: list[ReplyLike] = [
    answer(0),
    INVALID,
    Reply(content=answer(2), finish_reason="content_filter"),
    Reply(status=500, error_message="server fell over"),
    Reply(content=None, refusal="I cannot help with that"),
]


def test_each_failed_line_is_a_typed_error_result(
    analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    sim.script(*ERROR_SCRIPT)
    items = list(run_batch(analyzer, images, work_dir=tmp_path / "job", features=FEATURES, **FAST))

    types = [type(item.error).__name__ if item.error else None for item in items]
    assert types == [
        None,
        "InvalidAnswerError",
        "ContentFilterError",
        "ServerError",
        "ContentFilterError",
    ]
    invalid, filtered, server = items[1].error, items[2].error, items[3].error
    assert isinstance(invalid, vf.InvalidAnswerError) and "5000" in (invalid.raw_answer or "")
    assert "cannot re-ask" in str(invalid)
    assert items[1].usage.output_tokens > 0  # the invalid answer was billed
    assert isinstance(filtered, vf.ContentFilterError)
    assert isinstance(server, vf.ServerError) and server.status_code == 500
    assert "server fell over" in str(server) and server.request_id
    assert items[3].usage == vf.Usage(requests=1) and items[3].cost == 0.0
    assert all(item.result is None for item in items[1:])


def test_failed_items_rerun_online_are_fixed(
    analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    expected = online(analyzer, sim, images)
    sim.script(*ERROR_SCRIPT)
    job = BatchJob(analyzer, tmp_path / "job", features=FEATURES)
    first = list(job.run(images, **FAST))
    sim.script(INVALID, answer(1), answer(3))  # the online re-run re-asks the invalid one

    items = list(job.rerun_failed(first, via="online"))

    assert [item.ok for item in items] == [True, True, False, True, False]  # filters stay
    assert items[1].result == expected[1].model_copy(update={"usage": items[1].usage})
    assert items[1].usage.reasks == 1 and not items[1].batch_priced
    assert items[1].cost == cost_of(items[1].usage, MODEL)
    assert items[3].result == expected[3] and items[0].batch_priced
    assert [item.custom_id for item in items] == [item.custom_id for item in first]


def test_failed_items_rerun_in_a_follow_up_batch(
    analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    expected = online(analyzer, sim, images)
    sim.script(*ERROR_SCRIPT, answer(1), answer(3))

    items = list(
        run_batch(
            analyzer, images, work_dir=tmp_path / "job", features=FEATURES, rerun="batch", **FAST
        )
    )

    assert [item.ok for item in items] == [True, True, False, True, False]
    assert items[1].result == expected[1] and items[3].result == expected[3]
    assert items[1].batch_priced and [item.index for item in items] == list(range(5))
    sha = items[1].sha256 or ""
    assert items[1].custom_id == f"{images[1]}#{sha[:12]}" and len(sha) == 64
    assert calls(sim, "POST /v1/batches") == 2
    rerun_lines = lines_of(tmp_path / "job" / "rerun" / "shard-0000.jsonl")
    assert [line["custom_id"] for line in rerun_lines] == [items[1].custom_id, items[3].custom_id]


def test_a_failed_batch_is_a_typed_error_for_each_item(
    analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    sim.script_batch(BatchScript(status="failed", error_message="quota exceeded"))
    items = list(run_batch(analyzer, images, work_dir=tmp_path / "job", features=FEATURES, **FAST))

    errors = [item.error for item in items]
    assert all(isinstance(e, BatchFailedError) and e.batch_status == "failed" for e in errors)
    assert isinstance(errors[0], BatchFailedError) and isinstance(errors[0], vf.ProviderError)
    assert "quota exceeded" in str(errors[0]) and errors[0].batch_id == "batch_sim_1"
    assert sim.batch_requests == []


def test_an_expired_batch_keeps_what_it_answered(
    analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    expected = online(analyzer, sim, images)
    sim.script_batch(BatchScript(status="expired", answered=2))
    sim.script(answer(0), answer(1))
    items = list(run_batch(analyzer, images, work_dir=tmp_path / "job", features=FEATURES, **FAST))

    assert [item.result for item in items[:2]] == expected[:2]
    for item in items[2:]:
        assert isinstance(item.error, BatchFailedError)
        assert item.error.batch_status == "expired" and item.usage == vf.Usage()
        assert item.error.batch_id == "batch_sim_1"


def test_the_total_timeout_raises_a_typed_error_and_the_job_can_resume(
    analyzer_for: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    images: list[Path],
    tmp_path: Path,
) -> None:
    sim.script_batch(BatchScript(polls=10_000))
    job = BatchJob(analyzer_for(), tmp_path / "job", features=FEATURES)
    job.write(images)
    job.submit()

    with pytest.raises(BatchTimeoutError) as caught:
        job.wait(timeout=0.05, poll_interval=0.01)

    assert caught.value.statuses == {"batch_sim_1": "in_progress"}
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, vf.ViewfinderError)
    with pytest.raises(vf.UserError, match="wait"):
        job.results()
    with pytest.raises(vf.InvalidOptionError):
        job.wait(timeout=0, poll_interval=0.01)


# --- inputs ----------------------------------------------------------------------------------


def test_ids_bytes_duplicates_and_unreadable_images(
    analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    inputs: list[Any] = [
        BatchInput(images[0], id="first"),
        images[1].read_bytes(),
        images[1],
        images[1],  # the same path twice: still unique custom ids
        tmp_path / "missing.png",
    ]
    sim.script(*(answer(i) for i in range(4)))
    items = list(run_batch(analyzer, inputs, work_dir=tmp_path / "job", features=FEATURES, **FAST))

    ids = [item.custom_id for item in items]
    assert ids[0].startswith("first#") and ids[1].startswith("item-1#")
    assert ids[2] != ids[3] and ids[3].startswith(ids[2])
    assert items[1].source == "<bytes>" and items[1].sha256 == items[2].sha256
    assert [item.ok for item in items] == [True, True, True, True, False]
    assert isinstance(items[4].error, vf.ImageFetchError) and items[4].sha256 is None
    assert len(sim.batch_requests) == 4


def test_url_inputs_get_distinct_ids_and_sources_without_secrets(
    analyzer: vf.ImageAnalyzer,
    sim: Simulator,
    images: list[Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trust_local_images(monkeypatch)
    caplog.set_level(logging.DEBUG)
    secret = "SECRETSIG0123456789"
    work = tmp_path / "job"
    sim.script(answer(0), answer(1))
    with serve_images({"/img.png": images[0].read_bytes()}) as base:
        urls = [
            f"{base}/img.png?id=1&sv=2024-05-04&sig={secret}",
            f"{base}/img.png?id=2&sv=2024-05-04&sig={secret}",
            f"{base}/gone.png?id=1&token={secret}",
        ]
        items = list(run_batch(analyzer, urls, work_dir=work, features=FEATURES, **FAST))

    sig = "~" + hashlib.sha256(secret.encode()).hexdigest()[:8]
    assert [item.source for item in items] == [
        f"{base}/img.png?id=1&sv=2024-05-04&sig={sig}",
        f"{base}/img.png?id=2&sv=2024-05-04&sig={sig}",
        f"{base}/gone.png?id=1&token={sig}",
    ]
    assert [item.custom_id.rsplit("#", 1)[0] for item in items] == [safe_url(u) for u in urls]
    assert [item.ok for item in items] == [True, True, False]
    shown = "".join(p.read_text() for p in work.iterdir() if p.is_file())
    shown += caplog.text + json.dumps([item.to_record() for item in items]) + str(items[2].error)
    assert secret not in shown


def test_azure_global_batch_uses_the_deployment_and_azure_paths(
    sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    analyzer = vf.ImageAnalyzer(
        azure_endpoint=sim.endpoint,
        azure_deployment="vision-batch",
        api_key="test-key-placeholder",
        model=MODEL,
        cache=False,
        retry=FAST_RETRY,
    )
    with analyzer:
        sim.script(answer(0))
        expected = analyzer.analyze(images[0], features=FEATURES)
        sent_online = sim.requests[-1]
        sim.script(answer(0))
        items: list[BatchItem[Any]] = list(
            run_batch(analyzer, images[:1], work_dir=tmp_path / "job", features=FEATURES, **FAST)
        )

    (line,) = lines_of(tmp_path / "job" / "shard-0000.jsonl")
    assert line["url"] == AZURE_BATCH_URL and line["body"]["model"] == "vision-batch"
    assert {**line["body"], "model": MODEL} == sent_online  # only the model differs
    assert items[0].result == expected
    assert "POST /openai/files" in sim.api_calls and "POST /openai/batches" in sim.api_calls


# --- the helpers for the command line ----------------------------------------------------------


def test_run_to_records_emits_one_json_record_per_image(
    analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    from viewfinder.cli.batch_api import run_to_records

    records: list[dict[str, Any]] = []
    progress: list[str] = []
    sim.script(answer(0), INVALID)
    summary = run_to_records(
        analyzer,
        images[:2],
        work_dir=tmp_path / "job",
        emit=records.append,
        progress=progress.append,
        features=FEATURES,
        **FAST,
    )

    assert json.loads(json.dumps(records)) == records
    assert records[0]["id"] == records[0]["source"] == str(images[0])
    assert records[0]["status"] == "ok" and records[0]["custom_id"].startswith(f"{images[0]}#")
    assert records[0]["result"]["caption"]["text"] == "picture number 0"
    assert records[1]["error"]["type"] == "InvalidAnswerError" and records[1]["batch_priced"]
    assert progress == ["1 batch for 2 images: 1 in_progress", "1 batch for 2 images: 1 completed"]
    assert (summary.done, summary.failed, summary.complete) == (2, 1, False)
    assert summary.dollars == pytest.approx(sum(r["cost"] for r in records))


# --- Computer Vision 3.2 pixel features: computed while the image is at hand ---------------


def test_pixel_features_ride_along_and_pixel_only_images_send_nothing(
    analyzer: vf.ImageAnalyzer, sim: Simulator, images: list[Path], tmp_path: Path
) -> None:
    sim.script(*(answer(i) for i in range(2)))
    mixed = list(
        run_batch(
            analyzer,
            images[:2],
            work_dir=tmp_path / "mixed",
            features=[*FEATURES, "color", "image_type"],
            **FAST,
        )
    )
    online_colour = [
        analyzer.analyze(path, features=["color", "image_type"]) for path in images[:2]
    ]
    for item, alone in zip(mixed, online_colour, strict=True):
        assert item.error is None and item.result is not None
        assert item.result.caption is not None
        assert item.result.color == alone.color and item.result.color is not None
        assert item.result.image_type == alone.image_type
    before = calls(sim, "POST /v1/batches")
    assert before == 1
    only = list(
        run_batch(analyzer, images[2:4], work_dir=tmp_path / "only", features=["color"], **FAST)
    )
    assert calls(sim, "POST /v1/batches") == before  # nothing was asked of the model
    assert [item.result.color is not None for item in only if item.result] == [True, True]
    widths = [item.result.metadata.width for item in only if item.result]
    assert widths == [size[0] for size in SIZES[2:4]]
