"""``agentwatch silence add|list|expire``: hold back notifications of matching incidents for a while."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.silences import SILENCE_KEYS, Silence, Silences, operator_name, parse_matcher
from agentwatch.app.options import HomeOption, parse_duration
from agentwatch.app.tables import Column, print_table
from agentwatch.core.durations import format_duration
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home

out = Console()
silence_app = typer.Typer(help="Silence notifications for matching incidents (they are still recorded).",
                          no_args_is_help=True)

SILENCE_COLUMNS = [Column("id"), Column("state"), Column("from (UTC)"), Column("until (UTC)"), Column("by"),
                   Column("matchers", bare=True), Column("comment", prose=True)]


def silences_of(home: Path | None) -> Silences:
    return Silences(alerts_db(Home.resolve(home)))


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


@silence_app.command("add")
def silence_add(
    match: Annotated[list[str] | None, typer.Option(
        "--match", help=f"key=pattern (repeatable; all must match); keys: {', '.join(SILENCE_KEYS)}; "
                        "patterns are shell-style globs such as schema.*")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="How long it lasts, e.g. 30m, 2h or 1d.")] = None,
    comment: Annotated[str | None, typer.Option("--comment", help="Why: shown beside the silence.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who makes it (default: $USER@host).")] = None,
    home: HomeOption = None,
) -> None:
    """Stop sending notifications of incidents matching every --match, for --for; they are still recorded."""
    if not match:
        raise ConfigError(f"give at least one --match key=pattern, e.g. --match check=volume.* "
                          f"(keys: {', '.join(SILENCE_KEYS)})")
    if for_ is None:
        raise ConfigError("give --for: how long the silence lasts, e.g. --for 2h")
    if comment is None or not comment.strip():
        raise ConfigError("give --comment: a silence must say why it exists")
    matchers = [parse_matcher(text, "--match") for text in match]
    duration = parse_duration(for_, "--for")
    if duration.total_seconds() <= 0:
        raise ConfigError(f"--for {for_!r}: a silence must last longer than 0")
    silence = silences_of(home).add(matchers, duration, comment, by or operator_name())
    out.print(f"{silence.id} silences {silence.describe()} until {_when(silence.ends_at)} UTC "
              f"({format_duration(duration)})", highlight=False, soft_wrap=True, markup=False)


@silence_app.command("list")
def silence_list(
    show_all: Annotated[bool, typer.Option("--all", help="Also silences that have ended.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, with each silence's state.")] = False,
    home: HomeOption = None,
) -> None:
    """List active and pending silences, newest first."""
    now = datetime.now(UTC)
    found = silences_of(home).list(include_expired=show_all, now=now)
    if as_json:
        out.print_json(json.dumps([as_dict(s, now) for s in found]))
        return
    rows = ([silence.id, silence.state(now), _when(silence.starts_at), _when(silence.ended_at), silence.created_by,
             " ".join(f"{key}={pattern}" for key, pattern in silence.matchers), silence.comment] for silence in found)
    print_table(SILENCE_COLUMNS, rows, title="silences")


def as_dict(silence: Silence, now: datetime) -> dict:
    """A silence as JSON with its state at `now`."""
    return {**silence.model_dump(mode="json"), "state": silence.state(now)}


@silence_app.command("expire")
def silence_expire(silence_id: Annotated[str, typer.Argument(help="The id, e.g. SIL-3.")],
                   home: HomeOption = None) -> None:
    """End a silence now: open incidents it held back are notified."""
    silence = silences_of(home).expire(silence_id)
    out.print(f"{silence.id} ended {_when(silence.ended_at)} UTC", highlight=False)
