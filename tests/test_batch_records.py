"""One batch record: online and Batch API items write the same JSON line, it reads back
as the same item, and output files written in every earlier shape still resume."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import viewfinder as vf
from viewfinder.batch.records import (
    ID_VERSION,
    BatchInput,
    BatchItem,
    BatchSummary,
    RecordOutcome,
    record_outcome,
    split_input,
)
from viewfinder.cli.batch import read_done_ids

RESULT = vf.ImageAnalysisResult.model_validate(
    {
        "model_version": "gpt-4.1-mini+abc",
        "metadata": {"width": 64, "height": 48},
        "caption": {"text": "a square", "confidence": 0.9},
    }
)
USAGE = vf.Usage(input_tokens=1000, output_tokens=20, requests=1)


def items() -> list[BatchItem[Any]]:
    """An online success, an online failure, a Batch API success and failure."""
    refused = vf.BadRequestError("rejected", status_code=400, request_id="req_1", usage=USAGE)
    invalid = vf.InvalidAnswerError("bad json", raw_answer="{", usage=USAGE)
    return [
        BatchItem("a.png", 0, "a.png", "0" * 64, result=RESULT, usage=USAGE, cost=0.001),
        BatchItem("b.png", 1, "b.png", "1" * 64, error=refused, usage=USAGE, cost=0.001),
        BatchItem(
            "c.png",
            0,
            "c.png",
            "2" * 64,
            result=RESULT,
            usage=USAGE,
            cost=0.0005,
            batch_priced=True,
            custom_id="c.png#222222222222",
        ),
        BatchItem(
            "item-1",
            1,
            "<bytes>",
            None,
            error=invalid,
            usage=USAGE,
            cost=0.0005,
            batch_priced=True,
            custom_id="item-1#unreadable",
        ),
    ]


def same(a: BatchItem[Any], b: BatchItem[Any]) -> None:
    assert (a.id, a.index, a.source, a.sha256, a.result) == (
        b.id,
        b.index,
        b.source,
        b.sha256,
        b.result,
    )
    assert (a.usage, a.cost, a.batch_priced, a.custom_id) == (
        b.usage,
        b.cost,
        b.batch_priced,
        b.custom_id,
    )
    assert type(a.error) is type(b.error)
    if a.error is not None and b.error is not None:
        assert (a.error.message, a.error.attributes) == (b.error.message, b.error.attributes)


def test_online_and_batch_api_items_write_one_record_shape_that_reads_back() -> None:
    records = [json.loads(json.dumps(item.to_record())) for item in items()]
    ok_keys = ["id", "index", "source", "sha256", "status", "result", "usage", "cost"]
    tail = ["batch_priced", "custom_id", "id_version"]
    assert [list(r) for r in records] == [
        ok_keys + tail,
        [*ok_keys[:5], "error", *ok_keys[6:], *tail],
    ] * 2
    assert (
        records[1]["error"]
        == vf.BadRequestError(
            "rejected", status_code=400, request_id="req_1", usage=USAGE
        ).to_record()
    )
    assert all(r["id_version"] == ID_VERSION for r in records)
    for item, record in zip(items(), records, strict=True):
        same(BatchItem.from_record(record), item)
        same(pickle.loads(pickle.dumps(item)), item)


def test_inputs_are_images_pairs_or_batch_inputs() -> None:
    assert split_input("a.png") == (None, "a.png")
    assert split_input(("mine", b"data")) == ("mine", b"data")
    assert split_input(BatchInput(b"data", id=7)) == (7, b"data")


def test_one_summary_counts_online_and_batch_items() -> None:
    summary = BatchSummary()
    for item in items():
        summary.record(item)
    assert (summary.ok, summary.failed, summary.done, summary.complete) == (2, 2, 4, False)
    assert summary.dollars == 0.003 and summary.usage.requests == 4


# --- files written by earlier versions ---------------------------------------------------

URL = "https://example.com/img.png"
OLD_ONLINE_V1 = {  # `viewfinder batch` before URL ids kept their query string
    "id": URL,
    "source": URL,
    "sha256": "0" * 64,
    "status": "ok",
    "result": RESULT.model_dump(mode="json"),
    "usage": {},
    "cost": 0.001,
}
OLD_ONLINE_V2_ERROR = {  # `viewfinder batch`, online, errors as {"type", "message"}
    "id": "b.png",
    "source": "b.png",
    "sha256": "1" * 64,
    "status": "error",
    "error": {"type": "ImageFormatError", "message": "not an image (b.png)"},
    "usage": {"input_tokens": 0},
    "cost": None,
    "id_version": 2,
}
OLD_CLI_BATCH_API = {  # `viewfinder batch --via batch-api`, Batch API error dicts
    "id": "c.png",
    "source": "c.png",
    "sha256": "2" * 64,
    "status": "error",
    "error": {
        "type": "BatchFailedError",
        "message": "batch b1 ended expired before answering: no reason given",
        "batch_id": "b1",
        "batch_status": "expired",
    },
    "usage": {"requests": 0},
    "cost": None,
    "batch_priced": True,
    "custom_id": "c.png#222222222222",
    "id_version": 2,
}
OLD_RUN_TO_RECORDS = {  # `viewfinder.cli.batch_api.item_record`: no id, no status
    "image": "d.png",
    "custom_id": "d.png#333333333333",
    "result": RESULT.model_dump(mode="json"),
    "sha256": "3" * 64,
    "usage": {"input_tokens": 500, "requests": 1},
    "cost": 0.0002,
    "batch_priced": True,
}


def test_records_of_every_earlier_shape_are_read() -> None:
    assert [
        record_outcome(r)
        for r in (OLD_ONLINE_V1, OLD_ONLINE_V2_ERROR, OLD_CLI_BATCH_API, OLD_RUN_TO_RECORDS)
    ] == [
        RecordOutcome(URL, True, 1),
        RecordOutcome("b.png", False, 2),
        RecordOutcome("c.png", False, 2),
        RecordOutcome("d.png", True, 1),
    ]
    assert record_outcome({"not": "a record"}) is None and record_outcome([1]) is None

    v1 = BatchItem.from_record(OLD_ONLINE_V1)
    assert v1.ok and v1.result == RESULT and v1.usage == vf.Usage()
    image_error = BatchItem.from_record(OLD_ONLINE_V2_ERROR).error
    assert isinstance(image_error, vf.ImageFormatError)
    assert str(image_error) == "not an image (b.png)"
    expired = BatchItem.from_record(OLD_CLI_BATCH_API)
    assert isinstance(expired.error, vf.BatchFailedError) and expired.error.batch_id == "b1"
    assert expired.batch_priced and expired.custom_id == "c.png#222222222222"
    helper = BatchItem.from_record(OLD_RUN_TO_RECORDS)
    assert (helper.id, helper.source, helper.ok, helper.result) == ("d.png", "d.png", True, RESULT)


def test_an_output_file_mixing_every_shape_resumes(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    new_ok = items()[0].to_record() | {"id": "b.png"}  # b.png failed before, then succeeded
    lines = [OLD_ONLINE_V1, OLD_ONLINE_V2_ERROR, OLD_CLI_BATCH_API, OLD_RUN_TO_RECORDS, new_ok]
    out.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"id": "torn')

    legacy: set[str] = set()
    done, torn = read_done_ids(out, legacy)

    assert done == {URL, "b.png", "d.png"} and torn
    assert legacy == {URL}  # a version 1 URL id: its query variants count as done
    assert out.read_text().endswith("}\n")
