"""Bring your own detector: `ImageAnalyzer(proposals=...)`, boxes the model verifies.

A detector (a user's YOLO, RT-DETR or Grounding DINO through supervision's `Detections`,
or viewfinder's local people detector) proposes boxes in pixels of the original image;
the model gets them numbered and listed in its own box convention after the image, and
answers per proposal keep/drop and a name (a rename), plus in `objects` / `people` only
what the detector missed, with boxes it draws itself. This is the hybrid of
`shared/reference/vlm-grounding.md` §2.3 item 4 ("Detector proposals + VLM
verification: generic detector proposes, VLM answers True/False per box ... beats
selection prompting" [arXiv 2509.09958]) and item 6 (a discrete choice instead of
regression: the model picks numbered boxes rather than writing coordinates).

Kept proposals keep the detector's geometry exactly. Their confidence is the detector's
score where it gives one (a detector's scores are calibrated on boxes; a chat model's
self-reported confidences are not), else the model's confidence in its verdict. A
proposal the model does not answer is dropped: only what the model verified is kept.

Pure but for `local_people`, which runs the `local` extra's OpenCV detector.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from viewfinder.analyzers.compact import Conf
from viewfinder.build.conventions import DEFAULT
from viewfinder.build.grid import Frame, box_to_grid
from viewfinder.errors import InvalidOptionError
from viewfinder.schemas.features import DetectedObject, DetectedPerson
from viewfinder.schemas.geometry import BoundingBox

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "LOCAL_PEOPLE",
    "MAX_PROPOSALS",
    "Proposal",
    "ProposalsArg",
    "kept",
    "listing",
    "local_people",
    "normalize",
    "resolve_proposals",
    "with_verdicts",
]

logger = logging.getLogger("viewfinder")

MAX_PROPOSALS = 50
"""Proposals listed at most: past it, the highest scores are kept (a warning is logged).
Measured in o200k_base: about 18 input tokens a line after 124 for the instructions, so 50
proposals are about 1,030 input tokens; a verdict answered is about 18 output tokens, an
object with its box about 20."""

LOCAL_PEOPLE = "local-people"
"""`proposals=` naming viewfinder's local people detector (`viewfinder.local.people`)."""

Detector = Callable[["Image.Image"], Any]
"""A detector: the original image (EXIF orientation applied, RGB) -> its boxes."""
ProposalsArg = Detector | str
"""What `proposals=` accepts: a detector callable, or `LOCAL_PEOPLE`."""

PERSON = "person"
"""The name a kept proposal must have to be a person when `objects` is asked too."""

INSTRUCTIONS = (
    "Numbered proposals from an object detector for this image follow, each as "
    "`number. detector's name [box] score`, the box in the coordinates of your boxes. "
    'In "proposals" answer every number once: "keep" true only when its box tightly holds '
    'one real object (or person), false for a wrong, duplicate or loose box; "name" what '
    'the box holds (the detector\'s name or a better one; "person" for a person). List in '
    '"objects" and "people" ONLY what the proposals miss, never a kept proposal again.'
)
"""What the model is told after the image; hashed into `model_version`."""


@dataclass(frozen=True)
class Proposal:
    """One detector box, in pixels of the original image.

    Attributes:
        box: Where it is (clamped to the image).
        label: The detector's name for it, if any.
        score: The detector's confidence, 0-1, if any.
    """

    box: BoundingBox
    label: str | None = None
    score: float | None = None


class Verdict(BaseModel):
    """The verbose format's answer for one proposal."""

    model_config = ConfigDict(extra="forbid")

    id: int
    keep: bool
    name: str
    confidence: float = Field(ge=0.0, le=1.0, description="your confidence, 0 to 1")


class CompactVerdict(BaseModel):
    """The compact format's answer for one proposal (integer percent, short key)."""

    model_config = ConfigDict(extra="forbid")

    n: int
    keep: bool
    name: str
    conf: Conf


@cache
def with_verdicts(model: type[BaseModel], *, compact: bool) -> type[BaseModel]:
    """`model` (an answer model) with a required `proposals` field of verdicts; its
    name kept (instructor's tools mode names the function after it)."""
    item = CompactVerdict if compact else Verdict
    field: Any = (
        Annotated[list[item], Field(description="one verdict per numbered proposal")],  # type: ignore[valid-type]
        ...,
    )
    extended: type[BaseModel] = create_model(
        model.__name__, __base__=model, __module__=model.__module__, proposals=field
    )
    return extended


# --- the detector's answer, read ----------------------------------------------------------


def _bad(what: str) -> InvalidOptionError:
    return InvalidOptionError(f"proposals: the detector returned {what}")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # numpy scalars
        except (TypeError, ValueError):
            raise _bad(f"a {what} that is not a number: {value!r}") from None
    number = float(value)
    if not math.isfinite(number):
        raise _bad(f"a {what} that is not finite: {value!r}")
    return number


