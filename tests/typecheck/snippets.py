"""Type-check proof for issue 18 §4: checked by `mypy` (strict, `warn_unused_ignores`), never run.

`.ci/run` runs `mypy viewfinder tests/typecheck`. Every line that must be refused carries
`# type: ignore[<code>]`: if mypy stops refusing it, the ignore is unused and mypy fails;
every other line must pass as written.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

import viewfinder as vf
from viewfinder.analyzers.features import Feature, FeatureName
from viewfinder.batch.records import BatchOutcome
from viewfinder.embed.many import EmbedOutcome
from viewfinder.engine.hooks import RetryEvent
from viewfinder.schemas.result import ImageAnalysisResult


class Shelf(BaseModel):
    products: list[str]


def options_are_typed() -> None:
    vf.ImageAnalyzer(model="gpt-4.1-mini", cache=False, detail="low", max_reasks=1)
    vf.ImageAnalyzer(engine="local", allow_hosts=["10.0.0.5"], box_convention="gemini")
    vf.Analyzer(Shelf, "List the products.", model="gpt-4.1-mini", max_side=768)
    vf.ImageAnalyzer(modle="gpt-4.1-mini")  # type: ignore[call-arg]
    vf.ImageAnalyzer(detail="medium")  # type: ignore[arg-type]
    vf.ImageAnalyzer(max_reasks="2")  # type: ignore[arg-type]
    vf.Analyzer(Shelf, "List the products.", cahce=False)  # type: ignore[call-arg]
    vf.Analyzer(Shelf, "List the products.", retry=3)  # type: ignore[arg-type]


def features_are_literals(analyzer: vf.ImageAnalyzer, names: list[str]) -> None:
    analyzer.analyze(Path("a.jpg"), ["caption", "denseCaptions", Feature.READ])
    analyzer.analyze(Path("a.jpg"), "smart_crops")
    wanted: list[FeatureName] = ["tags", "objects"]
    analyzer.analyze(Path("a.jpg"), wanted)
    analyzer.analyze(Path("a.jpg"), ["captoin"])  # type: ignore[list-item]
    analyzer.analyze(Path("a.jpg"), "dense-captions")  # type: ignore[arg-type]
    analyzer.analyze(Path("a.jpg"), names)  # type: ignore[arg-type]


def ok_narrows_result(item: BatchOutcome[ImageAnalysisResult]) -> None:
    if item.ok:
        caption: ImageAnalysisResult = item.result
        print(caption.model_version)
    else:
        message: str = item.error.message
        print(message)
    print(item.result.model_version)  # type: ignore[union-attr]


def ok_narrows_embedding(item: EmbedOutcome) -> None:
    if item.ok:
        print(item.embedding.dimensions)
    else:
        print(item.error.message)
    print(item.embedding.dimensions)  # type: ignore[union-attr]


def runs_yield_outcomes(analyzer: vf.ImageAnalyzer) -> None:
    for item in analyzer.analyze_many([Path("a.jpg")]):
        if item.ok:
            print(item.result.caption)
        else:
            print(item.error)


def hooks_are_typed(analyzer: vf.ImageAnalyzer) -> None:
    def on_retry(event: RetryEvent) -> None:
        print(event.reason, event.wait)

    analyzer.on("retry", on_retry)
    analyzer.on("response", lambda event: print(event.usage.input_tokens, event.latency))
    vf.ImageAnalyzer(hooks=vf.Hooks())
    analyzer.on("response", on_retry)  # type: ignore[call-overload]
    analyzer.on("respnse", print)  # type: ignore[call-overload]
