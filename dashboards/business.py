"""What the routing and outcome feedback pages ask of the store: routed leads kept or reassigned, and outcomes
attributed to the agent (and version) whose action they correct or follow.

Every query reads a bounded time window (``day`` prunes the partitions, ``ts`` the row groups), reads JSON
columns only where the answer needs them, and returns a small frame. Two rules hold on every page:

- A range ends at the hour after the latest event (demo data lies in the past, so not "now"); the previous
  range is the same length just before it.
- Each range is judged only by the outcomes that had arrived by its own end, so the current range and the
  previous one are compared at the same age (older leads always look better otherwise: they had more time to
  be reassigned, to reply, to convert).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl

from agentwatch.core.sql import sql_string
from agentwatch.dashboards.context import query
from agentwatch.dashboards.ranges import Window, range_ending
from agentwatch.store.reader import latest_event_sql

RANGES: dict[str, int] = {"Last 7 days": 7, "Last 14 days": 14, "Last 28 days": 28, "Last 90 days": 90}
DEFAULT_RANGE = "Last 7 days"  # a week against the week before; longer ranges are a click away
KEEP_DAYS = (1, 3, 7, 14)
DEFAULT_KEEP_DAYS = 7
ROUTING_ACTIONS = ("lead.route", "lead.assign_owner")
CORRECTION_KINDS = ("owner_changed", "requalified", "marked_spam")
ATTRIBUTION_DAYS = 30  # an outcome without corrects_event_id follows the last agent action this many days back
ROUTING_GROUPS = {"agent": "Agent", "destination": "Route destination", "segment": "Segment", "week": "Week"}
NONE_SENT = "(not sent)"
SEGMENT = "coalesce(inputs->>'segment', decision->>'segment')"  # what the routing read, else what it decided
NO_AGENT = "(no agent action)"


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


def ts(at: datetime) -> str:
    """A TIMESTAMPTZ literal (the values are the page's own datetimes; literals let DuckDB prune on them)."""
    return f"TIMESTAMPTZ {sql_string(at.astimezone(UTC).isoformat())}"


def day(at: datetime | date) -> str:
    value = at.astimezone(UTC).date() if isinstance(at, datetime) else at
    return f"DATE {sql_string(value.isoformat())}"


def between(start: datetime, end: datetime, alias: str = "") -> str:
    """The partition and time filter of ``[start, end)`` (``alias`` qualifies the columns, e.g. ``o.``)."""
    return (f"{alias}day BETWEEN {day(start)} AND {day(end - timedelta(microseconds=1))} "
            f"AND {alias}ts >= {ts(start)} AND {alias}ts < {ts(end)}")


def period_end(w: Window, alias: str = "") -> str:
    """The end of a lead's range: each range is judged by what had arrived by its end."""
    return f"CASE WHEN {alias}period = 1 THEN {ts(w.end)} ELSE {ts(w.start)} END"


def week_of(column: str, tz: str) -> str:
    """The Monday (in the viewer's timezone) of the week holding `column`, as a DATE."""
    return f"CAST(date_trunc('week', timezone({sql_string(tz)}, {column})) AS DATE)"


def routed_leads_sql(w: Window, keep_days: int, group: str | None = None, flows: bool = False,
                     touches: bool = False) -> str:
    """CTEs ending in ``judged``: one row per (range, lead) an agent routed in the current or previous range.

    ``judged``: period (1 current, 0 previous), lead (a 64-bit hash of resource type and id), first_routed,
    agent, destination, segment, reassigned, moved_to, still_open. A lead is reassigned when an
    ``owner_changed`` outcome corrects one of its routings (``lead.route``/``lead.assign_owner``, status ok)
    within `keep_days` of it and before its range's end: a change on the same lead whose ``corrects_event_id``
    names that routing, or that names none. Kept is not reassigned. still_open: kept, but routed less than
    `keep_days` before its range's end, so a rep may still move it.

    Only what the page shows is read, as JSON parsing and string aggregates over every routing cost most:
    agent for `group` 'agent', segment for 'segment', destination for 'destination' (every lead) or for
    `flows` (only leads a rep moved). With `touches`, the same scan also reads the ok external actions and
    ``judged`` gets touched_at: the lead's first external action in the same range, if at or after its first
    routing there (a lead touched before it was routed is left out).
    """
    actions = ", ".join(sql_string(a) for a in ROUTING_ACTIONS)
    is_route = f"action IN ({actions})"
    routed_only = (lambda e: f"CASE WHEN {is_route} THEN {e} END") if touches else (lambda e: e)
    destination = group == "destination" or flows
    columns = [
        "event_key", "ts", "hash(resource_type, resource_id) AS lead", f"(ts >= {ts(w.start)})::INT AS period",
        f"{routed_only('agent_id')} AS agent_id" if group == "agent" else "NULL::VARCHAR AS agent_id",
        f"{routed_only('decision')} AS decision" if destination else "NULL::JSON AS decision",
        f"{routed_only(SEGMENT)} AS segment" if group == "segment" else "NULL::VARCHAR AS segment",
    ]
    wanted = "TRUE" if group == "destination" else "changed"
    keep = f"INTERVAL {int(keep_days)} DAY"
    if touches:
        scan = f"""
    routes AS (
        SELECT {", ".join(columns)}, {is_route} AS is_route, coalesce(external, false) AS external FROM actions
        WHERE {between(w.previous_start, w.end)} AND status = 'ok' AND ({is_route} OR external)),"""
    else:
        scan = f"""
    routes AS (
        SELECT {", ".join(columns)}, TRUE AS is_route, FALSE AS external FROM actions
        WHERE {between(w.previous_start, w.end)} AND status = 'ok' AND {is_route}),"""
    return scan + f"""
    changes AS (
        SELECT ts, hash(resource_type, resource_id) AS lead, md5_number_lower(corrects_event_id) AS corrects,
               to_value->>'$' AS moved_to
        FROM outcomes WHERE {between(w.previous_start, w.end)} AND kind = 'owner_changed'),
    marked AS (
        SELECT * EXCLUDE (decision), CASE WHEN {wanted} THEN decision->>'route_to' END AS route_to,
               CASE WHEN {wanted} THEN decision->>'owner' END AS owner
        FROM (SELECT *, lead IN (SELECT lead FROM changes) AS changed FROM routes)),
    leads AS MATERIALIZED (
        SELECT period, lead, min(ts) FILTER (WHERE is_route) AS first_routed, any_value(agent_id) AS agent,
               coalesce(any_value(route_to), any_value(owner)) AS destination, any_value(segment) AS segment,
               min(ts) FILTER (WHERE external) AS first_touch,
               list(struct_pack(event_key := event_key, routed_at := ts)) FILTER (WHERE changed AND is_route)
                   AS routings
        FROM marked GROUP BY ALL HAVING first_routed IS NOT NULL),
    hits AS (
        SELECT r.period, r.lead, arg_min(c.moved_to, c.ts) AS moved_to  -- the first move: where the rep put it
        FROM (SELECT period, lead, unnest(routings, recursive := true) FROM leads WHERE len(routings) > 0) r
        JOIN changes c ON c.lead = r.lead AND (c.corrects = r.event_key OR c.corrects IS NULL)
             AND c.ts >= r.routed_at AND c.ts <= r.routed_at + {keep} AND c.ts < {period_end(w, "r.")}
        GROUP BY ALL),
    judged AS MATERIALIZED (
        SELECT l.* EXCLUDE (first_touch, routings), h.lead IS NOT NULL AS reassigned, h.moved_to,
               CASE WHEN l.first_touch >= l.first_routed THEN l.first_touch END AS touched_at,
               h.lead IS NULL AND l.first_routed > {period_end(w, "l.")} - {keep} AS still_open
        FROM leads l LEFT JOIN hits h USING (period, lead))"""


def _group_key(by: str, tz: str) -> str:
    if by == "week":
        return f"strftime({week_of('first_routed', tz)}, '%Y-%m-%d')"
    if by not in ROUTING_GROUPS:
        raise ValueError(f"unknown grouping {by!r}: one of {', '.join(ROUTING_GROUPS)}")
    return f"coalesce({by}, {sql_string(NONE_SENT)})"


def routing_report(w: Window, keep_days: int, by: str, tz: str) -> pl.DataFrame:
    """part, key, moved_to, routed, reassigned, still_open, in one scan:

    - part 'period': key '1' (current range) and '0' (previous range);
    - part 'group': the current range by `by` (agent, destination, segment or week);
    - part 'flow': the current range's reassigned leads by routed-to destination (key) and new owner (moved_to).
    """
    counts = ("count(*) AS routed, count(*) FILTER (WHERE reassigned) AS reassigned, "
              "count(*) FILTER (WHERE still_open) AS still_open")
    return query(f"""
        WITH {routed_leads_sql(w, keep_days, group=by, flows=True)}
        SELECT 'period' AS part, period::VARCHAR AS key, NULL::VARCHAR AS moved_to, {counts}
        FROM judged GROUP BY period
        UNION ALL
        SELECT 'group', {_group_key(by, tz)}, NULL, {counts} FROM judged WHERE period = 1 GROUP BY 2
        UNION ALL
        SELECT 'flow', coalesce(destination, {sql_string(NONE_SENT)}), coalesce(moved_to, {sql_string(NONE_SENT)}),
               {counts}
        FROM judged WHERE period = 1 AND reassigned GROUP BY 2, 3""")


def has_routing() -> bool:
    """Whether any agent routed a lead (an ok lead.route or lead.assign_owner action) at all."""
    actions = ", ".join(sql_string(a) for a in ROUTING_ACTIONS)
    return bool(query(f"SELECT EXISTS (SELECT 1 FROM actions WHERE status = 'ok' AND action IN ({actions})) AS x")
                ["x"][0])


def outcome_kinds() -> pl.DataFrame:
    """kind, events, named (with corrects_event_id): how many outcomes of each kind the store holds."""
    return query("SELECT kind, count(*) AS events, count(corrects_event_id) AS named FROM outcomes GROUP BY kind")


def opportunities_sql() -> str:
    """CTE ``opps``: opportunity id (the ``to`` of an ``opportunity_created``) -> the lead it was created from,
    so a ``closed_won`` sent on the opportunity record counts for that lead."""
    return """
    opps AS (
        SELECT to_value->>'$' AS opportunity, any_value(resource_type) AS lead_type, any_value(resource_id) AS lead_id
        FROM outcomes WHERE kind = 'opportunity_created' AND to_value->>'$' IS NOT NULL GROUP BY 1)"""


def lead_of(alias: str) -> tuple[str, str]:
    """resource_type and resource_id expressions of an outcome (joined to ``opps p``), with a closed deal sent
    on an opportunity record mapped to the lead the opportunity was created from."""
    mapped = f"{alias}.kind IN ('closed_won', 'closed_lost') AND p.opportunity IS NOT NULL"
    return (f"CASE WHEN {mapped} THEN p.lead_type ELSE {alias}.resource_type END",
            f"CASE WHEN {mapped} THEN p.lead_id ELSE {alias}.resource_id END")


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
            WHERE {between(w.start, w.end, "o.")}),
        acts AS MATERIALIZED (
            SELECT * FROM (
                SELECT event_key, ts, status, agent_id, {version} AS agent_version,
                       hash(resource_type, resource_id) AS lead
                FROM actions WHERE {between(reach, w.end)})
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
            WHERE {between(w.start, w.end)} AND status = 'ok' GROUP BY ALL)
        SELECT agent_id, agent_version, coalesce(v.actions, 0) AS actions,
               {", ".join(f"coalesce(f.{name}, 0) AS {name}" for name in FEEDBACK_COLUMNS)}
        FROM feedback f FULL OUTER JOIN volume v USING (agent_id, agent_version)
        ORDER BY agent_id, agent_version""")
