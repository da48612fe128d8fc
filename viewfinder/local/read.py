"""The `read` feature (OCR) on this machine: no model endpoint, no key, no download.

The engine is RapidOCR (`rapidocr` 3.x): PaddleOCR's PP-OCRv6 (small) text detector
and recogniser, and its text-direction classifier, as ONNX models shipped inside the
wheel and run by ONNX Runtime on the CPU; the models are named by file, so nothing is
ever downloaded. Install it with `pip install 'viewfinder[local]'`. On the images in
`tests/assets/ocr/` it reads at least as well as the PP-OCRv4 models of
`rapidocr-onnxruntime` 1.4.4 it replaced, in less CPU time (see BENCHMARKS.md).

```python
from PIL import Image, ImageOps
from viewfinder.local import read_text

result = read_text(ImageOps.exif_transpose(Image.open("page.png")))
print(result.text)
for line in result.lines:
    print(line.text, [(word.text, round(word.confidence, 2)) for word in line.words])
```

What viewfinder adds to the stock pipeline (each step measured on the images in
`tests/assets/ocr/`, see `benchmarks/bench_local_read.py`):

- Detection runs on a copy whose long side is 960 px (small images are upscaled, at
  most 4x), with lower box threshold and wider box margins than RapidOCR's defaults:
  the defaults miss lines on small scans.
- Each line is cut straight from the full-resolution image, warped to the
  recogniser's 48 px height in one step (the stock pipeline crops, then stretches
  small crops bilinearly, which blurs away the gaps between words).
- The recogniser's CTC output is decoded here, keeping each character's position
  and probability: a space it scored above `SPACE_PROBABILITY` between two characters
  is put back (PP-OCR's Chinese-English model tends to drop spaces).
- Word polygons come from those positions, snapped to the ink in the line; line
  polygons are tightened to the ink too, so both hug the text rather than the
  detector's padded box.
- A line the direction classifier calls upside down is read both ways and the surer
  reading kept (the classifier squeezes a line into 192 px and misjudges long ones).
- Lines are put in reading order (see `reading_order`), and pieces of one line that
  the detector split are joined.

`detect_text_regions` gives the detector's line polygons alone (and, asked, each
line's words with their boxes): geometry for a read whose text comes from a model.

Geometry is in pixels of the image given, as ints clamped to its bounds, each
polygon four points clockwise from the text's own top-left: the top-left corner for
upright text; for upside-down or vertical text, where the text starts.

Limits: the recogniser knows Chinese and English (ASCII letters, digits, punctuation;
few accented letters); handwriting reads poorly. A read takes about half a second for
a small page on two cores, and grows with the number and length of lines. `read_text`
is thread-safe; concurrent calls run one at a time (ONNX Runtime already uses every
core).
"""

from __future__ import annotations

import itertools
import math
import statistics
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from PIL import Image, ImageOps

from viewfinder.schemas.features import ReadBlock, ReadLine, ReadResult, ReadWord
from viewfinder.schemas.geometry import Point, Polygon

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float32]
    ByteArray = NDArray[np.uint8]

__all__ = [
    "DETECTION_SIDE",
    "MIN_LINE_CONFIDENCE",
    "SPACE_PROBABILITY",
    "VERSION",
    "TextRegion",
    "detect_text_regions",
    "locate_text_lines",
    "read_text",
    "reading_order",
]

DETECTION_SIDE = 960
"""Long side, in pixels, of the copy the text detector sees when the image is smaller
(upscaled at most `_MAX_UPSCALE` times); larger images are detected at full size up to
`_MAX_DETECTION_SIDE`."""

MIN_LINE_CONFIDENCE = 0.3
"""Lines whose mean character probability is below this are dropped."""

SPACE_PROBABILITY = 0.15
"""A space the recogniser scored above this between two characters is kept."""

_MAX_UPSCALE = 4.0
_MAX_DETECTION_SIDE = 2000
_MAX_ASPECT = 8.0  # wider detection inputs are padded top and bottom, as RapidOCR does
_BOX_THRESHOLD = 0.3  # RapidOCR: 0.5
_UNCLIP_RATIO = 2.0  # RapidOCR: 1.6
_REC_HEIGHT = 48  # the PP-OCR recogniser's input height
_REC_MIN_WIDTH = 320  # ... and its nominal width: narrower crops are padded to it
_REC_BATCH = 6
_VERTICAL_RATIO = 1.5  # boxes this much taller than wide hold vertical text
_MERGE_GAP = 0.9  # line pieces closer than this many line heights are one line
_DETECTOR_LIMIT = 736  # the detector shrinks its input to this long side (RapidOCR's default)
_MODEL_FILES = {
    "det": "PP-OCRv6_det_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
}
"""The models that ship inside the rapidocr wheel (its defaults), by file name."""
_INSTALL_HINT = (
    "the local read engine needs rapidocr and onnxruntime (PP-OCRv6 models shipped in "
    "the wheel): pip install 'viewfinder[local]'"
)


