"""What every analyzer shares: settings, provider, cache, engine, messages, version.

`Analyzer` (custom schemas) and `ImageAnalyzer` (the seven features) both build on
`BaseAnalyzer`. Building a request and finishing a result are pure; only the engine
does I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from math import isqrt
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypedDict, TypeVar

import openai

from viewfinder.analyzers.flow import AnswerPath, Flow, ModelPath, adrive, drive
from viewfinder.analyzers.settings import Detail
from viewfinder.build.conventions import DEFAULT, BoxConvention, resolve_convention
from viewfinder.build.grid import Frame
from viewfinder.build.plan import CallPlan, ImagePart, ImageSize, SourceRef
from viewfinder.build.templates import PromptTemplate, builtin_template, load_template
from viewfinder.engine.body import DEFAULT_PROMPT_CACHE_SHARDS
from viewfinder.engine.budget import Budget
from viewfinder.engine.cache import DEFAULT_SIZE_LIMIT, AnswerCache, open_cache
from viewfinder.engine.engine import Engine, Gate
from viewfinder.engine.hooks import Hooks
from viewfinder.engine.providers import Mode, Provider, resolve_provider, sampling_params
from viewfinder.engine.retry import RetryPolicy
from viewfinder.errors import ConfigurationError, InvalidOptionError
from viewfinder.prepare import DEFAULT_MAX_SIDE, PreparedImage, copy_size, prepare_image
from viewfinder.prepare.fetch import trusted_hosts
from viewfinder.prepare.load import ImageInput, LoadedImage, load_image
from viewfinder.prepare.pixel_budget import run_decode

if TYPE_CHECKING:
    from viewfinder.batch.online import BatchCall
    from viewfinder.schemas.result import AnalysisRun, ImageAnalysisResult

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "DEFAULT_MAX_REASKS",
    "ENDPOINT_ENV_VARS",
    "AnalyzerOptions",
    "BaseAnalyzer",
    "Detail",
    "ImagePart",
    "SourceRef",
    "endpoint_configured",
]

R = TypeVar("R", bound="ImageAnalysisResult | AnalysisRun[Any]")
"""What a call plan gives: the result of `ImageAnalyzer` or of `Analyzer`."""

DEFAULT_MAX_REASKS = 2
DEFAULT_MAX_OUTPUT_TOKENS = 4096
_DETAILS = ("low", "high", "auto")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")

CacheSetting = bool | str | os.PathLike[str] | AnswerCache | None

ENDPOINT_ENV_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_DEPLOYMENT",
)
"""Environment variables any one of which means a model endpoint is meant to be used."""
_ENDPOINT_OPTIONS = (
    "client",
    "async_client",
    "base_url",
    "api_key",
    "azure_endpoint",
    "azure_deployment",
    "azure_ad_token_provider",
)
_NO_ENDPOINT = (
    "This analyzer has no model endpoint: it runs the local engine. Configure one "
    "(OPENAI_API_KEY, OPENAI_BASE_URL, or AZURE_OPENAI_ENDPOINT + AZURE_OPENAI_API_KEY + "
    "AZURE_OPENAI_DEPLOYMENT; or client=, base_url=, azure_endpoint=) and build it with "
    "engine='model' or engine='auto'."
)


def endpoint_configured(options: Mapping[str, Any], env: Mapping[str, str] | None = None) -> bool:
    """Tell whether any model endpoint setting is given, in `options` or the environment.

    Only whether something is set counts, not whether it is complete or valid: a half
    configuration (a key without its endpoint) is meant for the model, and resolving it
    then fails loudly with a `ConfigurationError` instead of quietly running locally.

    Args:
        options: `ImageAnalyzer` keyword arguments (`client`, `base_url`, `api_key`,
            `azure_endpoint`, ...).
        env: Environment variables (default `os.environ`).

    Returns:
        True when an endpoint setting is present (see `ENDPOINT_ENV_VARS`).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if any(options.get(name) not in (None, "") for name in _ENDPOINT_OPTIONS):
        return True
    return any(environ.get(name, "").strip() for name in ENDPOINT_ENV_VARS)


