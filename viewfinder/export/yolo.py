"""A batch output as YOLO detection labels: one text file per image and `classes.txt`.

Each image gets `<stem>.txt` (the stem of its source's file name; a second image of the
same stem gets `<stem>_2.txt`, and so on), one line per finding: `class cx cy w h`,
the class a 0-based line number of `classes.txt` and the box normalised to the image's
size (0-1, six decimals), as Ultralytics and most YOLO tools read them; an image with
no findings gets an empty file (a background image). `confidence=True` adds the score as
a sixth column, as Ultralytics writes predictions (`save_conf`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from viewfinder.export.results import DETECTION_FEATURES, ResultsLike, read_results
from viewfinder.schemas.regions import RegionFeature, regions

__all__ = ["write_yolo"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _stem(source: str) -> str:
    """A file-name-safe stem of a path or URL: `imgs/cat 1.jpg` -> `cat_1`."""
    path = urlsplit(source).path if "://" in source else source.replace("\\", "/")
    stem = _UNSAFE.sub("_", PurePosixPath(path).stem).strip("._")
    return stem or "image"


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def write_yolo(
    results: ResultsLike,
    directory: str | Path,
    *,
    features: Sequence[RegionFeature] = DETECTION_FEATURES,
    classes: Sequence[str] | None = None,
    confidence: bool = False,
) -> dict[str, Path]:
    """Write YOLO label files and `classes.txt` into `directory` (made if missing).

    Args:
        results: A batch output's path, `read_results`'s answer, or `BatchItem`s.
        directory: Where the files go; files of the same names are overwritten.
        features: Whose findings become labels (`objects` and `people` by default).
        classes: Class names in the order of their YOLO ids (0, 1, ...), to match a
            dataset's; findings of other names are left out. None: one class per name
            found, in order of first appearance.
        confidence: Add each finding's score as a sixth column.

    Returns:
        Each exported image's id -> the label file written for it.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ids: dict[str, int] = {name: index for index, name in enumerate(classes or ())}
    fixed = classes is not None
    used: set[str] = set()
    written: dict[str, Path] = {}
    for image in read_results(results).images:
        size = image.result.metadata
        lines: list[str] = []
        for feature in features:
            for region in regions(image.result, feature):
                label = " ".join(region.label.split())  # one line of classes.txt
                if label not in ids:
                    if fixed:
                        continue
                    ids[label] = len(ids)
                box = region.box
                cx = _clamp((box.x + box.width / 2) / size.width)
                cy = _clamp((box.y + box.height / 2) / size.height)
                w = _clamp(box.width / size.width)
                h = _clamp(box.height / size.height)
                line = f"{ids[label]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"
                lines.append(line + (f" {region.confidence:.4f}" if confidence else ""))
        stem = base = _stem(image.source)
        number = 1
        while stem.lower() in used:
            number += 1
            stem = f"{base}_{number}"
        used.add(stem.lower())
        path = out / f"{stem}.txt"
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        written[image.id] = path
    names = sorted(ids, key=ids.__getitem__)
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return written
