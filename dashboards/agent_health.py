"""What the agents page asks of the store: volume, errors and the expected band of one agent over a time range.

One scan per agent and range runs in DuckDB over a bounded time window (``day`` prunes the partitions, ``ts``
the row groups) and returns a small frame, events and errors per hour and action type; the totals, the hourly
series and the expected band derive from that frame. Times are hours in UTC; the page converts them
to the viewer's timezone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import polars as pl

from agentwatch.alerts.config import GuardConfig
from agentwatch.alerts.guard import AgentControl, AgentControls, GuardDecision, decide
from agentwatch.checks.incidents import incident_number
from agentwatch.dashboards.context import query
from agentwatch.dashboards.ranges import HOUR, Window, floor_hour
from agentwatch.schemas.incidents import Incident, agents_named
from agentwatch.store.reader import UTC_TODAY_SQL

WEEK = timedelta(days=7)
RANGES: dict[str, timedelta] = {"Last 24 h": timedelta(hours=24), "Last 7 days": timedelta(days=7),
                                "Last 30 days": timedelta(days=30)}
BAND_WEEKS = 3  # the expected band: the same hour of the week over this many previous weeks
BAND_LOW, BAND_HIGH = 0.1, 0.9
LATEST_INCIDENTS = 10


def agents_by_volume() -> pl.DataFrame:
    """agent_id, events: every agent of the actions view, busiest first."""
    return query("SELECT agent_id, count(*) AS events FROM actions GROUP BY agent_id ORDER BY events DESC, agent_id")


def _edge_event(edge: str) -> datetime | None:
    """The first (edge='min') or latest ('max') event time, reading only the edge day's partition; never a time
    in the future (an event sent with a wrong clock must not move every range past the data)."""
    day = query(f"SELECT {edge}(day) AS day FROM actions WHERE day <= {UTC_TODAY_SQL}")["day"][0]
    if day is None:
        return None
    return query(f"SELECT {edge}(ts) AS ts FROM actions WHERE day = ? AND ts <= now()", day)["ts"][0]


def latest_event_at() -> datetime | None:
    """The time of the latest action event in the store (not later than now)."""
    return _edge_event("max")


def first_event_at() -> datetime | None:
    """The time of the first action event in the store (weeks before it have no data, not zero events)."""
    return _edge_event("min")


def history_window(window: Window) -> Window:
    """What one scan reads for a range: the range, the range before it and the weeks its band looks back on."""
    return Window(window.start - max(window.span, BAND_WEEKS * WEEK), window.end)


def hourly_history(agent_id: str, window: Window) -> pl.DataFrame:
    """hour, action, events, errors (status 'error') of `agent_id` over ``history_window(window)``, hours with
    events only: one scan of the store, pruned by day and time; every figure of the page derives from it."""
    scan = history_window(window)
    first_day, last_day = scan.days()
    return query(
        "SELECT time_bucket(INTERVAL 1 HOUR, ts) AS hour, action, count(*) AS events, "
        "count(*) FILTER (WHERE status = 'error') AS errors FROM actions "
        "WHERE agent_id = ? AND day BETWEEN ? AND ? AND ts >= ? AND ts < ? GROUP BY ALL ORDER BY hour, action",
        agent_id, first_day, last_day, scan.start, scan.end,
    ).with_columns(pl.col("hour").dt.convert_time_zone("UTC"))  # DuckDB may name it Etc/UTC


def model_calls(agent_id: str, window: Window) -> pl.DataFrame:
    """model, provider, calls, errors, input_tokens, output_tokens of the agent's model-call spans in the window
    (OpenTelemetry chat and embeddings spans, which are not actions), the busiest model first."""
    first_day, last_day = window.days()
    return query(
        "SELECT coalesce(model, '(not named)') AS model, coalesce(provider, '') AS provider, count(*) AS calls, "
        "count(*) FILTER (WHERE status = 'error') AS errors, coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens, "
        "coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens FROM spans "
        "WHERE agent_id = ? AND kind = 'model' AND day BETWEEN ? AND ? AND ts >= ? AND ts < ? "
        "GROUP BY ALL ORDER BY calls DESC, model", agent_id, first_day, last_day, window.start, window.end)


def span_kinds(agent_id: str, window: Window) -> dict[str, int]:
    """How many of the agent's spans besides actions fell in the window, by kind (model, agent, other, unmatched)."""
    first_day, last_day = window.days()
    counts = query("SELECT kind, count(*) AS spans FROM spans WHERE agent_id = ? AND day BETWEEN ? AND ? "
                   "AND ts >= ? AND ts < ? GROUP BY kind", agent_id, first_day, last_day, window.start, window.end)
    return dict(zip(counts["kind"].to_list(), counts["spans"].to_list(), strict=True))


def _within(history: pl.DataFrame, window: Window) -> pl.DataFrame:
    return history.filter((pl.col("hour") >= window.start) & (pl.col("hour") < window.end))


