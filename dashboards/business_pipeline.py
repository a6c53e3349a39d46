"""What the pipeline quality page asks of the store, and its plain note of where reply rate and quality disagree.

The cohort of a range is the leads the agents routed in it (see ``business.routed_leads_sql``). Every KPI is a
number about that cohort, counting only the outcomes that arrived between a lead's first routing in the range
and the range's end, so the current and previous ranges are compared at the same age.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from agentwatch.core.sql import sql_string
from agentwatch.dashboards.business import (
    CORRECTION_KINDS,
    DEFAULT_KEEP_DAYS,
    between,
    lead_of,
    opportunities_sql,
    period_end,
    routed_leads_sql,
    week_of,
)
from agentwatch.dashboards.context import query
from agentwatch.dashboards.ranges import Window

# The weekly sums; the cohort is first counted per quarter hour of first routing, so the viewer's week (every
# timezone offset is a multiple of 15 minutes) is worked out for a few thousand quarters, not for every lead.
SUMS = {"leads": "BIGINT", "reassigned": "BIGINT", "replied": "BIGINT", "opportunity": "BIGINT", "won": "BIGINT",
        "corrections": "BIGINT", "touched": "BIGINT", "touch_minutes": "DOUBLE", "qualified_opportunities": "BIGINT",
        "qualified_amount": "DOUBLE"}
SHARE_FLAT_POINTS = 1.0  # a share moving less than this many points is flat
RELATIVE_FLAT = 0.10  # any other KPI moving less than this fraction of its previous value is flat


def pipeline_report(w: Window, tz: str, keep_days: int = DEFAULT_KEEP_DAYS) -> pl.DataFrame:
    """period (1 current, 0 previous), week (a Monday in `tz`; null for the previous range), and per cohort:
    leads, reassigned, replied, opportunity, won (leads with at least one), corrections (rep correction
    outcomes), touched (leads with an external action) and touch_minutes (their minutes from routing to it),
    qualified_opportunities and qualified_amount (opportunities created from leads an agent qualified, and the
    amounts their opportunity_created outcomes sent: known when created, so fair to both ranges). Every column
    adds up across weeks (see ``totals``)."""
    kinds = ", ".join(sql_string(k) for k in ("replied", "opportunity_created", "closed_won", *CORRECTION_KINDS))
    corrections = ", ".join(sql_string(k) for k in CORRECTION_KINDS)
    lead_type, lead_id = lead_of("o")
    return query(f"""
        WITH {routed_leads_sql(w, keep_days, touches=True)},
        {opportunities_sql()},
        outs AS (
            SELECT o.ts, o.kind, o.amount, hash({lead_type}, {lead_id}) AS lead
            FROM outcomes o LEFT JOIN opps p ON p.opportunity = o.resource_id
            WHERE {between(w.previous_start, w.end, "o.")} AND o.kind IN ({kinds})),
        qualified AS (
            SELECT DISTINCT lead FROM (
                SELECT hash(resource_type, resource_id) AS lead, decision, after FROM actions
                WHERE {between(w.previous_start - timedelta(days=1), w.end)} AND status = 'ok'
                  AND action = 'lead.qualify'
                  AND hash(resource_type, resource_id) IN (SELECT lead FROM outs WHERE kind = 'opportunity_created'))
            WHERE decision->>'qualified' = 'true' OR after->>'status' = 'qualified'),
        flags AS (
            SELECT j.period, j.lead, bool_or(o.kind = 'replied') AS replied,
                   count(*) FILTER (WHERE o.kind = 'opportunity_created') AS opportunities,
                   sum(o.amount) FILTER (WHERE o.kind = 'opportunity_created') AS amount,
                   bool_or(o.kind = 'closed_won') AS won,
                   count(*) FILTER (WHERE o.kind IN ({corrections})) AS corrections
            FROM judged j JOIN outs o ON o.lead = j.lead AND o.ts >= j.first_routed AND o.ts < {period_end(w, "j.")}
            GROUP BY ALL),
        quarters AS (
            SELECT j.period, epoch(j.first_routed)::BIGINT // 900 AS quarter,
                   count(*) AS leads, count(*) FILTER (WHERE j.reassigned) AS reassigned,
                   count(*) FILTER (WHERE f.replied) AS replied,
                   count(*) FILTER (WHERE f.opportunities > 0) AS opportunity, count(*) FILTER (WHERE f.won) AS won,
                   sum(f.corrections) AS corrections, count(j.touched_at) AS touched,
                   sum(epoch(j.touched_at - j.first_routed) / 60) AS touch_minutes,
                   sum(f.opportunities) FILTER (WHERE q.lead IS NOT NULL) AS qualified_opportunities,
                   sum(f.amount) FILTER (WHERE q.lead IS NOT NULL) AS qualified_amount
            FROM judged j LEFT JOIN flags f USING (period, lead) LEFT JOIN qualified q ON q.lead = j.lead
            GROUP BY ALL)
        SELECT period, CASE WHEN period = 1 THEN {week_of("to_timestamp(quarter * 900)", tz)} END AS week,
               {", ".join(f"coalesce(sum({c}), 0)::{t} AS {c}" for c, t in SUMS.items())}
        FROM quarters GROUP BY ALL ORDER BY 1, 2""")


def totals(report: pl.DataFrame) -> dict[int, dict]:
    """Each range's sums over its weeks (a handful of rows), by period."""
    summed = report.drop("week").group_by("period").sum()
    return {row["period"]: row for row in summed.iter_rows(named=True)}


