"""What several commands share: the ``--home``, ``--config`` and ``--only`` options, and how an option's time or
duration is read (a mistake names the option and ends as one ``error:`` line).

``--home`` holds the one rule on creating a home: only the commands that write events or keys (``CREATES_HOME``)
may create it; every other command refuses a home that holds no store, so a mistyped path is an error rather than
an empty home reported all clear."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from agentwatch.core.durations import parse_duration_text
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home
from agentwatch.schemas import parse_rfc3339

# command paths (and their subcommands)
CREATES_HOME = (("ingest",), ("serve",), ("keys", "create"), ("demo",), ("schema", "poll"))


def _command_path(ctx: typer.Context) -> tuple[str, ...]:
    """The names of the command and its groups below the program, e.g. ("keys", "create")."""
    names: list[str] = []
    current: Any = ctx  # typer's and click's Context types differ for mypy; parents are plain click contexts
    while current.parent is not None:
        names.insert(0, current.info_name or "")
        current = current.parent
    return tuple(names)


def _home_exists_unless_created(ctx: typer.Context, value: Path | None) -> Path | None:
    """Refuse a home without a store unless the command may create one."""
    path = _command_path(ctx)
    if not ctx.resilient_parsing and not any(path[:len(p)] == p for p in CREATES_HOME):
        Home.existing(value)
    return value


HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Data folder (default: $AGENTWATCH_HOME or ./.agentwatch); it must "
                                             "exist except for ingest, serve, keys create, demo and schema poll, which "
                                             "create it.",
                              callback=_home_exists_unless_created)
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Config file (default: agentwatch.yaml in the home).")
]
OnlyOption = Annotated[
    list[str] | None, typer.Option("--only", help="Run only this check (repeatable), e.g. --only quality.null_spike.")
]


def parse_duration(text: str, option: str) -> timedelta:
    """``15m``, ``1h``, ``30s``, ``2d`` as a timedelta."""
    try:
        return parse_duration_text(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r}: give a duration such as 30s, 15m, 1h or 1d") from None


def parse_time(value: str, option: str) -> datetime:
    """An RFC 3339 time given to `option`."""
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
