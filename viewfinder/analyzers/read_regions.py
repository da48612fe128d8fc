"""`read` with the text detector's geometry: the model names the text, it draws no boxes.

Vision-language models are weakest at text grounding, and a detector's geometry verified
by the model beats asking the model to regress boxes (`shared/reference/vlm-grounding.md`,
issue 17 item 2). With `ImageAnalyzer(read_geometry="detector")` a call asking `read`:

1. runs the local text detector and recogniser (`viewfinder.local.locate_text_lines`) on
   the original image: each text line's polygon, in pixels of the original, in reading
   order: ink-tight, with word boxes, where the recogniser reads the line; the
   detector's padded region where it cannot (a model may still read it);
2. lists the regions in the prompt, numbered from 1, each as its box in the analyzer's
   box convention over the copy sent (listed, not drawn: the copy sent is the plain
   image, and a list is a few tokens per line);
3. asks the model, in a request of its own (`RegionsAnswer`, the same in every answer
   format), only for what it does well: the text of each region and the reading order,
   as a list of `{region, text}`; no boxes in the answer, so fewer output tokens;
4. gives each answered line its region's polygon; its words take the recogniser's word
   boxes when the answer's words are the recogniser's (same words, same count), else
   they are placed along the line polygon in proportion to character counts, as the
   model path does for words without boxes (`ReadWord.estimated` is True): words always
   lie inside their line.

What the answer cannot say is dropped: a region the model leaves out or gives no text
(no text there), a region number that does not exist (logged; not re-asked: the rest of
the answer is good and a re-ask costs a whole request), and a region named twice (the
first wins). The schema has no place for text outside the regions, so text the detector
missed is not read: the price of exact geometry. The other features of the call go in
the usual request (two requests when `read` is asked with others).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from viewfinder.analyzers.features import Feature
from viewfinder.analyzers.flow import AnswerPath, Flow, Send, Work
from viewfinder.analyzers.split import Replan
from viewfinder.build.conventions import BoxConvention
from viewfinder.engine.budget import Budget
from viewfinder.engine.engine import Completed, Engine, Request
from viewfinder.prepare import PreparedImage
from viewfinder.prepare.load import ImageInput, LoadedImage
from viewfinder.schemas.features import ReadBlock, ReadLine, ReadResult, ReadWord
from viewfinder.schemas.geometry import Point, Polygon
from viewfinder.schemas.result import ImageAnalysisResult, ImageMetadata, Usage

if TYPE_CHECKING:
    from viewfinder.analyzers.image_analysis import FeatureOptions
    from viewfinder.build.plan import CallPlan

__all__ = [
    "READ_GEOMETRIES",
    "REGIONS_INSTRUCTIONS",
    "REGIONS_SYSTEM",
    "ReadGeometry",
    "Region",
    "RegionReadPath",
    "RegionText",
    "RegionsAnswer",
    "list_regions",
    "read_from_regions",
    "words_along",
]

logger = logging.getLogger("viewfinder")

ReadGeometry = Literal["model", "detector"]
"""Where `read`'s polygons come from: the model's boxes (the default) or the text detector."""
READ_GEOMETRIES: tuple[ReadGeometry, ...] = ("model", "detector")

REGIONS_INSTRUCTIONS = (
    "A text detector found the numbered text lines below in the image; each is given "
    "as its box. Read the text of each region exactly as written in the image. Answer "
    "the regions in reading order, each once, as {{region, text}}; leave out a region "
    "that holds no text. Write no boxes.\n\n{regions}"
)
"""The user text of the regions request; `{regions}` is `list_regions`'s output."""
REGIONS_SYSTEM = "You read text in images. Answer only with the JSON object asked for."


class RegionText(BaseModel):
    """One region's text, as the model read it."""

    model_config = ConfigDict(extra="forbid")

    region: int = Field(description="the region's number, as listed")
    text: str = Field(description="the text in the region, exactly as written")


class RegionsAnswer(BaseModel):
    """The model's answer to the regions request: texts in reading order, no boxes."""

    model_config = ConfigDict(extra="forbid")

    lines: list[RegionText] = Field(description="the regions' texts, in reading order")


def list_regions(
    polygons: Sequence[Polygon],
    convention: BoxConvention,
    size: tuple[int, int],
    copy: tuple[int, int],
) -> str:
    """The numbered regions as prompt lines (`1: [x_min, y_min, x_max, y_max]`).

    Each region's bounds in pixels of the original image of `size`, written as the model
    writes boxes (`convention`: order and scale; pixels are those of the copy of size
    `copy` sent), so the numbers mean what the model's own boxes would.
    """
    width, height = size
    lines = []
    for number, polygon in enumerate(polygons, start=1):
        x0, y0, x1, y1 = polygon.bounds.xyxy
        xs = [_to_convention(v, width, copy[0], convention) for v in (x0, x1)]
        ys = [_to_convention(v, height, copy[1], convention) for v in (y0, y1)]
        box = [xs[0], ys[0], xs[1], ys[1]]
        if convention.order == "yx":
            box = [box[1], box[0], box[3], box[2]]
        lines.append(f"{number}: [{', '.join(_number(v) for v in box)}]")
    return "\n".join(lines)


