"""`progress=` of `analyze_many` / `aanalyze_many` / `embed_many`: a real tqdm, a bare
`update(n)` object and the default bar, against the scripted simulator (NOT a model)."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from tqdm import tqdm

import viewfinder as vf
from viewfinder.cli.progress import Interrupts, Snapshot, failure_lines, interrupted_text
from viewfinder.embed import CohereBackend
from viewfinder.engine.tally import RunTally
from viewfinder.errors import ImageFormatError, InvalidOptionError, RateLimitError
from viewfinder.testing.simulator import Reply, Simulator

CAPTION = {"caption": {"text": "a square", "conf": 90}}
FAST = vf.RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.01)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(default=lambda body: Reply(CAPTION)) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def analyzer(sim: Simulator) -> Iterator[vf.ImageAnalyzer]:
    with vf.ImageAnalyzer(
        base_url=sim.base_url, api_key="test-key-placeholder", cache=False, retry=FAST
    ) as analyzer:
        yield analyzer


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 60), (shade, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGES = [png(10 * i) for i in range(4)] + [b"not an image"]


class Updates:
    """The least a progress object can be: `update(n)` (and a `total`, left None)."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.steps: list[int] = []
        self.postfix: dict[str, Any] = {}

    def update(self, n: int = 1) -> None:
        self.steps.append(n)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values


def test_a_real_tqdm_gets_the_total_each_item_and_the_failures(
    analyzer: vf.ImageAnalyzer,
) -> None:
    with tqdm(file=io.StringIO(), mininterval=0) as bar:
        with analyzer.analyze_many(IMAGES, ["caption"], progress=bar) as run:
            items = list(run)
        assert bar.total == 5 and bar.n == 5 == len(items)  # total from len(images)
        assert bar.postfix.startswith("1 failed, $")
        assert not bar.disable  # not closed: the caller's `with` closes it
    given = tqdm(file=io.StringIO(), total=99)
    with analyzer.analyze_many(iter(IMAGES[:2]), ["caption"], progress=given) as run:
        list(run)
    assert given.total == 99 and given.n == 2  # a total the caller set is kept
    given.close()


async def test_aanalyze_many_and_a_generator_leave_the_total_unknown(sim: Simulator) -> None:
    counter = Updates()
    analyzer = vf.ImageAnalyzer(
        base_url=sim.base_url, api_key="test-key-placeholder", cache=False, retry=FAST
    )
    async with analyzer.aanalyze_many(iter(IMAGES), ["caption"], progress=counter) as run:
        async for _ in run:
            pass
    await analyzer.aclose()  # its async client belongs to this test's event loop
    assert counter.steps == [1] * 5 and counter.total is None
    assert counter.postfix["failed"] == 1


def test_the_default_bar_and_a_wrong_object(
    analyzer: vf.ImageAnalyzer, capsys: pytest.CaptureFixture[str]
) -> None:
    with analyzer.analyze_many(IMAGES[:2], ["caption"], progress=True) as run:
        assert len(list(run)) == 2
    assert "2/2" in capsys.readouterr().err  # rich's bar, drawn once off a terminal
    with pytest.raises(InvalidOptionError, match="update"):
        analyzer.analyze_many(IMAGES, ["caption"], progress="yes")  # type: ignore[arg-type]


def test_embed_many_feeds_a_tqdm_too(sim: Simulator) -> None:
    backend = CohereBackend(model="embed-english-v3.0", api_key="k", base_url=sim.endpoint)
    with (
        vf.Embedder(backend) as embedder,
        tqdm(file=io.StringIO(), mininterval=0) as bar,
        embedder.embed_many(IMAGES, progress=bar) as run,
    ):
        assert len(list(run)) == 5
        assert bar.total == 5 and bar.n == 5 and bar.postfix.startswith("1 failed, $")


# --- the command line's pieces ------------------------------------------------------------


def test_ctrl_c_inside_held_waits_for_the_block_to_end() -> None:
    reached = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs as a background job
    with Interrupts() as interrupts:
        with pytest.raises(KeyboardInterrupt), interrupts.held():
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs in this thread, now
            reached.append("the rest of the line was written")
        with pytest.raises(KeyboardInterrupt):  # outside a held block: at once
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("never")
    assert reached == ["the rest of the line was written"]
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_snapshot_text_and_failures_by_type() -> None:
    tally = RunTally(ok=13, dollars=0.5, started_at=0.0, finished_at=60.0)
    for i in range(5):
        tally.note_failure(ImageFormatError("bad"), f"img{i}.png")
    tally.note_failure(RateLimitError("slow down"), "x.png")
    now = Snapshot.of(tally, total=38, skipped=2)
    assert now.count_text() == "19 of 38 (50%)"
    assert now.stats_text() == (
        "6 failed · 0 cached · 2 skipped · 19 images/min · ETA 1m00s · $0.5000"
    )
    assert interrupted_text(now) == (
        "interrupted after 19 of 38; re-run the same command to resume"
    )
    assert failure_lines(tally) == [
        "ImageFormatError: 5 (img0.png, img1.png, img2.png, ...)",
        "RateLimitError: 1 (x.png)",
    ]