def _version() -> str:
    """The engine's packages and this module's settings, for cache keys and results."""
    parts = []
    for package in ("rapidocr", "onnxruntime"):
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} missing")
    settings = (
        f"side={DETECTION_SIDE} box={_BOX_THRESHOLD} unclip={_UNCLIP_RATIO} "
        f"space={SPACE_PROBABILITY} min={MIN_LINE_CONFIDENCE}"
    )
    return "; ".join([*parts, settings])


VERSION = _version()
"""What produced the results: `rapidocr X; onnxruntime Y; <settings>`."""

Quad = Sequence[tuple[float, float]]
"""Four (x, y) points clockwise from the text's top-left."""


# --- the engine, created once ----------------------------------------------------------


class _Engine:
    """RapidOCR's three ONNX sessions and the recogniser's character table.

    The only place that reaches into RapidOCR's objects (its `_load_*_model` loaders,
    the detector's `boxes`, the classifier's `cls_res` and threshold, the recogniser's
    ONNX session and character table): its public `RapidOCR(image)` runs the stock pipeline end
    to end, and the steps this module improves on (see the module docstring) need each
    model on its own. A rapidocr upgrade that moves them breaks here and in
    `tests/test_local_read.py`, which pins the 3.x line.
    """

    def __init__(self) -> None:
        try:
            import cv2  # noqa: F401  (checked here so the error names the extra)
            import numpy  # noqa: F401
            import onnxruntime  # noqa: F401  (rapidocr does not require its engine)
            import rapidocr
        except ModuleNotFoundError as exc:  # what `pip install` fixes: the engine names it
            raise ModuleNotFoundError(_INSTALL_HINT, name="rapidocr") from exc
        # any other ImportError: installed but not loading here, raised with its own reason
        models = Path(rapidocr.__file__).parent / "models"
        # every model named by its file in the wheel: RapidOCR downloads a model it
        # cannot find (or whose checksum differs), and this engine must never do that;
        # Any: the loaders used below are untyped
        self.ocr: Any = cast(Any, rapidocr.RapidOCR)(
            params={
                "Global.log_level": "warning",
                "Det.model_path": str(models / _MODEL_FILES["det"]),
                "Det.limit_type": "max",
                "Det.limit_side_len": _DETECTOR_LIMIT,
                "Det.box_thresh": _BOX_THRESHOLD,
                "Det.unclip_ratio": _UNCLIP_RATIO,
                "Cls.model_path": str(models / _MODEL_FILES["cls"]),
                "Rec.model_path": str(models / _MODEL_FILES["rec"]),
            }
        )
        # RapidOCR loads each model on first use; its loaders are the way to get them
        self.detector: Any = self.ocr._load_det_model()  # noqa: SLF001
        self.classifier: Any = self.ocr._load_cls_model()  # noqa: SLF001
        self.recogniser: Any = self.ocr._load_rec_model()  # noqa: SLF001
        characters = list(self.recogniser.postprocess_op.character)
        if not characters or characters[-1] != " ":
            raise RuntimeError("unexpected rapidocr recogniser character table")
        self.characters: list[str] = characters
        self.space = len(characters) - 1
        self.cls_threshold = float(self.classifier.cls_thresh)
        self.lock = threading.Lock()
        """RapidOCR's detector keeps per-call state; ONNX Runtime already uses every core."""

    def detect(self, bgr: Any) -> Any:
        """The text detector's boxes for a BGR image (`None` or empty when none)."""
        return self.detector(bgr).boxes

    def directions(self, crops: list[Any]) -> list[tuple[str, float]]:
        """The direction classifier's `(label, score)` for each line crop."""
        return list(self.classifier(crops).cls_res)

    def recognise(self, tensor: Any) -> Any:
        """The recogniser's per-frame character probabilities for a batch of lines."""
        return self.recogniser.session(tensor)


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Engine:
    """The shared engine, loaded on first use (thread-safe)."""
    global _engine
    engine = _engine
    if engine is None:
        with _engine_lock:
            engine = _engine
            if engine is None:
                engine = _engine = _Engine()
    return engine


# --- the public entry point -------------------------------------------------------------