def _make_cache(cache: CacheSetting, ttl: float | None, size_limit: int) -> AnswerCache | None:
    """`cache=`: off, a cache given, `VIEWFINDER_CACHE` or the default (`True`), or where."""
    if cache is None or cache is False:
        return None
    if cache is True:
        return open_cache(ttl=ttl, size_limit=size_limit)
    if isinstance(cache, str | os.PathLike):
        return open_cache(cache, ttl=ttl, size_limit=size_limit)
    return cache


def check_language(language: str) -> str:
    """Validate a language code such as `en` or `pt-BR`."""
    if not isinstance(language, str) or not _LANGUAGE.match(language):
        raise InvalidOptionError(f"language {language!r} is not a language code such as 'en'")
    return language


_BOX_PARAGRAPH = re.compile(r"^(?:Coordinates|Boxes): .*$", re.MULTILINE)


def with_box_wording(system: str, convention: BoxConvention) -> str:
    """`system` with its paragraph on boxes in `convention`'s words (appended if none)."""
    compact = system.count("Boxes: ") > 0
    wording = convention.wording(compact=compact)
    if _BOX_PARAGRAPH.search(system):
        return _BOX_PARAGRAPH.sub(lambda _: wording, system, count=1)
    return f"{system}\n\n{wording}"


def version_hash(*parts: str) -> str:
    """Short digest of template sources and schemas, for `model_version`."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:10]


def schema_text(annotation: Any) -> str:
    """Canonical JSON of a pydantic model's schema."""
    return json.dumps(annotation.model_json_schema(), sort_keys=True)


