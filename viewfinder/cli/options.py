"""What the commands share: their common options, option parsing (comma lists, feature
names, trusted hosts) and exit codes.

Light on purpose, like every command module: `viewfinder --help` imports them all, so
what needs the engine (and with it openai and instructor) is imported inside the
functions that use it (tests/test_startup.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, NamedTuple, TypeAlias

import typer
from rich.console import Console
from rich.text import Text

from viewfinder.analyzers.features import ALL_FEATURES, Feature
from viewfinder.errors import ConfigurationError, InvalidOptionError, import_failure
from viewfinder.prepare import MIN_MAX_SIDE

if TYPE_CHECKING:
    from viewfinder.engine.ratelimit import RateLimiter

__all__ = [
    "EXIT_IMAGE_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNSERVED",
    "EXIT_USAGE",
    "AllowHostOption",
    "AnswerFormatChoice",
    "AnswerFormatOption",
    "BaseUrlOption",
    "ConcurrencyOption",
    "DetailChoice",
    "DetailOption",
    "FeaturesHelp",
    "MaxCandidatesOption",
    "MaxSideOption",
    "ModelOption",
    "NoCacheOption",
    "ObjectParentsOption",
    "ProgressEveryOption",
    "ProgressOption",
    "RpmOption",
    "TagHintsOption",
    "allow_hosts_of",
    "features_callback",
    "features_of",
    "split_commas",
    "usage_exit",
]


class DetailChoice(StrEnum):
    """OpenAI image `detail` levels, as offered on the command line."""

    HIGH = "high"
    LOW = "low"
    AUTO = "auto"


ModelOption: TypeAlias = Annotated[
    str | None,
    typer.Option(
        help="Model (or Azure deployment); default VIEWFINDER_MODEL or gpt-4.1-mini.",
        metavar="NAME",
    ),
]
"""`--model`, for every command that builds an analyzer."""

BaseUrlOption: TypeAlias = Annotated[
    str | None,
    typer.Option(help="OpenAI-compatible endpoint; default OPENAI_BASE_URL.", metavar="URL"),
]
"""`--base-url`, for every command that builds an analyzer."""

RpmOption: TypeAlias = Annotated[
    int | None,
    typer.Option(help="Requests per minute (default: learned from the headers).", min=1),
]
"""`--rpm`, for the commands that pace a run (batch, embed)."""

ConcurrencyOption: TypeAlias = Annotated[
    int, typer.Option(help="Images analysed at the same time.", min=1)
]
"""`--concurrency` of `batch` and `compare` (default: `batch.settings.DEFAULT_CONCURRENCY`)."""

ProgressOption: TypeAlias = Annotated[
    bool,
    typer.Option(
        "--progress/--quiet",
        "-q",
        help="Progress on stderr (the default): a live bar on a terminal, a plain line "
        "every --progress-every seconds off one (CI logs, nohup). --quiet: only the summary.",
    ),
]
"""`--progress/--quiet`, for the commands that stream a long run (batch, embed).