def read_text(image: Image.Image) -> ReadResult:
    """Read the text of an image on this machine (OCR), as the `read` feature does.

    Args:
        image: The image, full resolution. EXIF orientation is applied if the image
            still carries it (a no-op for an already oriented image).

    Returns:
        One block whose lines are in reading order (top to bottom, left to right;
        side-by-side text columns one after the other), each line and word with a
        four-point polygon in pixels of the oriented image and each word with the
        recogniser's confidence, 0-1. No text: no blocks.

    Raises:
        ImportError: rapidocr or onnxruntime is not installed (`pip install
            'viewfinder[local]'`).
    """
    read_lines = _read_lines(ImageOps.exif_transpose(image))
    return ReadResult(blocks=[ReadBlock(lines=read_lines)] if read_lines else [])


def _read_lines(oriented: Image.Image) -> list[ReadLine]:
    """Every line read, in reading order, with its words: the body of `read_text`."""
    engine = _get_engine()
    bgr = _to_bgr(oriented)
    with engine.lock:
        raw = _recognise(engine, bgr, _detect(engine, bgr))
    return _lines_of(raw, oriented.size)


def _lines_of(raw: list[_Line], size: tuple[int, int]) -> list[ReadLine]:
    """Recognised lines as the schema's: confident ones, pieces joined, reading order."""
    lines = _merge_pieces([line for line in raw if line.confidence >= MIN_LINE_CONFIDENCE])
    order = reading_order([line.frame for line in lines])
    width, height = size
    read_lines = [lines[index].to_schema(width, height) for index in order]
    return [line for line in read_lines if line.words]


def _regions_of(boxes: list[FloatArray], size: tuple[int, int]) -> list[TextRegion]:
    """The detector's boxes as regions: pieces of one line joined, reading order."""
    frames = [[(float(x), float(y)) for x, y in _frame_of(box)] for box in boxes]
    found = _merge_pieces([_Line(frame, "", 1.0, upright=_is_upright(frame)) for frame in frames])
    width, height = size
    return [
        TextRegion(polygon=_polygon(found[index].frame, width, height))
        for index in reading_order([line.frame for line in found])
    ]


@dataclass(frozen=True)
class TextRegion:
    """One text line the detector found, in pixels of the (oriented) image given."""

    polygon: Polygon
    """Four points clockwise from the text's top-left, ints clamped to the image."""
    words: list[ReadWord] = field(default_factory=list)
    """The line's words, left to right, each with its polygon and the recogniser's
    confidence; empty unless `detect_text_regions(..., words=True)`."""


def detect_text_regions(image: Image.Image, *, words: bool = False) -> list[TextRegion]:
    """Where the text lines are, from the text detector: geometry without a model's boxes.

    For a read whose geometry comes from the detector and whose text comes from a
    model (the model names what each numbered region says; it draws no boxes).

    Args:
        image: The image, full resolution; EXIF orientation is applied as in
            `read_text`.
        words: Also recognise each line here and return its words with their boxes.
            Then the regions are exactly `read_text`'s lines (ink-tight polygons,
            upside-down text turned by the direction classifier, lines below
            `MIN_LINE_CONFIDENCE` and empty ones left out). Without it only the
            detector runs (a fraction of a read's time): each region is the
            detector's box (padded around the text by its unclip ratio), pieces of
            one line joined as `read_text` joins them, and a box more than 1.5
            times taller than wide is taken for vertical text; upside-down text is
            not recognised as such (its polygon starts at the page's top-left).

    Returns:
        The regions in reading order (see `reading_order`); none when no text.

    Raises:
        ImportError: rapidocr is not installed (`pip install 'viewfinder[local]'`).
    """
    oriented = ImageOps.exif_transpose(image)
    if words:
        return [
            TextRegion(polygon=line.polygon, words=list(line.words))
            for line in _read_lines(oriented)
        ]
    engine = _get_engine()
    bgr = _to_bgr(oriented)
    with engine.lock:
        boxes = _detect(engine, bgr)
    return _regions_of(boxes, oriented.size)


def locate_text_lines(image: Image.Image) -> list[TextRegion]:
    """The detector's regions, each as tight as the recogniser can make it.

    The geometry of `read_text`'s lines is ink-tight, with word boxes, but a line the
    recogniser cannot read is not among them; the detector's own regions (`words=False`)
    hold every line but are padded around the text by its unclip ratio (a region's IoU
    with a hand-drawn line box is far lower: BENCHMARKS.md, "read geometry"). So: each
    detector region in which exactly one read line lies (its centre inside the region's
    bounding box) takes that line's polygon and words; a region with none (text the
    recogniser could not read, which a model may still read) or several keeps the
    detector's polygon and no words. Regions stay in the detector's reading order. The
    detector runs once; its boxes give both the regions and the lines read.

    Raises:
        ImportError: rapidocr is not installed (`pip install 'viewfinder[local]'`).
    """
    oriented = ImageOps.exif_transpose(image)
    engine = _get_engine()
    bgr = _to_bgr(oriented)
    with engine.lock:
        boxes = _detect(engine, bgr)
        raw = _recognise(engine, bgr, boxes)
    tight = _lines_of(raw, oriented.size)
    located = []
    used: set[int] = set()
    for region in _regions_of(boxes, oriented.size):
        xs = [p.x for p in region.polygon.points]
        ys = [p.y for p in region.polygon.points]
        inside = [
            index
            for index, line in enumerate(tight)
            if index not in used
            and min(xs) <= _centre(line.polygon)[0] <= max(xs)
            and min(ys) <= _centre(line.polygon)[1] <= max(ys)
        ]
        if len(inside) == 1:
            used.add(inside[0])
            line = tight[inside[0]]
            located.append(TextRegion(polygon=line.polygon, words=list(line.words)))
        else:
            located.append(region)
    return located


