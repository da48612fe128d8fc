"""`ImageAnalyzer`: any subset of the features, 4.0's and 3.2's, in ONE request per image.

Pixel features (`color`, `image_type`, and `faces` where OpenCV is installed) are
computed on this machine and never asked of the model; a call asking only those sends no
request (`viewfinder.analyzers.split`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Unpack, get_args

from pydantic import BaseModel, create_model

from viewfinder.analyzers.base import (
    AnalyzerOptions,
    BaseAnalyzer,
    ImagePart,
    check_language,
    endpoint_configured,
    schema_text,
)
from viewfinder.analyzers.compact import (
    ANSWER_FORMATS,
    DEFAULT_ANSWER_FORMAT,
    AnswerFormat,
    compact_answer_model,
    to_verbose,
)
from viewfinder.analyzers.examples import example_answers, examples_digest, prompt_example
from viewfinder.analyzers.features import (
    ALL_FEATURES,
    CV32_FEATURES,
    EVERY_FEATURE,
    FEATURES,
    PIXEL_FEATURES,
    Feature,
    FeatureName,
    FinishContext,
    VocabularyArg,
    answer_type,
    copy_side_for,
    load_vocabulary,
    parse_features,
    vocabulary_prompt,
)
from viewfinder.analyzers.flow import AnswerPath, FallbackPath, LocalPath, ModelPath
from viewfinder.analyzers.proposals import (
    INSTRUCTIONS,
    Detector,
    Kept,
    Proposal,
    ProposalsArg,
    kept,
    listing,
    resolve_proposals,
    run_detector,
    with_verdicts,
)
from viewfinder.analyzers.read_regions import (
    READ_GEOMETRIES,
    REGIONS_INSTRUCTIONS,
    REGIONS_SYSTEM,
    ReadGeometry,
    Region,
    RegionReadPath,
    RegionsAnswer,
    list_regions,
)
from viewfinder.analyzers.split import SplitPath
from viewfinder.batch.online import (
    DEFAULT_CONCURRENCY,
    AsyncBatchRun,
    BatchRun,
    arun_many,
    run_many,
)
from viewfinder.batch.records import BatchInputLike
from viewfinder.build.grid import Frame, retarget
from viewfinder.build.plan import CallPlan, ImageSize, SourceRef
from viewfinder.build.templates import PromptTemplate, builtin_template, load_template
from viewfinder.cost.tokens import prefix_tokens
from viewfinder.engine.budget import Budget
from viewfinder.engine.engine import Completed, Gate, Request
from viewfinder.engine.progress import ProgressArg
from viewfinder.errors import (
    ConfigurationError,
    InvalidOptionError,
    ProviderError,
    RateLimitError,
    ServerError,
    TransportError,
)
from viewfinder.finish.crops import validate_aspect_ratios
from viewfinder.prepare import PreparedImage
from viewfinder.prepare.decode import decode_rgb
from viewfinder.prepare.load import ImageInput, LoadedImage
from viewfinder.schemas.cv32 import Category, Landmark
from viewfinder.schemas.features import Caption, DenseCaption, DetectedObject, DetectedPerson
from viewfinder.schemas.geometry import BoundingBox, Polygon
from viewfinder.schemas.result import ImageAnalysisResult, ImageMetadata

if TYPE_CHECKING:
    from viewfinder.local.engine import LocalEngine

__all__ = [
    "AnswerFormat",
    "EngineChoice",
    "FallbackChoice",
    "FeatureOptions",
    "ImageAnalyzer",
    "answer_model",
]

logger = logging.getLogger("viewfinder")

FeatureArg = Iterable[Feature | FeatureName] | Feature | FeatureName
"""Features as a call takes them: one or several `Feature` members or names."""

EngineChoice = Literal["model", "local", "auto"]
"""Who computes the features: the model endpoint, this machine, or either by configuration."""
FallbackChoice = Literal["local"]
"""Where to turn when the model endpoint fails at run time."""

_FALLBACK_ERRORS = (TransportError, ServerError, RateLimitError)
"""Run-time failures `fallback="local"` answers: the endpoint, not the request, failed."""
_NOT_CONFIGURED = (
    "needs a model endpoint: set OPENAI_API_KEY, OPENAI_BASE_URL or AZURE_OPENAI_ENDPOINT"
)
_LOCAL_CHOSEN = "needs a model endpoint (engine='local' was chosen)"
_MODEL_FAILED = "needs the model endpoint"

_OPTION_TEMPLATES = ("tag_hints", "object_parents")
"""Prompt sections of 3.2's options, overridable by these names in `templates`."""

_INSTRUCTIONS = (
    "Analyse the image and fill every field of the JSON object, following these "
    "instructions for each field:"
)
_EXAMPLE = "The format, shown with the answer for another image (not this one):"
_EXAMPLES = "The format, shown with the answers for other images (not this one), one per line:"
_CACHE_THRESHOLD = 1024
_CACHEABLE = _CACHE_THRESHOLD + 64
"""Prefix tokens a padded prompt reaches: OpenAI's 1,024-token threshold, with a margin for
the difference between `o200k_base` counts here and the provider's own."""
_PROPOSED_KEPT = 1024
"""Images whose proposals an analyzer remembers between loading and building (far above
any concurrency); past it, the oldest are forgotten."""
_PADDING_PAYS = 512
"""Below this many prefix tokens no padding: showing more costs more than caching saves
(at the break-even of gpt-4o's 50 % cached price)."""


def answer_model(
    features: tuple[Feature, ...],
    *,
    answer_format: AnswerFormat = DEFAULT_ANSWER_FORMAT,
    tag_vocabulary: tuple[str, ...] = (),
    object_names: tuple[str, ...] = (),
    tag_hints: bool = False,
    object_parents: bool = False,
) -> type[BaseModel]:
    """The combined model-facing schema for a set of features (one request per image).

    Args:
        features: The features answered, in `EVERY_FEATURE` order; pixel features
            (`PIXEL_FEATURES`) have no field.
        answer_format: `compact` (see `viewfinder.analyzers.compact`) or `verbose`.
        tag_vocabulary: Allowed tag names (see `load_vocabulary`); `()`: any name.
        object_names: Allowed object names; `()`: any name.
        tag_hints: Each tag carries 3.2's `hint`.
        object_parents: Each object carries 3.2's `parents`.

    Returns:
        The response model, cached per arguments. With both vocabularies empty it is
        exactly the unconstrained model (same class, same JSON schema).
    """
    asked = tuple(f for f in features if f in FEATURES)
    if answer_format == "compact":
        return compact_answer_model(
            asked,
            tag_vocabulary=tag_vocabulary,
            object_names=object_names,
            tag_hints=tag_hints,
            object_parents=object_parents,
        )
    return _answer_model(asked, tag_vocabulary, object_names, tag_hints, object_parents)