@dataclass(frozen=True)
class Kpi:
    """One quality KPI in the current range and the previous one."""

    key: str
    label: str
    now: float | None
    before: float | None
    higher_is_better: bool
    unit: str  # 'share' (0..1), 'per100', 'minutes', 'money', 'count'

    def change(self) -> float | None:
        """Points for shares, else the relative change; None when either side is unknown."""
        if self.now is None or self.before is None:
            return None
        if self.unit == "share":
            return (self.now - self.before) * 100
        if self.before == 0:
            return 0.0 if self.now == 0 else float("inf")
        return (self.now - self.before) / abs(self.before)

    def direction(self) -> int:
        """+1 rose, -1 fell, 0 flat (or unknown)."""
        change = self.change()
        if change is None:
            return 0
        flat = SHARE_FLAT_POINTS if self.unit == "share" else RELATIVE_FLAT
        return 0 if abs(change) < flat else (1 if change > 0 else -1)

    def verdict(self) -> int:
        """+1 better, -1 worse, 0 flat."""
        return self.direction() * (1 if self.higher_is_better else -1)

    def show(self, value: float | None) -> str:
        if value is None:
            return "-"
        return {"share": f"{value:.1%}", "per100": f"{value:.1f}", "minutes": minutes_text(value),
                "money": money_text(value), "count": f"{value:,.0f} opps"}[self.unit]

    def moved(self) -> str:
        """'rose 4.0 points', 'fell from 12 min to 18 min', 'held steady (+0.3 points)'."""
        change, direction = self.change(), self.direction()
        if change is None:
            return "cannot be compared (no value in one of the ranges)"
        verb = {1: "rose", -1: "fell", 0: "held steady"}[direction]
        if self.unit == "share":
            return f"{verb} {abs(change):.1f} points" if direction else f"{verb} ({change:+.1f} points)"
        return f"{verb} from {self.show(self.before)} to {self.show(self.now)}" if direction else verb


def minutes_text(value: float) -> str:
    if value < 90:
        return f"{value:.0f} min"
    if value < 48 * 60:
        return f"{value / 60:.1f} h"
    return f"{value / 1440:.1f} days"