@dataclass(frozen=True)
class Totals:
    """One agent's events and errors in a range and in the range before it."""

    events: int
    errors: int
    previous_events: int
    previous_errors: int
    hours: float

    @staticmethod
    def share(errors: int, events: int) -> float | None:
        return errors / events if events else None

    @property
    def error_share(self) -> float | None:
        return self.share(self.errors, self.events)

    @property
    def previous_error_share(self) -> float | None:
        return self.share(self.previous_errors, self.previous_events)

    @property
    def per_hour(self) -> float:
        return self.events / self.hours

    @property
    def previous_per_hour(self) -> float:
        return self.previous_events / self.hours


def totals(history: pl.DataFrame, window: Window) -> Totals:
    """Events and errors in `window` and in the range before it, summed from the hourly history."""
    now, before = _within(history, window), _within(history, window.previous())
    return Totals(events=int(now["events"].sum()), errors=int(now["errors"].sum()),
                  previous_events=int(before["events"].sum()), previous_errors=int(before["errors"].sum()),
                  hours=window.hours)


def hourly_by_action(history: pl.DataFrame, window: Window) -> pl.DataFrame:
    """hour, action, events, errors: every hour of `window` x every action type the agent took in it (zero where
    it took none, so a quiet hour shows as a dip rather than a gap)."""
    counts = _within(history, window)
    hours = pl.DataFrame({"hour": pl.datetime_range(window.start, window.end - HOUR, "1h", time_unit="us",
                                                    time_zone="UTC", eager=True)})
    grid = hours.join(counts.select(pl.col("action").unique().sort()), how="cross")
    return (grid.join(counts, on=["hour", "action"], how="left")
            .with_columns(pl.col("events").fill_null(0), pl.col("errors").fill_null(0)).sort("hour", "action"))


def hourly_errors(by_action: pl.DataFrame) -> pl.DataFrame:
    """hour, events, errors, error_share (null in hours without events), from the small hourly frame."""
    return (by_action.group_by("hour").agg(pl.col("events").sum(), pl.col("errors").sum()).sort("hour")
            .with_columns(pl.when(pl.col("events") > 0).then(pl.col("errors") / pl.col("events"))
                          .alias("error_share")))


BAND_SQL = f"""
WITH past AS (SELECT hour, sum(events) AS events FROM history GROUP BY hour),
hours AS (SELECT unnest(generate_series($start::TIMESTAMPTZ, $last::TIMESTAMPTZ, INTERVAL 1 HOUR)) AS hour),
samples AS (
    SELECT h.hour, coalesce(p.events, 0) AS events
    FROM hours h CROSS JOIN range(1, {BAND_WEEKS + 1}) AS w(k)
    LEFT JOIN past p ON p.hour = h.hour - w.k * INTERVAL 7 DAY
    WHERE h.hour - w.k * INTERVAL 7 DAY >= $since
)
SELECT hour, median(events)::DOUBLE AS median, quantile_cont(events, {BAND_LOW}) AS low,
       quantile_cont(events, {BAND_HIGH}) AS high, count(*) AS weeks
FROM samples GROUP BY hour ORDER BY hour
"""


def expected_band(history: pl.DataFrame, window: Window, history_start: datetime | None) -> pl.DataFrame:
    """hour, median, low, high, weeks: per hour of `window`, the agent's total events in the same hour of the
    week over the previous BAND_WEEKS weeks (their 10th to 90th percentile and median), in DuckDB over the
    hourly history. Weeks before `history_start` (the store's first event) are left out rather than counted as
    zero; an hour with no earlier week has no band."""
    since = floor_hour(history_start) if history_start else window.end
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("history", history.select("hour", "events").to_arrow())
        table = con.sql(BAND_SQL, params={"start": window.start, "last": window.end - HOUR, "since": since}) \
            .to_arrow_table()
    finally:
        con.close()
    return pl.DataFrame(table)


def latest_incidents(agent_id: str, incidents: list[Incident], limit: int = LATEST_INCIDENTS) -> list[Incident]:
    """The incidents naming `agent_id` (subject or evidence), newest opened first."""
    named = [i for i in incidents if agent_id in agents_named(i)]
    return sorted(named, key=lambda i: (i.opened_at, incident_number(i.id)), reverse=True)[:limit]


def incidents_frame(incidents: list[Incident]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"id": i.id, "severity": i.severity, "status": i.status, "check": i.check, "opened_at": i.opened_at,
          "summary": i.summary} for i in incidents],
        schema={"id": pl.String, "severity": pl.String, "status": pl.String, "check": pl.String,
                "opened_at": pl.Datetime("us", "UTC"), "summary": pl.String},
    )


def pause_state(agent_id: str, unresolved_critical: list[Incident], controls: AgentControls,
                guard: GuardConfig) -> GuardDecision:
    """What the guard answers the agent now (the same call as ``GET /v1/agents/{agent_id}/guard``)."""
    return decide(agent_id, unresolved_critical, controls, guard)


def describe(decision: GuardDecision) -> str:
    """'allowed' or 'paused: <reason>'."""
    return "allowed" if decision.allowed else f"paused: {decision.reason}"


def controls_frame(controls: list[AgentControl]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"at": c.at, "action": c.action, "by": c.by, "reason": c.reason, "incident": c.incident_id}
         for c in controls],
        schema={"at": pl.Datetime("us", "UTC"), "action": pl.String, "by": pl.String, "reason": pl.String,
                "incident": pl.String},
    )