class AnalyzerOptions(TypedDict, total=False):
    """The settings `Analyzer` and `ImageAnalyzer` share, as keyword arguments.

    One place of truth for their names, types and meaning: both constructors take
    `**options: Unpack[AnalyzerOptions]`, so a type checker refuses a misspelt or
    mistyped option and an IDE completes and documents each one. `BaseAnalyzer`'s
    constructor has the same parameters (with their defaults) and validates them
    (`tests/test_typed_options.py` keeps the two in step).
    """

    model: str | None
    """Model (OpenAI) or deployment (Azure) name; default `VIEWFINDER_MODEL`, else
    `gpt-4.1-mini`."""
    client: openai.OpenAI | openai.AsyncOpenAI | None
    """An `openai.OpenAI` / `AzureOpenAI` (or async) client to use. Its own retries are
    turned off; viewfinder retries each HTTP attempt itself."""
    async_client: openai.AsyncOpenAI | None
    """The async twin; derived from `client` when not given."""
    base_url: str | None
    """An OpenAI-compatible endpoint (Ollama, vLLM, LM Studio, llama.cpp)."""
    api_key: str | None
    """Key for `base_url` or OpenAI; not needed for local servers."""
    azure_endpoint: str | None
    """Azure OpenAI resource endpoint."""
    azure_deployment: str | None
    """Azure OpenAI deployment name."""
    api_version: str | None
    """Azure OpenAI api-version."""
    azure_ad_token_provider: Callable[[], str] | None
    """Entra ID token provider for Azure OpenAI."""
    mode: Mode | str | None
    """instructor structured-output mode; default per provider."""
    cache: CacheSetting
    """`True` (the default: `VIEWFINDER_CACHE`, else the per-user cache dir), `False`, a
    directory, a `redis://host:6379/0` URL (a cache shared by every process naming it;
    the `redis` extra), or a cache (`ResponseCache`, `RedisCache`)."""
    cache_ttl: float | None
    """Seconds a cached answer lives (default: until evicted)."""
    cache_size_limit: int
    """Bytes on disk for the cache (a Redis cache is bounded by Redis' `maxmemory`)."""
    detail: Detail
    """OpenAI image `detail`: `high` (default), `low` or `auto`."""
    max_side: int | None
    """Long side, in pixels, of the copy sent to the model, for every call. Default None:
    `ImageAnalyzer` sizes each call's copy by its features
    (`viewfinder.analyzers.features.copy_side_for`: 512 for caption, tags and crops, 768
    with boxes, 1024 with read); `Analyzer` sends 1024."""
    retry: RetryPolicy | None
    """Policy for transient HTTP failures."""
    max_reasks: int
    """Validation re-asks after the first answer (default 2)."""
    max_output_tokens: int
    """Output cap for every request (default 4096)."""
    system_prompt: str | Path | PromptTemplate | None
    """A replacement for the shared system template."""
    max_tokens_per_call: int | None
    """Cap on input + output tokens of one call, re-asks and retries included; reaching
    it raises `BudgetExceededError`."""
    max_dollars_per_call: float | None
    """The same cap in dollars, at the model's price."""
    rate_limiter: Gate | None
    """Paces every HTTP attempt; share one between analyzers that use the same
    deployment (see `viewfinder.engine.ratelimit`)."""
    allow_hosts: Collection[str] | None
    """Internal hosts (names or IPs) image URLs may point at. Any other URL whose host
    is, or resolves to, a loopback, private, link-local or cloud metadata address is
    refused before any connection, as Azure's service refuses it. Default None:
    `VIEWFINDER_ALLOW_HOSTS` (comma-separated), read at each fetch; a value, even `()`,
    replaces it."""
    strict_schema: bool
    """Send `"strict": true` structured outputs to OpenAI and Azure OpenAI when the schema
    fits strict mode (checked locally; default True). False sends the schema as
    instructor renders it."""
    prompt_cache_shards: int
    """OpenAI only: `prompt_cache_key` spreads the requests sharing a prefix over this
    many cache routes (default 16, about 240 requests a minute before OpenAI spills to
    uncached machines; 1 is one route, 0 sends no key). Not part of the cache key:
    changing it keeps cached answers."""
    box_convention: str | BoxConvention | None
    """How the model writes boxes and polygon points: a row's name of
    `viewfinder.build.conventions.CONVENTIONS` (`"gemini"`, `"qwen2.5-vl"`, `"claude"`,
    ...) or a `BoxConvention`. Default None: the table's row for `model`
    (`qwen2.5vl:7b` asks for pixels of a copy sized in multiples of 28, `gemini-*` for
    `[y_min, x_min, y_max, x_max]` on 0-1000), else today's `[x_min, y_min, x_max,
    y_max]` on a 0-1000 grid (OpenAI's models, unknown models). A convention other than
    that grid is part of `model_version` (and so of cache keys); its copy size rule wins
    over per-feature sizing."""
    hooks: Hooks | None
    """Handlers told of every request, response, retry, re-ask and error, as typed events
    (`viewfinder.engine.hooks`); default: a new, empty `Hooks`, which `analyzer.on(...)`
    fills. Pass one `Hooks` to several analyzers to observe them together."""