def _to_convention(value: int, side: int, copy_side: int, convention: BoxConvention) -> float:
    """A pixel of the original on one axis, in the convention's scale (`_scale`'s inverse)."""
    fraction = value / side if side else 0.0
    if convention.scale == "grid":
        return round(fraction * convention.top)
    if convention.scale == "unit":
        return round(fraction, 3)
    return round(fraction * copy_side)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def words_along(text: str, polygon: Polygon) -> list[ReadWord]:
    """`text`'s words placed along the line `polygon` in proportion to character counts.

    Each word's corners are interpolated on the line's top edge (point 0 to 1) and bottom
    edge (point 3 to 2), so words follow a slanted line and stay inside it; spaces count
    as characters, so the gaps between words are kept (as `split_words` does for boxes).
    """
    words = text.split()
    total = len(" ".join(words))
    p0, p1, p2, p3 = polygon.points

    def at(start: Point, end: Point, share: float) -> Point:
        return Point(
            x=round(start.x + (end.x - start.x) * share),
            y=round(start.y + (end.y - start.y) * share),
        )

    placed = []
    offset = 0
    for word in words:
        left, right = offset / total, (offset + len(word)) / total
        corners = [at(p0, p1, left), at(p0, p1, right), at(p3, p2, right), at(p3, p2, left)]
        placed.append(
            ReadWord(text=word, polygon=Polygon(points=corners), confidence=1.0, estimated=True)
        )
        offset += len(word) + 1
    return placed


def read_from_regions(answer: RegionsAnswer, regions: Sequence[Region]) -> ReadResult:
    """The read result: the answer's texts and order on the regions' polygons.

    Unknown region numbers are dropped (and logged), a region named twice keeps its
    first text, and regions without text are left out. A line's words keep the
    recogniser's boxes when the answer's words are the recogniser's words.
    """
    seen: set[int] = set()
    lines = []
    for item in answer.lines:
        if not 1 <= item.region <= len(regions):
            logger.warning(
                "read: the model named region %d of %d; its text is dropped",
                item.region,
                len(regions),
            )
            continue
        text = " ".join(item.text.split())
        if item.region in seen or not text:
            continue
        seen.add(item.region)
        region = regions[item.region - 1]
        found = list(region.words)
        same = [word.text for word in found] == text.split()
        words = found if found and same else words_along(text, region.polygon)
        lines.append(ReadLine(text=text, polygon=region.polygon, words=words))
    return ReadResult(blocks=[ReadBlock(lines=lines)] if lines else [])


class Region(Protocol):
    """A text line's place (`viewfinder.local.read.TextRegion`): its polygon, in pixels
    of the original, and the recogniser's words where it read the line."""

    @property
    def polygon(self) -> Polygon: ...

    @property
    def words(self) -> Sequence[ReadWord]: ...


Detect = Callable[[LoadedImage, int], tuple[list[Region], PreparedImage]]
"""The text lines' regions of an image, and its copy prepared at a long side."""
RegionsRequest = Callable[[PreparedImage, list[Polygon], "FeatureOptions"], Request[BaseModel]]
"""The regions request for a prepared copy and its numbered regions."""


@dataclass(frozen=True)
class RegionReadPath:
    """`read` from the detector's regions named by the model; the rest through `inner`.

    Attributes:
        load: Reads the image's bytes, once for both requests.
        inner: The usual path (`SplitPath`), for the call's other features.
        engine: Sends the regions request.
        detect: The detector's regions and the copy to send (decodes at full size).
        request: Builds the regions request.
        replan: The plan of the same call for the other features.
        read_side: The long side of the copy sent with the regions.
    """

    load: Callable[[ImageInput | LoadedImage], LoadedImage]
    inner: AnswerPath[ImageAnalysisResult]
    engine: Engine
    detect: Detect
    request: RegionsRequest
    replan: Replan
    read_side: int

    def flow(
        self,
        plan: CallPlan[FeatureOptions, ImageAnalysisResult],
        image: ImageInput | LoadedImage,
        budget: Budget | None,
    ) -> Flow[ImageAnalysisResult]:
        """See `AnswerPath.flow`; without `read` asked of the model, `inner`'s flow."""
        options = plan.options
        if Feature.READ not in options.model_features:
            return (yield from self.inner.flow(plan, image, budget))
        loaded: LoadedImage = yield Work(self.load, (image,))
        regions, prepared = yield Work(
            self.detect, (loaded, self.read_side), decodes=(loaded.data, None)
        )
        others = tuple(f for f in options.features if f is not Feature.READ)
        size = ImageMetadata(width=prepared.width, height=prepared.height)
        result = ImageAnalysisResult(model_version=plan.fingerprint, metadata=size)
        if others:
            result = yield from self.inner.flow(self.replan(options, others), loaded, budget)
        read = ReadResult(blocks=[])
        spent = Usage()
        if regions:  # no text found: no request
            polygons = [region.polygon for region in regions]
            done: Completed[Any] = yield Send(
                self.engine, self.request(prepared, polygons, options), budget
            )
            read = read_from_regions(done.answer, regions)
            spent = done.usage
        return result.model_copy(
            update={"read": read, "usage": result.usage + spent, "model_version": plan.fingerprint}
        )
