"""What a request would cost, before it is sent: tokens and dollars, offline.

Everything here is an *estimate*, computed without calling any model:

- **Text tokens** are counted with the `o200k_base` encoding shipped in the package
  (`viewfinder.cost.tokens`), on the analyzer's own request (`ImageAnalyzer.build` on a real
  `prepare()`d image), so the exact system prompt, feature prompts and schema count.
- **Image tokens** follow OpenAI's published rules per model family (512-px tiles or
  32-px patches), applied to the size of the copy sent to the model, at the analyzer's
  `detail`. The rules are a data table, `viewfinder/data/image_tokens.json`, where each
  number names its source. A model the table does not know has no estimate (`None`).
- **Output tokens** are estimated from example answers (`expected_output_tokens`): the
  bundled examples written in the call's answer format and counted; examples, not
  measurements of a model. Reasoning models also bill reasoning tokens, not included.
- **Dollars** come from `viewfinder.cost.pricing` (list price, and the Batch API price),
  twice: with no prompt-cache hit, and the best case, where the part of the prefix before
  the image that OpenAI's prompt cache can hold (`prompt_cache_tokens`) bills at the
  cached-input price.

No endpoint needs to be configured (`offline_analyzer`), and no request is ever sent.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from importlib import resources
from typing import Any, Final, TypeAlias

from pydantic import BaseModel, ConfigDict

from viewfinder.analyzers.base import Detail
from viewfinder.analyzers.compact import DEFAULT_ANSWER_FORMAT, AnswerFormat
from viewfinder.analyzers.examples import answer_text, example_answers
from viewfinder.analyzers.features import ALL_FEATURES, Feature
from viewfinder.analyzers.image_analysis import FeatureArg, FeatureOptions, ImageAnalyzer
from viewfinder.cost.pricing import cost_of
from viewfinder.cost.tokens import count_message_tokens, count_tokens, prefix_tokens
from viewfinder.engine.engine import Request
from viewfinder.engine.providers import is_reasoning_model
from viewfinder.errors import ConfigurationError, InvalidOptionError
from viewfinder.prepare import PreparedImage
from viewfinder.prepare.load import ImageInput
from viewfinder.schemas.result import Usage

__all__ = [
    "OFFLINE_BASE_URL",
    "Estimate",
    "EstimateSummary",
    "ImageTokenRule",
    "PatchRule",
    "TileRule",
    "estimate_image_tokens",
    "estimate_many",
    "estimate_request",
    "expected_output_tokens",
    "image_token_rule",
    "offline_analyzer",
    "patch_count",
    "prompt_cache_tokens",
    "tile_count",
]

OFFLINE_BASE_URL: Final = "http://127.0.0.1:9/v1"
"""Base URL of the analyzer `offline_analyzer` builds when nothing is configured: the
discard port on loopback. Estimation never sends anything to it."""

_DATA_FILE: Final = "image_tokens.json"
_CACHE_MIN_TOKENS: Final = 1024
_CACHE_STEP_TOKENS: Final = 128
_DETAILS: Final = ("low", "high", "auto")
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


# --- the geometry of the two schemes ----------------------------------------------------


def _whole(value: Fraction) -> int:
    """A side in whole pixels: nearest, half to even (as OpenAI bills 2050x513)."""
    return max(1, round(value))


def _check_size(width: int, height: int) -> None:
    for name, side in (("width", width), ("height", height)):
        if isinstance(side, bool) or not isinstance(side, int) or side < 1:
            raise InvalidOptionError(f"{name} must be a positive int, not {side!r}")


def tile_count(
    width: int,
    height: int,
    *,
    tile_px: int = 512,
    fit_px: int = 2048,
    short_side_px: int = 768,
) -> int:
    """512-px tiles of an image at `high` detail, by OpenAI's tile rule.

    The image is scaled to fit within `fit_px` x `fit_px`, then so that its shortest
    side is `short_side_px` (never up), sides rounded to whole pixels.

    Args:
        width: Width in pixels of the image sent.
        height: Height in pixels of the image sent.
        tile_px: Side of a tile.
        fit_px: Side of the square the image must fit in.
        short_side_px: Target of the shortest side.

    Returns:
        The number of tiles that cover the scaled image.

    Raises:
        InvalidOptionError: A side is not a positive integer.
    """
    _check_size(width, height)
    w, h = Fraction(width), Fraction(height)
    if max(w, h) > fit_px:
        scale = Fraction(fit_px) / max(w, h)
        w, h = Fraction(_whole(w * scale)), Fraction(_whole(h * scale))
    if min(w, h) > short_side_px:
        scale = Fraction(short_side_px) / min(w, h)
        w, h = Fraction(_whole(w * scale)), Fraction(_whole(h * scale))
    return math.ceil(w / tile_px) * math.ceil(h / tile_px)


def patch_count(width: int, height: int, *, patch_px: int = 32, max_patches: int = 1536) -> int:
    """32-px patches of an image, shrunk to the patch budget by OpenAI's algorithm.

    Over the budget, the image is scaled by `r = sqrt(patch_px² x max_patches / (w x h))`,
    then `r` is reduced so that whole patches fit along both sides:
    `r x min(floor(w r / p) / (w r / p), floor(h r / p) / (h r / p))`; the sides are
    rounded to whole pixels and the patches counted again.

    Args:
        width: Width in pixels of the image sent.
        height: Height in pixels of the image sent.
        patch_px: Side of a patch.
        max_patches: The patch budget.

    Returns:
        The number of patches, at most `max_patches`.

    Raises:
        InvalidOptionError: A side is not a positive integer.
    """
    _check_size(width, height)

    def count(w: int, h: int) -> int:
        return math.ceil(w / patch_px) * math.ceil(h / patch_px)

    if count(width, height) <= max_patches:
        return count(width, height)
    # With r = sqrt(p² M / (w h)), w r / p = sqrt(M w / h): its floor is computed
    # exactly, in integers, as is the rest, so no float rounding moves a boundary.
    fit_w = max(1, math.isqrt(max_patches * width // height))
    fit_h = max(1, math.isqrt(max_patches * height // width))
    ratio = min(Fraction(fit_w * patch_px, width), Fraction(fit_h * patch_px, height))
    return count(_whole(width * ratio), _whole(height * ratio))


# --- the rules, as data ------------------------------------------------------------------


@dataclass(frozen=True)
class TileRule:
    """Tile scheme: a base cost plus a cost per 512-px tile (gpt-4o, gpt-4.1, o3, ...).

    Attributes:
        family: Family name, e.g. `"gpt-4o"`.
        base_tokens: Tokens of any image; all of it at `low` detail.
        tile_tokens: Tokens per tile at `high` / `auto` detail.
        tile_px: Side of a tile.
        fit_px: Side of the square the image is first fitted in.
        short_side_px: Target of the shortest side.
        source: Where the numbers come from.
    """

    family: str
    base_tokens: int
    tile_tokens: int
    tile_px: int
    fit_px: int
    short_side_px: int
    source: str

    def tokens(self, width: int, height: int, detail: Detail) -> int:
        """Image tokens of a `width` x `height` image sent at `detail`."""
        if detail == "low":
            _check_size(width, height)
            return self.base_tokens
        tiles = tile_count(
            width,
            height,
            tile_px=self.tile_px,
            fit_px=self.fit_px,
            short_side_px=self.short_side_px,
        )
        return self.base_tokens + self.tile_tokens * tiles


@dataclass(frozen=True)
class PatchRule:
    """Patch scheme: 32-px patches within a budget, times a multiplier (gpt-4.1-mini, ...).

    Attributes:
        family: Family name, e.g. `"gpt-4.1-mini"`.
        multiplier: Tokens per patch, exact (`Fraction("1.62")`).
        patch_px: Side of a patch.
        max_patches: The patch budget.
        source: Where the numbers come from.
    """

    family: str
    multiplier: Fraction
    patch_px: int
    max_patches: int
    source: str

    def tokens(self, width: int, height: int, detail: Detail) -> int:
        """Image tokens of a `width` x `height` image (`detail` does not change them)."""
        del detail  # patch models bill low and high alike
        patches = patch_count(width, height, patch_px=self.patch_px, max_patches=self.max_patches)
        return math.ceil(patches * self.multiplier)


ImageTokenRule: TypeAlias = TileRule | PatchRule
"""The rule of one model family."""


@dataclass(frozen=True)
class _Table:
    families: tuple[tuple[re.Pattern[str], ImageTokenRule], ...]


def _int(entry: Mapping[str, Any], key: str) -> int:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer, not {value!r}")
    return value


def _rule(entry: Mapping[str, Any], schemes: Mapping[str, Mapping[str, Any]]) -> ImageTokenRule:
    scheme = entry["scheme"]
    params = {**schemes[scheme], **entry}
    family, source = str(entry["family"]), str(entry.get("source", ""))
    if scheme == "tile":
        return TileRule(
            family=family,
            base_tokens=_int(params, "base_tokens"),
            tile_tokens=_int(params, "tile_tokens"),
            tile_px=_int(params, "tile_px"),
            fit_px=_int(params, "fit_px"),
            short_side_px=_int(params, "short_side_px"),
            source=source,
        )
    if scheme == "patch":
        return PatchRule(
            family=family,
            # str() first: the decimal as written, not the float's binary expansion.
            multiplier=Fraction(str(params["multiplier"])),
            patch_px=_int(params, "patch_px"),
            max_patches=_int(params, "max_patches"),
            source=source,
        )
    raise ValueError(f"unknown scheme {scheme!r}")


def _parse_table(data: Mapping[str, Any]) -> _Table:
    schemes = data["schemes"]
    families = tuple(
        (re.compile(str(entry["match"])), _rule(entry, schemes)) for entry in data["families"]
    )
    return _Table(families=families)


@cache
def _table() -> _Table:
    text = (resources.files("viewfinder") / "data" / _DATA_FILE).read_text(encoding="utf-8")
    try:
        return _parse_table(json.loads(text))
    except (KeyError, TypeError, ValueError, re.error) as exc:
        raise ValueError(f"viewfinder/data/{_DATA_FILE} is not valid: {exc!r}") from exc


def image_token_rule(model: str) -> ImageTokenRule | None:
    """The image-token rule of `model`'s family, or `None` when the table has none.

    The name is lower-cased and loses any `vendor/` prefix and dated-snapshot suffix
    (`openai/gpt-4o-2024-08-06` is `gpt-4o`) before it is matched.

    Args:
        model: A model name. Azure deployment names do not reveal the family: pass the
            model's own name.

    Returns:
        The rule, or `None` for a model the table does not know.
    """
    name = _SNAPSHOT.sub("", model.strip().lower().rsplit("/", 1)[-1])
    for pattern, rule in _table().families:
        if pattern.fullmatch(name):
            return rule
    return None


def estimate_image_tokens(
    width: int, height: int, *, model: str, detail: Detail = "high"
) -> int | None:
    """Input tokens of one image of `width` x `height` pixels sent to `model`.

    Args:
        width: Width in pixels of the image as sent (for viewfinder: the model copy,
            `PreparedImage.model_width`).
        height: Height in pixels of the image as sent.
        model: Model name; dated snapshots and `vendor/` prefixes are understood.
        detail: OpenAI image detail: `low`, `high` or `auto` (counted as `high`).

    Returns:
        The image tokens, or `None` when the model's rule is unknown.

    Raises:
        InvalidOptionError: A side is not a positive integer, or `detail` is not valid.
    """
    if detail not in _DETAILS:
        raise InvalidOptionError(f"detail must be one of {_DETAILS}, not {detail!r}")
    _check_size(width, height)
    rule = image_token_rule(model)
    return None if rule is None else rule.tokens(width, height, detail)


def expected_output_tokens(
    features: FeatureArg = ALL_FEATURES,
    *,
    answer_format: AnswerFormat = DEFAULT_ANSWER_FORMAT,
    tag_hints: bool = False,
    object_parents: bool = False,
) -> int:
    """Output tokens of one answer for `features`, estimated from example answers.

    Each bundled example answer (`viewfinder.analyzers.examples`: Microsoft's sample result
    converted, and hand-written typical answers) is written in `answer_format` for the
    features, as minified JSON, and counted in `o200k_base`; the estimate is their mean,
    rounded up. Examples, not measurements of a model: a busy street or a page of text
    gives more, a plain product shot less. Reasoning tokens are not included.

    Args:
        features: Features requested (one answer holds them all); the pixel features
            (`color`, `image_type`) are no part of it.
        answer_format: `compact` (the default) or `verbose`.
        tag_hints: Tags carry 3.2's `hint`.
        object_parents: Objects carry 3.2's `parents`.

    Returns:
        The mean output tokens of the examples.
    """
    chosen = FeatureOptions.of(features).features
    return _output_tokens(chosen, answer_format, tag_hints, object_parents)


@cache
def _output_tokens(
    features: tuple[Feature, ...],
    answer_format: AnswerFormat,
    tag_hints: bool = False,
    object_parents: bool = False,
) -> int:
    """`expected_output_tokens` for features a call plan already validated."""
    options = {"tag_hints": tag_hints, "object_parents": object_parents}
    counts = [
        count_tokens(answer_text(example.answer, features, answer_format, **options))
        for example in example_answers()
    ]
    return math.ceil(sum(counts) / len(counts))


def prompt_cache_tokens(prefix_tokens: int) -> int:
    """Input tokens OpenAI's prompt cache can serve for a prefix of `prefix_tokens`.

    OpenAI caches a request's prefix once it is 1,024 tokens or longer, in steps of 128
    tokens; a shorter prefix is never cached. The prefix here is everything before the
    image: the schema, the system message and the instructions, identical across a batch.
    """
    if prefix_tokens < _CACHE_MIN_TOKENS:
        return 0
    steps = (prefix_tokens - _CACHE_MIN_TOKENS) // _CACHE_STEP_TOKENS
    return _CACHE_MIN_TOKENS + steps * _CACHE_STEP_TOKENS


# --- estimates ---------------------------------------------------------------------------


class Estimate(BaseModel):
    """What one request would cost. Every figure is an estimate; nothing was sent.

    `input_tokens` is `prompt_tokens + schema_tokens + image_tokens`; it and the costs
    are `None` when the model's image rule (or price) is unknown.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    """The image: its path, `"<bytes>"`, ... or its URL without the query string."""
    model: str
    """Model whose rules and prices were used."""
    detail: Detail
    """OpenAI image detail of the request."""
    features: tuple[Feature, ...]
    """Features requested (one request for all of them)."""
    width: int
    """Width of the original image, in pixels."""
    height: int
    """Height of the original image, in pixels."""
    model_width: int
    """Width of the copy sent to the model, in pixels."""
    model_height: int
    """Height of the copy sent to the model, in pixels."""
    prompt_tokens: int
    """The messages' text (system and user prompts) with OpenAI's per-message overhead."""
    schema_tokens: int
    """The answer schema as instructor sends it (prompt, `response_format` or `tools`)."""
    image_tokens: int | None
    """The image, by the model family's rule; `None` when the rule is unknown."""
    input_tokens: int | None
    """All input tokens; `None` when the image tokens are unknown."""
    output_tokens: int
    """Output tokens estimated from example answers (`expected_output_tokens`)."""
    prefix_tokens: int
    """Input tokens before the image (schema, system message, instructions): the same for
    every image of a call plan, byte for byte."""
    cached_input_tokens: int
    """Of `input_tokens`, what OpenAI's prompt cache can serve when the prefix was seen
    recently (`prompt_cache_tokens`): 0 below 1,024 prefix tokens."""
    cost_usd: float | None
    """Dollars at the list price with no prompt-cache hit; `None` without image tokens or
    a price."""
    batch_cost_usd: float | None
    """The same at the Batch API price (half the list price by default)."""
    cached_cost_usd: float | None
    """Best case: dollars when `cached_input_tokens` come from the prompt cache (every
    request of a batch but the first of each cache route)."""
    batch_cached_cost_usd: float | None
    """Best case at the Batch API price (whether OpenAI's Batch API applies prompt
    caching is not documented in viewfinder's sources: an assumption)."""
    answer_format: AnswerFormat = DEFAULT_ANSWER_FORMAT
    """The answer format the output tokens were counted in."""
    notes: tuple[str, ...] = ()
    """Caveats of this estimate, e.g. an unknown model or reasoning tokens not counted."""


