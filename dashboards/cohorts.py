"""Which leads a business KPI may judge: cohorts of routed leads old enough to be judged, inside what the store
covers.

A lead joins the cohort of its first routing (an ok ``lead.route`` or ``lead.assign_owner``). Each KPI looks at a
fixed horizon after that first routing: the *kept window* (reassigned, replied, corrected, first touched within
it) or the *conversion window* (an opportunity, a won deal within it). So every lead is judged at the same age,
whatever range it falls in, and a cohort is *mature* once its last lead's horizon has passed:

1. The data ends at the hour after the latest event (demo data lies in the past, so not "now").
2. A KPI's current cohort is the leads first routed in the `span` that ends one horizon before the data end;
   the previous cohort is the `span` before that. Leads routed within the last horizon are *provisional*: shown
   apart, never in a headline.
3. A cohort is judged only if the store covers its whole span (its first event is at or before the cohort's
   start); otherwise the page says so rather than comparing with days it barely holds.

The store is read once per page as sums per quarter hour of first routing (every timezone offset is a multiple
of 15 minutes, and the cohorts' bounds are whole hours), so cohorts, days and weeks are sums of those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from agentwatch.core.sql import sql_string
from agentwatch.dashboards.ranges import Window, floor_hour
from agentwatch.store.reader import earliest_event_sql, latest_event_sql

ROUTING_ACTIONS = ("lead.route", "lead.assign_owner")
CORRECTION_KINDS = ("owner_changed", "requalified", "marked_spam")
QUARTER_S = 900
# A lead routed again after this long without a routing enters a new cohort (a lead that came back); a routing
# within it is a re-routing of the same lead. It also makes a lead's cohort the same whatever range is scanned.
REROUTE_GAP = timedelta(days=30)
QUALIFIED_BEFORE = timedelta(days=1)  # a qualification this long before the routing still counts (it often leads)
SEGMENT = "coalesce(inputs->>'segment', decision->>'segment')"  # what the routing read, else what it decided
SENT_TO = "coalesce(decision->>'route_to', decision->>'owner')"  # where the routing sent the lead
NONE_SENT = "(not sent)"
# What every quarter-hour row sums (all add up across quarters; see ``quarter_sums_sql``).
SUMS = {"leads": "BIGINT", "reassigned": "BIGINT", "replied": "BIGINT", "corrections": "BIGINT",
        "touched": "BIGINT", "touch_hours": "DOUBLE", "opportunity": "BIGINT", "won": "BIGINT",
        "qualified_opportunities": "BIGINT", "qualified_amount": "DOUBLE",
        # Sums of squares, for the spread of a mean or of a total (is a change beyond noise: dashboards/kpis.py).
        "touch_hours_sq": "DOUBLE", "qualified_amount_sq": "DOUBLE"}


@dataclass(frozen=True)
class Coverage:
    """What the store holds: from its first event to the hour after its latest (where every range ends)."""

    start: datetime
    end: datetime

    def holds(self, window: Window) -> bool:
        return self.start <= window.start and window.end <= self.end


def coverage_sql(first_day: date | None = None, last_day: date | None = None) -> str:
    """One row: first and latest event over actions and outcomes (the latest never in the future), reading only
    the first and the last day's partitions: `first_day` and `last_day` when the caller knows them, else the
    store's."""
    if first_day is None or last_day is None:
        return (f"SELECT least({earliest_event_sql('actions')}, {earliest_event_sql('outcomes')}) AS first, "
                f"greatest({latest_event_sql('actions')}, {latest_event_sql('outcomes')}) AS latest")
    first, last = f"DATE {sql_string(first_day.isoformat())}", f"DATE {sql_string(last_day.isoformat())}"
    views = ("actions", "outcomes")
    earliest = ", ".join(f"(SELECT min(ts) FROM {v} WHERE day = {first})" for v in views)
    latest = ", ".join(f"(SELECT max(ts) FROM {v} WHERE day = {last} AND ts <= now())" for v in views)
    return f"SELECT least({earliest}) AS first, greatest({latest}) AS latest"


