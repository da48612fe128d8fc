"""Option parsing shared by the commands: comma lists and feature names."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from viewfinder.analyzers.features import ALL_FEATURES, Feature, parse_features
from viewfinder.errors import InvalidOptionError

__all__ = ["features_callback", "features_of", "split_commas"]


def split_commas(values: Sequence[str]) -> list[str]:
    """Flatten repeated and comma-separated option values, dropping empty items."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def features_of(values: Sequence[str] | None) -> tuple[Feature, ...]:
    """The features named by `--features` values; all seven when none are."""
    names = split_commas(values or ())
    return parse_features(names) if names else ALL_FEATURES


def features_callback(values: list[str] | None) -> list[str] | None:
    """typer callback: fail fast (exit 2) on an unknown feature name."""
    try:
        features_of(values)
    except InvalidOptionError as exc:
        raise typer.BadParameter(str(exc)) from None
    return values
