"""Typed options (issue 18 §4): what type checkers are told matches what runs.

`tests/typecheck/snippets.py` proves, under `mypy --strict` (`.ci/run`), that a misspelt
option or feature name is refused and that `item.ok` narrows `item.result`; these tests
keep the declarations it relies on true at run time.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest

import viewfinder as vf
from viewfinder.analyzers.base import AnalyzerOptions, BaseAnalyzer
from viewfinder.analyzers.features import Feature, FeatureName, parse_features
from viewfinder.batch.records import BatchError, BatchItem, BatchOk, batch_item
from viewfinder.embed.many import EmbedError, EmbedItem, EmbedOk
from viewfinder.testing.fakes import FakeOpenAI

CAT = Path(__file__).parent / "assets" / "chelsea.png"

RESULT = vf.ImageAnalysisResult.model_validate(
    {"model_version": "m+1", "metadata": {"width": 4, "height": 3}}
)


def test_the_options_typed_dict_is_the_constructor_s_parameters() -> None:
    """One place of truth: `AnalyzerOptions` and `BaseAnalyzer.__init__` (which
    validates) name the same options with the same types; `with_endpoint` is internal."""
    declared = get_type_hints(AnalyzerOptions)
    signature = inspect.signature(BaseAnalyzer.__init__)
    hints = get_type_hints(BaseAnalyzer.__init__)
    parameters = {name for name in signature.parameters if name not in ("self", "with_endpoint")}

    assert set(declared) == parameters
    for name in parameters:
        assert declared[name] == hints[name], name
    assert AnalyzerOptions.__total__ is False


def test_every_shared_option_is_documented_where_ides_look() -> None:
    source = inspect.getsource(AnalyzerOptions)
    for name in get_type_hints(AnalyzerOptions):
        assert f"    {name}: " in source
        after = source.split(f"    {name}: ", 1)[1].split("\n", 2)[1]
        assert after.strip().startswith('"""'), f"{name} has no docstring"


def test_a_misspelt_option_still_fails_at_run_time() -> None:
    with pytest.raises(TypeError, match="modle"):
        vf.ImageAnalyzer(engine="local", modle="gpt-4.1-mini")  # type: ignore[call-arg]


def test_feature_names_are_every_feature_in_both_spellings() -> None:
    names = set(get_args(FeatureName))

    assert names == {f.value for f in Feature} | {f.azure_name for f in Feature}
    for name in names:
        assert parse_features(name) == (Feature(parse_features(name)[0]),)


def test_items_are_ok_or_error_classes_with_the_same_record() -> None:
    ok = batch_item("a", 0, "a.png", None, result=RESULT)
    failed = batch_item("b", 1, "b.png", None, error=vf.InvalidAnswerError("bad"))

    assert type(ok) is BatchOk and ok.ok is True and isinstance(ok, BatchItem)
    assert type(failed) is BatchError and failed.ok is False and isinstance(failed, BatchItem)
    plain = BatchItem[Any]("a", 0, "a.png", None, result=RESULT)
    assert ok.to_record() == plain.to_record()
    assert type(BatchItem.from_record(failed.to_record())) is BatchError
    assert type(BatchItem.from_record(ok.to_record())) is BatchOk


def test_embed_items_are_ok_or_error_classes() -> None:
    failed = EmbedError("b", 1, "b.png", error=vf.InvalidAnswerError("bad"))

    assert failed.ok is False and isinstance(failed, EmbedItem)
    assert failed.to_record() == EmbedItem("b", 1, "b.png", error=failed.error).to_record()
    assert (
        issubclass(EmbedOk, EmbedItem)
        and EmbedOk.__dataclass_fields__ == EmbedItem.__dataclass_fields__
    )


async def test_analyze_many_yields_ok_and_error_items() -> None:
    fake = FakeOpenAI({"caption": {"text": "a cat", "conf": 90}})
    async with vf.ImageAnalyzer(**fake.clients(), cache=False) as analyzer:
        run = analyzer.aanalyze_many([CAT, b"not an image"], features="caption")
        items = [item async for item in run]

    by_index = sorted(items, key=lambda item: item.index)
    assert [type(item) for item in by_index] == [BatchOk, BatchError]
    assert by_index[0].ok and by_index[0].result.caption is not None