class BaseAnalyzer:
    """Settings shared by `Analyzer` and `ImageAnalyzer`.

    The keyword arguments are `AnalyzerOptions` (each documented there, where type
    checkers and IDEs find them), plus `with_endpoint`: False builds the analyzer without
    resolving a model endpoint (for the local engine): nothing needs to be configured, no
    cache is opened, and `provider` and `engine` raise `ConfigurationError` when used.
    This constructor is the one place the shared options are validated.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        client: openai.OpenAI | openai.AsyncOpenAI | None = None,
        async_client: openai.AsyncOpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        azure_endpoint: str | None = None,
        azure_deployment: str | None = None,
        api_version: str | None = None,
        azure_ad_token_provider: Callable[[], str] | None = None,
        mode: Mode | str | None = None,
        cache: CacheSetting = True,
        cache_ttl: float | None = None,
        cache_size_limit: int = DEFAULT_SIZE_LIMIT,
        detail: Detail = "high",
        max_side: int | None = None,
        retry: RetryPolicy | None = None,
        max_reasks: int = DEFAULT_MAX_REASKS,
        max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
        system_prompt: str | Path | PromptTemplate | None = None,
        max_tokens_per_call: int | None = None,
        max_dollars_per_call: float | None = None,
        rate_limiter: Gate | None = None,
        allow_hosts: Collection[str] | None = None,
        with_endpoint: bool = True,
        strict_schema: bool = True,
        prompt_cache_shards: int = DEFAULT_PROMPT_CACHE_SHARDS,
        box_convention: str | BoxConvention | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.hooks: Hooks = Hooks() if hooks is None else hooks
        """Handlers of this analyzer's events (`viewfinder.engine.hooks`), batches included."""
        self.on = self.hooks.on
        """Register a handler, as instructor's `client.on`: `analyzer.on("retry", fn)`;
        `fn` gets the event's typed payload (`RetryEvent`...)."""
        self.off = self.hooks.off
        """Unregister a handler given to `on`."""
        self.box_convention: BoxConvention = resolve_convention(box_convention, "")
        """How the model writes boxes (see `box_convention`); the model's row once resolved."""
        if detail not in _DETAILS:
            raise InvalidOptionError(f"detail must be one of {_DETAILS}, not {detail!r}")
        if max_side is not None and (
            isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 64
        ):
            raise InvalidOptionError(f"max_side must be an int >= 64, not {max_side!r}")
        if max_reasks < 0:
            raise InvalidOptionError("max_reasks must be >= 0")
        if max_output_tokens < 1:
            raise InvalidOptionError("max_output_tokens must be >= 1")
        if isinstance(prompt_cache_shards, bool) or not isinstance(prompt_cache_shards, int):
            raise InvalidOptionError(
                f"prompt_cache_shards must be an int, not {prompt_cache_shards!r}"
            )
        if prompt_cache_shards < 0:
            raise InvalidOptionError("prompt_cache_shards must be >= 0")
        self.detail: Detail = detail
        self.max_side: int = DEFAULT_MAX_SIDE if max_side is None else max_side
        """The copy's long side when a call does not choose its own (see `max_side_given`)."""
        self.max_side_given = max_side is not None
        """Whether `max_side` was given: then every call's copy has it."""
        self.allow_hosts: tuple[str, ...] | None = (
            None if allow_hosts is None else trusted_hosts(allow_hosts)
        )
        """Trusted internal hosts for image URLs; None: `VIEWFINDER_ALLOW_HOSTS`."""
        self.system_template = (
            builtin_template("system")
            if system_prompt is None
            else load_template(system_prompt, name="system prompt")
        )
        self._owns_client = client is None or isinstance(client, openai.AsyncOpenAI)
        self._owns_async_client = async_client is None and not isinstance(
            client, openai.AsyncOpenAI
        )
        self._provider: Provider | None = None
        self._engine: Engine | None = None
        if not with_endpoint:
            return
        self._provider = provider = resolve_provider(
            client=client,
            async_client=async_client,
            model=model,
            base_url=base_url,
            api_key=api_key,
            azure_endpoint=azure_endpoint,
            azure_deployment=azure_deployment,
            api_version=api_version,
            azure_ad_token_provider=azure_ad_token_provider,
            mode=mode,
        )
        self.box_convention = resolve_convention(box_convention, provider.model)
        self._engine = Engine(
            provider,
            cache=_make_cache(cache, cache_ttl, cache_size_limit),
            retry=retry or RetryPolicy(),
            max_reasks=max_reasks,
            sampling=sampling_params(provider.model, max_output_tokens=max_output_tokens),
            gate=rate_limiter,
            strict_schema=strict_schema,
            prompt_cache_shards=prompt_cache_shards,
            hooks=self.hooks,
            budget=None
            if max_tokens_per_call is None and max_dollars_per_call is None
            else Budget(
                max_tokens=max_tokens_per_call,
                max_dollars=max_dollars_per_call,
                model=provider.model,
                scope="per call",
            ),
        )

    @property
    def has_endpoint(self) -> bool:
        """Whether this analyzer was built with a model endpoint."""
        return self._provider is not None

    @property
    def provider(self) -> Provider:
        """The resolved model endpoint.

        Raises:
            ConfigurationError: The analyzer was built without one (local engine).
        """
        if self._provider is None:
            raise ConfigurationError(_NO_ENDPOINT)
        return self._provider

    @property
    def engine(self) -> Engine:
        """The model engine: requests, cache, retries, re-asks.

        Raises:
            ConfigurationError: The analyzer was built without an endpoint (local engine).
        """
        if self._engine is None:
            raise ConfigurationError(_NO_ENDPOINT)
        return self._engine

    @property
    def model(self) -> str:
        """The model (or Azure deployment) this analyzer asks; `"local"` without one."""
        return self._provider.model if self._provider is not None else "local"

    def load(self, image: ImageInput | LoadedImage) -> LoadedImage:
        """Read `image`'s bytes; a URL is fetched under this analyzer's `allow_hosts`."""
        return load_image(image, allow_hosts=self.allow_hosts)

    async def aload(self, image: ImageInput | LoadedImage) -> LoadedImage:
        """`load` in a worker thread (reading files and fetching URLs block)."""
        return await asyncio.to_thread(self.load, image)

    def prepare(
        self, image: ImageInput | LoadedImage, max_side: int | None = None
    ) -> PreparedImage:
        """Check, orient, downscale and encode `image` for the model.

        Args:
            image: The image.
            max_side: The copy's long side (a plan's `max_side`); default `self.max_side`.
        """
        side = self.copy_side(self.max_side if max_side is None else max_side)
        return prepare_image(image, max_side=side, allow_hosts=self.allow_hosts, **self._rule())

    async def aprepare(
        self, image: ImageInput | LoadedImage, max_side: int | None = None
    ) -> PreparedImage:
        """`prepare` in a worker thread (decoding is CPU-bound, URL fetching blocks).

        Inside a `viewfinder.prepare.pixel_budget.budget_scope` (the server's), the decode
        holds its pixels of the budget while it runs.
        """
        side = self.copy_side(self.max_side if max_side is None else max_side)
        if not isinstance(image, LoadedImage):
            image = await self.aload(image)
        return await run_decode(
            image.data, side, prepare_image, image, max_side=side, **self._rule()
        )

    def _rule(self) -> dict[str, Any]:
        """The convention's copy size rule as `prepare_image`'s keywords (none: today's copy)."""
        rule = self.box_convention.copy
        if self.box_convention is DEFAULT:
            return {}
        return {
            "multiple": rule.multiple,
            "max_pixels": rule.max_pixels,
            "min_pixels": rule.min_pixels,
        }

    def pixel_limit(self, max_side: int) -> int | None:
        """For a `pixels` convention, the longest side a copy for `max_side` can have:
        the bound of every answered value (past it, the answer is re-asked). None else."""
        convention = self.box_convention
        if convention.scale != "pixels":
            return None
        side = self.copy_side(max_side)
        rule = convention.copy
        rounded = copy_size((side, side), side, multiple=rule.multiple)[0]
        upscaled = 0 if rule.min_pixels is None else isqrt(rule.min_pixels) + 2 * rule.multiple
        return max(side, rounded, upscaled)

    def copy_side(self, max_side: int) -> int:
        """The copy's long side for a call asking `max_side`: the convention's bound wins."""
        return self.box_convention.copy.long_side(max_side)

    def frame(self, size: ImageSize, max_side: int) -> Frame:
        """What answers to an image of `size` map onto: its pixels, the convention, and
        the copy sent for a plan of `max_side` (the size `prepare` gave it)."""
        convention = self.box_convention
        if convention is DEFAULT:
            return Frame(size.width, size.height)
        rule = convention.copy
        copy_w, copy_h = copy_size(
            (size.width, size.height),
            self.copy_side(max_side),
            multiple=rule.multiple,
            max_pixels=rule.max_pixels,
            min_pixels=rule.min_pixels,
        )
        return Frame(size.width, size.height, convention, copy_w, copy_h)

    # --- the calls: a plan, answered through this analyzer's path ---------------------

    def path(self) -> AnswerPath[Any]:
        """What answers this analyzer's calls: the model endpoint, through its engine."""
        return ModelPath(self, self.engine)

    def run(
        self,
        plan: CallPlan[Any, R],
        image: ImageInput | LoadedImage,
        *,
        budget: Budget | None = None,
    ) -> R:
        """Answer `plan` (from this analyzer's `plan()`) for `image`.

        Args:
            plan: The call, its options already validated.
            image: A path, bytes, a binary file object, a PIL image, or an http(s) URL.
            budget: A shared cap (e.g. a batch's) charged besides the per-call one.
        """
        flow: Flow[R] = self.path().flow(plan, image, budget)
        return drive(flow)

    async def arun(
        self,
        plan: CallPlan[Any, R],
        image: ImageInput | LoadedImage,
        *,
        budget: Budget | None = None,
    ) -> R:
        """Async twin of `run` (the same flow, its blocking steps off the event loop).

        Inside a `viewfinder.prepare.pixel_budget.budget_scope` (the server's), each decode
        holds its pixels of the budget while it runs.
        """
        flow: Flow[R] = self.path().flow(plan, image, budget)
        return await adrive(flow)

    def around_model(self, model: AnswerPath[Any]) -> AnswerPath[Any]:
        """The path that answers a call, given the path that asks the model: `model`
        itself here; `ImageAnalyzer` puts its pixel features and content-filter rule
        around it (`viewfinder.analyzers.split`)."""
        return model

    def _batch_call(self, plan: CallPlan[Any, R]) -> BatchCall[R]:
        """`arun` of `plan` for one read image, through a batch's engine (its pacing)."""

        async def call(loaded: LoadedImage, engine: Engine, budget: Budget | None) -> R:
            path: AnswerPath[Any] = self.around_model(ModelPath(self, engine))
            return await adrive(path.flow(plan, loaded, budget))

        return call

    def messages(self, system_text: str, user_text: str, image: ImagePart) -> list[dict[str, Any]]:
        """The chat messages: system text, then the user's text and the image part.

        The image part is built here, not by instructor, so that `detail` is set.
        """
        return [
            {"role": "system", "content": system_text},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": user_text},
                    {
                        "type": "image_url",
                        "image_url": {"url": image.data_url(), "detail": self.detail},
                    },
                ],
            },
        ]

    def render_system(self, language: str = "en") -> str:
        """The system message for `language`, its paragraph on boxes in the convention's words.

        The built-in templates word today's grid; another convention's wording replaces
        that paragraph (`Coordinates: ...` or `Boxes: ...`), or is appended to a system
        prompt of the user's that has none.
        """
        text = self.system_template.render({"language": language})
        if self.box_convention is DEFAULT:
            return text
        return with_box_wording(text, self.box_convention)

    def model_version_for(self, parts: Iterable[str]) -> str:
        """`<model>+<short hash>` of the given template sources and schemas; a convention
        other than the default grid is hashed too (the default's versions are unchanged)."""
        extra = [] if self.box_convention is DEFAULT else [self.box_convention.describe()]
        digest = version_hash(self.system_template.source, *parts, *extra)
        return f"{self.provider.model}+{digest}"

    def close(self) -> None:
        """Close the cache and the sync client this analyzer made (yours stay open)."""
        if self._engine is not None and self._engine.cache is not None:
            self._engine.cache.close()
        if self._provider is not None and self._owns_client:
            self._provider.client.close()

    async def aclose(self) -> None:
        """Close the cache and both clients this analyzer made (yours stay open)."""
        self.close()
        if self._provider is not None and self._owns_async_client:
            await self._provider.async_client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        if self._provider is None:
            return f"{type(self).__name__}(engine='local')"
        return (
            f"{type(self).__name__}(model={self._provider.model!r}, "
            f"provider={self._provider.kind.value!r}, detail={self.detail!r})"
        )