def _score(value: Any) -> float | None:
    if value is None:
        return None
    score = _number(value, "score")
    if not 0.0 <= score <= 1.0:
        raise _bad(f"a score outside 0-1: {value!r}")
    return score


def _label(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _xywh(value: Any) -> tuple[float, float, float, float]:
    """A box as `(x, y, w, h)`: a `BoundingBox`, a mapping with x, y, width/w, height/h,
    or four numbers."""
    if isinstance(value, BoundingBox):
        return value.x, value.y, value.width, value.height
    if isinstance(value, Mapping):
        try:
            raw = (
                value["x"],
                value["y"],
                value.get("width", value.get("w")),
                value.get("height", value.get("h")),
            )
        except KeyError:
            raise _bad(f"a box without x and y: {value!r}") from None
        return _four(raw)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return _four(value)
    raise _bad(f"a box that is not (x, y, w, h), a BoundingBox or a dict: {value!r}")


def _four(values: Sequence[Any]) -> tuple[float, float, float, float]:
    if len(values) != 4:
        raise _bad(f"a box without four values: {list(values)!r}")
    x, y, w, h = (_number(v, "box value") for v in values)
    if w <= 0 or h <= 0:
        raise _bad(f"a box with no area (x, y, w, h = {x}, {y}, {w}, {h})")
    return x, y, w, h


def _clamped(x: float, y: float, w: float, h: float, width: int, height: int) -> BoundingBox | None:
    """The box rounded to pixels and clamped to the image; None when nothing is left."""
    left, top = min(max(round(x), 0), width), min(max(round(y), 0), height)
    right, bottom = min(max(round(x + w), 0), width), min(max(round(y + h), 0), height)
    if right <= left or bottom <= top:
        return None
    return BoundingBox(x=left, y=top, width=right - left, height=bottom - top)


def _item(item: Any) -> tuple[tuple[float, float, float, float], str | None, float | None]:
    """One list item: a box, a dict with `box` (or x, y, w, h) and optional label/score,
    or a result object with `box` and `confidence` (viewfinder's `DetectedPerson`)."""
    if isinstance(item, DetectedPerson):
        return _xywh(item.box), PERSON, _score(item.confidence)
    if isinstance(item, DetectedObject):
        return _xywh(item.box), _label(item.name), _score(item.confidence)
    if isinstance(item, Mapping):
        box = item.get("box", item)
        label = item.get("label", item.get("name", item.get("class_name")))
        score = item.get("score", item.get("confidence"))
        return _xywh(box), _label(label), _score(score)
    return _xywh(item), None, None


def _detections(
    found: Any,
) -> list[tuple[tuple[float, float, float, float], str | None, float | None]]:
    """supervision's `Detections`, duck-typed: `xyxy` rows, `confidence`, the
    `class_name` data (ultralytics' names), else no label (a class id is not a name)."""
    try:
        rows = [list(row) for row in found.xyxy]
    except TypeError:
        raise _bad(f"an xyxy that is not rows of four numbers: {found.xyxy!r}") from None
    confidence = getattr(found, "confidence", None)
    data = getattr(found, "data", None) or {}
    names = data.get("class_name") if isinstance(data, Mapping) else None
    items = []
    for i, row in enumerate(rows):
        if len(row) != 4:
            raise _bad(f"an xyxy row without four values: {row!r}")
        x0, y0, x1, y1 = (_number(v, "box value") for v in row)
        box = _four((min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)))
        score = None if confidence is None else _score(confidence[i])
        label = None if names is None else _label(names[i])
        items.append((box, label, score))
    return items


def normalize(found: Any, width: int, height: int) -> tuple[Proposal, ...]:
    """A detector's answer as proposals on an image of `width` x `height` pixels.

    Accepts None or an empty list (no proposals), a list of `(x, y, w, h)`,
    `BoundingBox`, dicts (`{"box": ..., "label": ..., "score": ...}` or with x, y,
    width, height at the top) or viewfinder's `DetectedPerson` / `DetectedObject`, and
    supervision's `Detections` (duck-typed by `xyxy`; supervision is not a dependency).
    Boxes are rounded to pixels and clamped to the image; one wholly outside it is
    dropped. Past `MAX_PROPOSALS`, the highest scores are kept (unscored ones last),
    in the detector's order.

    Raises:
        InvalidOptionError: The answer is not one of those forms, or a box or score is
            not a finite number, has no area, or a score lies outside 0-1.
    """
    if found is None:
        return ()
    if hasattr(found, "xyxy"):
        items = _detections(found)
    elif isinstance(found, Sequence) and not isinstance(found, str | bytes):
        items = [_item(item) for item in found]
    else:
        raise _bad(f"{type(found).__name__}, not a list of boxes or a Detections")
    proposals = [
        Proposal(box, label, score)
        for (x, y, w, h), label, score in items
        if (box := _clamped(x, y, w, h, width, height)) is not None
    ]
    if len(proposals) > MAX_PROPOSALS:
        logger.warning(
            "proposals: %d boxes, the %d best scored are listed", len(proposals), MAX_PROPOSALS
        )
        ranked = sorted(
            range(len(proposals)),
            key=lambda i: -1.0 if proposals[i].score is None else -proposals[i].score,  # type: ignore[operator]
        )
        chosen = set(ranked[:MAX_PROPOSALS])
        proposals = [p for i, p in enumerate(proposals) if i in chosen]
    return tuple(proposals)