def coverage_of(first: datetime | None, latest: datetime | None) -> Coverage | None:
    if first is None or latest is None:
        return None
    return Coverage(first.astimezone(UTC), floor_hour(latest) + timedelta(hours=1))


@dataclass(frozen=True)
class Cohort:
    """Leads first routed in `window`, each judged on the `horizon` after its first routing."""

    window: Window
    horizon: timedelta
    covered: bool  # the store holds the whole window


@dataclass(frozen=True)
class CohortPair:
    """A KPI's current and previous mature cohorts, and the provisional leads too young for either."""

    current: Cohort
    previous: Cohort
    provisional: Window


def lookback_note(cover: Coverage, cohort: Window) -> str | None:
    """A sentence when the store begins less than REROUTE_GAP before the cohort: a lead routed before the store
    began and again in the cohort cannot be told from a new one, so it counts as new."""
    if cover.start <= cohort.start - REROUTE_GAP:
        return None
    return (f"The store begins less than {REROUTE_GAP.days} days before this cohort, so a lead routed before it began "
            "and routed again in the cohort counts here as a new lead.")


def cohorts(cover: Coverage, span: timedelta, horizon: timedelta) -> CohortPair:
    """The mature cohort of `span` ending one `horizon` before the data end, the one before it, and the rest."""
    mature_end = cover.end - horizon
    current = Window(mature_end - span, mature_end)
    previous = current.previous()
    return CohortPair(Cohort(current, horizon, cover.holds(current)), Cohort(previous, horizon, cover.holds(previous)),
                      Window(mature_end, cover.end))


def ts(at: datetime) -> str:
    """A TIMESTAMPTZ literal (the values are the page's own datetimes; literals let DuckDB prune on them)."""
    return f"TIMESTAMPTZ {sql_string(at.astimezone(UTC).isoformat())}"


def between(window: Window, alias: str = "") -> str:
    """The partition and time filter of ``[start, end)`` (``alias`` qualifies the columns, e.g. ``o.``)."""
    first, last = window.days()
    return (f"{alias}day BETWEEN DATE {sql_string(first.isoformat())} AND DATE {sql_string(last.isoformat())} "
            f"AND {alias}ts >= {ts(window.start)} AND {alias}ts < {ts(window.end)}")


def _days(horizon: timedelta) -> str:
    return f"INTERVAL {int(horizon.total_seconds())} SECOND"


