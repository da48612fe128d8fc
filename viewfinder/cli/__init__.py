"""The `viewfinder` command line.

```
viewfinder analyze photo.jpg https://example.com/cat.png -f caption,objects
viewfinder analyze scans/*.png --json > results.jsonl
viewfinder analyze photo.jpg --engine local     # no model endpoint: people, smart crops, read
VIEWFINDER_API_KEYS=my-key viewfinder serve --port 8080
viewfinder --version
```

`analyze --engine auto` (the default) uses the model endpoint when one is configured
and the local engine otherwise; it says on stderr which requested features were not
served, and why. `--engine model` insists on the endpoint.

Exit codes: 0 when every image was analysed (features not served locally do not count
as failures), 1 when any image failed (the others are still analysed and reported), 2
for usage errors and when `--engine model` finds no model endpoint configured (or a
half-configured one, with any engine). `serve` exits 2 when it would start without keys (and without
`--no-auth`) or without a model endpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from viewfinder import __version__
from viewfinder.analyzers import Feature, ImageAnalyzer
from viewfinder.analyzers.image_analysis import FeatureOptions
from viewfinder.cli import batch as batch_command
from viewfinder.cli import compare as compare_command
from viewfinder.cli import cost as cost_command
from viewfinder.cli.options import (
    AllowHostOption,
    allow_hosts_of,
    features_callback,
    features_of,
    split_commas,
)
from viewfinder.draw import draw
from viewfinder.errors import ConfigurationError, InvalidOptionError, UserError, ViewfinderError
from viewfinder.prepare import DEFAULT_MAX_SIDE
from viewfinder.prepare.fetch import trusted_hosts
from viewfinder.prepare.load import is_url
from viewfinder.prepare.redact import redact_url
from viewfinder.schemas.geometry import BoundingBox
from viewfinder.schemas.result import ImageAnalysisResult, Usage

__all__ = ["app", "main"]

EXIT_OK = 0
"""Every image was analysed."""
EXIT_IMAGE_FAILED = 1
"""At least one image failed; the others were still analysed."""
EXIT_USAGE = 2
"""Bad command line, or no model endpoint configured."""

_MIN_MAX_SIDE = 64

app = typer.Typer(
    name="viewfinder",
    help="Azure AI Vision Image Analysis 4.0 features from GPT vision models.",
    no_args_is_help=True,
    add_completion=False,
    # Locals of a crashing frame may hold API keys: never show them.
    pretty_exceptions_show_locals=False,
)


class DetailChoice(StrEnum):
    """OpenAI image `detail` levels, as offered on the command line."""

    HIGH = "high"
    LOW = "low"
    AUTO = "auto"


class EngineOption(StrEnum):
    """Who computes the features, as offered on the command line."""

    AUTO = "auto"
    MODEL = "model"
    LOCAL = "local"


# --- option parsing -------------------------------------------------------------------


def _parse_ratios(values: Sequence[str]) -> list[float]:
    """Parse aspect ratios given as comma-separated or repeated option values.

    Raises:
        InvalidOptionError: An item is not a number, or is outside Azure's range.
    """
    ratios: list[float] = []
    for item in split_commas(values):
        try:
            ratios.append(float(item))
        except ValueError:
            raise InvalidOptionError(f"aspect ratio {item!r} is not a number") from None
    return list(FeatureOptions.of(smart_crops_aspect_ratios=ratios).smart_crops_aspect_ratios)


def _ratios_callback(values: list[str] | None) -> list[str] | None:
    """Fail fast (exit 2) on aspect ratios that are not numbers or out of range."""
    if values:
        try:
            _parse_ratios(values)
        except InvalidOptionError as exc:
            raise typer.BadParameter(str(exc)) from None
    return values


def _language_callback(value: str) -> str:
    """Fail fast (exit 2) on something that is not a language code."""
    try:
        return FeatureOptions.of(language=value).language
    except InvalidOptionError as exc:
        raise typer.BadParameter(str(exc)) from None


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"viewfinder {__version__}")
        raise typer.Exit()


def display_name(source: str) -> str:
    """How an image argument is shown: as given, or redacted when it is a URL.

    Args:
        source: A path or an http(s) URL, as given on the command line.

    Returns:
        `source`, with user info, query string and fragment removed from URLs.
    """
    return redact_url(source) if is_url(source) else source


# --- human rendering ------------------------------------------------------------------


def _box_text(box: BoundingBox) -> str:
    return f"{box.x}, {box.y}, {box.width}, {box.height}"


def _box_table(title: str, first: str | None) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_edge=False)
    if first is not None:
        table.add_column(first)
    table.add_column("confidence", justify="right")
    table.add_column("box (x, y, w, h)", no_wrap=True)
    return table


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def usage_text(usage: Usage) -> str:
    """One line of what an analysis (or a run) spent.

    Args:
        usage: Tokens, requests and cache use.

    Returns:
        E.g. `usage: 1200 input tokens (0 cached), 80 output tokens, 1 request, 0 re-asks`.
    """
    return (
        f"usage: {usage.input_tokens} input tokens ({usage.cached_input_tokens} cached), "
        f"{usage.output_tokens} output tokens, {_plural(usage.requests, 'request')}, "
        f"{_plural(usage.reasks, 're-ask')}, cache {'hit' if usage.cache_hit else 'miss'}"
    )


def unserved_lines(unserved: dict[str, str]) -> list[str]:
    """Features not served, grouped by reason, one line per reason.

    Args:
        unserved: Feature name -> reason, as in `ImageAnalysisResult.unserved`.

    Returns:
        E.g. `["caption, tags: needs a model endpoint: set OPENAI_API_KEY, ..."]`.
    """
    by_reason: dict[str, list[str]] = {}
    for feature, reason in unserved.items():
        by_reason.setdefault(reason, []).append(feature)
    return [f"{', '.join(features)}: {reason}" for reason, features in by_reason.items()]


def render_result(name: str, result: ImageAnalysisResult) -> RenderableType:
    """A readable rendering of one result, features in `ALL_FEATURES` order.

    Args:
        name: The image as shown to the user (URLs already redacted).
        result: What the analysis found.

    Returns:
        A rich renderable.
    """
    parts: list[RenderableType] = []
    header = Text(name, style="bold cyan")
    header.append(
        f"  {result.metadata.width}x{result.metadata.height}  {result.model_version}",
        style="dim",
    )
    parts.append(header)

    if result.caption is not None:
        line = Text("caption: ", style="bold")
        line.append(result.caption.text)
        line.append(f" ({result.caption.confidence:.2f})", style="dim")
        parts.append(line)

    if result.dense_captions is not None:
        if result.dense_captions:
            table = _box_table("dense captions", "text")
            for dense in result.dense_captions:
                table.add_row(dense.text, f"{dense.confidence:.2f}", _box_text(dense.box))
            parts.append(table)
        else:
            parts.append(Text.assemble(("dense captions: ", "bold"), "none"))

    if result.tags is not None:
        line = Text("tags: ", style="bold")
        line.append(", ".join(f"{tag.name} {tag.confidence:.2f}" for tag in result.tags) or "none")
        parts.append(line)

    if result.objects is not None:
        if result.objects:
            table = _box_table("objects", "name")
            for obj in result.objects:
                table.add_row(obj.name, f"{obj.confidence:.2f}", _box_text(obj.box))
            parts.append(table)
        else:
            parts.append(Text.assemble(("objects: ", "bold"), "none"))

    if result.people is not None:
        if result.people:
            table = _box_table("people", None)
            for person in result.people:
                table.add_row(f"{person.confidence:.2f}", _box_text(person.box))
            parts.append(table)
        else:
            parts.append(Text.assemble(("people: ", "bold"), "none"))

    if result.smart_crops is not None:
        table = Table(
            title="smart crops", title_justify="left", title_style="bold", show_edge=False
        )
        table.add_column("aspect ratio", justify="right")
        table.add_column("box (x, y, w, h)", no_wrap=True)
        for crop in result.smart_crops:
            table.add_row(f"{crop.aspect_ratio:.2f}", _box_text(crop.box))
        parts.append(table)

    if result.read is not None:
        lines = result.read.lines
        if lines:
            parts.append(Text("read:", style="bold"))
            parts.extend(Text(f"  {line.text}") for line in lines)
        else:
            parts.append(Text.assemble(("read: ", "bold"), "no text"))

    for reason_line in unserved_lines(result.unserved or {}):
        parts.append(Text.assemble(("not served: ", "bold yellow"), reason_line))

    parts.append(Text(usage_text(result.usage), style="dim"))
    return Group(*parts)


# --- the commands ---------------------------------------------------------------------


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_version_callback,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Azure AI Vision Image Analysis 4.0 features from GPT vision models."""


