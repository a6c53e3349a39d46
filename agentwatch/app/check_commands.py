"""The ``check``, ``backtest``, ``incidents`` and ``incident`` commands (registered on the main CLI)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import duckdb
import typer
from rich.console import Console
from rich.markup import escape

from agentwatch.alerts.replay import NotificationReplay
from agentwatch.alerts.silences import operator_name
from agentwatch.app.alert_commands import print_pass
from agentwatch.app.alerting import notify_unless_served
from agentwatch.app.config import config_for
from agentwatch.app.options import ConfigOption, HomeOption, OnlyOption, parse_duration, parse_time
from agentwatch.app.tables import INDENT, Column, print_paragraph, print_table
from agentwatch.checks import damage
from agentwatch.checks.affected import affected_text
from agentwatch.checks.engine import RunReport, backtest_steps, evaluate, incident_store
from agentwatch.checks.incident_audit import audit_scope
from agentwatch.checks.incidents import IncidentStore, dumps
from agentwatch.checks.remedies import remedy
from agentwatch.core.errors import AgentwatchError, ConfigError
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from agentwatch.store.reader import open_reader

out = Console()
err = Console(stderr=True)
incident_app = typer.Typer(help="Acknowledge, resolve or show one incident.", no_args_is_help=True)
INCIDENT_COLUMNS = [Column("id"), Column("status"), Column("severity"), Column("check"), Column("subject", bare=True),
                    Column("opened (UTC)"), Column("links"), Column("summary", prose=True, bare=True)]
BACKTEST_COLUMNS = [Column("opened (UTC)"), Column("id"), Column("severity"), Column("check"), Column("caught after"),
                    Column("began (UTC)"), Column("subject", bare=True)]
DAMAGE_DECISIONS = 4  # decisions named on the damage line, the most records first
NOTIFICATION_COLUMNS = [Column("at (UTC)"), Column("destination"), Column("event"), Column("group"),
                        Column("incidents"), Column("title", prose=True, bare=True)]


class AlertsReplay(StrEnum):
    print = "print"
    send = "send"


class Status(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


def _subject(incident: Incident) -> str:
    return " ".join(f"{k}={v}" for k, v in incident.subject.items())


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if at else "-"


def _print_failures(report: RunReport) -> None:
    for name, problem in report.failures.items():
        err.print(f"[red]check {name} failed:[/] {escape(problem)}", highlight=False, soft_wrap=True)


def check(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Evaluate data up to this RFC 3339 time.")] = None,
    only: OnlyOption = None,
    config: ConfigOption = None,
    home: HomeOption = None,
) -> None:
    """Evaluate every check once and open, update or resolve incidents."""
    resolved = Home.resolve(home)
    at = parse_time(as_of, "--as-of") if as_of else datetime.now(UTC)
    store = incident_store(resolved)
    report = evaluate(resolved, config_for(resolved, config), [at], store, only)
    store.record_run(at, report.seconds, sorted(report.failures))
    _print_failures(report)
    for _, incident in report.opened:
        print_paragraph(f"opened {incident.id} [{incident.severity}] {incident.check} {_subject(incident)}:",
                        later=INDENT)
        print_paragraph(incident.summary, indent=INDENT)
    still = [i for i in report.incidents if i.status != "resolved"]
    closed = [i for i in report.incidents if i.status == "resolved"]
    out.print(f"checked up to {_when(at)} UTC in {report.seconds:.1f} s: {len(report.opened)} opened, "
              f"{len(still)} open, {len(closed)} resolved", highlight=False)
    _notify(resolved, config)
    if report.failures:
        raise typer.Exit(1)


def backtest(
    start: Annotated[str, typer.Option(help="First evaluation time (RFC 3339).")],
    end: Annotated[str, typer.Option(help="Last evaluation time (RFC 3339).")],
    every: Annotated[str, typer.Option(help="Time between evaluations, e.g. 15m or 1h.")] = "15m",
    record: Annotated[bool, typer.Option("--record", help="Keep the incidents in the home's incident store.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the incidents as JSON.")] = False,
    alerts: Annotated[AlertsReplay | None, typer.Option(
        "--alerts", help="print: also list the notifications the config's routes would have sent; send: deliver "
                         "them too, each at its step.")] = None,
    only: OnlyOption = None,
    config: ConfigOption = None,
    home: HomeOption = None,
) -> None:
    """Replay the checks over history: when each incident would have opened, and how noisy each check is."""
    resolved = Home.resolve(home)
    steps = backtest_steps(parse_time(start, "--start"), parse_time(end, "--end"), parse_duration(every, "--every"))
    settings = config_for(resolved, config)
    if alerts and not settings.alerts.destinations:
        raise ConfigError("--alerts needs destinations under alerts.destinations in the config")
    replay = NotificationReplay(settings.alerts, resolved if alerts is AlertsReplay.send else None) if alerts \
        else None
    if record:
        report = evaluate(resolved, settings, steps, incident_store(resolved), only, on_step=replay)
    else:
        with tempfile.TemporaryDirectory(prefix="agentwatch-backtest-") as scratch:
            report = evaluate(resolved, settings, steps, IncidentStore(Home(Path(scratch)).incidents_file), only,
                              on_step=replay)
    _print_failures(report)
    if as_json:
        out.print_json(dumps(report.incidents))
        return
    print_backtest(report)
    if replay:
        print_notifications(replay, len(report.opened))


def print_notifications(replay: NotificationReplay, incidents: int) -> None:
    """The notifications of a replay in time order, and how many there were for how many incidents."""
    print_table(NOTIFICATION_COLUMNS, ([_when(note.created_at), note.destination, note.event, note.group_key,
                                        " ".join(i.id for i in note.incidents), note.title]
                                       for note in replay.notifications), title="notifications")
    out.print(f"{len(replay.notifications)} notifications for {incidents} incidents", highlight=False)
    if replay.delivery.delivered or replay.delivery.failed or replay.delivery.retrying:
        out.print(f"sent: {len(replay.delivery.delivered)} delivered, {len(replay.delivery.retrying)} to retry, "
                  f"{len(replay.delivery.failed)} failed", highlight=False)


def print_backtest(report: RunReport, console: Console | None = None) -> None:
    """The incidents a backtest opened, in time order, with how long after the start each was caught."""
    console = console or Console()
    final = {i.id: i for i in report.incidents}
    rows = []
    for at, opened in report.opened:
        incident = final.get(opened.id, opened)
        rows.append([_when(at), incident.id, incident.severity, incident.check, _duration(at - incident.started_at),
                     _when(incident.started_at), _subject(incident)])
    print_table(BACKTEST_COLUMNS, rows, title="incidents the checks would have opened", console=console)
    per_check: dict[str, int] = {}
    for _, incident in report.opened:
        per_check[incident.check] = per_check.get(incident.check, 0) + 1
    noisy = ", ".join(f"{name} {count}" for name, count in sorted(per_check.items(), key=lambda kv: -kv[1]))
    print_paragraph(f"{report.steps:,} evaluations in {report.seconds:.1f} s; incidents per check: {noisy or 'none'}",
                    later=INDENT, console=console)


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def incidents(
    status: Annotated[list[Status] | None, typer.Option(help="Only these statuses (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the incident format in docs/formats.md).")]
    = False,
    home: HomeOption = None,
) -> None:
    """List incidents, newest first."""
    found = incident_store(Home.resolve(home)).list([s.value for s in status or []])
    if as_json:
        out.print_json(dumps(found))
        return
    if not found:
        out.print("no incidents" + (f" with status {', '.join(s.value for s in status)}" if status else ""),
                  highlight=False)
        return
    print_table(INCIDENT_COLUMNS, ([incident.id, incident.status, incident.severity, incident.check,
                                    _subject(incident), _when(incident.opened_at), _links(incident), incident.summary]
                                   for incident in found))


def _links(incident: Incident) -> str:
    return " ".join([*(f"<-{i}" for i in incident.caused_by), *(f"->{i}" for i in incident.effects)])


NoteOption = Annotated[str | None, typer.Option("--note", help="Why, or what is being done: kept in the incident's "
                                                                "operator_note (and, resolving, its status_note).")]


@incident_app.command("ack")
def incident_ack(incident_id: Annotated[str, typer.Argument(help="The id, e.g. INC-12.")],
                 note: NoteOption = None, config: ConfigOption = None, home: HomeOption = None) -> None:
    """Acknowledge an incident: someone is on it."""
    resolved = Home.resolve(home)
    incident = incident_store(resolved).set_status(incident_id, "acknowledged", by=operator_name(), note=note)
    out.print(f"{incident.id} acknowledged", highlight=False)
    _notify(resolved, config)


@incident_app.command("resolve")
def incident_resolve(incident_id: Annotated[str, typer.Argument(help="The id, e.g. INC-12.")],
                     note: NoteOption = None, config: ConfigOption = None, home: HomeOption = None) -> None:
    """Resolve an incident by hand (a check that still fires opens a new one)."""
    resolved = Home.resolve(home)
    incident = incident_store(resolved).set_status(incident_id, "resolved", by=operator_name(), note=note)
    out.print(f"{incident.id} resolved", highlight=False)
    _notify(resolved, config)


def _notify(home: Home, config: Path | None) -> None:
    result = notify_unless_served(home, config)
    if result is not None:
        print_pass(result, out)


@incident_app.command("show")
def incident_show(incident_id: Annotated[str, typer.Argument(help="The id, e.g. INC-12.")],
                  home: HomeOption = None) -> None:
    """Show one incident with its evidence, its causes and its effects, what it did and what to do."""
    resolved = Home.resolve(home)
    store = incident_store(resolved)
    incident = store.get(incident_id)
    tree = damage.family(incident, store.get_many)
    lines = describe(incident, store).split("\n")
    lines += _what_it_did(resolved, incident, tree)
    lines.append(f"  suggested fix: {remedy(incident).text}")
    print_paragraph(lines[0])  # plain text, wrapped at the width: summaries hold [...], never read as markup
    for line in lines[1:]:
        print_paragraph(line.removeprefix("  "), indent="  ", later=INDENT)
    snippet = remedy(incident).config
    for line in (snippet or "").splitlines():  # YAML: its own indentation kept
        print_paragraph(line, indent=INDENT + "  " + line[:len(line) - len(line.lstrip())])


def _what_it_did(home: Home, incident: Incident, tree: list[Incident]) -> list[str]:
    """The damage line (the records acted on with bad input, or left undone by failed actions, and the decisions
    taken on them) as the dashboard's incident page counts it, and the command listing those actions."""
    found = damage.sources(tree)
    scope = audit_scope(incident, tree)
    lines = []
    if found:
        try:
            con = open_reader(home)
            try:
                sql, params = damage.summary_sql(found, DAMAGE_DECISIONS)
                rows = con.execute(sql, params).fetchall()
            finally:
                con.close()
        except (duckdb.Error, AgentwatchError) as exc:
            return [f"  damage: the store could not be read ({exc})"]
        lines.append(f"  damage: {damage_text(rows, scope.failed_words if scope else '')}")
    if scope is not None:
        lines.append(f"  audit trail: agentwatch audit --incident {incident.id} (the {scope.what})")
    return lines