`--progress` once meant "show progress even when stderr is not a terminal"; progress is now
shown there by default, as plain lines, so `--progress` is the default and stays accepted."""

ProgressEveryOption: TypeAlias = Annotated[
    float,
    typer.Option(
        help="Seconds between progress lines when stderr is not a terminal (0: one per image).",
        min=0,
        metavar="SECONDS",
    ),
]
"""`--progress-every`, with `ProgressOption`."""

DetailOption: TypeAlias = Annotated[
    DetailChoice, typer.Option(help="Image detail sent to the model.", case_sensitive=False)
]
"""`--detail`."""

MaxSideOption: TypeAlias = Annotated[
    int | None,
    typer.Option(
        help=(
            "Long side, in pixels, of the copy sent. Default: what the features need "
            "(512 for caption, tags and smart crops; 768 with boxes; 1024 with read)."
        ),
        metavar="PIXELS",
        min=MIN_MAX_SIDE,
        show_default=False,
    ),
]
"""`--max-side`, bounded as `prepare_image` bounds it."""


class AnswerFormatChoice(StrEnum):
    """How the model writes its answer (`ImageAnalyzer(answer_format=...)`)."""

    COMPACT = "compact"
    VERBOSE = "verbose"


AnswerFormatOption: TypeAlias = Annotated[
    AnswerFormatChoice,
    typer.Option(
        help=(
            "How the model writes its answer: 'compact' (fewer output tokens) or 'verbose' "
            "(the first format, with word boxes). Same results either way."
        ),
        case_sensitive=False,
    ),
]
"""`--answer-format`."""


def _box_convention_callback(value: str | None) -> str | None:
    """Refuse a name the conventions table does not have, with the names it has."""
    from viewfinder.build.conventions import CONVENTIONS  # pure data, no model libraries

    if value is not None and value not in CONVENTIONS:
        raise typer.BadParameter(f"{value!r} is none of {', '.join(sorted(CONVENTIONS))}")
    return value


BoxConventionOption: TypeAlias = Annotated[
    str | None,
    typer.Option(
        "--box-convention",
        help=(
            "How the model writes boxes: grid-1000, gemini, qwen2.5-vl, qwen3-vl, qwen2-vl, "
            "claude, moondream, deepseek-vl2 or paligemma. Default: the model's own, "
            "from its name (qwen2.5vl:7b -> qwen2.5-vl), else grid-1000."
        ),
        metavar="NAME",
        callback=_box_convention_callback,
        show_default=False,
    ),
]
"""`--box-convention` (`box_convention=` of the analyzers)."""


class ReadGeometryChoice(StrEnum):
    """Where read's polygons come from (`ImageAnalyzer(read_geometry=...)`)."""

    MODEL = "model"
    DETECTOR = "detector"


ReadGeometryOption: TypeAlias = Annotated[
    ReadGeometryChoice,
    typer.Option(
        help=(
            "Where read's line polygons come from: 'model' (its boxes) or 'detector' (the "
            "local text detector, the model naming each region's text; needs the 'local' "
            "extra)."
        ),
        case_sensitive=False,
    ),
]
"""`--read-geometry`."""

FeaturesHelp = (
    "Features, comma-separated or repeated: caption, dense_captions, tags, objects, people, "
    "smart_crops, read (Image Analysis 4.0); categories, description, brands, adult, faces, "
    "color, image_type, landmarks (Computer Vision 3.2). Azure spellings such as "
    "denseCaptions work too. Default: the seven 4.0 features."
)
"""The help of every command's `--features`."""

MaxCandidatesOption: TypeAlias = Annotated[
    int,
    typer.Option("--max-candidates", help="Captions of the 3.2 description, 1-10.", min=1, max=10),
]
"""`--max-candidates`."""

TagHintsOption: TypeAlias = Annotated[
    bool,
    typer.Option("--tag-hints", help="3.2 tag hints: a broader word for a rare tag name."),
]
"""`--tag-hints`."""

ObjectParentsOption: TypeAlias = Annotated[
    bool,
    typer.Option("--object-parents", help="3.2 object parents: bulldog -> dog -> mammal."),
]
"""`--object-parents`."""

NoCacheOption: TypeAlias = Annotated[
    bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")
]
"""`--no-cache`."""

AllowHostOption: TypeAlias = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        help=(
            "Internal host (name or IP) image URLs may point at, repeatable or "
            "comma-separated; default VIEWFINDER_ALLOW_HOSTS. URLs to other loopback, "
            "private, link-local or cloud metadata addresses are refused."
        ),
        metavar="HOST",
        show_default=False,
    ),
]
"""`--allow-host`, for every command that fetches image URLs."""


