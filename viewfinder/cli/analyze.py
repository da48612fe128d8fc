"""`viewfinder analyze`: images in, results on the terminal or as JSON lines."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import typer
from rich.console import Console
from rich.text import Text

from viewfinder.analyzers.features import Feature
from viewfinder.cli.options import (
    EXIT_IMAGE_FAILED,
    EXIT_OK,
    EXIT_UNSERVED,
    EXIT_USAGE,
    AllowHostOption,
    AnswerFormatChoice,
    AnswerFormatOption,
    BaseUrlOption,
    BoxConventionOption,
    DetailChoice,
    DetailOption,
    FeaturesHelp,
    MaxCandidatesOption,
    MaxSideOption,
    ModelOption,
    NoCacheOption,
    ObjectParentsOption,
    ReadGeometryChoice,
    ReadGeometryOption,
    TagHintsOption,
    allow_hosts_of,
    features_callback,
    features_of,
    split_commas,
)
from viewfinder.cli.render import display_name, render_result, unserved_lines, usage_text
from viewfinder.draw import DRAWN_FEATURES, draw, features_to_draw
from viewfinder.errors import InvalidOptionError, UserError, ViewfinderError
from viewfinder.prepare.inputs import is_url
from viewfinder.schemas.result import Usage

__all__ = ["analyze", "register"]


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
    from viewfinder.analyzers.image_analysis import FeatureOptions  # the engine: lazily

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
    from viewfinder.analyzers.image_analysis import FeatureOptions  # the engine: lazily

    try:
        return FeatureOptions.of(language=value).language
    except InvalidOptionError as exc:
        raise typer.BadParameter(str(exc)) from None


def _draw_features_callback(values: list[str] | None) -> list[str] | None:
    """Fail fast (exit 2) on a feature `--draw` cannot draw."""
    if values:
        try:
            features_to_draw(split_commas(values))
        except InvalidOptionError as exc:
            raise typer.BadParameter(str(exc)) from None
    return values


def _input_stem(source: str, index: int) -> str:
    """A file name stem for an input: a path's own, or a URL's last segment made safe."""
    if not is_url(source):
        return Path(source).stem or f"image-{index}"
    name = Path(unquote(urlsplit(source).path)).stem
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or f"image-{index}"


def _is_folder(draw_path: str) -> bool:
    """Whether `--draw` names a folder: an existing one, or a path ending in a slash."""
    return draw_path.endswith(("/", "\\")) or Path(draw_path).is_dir()


def _draw_targets(draw_path: str, images: Sequence[str]) -> list[Path]:
    """Where `--draw` saves each image's drawing, named after the input.

    A folder (an existing one, or a path ending in a slash) gets `<input stem>.png` per
    image; a file path is the one image's drawing, or with several images
    `<file stem>-<input stem><suffix>` beside it. Equal names get `-2`, `-3`, ...
    """
    folder, path = _is_folder(draw_path), Path(draw_path)
    if not folder and len(images) == 1:
        return [path]
    targets: list[Path] = []
    for index, source in enumerate(images, 1):
        stem = _input_stem(source, index)
        name = f"{stem}.png" if folder else f"{path.stem}-{stem}{path.suffix or '.png'}"
        target = (path if folder else path.parent) / name
        count = 1
        while target in targets:
            count += 1
            target = target.with_stem(f"{Path(name).stem}-{count}")
        targets.append(target)
    return targets


@contextlib.contextmanager
def _progress(console: Console, message: str) -> Iterator[None]:
    """A spinner on stderr, only when stderr is a terminal."""
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        yield


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
            help=FeaturesHelp,
            callback=features_callback,
            metavar="LIST",
            show_default=False,
        ),
    ] = None,
    model: ModelOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per image (JSON Lines).")
    ] = False,
    draw_path: Annotated[
        str | None,
        typer.Option(
            "--draw",
            help=(
                "Save an annotated copy of the image: to this file, or into this folder "
                "(DIR/) as <image name>.png per image (a file with several images: "
                "FILE-<image name>.png)."
            ),
            metavar="PATH",
        ),
    ] = None,
    draw_features: Annotated[
        list[str] | None,
        typer.Option(
            "--draw-features",
            help=f"What --draw shows, comma-separated: {', '.join(DRAWN_FEATURES)} (default: all).",
            callback=_draw_features_callback,
            metavar="LIST",
            show_default=False,
        ),
    ] = None,
    draw_min_confidence: Annotated[
        float,
        typer.Option(
            "--draw-min-confidence",
            help="Leave out of --draw what has a lower confidence (0-1).",
            min=0.0,
            max=1.0,
            metavar="FLOAT",
        ),
    ] = 0.0,
    draw_no_labels: Annotated[
        bool, typer.Option("--draw-no-labels", help="--draw shapes and the legend only.")
    ] = False,
    base_url: BaseUrlOption = None,
    detail: DetailOption = DetailChoice.HIGH,
    max_side: MaxSideOption = None,
    answer_format: AnswerFormatOption = AnswerFormatChoice.COMPACT,
    box_convention: BoxConventionOption = None,
    read_geometry: ReadGeometryOption = ReadGeometryChoice.MODEL,
    no_cache: NoCacheOption = False,
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
    max_candidates: MaxCandidatesOption = 1,
    tag_hints: TagHintsOption = False,
    object_parents: ObjectParentsOption = False,
    engine: Annotated[
        EngineOption,
        typer.Option(
            help=(
                "Who computes the features: 'model' (the endpoint; fails when none is "
                "configured), 'local' (this machine: people, smart crops, read, faces, "
                "colour, image type; needs the 'local' extra), or 'auto' (the model when "
                "an endpoint is configured, else local)."
            ),
            case_sensitive=False,
        ),
    ] = EngineOption.AUTO,
    allow_host: AllowHostOption = None,
) -> None:
    """Analyse images: the 4.0 features (caption, dense captions, tags, objects, people,
    smart crops, read) and the 3.2 ones (categories, description, brands, adult, faces,
    colour, image type, landmarks).

    Exit status: 0 when every image was analysed, 1 when any failed, 2 for usage errors, 3
    when none of the features asked for was served for some image (e.g. -f caption with no
    model endpoint; when only some are served, stderr names the others and the status is 0).
    """
    from viewfinder.analyzers.image_analysis import ImageAnalyzer  # the engine: lazily

    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    chosen: tuple[Feature, ...] = features_of(features)
    ratios = _parse_ratios(smart_crops_aspect_ratios) if smart_crops_aspect_ratios else None

    targets = _draw_targets(draw_path, images) if draw_path is not None else []
    if draw_path is not None and _is_folder(draw_path):
        try:
            Path(draw_path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            err.print(Text(f"error: --draw {draw_path}: {exc}"), soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
    try:
        analyzer = ImageAnalyzer(
            model=model,
            base_url=base_url,
            detail=detail.value,
            max_side=max_side,
            answer_format=answer_format.value,
            box_convention=box_convention,
            read_geometry=read_geometry.value,
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
                "(people, smart crops, read, faces, colour, image type; the other "
                "features need a model)",
                style="yellow",
            ),
            soft_wrap=True,
        )

    draw_options: dict[str, Any] = {
        "features": split_commas(draw_features) if draw_features else None,
        "min_confidence": draw_min_confidence,
        "labels": not draw_no_labels,
    }
    told: set[tuple[str, str]] = set()  # (feature, reason) pairs already on stderr
    failed = 0
    unserved = 0  # images for which none of the features asked for was served
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
                        max_candidates=max_candidates,
                        tag_hints=tag_hints,
                        object_parents=object_parents,
                    )
                    if targets:
                        draw(result, loaded, **draw_options).save(targets[index - 1])
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
            unserved += set(chosen) <= set(result.unserved or {})
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
    raise typer.Exit(EXIT_IMAGE_FAILED if failed else EXIT_UNSERVED if unserved else EXIT_OK)


def _emit(record: dict[str, Any]) -> None:
    """Write one JSON Lines record to stdout and flush it, so pipes see it at once."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add the `analyze` command to `app`.

    Args:
        app: The Typer application (`viewfinder.cli.app`, or one a test builds).
    """
    app.command("analyze")(analyze)