class EstimateSummary(BaseModel):
    """Estimates of several requests added up, per image and per 1,000 images.

    Token and dollar figures are `None` as soon as one estimate lacks them (a partial
    sum would look like a total). The means are over `images`; `None` for no images.
    """

    model_config = ConfigDict(frozen=True)

    images: int
    """Number of estimates (one per image)."""
    models: tuple[str, ...]
    """The models estimated, in first-seen order."""
    input_tokens: int | None
    cached_input_tokens: int
    """Of `input_tokens`, what the prompt cache can serve in the best case."""
    output_tokens: int
    cost_usd: float | None
    batch_cost_usd: float | None
    cached_cost_usd: float | None
    """Best case: every prefix served from the prompt cache."""
    batch_cached_cost_usd: float | None
    mean_input_tokens: float | None
    mean_output_tokens: float | None
    mean_cost_usd: float | None
    cost_per_1000_images_usd: float | None
    """With no prompt-cache hit."""
    batch_cost_per_1000_images_usd: float | None
    cached_cost_per_1000_images_usd: float | None
    """Best case: every prefix served from the prompt cache."""
    batch_cached_cost_per_1000_images_usd: float | None


def _sum_or_none(values: Sequence[float | None]) -> float | None:
    if any(value is None for value in values):
        return None
    return sum(value for value in values if value is not None)


