"""The Computer Vision 3.2 category taxonomy: the 86 names `categories[].name` can take.

Reference §5.1 (`shared/reference/azure-computer-vision-3.2.md`): "categories are organized
in a parent/child hierarchy ... (86, as opposed to thousands of tags). All category names
are in English." Names ending in `_` are parent-level (`people_`), the others children
(`people_group`); `object_`, `sky_` and `trans_` have children but no parent entry.

The names ship as package data, `viewfinder/data/cv32_categories.json` (its `_source` and
`viewfinder/data/README.md` say where they come from), read once on first use. They live
here, not in `compat`, because every stage that needs them may import `schemas`: the
prompt (`build`), the answers (`analyzers`) and the 3.2 wire shapes (`compat.rest32`).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Final

__all__ = ["CV32_CATEGORY_COUNT", "cv32_categories"]

CV32_CATEGORY_COUNT: Final = 86
"""How many categories the 3.2 taxonomy has (reference §5.1, count verified there)."""

_DATA_FILE: Final = "cv32_categories.json"


@cache
def cv32_categories() -> tuple[str, ...]:
    """The 86 category names, in the order Microsoft's documentation lists them.

    Raises:
        RuntimeError: The shipped file is damaged (not 86 distinct names).
    """
    text = (resources.files("viewfinder") / "data" / _DATA_FILE).read_text(encoding="utf-8")
    names = tuple(str(name) for name in json.loads(text)["categories"])
    if len(names) != CV32_CATEGORY_COUNT or len(set(names)) != len(names):
        raise RuntimeError(f"{_DATA_FILE}: expected {CV32_CATEGORY_COUNT} distinct names")
    return names
