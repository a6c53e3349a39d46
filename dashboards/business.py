"""What the business pages ask of the store besides the cohorts (dashboards/cohorts.py): what the store covers,
whether anything was routed, and outcomes attributed to the agent (and version) whose action they correct or
follow, over a range of outcome time.

Every query reads a bounded time window (``day`` prunes the partitions, ``ts`` the row groups), reads JSON
columns only where the answer needs them, and returns a small frame. A range ends at the hour after the latest
event (demo data lies in the past, so not "now").
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl

from agentwatch.core.sql import sql_string
from agentwatch.dashboards.cohorts import (
    ROUTING_ACTIONS,
    Coverage,
    between,
    coverage_of,
    coverage_sql,
    lead_of,
    opportunities_sql,
)
from agentwatch.dashboards.context import home, query
from agentwatch.dashboards.ranges import Window, range_ending
from agentwatch.store.partitions import partition_day, partition_folders
from agentwatch.store.reader import latest_event_sql

EPOCH_YEAR = 1970  # the zero-row schema part's partition, day=1970-01-01, holds no events

RANGES: dict[str, int] = {"Last 7 days": 7, "Last 14 days": 14, "Last 28 days": 28, "Last 90 days": 90}
DEFAULT_RANGE = "Last 7 days"  # a week against the week before; longer ranges are a click away
COHORT_LENGTHS: dict[str, int] = {"7 days": 7, "14 days": 14, "28 days": 28, "90 days": 90}
DEFAULT_COHORT_LENGTH = "7 days"  # a week of routed leads against the week before
KEEP_DAYS = (1, 3, 7, 14)
DEFAULT_KEEP_DAYS = 7
ATTRIBUTION_DAYS = 30  # an outcome without corrects_event_id follows the last agent action this many days back
ROUTING_GROUPS = {"agent": "Agent", "destination": "Route destination", "segment": "Segment", "week": "Week"}
NO_AGENT = "(no agent action)"


def coverage() -> Coverage | None:
    """What the store holds, from its first event to the hour after its latest; None when it holds nothing.
    Read from the first and last day partitions the folders name (asking DuckDB for those days scans every
    part's statistics: a quarter of a second on a big store)."""
    days = [day for name in ("actions", "outcomes") for folder in partition_folders(home(), name)
            if (day := partition_day(folder)) is not None and day.year > EPOCH_YEAR and day <= date.today()]
    row = query(coverage_sql(min(days), max(days))) if days else query(coverage_sql())
    if days and (row["first"][0] is None or row["latest"][0] is None):  # those days hold no rows now: ask the store
        row = query(coverage_sql())
    return coverage_of(row["first"][0], row["latest"][0])


def latest_event() -> datetime | None:
    """The latest action or outcome time in the store (never later than now), reading only the last day's
    partitions."""
    row = query(
        f"SELECT greatest({latest_event_sql('actions')}, {latest_event_sql('outcomes')}) AS latest")
    return row["latest"][0]


def zone_name(name: str) -> str:
    """The viewer's timezone if DuckDB knows it (the browser may name one it does not), else UTC."""
    known = query("SELECT count(*) AS n FROM pg_timezone_names() WHERE name = ?", name)["n"][0]
    return name if known else "UTC"


def window_ending(latest: datetime, days: int) -> Window:
    """`days` days ending with the hour that holds `latest`."""
    return range_ending(latest, timedelta(days=days))


def has_routing() -> bool:
    """Whether any agent routed a lead (an ok lead.route or lead.assign_owner action) at all."""
    actions = ", ".join(sql_string(a) for a in ROUTING_ACTIONS)
    return bool(query(f"SELECT EXISTS (SELECT 1 FROM actions WHERE status = 'ok' AND action IN ({actions})) AS x")
                ["x"][0])


def outcome_kinds() -> pl.DataFrame:
    """kind, events, named (with corrects_event_id): how many outcomes of each kind the store holds."""
    return query("SELECT kind, count(*) AS events, count(corrects_event_id) AS named FROM outcomes GROUP BY kind")


FEEDBACK_COLUMNS = {
    "requalified": "count(*) FILTER (WHERE kind = 'requalified')",
    "reassigned": "count(*) FILTER (WHERE kind = 'owner_changed')",
    "marked_spam": "count(*) FILTER (WHERE kind = 'marked_spam')",
    "meetings_booked": "count(*) FILTER (WHERE kind = 'meeting_booked')",
    "meetings_accepted": "count(*) FILTER (WHERE kind = 'meeting_accepted')",
    "meetings_cancelled": "count(*) FILTER (WHERE kind = 'meeting_cancelled')",
    "replies": "count(*) FILTER (WHERE kind = 'replied')",
    "opportunities": "count(*) FILTER (WHERE kind = 'opportunity_created')",
    "won": "count(*) FILTER (WHERE kind = 'closed_won')",
    "lost": "count(*) FILTER (WHERE kind = 'closed_lost')",
    "won_amount": "coalesce(sum(amount) FILTER (WHERE kind = 'closed_won'), 0)",
    "named": "count(*) FILTER (WHERE named)",
    "outcomes": "count(*)",
}


def outcome_feedback(w: Window, by_version: bool) -> pl.DataFrame:
    """agent_id, agent_version, actions (ok actions in the range) and one column per FEEDBACK_COLUMNS: the range's
    outcomes attributed to the agent (and version) of the action they correct (``corrects_event_id``, an action
    on the same record, any status), else of the last ok agent action on the same record before the outcome,
    within ATTRIBUTION_DAYS.
    Outcomes with neither land on agent NO_AGENT. Without `by_version`, agent_version is '*'."""
    reach = w.start - timedelta(days=ATTRIBUTION_DAYS)
    version = "coalesce(agent_version, '-')" if by_version else "'*'"
    columns = ", ".join(f"{sql} AS {name}" for name, sql in FEEDBACK_COLUMNS.items())
    return query(f"""
        WITH {opportunities_sql()},
        outs AS MATERIALIZED (
            SELECT o.event_id, o.ts, o.kind, o.amount, md5_number_lower(o.corrects_event_id) AS corrects,
                   hash({lead_of("o")[0]}, {lead_of("o")[1]}) AS lead
            FROM outcomes o LEFT JOIN opps p ON p.opportunity = o.resource_id
            WHERE {between(w, "o.")}),
        acts AS MATERIALIZED (
            SELECT * FROM (
                SELECT event_key, ts, status, agent_id, {version} AS agent_version,
                       hash(resource_type, resource_id) AS lead
                FROM actions WHERE {between(Window(reach, w.end))})
            WHERE lead IN (SELECT lead FROM outs)),
        named AS (SELECT o.event_id, a.agent_id, a.agent_version FROM outs o JOIN acts a ON a.event_key = o.corrects),
        inferred AS (
            SELECT o.event_id, a.agent_id, a.agent_version FROM outs o
            ASOF JOIN (SELECT * FROM acts WHERE status = 'ok') a ON a.lead = o.lead AND o.ts >= a.ts
            WHERE o.ts - a.ts <= INTERVAL {ATTRIBUTION_DAYS} DAY),
        attributed AS (
            SELECT o.kind, o.amount, n.event_id IS NOT NULL AS named,
                   coalesce(n.agent_id, i.agent_id, {sql_string(NO_AGENT)}) AS agent_id,
                   coalesce(n.agent_version, i.agent_version, '-') AS agent_version
            FROM outs o LEFT JOIN named n USING (event_id) LEFT JOIN inferred i USING (event_id)),
        feedback AS (SELECT agent_id, agent_version, {columns} FROM attributed GROUP BY ALL),
        volume AS (
            SELECT agent_id, {version} AS agent_version, count(*) AS actions FROM actions
            WHERE {between(w)} AND status = 'ok' GROUP BY ALL)
        SELECT agent_id, agent_version, coalesce(v.actions, 0) AS actions,
               {", ".join(f"coalesce(f.{name}, 0) AS {name}" for name in FEEDBACK_COLUMNS)}
        FROM feedback f FULL OUTER JOIN volume v USING (agent_id, agent_version)
        ORDER BY agent_id, agent_version""")