@cache
def _answer_model(
    features: tuple[Feature, ...],
    tag_vocabulary: tuple[str, ...],
    object_names: tuple[str, ...],
    tag_hints: bool,
    object_parents: bool,
) -> type[BaseModel]:
    fields: dict[str, Any] = {
        f.value: (
            answer_type(
                f,
                tag_vocabulary=tag_vocabulary,
                object_names=object_names,
                tag_hints=tag_hints,
                object_parents=object_parents,
            ),
            ...,
        )
        for f in features
    }
    model: type[BaseModel] = create_model("ImageAnalysis", **fields)
    return model


_EMPTY = create_model("ImageAnalysis")
"""An answer model without fields: what the proposals' verdicts add is hashed from it."""

MAX_CANDIDATES = 10
"""Most description captions one call may ask for (3.2 states no maximum)."""


@dataclass(frozen=True)
class FeatureOptions:
    """An `ImageAnalyzer` call's options, validated: make them with `FeatureOptions.of`."""

    features: tuple[Feature, ...]
    """The features answered, de-duplicated, in `EVERY_FEATURE` order."""
    smart_crops_aspect_ratios: tuple[float, ...] = ()
    """Width/height ratios, one crop each; `()`: the one crop Azure chooses."""
    gender_neutral_caption: bool = False
    """"person" / "child" instead of gendered words."""
    language: str = "en"
    """Language of generated text."""
    max_candidates: int = 1
    """Captions of the 3.2 `description`, at most (3.2's `maxCandidates`)."""
    tag_hints: bool = False
    """Tags carry 3.2's `hint`."""
    object_parents: bool = False
    """Objects carry 3.2's `parent` chain."""
    on_this_machine: tuple[Feature, ...] = ()
    """The features computed from the pixels here, not asked of the model (set by
    `ImageAnalyzer.plan`: `PIXEL_FEATURES`, and `faces` where OpenCV is installed)."""

    @property
    def model_features(self) -> tuple[Feature, ...]:
        """The features the model answers: all but `on_this_machine`."""
        return tuple(f for f in self.features if f not in self.on_this_machine)

    @property
    def cv32(self) -> bool:
        """True when the call asks anything 3.2 adds (a feature, hints or parents)."""
        return (
            self.tag_hints or self.object_parents or any(f in CV32_FEATURES for f in self.features)
        )

    @classmethod
    def of(
        cls,
        features: FeatureArg | Iterable[str] = ALL_FEATURES,
        *,
        smart_crops_aspect_ratios: Sequence[float] | None = None,
        gender_neutral_caption: bool = False,
        language: str = "en",
        max_candidates: int = 1,
        tag_hints: bool = False,
        object_parents: bool = False,
    ) -> FeatureOptions:
        """Validate a call's options: the one place they are checked.

        `ImageAnalyzer.plan` makes every call's options here; the command line calls it
        too, to refuse a typo before anything runs (exit 2). `features` may be any
        strings here (a command line's, a request's), where the typed entry points take
        `FeatureName`s.

        Raises:
            InvalidOptionError: An unknown feature or none, a ratio out of range, a
                language that is not a language code, or `max_candidates` outside
                1-`MAX_CANDIDATES`.
        """
        if (
            isinstance(max_candidates, bool)
            or not isinstance(max_candidates, int)
            or not 1 <= max_candidates <= MAX_CANDIDATES
        ):
            raise InvalidOptionError(
                f"max_candidates must be an integer from 1 to {MAX_CANDIDATES}, "
                f"not {max_candidates!r}"
            )
        return cls(
            features=parse_features(features),
            smart_crops_aspect_ratios=validate_aspect_ratios(smart_crops_aspect_ratios),
            gender_neutral_caption=bool(gender_neutral_caption),
            language=check_language(language),
            max_candidates=max_candidates,
            tag_hints=bool(tag_hints),
            object_parents=bool(object_parents),
        )