def estimate_many(estimates: Iterable[Estimate]) -> EstimateSummary:
    """Add up estimates: totals, the mean per image, and the cost per 1,000 images.

    Pure: it only adds the figures of `estimates`.

    Args:
        estimates: One estimate per image.

    Returns:
        The summary.
    """
    items = list(estimates)
    count = len(items)
    input_total = _sum_or_none([e.input_tokens for e in items])
    output_total = sum(e.output_tokens for e in items)
    cost = _sum_or_none([e.cost_usd for e in items])
    batch = _sum_or_none([e.batch_cost_usd for e in items])
    cached = _sum_or_none([e.cached_cost_usd for e in items])
    batch_cached = _sum_or_none([e.batch_cached_cost_usd for e in items])

    def mean(total: float | None) -> float | None:
        return None if total is None or count == 0 else total / count

    def per_1000(total: float | None) -> float | None:
        average = mean(total)
        return None if average is None else average * 1000

    return EstimateSummary(
        images=count,
        models=tuple(dict.fromkeys(e.model for e in items)),
        input_tokens=None if input_total is None else int(input_total),
        cached_input_tokens=sum(e.cached_input_tokens for e in items),
        output_tokens=output_total,
        cost_usd=cost,
        batch_cost_usd=batch,
        cached_cost_usd=cached,
        batch_cached_cost_usd=batch_cached,
        mean_input_tokens=mean(input_total),
        mean_output_tokens=mean(output_total),
        mean_cost_usd=mean(cost),
        cost_per_1000_images_usd=per_1000(cost),
        batch_cost_per_1000_images_usd=per_1000(batch),
        cached_cost_per_1000_images_usd=per_1000(cached),
        batch_cached_cost_per_1000_images_usd=per_1000(batch_cached),
    )


