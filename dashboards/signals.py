"""The signal behind an incident, around its start: what happened (actual) against what usually happens (band).

One DuckDB query per chart, over a time window only (the ``day`` partitions prune the files), aggregated to
one row per bucket in SQL; buckets are epoch integers, which DuckDB groups much faster than timestamps.

* agent x action (volume, drift, policy, outcome checks): that agent x action's events per 5 minutes; the band
  is, per hour of the week, the median and 10th-90th percentile of the 5-minute counts over the 3 weeks before
  (an hour of the week seen in fewer than 2 of them uses the same hour of the other weekdays, or weekend days).
* errors.error_burst: the share of that agent x action's events that failed, per 5 minutes, same band.
* a field (null spikes, schema changes): per hour, the reads of the input key by the agent x actions that read it,
  split into reads with a value and reads that came back null or missing (the chart stacks the two counts, so values
  vanishing at a rename show); also the null share, with its band per hour of the day over the 7 days before.
* otherwise the events of the agents the incident names, per 5 minutes.

The window runs from 24 hours before ``started_at`` to 6 hours after the resolution (or after the last time the
check fired, while the incident is open), never past now, at most 7 days; longer windows use hourly buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from agentwatch.core.sql import sql_string
from agentwatch.dashboards import context
from agentwatch.dashboards.agent_health import latest_event_at
from agentwatch.schemas.incidents import Incident, agents_named

BEFORE = timedelta(hours=24)  # shown before started_at
AFTER = timedelta(hours=6)  # shown after the resolution or the last firing
MAX_SPAN = timedelta(days=7)
FIVE_MINUTES = timedelta(minutes=5)
HOUR = timedelta(hours=1)
FINE_SPAN = timedelta(days=4)  # windows up to this long use 5-minute buckets, longer ones hourly
COUNT_HISTORY = timedelta(days=21)  # the band of counts and error shares: same hour of week, 3 weeks before
SHARE_HISTORY = timedelta(days=7)  # the band of null shares: same hour of day, the week before
MONDAY_OFFSET_HOURS = 72  # 1970-01-01 was a Thursday: hours since epoch + 72 counts hours from a Monday
US = 1_000_000
SCOPES = ("inputs", "before", "after")  # the JSON columns a field can be read from
DAY = timedelta(days=1)
ROW_BUDGET = 3_000_000  # events in the null-share chart's days at most (their JSON is decoded: ~0.1 s a million)
MIN_HISTORY_DAYS = 2
KEPT_WINDOW_DAYS = 2  # the day before the start and the day after are always charted
READERS_RECENT = timedelta(hours=6)  # where the readers of a field are looked for first
MIN_WEEKS = 2  # an hour of the week seen in fewer weeks of history takes its band from the same hour of same-kind days


@dataclass(frozen=True)
class Signal:
    """A chart's data: ``bucket`` (UTC), ``actual``, ``low``, ``expected``, ``high`` (null where unknown); a field's
    reads also have ``reads``, ``nulls`` and ``values`` per bucket (``actual`` is then the null share)."""

    title: str
    measure: str  # the y axis: "events per 5 minutes", "share of reads null", ...
    frame: pl.DataFrame
    started_at: datetime
    band: str  # how the band was made, in words
    share: bool = False  # values are shares in [0, 1]
    reads: bool = False  # a field's reads: charted as counts with a value and null, stacked


def window(incident: Incident, now: datetime | None = None) -> tuple[datetime, datetime]:
    """From 24 h before the start to 6 h after the resolution or last firing (not past now; at most 7 days),
    the end on a 5-minute boundary so a page reloaded within 5 minutes asks the same query (cached)."""
    now = now or datetime.now(UTC)
    start = incident.started_at - BEFORE
    end = min(now, (incident.resolved_at or incident.last_fired_at) + AFTER, start + MAX_SPAN)
    end = _floor(max(end, incident.started_at + HOUR), FIVE_MINUTES)
    return _floor(start, FIVE_MINUTES), end


def signal_for(incident: Incident, now: datetime | None = None) -> Signal | None:
    """The signal that shows this incident best, or None when its subject has no event signal (e.g. a schema
    change no agent reads, an expectation over outcomes). The window stops at the store's latest action: counts
    after it would read as a drop to zero where there is only no data yet."""
    latest = latest_event_at()
    now = min(now or datetime.now(UTC), latest) if latest else now
    start, end = window(incident, now)
    subject, agents = incident.subject, agents_named(incident)
    step = FIVE_MINUTES if end - start <= FINE_SPAN else HOUR
    per = "5 minutes" if step == FIVE_MINUTES else "hour"
    band = (f"median and 10th-90th percentile of the same hour of the week over the {COUNT_HISTORY.days} days "
            f"before (of the same hour on other weekdays or weekend days where fewer than {MIN_WEEKS} weeks are known)")
    if "agent_id" in subject and "action" in subject:
        who = f"{subject['agent_id']} {subject['action']}"
        if incident.check == "errors.error_burst":
            frame = event_counts([subject["agent_id"]], subject["action"], start, end, step, errors=True)
            return Signal(f"{who}: error share", f"share failed per {per}", frame, incident.started_at, band, True)
        frame = event_counts([subject["agent_id"]], subject["action"], start, end, step)
        return Signal(f"{who}: events", f"events per {per}", frame, incident.started_at, band)
    read = field_read(incident)
    if read is not None:
        scope, key, pairs = read
        pairs = pairs or readers(agents, scope, key, incident.started_at)
        if pairs:
            frame, history = null_share(pairs, scope, key, start, end)
            names = ", ".join(sorted({a for a, _ in pairs}))
            where = "" if scope == "inputs" else f" (in {scope})"
            cut = not frame.is_empty() and frame.select(pl.max("bucket")).item() + HOUR < _floor(end, HOUR)
            busy = history < SHARE_HISTORY or cut
            note = "; this store is busy, so the chart reads fewer days of events" if busy else ""
            return Signal(f"{key}{where} read by {names}", "reads per hour", frame, incident.started_at,
                          f"the null share's usual range: median and 10th-90th percentile of the same hour of the day "
                          f"over the {history.days} days before{note}", share=True, reads=True)
    if agents:
        frame = event_counts(agents, None, start, end, step)
        return Signal(f"events of {', '.join(agents)}", f"events per {per}", frame, incident.started_at, band)
    return None


def field_read(incident: Incident) -> tuple[str, str, list[tuple[str, str]]] | None:
    """(scope, input key, agent x action pairs known to read it) for an incident about a field, else None."""
    evidence, field = incident.evidence, incident.subject.get("field")
    if field is None:
        return None
    pairs = [(r["agent_id"], r["action"]) for r in evidence.get("readers", [])
             if isinstance(r, dict) and isinstance(r.get("agent_id"), str) and isinstance(r.get("action"), str)]
    if isinstance(evidence.get("key"), str):
        scope = str(evidence.get("scope") or "inputs")
        return (scope, evidence["key"], pairs) if scope in SCOPES else None
    keys = [k for k in evidence.get("input_keys", []) if isinstance(k, str)]
    if keys:
        return "inputs", keys[0], pairs
    old = evidence.get("old_field")
    key = old if isinstance(old, str) else field.split("->")[0].strip()
    scope, dot, rest = key.partition(".")
    if dot and scope in SCOPES:
        return scope, rest, pairs
    return "inputs", key, pairs


def readers(agents: list[str], scope: str, key: str, around: datetime) -> list[tuple[str, str]]:
    """The agent x actions (of these agents) whose events carried the key in the 6 hours before `around`, else in
    the week before those (a quiet agent); a busy store answers from the short stretch, cheaply."""
    if not agents:
        return []
    for start, end in ((around - READERS_RECENT, around), (around - SHARE_HISTORY, around - READERS_RECENT)):
        frame = context.query(
            f"SELECT DISTINCT agent_id, action FROM actions WHERE {_days(start, end)} AND ts >= $1 AND ts < $2 "
            f"AND agent_id IN ({_literals(agents)}) AND json_exists({_scope(scope)}, $3) ORDER BY ALL",
            start, end, _path(key))
        if not frame.is_empty():
            return list(frame.iter_rows())
    return []


def event_counts(agents: list[str], action: str | None, start: datetime, end: datetime,
                 step: timedelta = FIVE_MINUTES, errors: bool = False) -> pl.DataFrame:
    """Events (or the share that failed) per bucket in [start, end), with the hour-of-week band of the 3 weeks
    before `start`. Buckets without events count 0 from the first event on (their error share is unknown)."""
    start, end, size = _floor(start, step), _floor(end, step), int(step.total_seconds()) * US
    value = "count(*) FILTER (WHERE status = 'error') / count(*)" if errors else "count(*)"
    where = f"agent_id IN ({_literals(agents)})" + (f" AND action = {sql_string(action)}" if action else "")
    history_start, hour = start - COUNT_HISTORY, HOUR.seconds * US
    sql = f"""
        WITH buckets AS (
            SELECT epoch_us(ts) // {size} AS b, ({value})::DOUBLE AS v
            FROM actions
            WHERE {_days(history_start, end)} AND ts >= $1 AND ts < $3 AND {where}
            GROUP BY ALL
        ), filled AS (
            SELECT g.b, {'v' if errors else 'coalesce(v, 0)'} AS v, g.b * {size} // {hour} AS h,
                   (h + {MONDAY_OFFSET_HOURS}) % 168 AS week_slot, h % 24 AS day_slot, week_slot >= 120 AS weekend
            FROM (SELECT unnest(range((SELECT min(b) FROM buckets), epoch_us($3) // {size})) AS b) AS g
            LEFT JOIN buckets USING (b)
        ), history AS (
            SELECT * FROM filled WHERE b < epoch_us($2) // {size}
        ), by_week AS (
            SELECT week_slot, count(DISTINCT h // 168) AS weeks, quantile_cont(v, 0.1) AS low, median(v) AS expected,
                   quantile_cont(v, 0.9) AS high
            FROM history GROUP BY week_slot
        ), by_day AS (
            SELECT day_slot, weekend, quantile_cont(v, 0.1) AS low, median(v) AS expected,
                   quantile_cont(v, 0.9) AS high
            FROM history GROUP BY day_slot, weekend
        )
        SELECT make_timestamptz(f.b * {size}) AS bucket, f.v AS actual,
               CASE WHEN w.weeks >= {MIN_WEEKS} THEN w.low ELSE d.low END AS low,
               CASE WHEN w.weeks >= {MIN_WEEKS} THEN w.expected ELSE d.expected END AS expected,
               CASE WHEN w.weeks >= {MIN_WEEKS} THEN w.high ELSE d.high END AS high
        FROM filled AS f
        LEFT JOIN by_week AS w USING (week_slot)
        LEFT JOIN by_day AS d USING (day_slot, weekend)
        WHERE f.b >= epoch_us($2) // {size}
        ORDER BY f.b
    """
    return _typed(context.query(sql, history_start, start, end))


def null_share(pairs: list[tuple[str, str]], scope: str, key: str, start: datetime,
               end: datetime) -> tuple[pl.DataFrame, timedelta]:
    """Per hour in [start, end), the share of these agent x actions' events whose `key` (in `scope`) is null or
    missing, with the hour-of-day band of the days before `start`; also ``reads`` per hour and how many of them came
    back null (``nulls``) or with a value (``values``). The band uses 7 days
    and the chart runs to `end` unless that makes the query read more than ``ROW_BUDGET`` events (see
    :func:`affordable`); the history used is returned with the frame, and the frame ends where the chart does."""
    start, end, size = _floor(start, HOUR), _floor(end, HOUR), HOUR.seconds * US
    agents = sorted({a for a, _ in pairs})
    actions = sorted({b for _, b in pairs})
    exact = " OR ".join(f"(agent_id = {sql_string(a)} AND action = {sql_string(b)})" for a, b in sorted(set(pairs)))
    who = f"agent_id IN ({_literals(agents)}) AND action IN ({_literals(actions)}) AND ({exact})"
    history_start, end = affordable(start, end)
    sql = f"""
        WITH hourly AS (
            SELECT epoch_us(ts) // {size} AS b, count(*) AS reads,
                   count(*) FILTER (WHERE coalesce(json_type({_scope(scope)}, $4), 'NULL') = 'NULL') AS nulls,
                   nulls / reads AS v
            FROM actions
            WHERE {_days(history_start, end)} AND ts >= $1 AND ts < $3 AND {who}
            GROUP BY ALL
        ), filled AS (
            SELECT g.b, v, coalesce(reads, 0) AS reads, coalesce(nulls, 0) AS nulls, g.b % 24 AS slot
            FROM (SELECT unnest(range((SELECT min(b) FROM hourly), epoch_us($3) // {size})) AS b) AS g
            LEFT JOIN hourly USING (b)
        ), band AS (
            SELECT slot, quantile_cont(v, 0.1) AS low, median(v) AS expected, quantile_cont(v, 0.9) AS high
            FROM filled WHERE b < epoch_us($2) // {size} GROUP BY slot
        )
        SELECT make_timestamptz(b * {size}) AS bucket, v AS actual, reads, nulls, reads - nulls AS "values", low,
               expected, high
        FROM filled LEFT JOIN band USING (slot)
        WHERE b >= epoch_us($2) // {size}
        ORDER BY b
    """
    return _typed(context.query(sql, history_start, start, end, _path(key))), start - history_start


def affordable(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """(history start, end) of a null-share chart that reads at most about ``ROW_BUDGET`` events' JSON.

    Reading JSON costs per event, and every event counts, not only the readers': their JSON sits in the same
    Parquet pages, decoded whole. Always kept: the first 48 hours of the window (the day before the start and the
    day after) and 2 days of history; then more history, up to 7 days, and then the rest of the window, a day at
    a time, while the budget lasts. The counts read no JSON, so they are cheap."""
    earliest = start - SHARE_HISTORY
    day = 86400 * US
    counts = context.query(
        f"SELECT CASE WHEN ts >= $2 THEN -1 - (epoch_us(ts) - epoch_us($2)) // {day} "
        f"ELSE (epoch_us($2) - epoch_us(ts)) // {day} END AS back, count(*) AS n FROM actions "
        f"WHERE {_days(earliest, end)} AND ts >= $1 AND ts < $3 GROUP BY ALL", earliest, start, end)
    per_day = dict(counts.iter_rows())  # 0, 1, ...: days of history back from start; -1, -2, ...: window days
    kept_window = min(KEPT_WINDOW_DAYS, math.ceil((end - start) / DAY))
    total = sum(per_day.get(-1 - d, 0) for d in range(kept_window))
    history = 0
    for back in range(SHARE_HISTORY.days):
        total += per_day.get(back, 0)
        if history >= MIN_HISTORY_DAYS and total > ROW_BUDGET:
            total -= per_day.get(back, 0)
            break
        history = back + 1
    window_days = kept_window
    while start + window_days * DAY < end:
        total += per_day.get(-1 - window_days, 0)
        if total > ROW_BUDGET:
            return start - history * DAY, start + window_days * DAY
        window_days += 1
    return start - history * DAY, end


def _typed(frame: pl.DataFrame) -> pl.DataFrame:
    """The same columns whatever came back (an empty result has no types to go by)."""
    columns: dict[str, Any] = {"bucket": pl.Datetime("us", "UTC"), "actual": pl.Float64, "low": pl.Float64,
                               "expected": pl.Float64, "high": pl.Float64}
    for counted in ("reads", "nulls", "values"):
        if counted in frame.columns:
            columns[counted] = pl.Int64
    if frame.is_empty():
        return pl.DataFrame(schema=columns)
    return frame.with_columns(pl.col(c).cast(t) for c, t in columns.items())


def _days(start: datetime, end: datetime) -> str:
    """The partition filter: the UTC days (``day`` is the UTC day of ``ts``) the window touches."""
    first = start.astimezone(UTC).date().isoformat()
    last = end.astimezone(UTC).date().isoformat()
    return f"day BETWEEN DATE '{first}' AND DATE '{last}'"


def _floor(at: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    return datetime.fromtimestamp(math.floor(at.timestamp() / seconds) * seconds, UTC)


def _literals(values: list[str]) -> str:
    return ", ".join(sql_string(v) for v in values)


def _scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return scope


def _path(key: str) -> str:
    """A top-level key as a JSONPath member, quoted so dots and spaces stay inside it."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
