"""Microsoft's azure-ai-vision-imageanalysis sdist, fetched at test time, and a scripted
model side that answers for its `sample.jpg` what the picture shows.

Nothing of Microsoft's is committed: `sdist()` runs `pip download` of the pinned version
once (cached in `$VIEWFINDER_TEST_CACHE`, else `~/.cache/viewfinder-tests`) and the tests
unpack it into a temp dir. The only edits made to Microsoft's files are `redirect_urls`
(the image URLs, to loopback) and, for the import swap, `swap_imports`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from filelock import FileLock

from viewfinder.build.grid import GRID
from viewfinder.testing import compact_answer

PACKAGE = "azure-ai-vision-imageanalysis"
VERSION = "1.0.0"
SDIST = f"azure_ai_vision_imageanalysis-{VERSION}.tar.gz"
SHA256 = "a79bbbb9c6992fef3be53395d339c9db850719583ef96ac64e054b00b545b3b6"
"""The sdist's digest: a cached or downloaded file with any other content is not used."""
IMAGE_URL = "https://aka.ms/azsdk/image-analysis/sample.jpg"
"""The URL samples and tests analyse: served on loopback instead (`redirect_urls`)."""
BAD_URL = "https://www.this.is.a.bad.url.com/for/sure.jpg"
"""The URL Microsoft's error test expects to be inaccessible: a loopback 404 instead."""
SDK_IMPORT = "azure.ai.vision.imageanalysis"
"""The import swap rewrites this dotted name to `viewfinder.azure`, everywhere it occurs."""
ASSETS = Path(__file__).parent / "assets"


def cache_dir() -> Path:
    """Where the sdist is kept between runs."""
    configured = os.environ.get("VIEWFINDER_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "viewfinder-tests"


def sdist() -> Path:
    """The pinned sdist, downloaded from the package index unless already cached.

    Raises:
        RuntimeError: The index could not be reached: the conformance tests must fail
            (not skip) when they cannot run.
    """
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # One download at a time: pytest-xdist workers (or two checkouts sharing the cache)
    # would otherwise see each other's half-written archive and delete or re-fetch it.
    with FileLock(folder / f"{SDIST}.lock", timeout=600):
        return _cached_or_downloaded(folder)


def _cached_or_downloaded(folder: Path) -> Path:
    """The sdist in `folder`, downloaded first unless a good copy is there (lock held)."""
    archive = folder / SDIST
    if archive.is_file() and _digest(archive) == SHA256:
        return archive
    archive.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--timeout", "30", "--retries", "2",
        "--dest", str(folder),
        f"{PACKAGE}=={VERSION}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0 or not archive.is_file():
        raise RuntimeError(
            f"could not download Microsoft's {PACKAGE}=={VERSION} sdist from the package "
            f"index (needed by the conformance tests; cache: {folder}):\n{done.stderr[-2000:]}"
        )
    if _digest(archive) != SHA256:
        raise RuntimeError(f"{archive} is not Microsoft's {PACKAGE} {VERSION} (sha256 differs)")
    return archive


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unpack(archive: Path, into: Path) -> Path:
    """The sdist's root folder, unpacked under `into`."""
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / SDIST.removesuffix(".tar.gz")


def redirect_urls(root: Path, image_url: str, bad_url: str) -> None:
    """Point the samples' and tests' image URLs at loopback (the only edit on both paths)."""
    for path in _python_files(root):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(IMAGE_URL, image_url).replace(BAD_URL, bad_url), "utf-8")


def swap_imports(root: Path) -> None:
    """The import swap: `azure.ai.vision.imageanalysis` -> `viewfinder.azure` in every
    sample and test (`import ... as sdk`, `.aio`, `.models`, `from ... import ...`)."""
    pattern = re.compile(rf"\b{re.escape(SDK_IMPORT)}\b")
    for path in _python_files(root):
        text = path.read_text(encoding="utf-8")
        path.write_text(pattern.sub("viewfinder.azure", text), "utf-8")


