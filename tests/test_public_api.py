"""The curated public surface: every exported name resolves, and the shortcuts work."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import viewfinder as vf


def test_every_exported_name_resolves() -> None:
    for name in vf.__all__:
        assert getattr(vf, name) is not None, name
    assert sorted(vf.__all__) == vf.__all__


def test_errors_have_one_root() -> None:
    for name in vf.__all__:
        member = getattr(vf, name)
        if isinstance(member, type) and issubclass(member, Exception):
            assert issubclass(member, vf.ViewfinderError), name


def test_nothing_configured_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(vf.ConfigurationError, match="OPENAI_API_KEY"):
        vf.analyze(b"not even read")


def test_unsupported_box_position_fails_when_the_analyzer_is_built() -> None:
    class Bad(BaseModel):
        boxes: set[vf.BoundingBox]

    with pytest.raises(vf.SchemaError, match=r"Bad\.boxes"):
        vf.Analyzer(schema=Bad, prompt="find boxes", base_url="http://127.0.0.1:9/v1")


def test_model_version_is_stable_and_changes_with_the_prompt() -> None:
    class Note(BaseModel):
        text: str

    def version(prompt: str, model: str = "gpt-4.1-mini") -> str:
        analyzer = vf.Analyzer(
            schema=Note, prompt=prompt, base_url="http://127.0.0.1:9/v1", model=model, cache=False
        )
        with analyzer:
            return analyzer.model_version

    assert version("read the note") == version("read the note")
    assert version("read the note") != version("read the note aloud")
    assert version("read the note", model="gpt-4o").startswith("gpt-4o+")
    with (
        vf.ImageAnalyzer(base_url="http://127.0.0.1:9/v1", cache=False) as a,
        vf.ImageAnalyzer(
            base_url="http://127.0.0.1:9/v1", cache=False, templates={"caption": "caption it"}
        ) as b,
    ):
        assert a.model_version != b.model_version


@pytest.mark.parametrize(
    "options",
    [
        {"detail": "ultra"},
        {"max_reasks": -1},
        {"templates": {"celebrities": "x"}},
        {"max_side": 10},
    ],
)
def test_bad_options_are_typed_errors(options: dict[str, object]) -> None:
    with pytest.raises(vf.InvalidOptionError):
        vf.ImageAnalyzer(base_url="http://127.0.0.1:9/v1", cache=False, **options)  # type: ignore[arg-type]
