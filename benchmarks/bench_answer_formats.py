"""The verbose and the compact answer formats side by side: tokens, dollars, and results.

Run: python benchmarks/bench_answer_formats.py [IMAGE]

Part 1 estimates, for each model and format, the tokens of one all-features request on a
4:3 photo (a 1024x768 JPEG made in the run unless IMAGE is given): schema, prompt text,
the prefix before the image (and what OpenAI's prompt cache can hold of it), image, and
output tokens estimated from viewfinder's example answers; then dollars per 1,000 images
with no cache hit, in the best case (every prefix cached), and with the Batch API.
Nothing is sent to any model (`viewfinder.cost.estimate`).

Part 2 scripts the SAME content (each bundled example answer) in both formats to an
in-process fake OpenAI endpoint (`viewfinder.testing.fakes.FakeOpenAI`; not a model) and
checks that both analyzers return equal results, word polygons aside (the compact format
estimates them from their line).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from PIL import Image

import viewfinder as vf
from viewfinder.analyzers.compact import AnswerFormat
from viewfinder.analyzers.examples import example_answers, render_answer
from viewfinder.analyzers.features import ALL_FEATURES
from viewfinder.cost.estimate import estimate_request, offline_analyzer
from viewfinder.testing.fakes import FakeOpenAI

MODELS = ("gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5-mini")
FORMATS: tuple[AnswerFormat, ...] = ("verbose", "compact")


def _photo() -> bytes:
    """A 1024x768 JPEG with some structure (the estimate only needs its size)."""
    image = Image.new("RGB", (1024, 768))
    pixels = image.load()
    assert pixels is not None
    for y in range(0, 768, 4):
        for x in range(0, 1024, 4):
            pixels[x, y] = (x % 256, y % 256, (x * y) % 256)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _dollars(value: float | None) -> str:
    return "   n/a" if value is None else f"{value * 1000:6.2f}"


def tokens_and_dollars(image: Path | bytes) -> None:
    print("one request, all seven features, default settings (estimates, nothing sent)")
    print(
        f"  {'model':<13}{'format':<9}{'schema':>7}{'prompt':>7}{'prefix':>7}{'cached':>7}"
        f"{'image':>6}{'output':>7}  $/1000: {'no cache':>8}{'best':>7}{'batch':>7}"
        f"{'batch best':>11}"
    )
    for model in MODELS:
        for answer_format in FORMATS:
            with offline_analyzer(model, answer_format=answer_format) as analyzer:
                e = estimate_request(analyzer, image, ALL_FEATURES)
            print(
                f"  {model:<13}{answer_format:<9}{e.schema_tokens:>7,}{e.prompt_tokens:>7,}"
                f"{e.prefix_tokens:>7,}{e.cached_input_tokens:>7,}{e.image_tokens or 0:>6,}"
                f"{e.output_tokens:>7,}  {'':8}{_dollars(e.cost_usd):>8}"
                f"{_dollars(e.cached_cost_usd):>7}{_dollars(e.batch_cost_usd):>7}"
                f"{_dollars(e.batch_cached_cost_usd):>11}"
            )
    print(
        "  prefix = schema + prompt text, everything before the image; cached = what OpenAI's\n"
        "  prompt cache can hold of it (0 below 1,024 tokens). 'best' prices that part at the\n"
        "  cached-input rate (every request after the first of each cache route); output\n"
        "  tokens are the mean of viewfinder's example answers written in each format."
    )


def _without_words(result: vf.ImageAnalysisResult) -> dict[str, Any]:
    data = result.model_dump(exclude={"model_version", "usage"})
    for block in (data.get("read") or {}).get("blocks", []):
        for line in block["lines"]:
            line.pop("words")
    return data


def equal_results(image: Path | bytes) -> None:
    print("\nthe same scripted content in both formats (FakeOpenAI, in-process; not a model)")
    fake = FakeOpenAI()
    same = 0
    examples = example_answers()
    for example in examples:
        results = []
        for answer_format in FORMATS:
            fake.script(render_answer(example.answer, ALL_FEATURES, answer_format))
            with vf.ImageAnalyzer(
                **fake.clients(), cache=False, answer_format=answer_format
            ) as analyzer:
                results.append(analyzer.analyze(image, ALL_FEATURES))
        equal = _without_words(results[0]) == _without_words(results[1])
        same += equal
        print(f"  {example.name:<14}{'equal' if equal else 'DIFFERENT'}")
    print(f"  {same} of {len(examples)} examples give equal results (word polygons aside)")


def main() -> None:
    image: Path | bytes = Path(sys.argv[1]) if len(sys.argv) > 1 else _photo()
    tokens_and_dollars(image)
    equal_results(image)


if __name__ == "__main__":
    main()