class ImageAnalyzer(BaseAnalyzer):
    """Image Analysis 4.0 features from a GPT vision model.

    Whatever subset of features is asked, one request goes out per image: the
    features' schemas are combined into one response model and one prompt.

    Without a model, the local engine (`viewfinder.local`, the `local` extra) serves
    metadata, people, smart crops and read on this machine; the other features are
    *unserved*: `None` in the result and named, with the reason, in
    `ImageAnalysisResult.unserved`.

    Args:
        templates: Replacements for feature templates, keyed by feature name
            (`"caption"`, `"read"`, ...): template text, a `Path`, or a `PromptTemplate`.
        engine: Who computes the features, decided once, here. `"model"` (the
            default): the model endpoint; with none configured, `ConfigurationError`,
            so a production pipeline missing its secret fails loudly. `"local"`: this
            machine only; never needs nor resolves an endpoint. `"auto"`: the model
            when any endpoint setting is given (in `options` or the environment, see
            `viewfinder.analyzers.base.ENDPOINT_ENV_VARS`), else the local engine. It
            looks at the configuration only, never at a failure at run time.
        fallback: `"local"` answers from the local engine when the model endpoint
            fails at run time with a transport, server (5xx, 408, 409) or rate-limit
            error, after its retries; the result's `unserved` reasons say it fell back
            and its `model_version` is the local engine's. Authentication, bad-request,
            model-behaviour and budget errors still raise. Default None: every failure
            raises. Not used by `analyze_many`.
        tag_vocabulary: Allowed tag names: a list of names, or a path (`str` or
            `Path`) to a text file with one name per line. The model-facing schema's
            tag `name` becomes an enum of them, so any other name fails validation and
            is re-asked; names are returned as spelled in the list. Default None: any
            name. Changes `model_version`.
        object_names: Allowed object names, as for `tag_vocabulary`.
        answer_format: How the model writes its answer: `"compact"` (the default: one
            object per item, short keys, integer confidences, about 30 % fewer output
            tokens; see `viewfinder.analyzers.compact`) or `"verbose"` (the first
            format). Both give the same result types. Changes `model_version`.
        read_geometry: Where `read`'s polygons come from. `"model"` (the default): the
            model's boxes. `"detector"`: the local text detector's line polygons, the
            model naming each numbered region's text and the reading order in a request
            of its own (`viewfinder.analyzers.read_regions`; the `local` extra). Changes
            `model_version` when `"detector"`.
        proposals: Bring your own detector (`viewfinder.analyzers.proposals`): a callable
            taking the original image (a PIL image, EXIF orientation applied, RGB) and
            returning boxes in its pixels (a list of `(x, y, w, h)`, `BoundingBox` or
            dicts with optional `label` and `score`, or supervision's `Detections`), or
            `"local-people"` (the `local` extra's people detector). When `objects` or
            `people` is asked, the model gets the proposals numbered (at most 50, the
            best scored) in its box convention and answers keep/drop and a name for each,
            plus what the detector missed; kept ones keep the detector's box exactly and
            its score (else the model's confidence). Changes `model_version`; the
            proposals are part of the request, so of the cache key. Not for the Batch
            API. Default None: no detector, requests unchanged.
        **options: Shared settings, typed and documented in `AnalyzerOptions`.

    Raises:
        ConfigurationError: The model is to be used and its endpoint is not (fully)
            configured, or `read_geometry="detector"` without the `local` extra.
        InvalidOptionError: An unknown `engine`, `fallback` or `read_geometry`, an
            unreadable or empty vocabulary, or a bad shared setting.
    """

    def __init__(
        self,
        *,
        templates: Mapping[str, str | Path | PromptTemplate] | None = None,
        engine: EngineChoice = "model",
        fallback: FallbackChoice | None = None,
        tag_vocabulary: VocabularyArg | None = None,
        object_names: VocabularyArg | None = None,
        answer_format: AnswerFormat = DEFAULT_ANSWER_FORMAT,
        read_geometry: ReadGeometry = "model",
        proposals: ProposalsArg | None = None,
        **options: Unpack[AnalyzerOptions],
    ) -> None:
        if read_geometry not in READ_GEOMETRIES:
            raise InvalidOptionError(
                f"read_geometry must be one of {READ_GEOMETRIES}, not {read_geometry!r}"
            )
        self.read_geometry: ReadGeometry = read_geometry
        """Where `read`'s polygons come from; part of `model_version` when `"detector"`."""
        self.proposals: Detector | None = resolve_proposals(proposals)
        """The detector whose boxes the model verifies (`proposals=`), or None."""
        self._proposed: OrderedDict[str, tuple[int, int, tuple[Proposal, ...]]] = OrderedDict()
        self._proposed_lock = threading.Lock()
        if answer_format not in ANSWER_FORMATS:
            raise InvalidOptionError(
                f"answer_format must be one of {ANSWER_FORMATS}, not {answer_format!r}"
            )
        self.answer_format: AnswerFormat = answer_format
        """How the model writes its answer (`compact` or `verbose`); part of `model_version`."""
        self._levels: dict[tuple[tuple[Feature, ...], FeatureOptions], int] = {}
        self._faces_here: bool | None = None
        if answer_format == "compact" and options.get("system_prompt") is None:
            options["system_prompt"] = builtin_template("compact/system")
        if engine not in get_args(EngineChoice):
            raise InvalidOptionError(
                f"engine must be one of {get_args(EngineChoice)}, not {engine!r}"
            )
        if fallback is not None and fallback not in get_args(FallbackChoice):
            raise InvalidOptionError(f"fallback must be None or 'local', not {fallback!r}")
        self.tag_vocabulary: tuple[str, ...] = load_vocabulary(
            tag_vocabulary, what="tag vocabulary"
        )
        """Allowed tag names; `()`: any name."""
        self.object_names: tuple[str, ...] = load_vocabulary(object_names, what="object names")
        """Allowed object names; `()`: any name."""
        use_model = engine == "model" or (engine == "auto" and endpoint_configured(options))
        super().__init__(with_endpoint=use_model, **options)
        self.engine_name: Literal["model", "local"] = "model" if use_model else "local"
        """The engine that serves this analyzer's calls (`"auto"` resolved)."""
        self.fallback: FallbackChoice | None = fallback
        self._local_engine: LocalEngine | None = None
        self._local_reason = _LOCAL_CHOSEN if engine == "local" else _NOT_CONFIGURED
        overrides = dict(templates or {})
        folder = "compact/" if answer_format == "compact" else ""
        self.templates: dict[Feature, PromptTemplate] = {}
        for feature in FEATURES:
            given = overrides.pop(feature.value, None)
            self.templates[feature] = (
                builtin_template(folder + feature.value)
                if given is None
                else load_template(given, name=f"{feature.value} template")
            )
        self.option_templates: dict[str, PromptTemplate] = {
            name: builtin_template(folder + name)
            if (given := overrides.pop(name, None)) is None
            else load_template(given, name=f"{name} template")
            for name in _OPTION_TEMPLATES
        }
        """The sections 3.2's `tag_hints` and `object_parents` add to the prompt."""
        if overrides:
            raise InvalidOptionError(f"no feature named {sorted(overrides)} to override")
        self.model_version = (
            self._version_of(ALL_FEATURES, cv32=False) if use_model else self.local_engine.version
        )
        self._cv32_version = self._version_of(EVERY_FEATURE, cv32=True) if use_model else ""
        self._verifying_versions: dict[bool, str] = {}
        """Versions of calls whose proposals the model verifies, by `cv32`: the versions
        above with the proposals' instructions and verdict schema hashed in."""
        if use_model and self.proposals is not None:
            self._verifying_versions = {
                cv32: self._version_of(features, cv32=cv32, verifying=True)
                for cv32, features in ((False, ALL_FEATURES), (True, EVERY_FEATURE))
            }
        if use_model and read_geometry == "detector":  # every version, proposals' too
            detector = _detector_version()
            self.model_version = self._with_detector(self.model_version, detector)
            self._cv32_version = self._with_detector(self._cv32_version, detector)
            self._verifying_versions = {
                cv32: self._with_detector(version, detector)
                for cv32, version in self._verifying_versions.items()
            }

    def _with_detector(self, version: str, detector: str) -> str:
        """`version` with the regions request and the detector folded in (detector mode)."""
        return self.model_version_for(
            [
                version,
                "read_geometry=detector",
                REGIONS_INSTRUCTIONS,
                REGIONS_SYSTEM,
                schema_text(RegionsAnswer),
                detector,
            ]
        )

    def _version_of(
        self, features: tuple[Feature, ...], *, cv32: bool, verifying: bool = False
    ) -> str:
        """`<model>+<hash>` of the templates, schemas and examples of `features`.

        The 4.0 features' version (`model_version`) hashes exactly what it hashed before
        the 3.2 features existed, so their cache entries keep their meaning; a call that
        asks anything 3.2 adds is fingerprinted by the version of every feature.
        """
        asked = tuple(f for f in features if f in FEATURES)
        parts = [self.templates[f].source for f in asked] + [
            schema_text(
                answer_model(
                    (f,),
                    answer_format=self.answer_format,
                    tag_vocabulary=self.tag_vocabulary,
                    object_names=self.object_names,
                )
            )
            for f in asked
        ]
        if self.answer_format == "compact":
            parts += [self._example(asked), examples_digest()]
        if cv32:
            parts += [template.source for template in self.option_templates.values()]
            parts += [
                schema_text(
                    answer_model(
                        (Feature.TAGS, Feature.OBJECTS),
                        answer_format=self.answer_format,
                        tag_vocabulary=self.tag_vocabulary,
                        object_names=self.object_names,
                        tag_hints=True,
                        object_parents=True,
                    )
                ),
                examples_digest(cv32=True),
            ]
        if verifying:
            parts += [INSTRUCTIONS, schema_text(with_verdicts(_EMPTY, compact=self.compact))]
        return self.model_version_for(parts)

    @property
    def compact(self) -> bool:
        """True in the compact answer format."""
        return self.answer_format == "compact"

    # --- proposals: the user's detector, run once per image when it is loaded -----------

    def load(self, image: ImageInput | LoadedImage) -> LoadedImage:
        """Read `image`'s bytes; with `proposals`, also run the detector on the decoded
        original (once per image: remembered by its sha256 until `build` lists them)."""
        loaded = super().load(image)
        if self.proposals is not None and self.engine_name == "model":
            with self._proposed_lock:
                known = loaded.sha256 in self._proposed
            if not known:
                picture = decode_rgb(loaded.data, loaded.source)
                found = run_detector(self.proposals, picture)
                with self._proposed_lock:
                    self._proposed[loaded.sha256] = (picture.width, picture.height, found)
                    while len(self._proposed) > _PROPOSED_KEPT:
                        self._proposed.popitem(last=False)
        return loaded

    def prepare(
        self, image: ImageInput | LoadedImage, max_side: int | None = None
    ) -> PreparedImage:
        """`BaseAnalyzer.prepare`; with `proposals`, the image loaded here first, so that
        a request built from the copy (the cost estimate's) lists its proposals too."""
        if self.proposals is not None:
            image = self.load(image)
        return super().prepare(image, max_side)

    def _verifies(self, features: tuple[Feature, ...]) -> bool:
        """True when the model verifies proposals for `features` (objects or people)."""
        return self.proposals is not None and bool(
            {Feature.OBJECTS, Feature.PEOPLE} & set(features)
        )

    def _proposals_of(self, image: Any) -> tuple[int, int, tuple[Proposal, ...]]:
        """The size and proposals of an image this analyzer loaded (by its sha256)."""
        sha = getattr(image, "sha256", None)
        with self._proposed_lock:
            entry = None if sha is None else self._proposed.get(sha)
        if entry is None:
            raise InvalidOptionError(
                "proposals: this image was not loaded by the analyzer, so its detector did "
                "not run (proposals work with analyze, aanalyze and analyze_many, not the "
                "Batch API)"
            )
        return entry

    def version_for(self, options: FeatureOptions) -> str:
        """The `model_version` of a call with `options`: `model_version`, or the version
        of every feature when the call asks anything 3.2 adds; with the proposals'
        instructions hashed in when the model verifies proposals (`proposals=`)."""
        cv32 = options.cv32 and self.has_endpoint
        if self._verifying_versions and self._verifies(options.model_features):
            return self._verifying_versions[cv32]
        return self._cv32_version if cv32 else self.model_version

    @property
    def local_engine(self) -> LocalEngine:
        """The local engine, made on first use (`import viewfinder` does not load it)."""
        if self._local_engine is None:
            from viewfinder.local.engine import LocalEngine

            self._local_engine = LocalEngine()
        return self._local_engine

    def path(self) -> AnswerPath[ImageAnalysisResult]:
        """What answers this analyzer's calls, decided by `engine` and `fallback`.

        The local engine; the model endpoint; or, with `fallback="local"`, the model
        endpoint wrapped in a `FallbackPath` that turns to the local engine on the
        run-time failures `fallback` answers. Around the model's path, `SplitPath`
        computes the pixel features here (`around_model`).
        """
        if self.engine_name == "local":
            return LocalPath(self.load, self._answer_locally)
        model: AnswerPath[ImageAnalysisResult] = ModelPath(self, self.engine)
        if self.fallback is not None:
            model = FallbackPath(self.load, model, self._fallback_for)
        return self.around_model(model)

    def around_model(self, model: AnswerPath[Any]) -> AnswerPath[Any]:
        """`model` inside a `SplitPath`: pixel features here, the adult refusal answered;
        with `read_geometry="detector"`, inside a `RegionReadPath` too."""
        split = SplitPath(self.load, model, self._pixels_of, self._replan)
        if self.read_geometry != "detector" or not self.has_endpoint:
            return split
        engine = model.engine if isinstance(model, ModelPath) else self.engine
        return RegionReadPath(
            load=self.load,
            inner=split,
            engine=engine,
            detect=self._detect_regions,
            request=self._regions_request,
            replan=self._replan,
            read_side=self._copy_side_for((Feature.READ,)),
        )

    def _detect_regions(self, loaded: LoadedImage, side: int) -> tuple[list[Region], PreparedImage]:
        """The text lines' regions (pixels of the original: tight where the recogniser
        reads the line, the detector's region where not) and the copy to send."""
        from viewfinder.local.engine import decode_full
        from viewfinder.local.read import locate_text_lines

        regions: list[Region] = list(locate_text_lines(decode_full(loaded)))
        return regions, self.prepare(loaded, side)

    def _regions_request(
        self, prepared: PreparedImage, polygons: list[Polygon], options: FeatureOptions
    ) -> Request[BaseModel]:
        """The regions request: the numbered regions listed in the box convention."""
        listed = list_regions(
            polygons,
            self.box_convention,
            (prepared.width, prepared.height),
            (prepared.model_width, prepared.model_height),
        )
        return Request(
            messages=self.messages(
                REGIONS_SYSTEM, REGIONS_INSTRUCTIONS.format(regions=listed), prepared
            ),
            response_model=RegionsAnswer,
            model_version=self.version_for(options),
        )

    def _pixels_of(
        self, loaded: LoadedImage, features: tuple[Feature, ...]
    ) -> tuple[ImageMetadata, dict[str, Any]]:
        return self.local_engine.pixels_of(loaded, features)

    def _replan(
        self, options: FeatureOptions, features: tuple[Feature, ...]
    ) -> CallPlan[FeatureOptions, ImageAnalysisResult]:
        """The plan of a call with `options` for other `features` (SplitPath's retry)."""
        return self.plan(
            features,
            smart_crops_aspect_ratios=options.smart_crops_aspect_ratios or None,
            gender_neutral_caption=options.gender_neutral_caption,
            language=options.language,
            max_candidates=options.max_candidates,
            tag_hints=options.tag_hints,
            object_parents=options.object_parents,
        )

    def _answer_locally(self, loaded: LoadedImage, options: FeatureOptions) -> ImageAnalysisResult:
        """The local engine's answer, as chosen (`engine="local"`, or `"auto"` without one)."""
        return self.local_engine.analyze(
            loaded,
            options.features,
            smart_crops_aspect_ratios=options.smart_crops_aspect_ratios,
            model_reason=self._local_reason,
        )

    def _fallback_for(self, error: Exception) -> AnswerPath[ImageAnalysisResult] | None:
        """The local path answering after the model endpoint failed with `error`, if it may."""
        if not (self.fallback == "local" and isinstance(error, _FALLBACK_ERRORS)):
            return None
        failure: ProviderError = error

        def answer(loaded: LoadedImage, options: FeatureOptions) -> ImageAnalysisResult:
            return self._fall_back(loaded, options, failure)

        return LocalPath(self.load, answer)

    def _fall_back(
        self, loaded: LoadedImage, options: FeatureOptions, error: ProviderError
    ) -> ImageAnalysisResult:
        """The local engine's answer after the model endpoint failed with `error`."""
        what = type(error).__name__
        if error.status_code is not None:
            what += f", status {error.status_code}"
        what += f", {error.attempts} attempt{'s' if error.attempts != 1 else ''}"
        logger.warning("The model endpoint failed (%s): answering from the local engine", what)
        return self.local_engine.analyze(
            loaded,
            options.model_features,
            smart_crops_aspect_ratios=options.smart_crops_aspect_ratios,
            model_reason=_MODEL_FAILED,
            prefix=f"fell back to the local engine after the model endpoint failed ({what}): ",
            usage=error.usage,
        )

    # --- the plan: one call's options, validated here and only here ---------------------

    def plan(
        self,
        features: FeatureArg = ALL_FEATURES,
        *,
        smart_crops_aspect_ratios: Sequence[float] | None = None,
        gender_neutral_caption: bool = False,
        language: str = "en",
        max_candidates: int = 1,
        tag_hints: bool = False,
        object_parents: bool = False,
    ) -> CallPlan[FeatureOptions, ImageAnalysisResult]:
        """The call plan for these options: the one place they are validated.

        Every entry point (`analyze`, `aanalyze`, `analyze_many`, the Batch API, the
        estimator, the Azure look-alike, the server) makes its plan here, so a bad
        option raises the same error from each.

        Args:
            features: `Feature` members or names (`"dense_captions"` or `"denseCaptions"`).
            smart_crops_aspect_ratios: Width/height ratios in 0.75-1.8, one crop each.
            gender_neutral_caption: "person" / "child" instead of gendered words.
            language: Language of generated text (captions, tags, names).
            max_candidates: Captions of the 3.2 `description`, 1-10.
            tag_hints: Tags carry 3.2's `hint` (a broader word for a rare name).
            object_parents: Objects carry 3.2's `parent` chain (bulldog -> dog).

        Returns:
            A frozen plan: the options, `build`, `finish`, the response model and the
            fingerprint (`model_version`). Its request and answer cover
            `options.model_features`; the pixel features are computed on this machine
            (`viewfinder.analyzers.split`).

        Raises:
            InvalidOptionError: An unknown feature or none, a ratio out of range, a
                language that is not a language code, or `max_candidates` out of range.
        """
        options = FeatureOptions.of(
            features,
            smart_crops_aspect_ratios=smart_crops_aspect_ratios,
            gender_neutral_caption=gender_neutral_caption,
            language=language,
            max_candidates=max_candidates,
            tag_hints=tag_hints,
            object_parents=object_parents,
        )
        here = tuple(
            f
            for f in options.features
            if f in PIXEL_FEATURES or (f is Feature.FACES and self.faces_on_this_machine)
        )
        options = replace(options, on_this_machine=here)
        asked = options.model_features
        version = self.version_for(options)

        def build(image: ImagePart) -> Request[BaseModel]:
            return self.build(image, asked, options=options)

        def finish(done: Completed[BaseModel], size: ImageSize) -> ImageAnalysisResult:
            return self.finish(done, size, asked, options=options)

        described: list[Any] = [
            [f.value for f in options.features],
            list(options.smart_crops_aspect_ratios),
            options.gender_neutral_caption,
            options.language,
        ]
        if options.cv32:
            described += [options.max_candidates, options.tag_hints, options.object_parents]
        return CallPlan(
            options=options,
            response_model=self.response_model(asked, options),
            fingerprint=version,
            max_side=self._copy_side_for(asked),
            builder=build,
            finisher=finish,
            described=described,
        )

    def _copy_side_for(self, features: tuple[Feature, ...]) -> int:
        """The copy's long side: the analyzer's, else the features'; the convention's
        bound wins over both (`BaseAnalyzer.copy_side`)."""
        return self.copy_side(self.max_side if self.max_side_given else copy_side_for(features))

    @property
    def faces_on_this_machine(self) -> bool:
        """True when `faces` is computed here (OpenCV's cascades installed), not by the model."""
        if self._faces_here is None:
            from viewfinder.local.faces import faces_available  # no OpenCV import here

            self._faces_here = faces_available()
        return self._faces_here

    # --- pure: build and finish ------------------------------------------------------

    def build(
        self,
        image: ImagePart,
        features: tuple[Feature, ...],
        *,
        gender_neutral_caption: bool = False,
        language: str = "en",
        options: FeatureOptions | None = None,
    ) -> Request[BaseModel]:
        """The one request for `image` and `features`.

        Everything before the image (schema, system message, instructions) depends on the
        call's options only, so it is byte-identical for every image of a plan.
        `options` (a plan's) gives every option at once and overrides the two keywords.
        """
        if options is None:
            options = FeatureOptions(
                features=features,
                gender_neutral_caption=gender_neutral_caption,
                language=language,
            )
        level = self._example_level(features, options)
        request = self._request(image, features, options, level)
        if not self._verifies(features):
            return request
        width, height, found = self._proposals_of(image)
        frame = self.frame(ImageMetadata(width=width, height=height), self._copy_side_for(features))
        user = request.messages[-1]
        # After the image: the cacheable prefix (system, instructions) stays the same for
        # every image. `finish` gets only the answer, so the proposals ride on its class
        # (same name and schema: the cache key and the body are unchanged by it).
        content = [*user["content"], {"type": "text", "text": listing(found, frame)}]
        answer = type(
            request.response_model.__name__,
            (request.response_model,),
            {
                "__module__": request.response_model.__module__,
                "__annotations__": {"given_proposals": ClassVar[tuple[Proposal, ...]]},
                "given_proposals": found,
            },
        )
        return replace(
            request,
            messages=[*request.messages[:-1], {**user, "content": content}],
            response_model=answer,
        )

    def _request(
        self,
        image: ImagePart,
        features: tuple[Feature, ...],
        options: FeatureOptions,
        level: int,
    ) -> Request[BaseModel]:
        """The request, its compact format example at `level` (see `prompt_example`)."""
        variables = {
            "gender_neutral_caption": options.gender_neutral_caption,
            "language": options.language,
            "max_candidates": options.max_candidates,
        }
        sections = [self.templates[f].render(variables) for f in self._prompted(features)]
        if options.tag_hints and Feature.TAGS in features:
            sections.append(self.option_templates["tag_hints"].render(variables))
        if options.object_parents and Feature.OBJECTS in features:
            sections.append(self.option_templates["object_parents"].render(variables))
        allowed = vocabulary_prompt(
            features, tag_vocabulary=self.tag_vocabulary, object_names=self.object_names
        )
        if allowed is not None:
            sections.append(allowed)
        if self.answer_format == "compact":
            header = _EXAMPLE if level <= 1 else _EXAMPLES
            sections.append(f"{header}\n{self._example(features, level, options)}")
        user_text = "\n\n".join([_INSTRUCTIONS, *sections])
        return Request(
            messages=self.messages(self.render_system(options.language), user_text, image),
            response_model=self.response_model(features, options),
            model_version=self.version_for(options),
        )

    def _example_level(self, features: tuple[Feature, ...], options: FeatureOptions) -> int:
        """How much format example the prompt shows: 0, or more to make its prefix cacheable.

        OpenAI's prompt cache holds a prefix of 1,024 tokens or more. A prefix a little
        under that costs more at the list price than one over it at the cached price (a
        quarter of the list price on the gpt-4.1 family, half on gpt-4o), so a compact
        prompt whose prefix is between `_PADDING_PAYS` and `_CACHEABLE` tokens shows
        whole example answers until it passes `_CACHEABLE` (counted on the engine's own
        body, in `o200k_base`). Decided once per features and options; 0 without a model
        endpoint or in the verbose format.
        """
        key = (features, replace(options, features=features, on_this_machine=()))
        if key not in self._levels:
            self._levels[key] = self._choose_level(features, options)
        return self._levels[key]

    def _choose_level(self, features: tuple[Feature, ...], options: FeatureOptions) -> int:
        if self.answer_format != "compact" or not self.has_endpoint:
            return 0
        stub = SourceRef(sha256="0" * 64, max_side=0)
        tokens = 0
        for level in range(len(example_answers()) + 1):
            request = self._request(stub, features, options, level)
            tokens = prefix_tokens(self.engine.request_body(request), model=self.model)
            if level == 0 and not _PADDING_PAYS <= tokens < _CACHEABLE:
                return 0
            if tokens >= _CACHEABLE:
                return level
        # Every example shown: cacheable without the margin, else no padding at all.
        return level if tokens >= _CACHE_THRESHOLD else 0

    def response_model(
        self, features: tuple[Feature, ...], options: FeatureOptions | None = None
    ) -> type[BaseModel]:
        """The model-facing schema of `features` in this analyzer's format, vocabularies
        and box convention."""
        model = answer_model(
            features,
            answer_format=self.answer_format,
            tag_vocabulary=self.tag_vocabulary,
            object_names=self.object_names,
            tag_hints=options is not None and options.tag_hints,
            object_parents=options is not None and options.object_parents,
        )
        if self._verifies(features):
            model = with_verdicts(model, compact=self.compact)
        limit = self.pixel_limit(self._copy_side_for(features))
        return retarget(model, self.box_convention, limit)

    def _prompted(self, features: tuple[Feature, ...]) -> tuple[Feature, ...]:
        """Features whose instructions the prompt holds (those the model answers): the
        compact format's dense captions start from `caption`, so its instruction comes
        with them."""
        asked = tuple(f for f in features if f in FEATURES)
        if self.answer_format == "compact" and Feature.DENSE_CAPTIONS in asked:
            return tuple(f for f in EVERY_FEATURE if f in asked or f is Feature.CAPTION)
        return asked

    def _example(
        self, features: tuple[Feature, ...], level: int = 0, options: FeatureOptions | None = None
    ) -> str:
        """The compact format example for `features` (names from the vocabularies)."""
        return prompt_example(
            features,
            level=level,
            tag_vocabulary=self.tag_vocabulary,
            object_names=self.object_names,
            tag_hints=options is not None and options.tag_hints,
            object_parents=options is not None and options.object_parents,
            convention=self.box_convention,
            pixel_side=self._copy_side_for(features),
        )

    def finish(
        self,
        done: Completed[BaseModel],
        image: ImageSize,
        features: tuple[Feature, ...],
        *,
        smart_crops_aspect_ratios: tuple[float, ...] = (),
        gender_neutral_caption: bool = False,
        options: FeatureOptions | None = None,
    ) -> ImageAnalysisResult:
        """Grid answers to pixels of the original image, per feature.

        `options` (a plan's) gives every option at once and overrides the two keywords.
        """
        if options is None:
            options = FeatureOptions(
                features=features,
                smart_crops_aspect_ratios=smart_crops_aspect_ratios,
                gender_neutral_caption=gender_neutral_caption,
            )
        ctx = FinishContext(
            frame=self.frame(image, self._copy_side_for(features)),
            smart_crops_aspect_ratios=options.smart_crops_aspect_ratios,
            gender_neutral_caption=options.gender_neutral_caption,
            max_candidates=options.max_candidates,
        )
        answer = done.answer
        if self.answer_format == "compact":
            verbose = answer_model(
                features,
                answer_format="verbose",
                tag_vocabulary=self.tag_vocabulary,
                object_names=self.object_names,
                tag_hints=options.tag_hints,
                object_parents=options.object_parents,
            )
            limit = self.pixel_limit(self._copy_side_for(features))
            verbose = retarget(verbose, self.box_convention, limit)
            whole = self.box_convention.from_grid([0, 0, 1000, 1000])
            answer = verbose.model_validate(to_verbose(answer, features, whole_box=whole))
        parts = {f.value: FEATURES[f].finish(getattr(answer, f.value), ctx) for f in features}
        if self._verifies(features):
            given: tuple[Proposal, ...] = getattr(done.answer, "given_proposals", ())
            _add_kept(parts, kept(given, getattr(done.answer, "proposals", [])), features)
        _whole_image_is_the_caption(parts, ctx.frame)
        _landmarks_on_their_categories(parts)
        return ImageAnalysisResult(
            model_version=self.version_for(options),
            metadata=ImageMetadata(width=image.width, height=image.height),
            usage=done.usage,
            **parts,
        )

    # --- the calls ----------------------------------------------------------------------

    def analyze(
        self,
        image: ImageInput | LoadedImage,
        features: FeatureArg = ALL_FEATURES,
        *,
        smart_crops_aspect_ratios: Sequence[float] | None = None,
        gender_neutral_caption: bool = False,
        language: str = "en",
        max_candidates: int = 1,
        tag_hints: bool = False,
        object_parents: bool = False,
        budget: Budget | None = None,
    ) -> ImageAnalysisResult:
        """Analyse `image` for `features` (default: the seven 4.0 ones) in one request.

        Args:
            image: A path, bytes, a binary file object, a PIL image, or an http(s) URL.
            features: `Feature` members or names (`"dense_captions"` or `"denseCaptions"`).
            smart_crops_aspect_ratios: Width/height ratios in 0.75-1.8, one crop each.
            gender_neutral_caption: "person" / "child" instead of gendered words.
            language: Language of generated text (captions, tags, names).
            max_candidates: Captions of the 3.2 `description`, 1-10.
            tag_hints: Tags carry 3.2's `hint`.
            object_parents: Objects carry 3.2's `parent` chain.
            budget: A shared cap (e.g. a batch's) charged besides the per-call one.

        Returns:
            The result. From the local engine, `unserved` names the requested features
            it could not serve, with the reasons.
        """
        plan = self.plan(
            features,
            smart_crops_aspect_ratios=smart_crops_aspect_ratios,
            gender_neutral_caption=gender_neutral_caption,
            language=language,
            max_candidates=max_candidates,
            tag_hints=tag_hints,
            object_parents=object_parents,
        )
        return self.run(plan, image, budget=budget)

    async def aanalyze(
        self,
        image: ImageInput | LoadedImage,
        features: FeatureArg = ALL_FEATURES,
        *,
        smart_crops_aspect_ratios: Sequence[float] | None = None,
        gender_neutral_caption: bool = False,
        language: str = "en",
        max_candidates: int = 1,
        tag_hints: bool = False,
        object_parents: bool = False,
        budget: Budget | None = None,
    ) -> ImageAnalysisResult:
        """Async twin of `analyze` (the local engine runs in a worker thread).

        Inside a `viewfinder.prepare.pixel_budget.budget_scope` (the server's), each decode
        holds its pixels of the budget while it runs.
        """
        plan = self.plan(
            features,
            smart_crops_aspect_ratios=smart_crops_aspect_ratios,
            gender_neutral_caption=gender_neutral_caption,
            language=language,
            max_candidates=max_candidates,
            tag_hints=tag_hints,
            object_parents=object_parents,
        )
        return await self.arun(plan, image, budget=budget)

    # --- many images ----------------------------------------------------------------------

    def _many_plan(
        self,
        features: FeatureArg,
        smart_crops_aspect_ratios: Sequence[float] | None,
        gender_neutral_caption: bool,
        language: str,
        max_candidates: int,
        tag_hints: bool,
        object_parents: bool,
    ) -> CallPlan[FeatureOptions, ImageAnalysisResult]:
        """The plan of a batch, made once for all its images; the batch needs the model."""
        if not self.has_endpoint:
            raise ConfigurationError(
                "analyze_many needs a model endpoint; this analyzer runs the local engine: "
                "call analyze() for each image instead"
            )
        return self.plan(
            features,
            smart_crops_aspect_ratios=smart_crops_aspect_ratios,
            gender_neutral_caption=gender_neutral_caption,
            language=language,
            max_candidates=max_candidates,
            tag_hints=tag_hints,
            object_parents=object_parents,
        )

    def analyze_many(
        self,
        images: Iterable[BatchInputLike],
        features: FeatureArg = ALL_FEATURES,
        *,
        smart_crops_aspect_ratios: Sequence[float] | None = None,
        gender_neutral_caption: bool = False,
        language: str = "en",
        max_candidates: int = 1,
        tag_hints: bool = False,
        object_parents: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        rate_limiter: Gate | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        budget: Budget | None = None,
        progress: ProgressArg = None,
    ) -> BatchRun[ImageAnalysisResult]:
        """Analyse a stream of images, `concurrency` at a time, yielding as each completes.

        `images` is read lazily: paths, URLs, bytes, PIL images, or `(id, image)` pairs.
        Each input gives one `viewfinder.batch.records.BatchItem` (result or typed error, usage,
        cost); a failing image never stops the batch. The work runs on a background
        event loop (`viewfinder.batch.online`); break out or `close()` to cancel it.

        Args:
            images: Any iterable of images or `(id, image)` pairs; never materialised.
            features: As for `analyze`, for every image.
            smart_crops_aspect_ratios: As for `analyze`.
            gender_neutral_caption: As for `analyze`.
            language: As for `analyze`.
            max_candidates: As for `analyze`.
            tag_hints: As for `analyze`.
            object_parents: As for `analyze`.
            concurrency: Images worked on at the same time.
            rate_limiter: Paces the batch's requests (default: `RateLimiter(rpm, tpm)`
                when either is given, else this analyzer's `rate_limiter`, else an
                adaptive `RateLimiter()`).
            rpm: Requests per minute for the default limiter.
            tpm: Tokens per minute for the default limiter.
            budget: A cap for the whole batch (e.g. `Budget(max_dollars=5, model=...,
                scope="per batch")`): once reached, no further image starts.
            progress: A tqdm-like object (`update(n)`; its `total` set from `len(images)`
                when None; `set_postfix_str` fed failures and dollars; not closed), or
                True for a default bar on stderr (`viewfinder.engine.progress`).

        Returns:
            An iterator of `BatchItem`s with a live `summary`.
        """
        plan = self._many_plan(
            features,
            smart_crops_aspect_ratios,
            gender_neutral_caption,
            language,
            max_candidates,
            tag_hints,
            object_parents,
        )
        call = self._batch_call(plan)
        return run_many(
            self,
            images,
            call,
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
        features: FeatureArg = ALL_FEATURES,
        *,
        smart_crops_aspect_ratios: Sequence[float] | None = None,
        gender_neutral_caption: bool = False,
        language: str = "en",
        max_candidates: int = 1,
        tag_hints: bool = False,
        object_parents: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        rate_limiter: Gate | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        budget: Budget | None = None,
        progress: ProgressArg = None,
    ) -> AsyncBatchRun[ImageAnalysisResult]:
        """Async twin of `analyze_many`: `async for item in analyzer.aanalyze_many(...)`.

        `images` may also be an async iterable; a sync one is pulled on the event loop.
        `progress` is fed as `analyze_many`'s, in the event loop.
        """
        plan = self._many_plan(
            features,
            smart_crops_aspect_ratios,
            gender_neutral_caption,
            language,
            max_candidates,
            tag_hints,
            object_parents,
        )
        call = self._batch_call(plan)
        return arun_many(
            self,
            images,
            call,
            concurrency=concurrency,
            rate_limiter=rate_limiter,
            rpm=rpm,
            tpm=tpm,
            budget=budget,
            progress=progress,
        )


