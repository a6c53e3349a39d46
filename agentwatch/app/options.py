"""What several commands share: the ``--home``, ``--config`` and ``--only`` options, and how an option's time or
duration is read (a mistake names the option and ends as one ``error:`` line)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from agentwatch.core.durations import parse_duration_text
from agentwatch.core.errors import ConfigError
from agentwatch.schemas import parse_rfc3339

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Data folder (default: $AGENTWATCH_HOME or ./.agentwatch).")
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