def run_detector(detector: Detector, image: Image.Image) -> tuple[Proposal, ...]:
    """`detector` on `image`, its answer read by `normalize`; its failure a typed error.

    Raises:
        InvalidOptionError: The detector raised (chained) or returned garbage.
    """
    try:
        found = detector(image)
    except Exception as error:
        raise InvalidOptionError(
            f"proposals: the detector raised {type(error).__name__}: {error}"
        ) from error
    return normalize(found, image.width, image.height)


def local_people(image: Image.Image) -> list[DetectedPerson]:
    """viewfinder's local people detector (`proposals="local-people"`, the `local` extra)."""
    from viewfinder.local.people import detect_people

    return detect_people(image)


def resolve_proposals(given: ProposalsArg | None) -> Detector | None:
    """`proposals=` as a detector: a callable as is, `LOCAL_PEOPLE` the local one.

    Raises:
        InvalidOptionError: Neither None, a callable nor `LOCAL_PEOPLE`.
    """
    if given is None or callable(given):
        return given
    if given == LOCAL_PEOPLE:
        return local_people
    raise InvalidOptionError(
        f"proposals must be a callable (image -> boxes) or {LOCAL_PEOPLE!r}, not {given!r}"
    )


# --- to the model and back ------------------------------------------------------------------


def _in_convention(box: BoundingBox, frame: Frame) -> list[float]:
    """A pixel box of the original as the model writes boxes (`frame.convention`)."""
    convention = frame.convention
    if convention is DEFAULT:
        return [float(v) for v in box_to_grid(box, frame)]
    dx, dy = convention.divisors(frame.copy_width, frame.copy_height)
    xs = [box.x / frame.width * dx, (box.x + box.width) / frame.width * dx]
    ys = [box.y / frame.height * dy, (box.y + box.height) / frame.height * dy]
    if convention.scale == "unit":
        xs, ys = [round(v, 3) for v in xs], [round(v, 3) for v in ys]
    else:
        xs, ys = [float(round(v)) for v in xs], [float(round(v)) for v in ys]
    if convention.order == "yx":
        return [ys[0], xs[0], ys[1], xs[1]]
    return [xs[0], ys[0], xs[1], ys[1]]


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def listing(proposals: Sequence[Proposal], frame: Frame) -> str:
    """The text after the image: `INSTRUCTIONS`, then one numbered line per proposal."""
    lines = [INSTRUCTIONS]
    for number, proposal in enumerate(proposals, start=1):
        box = ", ".join(_number_text(v) for v in _in_convention(proposal.box, frame))
        line = f"{number}. {proposal.label or 'object'} [{box}]"
        if proposal.score is not None:
            line += f" {round(proposal.score * 100)}%"
        lines.append(line)
    if not proposals:
        lines.append("(none: answer an empty list)")
    return "\n".join(lines)


def digest(proposals: Sequence[Proposal]) -> str:
    """Short sha256 of the proposals (boxes, labels, scores), for logs and keys."""
    material = [[p.box.x, p.box.y, p.box.width, p.box.height, p.label, p.score] for p in proposals]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Kept:
    """A proposal the model kept, under the name it gave."""

    proposal: Proposal
    name: str
    confidence: float
    """The detector's score, else the model's confidence."""


def kept(proposals: Sequence[Proposal], verdicts: Sequence[BaseModel]) -> list[Kept]:
    """The proposals the model kept, in their order; a number answered twice counts
    once (the first answer), a number out of range is ignored, one unanswered dropped."""
    answered: dict[int, BaseModel] = {}
    for verdict in verdicts:
        number = int(getattr(verdict, "n", getattr(verdict, "id", 0)))
        if 1 <= number <= len(proposals) and number not in answered:
            answered[number] = verdict
        elif not 1 <= number <= len(proposals):
            logger.warning("proposals: the model answered number %d of %d", number, len(proposals))
    out = []
    for number, proposal in enumerate(proposals, start=1):
        given = answered.get(number)
        if given is None or not getattr(given, "keep", False):
            continue
        conf = getattr(given, "conf", None)
        model_conf = conf / 100 if conf is not None else float(getattr(given, "confidence", 0))
        name = str(getattr(given, "name", "")).strip() or proposal.label or "object"
        score = proposal.score if proposal.score is not None else model_conf
        out.append(Kept(proposal, name, score))
    return out