def _centre(polygon: Polygon) -> tuple[float, float]:
    points = polygon.points
    return (sum(p.x for p in points) / len(points), sum(p.y for p in points) / len(points))


# --- image conversion ------------------------------------------------------------------


def _to_bgr(image: Image.Image) -> ByteArray:
    """An 8-bit BGR array: alpha flattened onto white, deep greys scaled to 8 bits."""
    import numpy as np

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image.convert("F"), dtype=np.float32)
        top = float(values.max()) if values.size else 1.0
        scale = 255.0 / (255.0 if top <= 255 else 65535.0 if top <= 65535 else top)
        image = Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), "L")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        image = flat
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


# --- detection and recognition --------------------------------------------------------


@dataclass
class _Word:
    text: str
    quad: list[tuple[float, float]]
    confidence: float


@dataclass
class _Line:
    frame: list[tuple[float, float]]
    """The line's quad, clockwise from the text's top-left, in image pixels (floats)."""
    text: str
    confidence: float
    upright: bool
    words: list[_Word] = field(default_factory=list)

    def to_schema(self, width: int, height: int) -> ReadLine:
        return ReadLine(
            text=self.text,
            polygon=_polygon(self.frame, width, height),
            words=[
                ReadWord(
                    text=word.text,
                    polygon=_polygon(word.quad, width, height),
                    confidence=min(max(word.confidence, 0.0), 1.0),
                )
                for word in self.words
            ],
        )


def _detect(engine: _Engine, bgr: ByteArray) -> list[FloatArray]:
    """Text boxes (4x2, clockwise from top-left) in pixels of `bgr`."""
    import cv2
    import numpy as np

    height, width = bgr.shape[:2]
    long_side = max(height, width)
    if long_side < DETECTION_SIDE:
        scale = min(DETECTION_SIDE / long_side, _MAX_UPSCALE)
    else:
        scale = min(1.0, _MAX_DETECTION_SIDE / long_side)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    small = bgr if scale == 1 else cv2.resize(bgr, size, interpolation=interpolation)
    pad = 0
    short = min(small.shape[:2])
    if small.shape[1] / small.shape[0] > _MAX_ASPECT or short < 64:
        target = max(64, math.ceil(small.shape[1] / _MAX_ASPECT))
        if target > small.shape[0]:
            pad = (target - small.shape[0] + 1) // 2
            fill = [float(v) for v in np.median(small.reshape(-1, 3), axis=0)]
            small = cv2.copyMakeBorder(small, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=fill)
    boxes = engine.detect(small)
    if boxes is None or len(boxes) == 0:
        return []
    found = np.asarray(boxes, dtype=np.float32).reshape(-1, 4, 2)
    found[:, :, 1] -= pad
    found[:, :, 0] *= width / size[0]
    found[:, :, 1] *= height / size[1]
    found[:, :, 0] = np.clip(found[:, :, 0], 0, width)
    found[:, :, 1] = np.clip(found[:, :, 1], 0, height)
    return list(found)


def _frame_of(box: FloatArray) -> FloatArray:
    """The box's points from the text's top-left: rolled a quarter turn for tall boxes."""
    import numpy as np

    width = float(np.linalg.norm(box[1] - box[0]))
    height = float(np.linalg.norm(box[3] - box[0]))
    if height >= _VERTICAL_RATIO * max(width, 1.0):
        return np.roll(box, -1, axis=0)
    return box