def split_commas(values: Sequence[str]) -> list[str]:
    """Flatten repeated and comma-separated option values, dropping empty items."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def features_of(values: Sequence[str] | None) -> tuple[Feature, ...]:
    """The features named by `--features` values; the seven 4.0 ones when none are."""
    from viewfinder.analyzers.image_analysis import FeatureOptions  # the engine: lazily

    names = split_commas(values or ())
    return FeatureOptions.of(names).features if names else ALL_FEATURES


def allow_hosts_of(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """The `--allow-host` hosts, or None when none is given (VIEWFINDER_ALLOW_HOSTS then)."""
    hosts = split_commas(values or ())
    return tuple(hosts) if hosts else None


def features_callback(values: list[str] | None) -> list[str] | None:
    """typer callback: fail fast (exit 2) on an unknown feature name."""
    try:
        features_of(values)
    except InvalidOptionError as exc:
        raise typer.BadParameter(str(exc)) from None
    return values


EXIT_OK = 0
"""Every image was analysed."""
EXIT_IMAGE_FAILED = 1
"""At least one image failed; the others were still analysed."""
EXIT_USAGE = 2
"""Bad command line, or no model endpoint configured."""
EXIT_UNSERVED = 3
"""`analyze`: no image failed, but for some image none of the features asked for was served
(e.g. `-f caption` with no model endpoint: the local engine cannot caption). When some of the
asked features are served and some not, the exit status is 0 and stderr names the others."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (128 + SIGINT, the shells' convention); the output is whole lines, and
re-running the same command resumes."""


def usage_exit(console: Console, message: str) -> typer.Exit:
    """Print `error: <message>` on `console` (stderr) and return the usage exit to raise:
    `raise usage_exit(err, "...") from None`."""
    console.print(Text(f"error: {message}"), soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


RedisOption: TypeAlias = Annotated[
    str | None,
    typer.Option(
        "--redis",
        help=(
            "Redis URL (redis://[:PASSWORD@]HOST:6379/0) of what the hosts of a job share: one "
            "rate limit per model deployment, and the answer cache unless VIEWFINDER_CACHE "
            "names another. Visible in ps with a password: prefer VIEWFINDER_REDIS. Default: "
            "VIEWFINDER_REDIS, else VIEWFINDER_CACHE when it is a Redis URL."
        ),
        envvar="VIEWFINDER_REDIS",
        metavar="URL",
        show_default=False,
    ),
]
"""`--redis URL` of `batch` and `embed` (`serve` has its own help: it shares Read too)."""


class SharedRedis(NamedTuple):
    """What `--redis` / `VIEWFINDER_REDIS` / `VIEWFINDER_CACHE` mean together
    (`shared_redis`)."""

    url: str | None
    """The Redis of the state hosts share (Read store, rate limits); `None`: none."""
    cache: str | None
    """Where the answer cache goes instead of its default; `None`: leave it to
    `VIEWFINDER_CACHE` / the default directory."""
    answer_cache: str | None
    """The Redis URL the answer cache is in (`cache`, else a Redis `VIEWFINDER_CACHE`);
    `None` for a disk cache. Vectors are cached there too (`serve`'s vectorize routes,
    `embed` without `--cache`)."""


def shared_redis(given: str | None) -> SharedRedis:
    """The shared Redis and the answer cache's place, from `--redis` (`given`) and the
    environment.

    One variable is enough: `--redis` / `VIEWFINDER_REDIS`, else a Redis `VIEWFINDER_CACHE`,
    is the shared state's Redis; `--redis` with no `VIEWFINDER_CACHE` puts the answer cache
    there as well (a cache named apart, Redis or directory, stays where it says).
    """
    import os

    from viewfinder.engine.cache import CACHE_ENV, is_redis_location  # no redis-py needed

    cache_env = os.environ.get(CACHE_ENV, "").strip()
    env_redis = cache_env if is_redis_location(cache_env) else None
    url = (given or "").strip() or env_redis
    cache = None if cache_env or url is None else url
    return SharedRedis(url, cache, cache or env_redis)


def rate_limiter(
    redis: str | None,
    endpoint: str | None,
    model: str,
    rpm: float | None = None,
    tpm: float | None = None,
) -> RateLimiter:
    """This process's own `RateLimiter(rpm, tpm)`, or with `redis` (and a model `endpoint`
    to pace) one budget per deployment shared by every host and replica on that Redis
    (`viewfinder.engine.shared_limit`).

    Raises:
        ConfigurationError: `redis` without redis-py installed.
        InvalidOptionError: `redis` is not a URL redis-py can open (shown redacted).
    """
    if redis is None or endpoint is None:
        from viewfinder.engine.ratelimit import RateLimiter

        return RateLimiter(rpm, tpm)
    try:
        from viewfinder.engine.shared_limit import shared_limiter
    except ImportError as exc:
        raise ConfigurationError(
            f"--redis needs redis-py, which is {import_failure('redis', exc)}"
        ) from None
    return shared_limiter(redis, endpoint, model, rpm, tpm)
