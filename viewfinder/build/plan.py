"""One bound call plan: a call's validated options, how to build its request and finish it.

An analyzer makes a `CallPlan` once per call (`ImageAnalyzer.plan`, `Analyzer.plan`),
and every entry point consumes it: `analyze` and `aanalyze`, `analyze_many`, the Batch
API, the estimator, the Azure look-alike and the server. The plan's constructor is the
one place a call option is validated, so no entry point checks an option on its own and
all of them refuse a bad option with the same error.

A plan is pure data and pure functions: building a request renders templates and
finishing an answer maps grid coordinates to pixels; neither does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from viewfinder.engine.engine import Completed, Request

__all__ = ["CallPlan", "ImagePart", "ImageSize", "SourceRef"]

O = TypeVar("O", covariant=True)  # noqa: E741 - the plan's options type
R = TypeVar("R", covariant=True)


class ImageSize(Protocol):
    """What `finish` needs of an image: its size in pixels after EXIF orientation."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


class ImagePart(Protocol):
    """What `build` needs of an image: the URL of its image part."""

    def data_url(self) -> str: ...


@dataclass(frozen=True)
class SourceRef:
    """Stands for an image in the source cache's key: its original bytes, not its copy.

    The copy sent to the model is a deterministic function of the original bytes and
    `max_side`, so the two identify it; a cache hit then needs no decoding.
    """

    sha256: str
    max_side: int

    def data_url(self) -> str:
        """Not a data URL: a stable name for the copy that would be sent."""
        return f"viewfinder-source:sha256={self.sha256};max_side={self.max_side}"


@dataclass(frozen=True)
class CallPlan(Generic[O, R]):
    """A call bound to its analyzer and its validated options; immutable, no I/O.

    Attributes:
        options: The validated options (`FeatureOptions` for `ImageAnalyzer`, the
            template variables for `Analyzer`).
        response_model: The model-facing schema the answer must validate against.
        fingerprint: The analyzer's `model_version` (`<model>+<hash of the prompts and
            schemas>`): what the plan contributes to every cache key besides its request.
        max_side: The copy's long side: the analyzer's `max_side` when it was given,
            else what the features need (`copy_side_for`).
    """

    options: O
    response_model: type[BaseModel]
    fingerprint: str
    max_side: int
    """Long side, in pixels, of the copy sent to the model for this call."""
    builder: Callable[[ImagePart], Request[BaseModel]] = field(repr=False)
    finisher: Callable[[Completed[BaseModel], ImageSize], R] = field(repr=False)
    described: Any = field(default=None, repr=False)
    """The options as JSON-able data, for `describe` (a batch job's fingerprint)."""

    def build(self, image: ImagePart) -> Request[BaseModel]:
        """The request for `image`: messages, response model and `model_version`."""
        return self.builder(image)

    def finish(self, answer: Completed[BaseModel], size: ImageSize) -> R:
        """The result for a validated `answer` to an image of `size`: pixels, usage, version."""
        return self.finisher(answer, size)

    def describe(self) -> str:
        """The options as canonical JSON (keys sorted; what JSON cannot hold as its repr)."""
        return json.dumps(self.described, sort_keys=True, default=repr)
