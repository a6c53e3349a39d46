"""``agentwatch alerts test|outbox|deliver|retry``: try a destination, see and flush the notification outbox."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import httpx
import typer
from rich.console import Console

from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.destinations import send_test
from agentwatch.alerts.outbox import STATES, Outbox, OutboxRow
from agentwatch.alerts.service import AlertPass
from agentwatch.app.alerting import alert_pass
from agentwatch.app.config import config_for
from agentwatch.app.options import ConfigOption, HomeOption
from agentwatch.app.tables import Column, print_table
from agentwatch.core.durations import parse_duration_text
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home

out = Console()
err = Console(stderr=True)
alerts_app = typer.Typer(help="Send test notifications; inspect and flush the notification outbox.",
                         no_args_is_help=True)

OUTBOX_COLUMNS = [Column("id"), Column("destination"), Column("event"), Column("group"), Column("state"),
                  Column("attempts"), Column("next attempt (UTC)"), Column("last error / note", prose=True)]


class State(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"
    superseded = "superseded"
    all = "all"


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


@alerts_app.command("test")
def test(
    destination: Annotated[str, typer.Argument(help="A destination name under alerts.destinations.")],
    config: ConfigOption = None,
    home: HomeOption = None,
) -> None:
    """Send a test notification to one destination now and say how it went."""
    resolved = Home.resolve(home)
    settings = config_for(resolved, config).alerts
    if destination not in settings.destinations:
        raise ConfigError(f"no destination is named {destination!r}; defined: "
                          f"{', '.join(sorted(settings.destinations)) or 'none (add some under alerts.destinations)'}")
    target = settings.destinations[destination]
    with httpx.Client() as client:
        outcomes = send_test(client, destination, target, settings.dashboard_url, datetime.now(UTC))
    for outcome in outcomes:
        if not outcome.delivered:
            raise ConfigError(f"test notification to {destination} ({target.type}) failed: {outcome.error}")
    out.print(f"test notification delivered to {destination} ({target.type}): HTTP "
              f"{', '.join(str(o.status) for o in outcomes)} in {sum(o.elapsed_s for o in outcomes) * 1000:.0f} ms",
              highlight=False)


@alerts_app.command("outbox")
def outbox(
    state: Annotated[State, typer.Option("--state", help="Which notifications to list.")] = State.all,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """List queued, delivered, failed and superseded notifications, with attempts and the last error."""
    box = Outbox(alerts_db(Home.resolve(home)))
    rows = box.rows(STATES if state is State.all else [state.value], limit)
    if as_json:
        out.print_json(json.dumps([_as_dict(r) for r in rows]))
        return
    table = []
    for row in rows:
        note = row.notification()
        table.append([row.id, row.destination, note.event, note.group_key, row.state, str(row.attempts),
                      _when(row.next_attempt_at) if row.state == "pending" else "-", _note(row)])
    print_table(OUTBOX_COLUMNS, table, title="notification outbox")
    counts = box.counts()
    out.print(", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False)
    if counts["failed"]:
        out.print("failed notifications are kept: `agentwatch alerts retry --all-failed` queues them again",
                  highlight=False)


def _note(row: OutboxRow) -> str:
    if row.superseded_by:
        return f"superseded by {row.superseded_by}: skipped, the later notification says more"
    return row.last_error or ""


def _as_dict(row: OutboxRow) -> dict:
    note = row.notification()
    return {"id": row.id, "destination": row.destination, "event": note.event, "group_key": note.group_key,
            "state": row.state, "attempts": row.attempts, "next_attempt_at": row.next_attempt_at.isoformat(),
            "last_error": row.last_error, "last_status": row.last_status, "created_at": row.created_at.isoformat(),
            "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
            "superseded_by": row.superseded_by,
            "incidents": [i.id for i in note.incidents]}


@alerts_app.command("deliver")
def deliver(
    wait: Annotated[str, typer.Option("--wait", help="Keep retrying due notifications for up to this long, "
                                                     "e.g. 2m (0: one attempt each).")] = "0s",
    config: ConfigOption = None,
    home: HomeOption = None,
) -> None:
    """Queue what the incidents call for and send what is due now (what `serve` does every second)."""
    resolved = Home.resolve(home)
    try:
        budget = parse_duration_text(wait).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"--wait: {exc}") from None
    deadline = time.monotonic() + budget
    total = alert_pass(resolved, config)
    box = Outbox(alerts_db(resolved))
    while box.counts()["pending"] and time.monotonic() < deadline:
        due = box.next_due()
        time.sleep(max(0.05, min(deadline - time.monotonic(), (due - datetime.now(UTC)).total_seconds() if due else 1)))
        more = alert_pass(resolved, config)
        total.queued += more.queued
        total.delivery.delivered += more.delivery.delivered
        total.delivery.failed += more.delivery.failed
    print_pass(total, out)
    counts = box.counts()
    out.print(f"outbox: {counts['pending']} pending, {counts['failed']} failed", highlight=False)
    if counts["failed"]:
        raise typer.Exit(1)


@alerts_app.command("retry")
def retry(
    ids: Annotated[list[str] | None, typer.Argument(help="Notification ids from `agentwatch alerts outbox`.",
                                                    show_default=False)] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Queue every failed notification again.")] = False,
    home: HomeOption = None,
) -> None:
    """Queue failed notifications again (after fixing the destination); `serve` or `alerts deliver` sends them."""
    if not ids and not all_failed:
        raise ConfigError("name the notifications to retry (ids from `agentwatch alerts outbox --state failed`) "
                          "or pass --all-failed")
    count = Outbox(alerts_db(Home.resolve(home))).retry(ids or None, datetime.now(UTC))
    out.print(f"{count} notification(s) queued again", highlight=False)


def print_pass(result: AlertPass, console: Console) -> None:
    """One line on what an alert pass queued and sent, when it did anything."""
    report = result.delivery
    if result.queued or report.delivered or report.retrying or report.failed:
        console.print(f"notifications: {len(result.queued)} queued, {len(report.delivered)} delivered, "
                      f"{len(report.retrying)} to retry, {len(report.failed)} failed", highlight=False)