def offline_analyzer(
    model: str | None = None,
    *,
    detail: Detail = "high",
    max_side: int | None = None,
    base_url: str | None = None,
    allow_hosts: Collection[str] | None = None,
    answer_format: AnswerFormat = DEFAULT_ANSWER_FORMAT,
    box_convention: str | None = None,
) -> ImageAnalyzer:
    """An `ImageAnalyzer` to estimate with, whether or not an endpoint is configured.

    With an endpoint configured (arguments or environment, as `ImageAnalyzer` reads
    them), its settings are used, so the structured-output mode is the one real calls
    would use. With nothing configured, the analyzer points at `OFFLINE_BASE_URL` and
    uses the `json_schema` mode of OpenAI and Azure (unless `VIEWFINDER_MODE` says
    otherwise). Either way it has no cache, and estimation sends nothing. Close it when
    done.

    Args:
        model: Model name; default `VIEWFINDER_MODEL`, else viewfinder's default model.
        detail: OpenAI image detail.
        max_side: Long side, in pixels, of the copy sent to the model; default None:
            chosen by the features, as `ImageAnalyzer` does.
        base_url: An OpenAI-compatible endpoint, as for `ImageAnalyzer`.
        allow_hosts: Internal hosts image URLs may point at, as for `ImageAnalyzer`.
        answer_format: How the model would write its answer (`compact` or `verbose`).
        box_convention: How the model would write boxes (a row of
            `viewfinder.build.conventions.CONVENTIONS`); default: the model's own row.

    Returns:
        The analyzer.

    Raises:
        InvalidOptionError: `detail` or `max_side` is not valid.
    """
    options: dict[str, Any] = {
        "model": model,
        "detail": detail,
        "max_side": max_side,
        "allow_hosts": allow_hosts,
        "answer_format": answer_format,
        "box_convention": box_convention,
    }
    try:
        return ImageAnalyzer(base_url=base_url, cache=False, **options)
    except ConfigurationError:
        mode = None if os.environ.get("VIEWFINDER_MODE", "").strip() else "json_schema"
        return ImageAnalyzer(base_url=OFFLINE_BASE_URL, cache=False, mode=mode, **options)