def _warp(bgr: ByteArray, frame: FloatArray) -> tuple[ByteArray, FloatArray]:
    """Cut `frame` out of the image at the recogniser's height.

    Returns:
        The crop, and the matrix mapping crop pixels back to image pixels.
    """
    import cv2
    import numpy as np

    top = float(np.linalg.norm(frame[1] - frame[0]))
    bottom = float(np.linalg.norm(frame[2] - frame[3]))
    left = float(np.linalg.norm(frame[3] - frame[0]))
    right = float(np.linalg.norm(frame[2] - frame[1]))
    crop_width = max(8, round(max(top, bottom) * _REC_HEIGHT / max(left, right, 1.0)))
    target = np.array(
        [[0, 0], [crop_width, 0], [crop_width, _REC_HEIGHT], [0, _REC_HEIGHT]], dtype=np.float32
    )
    matrix = cv2.getPerspectiveTransform(frame.astype(np.float32), target)
    warped = cv2.warpPerspective(
        bgr,
        matrix,
        (crop_width, _REC_HEIGHT),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    crop: ByteArray = np.asarray(warped, dtype=np.uint8)
    inverse = np.linalg.inv(matrix).astype(np.float32)
    return crop, inverse


@dataclass
class _Char:
    text: str
    first: int
    last: int
    probability: float


def _recognise(engine: _Engine, bgr: ByteArray, boxes: list[FloatArray]) -> list[_Line]:
    """Classify and recognise every detected line; geometry still in float pixels."""
    import numpy as np

    if not boxes:
        return []
    frames = [_frame_of(box) for box in boxes]
    cuts = [_warp(bgr, frame) for frame in frames]
    directions = engine.directions([crop for crop, _ in cuts])
    flagged = [
        index
        for index, (label, score) in enumerate(directions)
        if "180" in str(label) and float(score) > engine.cls_threshold
    ]
    # the classifier squeezes a line into 192 px and can be wrong about a long one:
    # a line it calls upside down is read both ways, and the surer reading wins
    turned = [np.roll(frames[index], 2, axis=0) for index in flagged]
    turned_cuts = [_warp(bgr, frame) for frame in turned]
    outputs = _run_recogniser(engine, [crop for crop, _ in [*cuts, *turned_cuts]])
    decoded = [_decode(engine, probs) for probs, _ in outputs]
    for offset, index in enumerate(flagged):
        other = len(cuts) + offset
        if _mean_probability(decoded[other]) > _mean_probability(decoded[index]):
            frames[index], cuts[index] = turned[offset], turned_cuts[offset]
            outputs[index], decoded[index] = outputs[other], decoded[other]
    lines = []
    for index, (frame, (crop, inverse)) in enumerate(zip(frames, cuts, strict=True)):
        chars = decoded[index]
        if not any(char.text.strip() for char in chars):
            continue
        lines.append(_build_line(frame, crop, inverse, outputs[index][1], chars))
    return lines


def _mean_probability(chars: list[_Char]) -> float:
    return sum(char.probability for char in chars) / len(chars) if chars else 0.0


def _is_upright(frame: Quad | FloatArray) -> bool:
    """Whether the text runs left to right (within 45 degrees)."""
    dx, dy = float(frame[1][0] - frame[0][0]), float(frame[1][1] - frame[0][1])
    return abs(math.atan2(dy, dx)) < math.pi / 4


def _run_recogniser(engine: _Engine, crops: list[ByteArray]) -> list[tuple[FloatArray, float]]:
    """CTC probabilities for each crop, and the crop's width in the padded input.

    Crops are batched by width, as RapidOCR does, and padded to at least the
    recogniser's nominal width.

    Returns:
        Per crop: its (frames x classes) probabilities, and how many input pixels one
        frame spans.
    """
    import numpy as np

    order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1])
    results: list[tuple[FloatArray, float] | None] = [None] * len(crops)
    for start in range(0, len(order), _REC_BATCH):
        batch = order[start : start + _REC_BATCH]
        padded_width = max(_REC_MIN_WIDTH, *(crops[i].shape[1] for i in batch))
        tensor = np.zeros((len(batch), 3, _REC_HEIGHT, padded_width), dtype=np.float32)
        for row, index in enumerate(batch):
            crop = crops[index].astype(np.float32).transpose(2, 0, 1) / 255.0
            tensor[row, :, :, : crop.shape[2]] = (crop - 0.5) / 0.5
        probs = np.asarray(engine.recognise(tensor), dtype=np.float32)
        frame_span = padded_width / probs.shape[1]
        for row, index in enumerate(batch):
            results[index] = (probs[row], frame_span)
    return [result for result in results if result is not None]