def money_text(value: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"${value / limit:.1f}{suffix}"
    return f"${value:,.0f}"


def kpis(report: pl.DataFrame) -> list[Kpi]:
    """Reply rate first, then the quality KPIs, each for the current range and the previous one."""
    summed = totals(report)
    return kpis_of(summed.get(1), summed.get(0))


def kpis_of(now: dict | None, before: dict | None) -> list[Kpi]:
    def value(row: dict | None, key: str) -> float | None:
        if row is None or not row["leads"]:
            return None
        leads = row["leads"]
        if key == "reply_rate":
            return row["replied"] / leads
        if key == "routing_accuracy":
            return 1 - row["reassigned"] / leads
        if key == "corrections_per_100":
            return row["corrections"] / leads * 100
        if key == "minutes_to_first_action":
            return row["touch_minutes"] / row["touched"] if row["touched"] else None
        if key == "conversion_to_opportunity":
            return row["opportunity"] / leads
        if key == "conversion_to_won":
            return row["won"] / leads
        return row[key]

    with_amounts = any(row and row["qualified_amount"] for row in (now, before))
    pipeline = ("qualified_amount", "money") if with_amounts else ("qualified_opportunities", "count")
    specs = [("reply_rate", "Reply rate", True, "share"),
             (pipeline[0], "Qualified pipeline", True, pipeline[1]),
             ("routing_accuracy", "Routing accuracy", True, "share"),
             ("minutes_to_first_action", "Time to first action", False, "minutes"),
             ("corrections_per_100", "Rep corrections per 100 leads", False, "per100"),
             ("conversion_to_opportunity", "Conversion to opportunity", True, "share"),
             ("conversion_to_won", "Conversion to won", True, "share")]
    return [Kpi(key, label, value(now, key), value(before, key), better, unit) for key, label, better, unit in specs]


WORSE = {
    "routing_accuracy": "more replies are coming from leads routed to the wrong rep",
    "corrections_per_100": "reps are correcting the agents more often, so replies flatter them",
    "minutes_to_first_action": "leads wait longer for their first touch",
    "conversion_to_opportunity": "the extra replies are not turning into opportunities",
    "conversion_to_won": "the extra replies are not turning into won deals",
    "qualified_amount": "the extra replies are not adding pipeline from agent-qualified leads",
    "qualified_opportunities": "the extra replies are not adding pipeline from agent-qualified leads",
}
BETTER = {
    "routing_accuracy": "more leads reach the right rep",
    "corrections_per_100": "reps correct the agents less",
    "minutes_to_first_action": "leads are touched sooner",
    "conversion_to_opportunity": "more leads become opportunities",
    "conversion_to_won": "more leads close as won",
    "qualified_amount": "more pipeline comes from agent-qualified leads",
    "qualified_opportunities": "more pipeline comes from agent-qualified leads",
}


def disagreements(items: list[Kpi]) -> list[str]:
    """One sentence per quality KPI that moved against the reply rate (or moved while it held steady)."""
    reply, quality = items[0], items[1:]
    if reply.change() is None:
        return []
    found = []
    for kpi in quality:
        verdict = kpi.verdict()
        if kpi.change() is None or verdict == 0 or verdict == reply.direction():
            continue
        head = f"Reply rate {reply.moved()} while {kpi.label.lower()} {kpi.moved()}"
        if reply.direction() == 0:
            found.append(f"{head}: the reply rate alone does not show it.")
        elif verdict < 0:
            found.append(f"{head}: {WORSE[kpi.key]}.")
        else:
            found.append(f"{head}: fewer replies, but {BETTER[kpi.key]}.")
    return found


def note(items: list[Kpi]) -> tuple[str, str]:
    """The plain note under the KPIs, and its verdict: 'disagree', 'agree' or 'nothing' (no previous range)."""
    reply = items[0]
    if reply.change() is None:
        return "No leads were routed in the previous range, so there is nothing to compare yet.", "nothing"
    found = disagreements(items)
    if found:
        return " ".join(found), "disagree"
    return (f"Reply rate {reply.moved()} and the quality KPIs agree: none moved the other way by more than "
            f"{SHARE_FLAT_POINTS:g} point (shares) or {RELATIVE_FLAT:.0%} (the others)."), "agree"