def routed_sql(scan: Window, group: str | None = None, touch_within: timedelta | None = None) -> str:
    """CTEs ending in ``leads``: one row per (lead, first_routed) first routed in `scan` (lead: a hash of
    resource type and id; first_routed: an ok ``lead.route``/``lead.assign_owner`` with no routing of the same
    lead in the REROUTE_GAP before it, so whichever range a page scans, a lead belongs to the same cohort), with
    that routing's ``grouped`` (its agent, destination or segment, as `group` asks) and ``first_key`` (its event
    key). With `touch_within`, also ``first_touch``: the lead's first ok external action at or after
    first_routed and within `touch_within` of it.

    On a big store the per-lead step is the cost, so it is one scan and one aggregation: the routings and the
    external actions are read together, a lead's touch times kept as a list beside its routings. Only the few
    leads whose routings span the gap are read again, through a window over their routings (a join with an
    empty side reads nothing). JSON is parsed only for what `group` asks (it costs most)."""
    actions = ", ".join(sql_string(a) for a in ROUTING_ACTIONS)
    is_route = f"action IN ({actions})"
    extra = {"agent": "agent_id", "segment": SEGMENT, "destination": SENT_TO}
    picked = f"CASE WHEN {is_route} THEN {extra[group]} END" if group in extra else "NULL::VARCHAR"
    reach = Window(scan.start - REROUTE_GAP, scan.end)
    gap, start = _days(REROUTE_GAP), ts(scan.start)
    # Spans compared as integers: an interval comparison normalises months and cost a second per million leads.
    narrow = f"epoch_us(last) - epoch_us(first) < {int(REROUTE_GAP / timedelta(microseconds=1))}"
    if touch_within is None:
        wanted, touched, first_touch, later_touch = is_route, "", "NULL::TIMESTAMPTZ", "NULL::TIMESTAMPTZ"
    else:
        within = _days(touch_within)
        wanted = f"({is_route} OR coalesce(external, false))"
        touched = ", list(ts) FILTER (WHERE external) AS touch_times"
        first_touch = f"list_min(list_filter(touch_times, lambda t: t >= first AND t <= first + {within}))"
        later_touch = f"list_min(list_filter(s.touch_times, lambda t: t >= e.ts AND t <= e.ts + {within}))"
    return f"""
    spans AS MATERIALIZED (
        SELECT lead, min(ts) FILTER (WHERE is_route) AS first, max(ts) FILTER (WHERE is_route) AS last,
               arg_min(grouped, ts) FILTER (WHERE is_route) AS grouped,
               arg_min(event_key, ts) FILTER (WHERE is_route) AS first_key{touched}
        FROM (SELECT event_key, ts, hash(resource_type, resource_id) AS lead, {is_route} AS is_route,
                     coalesce(external, false) AS external, {picked} AS grouped FROM actions
              WHERE {between(reach)} AND status = 'ok' AND {wanted})
        GROUP BY lead HAVING first IS NOT NULL),
    rerouted AS (
        SELECT * FROM (SELECT event_key, ts, hash(resource_type, resource_id) AS lead, {picked} AS grouped
                       FROM actions WHERE {between(reach)} AND status = 'ok' AND {is_route})
        WHERE lead IN (SELECT lead FROM spans WHERE NOT ({narrow}))),
    leads AS MATERIALIZED (
        SELECT lead, first AS first_routed, grouped, first_key, {first_touch} AS first_touch FROM spans
        WHERE {narrow} AND first >= {start}
        UNION ALL
        SELECT e.lead, e.ts, e.grouped, e.event_key, {later_touch} FROM (
            SELECT *, lag(ts) OVER (PARTITION BY lead ORDER BY ts) AS routed_before FROM rerouted) e
        JOIN spans s USING (lead)
        WHERE (e.routed_before IS NULL OR e.routed_before < e.ts - {gap}) AND e.ts >= {start})"""


def reassigned_sql(scan: Window, keep: timedelta) -> str:
    """CTE ``reassigned``: leads a rep moved (an ``owner_changed`` on the lead naming a routing in
    ``corrects_event_id``, or naming none) within `keep` of their first routing, and where the first move put
    them (``to``). Needs ``leads``."""
    actions = ", ".join(sql_string(a) for a in ROUTING_ACTIONS)
    reach = Window(scan.start - REROUTE_GAP, scan.end)
    return f"""
    changes AS MATERIALIZED (
        SELECT ts, hash(resource_type, resource_id) AS lead, to_value->>'$' AS moved_to,
               md5_number_lower(corrects_event_id) AS corrects
        FROM outcomes WHERE {between(scan)} AND kind = 'owner_changed'),
    named_routings AS (  -- the few routings the changes name, not a lookup over every routing
        SELECT event_key FROM actions WHERE {between(reach)} AND status = 'ok' AND action IN ({actions})
          AND event_key IN (SELECT corrects FROM changes WHERE corrects IS NOT NULL)),
    reassigned AS (
        SELECT l.lead, l.first_routed, arg_min(c.moved_to, c.ts) AS moved_to FROM leads l
        JOIN changes c ON c.lead = l.lead AND c.ts >= l.first_routed AND c.ts <= l.first_routed + {_days(keep)}
        WHERE c.corrects IS NULL OR c.corrects IN (SELECT event_key FROM named_routings)
        GROUP BY ALL)"""


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


