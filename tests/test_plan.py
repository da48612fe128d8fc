"""The call plan: one place validates a call's options, and every entry point uses it.

`ImageAnalyzer.plan` / `Analyzer.plan` make a frozen `CallPlan`; `analyze`, `aanalyze`,
`analyze_many`, the Batch API, the estimator, the Azure look-alike and the server all
consume one. These tests spy on the plan constructor and check that the error each entry
point raises for a bad option is the very exception the plan raised.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from local_server import post_analyze
from pydantic import BaseModel

import viewfinder as vf
from viewfinder.analyzers.image_analysis import FeatureOptions, ImageAnalyzer, answer_model
from viewfinder.batch.provider_api import BatchJob
from viewfinder.build.plan import CallPlan, SourceRef
from viewfinder.compat.server import ServerSettings
from viewfinder.cost.estimate import estimate_request as estimate
from viewfinder.engine.engine import Completed
from viewfinder.schemas.result import ImageMetadata, Usage

PACKAGE = Path(vf.__file__).parent
KEY = "test-key-placeholder"


class PlanSpy:
    """Wraps `ImageAnalyzer.plan`: counts the calls and keeps what each one raised."""

    def __init__(self) -> None:
        self.calls = 0
        self.raised: list[BaseException] = []

    def wrap(self, plan: Callable[..., Any]) -> Callable[..., Any]:
        def spied(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            try:
                return plan(*args, **kwargs)
            except BaseException as exc:
                self.raised.append(exc)
                raise

        return spied


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> PlanSpy:
    spying = PlanSpy()
    monkeypatch.setattr(ImageAnalyzer, "plan", spying.wrap(ImageAnalyzer.plan))
    return spying


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__


# --- the plan itself ----------------------------------------------------------------------


def test_a_plan_holds_the_validated_options_and_is_frozen(
    make_analyzer: Callable[..., ImageAnalyzer],
) -> None:
    analyzer = make_analyzer()

    plan = analyzer.plan(
        ["denseCaptions", "caption", "caption"], smart_crops_aspect_ratios=[1], language="de"
    )

    assert plan.options == FeatureOptions(
        features=(vf.Feature.CAPTION, vf.Feature.DENSE_CAPTIONS),
        smart_crops_aspect_ratios=(1.0,),
        gender_neutral_caption=False,
        language="de",
    )
    assert plan.response_model is answer_model(plan.options.features)
    assert plan.fingerprint == analyzer.model_version
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.fingerprint = "other"  # type: ignore[misc]


def test_a_plan_builds_exactly_the_analyzers_request(
    make_analyzer: Callable[..., ImageAnalyzer], cat_image: Path
) -> None:
    """Same messages, schema and version as `build` with the same options: same cache key."""
    analyzer = make_analyzer()
    prepared = analyzer.prepare(cat_image)
    features = (vf.Feature.CAPTION, vf.Feature.TAGS)

    plan = analyzer.plan(features, gender_neutral_caption=True, language="fr")

    assert plan.build(prepared) == analyzer.build(
        prepared, features, gender_neutral_caption=True, language="fr"
    )
    ref = SourceRef("0" * 64, analyzer.max_side)
    assert plan.build(ref).messages[1]["content"][1]["image_url"]["url"] == ref.data_url()
    assert analyzer.engine._key(plan.build(prepared)) == analyzer.engine._key(
        analyzer.build(prepared, features, gender_neutral_caption=True, language="fr")
    )


def test_a_plan_finishes_in_pixels_with_its_options(
    make_analyzer: Callable[..., ImageAnalyzer],
) -> None:
    analyzer = make_analyzer()
    plan = analyzer.plan(
        ["caption", "smart_crops"],
        smart_crops_aspect_ratios=[1.0],
        **{"gender_neutral_caption": True},
    )
    answer = plan.response_model.model_validate(
        {"caption": {"text": "a man", "conf": 50}, "crop": [0, 0, 500, 500]}
    )

    result = plan.finish(Completed(answer, Usage()), ImageMetadata(width=200, height=100))

    assert result.caption is not None and result.caption.text == "a person"
    assert result.smart_crops is not None and len(result.smart_crops) == 1
    assert result.model_version == plan.fingerprint
    assert result.metadata == ImageMetadata(width=200, height=100)


def test_describe_is_the_batch_jobs_canonical_options(
    make_analyzer: Callable[..., ImageAnalyzer],
) -> None:
    """Unchanged from before plans, so existing Batch API work directories still resume."""
    plan = make_analyzer().plan(["tags", "caption"], smart_crops_aspect_ratios=[1.5])

    assert plan.describe() == '[["caption", "tags"], [1.5], false, "en"]'


def test_a_custom_analyzers_plan_checks_the_language_and_keeps_its_variables(
    sim: Any, tmp_path: Path
) -> None:
    class Note(BaseModel):
        text: str

    with vf.Analyzer(
        schema=Note, prompt="Read the {{ what }}.", base_url=sim.base_url, cache=False
    ) as analyzer:
        plan = analyzer.plan(what="label")
        with pytest.raises(vf.InvalidOptionError, match="language"):
            analyzer.plan(what="label", language="not a language")

    assert isinstance(plan, CallPlan)
    assert dict(plan.options) == {"what": "label"}
    assert plan.describe() == '{"what": "label"}'
    assert plan.build(SourceRef("0" * 64, 1024)).messages[1]["content"][0]["text"] == (
        "Read the label."
    )


# --- one place validates: every entry point's error is the plan's ---------------------------

BAD_OPTIONS = [
    pytest.param({"features": ["colour"]}, id="features"),
    pytest.param({"features": []}, id="no-features"),
    pytest.param({"smart_crops_aspect_ratios": [3.0]}, id="ratios"),
    pytest.param({"language": "English!"}, id="language"),
]


def _with_features(options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    rest = dict(options)
    return rest.pop("features", vf.ALL_FEATURES), rest


@pytest.mark.parametrize("options", BAD_OPTIONS)
def test_analyze_and_aanalyze_raise_the_plans_error(
    spy: PlanSpy,
    make_analyzer: Callable[..., ImageAnalyzer],
    cat_image: Path,
    sim: Any,
    options: dict[str, Any],
) -> None:
    analyzer = make_analyzer()
    features, rest = _with_features(options)

    with pytest.raises(vf.InvalidOptionError) as sync:
        analyzer.analyze(cat_image, features, **rest)
    with pytest.raises(vf.InvalidOptionError) as async_:
        asyncio.run(analyzer.aanalyze(cat_image, features, **rest))

    assert spy.raised == [sync.value, async_.value]
    assert str(sync.value) == str(async_.value)
    assert sim.requests == []


@pytest.mark.parametrize("options", BAD_OPTIONS)
def test_analyze_many_raises_the_plans_error(
    spy: PlanSpy,
    make_analyzer: Callable[..., ImageAnalyzer],
    cat_image: Path,
    options: dict[str, Any],
) -> None:
    analyzer = make_analyzer()
    features, rest = _with_features(options)

    with pytest.raises(vf.InvalidOptionError) as sync:
        analyzer.analyze_many([cat_image], features, **rest)
    with pytest.raises(vf.InvalidOptionError) as async_:
        analyzer.aanalyze_many([cat_image], features, **rest)

    assert spy.raised == [sync.value, async_.value]


@pytest.mark.parametrize("options", BAD_OPTIONS)
def test_the_batch_api_job_raises_the_plans_error(
    spy: PlanSpy,
    make_analyzer: Callable[..., ImageAnalyzer],
    tmp_path: Path,
    options: dict[str, Any],
) -> None:
    with pytest.raises(vf.InvalidOptionError) as caught:
        BatchJob(make_analyzer(), tmp_path / "job", **options)

    assert spy.raised == [caught.value]


@pytest.mark.parametrize("options", BAD_OPTIONS)
def test_the_estimator_raises_the_plans_error(
    spy: PlanSpy,
    make_analyzer: Callable[..., ImageAnalyzer],
    cat_image: Path,
    options: dict[str, Any],
) -> None:
    features, rest = _with_features(options)

    with pytest.raises(vf.InvalidOptionError) as caught:
        estimate(make_analyzer(), cat_image, features, **rest)

    assert spy.raised == [caught.value]


def test_the_azure_look_alike_answers_a_bad_ratio_with_the_plans_error(
    spy: PlanSpy, make_analyzer: Callable[..., ImageAnalyzer], cat_image: Path
) -> None:
    from azure.core.exceptions import HttpResponseError

    from viewfinder.azure import ImageAnalysisClient

    client = ImageAnalysisClient("https://example.invalid", None, analyzer=make_analyzer())
    with pytest.raises(HttpResponseError) as caught:
        client.analyze(cat_image.read_bytes(), ["smartCrops"], smart_crops_aspect_ratios=[3.0])

    assert caught.value.error is not None and caught.value.error.innererror["code"] == (
        "BadArgument"
    )
    # answered from the plan's refusal (the SDK raises from the response: nothing chained)
    assert spy.calls == 1 and len(spy.raised) == 1


def test_the_server_answers_a_bad_ratio_from_the_plan(
    spy: PlanSpy,
    make_analyzer: Callable[..., ImageAnalyzer],
    serve: Callable[[ServerSettings], str],
    cat_image: Path,
) -> None:
    endpoint = serve(ServerSettings(api_keys=(KEY,), analyzer=make_analyzer()))

    response = post_analyze(
        endpoint,
        "api-version=2023-10-01&features=smartCrops&smartcrops-aspect-ratios=3",
        key=KEY,
        image=cat_image.read_bytes(),
    )

    assert response.status_code == 400
    assert response.json()["error"]["innererror"]["code"] == "BadArgument"
    assert spy.calls == 1 and len(spy.raised) == 1
    assert isinstance(spy.raised[0], vf.InvalidOptionError)


def test_a_good_call_makes_one_plan_per_call(
    spy: PlanSpy, make_analyzer: Callable[..., ImageAnalyzer], cat_image: Path, tmp_path: Path
) -> None:
    analyzer = make_analyzer()
    estimate(analyzer, cat_image, ["caption"])
    BatchJob(analyzer, tmp_path / "job", features=["caption"])

    assert spy.calls == 2 and spy.raised == []


# --- and no entry point validates on its own ------------------------------------------------

VALIDATORS = {"parse_features", "validate_aspect_ratios", "check_language"}
"""The option validators: only `FeatureOptions.of` (which `ImageAnalyzer.plan` calls) and
`Analyzer.plan` call them."""

ALLOWED_ELSEWHERE: set[tuple[str, str]] = set()
"""None: the command line and the estimator's helper call `FeatureOptions.of` too."""


def _validator_calls() -> set[tuple[str, str]]:
    """(module, enclosing function) of every call of an option validator in the package."""
    found: set[tuple[str, str]] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", None))
                    if name in VALIDATORS:
                        found.add((path.relative_to(PACKAGE).as_posix(), function.name))
    return found


def test_only_the_plan_constructors_call_the_option_validators() -> None:
    calls = _validator_calls()

    assert ("analyzers/image_analysis.py", "of") in calls  # FeatureOptions.of
    assert ("analyzers/custom.py", "plan") in calls
    outside = {
        call
        for call in calls
        if call not in {("analyzers/image_analysis.py", "of"), ("analyzers/custom.py", "plan")}
        and call not in ALLOWED_ELSEWHERE
    }
    assert outside == set()