@contextlib.contextmanager
def _progress(console: Console, message: str) -> Iterator[None]:
    """A spinner on stderr, only when stderr is a terminal."""
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        yield


@app.command()
def analyze(
    images: Annotated[
        list[str],
        typer.Argument(help="Image paths or http(s) URLs.", metavar="IMAGE", show_default=False),
    ],
    features: Annotated[
        list[str] | None,
        typer.Option(
            "--features",
            "-f",
            help=(
                "Features to extract, comma-separated or repeated: caption, dense_captions, "
                "tags, objects, people, smart_crops, read (Azure spellings such as "
                "denseCaptions work too). Default: all seven."
            ),
            callback=features_callback,
            metavar="LIST",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model (or Azure deployment); default VIEWFINDER_MODEL or gpt-4.1-mini.",
            metavar="NAME",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per image (JSON Lines).")
    ] = False,
    draw_path: Annotated[
        Path | None,
        typer.Option(
            "--draw",
            help="Save an annotated copy of the image here (several images: OUT-<n>.png).",
            metavar="PNG",
            dir_okay=False,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible endpoint; default OPENAI_BASE_URL.", metavar="URL"),
    ] = None,
    detail: Annotated[
        DetailChoice, typer.Option(help="Image detail sent to the model.", case_sensitive=False)
    ] = DetailChoice.HIGH,
    max_side: Annotated[
        int,
        typer.Option(
            help="Long side, in pixels, of the copy sent.", metavar="PIXELS", min=_MIN_MAX_SIDE
        ),
    ] = DEFAULT_MAX_SIDE,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")
    ] = False,
    gender_neutral_caption: Annotated[
        bool,
        typer.Option(
            "--gender-neutral-caption", help="'person' / 'child' instead of gendered words."
        ),
    ] = False,
    language: Annotated[
        str,
        typer.Option(
            help="Language of generated text.", metavar="CODE", callback=_language_callback
        ),
    ] = "en",
    smart_crops_aspect_ratios: Annotated[
        list[str] | None,
        typer.Option(
            help="Width/height ratios in 0.75-1.8, comma-separated or repeated.",
            callback=_ratios_callback,
            metavar="LIST",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        EngineOption,
        typer.Option(
            help=(
                "Who computes the features: 'model' (the endpoint; fails when none is "
                "configured), 'local' (this machine: people, smart crops, read; needs the "
                "'local' extra), or 'auto' (the model when an endpoint is configured, "
                "else local)."
            ),
            case_sensitive=False,
        ),
    ] = EngineOption.AUTO,
    allow_host: AllowHostOption = None,
) -> None:
    """Analyse images: caption, dense captions, tags, objects, people, smart crops, read."""
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    chosen: tuple[Feature, ...] = features_of(features)
    ratios = _parse_ratios(smart_crops_aspect_ratios) if smart_crops_aspect_ratios else None

    try:
        analyzer = ImageAnalyzer(
            model=model,
            base_url=base_url,
            detail=detail.value,
            max_side=max_side,
            cache=not no_cache,
            engine=engine.value,
            allow_hosts=allow_hosts_of(allow_host),
        )
    except UserError as exc:  # ConfigurationError above all: nothing configured
        err.print(Text(f"error: {exc}"), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    if engine is EngineOption.AUTO and analyzer.engine_name == "local":
        err.print(
            Text(
                "note: no model endpoint is configured: using the local engine "
                "(people, smart crops, read; caption, dense captions, tags and objects "
                "need a model)",
                style="yellow",
            ),
            soft_wrap=True,
        )

    told: set[tuple[str, str]] = set()  # (feature, reason) pairs already on stderr
    failed = 0
    total: Usage | None = None
    try:
        for index, source in enumerate(images, 1):
            name = display_name(source)
            try:
                with _progress(err, f"analysing {name}"):
                    loaded = analyzer.load(source)  # read once: analysis and drawing
                    result = analyzer.analyze(
                        loaded,
                        chosen,
                        smart_crops_aspect_ratios=ratios,
                        gender_neutral_caption=gender_neutral_caption,
                        language=language,
                    )
                    if draw_path is not None:
                        target = draw_path
                        if len(images) > 1:
                            target = draw_path.with_stem(f"{draw_path.stem}-{index}")
                        draw(result, loaded).save(target)
            except (ViewfinderError, OSError) as exc:
                failed += 1
                if json_output:
                    _emit(
                        {"image": name, "error": {"type": type(exc).__name__, "message": str(exc)}}
                    )
                else:
                    err.print(
                        Text(f"error: {name}: {type(exc).__name__}: {exc}", style="red"),
                        soft_wrap=True,
                    )
                continue
            total = result.usage if total is None else total + result.usage
            news = {f: r for f, r in (result.unserved or {}).items() if (f, r) not in told}
            for line in unserved_lines(news):
                err.print(Text(f"not served: {line}", style="yellow"), soft_wrap=True)
            told.update(news.items())
            if json_output:
                _emit({"image": name, "result": result.model_dump(mode="json")})
            else:
                out.print(render_result(name, result))
                out.print()
    finally:
        analyzer.close()

    if not json_output and len(images) > 1:
        done = len(images) - failed
        summary = f"{done} of {len(images)} images analysed"
        if total is not None:
            summary += f"; total {usage_text(total)}"
        out.print(Text(summary, style="bold"))
    raise typer.Exit(EXIT_IMAGE_FAILED if failed else EXIT_OK)


_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback by default).", metavar="HOST")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8080,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help=(
                "Accepted key (Ocp-Apim-Subscription-Key or Authorization: Bearer), "
                "repeatable. Visible to every user in `ps`: prefer VIEWFINDER_API_KEYS "
                "(comma-separated, the default) or --api-key-file."
            ),
            metavar="KEY",
            show_default=False,
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            help="File of accepted keys, one per line (blank and # lines ignored).",
            metavar="FILE",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without keys (trusted networks only).")
    ] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help=(
                "Internal host image URLs may point at (repeatable); others are refused. "
                "Default: VIEWFINDER_ALLOW_HOSTS, comma-separated."
            ),
            metavar="HOST",
            show_default=False,
        ),
    ] = None,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="PEM certificate: serve HTTPS.", metavar="FILE", dir_okay=False),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(help="PEM private key of --ssl-certfile.", metavar="FILE", dir_okay=False),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model (or Azure deployment); default VIEWFINDER_MODEL or gpt-4.1-mini.",
            metavar="NAME",
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible endpoint; default OPENAI_BASE_URL.", metavar="URL"),
    ] = None,
) -> None:
    """Serve the Image Analysis 4.0 REST API (POST /computervision/imageanalysis:analyze).

    Point Microsoft's SDK at http://HOST:PORT with one of the keys. Image URLs may
    only point at public addresses, plus the --allow-host hosts. Give keys in
    VIEWFINDER_API_KEYS or --api-key-file: other users can read --api-key in `ps`.
    """
    err = Console(stderr=True, highlight=False)

    def fail(message: str) -> typer.Exit:
        err.print(Text(f"error: {message}"), soft_wrap=True)
        return typer.Exit(EXIT_USAGE)

    try:
        from viewfinder.compat import server
    except ImportError as exc:
        raise fail(str(exc)) from None

    keys = [key.strip() for key in api_key or () if key.strip()]
    if api_key:
        err.print(
            Text(
                "warning: --api-key is visible in ps to every user of this machine; "
                "use VIEWFINDER_API_KEYS or --api-key-file",
                style="yellow",
            ),
            soft_wrap=True,
        )
    if api_key_file is not None:
        try:
            keys += _read_key_file(api_key_file)
        except UserError as exc:
            raise fail(str(exc)) from None
    if not api_key and api_key_file is None:
        keys = split_commas([os.environ.get("VIEWFINDER_API_KEYS", "")])
    if ssl_keyfile is not None and ssl_certfile is None:
        raise fail("--ssl-keyfile needs --ssl-certfile")
    settings = server.ServerSettings(
        api_keys=tuple(keys), no_auth=no_auth, allow_hosts=trusted_hosts(allow_hosts_of(allow_host))
    )
    try:
        settings.validate()  # before the analyzer: an open server is refused first
        analyzer = ImageAnalyzer(model=model, base_url=base_url)
    except UserError as exc:
        raise fail(str(exc)) from None
    settings = dataclasses.replace(settings, analyzer=analyzer)

    scheme = "https" if ssl_certfile else "http"
    if scheme == "http" and host not in _LOOPBACK_HOSTS:
        err.print(
            Text(
                f"warning: plain HTTP on {host}: keys and images cross the network "
                "unencrypted; use --ssl-certfile/--ssl-keyfile or a TLS proxy",
                style="yellow",
            ),
            soft_wrap=True,
        )
    auth = "no key (--no-auth)" if no_auth else _plural(len(keys), "key")
    err.print(
        Text(f"viewfinder serve: {scheme}://{host}:{port}, {auth}, model {analyzer.model}"),
        soft_wrap=True,
    )
    server.run(
        settings,
        host=host,
        port=port,
        ssl_certfile=None if ssl_certfile is None else str(ssl_certfile),
        ssl_keyfile=None if ssl_keyfile is None else str(ssl_keyfile),
    )