def quarter_sums_sql(scan: Window, keep: timedelta, conversion: timedelta) -> str:
    """Per quarter hour of first routing (``quarter``: epoch seconds // 900) of the leads first routed in `scan`,
    the SUMS: leads; within `keep` of the first routing: reassigned, replied, corrections (rep correction
    outcomes), touched (an ok external action at or after the routing) and touch_hours (hours from the routing to
    the first of them); within `conversion`: opportunity and won (leads with one), qualified_opportunities and
    qualified_amount (opportunities, and the amounts their ``opportunity_created`` sent, of leads an agent
    qualified: an ok ``lead.qualify`` with ``decision.qualified`` true or ``after.status`` 'qualified', from
    QUALIFIED_BEFORE the routing to the end of the conversion window)."""
    kinds = ", ".join(sql_string(k) for k in ("replied", "opportunity_created", "closed_won", *CORRECTION_KINDS))
    corrections = ", ".join(sql_string(k) for k in CORRECTION_KINDS)
    lead_type, lead_id = lead_of("o")
    k, c = _days(keep), _days(conversion)
    return f"""
        WITH {routed_sql(scan, touch_within=keep)}, {reassigned_sql(scan, keep)}, {opportunities_sql()},
        outs AS (
            SELECT o.ts, o.kind, o.amount, hash({lead_type}, {lead_id}) AS lead
            FROM outcomes o LEFT JOIN opps p ON p.opportunity = o.resource_id
            WHERE {between(scan, "o.")} AND o.kind IN ({kinds})),
        flags AS (
            SELECT l.lead, l.first_routed,
                   bool_or(o.kind = 'replied' AND o.ts <= l.first_routed + {k}) AS replied,
                   count(*) FILTER (WHERE o.kind IN ({corrections}) AND o.ts <= l.first_routed + {k}) AS corrections,
                   count(*) FILTER (WHERE o.kind = 'opportunity_created' AND o.ts <= l.first_routed + {c})
                       AS opportunities,
                   sum(o.amount) FILTER (WHERE o.kind = 'opportunity_created' AND o.ts <= l.first_routed + {c})
                       AS amount,
                   sum(o.amount * o.amount) FILTER (WHERE o.kind = 'opportunity_created'
                                                      AND o.ts <= l.first_routed + {c}) AS amount_sq,
                   bool_or(o.kind = 'closed_won' AND o.ts <= l.first_routed + {c}) AS won
            FROM leads l JOIN outs o ON o.lead = l.lead AND o.ts >= l.first_routed GROUP BY ALL),
        qualified AS (
            SELECT DISTINCT l.lead, l.first_routed FROM leads l
            JOIN (SELECT hash(resource_type, resource_id) AS lead, ts FROM actions
                  WHERE {between(Window(scan.start - QUALIFIED_BEFORE, scan.end))} AND status = 'ok'
                    AND action = 'lead.qualify' AND (decision->>'qualified' = 'true' OR after->>'status' = 'qualified')
                    AND hash(resource_type, resource_id) IN (SELECT lead FROM flags WHERE opportunities > 0)) q
              ON q.lead = l.lead AND q.ts >= l.first_routed - {_days(QUALIFIED_BEFORE)}
             AND q.ts <= l.first_routed + {c})
        SELECT epoch(l.first_routed)::BIGINT // {QUARTER_S} AS quarter,
               count(*)::BIGINT AS leads, count(r.lead)::BIGINT AS reassigned,
               count(*) FILTER (WHERE f.replied)::BIGINT AS replied,
               coalesce(sum(f.corrections), 0)::BIGINT AS corrections, count(l.first_touch)::BIGINT AS touched,
               coalesce(sum(epoch(l.first_touch - l.first_routed) / 3600), 0)::DOUBLE AS touch_hours,
               count(*) FILTER (WHERE f.opportunities > 0)::BIGINT AS opportunity,
               count(*) FILTER (WHERE f.won)::BIGINT AS won,
               coalesce(sum(f.opportunities) FILTER (WHERE q.lead IS NOT NULL), 0)::BIGINT AS qualified_opportunities,
               coalesce(sum(f.amount) FILTER (WHERE q.lead IS NOT NULL), 0)::DOUBLE AS qualified_amount,
               coalesce(sum(power(epoch(l.first_touch - l.first_routed) / 3600, 2)), 0)::DOUBLE AS touch_hours_sq,
               coalesce(sum(f.amount_sq) FILTER (WHERE q.lead IS NOT NULL), 0)::DOUBLE AS qualified_amount_sq
        FROM leads l LEFT JOIN reassigned r USING (lead, first_routed) LEFT JOIN flags f USING (lead, first_routed)
        LEFT JOIN qualified q USING (lead, first_routed)
        GROUP BY 1 ORDER BY 1"""