def _text_tokens(
    request: Request[BaseModel], analyzer: ImageAnalyzer, model: str
) -> tuple[int, int]:
    """The request's prompt tokens, and the tokens instructor adds to carry the schema.

    Counted on the body the engine would send (`Engine.request_body`, no I/O): in the JSON modes
    instructor writes the schema into the system prompt, counted as the text it adds; in
    `json_schema` and `tools` modes it sends the schema as `response_format` / `tools`,
    counted as the JSON text of that payload. OpenAI does not publish how it bills that
    payload, so the JSON text is an approximation. Both are text before the image.
    """
    body = analyzer.engine.request_body(request, model=model)
    prompt = count_message_tokens(request.messages, model=model)
    return prompt, max(prefix_tokens(body, model=model) - prompt, 0)


def estimate_request(
    analyzer: ImageAnalyzer,
    image: ImageInput | PreparedImage,
    features: FeatureArg = ALL_FEATURES,
    *,
    model: str | None = None,
    smart_crops_aspect_ratios: Sequence[float] | None = None,
    gender_neutral_caption: bool = False,
    language: str = "en",
    max_candidates: int = 1,
    tag_hints: bool = False,
    object_parents: bool = False,
) -> Estimate:
    """Estimate the tokens and dollars of `analyzer.analyze(image, features, ...)`.

    The request is the analyzer's own: `image` is `prepare()`d (loaded, checked and
    shrunk exactly as for a real call) and `build()` renders the prompts, so the text
    counted is the text that would be sent. Nothing is sent.

    How each part is counted:

    - prompt: the messages' text in `o200k_base`, plus OpenAI's chat overhead (3 tokens
      per message, 3 to prime the reply). The image part is not text.
    - schema: instructor puts the JSON schema in the system prompt in the `json` and
      `md_json` modes, and sends it as `response_format` (`json_schema` mode) or
      `tools` otherwise. Its JSON text is counted in every mode; outside the JSON modes
      that is an approximation, as OpenAI does not document how it bills the schema.
    - image: the model family's rule (`estimate_image_tokens`) on the model copy's size
      (`model_width` x `model_height`) at `analyzer.detail`.
    - output: estimated from example answers in the analyzer's answer format
      (`expected_output_tokens`); reasoning models also bill reasoning tokens, not
      included.
    - cached: the prefix (everything before the image) is the same for every image of a
      plan; `cached_input_tokens` is what OpenAI's prompt cache can serve of it, and the
      `cached_*` costs are the best case where every request finds it cached.

    Validation re-asks, retries and cache hits (which cost nothing) are not modelled.

    Args:
        analyzer: The analyzer that would make the call (see `offline_analyzer`).
        image: A path, bytes, file object, PIL image or URL (fetched to learn its size),
            or an image already prepared with this analyzer's `max_side`.
        features: Features to request (default: all seven).
        model: Model whose rules and prices to use; default `analyzer.model`. Pass the
            model's name when the analyzer's model is an Azure deployment name.
        smart_crops_aspect_ratios: Ratios asked for: one crop each in the output.
        gender_neutral_caption: As for `analyze` (changes the caption prompt).
        language: As for `analyze` (changes the prompts).
        max_candidates: As for `analyze` (the 3.2 description's captions).
        tag_hints: As for `analyze` (3.2 tag hints: more output).
        object_parents: As for `analyze` (3.2 object parents: more output).

    Returns:
        The estimate. A call asking only pixel features (`color`, `image_type`, and
        `faces` where computed here) sends no request: its tokens and costs are 0.

    Raises:
        InvalidOptionError: A feature, ratio or language is not valid.
        ImageError: The image cannot be loaded or is refused.
    """
    plan = analyzer.plan(
        features,
        smart_crops_aspect_ratios=smart_crops_aspect_ratios,
        gender_neutral_caption=gender_neutral_caption,
        language=language,
        max_candidates=max_candidates,
        tag_hints=tag_hints,
        object_parents=object_parents,
    )
    chosen = plan.options.features
    asked = plan.options.model_features
    prepared = image if isinstance(image, PreparedImage) else analyzer.prepare(image, plan.max_side)
    name = model or analyzer.model
    if asked:
        request = plan.build(prepared)
        prompt_tokens, schema_tokens = _text_tokens(request, analyzer, name)
        image_tokens = estimate_image_tokens(
            prepared.model_width, prepared.model_height, model=name, detail=analyzer.detail
        )
        output_tokens = _output_tokens(asked, analyzer.answer_format, tag_hints, object_parents)
    else:  # pixel features only: computed here, no request
        prompt_tokens = schema_tokens = output_tokens = 0
        image_tokens = 0
    before_image = prompt_tokens + schema_tokens
    cached_tokens = prompt_cache_tokens(before_image)

    notes: list[str] = []
    input_tokens: int | None = None
    cost: float | None = None
    batch_cost: float | None = None
    cached_cost: float | None = None
    batch_cached_cost: float | None = None
    if image_tokens is None:
        notes.append(f"no image-token rule for model {name!r}: input tokens and cost unknown")
    else:
        input_tokens = prompt_tokens + schema_tokens + image_tokens
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        cost = cost_of(usage, name)
        batch_cost = cost_of(usage, name, batch=True)
        hit = usage.model_copy(update={"cached_input_tokens": cached_tokens})
        cached_cost = cost_of(hit, name)
        batch_cached_cost = cost_of(hit, name, batch=True)
        if cost is None:
            notes.append(f"no price for model {name!r} in the price table")
    if is_reasoning_model(name):
        notes.append("reasoning model: reasoning tokens bill as output and are not included")

    return Estimate(
        source=prepared.source,
        model=name,
        detail=analyzer.detail,
        features=chosen,
        width=prepared.width,
        height=prepared.height,
        model_width=prepared.model_width,
        model_height=prepared.model_height,
        prompt_tokens=prompt_tokens,
        schema_tokens=schema_tokens,
        image_tokens=image_tokens,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        prefix_tokens=before_image,
        cached_input_tokens=cached_tokens,
        cost_usd=cost,
        batch_cost_usd=batch_cost,
        cached_cost_usd=cached_cost,
        batch_cached_cost_usd=batch_cached_cost,
        answer_format=analyzer.answer_format,
        notes=tuple(notes),
    )