def _detector_version() -> str:
    """The local text detector's version, or a `ConfigurationError` naming the extra."""
    from importlib.util import find_spec

    if find_spec("rapidocr") is None or find_spec("onnxruntime") is None:
        raise ConfigurationError(
            "read_geometry='detector' needs the local text detector (rapidocr and "
            "onnxruntime): pip install 'viewfinder[local]'"
        )
    from viewfinder.local.read import VERSION

    return VERSION


def _add_kept(parts: dict[str, Any], verified: list[Kept], features: tuple[Feature, ...]) -> None:
    """Kept proposals, with the detector's boxes, before the model's own additions: every
    one an object (when asked); a person when named `person`, or every one when `people`
    is asked without `objects` (the model is told to keep only people then)."""
    if Feature.OBJECTS in features:
        parts["objects"] = [
            DetectedObject(name=k.name, confidence=k.confidence, box=k.proposal.box)
            for k in verified
        ] + list(parts["objects"])
    if Feature.PEOPLE in features:
        alone = Feature.OBJECTS not in features
        parts["people"] = [
            DetectedPerson(box=k.proposal.box, confidence=k.confidence)
            for k in verified
            if alone or k.name.lower() == "person"
        ] + list(parts["people"])


def _whole_image_is_the_caption(parts: dict[str, Any], frame: Frame) -> None:
    """With both asked, the first dense caption is the caption, as the service says it.

    The service's first dense caption is its whole-image caption (Microsoft's tests assert
    equal texts). The compact format makes it from `caption`; a verbose answer writes both,
    and may word them differently: `caption` wins, the dense caption keeps its confidence.
    """
    caption: Caption | None = parts.get(Feature.CAPTION.value)
    dense: list[DenseCaption] | None = parts.get(Feature.DENSE_CAPTIONS.value)
    if caption is None or dense is None:
        return
    whole = BoundingBox(x=0, y=0, width=frame.width, height=frame.height)
    if dense:
        dense[0] = dense[0].model_copy(update={"text": caption.text, "box": whole})
    else:
        dense.append(DenseCaption(text=caption.text, confidence=caption.confidence, box=whole))


_LANDMARK_PARENTS = ("building_", "outdoor_")
"""Categories the 3.2 landmarks domain model attaches to (reference section 5.1)."""


def _landmarks_on_their_categories(parts: dict[str, Any]) -> None:
    """With both asked, landmarks go on the `building_` and `outdoor_` categories too.

    The service runs its landmarks model on images whose categories match it and reports
    them in `categories[].detail.landmarks`; here the landmarks are asked at once, and
    put on every category of those families (`[]` when the model saw none).
    """
    categories: list[Category] | None = parts.get(Feature.CATEGORIES.value)
    landmarks: list[Landmark] | None = parts.get(Feature.LANDMARKS.value)
    if categories is None or landmarks is None:
        return
    parts[Feature.CATEGORIES.value] = [
        category.model_copy(update={"landmarks": tuple(landmarks)})
        if category.name.startswith(_LANDMARK_PARENTS)
        else category
        for category in categories
    ]