def _python_files(root: Path) -> list[Path]:
    return sorted([*root.glob("samples/**/*.py"), *root.glob("tests/*.py")])


# --- sample.jpg, as a faithful model would answer ---------------------------------------

_AZURE = json.loads((ASSETS / "azure_sample_all_features.json").read_text(encoding="utf-8"))
_WIDTH, _HEIGHT = _AZURE["metadata"]["width"], _AZURE["metadata"]["height"]


def _grid(box: dict[str, int]) -> list[int]:
    """A service box (pixels of the 864 x 576 image) in grid units."""
    return [
        round(box["x"] * GRID / _WIDTH),
        round(box["y"] * GRID / _HEIGHT),
        round((box["x"] + box["w"]) * GRID / _WIDTH),
        round((box["y"] + box["h"]) * GRID / _HEIGHT),
    ]


def _polygon_box(points: list[dict[str, int]]) -> dict[str, int]:
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    return {"x": min(xs), "y": min(ys), "w": max(xs) - min(xs), "h": max(ys) - min(ys)}


def sample_answer(gender_neutral: bool) -> dict[str, Any]:
    """What `sample.jpg` shows, in the verbose answer form: Microsoft's own result for it
    (`tests/assets/azure_sample_all_features.json`), the caption gendered unless asked not
    to be (the service's gendered caption of this picture says "woman")."""
    caption = _AZURE["captionResult"]["text"]
    if not gender_neutral:
        caption = caption.replace("a person", "a woman", 1)
    dense = _AZURE["denseCaptionsResult"]["values"]
    return {
        "caption": {"text": caption, "confidence": _AZURE["captionResult"]["confidence"]},
        "dense_captions": [
            {"text": caption, "confidence": dense[0]["confidence"], "box": [0, 0, GRID, GRID]},
            *(
                {"text": d["text"], "confidence": d["confidence"], "box": _grid(d["boundingBox"])}
                for d in dense[1:]
            ),
        ],
        "tags": [
            {"name": t["name"], "confidence": t["confidence"]}
            for t in _AZURE["tagsResult"]["values"]
        ],
        "objects": [
            {
                "name": o["tags"][0]["name"],
                "confidence": o["tags"][0]["confidence"],
                "box": _grid(o["boundingBox"]),
            }
            for o in _AZURE["objectsResult"]["values"]
        ],
        "people": [
            {"box": _grid(p["boundingBox"]), "confidence": p["confidence"]}
            for p in _AZURE["peopleResult"]["values"]
        ],
        "smart_crops": {"box": _grid(_AZURE["smartCropsResult"]["values"][0]["boundingBox"])},
        "read": [
            {
                "text": line["text"],
                "box": _grid(_polygon_box(line["boundingPolygon"])),
                "confidence": min(w["confidence"] for w in line["words"]),
            }
            for block in _AZURE["readResult"]["blocks"]
            for line in block["lines"]
        ],
    }


def _schema_keys(body: Any) -> set[str] | None:
    """The answer keys the request's schema asks for (tools or response_format)."""
    if isinstance(body, dict):
        properties = body.get("properties")
        if isinstance(properties, dict) and {"caption", "tags", "lines", "crop"} & set(properties):
            return set(properties)
        for value in body.values():
            found = _schema_keys(value)
            if found is not None:
                return found
    if isinstance(body, list):
        for value in body:
            found = _schema_keys(value)
            if found is not None:
                return found
    return None


def answer_for(body: dict[str, Any]) -> dict[str, Any]:
    """The simulator's `default`: the compact answer for sample.jpg, only the keys the
    request's schema has (a scripted answer, not a model: it never looks at the image)."""
    gender_neutral = "gender-neutral" in json.dumps(body)
    full = compact_answer(sample_answer(gender_neutral))
    keys = _schema_keys(body) or set(full)
    return {key: value for key, value in full.items() if key in keys}
