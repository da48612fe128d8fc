"""Bridges to the tools people already use: a batch output (`viewfinder batch`'s JSONL,
or `BatchItem`s) as COCO detection JSON, YOLO labels, CSV / Parquet / a pandas DataFrame
and Label Studio pre-annotations, and a result beside its drawn image in a notebook.

Every export reads the output the same way (`results.py`: the last line of an id wins,
failed images are counted and left out) and names and scores each finding the same way
(`viewfinder.schemas.regions`, which `ImageAnalysisResult.to_supervision` also uses).
pandas and pyarrow are imported only by the functions that need them.
"""

from viewfinder.export.coco import to_coco, to_coco_results
from viewfinder.export.label_studio import label_studio_config, to_label_studio
from viewfinder.export.notebook import Preview, preview
from viewfinder.export.results import (
    DETECTION_FEATURES,
    AnalysedImage,
    Results,
    ResultsLike,
    read_results,
)
from viewfinder.export.tables import COLUMNS, Per, to_dataframe, to_rows, write_csv, write_parquet
from viewfinder.export.yolo import write_yolo

__all__ = [
    "COLUMNS",
    "DETECTION_FEATURES",
    "AnalysedImage",
    "Per",
    "Preview",
    "Results",
    "ResultsLike",
    "label_studio_config",
    "preview",
    "read_results",
    "to_coco",
    "to_coco_results",
    "to_dataframe",
    "to_label_studio",
    "to_rows",
    "write_csv",
    "write_parquet",
    "write_yolo",
]
