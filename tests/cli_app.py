"""A Typer root for testing command modules as the sub-commands `viewfinder.cli` makes them."""

from __future__ import annotations

from collections.abc import Callable

import typer


def sub_commands(*registers: Callable[[typer.Typer], None]) -> typer.Typer:
    """An app with each module's command registered (`register(app)`) under a root, so
    that even a single command stays a sub-command (`["batch", ...]`), as in the CLI."""
    application = typer.Typer()

    @application.callback()
    def main() -> None:
        """A root, so that the commands stay sub-commands as in `viewfinder.cli`."""

    for register in registers:
        register(application)
    return application
