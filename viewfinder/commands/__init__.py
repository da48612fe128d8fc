"""Sub-commands of the `viewfinder` command line, each in its own module.

A module exposes `register(app: typer.Typer) -> None`, which adds its command(s) to
`app`; `viewfinder.cli` calls it. Modules here must not import `viewfinder.cli`.
"""
