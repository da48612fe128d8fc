"""The compact answer format end to end: the same content gives the same results.

Every answer here is scripted on the simulator (NOT a model): what is proved is that
viewfinder decodes a compact answer exactly as it decodes the verbose answer with the
same content, and that a malformed compact answer is re-asked, then a typed error.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import viewfinder as vf
from viewfinder.testing import compact_answer
from viewfinder.testing.simulator import Simulator

CAT: dict[str, Any] = {
    "caption": {"text": "a tabby cat lying on a wooden floor", "confidence": 0.91},
    "dense_captions": [
        # the compact format has no box nor confidence of its own for the whole image:
        # the verbose answer with the same content gives the caption's
        {
            "text": "a tabby cat lying on a wooden floor",
            "confidence": 0.91,
            "box": [0, 0, 1000, 1000],
        },
        {"text": "the face of a cat", "confidence": 0.8, "box": [400, 100, 700, 600]},
    ],
    "tags": [
        {"name": "cat", "confidence": 0.98},
        {"name": "indoor", "confidence": 0.7},
        {"name": "Cat", "confidence": 0.6},
    ],
    "objects": [{"name": "cat", "confidence": 0.93, "box": [100, 50, 900, 950]}],
    "people": [{"box": [0, 0, 200, 500], "confidence": 0.4}],
    "smart_crops": {"box": [300, 100, 800, 900]},
    "read": [
        {"text": "CHELSEA THE CAT", "box": [0, 900, 300, 1000], "confidence": 0.6},
        {"text": "no. 1", "box": [800, 0, 1000, 50], "confidence": 0.5},
    ],
}
"""All seven features in the verbose form, lines without word boxes."""

WORDS = [
    {"text": "CHELSEA", "box": [0, 900, 140, 1000], "confidence": 0.7},
    {"text": "THE", "box": [150, 900, 210, 1000], "confidence": 0.8},
    {"text": "CAT", "box": [220, 900, 300, 1000], "confidence": 0.9},
]


def _analyze(analyzer: vf.ImageAnalyzer, image: Path) -> vf.ImageAnalysisResult:
    return analyzer.analyze(
        image,
        features=vf.ALL_FEATURES,
        smart_crops_aspect_ratios=[0.9, 1.33],
        gender_neutral_caption=True,
    )


def _content(result: vf.ImageAnalysisResult) -> dict[str, Any]:
    """A result without what differs by format on purpose (usage, model_version)."""
    return result.model_dump(exclude={"usage", "model_version"})


def test_a_compact_answer_and_the_same_verbose_content_give_equal_results(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script(compact_answer(CAT), CAT)
    compact = _analyze(make_analyzer(cache=False), cat_image)
    verbose = _analyze(make_analyzer(cache=False, answer_format="verbose"), cat_image)
    sent = [json.dumps(request) for request in sim.requests]
    # json mode: the schema is in the system text, its quotes escaped in the body
    assert r"\"conf\"" in sent[0] and r"\"confidence\"" not in sent[0]  # asked compact
    assert r"\"confidence\"" in sent[1]
    assert _content(compact) == _content(verbose)
    assert compact.model_version != verbose.model_version  # the format is in the cache key
    assert compact.read is not None and all(
        w.estimated for line in compact.read.lines for w in line.words
    )
    assert compact.dense_captions is not None and compact.dense_captions[0].confidence == 0.91


def test_word_boxes_are_all_that_the_compact_format_drops(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    with_words = copy.deepcopy(CAT)
    with_words["read"][0]["words"] = WORDS
    sim.script(compact_answer(with_words), with_words)
    compact = _content(_analyze(make_analyzer(cache=False), cat_image))
    verbose = _content(_analyze(make_analyzer(cache=False, answer_format="verbose"), cat_image))
    verbose_words = verbose["read"]["blocks"][0]["lines"][0]["words"]
    compact_words = compact["read"]["blocks"][0]["lines"][0]["words"]
    assert [w["confidence"] for w in verbose_words] == [0.7, 0.8, 0.9]
    assert [w["confidence"] for w in compact_words] == [0.6] * 3
    assert not any(w["estimated"] for w in verbose_words)
    assert all(w["estimated"] for w in compact_words)
    for result in (compact, verbose):
        for line in result["read"]["blocks"][0]["lines"]:
            for word in line["words"]:
                word.pop("polygon"), word.pop("confidence"), word.pop("estimated")
    assert compact == verbose


@pytest.mark.parametrize("mode", ["tools", "json", "md_json", "json_schema"])
def test_every_mode_sends_and_reads_the_compact_answer(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path, mode: str
) -> None:
    sim.script(compact_answer({"caption": CAT["caption"], "tags": CAT["tags"]}))
    result = make_analyzer(cache=False, mode=mode).analyze(cat_image, features=["caption", "tags"])
    assert result.caption == vf.Caption(text="a tabby cat lying on a wooden floor", confidence=0.91)
    assert [t.name for t in result.tags or []] == ["cat", "indoor"]


_GOOD = {"caption": {"text": "a cat", "conf": 90}, "objects": []}


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({**_GOOD, "caption": {"text": "a cat", "conf": 150}}, "conf"),
        ({**_GOOD, "objects": [{"name": "cat", "conf": 90, "box": [900, 50, 100, 950]}]}, "box"),
        ({"caption": {"text": "a cat", "conf": 90}}, "objects"),
        ({**_GOOD, "caption": {"text": "a cat", "confidence": 0.9}}, "conf"),
    ],
    ids=["conf-150", "x_min-above-x_max", "missing-key", "verbose-key"],
)
def test_a_malformed_compact_answer_is_reasked_then_a_typed_error(
    make_analyzer: Callable[..., vf.ImageAnalyzer],
    sim: Simulator,
    cat_image: Path,
    bad: dict[str, Any],
    why: str,
) -> None:
    sim.script(bad, bad)
    analyzer = make_analyzer(cache=False, max_reasks=1)
    with pytest.raises(vf.InvalidAnswerError) as caught:
        analyzer.analyze(cat_image, features=["caption", "objects"])
    assert caught.value.attempts == 2 and caught.value.usage is not None
    assert caught.value.usage.requests == 2 and caught.value.usage.reasks == 1
    assert why in str(caught.value)
    assert len(sim.requests) == 2  # the re-ask went out, with the validation error in it
    assert why in str(sim.requests[1]["messages"][-1]["content"])


def test_a_malformed_compact_answer_then_a_good_one_succeeds(
    make_analyzer: Callable[..., vf.ImageAnalyzer], sim: Simulator, cat_image: Path
) -> None:
    sim.script({**_GOOD, "caption": {"text": "a cat", "conf": 150}}, _GOOD)
    result = make_analyzer(cache=False).analyze(cat_image, features=["caption", "objects"])
    assert result.caption == vf.Caption(text="a cat", confidence=0.9)
    assert result.usage.requests == 2 and result.usage.reasks == 1
