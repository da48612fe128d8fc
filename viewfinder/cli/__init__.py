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

Exit codes (`viewfinder.cli.options`): 0 when every image was analysed (features not
served locally do not count as failures while some asked feature is served), 1 when any
image failed (the others are still analysed and reported), 2 for usage errors and when
`--engine model` finds no model endpoint configured (or a half-configured one, with any
engine), 3 when none of the features asked for was served for some image (`analyze -f
caption` with no model endpoint), 130 when Ctrl-C stopped `batch` or `embed` (re-run to
resume). `serve` exits 2 when it would start without keys (and without
`--no-auth`) or without a model endpoint.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from viewfinder import __version__
from viewfinder.cli import analyze as analyze_command
from viewfinder.cli import batch as batch_command
from viewfinder.cli import compare as compare_command
from viewfinder.cli import cost as cost_command
from viewfinder.cli import embed as embed_command
from viewfinder.cli import export as export_command
from viewfinder.cli import merge as merge_command
from viewfinder.cli import serve as serve_command

__all__ = ["app", "main"]
__all__ = ["app", "main"]

app = typer.Typer(
    name="viewfinder",
    help="Azure AI Vision Image Analysis 4.0 features from GPT vision models.",
    no_args_is_help=True,
    add_completion=False,
    # Locals of a crashing frame may hold API keys: never show them.
    pretty_exceptions_show_locals=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"viewfinder {__version__}")
        raise typer.Exit()


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


analyze_command.register(app)
serve_command.register(app)
batch_command.register(app)
compare_command.register(app)
cost_command.register(app)
embed_command.register(app)
export_command.register(app)
merge_command.register(app)


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