def _decode(engine: _Engine, probs: FloatArray) -> list[_Char]:
    """Greedy CTC decoding that keeps each character's frames and probability.

    A space the recogniser did not pick but scored above `SPACE_PROBABILITY` between
    two characters is inserted, except inside numbers such as 8:15 or 3.5.
    """
    best = probs.argmax(axis=1)
    chars: list[_Char] = []
    previous = 0
    for frame, index in enumerate(best.tolist()):
        if index != 0:
            if index == previous and chars:
                chars[-1].last = frame
                chars[-1].probability = max(chars[-1].probability, float(probs[frame, index]))
            else:
                probability = float(probs[frame, index])
                chars.append(_Char(engine.characters[index], frame, frame, probability))
        previous = index
    result: list[_Char] = []
    for char in chars:
        if result and char.text != " " and result[-1].text != " ":
            before = result[-1]
            gap = probs[before.last + 1 : char.first, engine.space]
            score = float(gap.max()) if gap.size else 0.0
            inside_number = (
                before.text in ":.,/"
                and char.text.isdigit()
                and len(result) > 1
                and result[-2].text.isdigit()
            )
            if score > SPACE_PROBABILITY and not inside_number:
                result.append(_Char(" ", before.last + 1, char.first - 1, score))
        result.append(char)
    while result and result[0].text == " ":
        result.pop(0)
    while result and result[-1].text == " ":
        result.pop()
    return result


def _ink(crop: ByteArray) -> ByteArray:
    """The crop's ink as a 0/1 mask, without bits of the lines above and below.

    Otsu's threshold splits ink from paper (the minority class is ink, so light text on
    a dark ground works too). Blobs that stay clear of the middle of the crop and touch
    its top or bottom edge belong to the neighbouring lines and are dropped.
    """
    import cv2
    import numpy as np

    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    _, binary = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    if binary.mean() > 0.5:
        binary = 1 - binary
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    height = crop.shape[0]
    band_top, band_bottom = round(height * 0.3), round(height * 0.7)
    keep = np.zeros(count, dtype=np.uint8)
    for label in range(1, count):
        top, blob_height = int(stats[label, cv2.CC_STAT_TOP]), int(stats[label, cv2.CC_STAT_HEIGHT])
        bottom = top + blob_height
        outside_band = bottom <= band_top or top >= band_bottom
        touches_edge = top == 0 or bottom >= height
        if not (outside_band and touches_edge):
            keep[label] = 1
    mask: ByteArray = keep[labels]
    return mask