def sums_in(quarters: pl.DataFrame, window: Window) -> dict[str, float]:
    """The SUMS of the quarters whose leads were first routed in `window` (zeros when none)."""
    start, end = window.start.timestamp() // QUARTER_S, window.end.timestamp() // QUARTER_S
    rows = quarters.filter((pl.col("quarter") >= start) & (pl.col("quarter") < end))
    present = [name for name in SUMS if name in rows.columns]
    summed = rows.select(present).sum().row(0, named=True) if rows.height else {}
    return {name: float(summed.get(name) or 0) for name in present}


def buckets(quarters: pl.DataFrame, tz: str, every: str) -> pl.DataFrame:
    """The quarters summed per local day (`every` '1d') or week starting Monday ('1w') in `tz`: ``start`` and
    ``end`` (UTC datetimes of the bucket's bounds) and the SUMS."""
    local = pl.from_epoch(pl.col("quarter") * QUARTER_S, time_unit="s").dt.replace_time_zone("UTC") \
        .dt.convert_time_zone(tz)
    present = [name for name in SUMS if name in quarters.columns]
    framed = quarters.with_columns(local.dt.truncate(every).alias("bucket")).group_by("bucket").agg(
        [pl.col(name).sum() for name in present]).sort("bucket")
    return framed.with_columns(
        pl.col("bucket").dt.convert_time_zone("UTC").alias("start"),
        pl.col("bucket").dt.offset_by(every).dt.convert_time_zone("UTC").alias("end")).drop("bucket")


def routing_report_sql(scan: Window, current: Window, keep: timedelta, by: str, tz: str) -> str:
    """part, quarter, key, moved_to, leads, reassigned, in one pass over the routings of `scan` (the per-lead
    work is the cost: done once):

    - part 'quarter': per quarter hour of first routing (``quarter``), the routing part of ``quarter_sums_sql``
      (same CTEs, so routing accuracy is one definition on every page);
    - part 'group': the leads first routed in `current` (a mature cohort) by `by` (agent, destination or segment
      of the first routing, or the week of it in `tz`), as ``key``;
    - part 'flow': those of them reassigned, by routed-to destination (``key``) and the rep's new owner
      (``moved_to``).
    """
    none = sql_string(NONE_SENT)
    if by == "week":
        key = f"strftime(CAST(date_trunc('week', timezone({sql_string(tz)}, first_routed)) AS DATE), '%Y-%m-%d')"
    else:
        key = f"coalesce(grouped, {none})"
    chosen = f"first_routed >= {ts(current.start)} AND first_routed < {ts(current.end)}"
    return f"""
        WITH {routed_sql(scan, by if by != "week" else None)}, {reassigned_sql(scan, keep)},
        judged AS MATERIALIZED (
            SELECT l.*, r.lead IS NOT NULL AS moved, r.moved_to FROM leads l
            LEFT JOIN reassigned r USING (lead, first_routed)),
        sent AS (  -- the destination of the moved leads' first routings: JSON parsed for those few rows only
            SELECT event_key AS first_key, {SENT_TO} AS destination FROM actions
            WHERE {between(current)} AND event_key IN (
                SELECT first_key FROM judged WHERE moved AND {chosen}))
        SELECT 'quarter' AS part, epoch(first_routed)::BIGINT // {QUARTER_S} AS quarter, NULL::VARCHAR AS key,
               NULL::VARCHAR AS moved_to, count(*)::BIGINT AS leads, count(*) FILTER (WHERE moved)::BIGINT AS reassigned
        FROM judged GROUP BY 2
        UNION ALL
        SELECT 'group', NULL, {key}, NULL, count(*), count(*) FILTER (WHERE moved)
        FROM judged WHERE {chosen} GROUP BY 3
        UNION ALL
        SELECT 'flow', NULL, coalesce(s.destination, {none}), coalesce(j.moved_to, {none}), count(*), count(*)
        FROM judged j LEFT JOIN sent s USING (first_key) WHERE j.moved AND {chosen} GROUP BY 3, 4"""