def _read_key_file(path: Path) -> list[str]:
    """The keys in `path`, one per line; blank lines and `#` comments are skipped.

    Raises:
        ConfigurationError: The file cannot be read or holds no key (never quoted).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigurationError(f"cannot read --api-key-file {path}: {reason}") from None
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise ConfigurationError(f"--api-key-file {path} holds no key")
    return keys


def _emit(record: dict[str, Any]) -> None:
    """Write one JSON Lines record to stdout and flush it, so pipes see it at once."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


batch_command.register(app)
compare_command.register(app)
cost_command.register(app)


class _CacheWarnings(logging.Handler):
    """The answer cache's warnings (a damaged store moved aside, the cache turned off) on
    stderr.

    The library only logs them, and its NullHandler keeps them silent where no logging is
    configured; someone at a terminal should still see the line that says where their
    damaged cache went. Silent when viewfinder's logging is configured (`serve` does
    that), so nothing is printed twice.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        handlers = logging.getLogger("viewfinder").handlers
        if any(not isinstance(handler, logging.NullHandler) for handler in handlers):
            return
        Console(stderr=True, highlight=False).print(
            Text(f"warning: {record.getMessage()}", style="yellow"), soft_wrap=True
        )


def main() -> None:
    """Entry point of the `viewfinder` console script."""
    cache_log = logging.getLogger("viewfinder.cache")
    warnings = _CacheWarnings()
    cache_log.addHandler(warnings)
    try:
        app()
    finally:
        cache_log.removeHandler(warnings)
