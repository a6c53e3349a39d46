"""``agentwatch --version``: the installed package's version (what `pip show agentwatch` says)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

import agentwatch


def installed_version() -> str:
    """The version of the installed distribution; the package's own `__version__` when run from a bare tree."""
    try:
        return version("agentwatch")
    except PackageNotFoundError:
        return agentwatch.__version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"agentwatch {installed_version()}")
        raise typer.Exit()


VersionOption = Annotated[bool, typer.Option("--version", help="Print agentwatch's version and exit.",
                                             callback=_print_version, is_eager=True)]
