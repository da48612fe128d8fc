"""`Analyzer`: any pydantic schema, one prompt template, boxes back in pixels."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar, Unpack

from pydantic import BaseModel

from viewfinder.analyzers.base import (
    AnalyzerOptions,
    BaseAnalyzer,
    ImagePart,
    check_language,
    schema_text,
)
from viewfinder.batch.online import (
    DEFAULT_CONCURRENCY,
    AsyncBatchRun,
    BatchRun,
    arun_many,
    run_many,
)
from viewfinder.batch.records import BatchInputLike
from viewfinder.build.grid import model_facing, retarget
from viewfinder.build.plan import CallPlan, ImageSize
from viewfinder.build.templates import PromptTemplate, load_template
from viewfinder.engine.budget import Budget
from viewfinder.engine.engine import Completed, Gate, Request
from viewfinder.engine.progress import ProgressArg
from viewfinder.errors import SchemaError
from viewfinder.prepare.load import ImageInput, LoadedImage
from viewfinder.schemas.result import AnalysisRun, ImageMetadata

__all__ = ["Analyzer"]

T = TypeVar("T", bound=BaseModel)


class Analyzer(BaseAnalyzer, Generic[T]):
    """Fill a custom schema from an image.

    `BoundingBox` and `Polygon` fields may sit at any depth of `schema`; the model
    answers them in its box convention (`box_convention`: the table's row for the
    model, by default a 0-1000 grid) and you get pixels of the original image back. A
    position viewfinder cannot map raises `SchemaError` here, when the analyzer is built.

    Args:
        schema: The pydantic model to fill. Its validators run on every answer, and a
            failing answer is re-asked with the error (bounded by `max_reasks`).
        prompt: Jinja2 template text, or a file (`Path`, or a one-line `str` ending in
            `.j2`, `.jinja`, `.txt` or `.md`). Keyword arguments of `analyze` are its
            variables.
        **options: Shared settings, typed and documented in `AnalyzerOptions`.

    Example:
        >>> audit = Analyzer(schema=Shelf, prompt="List every product on the shelf.")
        >>> shelf = audit.analyze("shelf.jpg")
    """

    def __init__(
        self,
        schema: type[T],
        prompt: str | Path | PromptTemplate,
        **options: Unpack[AnalyzerOptions],
    ) -> None:
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise SchemaError(f"schema must be a pydantic BaseModel subclass, not {schema!r}")
        facing = model_facing(schema, where=schema.__name__)
        super().__init__(**options)
        self.schema: type[T] = schema
        self.prompt = load_template(prompt, name=f"prompt of {schema.__name__}")
        self._response_model: type[BaseModel] = retarget(
            facing.annotation, self.box_convention, self.pixel_limit(self.max_side)
        )
        self._convert = facing.convert
        self.model_version = self.model_version_for(
            [self.prompt.source, schema_text(self._response_model)]
        )

    # --- pure: build and finish ------------------------------------------------------

    def build(self, image: ImagePart, variables: Mapping[str, Any]) -> Request[BaseModel]:
        """The request for `image`, with the template rendered from `variables`.

        `variables["language"]` is taken as given: `plan` validates it.
        """
        language = variables.get("language", "en")
        return Request(
            messages=self.messages(
                self.render_system(language), self.prompt.render(variables), image
            ),
            response_model=self._response_model,
            model_version=self.model_version,
        )

    def finish(self, done: Completed[BaseModel], image: ImageSize) -> AnalysisRun[T]:
        """Boxes to pixels of the original image; usage and version attached."""
        frame = self.frame(image, self.max_side)
        output = done.answer if self._convert is None else self._convert(done.answer, frame)
        return AnalysisRun[self.schema](  # type: ignore[name-defined]
            output=output,
            usage=done.usage,
            model_version=self.model_version,
            metadata=ImageMetadata(width=image.width, height=image.height),
        )

    # --- the plan: one call's template variables, validated here and only here ---------

    def plan(self, **variables: Any) -> CallPlan[Mapping[str, Any], AnalysisRun[T]]:
        """The call plan for these template variables: the one place they are validated.

        Only `language` (default `en`) is checked, as a language code; a variable the
        template needs but nobody gave fails when the request is built.

        Raises:
            InvalidOptionError: `language` is not a language code such as `en`.
        """
        check_language(variables.get("language", "en"))
        given = MappingProxyType(dict(variables))
        return CallPlan(
            options=given,
            response_model=self._response_model,
            fingerprint=self.model_version,
            max_side=self.copy_side(self.max_side),
            builder=lambda part: self.build(part, given),
            finisher=self.finish,
            described=dict(given),
        )

    # --- the calls ----------------------------------------------------------------------

    def analyze_detailed(
        self, image: ImageInput | LoadedImage, *, budget: Budget | None = None, **variables: Any
    ) -> AnalysisRun[T]:
        """Fill the schema from `image`; with usage, `model_version` and image size.

        `budget` (a shared cap, e.g. a batch's) is not a template variable.
        """
        return self.run(self.plan(**variables), image, budget=budget)

    def analyze(self, image: ImageInput | LoadedImage, **variables: Any) -> T:
        """Fill the schema from `image` (boxes in pixels of the original image)."""
        return self.analyze_detailed(image, **variables).output

    async def aanalyze_detailed(
        self, image: ImageInput | LoadedImage, *, budget: Budget | None = None, **variables: Any
    ) -> AnalysisRun[T]:
        """Async twin of `analyze_detailed`."""
        return await self.arun(self.plan(**variables), image, budget=budget)

    async def aanalyze(self, image: ImageInput | LoadedImage, **variables: Any) -> T:
        """Async twin of `analyze`."""
        return (await self.aanalyze_detailed(image, **variables)).output

    # --- many images ----------------------------------------------------------------------

    def analyze_many(
        self,
        images: Iterable[BatchInputLike],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        rate_limiter: Gate | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        budget: Budget | None = None,
        progress: ProgressArg = None,
        **variables: Any,
    ) -> BatchRun[AnalysisRun[T]]:
        """Fill the schema from a stream of images, yielding `BatchItem`s as they complete.

        Each item's `result` is an `AnalysisRun` (output, usage, version, image size).
        `concurrency`, `rate_limiter`, `rpm`, `tpm`, `budget` and `progress` are the
        batch's options (see `ImageAnalyzer.analyze_many`), not template variables; every
        other keyword is a template variable, the same for every image.
        """
        return run_many(
            self,
            images,
            self._batch_call(self.plan(**variables)),
            concurrency=concurrency,
            rate_limiter=rate_limiter,
            rpm=rpm,
            tpm=tpm,
            budget=budget,
            progress=progress,
        )

    def aanalyze_many(
        self,
        images: Iterable[BatchInputLike] | AsyncIterable[BatchInputLike],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        rate_limiter: Gate | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        budget: Budget | None = None,
        progress: ProgressArg = None,
        **variables: Any,
    ) -> AsyncBatchRun[AnalysisRun[T]]:
        """Async twin of `analyze_many`; `images` may also be an async iterable."""
        return arun_many(
            self,
            images,
            self._batch_call(self.plan(**variables)),
            concurrency=concurrency,
            rate_limiter=rate_limiter,
            rpm=rpm,
            tpm=tpm,
            budget=budget,
            progress=progress,
        )
