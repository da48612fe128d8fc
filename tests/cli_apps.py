"""A Typer app holding one sub-command, for tests of that command alone."""

from __future__ import annotations

from collections.abc import Callable

import typer


def one_command_app(register: Callable[[typer.Typer], None]) -> typer.Typer:
    """An app with the command `register` adds, kept a sub-command as in viewfinder's app."""
    made = typer.Typer()
    register(made)

    @made.callback()
    def _root() -> None:
        """Keeps the command a sub-command (a one-command Typer app would flatten it)."""

    return made