def _build_line(
    frame: FloatArray,
    crop: ByteArray,
    inverse: FloatArray,
    frame_span: float,
    chars: list[_Char],
) -> _Line:
    """Words and ink-tight polygons for one recognised line.

    Each word owns the stretch of the crop between the middles of the gaps to its
    neighbours (gaps in the recogniser's frames); its box is the ink in that stretch,
    or its frames when the stretch has no ink. All boxes share the line's ink rows.
    """
    import numpy as np

    crop_height, crop_width = crop.shape[:2]
    mask = _ink(crop)
    columns: NDArray[np.bool_] = np.asarray(mask.any(axis=0), dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    top, bottom = 0.0, float(crop_height)
    if rows.size:
        top, bottom = max(0.0, float(rows[0]) - 1), min(float(crop_height), float(rows[-1]) + 2)

    groups: list[list[_Char]] = [[]]
    for char in chars:
        if char.text == " ":
            groups.append([])
        else:
            groups[-1].append(char)
    groups = [group for group in groups if group]

    cuts = [0.0]
    for before, after in itertools.pairwise(groups):
        cuts.append(
            _cut(columns, (before[-1].last + 0.5) * frame_span, (after[0].first + 0.5) * frame_span)
        )
    cuts.append(float(crop_width))
    spans: list[tuple[float, float]] = []
    for index, group in enumerate(groups):
        cell_start, cell_end = cuts[index], cuts[index + 1]
        low, high = max(0, math.floor(cell_start)), min(crop_width, math.ceil(cell_end))
        inked = np.flatnonzero(columns[low:high]) if high > low else np.empty(0)
        if inked.size:
            left, right = float(low + inked[0]), float(low + inked[-1] + 1)
        else:
            left = max(group[0].first * frame_span, cell_start)
            right = min((group[-1].last + 1) * frame_span, max(cell_end, left + 1))
        spans.append((max(0.0, left - 1), min(float(crop_width), right + 1)))

    words = [
        _Word(
            text="".join(char.text for char in group),
            quad=_to_image(inverse, left, top, right, bottom),
            confidence=sum(char.probability for char in group) / len(group),
        )
        for group, (left, right) in zip(groups, spans, strict=True)
    ]
    x0 = spans[0][0] if spans else 0.0
    x1 = spans[-1][1] if spans else float(crop_width)
    return _Line(
        frame=_to_image(inverse, x0, top, x1, bottom),
        text=" ".join(word.text for word in words),
        confidence=sum(char.probability for char in chars) / len(chars),
        upright=_is_upright(frame),
        words=words,
    )


def _cut(columns: NDArray[np.bool_], start: float, end: float) -> float:
    """Where two words part: the middle of the widest inkless run between them.

    `start` and `end` are the recogniser's positions of the last character of one word
    and the first of the next; with no inkless column between, their middle.
    """
    low, high = max(0, math.ceil(start)), min(len(columns), math.floor(end) + 1)
    best_start, best_length, run_start = -1, 0, -1
    for column in range(low, high):
        if columns[column]:
            run_start = -1
            continue
        if run_start < 0:
            run_start = column
        if column - run_start + 1 > best_length:
            best_start, best_length = run_start, column - run_start + 1
    if best_length == 0:
        return (start + end) / 2
    return best_start + best_length / 2


def _to_image(
    inverse: FloatArray, left: float, top: float, right: float, bottom: float
) -> list[tuple[float, float]]:
    """Map a crop rectangle to its quad in image pixels (clockwise from top-left)."""
    import cv2
    import numpy as np

    corners = np.array(
        [[[left, top], [right, top], [right, bottom], [left, bottom]]], dtype=np.float32
    )
    mapped = cv2.perspectiveTransform(corners, inverse)[0]
    return [(float(x), float(y)) for x, y in mapped]


def _polygon(quad: Quad, width: int, height: int) -> Polygon:
    """Integer polygon clamped to the image; an axis-aligned box if rounding folds it."""
    points = [(min(max(round(x), 0), width), min(max(round(y), 0), height)) for x, y in quad]
    if _signed_area(points) <= 0:
        xs = [x for x, _ in quad]
        ys = [y for _, y in quad]
        x0 = min(max(math.floor(min(xs)), 0), max(width - 1, 0))
        y0 = min(max(math.floor(min(ys)), 0), max(height - 1, 0))
        x1 = max(min(math.ceil(max(xs)), width), x0 + 1)
        y1 = max(min(math.ceil(max(ys)), height), y0 + 1)
        points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return Polygon(points=[Point(x=x, y=y) for x, y in points])


def _signed_area(points: Sequence[tuple[float, float]]) -> float:
    """Shoelace area; positive when clockwise on screen (y pointing down)."""
    total = 0.0
    for (x0, y0), (x1, y1) in zip(points, [*points[1:], points[0]], strict=True):
        total += x0 * y1 - x1 * y0
    return total / 2


# --- joining split lines ---------------------------------------------------------------


def _merge_pieces(lines: list[_Line]) -> list[_Line]:
    """Join pieces of one line that the detector split at a wide gap.

    Two upright pieces are joined when they share most of their height, have similar
    heights, and the gap between them is under `_MERGE_GAP` line heights (a word space
    is about a third of one; a column gutter or a table's gap is wider).
    """
    pieces = sorted(lines, key=lambda line: _bounds(line.frame)[0])
    merged: list[_Line] = []
    for piece in pieces:
        for index, kept in enumerate(merged):
            if _continues(kept, piece):
                merged[index] = _Line(
                    frame=[kept.frame[0], piece.frame[1], piece.frame[2], kept.frame[3]],
                    text=f"{kept.text} {piece.text}",
                    confidence=min(kept.confidence, piece.confidence),
                    upright=True,
                    words=[*kept.words, *piece.words],
                )
                break
        else:
            merged.append(piece)
    return merged


def _continues(left: _Line, right: _Line) -> bool:
    """Whether `right` carries on `left` on the same text line."""
    if not (left.upright and right.upright):
        return False
    left_height, right_height = _text_height(left.frame), _text_height(right.frame)
    smaller, larger = sorted((left_height, right_height))
    if smaller <= 0 or larger > 1.5 * smaller:
        return False
    # compare the facing ends: the right end of `left` and the left end of `right`
    left_end = (left.frame[1][1] + left.frame[2][1]) / 2
    right_start = (right.frame[0][1] + right.frame[3][1]) / 2
    if abs(left_end - right_start) > 0.4 * smaller:
        return False
    gap = min(right.frame[0][0], right.frame[3][0]) - max(left.frame[1][0], left.frame[2][0])
    reaches_further = _bounds(right.frame)[2] > _bounds(left.frame)[2]
    return -0.3 * smaller <= gap <= _MERGE_GAP * larger and reaches_further


def _text_height(frame: Quad) -> float:
    return (math.dist(frame[0], frame[3]) + math.dist(frame[1], frame[2])) / 2


def _bounds(quad: Quad) -> tuple[float, float, float, float]:
    xs = [x for x, _ in quad]
    ys = [y for _, y in quad]
    return min(xs), min(ys), max(xs), max(ys)


# --- reading order ---------------------------------------------------------------------


def reading_order(quads: Sequence[Quad]) -> list[int]:
    """Order text lines for reading: top to bottom, left to right, column by column.

    The page is first turned level (by the median slant of the upright lines), then cut
    recursively: a segment whose lines fall into side-by-side text columns (a vertical
    gap, at least two long lines on each side) is read column by column; otherwise it
    is cut at its widest horizontal gap; lines that overlap vertically with no gap left
    are read as rows, left to right. A table's short cells (a receipt's amounts) are
    not columns, so tables read row by row.

    Args:
        quads: Each line's four points, clockwise from its top-left, in pixels.

    Returns:
        Indices into `quads`, in reading order.
    """
    if not quads:
        return []
    angle = _page_angle(quads)
    cos, sin = math.cos(-angle), math.sin(-angle)
    boxes = [_bounds([(x * cos - y * sin, x * sin + y * cos) for x, y in quad]) for quad in quads]
    heights = [_text_height(quad) for quad in quads]

    ordered: list[int] = []
    stack = [list(range(len(quads)))]
    while stack:
        segment = stack.pop()
        if len(segment) <= 1:
            ordered.extend(segment)
            continue
        split = _column_split(segment, boxes, heights) or _row_split(segment, boxes)
        if split is None:
            ordered.extend(_rows(segment, boxes, heights))
        else:
            first, second = split
            stack.append(second)
            stack.append(first)
    return ordered


_Box = tuple[float, float, float, float]


def _page_angle(quads: Sequence[Quad]) -> float:
    """The direction the text runs in, in radians (0: left to right, pi: upside down).

    The length-weighted mean direction of all lines, refined by the median of the
    lines within 45 degrees of it (a few vertical labels do not tilt a page).
    """
    directions = [
        (math.atan2(q[1][1] - q[0][1], q[1][0] - q[0][0]), math.dist(q[0], q[1])) for q in quads
    ]
    x = sum(length * math.cos(angle) for angle, length in directions)
    y = sum(length * math.sin(angle) for angle, length in directions)
    if math.hypot(x, y) <= 1e-9:
        return 0.0
    dominant = math.atan2(y, x)

    def offset(angle: float) -> float:
        return (angle - dominant + math.pi) % (2 * math.pi) - math.pi

    near = [offset(angle) for angle, _ in directions if abs(offset(angle)) < math.pi / 4]
    return dominant + (statistics.median(near) if near else 0.0)


def _gaps(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The uncovered stretches between a set of intervals, widest first."""
    found: list[tuple[float, float]] = []
    ordered = sorted(intervals)
    reach = ordered[0][1]
    for start, end in ordered[1:]:
        if start > reach:
            found.append((reach, start))
        reach = max(reach, end)
    return sorted(found, key=lambda gap: gap[0] - gap[1])


def _column_split(
    segment: list[int], boxes: list[_Box], heights: list[float]
) -> tuple[list[int], list[int]] | None:
    median_height = statistics.median(heights[i] for i in segment)
    for start, end in _gaps([(boxes[i][0], boxes[i][2]) for i in segment]):
        if end - start < 0.5 * median_height:
            break
        left = [i for i in segment if boxes[i][2] <= start]
        right = [i for i in segment if boxes[i][0] >= end]
        if _is_text_column(left, boxes, heights) and _is_text_column(right, boxes, heights):
            widths = sorted(
                statistics.median(boxes[i][2] - boxes[i][0] for i in side) for side in (left, right)
            )
            if widths[0] >= 0.5 * widths[1]:
                return left, right
    return None


def _is_text_column(side: list[int], boxes: list[_Box], heights: list[float]) -> bool:
    """At least two lines, typically four or more line heights long (running text)."""
    if len(side) < 2:
        return False
    return statistics.median((boxes[i][2] - boxes[i][0]) / max(heights[i], 1.0) for i in side) >= 4


def _row_split(segment: list[int], boxes: list[_Box]) -> tuple[list[int], list[int]] | None:
    gaps = _gaps([(boxes[i][1], boxes[i][3]) for i in segment])
    if not gaps:
        return None
    start, _ = gaps[0]
    above = [i for i in segment if boxes[i][3] <= start]
    below = [i for i in segment if boxes[i][3] > start]
    return above, below


def _rows(segment: list[int], boxes: list[_Box], heights: list[float]) -> list[int]:
    """Lines that overlap vertically: grouped into rows by centre, each left to right."""
    by_centre = sorted(segment, key=lambda i: (boxes[i][1] + boxes[i][3]) / 2)
    rows: list[list[int]] = []
    for index in by_centre:
        centre = (boxes[index][1] + boxes[index][3]) / 2
        if rows:
            row = rows[-1]
            row_centre = statistics.fmean((boxes[i][1] + boxes[i][3]) / 2 for i in row)
            tolerance = 0.5 * min(heights[index], statistics.fmean(heights[i] for i in row))
            if abs(centre - row_centre) <= tolerance:
                row.append(index)
                continue
        rows.append([index])
    return [index for row in rows for index in sorted(row, key=lambda i: boxes[i][0])]
