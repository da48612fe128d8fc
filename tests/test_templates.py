"""Prompt templates: built-ins, overrides, rendering and their effect on model_version."""

from __future__ import annotations

from pathlib import Path

import pytest

from viewfinder import InvalidOptionError
from viewfinder.analyzers.features import ALL_FEATURES
from viewfinder.build.templates import builtin_template, load_template


def test_every_feature_and_the_system_have_a_template() -> None:
    for name in ["system", *(f.value for f in ALL_FEATURES)]:
        assert builtin_template(name).source.strip()


def test_system_prompt_states_the_grid_convention() -> None:
    text = builtin_template("system").render({"language": "en"})
    assert "0-1000 grid" in text and "[x_min, y_min, x_max, y_max]" in text
    assert "language" not in text
    assert 'code "fr"' in builtin_template("system").render({"language": "fr"})


def test_gender_neutral_wording_is_asked_only_when_requested() -> None:
    caption = builtin_template("caption")
    assert "gender-neutral" in caption.render({"gender_neutral_caption": True})
    assert "gender-neutral" not in caption.render({"gender_neutral_caption": False})


def test_missing_variable_is_a_clear_error() -> None:
    with pytest.raises(InvalidOptionError, match="store"):
        load_template("Audit {{ store }}").render({})


def test_templates_load_from_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.j2"
    path.write_text("Audit the shelf of {{ store }}.")
    assert load_template(path).render({"store": "A"}) == "Audit the shelf of A."
    assert load_template(str(path)).render({"store": "B"}) == "Audit the shelf of B."
    assert load_template("List every product.").source == "List every product."
    with pytest.raises(InvalidOptionError, match="cannot read"):
        load_template(tmp_path / "missing.j2")


def test_syntax_errors_are_reported_with_the_template_name() -> None:
    with pytest.raises(InvalidOptionError, match="mine"):
        load_template("{% if %}", name="mine")
