"""A batch output as a table: CSV, Parquet (pyarrow) or a pandas DataFrame.

Two shapes, `per=`:

- `"detection"` (the default): one row per finding of the chosen features, with its
  image's columns: `id, source, sha256, image_width, image_height, feature, label,
  confidence, box_x, box_y, box_width, box_height` (pixels of the original image);
- `"image"`: one row per analysed image: `id, source, sha256, image_width,
  image_height, model_version, caption, caption_confidence, tags` (names joined by
  `"; "`, best first), a count per feature (empty when the feature was not requested),
  `text` (the read lines, one per line), the usage's tokens and requests, `cache_hit` and
  `cost` (dollars, empty when unpriced).

CSV needs nothing more, Parquet pyarrow (`viewfinder[parquet]`), the DataFrame pandas
(`viewfinder[pandas]`); the columns and their types are the same in all three.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from viewfinder.export.results import AnalysedImage, ResultsLike, read_results
from viewfinder.schemas.regions import REGION_FEATURES, RegionFeature, regions

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

__all__ = ["COLUMNS", "Per", "to_dataframe", "to_rows", "write_csv", "write_parquet"]

Per: TypeAlias = Literal["detection", "image"]
"""One row per finding, or per image."""

_Kind: TypeAlias = Literal["string", "int", "float", "bool"]

_IMAGE: Final[dict[str, _Kind]] = {
    "id": "string",
    "source": "string",
    "sha256": "string",
    "image_width": "int",
    "image_height": "int",
}
_COUNTS: Final = ("objects", "people", "dense_captions", "read_lines", "brands", "faces")

COLUMNS: Final[dict[Per, dict[str, _Kind]]] = {
    "detection": _IMAGE
    | {
        "feature": "string",
        "label": "string",
        "confidence": "float",
        "box_x": "int",
        "box_y": "int",
        "box_width": "int",
        "box_height": "int",
    },
    "image": _IMAGE
    | {"model_version": "string", "caption": "string", "caption_confidence": "float"}
    | {"tags": "string"}
    | dict.fromkeys(_COUNTS, "int")
    | {
        "text": "string",
        "input_tokens": "int",
        "cached_input_tokens": "int",
        "output_tokens": "int",
        "requests": "int",
        "cache_hit": "bool",
        "cost": "float",
    },
}
"""Each shape's columns, in order, with their type (every column may be empty)."""


def _image_columns(image: AnalysedImage) -> dict[str, Any]:
    size = image.result.metadata
    return {
        "id": image.id,
        "source": image.source,
        "sha256": image.sha256,
        "image_width": size.width,
        "image_height": size.height,
    }


def _image_row(image: AnalysedImage) -> dict[str, Any]:
    result, usage = image.result, image.result.usage
    lines = result.read.lines if result.read is not None else None
    counted = {
        "objects": result.objects,
        "people": result.people,
        "dense_captions": result.dense_captions,
        "read_lines": lines,
        "brands": result.brands,
        "faces": result.faces,
    }
    return (
        _image_columns(image)
        | {
            "model_version": result.model_version,
            "caption": result.caption.text if result.caption else None,
            "caption_confidence": result.caption.confidence if result.caption else None,
            "tags": None if result.tags is None else "; ".join(t.name for t in result.tags),
        }
        | {name: None if found is None else len(found) for name, found in counted.items()}
        | {
            "text": None if lines is None else "\n".join(line.text for line in lines),
            "input_tokens": usage.input_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "output_tokens": usage.output_tokens,
            "requests": usage.requests,
            "cache_hit": usage.cache_hit,
            "cost": image.cost,
        }
    )


def to_rows(
    results: ResultsLike,
    *,
    per: Per = "detection",
    features: Sequence[RegionFeature] = REGION_FEATURES,
) -> list[dict[str, Any]]:
    """The table's rows as dicts, keys in `COLUMNS[per]`'s order (see the module docstring).

    Args:
        results: A batch output's path, `read_results`'s answer, or `BatchItem`s.
        per: `"detection"` or `"image"`.
        features: The findings listed (`per="detection"` only): every boxed feature by
            default.
    """
    images = read_results(results).images
    if per == "image":
        return [_image_row(image) for image in images]
    rows: list[dict[str, Any]] = []
    for image in images:
        columns = _image_columns(image)
        for feature in features:
            for region in regions(image.result, feature):
                box = region.box
                rows.append(
                    columns
                    | {
                        "feature": feature,
                        "label": region.label,
                        "confidence": region.confidence,
                        "box_x": box.x,
                        "box_y": box.y,
                        "box_width": box.width,
                        "box_height": box.height,
                    }
                )
    return rows


def write_csv(
    results: ResultsLike,
    path: str | Path,
    *,
    per: Per = "detection",
    features: Sequence[RegionFeature] = REGION_FEATURES,
) -> int:
    """Write the table as CSV (UTF-8, a header row; empty cells for missing values).

    Returns:
        The number of rows written, the header apart.
    """
    rows = to_rows(results, per=per, features=features)
    with Path(path).open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(COLUMNS[per]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def write_parquet(
    results: ResultsLike,
    path: str | Path,
    *,
    per: Per = "detection",
    features: Sequence[RegionFeature] = REGION_FEATURES,
) -> int:
    """Write the table as Parquet with `COLUMNS[per]`'s types (pyarrow).

    Returns:
        The number of rows written.

    Raises:
        ImportError: pyarrow is not installed (`pip install 'viewfinder[parquet]'`).
    """
    try:
        import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImportError("Parquet needs pyarrow: pip install 'viewfinder[parquet]'") from error
    kinds = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema([(name, kinds[kind]) for name, kind in COLUMNS[per].items()])
    rows = to_rows(results, per=per, features=features)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), Path(path))
    return len(rows)


def to_dataframe(
    results: ResultsLike,
    *,
    per: Per = "detection",
    features: Sequence[RegionFeature] = REGION_FEATURES,
) -> pd.DataFrame:
    """The table as a pandas DataFrame, columns typed as `COLUMNS[per]` says (pandas'
    nullable dtypes, so an empty cell stays empty rather than turning a column to float).

    Raises:
        ImportError: pandas is not installed (`pip install 'viewfinder[pandas]'`).
    """
    try:
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImportError("to_dataframe needs pandas: pip install 'viewfinder[pandas]'") from error
    dtypes = {"string": "string", "int": "Int64", "float": "Float64", "bool": "boolean"}
    columns = COLUMNS[per]
    frame = pd.DataFrame(to_rows(results, per=per, features=features), columns=list(columns))
    return frame.astype({name: dtypes[kind] for name, kind in columns.items()})
