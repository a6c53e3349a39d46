"""The ``audit`` command: the audit trail from the shell, over the same selection as ``GET /v1/actions``
(:mod:`agentwatch.store.audit`): a table of the newest actions, or every matching action as CSV or JSON lines."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import duckdb
import typer
from rich.console import Console

from agentwatch.app.options import HomeOption
from agentwatch.app.tables import Column, print_paragraph, print_table
from agentwatch.checks.engine import incident_store
from agentwatch.checks.incident_audit import AuditScope, counts_sql, incident_scope, sentence
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home
from agentwatch.schemas import ACTION_STATUSES
from agentwatch.store import audit as trail
from agentwatch.store.reader import open_reader

out = Console()
OPTION_NAMES = {"since": "--since", "until": "--until", "agent_id": "--agent", "action": "--action",
                "resource_id": "--resource", "status": "--status"}


AUDIT_COLUMNS = [Column("time (UTC)"), Column("agent"), Column("action"), Column("resource"), Column("status"),
                 Column("event")]


class AuditFormat(StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


# The format's statuses, as --status choices: one list (agentwatch.schemas), not a second copy here.
ActionStatus = StrEnum("ActionStatus", [(status, status) for status in ACTION_STATUSES])  # type: ignore[misc]


def audit(
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's actions.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this time on: RFC 3339, or a duration before now "
                                                              "(48h, 7d). Default: the first action.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Up to this time, as --since. Default: the last "
                                                              "action.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action; a glob matches several "
                                                                "(lead.*).")] = None,
    resource: Annotated[str | None, typer.Option("--resource", help="Only actions on this CRM record id.")] = None,
    status: Annotated[ActionStatus | None, typer.Option("--status", help="Only actions with this status.")] = None,
    fmt: Annotated[AuditFormat, typer.Option("--format", help="table: the newest --limit actions; csv or jsonl: "
                                                              "every matching action, streamed.")] = AuditFormat.table,
    limit: Annotated[int, typer.Option("--limit", help=f"Rows of the table (1 to {trail.MAX_PAGE}).")] = 50,
    incident: Annotated[str | None, typer.Option(
        "--incident", help="Only the actions of this incident (INC-12), as the dashboard's audit link selects them: "
                           "those it and its effects took on bad input, or its failed actions, else its agent's "
                           "actions over its range. --resource narrows them.")] = None,
    home: HomeOption = None,
) -> None:
    """The audit trail: every action taken, by agent, action, resource and time, newest first."""
    if not 1 <= limit <= trail.MAX_PAGE:
        raise ConfigError(f"--limit {limit}: give 1 to {trail.MAX_PAGE}")
    selection = trail.select(datetime.now(UTC), since, until, agent, action, resource,
                             status.value if status else None, names=OPTION_NAMES)
    resolved = Home.resolve(home)
    scope = _incident_scope(resolved, incident, since, until, agent, action, status) if incident else None
    if scope is not None:
        selection = scope.selection(resource_id=selection.resource_id)
    con = open_reader(resolved)
    try:
        if fmt is AuditFormat.table:
            if scope is not None:
                counts = [(str(k), int(r), int(a)) for k, r, a in duck_rows(con, counts_sql(selection))]
                print_paragraph(f"{scope.incident_id}: {sentence(scope, counts, _utc)}")
            _table(con, selection, limit)
            return
        for chunk in trail.stream(con, selection, "ndjson" if fmt is AuditFormat.jsonl else "csv"):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    finally:
        con.close()


def _incident_scope(home: Home, incident_id: str, *others: object) -> AuditScope:
    """The actions of the incident; a ConfigError for an unknown id, another filter (the incident fixes them), or an
    incident about no agent's actions."""
    if any(other is not None for other in others):
        raise ConfigError("--incident selects its own time range, agents, actions and statuses: leave out --since, "
                          "--until, --agent, --action and --status (--resource narrows it)")
    if not home.incidents_file.exists():
        raise ConfigError(f"--incident {incident_id}: this home has no incidents yet (`agentwatch check` opens them)")
    store = incident_store(home)
    found, scope = incident_scope(incident_id, store.get, store.get_many)
    if scope is None:
        raise ConfigError(f"--incident {incident_id}: {found.check} on {found.id} is about no agent's actions (its "
                          f"evidence says what changed: `agentwatch incident show {found.id}`)")
    return scope


def duck_rows(con: duckdb.DuckDBPyConnection, query: trail.Query) -> list[tuple]:
    sql, params = query
    return con.execute(sql, params).fetchall()


def _utc(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _table(con: duckdb.DuckDBPyConnection, selection: trail.Selection, limit: int) -> None:
    found = trail.page(con, selection, limit)
    total = trail.count(con, selection)
    rows = []
    for text in found.actions:
        event = json.loads(text)
        resource = event["resource"]
        rows.append([event["ts"][:19].replace("T", " "), event["agent_id"], event["action"],
                     f"{resource['type']} {resource['id']}", event["status"], event["event_id"]])
    print_table(AUDIT_COLUMNS, rows)
    more = " (--format csv or jsonl writes all of them)" if total > len(found.actions) else ""
    out.print(f"the newest {len(found.actions):,} of {total:,} matching actions{more}", highlight=False)
    if total == 0:
        out.print(_where_the_actions_are(con, selection), highlight=False, soft_wrap=True)


def _where_the_actions_are(con: duckdb.DuckDBPyConnection, selection: trail.Selection) -> str:
    """Why nothing matched, when the time range is the reason: a store replayed from the past (the demo's month)
    holds nothing in the last 48 hours of the wall clock."""
    agents = list(selection.agents)
    where = f"WHERE agent_id IN ({', '.join('?' * len(agents))})" if agents else ""
    newest, oldest = con.execute(f"SELECT max(ts), min(ts) FROM actions {where}", agents).fetchone() or (None, None)
    whose = f"{', '.join(agents)}'s" if agents else "the store's"
    if newest is None:
        return f"{whose} actions: none in the store"
    return (f"{whose} actions run from {oldest:%Y-%m-%d %H:%M} to {newest:%Y-%m-%d %H:%M} UTC; --since and --until "
            "count back from now (give times, e.g. --since 2026-10-29T00:00:00Z)")