def damage_text(rows: list[tuple], failed_words: str) -> str:
    """``715 leads acted on with bad input (724 actions); 420 enrolled in inbound-fast-track, ...`` from the rows of
    :func:`damage.summary_sql` (part, resource_type, failed, decision, value, records, actions, decisions)."""
    totals, decisions, more = [], [], []
    for part, kind, failed, key, value, records, actions, further in rows:
        if part == "total" and failed:
            totals.append(f"{damage.plural(kind, records)} {failed_words or 'not acted on'} (the {actions:,} "
                          "actions failed)")
        elif part == "total":
            totals.append(f"{damage.plural(kind, records)} acted on with bad input ({actions:,} actions)")
        elif part == "decision":
            decisions.append(f"{records:,} {damage.decision_words(key, value)}")
        else:
            more.append(f"and {further:,} more decisions ({damage.plural(kind, records)})")
    parts = totals + decisions + more
    return "; ".join(parts) if parts else "no record acted on with bad input"


def _began(incident: Incident) -> str:
    """When it began; for a schema change, the window the change is known to lie in: after the last value an
    agent read and by the first snapshot that shows it."""
    shown = incident.evidence.get("snapshot_at")
    if isinstance(shown, str) and datetime.fromisoformat(shown) > incident.started_at:
        return (f"between {_when(incident.started_at)} and {_when(datetime.fromisoformat(shown))} UTC (the last "
                "value read before the change, and the first snapshot that shows it)")
    return f"{_when(incident.started_at)} UTC"


def describe(incident: Incident, store: IncidentStore) -> str:
    """An incident as text, followed by the one-line summaries of its causes and effects."""
    lines = [f"{incident.id} [{incident.severity}, {incident.status}] {incident.check} {_subject(incident)}",
             f"  {incident.summary}",
             f"  began {_began(incident)}, opened {_when(incident.opened_at)} UTC, "
             f"last fired {_when(incident.last_fired_at)} UTC, affected {affected_text(incident)}"]
    if incident.status_note:
        lines.append(f"  {'resolved' if incident.status == 'resolved' else 'open'}: {incident.status_note}")
    for label, value in (("acknowledged by", incident.acknowledged_by), ("resolved by", incident.resolved_by),
                         ("note", incident.operator_note)):
        if value:
            lines.append(f"  {label}: {value}")
    for label, ids in (("caused by", incident.caused_by), ("effects", incident.effects)):
        for other_id in ids:
            other = store.get(other_id)
            lines.append(f"  {label} {other.id} [{other.severity}] {other.check}: {other.summary}")
    for key, value in incident.evidence.items():
        lines.append(f"  {key}: {value}")
    if incident.sample_event_ids:
        lines.append(f"  sample events: {', '.join(incident.sample_event_ids)}")
    return "\n".join(lines)
