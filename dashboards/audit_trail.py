"""The audit trail's queries and its rollback plan, in DuckDB over the ``actions`` view (no Streamlit here).

A :class:`Selection` is the page's filters (time range, agents, action globs, resource, statuses) as one SQL
predicate; its time bounds filter ``ts`` and the ``day`` partition, so DuckDB reads only the days in range. It
lives in ``agentwatch.store.audit``, which ``GET /v1/actions`` and ``agentwatch audit`` read with too.

The rollback plan of a selection has two parts, both computed in DuckDB over every matching event:

- ``restore``: one row per field changed by a reversible write (status ``ok``, with ``before`` and ``after``
  objects, ``before`` holding the field and a value different from ``after``), newest write first. Applying
  the rows in order (``step`` 1 first) sets each field back to the value before its write; after the last
  row every field holds the ``before`` of its EARLIEST write in the selection (the row marked ``final``):
  the value it had before the selection began to change it. Later writes' ``before`` values were written by
  the selection itself, so they are only steps on the way; a tool that applies one value per field may apply
  the ``final`` rows alone and reach the same state. A note says when the field was changed again later by
  a write of this plan, and when it was changed later by something the plan does not undo (another agent's
  write, an irreversible write, a person's correction from the outcome events): applying the row would
  overwrite that change.
- ``irreversible``: actions that cannot be rolled back, with the reason: external actions (an email sent, a
  meeting booked), writes without a ``before`` state, and writes whose ``before`` lacks some written fields.

Actions that did not happen (status ``error``, ``skipped``, ``pending_approval``) and actions that recorded no
change (no ``after``, not external) are in neither list; :func:`summary_sql` counts them.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from agentwatch.store.audit import ISO, Query, Selection
from agentwatch.store.reader import UTC_TODAY_SQL
from agentwatch.store.spreadsheet import csv_text

RANGES: dict[str, timedelta | None] = {
    "Last 1 hour": timedelta(hours=1),
    "Last 24 hours": timedelta(hours=24),
    "Last 48 hours": timedelta(hours=48),
    "Last 7 days": timedelta(days=7),
    "Custom": None,
}
SHOWN = 1_000  # events listed on the page; the count states how many matched
NOT_RECORDED = "—"  # a field absent from `before` or `after`

# The keys a write's `after` holds that its `before` lacks (their earlier values are unknown).
MISSING = "list_filter(json_keys(after), lambda k: NOT list_contains(json_keys(before), k))"


def time_range(choice: str, latest: datetime,
               custom: tuple[datetime, datetime] | None = None) -> tuple[datetime, datetime]:
    """The [start, end] of a range choice: a window ending at the latest event, or the custom pair."""
    if choice not in RANGES:
        raise ValueError(f"unknown range {choice!r}: use one of {', '.join(RANGES)}")
    span = RANGES[choice]
    if span is None:
        if custom is None:
            raise ValueError("a custom range needs a start and an end")
        return custom
    return latest - span, latest


# --- SQL helpers --------------------------------------------------------------------------------------------------


def _path(key: str) -> str:
    """A JSON path selecting the top-level key named by the SQL expression `key` (quotes escaped)."""
    return f"""('$."' || replace({key}, '"', '\\"') || '"')"""


def _shown(obj: str, key: str) -> str:
    """A JSON value as a person reads it: strings bare, anything else as JSON, an absent key as a dash."""
    value = f"json_extract({obj}, {_path(key)})"
    return (f"coalesce(CASE json_type({value}) WHEN 'VARCHAR' THEN json_extract_string({obj}, {_path(key)}) "
            f"ELSE CAST({value} AS VARCHAR) END, '{NOT_RECORDED}')")


def _iso(column: str) -> str:
    return f"strftime({column} AT TIME ZONE 'UTC', '{ISO}')"


# --- queries the page runs -----------------------------------------------------------------------------------------


def latest_day_sql() -> Query:
    """The newest `day` partition holding action events (None when there are none)."""
    return (f"SELECT max(day) AS day FROM actions WHERE day <= {UTC_TODAY_SQL}", [])  # none from a wrong clock


def latest_sql(day: date) -> Query:
    """The latest event's time, reading only its day's files."""
    return ("SELECT max(ts) AS latest FROM actions WHERE day = ? AND ts <= now()", [day])


def options_sql(selection: Selection) -> Query:
    """Agents, actions and resource types seen in the selection's time range, with counts (for the filters)."""
    where, params = selection.where(time_only=True)
    return (f"SELECT agent_id, action, resource_type, count(*) AS events FROM actions WHERE {where} "
            "GROUP BY ALL", params)


def summary_sql(selection: Selection) -> Query:
    """One row: how many events match and how they split for a rollback (the irreversible ones are ``external``,
    ``writes_without_before`` and ``writes_missing_before``)."""
    where, params = selection.where()
    ext = "coalesce(external, false)"
    counts = {
        "not_done": "status <> 'ok'",
        "external": f"status = 'ok' AND {ext}",
        "writes_with_before": "status = 'ok' AND before IS NOT NULL AND after IS NOT NULL",
        "writes_without_before": f"status = 'ok' AND NOT {ext} AND before IS NULL AND after IS NOT NULL",
        "writes_missing_before": f"status = 'ok' AND NOT {ext} AND before IS NOT NULL AND after IS NOT NULL "
                                 f"AND len({MISSING}) > 0",
        "no_change": f"status = 'ok' AND NOT {ext} AND after IS NULL",
    }
    shown = ", ".join(f"CAST(count(*) FILTER (WHERE {cond}) AS BIGINT) AS {name}" for name, cond in counts.items())
    return f"SELECT count(*) AS events, {shown} FROM actions WHERE {where}", params


def irreversible_count(summary: dict[str, Any]) -> int:
    """How many irreversible actions a summary row counts (each action falls in one of the three kinds)."""
    return summary["external"] + summary["writes_without_before"] + summary["writes_missing_before"]


def events_sql(selection: Selection, limit: int = SHOWN) -> Query:
    """The latest `limit` matching events for the table, newest first, with a compact `changes` column."""
    where, params = selection.where()
    changed = (f"list_filter(json_keys(after), lambda k: json_extract(before, {_path('k')}) "
               f"IS DISTINCT FROM json_extract(after, {_path('k')}))")
    changes = (f"array_to_string(list_transform({changed}, lambda k: k || ': ' || {_shown('before', 'k')} "
               f"|| ' -> ' || {_shown('after', 'k')}), '; ')")
    return (f"""
        WITH top AS (SELECT event_id, ts FROM actions WHERE {where} ORDER BY ts DESC, event_id DESC LIMIT ?)
        SELECT ts, agent_id, agent_version, action, resource_type, resource_id, status, approved_by,
               records_affected, confidence, coalesce({changes}, '') AS changes, event_id
        FROM actions
        WHERE {where} AND ts >= (SELECT min(ts) FROM top) AND event_id IN (SELECT event_id FROM top)
        ORDER BY ts DESC, event_id DESC""", [*params, limit, *params])


def records_sql(selection: Selection) -> Query:
    """The records the selection's actions touched, with how many actions each and the first and last, in id order
    (the page lists them when an incident's damaged records are selected)."""
    where, params = selection.where()
    return (f"SELECT resource_type, resource_id, count(*) AS actions, min(ts) AS first, max(ts) AS last "
            f"FROM actions WHERE {where} GROUP BY ALL ORDER BY resource_type, resource_id", params)


def event_sql(event_id: str, ts: datetime) -> Query:
    """Every column of one event, found by id and time (the time prunes the read to one day)."""
    ts = ts.astimezone(UTC)
    return ("SELECT * EXCLUDE (event_key) FROM actions WHERE day = ? AND ts = ? AND event_id = ?",
            [ts.date(), ts, event_id])


# --- the rollback plan ---------------------------------------------------------------------------------------------


def restore_sql(selection: Selection, numbered: bool = True, ordered: bool = True) -> Query:
    """The restore part of the rollback plan, newest write first (``step`` 1, 2, ... when `numbered`).

    One scan reads every write from the selection's start on: the selection's reversible writes are the plan,
    the others (and people's corrections in ``outcomes``) are the later changes a step would overwrite. Only
    fields written more than once in the plan go through a window (to name the next write).
    """
    where, params = selection.where()
    start = selection.start.astimezone(UTC)
    order = "ts DESC, event_id DESC, field"
    step = f"row_number() OVER (ORDER BY {order}) AS step, " if numbered else ""
    sql = f"""
    WITH recent AS MATERIALIZED (
        SELECT event_id, ts, agent_id, agent_version, action, resource_type, resource_id, before, after,
               ({where}) AND before IS NOT NULL AS planned
        FROM actions WHERE ts >= ? AND day >= ? AND status = 'ok' AND after IS NOT NULL
    ), fields AS MATERIALIZED (
        SELECT * EXCLUDE (before, after, path),
               json_extract(before, path) AS restore_value, json_extract(after, path) AS written_value
        FROM (SELECT *, {_path('field')} AS path
              FROM (SELECT * EXCLUDE (planned), unnest(json_keys(after)) AS field FROM recent WHERE planned))
    ), changes AS MATERIALIZED (
        SELECT * FROM fields WHERE restore_value IS NOT NULL AND restore_value IS DISTINCT FROM written_value
    ), touched AS (
        SELECT DISTINCT resource_type, resource_id FROM changes
    ), other_changes AS (
        -- changes to the same fields that this plan does not undo: the selection's writes of fields that have no
        -- before value, every other write (another agent, a write without before), and people's corrections
        SELECT resource_type, resource_id, field, ts, event_id, agent_id AS who, action AS what
        FROM fields WHERE restore_value IS NULL
        UNION ALL
        SELECT resource_type, resource_id, field, ts, event_id, agent_id, action
        FROM (SELECT *, {_path('field')} AS path
              FROM (SELECT *, unnest(json_keys(after)) AS field
                    FROM recent SEMI JOIN touched USING (resource_type, resource_id) WHERE NOT planned))
        WHERE json_extract(before, path) IS DISTINCT FROM json_extract(after, path)
        UNION ALL
        SELECT resource_type, resource_id, field, ts, event_id, coalesce(actor, 'someone'), kind
        FROM outcomes SEMI JOIN touched USING (resource_type, resource_id)
        WHERE ts >= ? AND day >= ? AND field IS NOT NULL
    ), latest_other AS (
        SELECT resource_type AS o_type, resource_id AS o_id, field AS o_field, max(ts) AS other_at,
               arg_max(event_id, ts) AS other_event, arg_max(who, ts) AS other_who, arg_max(what, ts) AS other_what
        FROM other_changes GROUP BY ALL
    ), repeated AS (
        SELECT resource_type, resource_id, field FROM changes GROUP BY ALL HAVING count(*) > 1
    ), again AS (
        SELECT event_id AS a_event, field AS a_field, row_number() OVER w = 1 AS a_first,
               lead(event_id) OVER w AS again_event, lead(ts) OVER w AS again_at
        FROM changes SEMI JOIN repeated USING (resource_type, resource_id, field)
        WINDOW w AS (PARTITION BY resource_type, resource_id, field ORDER BY ts, event_id)
    )
    SELECT {step}event_id, ts, agent_id, agent_version, action, resource_type, resource_id, field,
           restore_value, written_value, coalesce(a_first, true) AS final,
           again_event AS changed_again_by, again_at AS changed_again_at,
           CASE WHEN other_event IS NOT NULL THEN other_who || ' (' || other_what || ', ' || other_event || ')' END
               AS later_change_by,
           other_at AS later_change_at,
           nullif(concat_ws('; ',
               CASE WHEN again_event IS NOT NULL THEN 'changed again later by ' || again_event || ' at '
                    || {_iso('again_at')} || ' (in this plan): restore newest first' END,
               CASE WHEN other_event IS NOT NULL THEN 'changed later by ' || other_who || ' (' || other_what || ', '
                    || other_event || ' at ' || {_iso('other_at')}
                    || '), which this plan does not undo: applying this row overwrites that change' END), '') AS note
    FROM changes
    LEFT JOIN again ON a_event = event_id AND a_field = field
    LEFT JOIN latest_other ON o_type = resource_type AND o_id = resource_id AND o_field = field AND other_at >= ts
    {"ORDER BY " + order if ordered else ""}"""
    return sql, [*params, start, start.date(), start, start.date()]


def restore_overview_sql(selection: Selection, preview: int = 200) -> Query:
    """The restore plan's totals on every row, with its first `preview` steps (one row of totals when empty)."""
    sql, params = restore_sql(selection, numbered=False, ordered=False)
    return (f"""
        WITH plan AS MATERIALIZED ({sql})
        SELECT t.*, row_number() OVER (ORDER BY p.ts DESC, p.event_id DESC, p.field) AS step, p.*
        FROM (SELECT count(*) AS total_rows, count(*) FILTER (WHERE final) AS total_fields,
                     count(changed_again_by) AS total_again, count(later_change_by) AS total_overwrites FROM plan) t
        LEFT JOIN (SELECT * FROM plan ORDER BY ts DESC, event_id DESC, field LIMIT ?) p ON true
        ORDER BY step""", [*params, preview])


def _irreversible_base(selection: Selection) -> Query:
    """The irreversible actions of the selection with their kind and fields, unordered and without reasons."""
    where, params = selection.where()
    missing = MISSING
    return (f"""
        SELECT event_id, ts, agent_id, agent_version, action, resource_type, resource_id,
               before IS NOT NULL AND after IS NOT NULL AS has_both,
               CASE WHEN coalesce(external, false) THEN 'external'
                    WHEN before IS NULL THEN 'no_before' ELSE 'missing_before' END AS kind,
               array_to_string(CASE WHEN before IS NULL THEN json_keys(after) ELSE {missing} END, ', ') AS fields
        FROM actions
        WHERE {where} AND status = 'ok'
          AND (coalesce(external, false) OR (after IS NOT NULL AND (before IS NULL OR len({missing}) > 0)))""",
            params)


REASON = """CASE kind
    WHEN 'external' THEN 'reached someone outside the company (an email sent, a meeting booked): it cannot be taken '
         || 'back, only followed up by hand'
         || CASE WHEN has_both THEN '; its recorded CRM field changes are in the restore list' ELSE '' END
    WHEN 'no_before' THEN 'wrote ' || fields || ' without recording the values before (no before state), so there '
         || 'is no value to restore'
    ELSE 'wrote ' || fields || ' with no value for them in before, so they cannot be restored (its other fields are '
         || 'in the restore list)'
END"""


def irreversible_sql(selection: Selection) -> Query:
    """The actions of the selection that cannot be rolled back, newest first, each with its kind and reason."""
    sql, params = _irreversible_base(selection)
    return (f"SELECT * EXCLUDE (has_both), {REASON} AS reason FROM ({sql}) ORDER BY ts DESC, event_id DESC",
            params)


def irreversible_preview_sql(selection: Selection, preview: int = 200) -> Query:
    """The newest `preview` irreversible actions with their reasons (the summary counts them all)."""
    sql, params = _irreversible_base(selection)
    return (f"""
        SELECT * EXCLUDE (has_both), {REASON} AS reason
        FROM ({sql} ORDER BY ts DESC, event_id DESC LIMIT ?)
        ORDER BY ts DESC, event_id DESC""", [*params, preview])


def run(con: duckdb.DuckDBPyConnection, query: Query) -> pl.DataFrame:
    """Run a query on a connection (one cursor, closed after) and return a Polars frame."""
    sql, params = query
    cursor = con.cursor()
    try:
        return pl.DataFrame(cursor.sql(sql, params=params or None).to_arrow_table())
    finally:
        cursor.close()


def restore_plan(con: duckdb.DuckDBPyConnection, selection: Selection) -> pl.DataFrame:
    return run(con, restore_sql(selection))


def irreversible(con: duckdb.DuckDBPyConnection, selection: Selection) -> pl.DataFrame:
    return run(con, irreversible_sql(selection))


# --- exports -------------------------------------------------------------------------------------------------------

RESTORE_COLUMNS = ["step", "event_id", "ts", "agent_id", "agent_version", "action", "resource_type", "resource_id",
                   "field", "restore_value", "written_value", "final", "changed_again_by", "later_change_by", "note"]
IRREVERSIBLE_COLUMNS = ["event_id", "ts", "agent_id", "agent_version", "action", "resource_type", "resource_id",
                        "kind", "fields", "reason"]
CSV_COLUMNS = ["section", "step", "event_id", "ts", "agent_id", "agent_version", "action", "resource_type",
               "resource_id", "field", "restore_value", "written_value", "final", "changed_again_by", "later_change_by",
               "kind", "note"]


def _export_frame(query: Query, columns: list[str]) -> Query:
    """A plan query with `ts` as ISO 8601 UTC text and only the exported columns."""
    sql, params = query
    shown = ", ".join(_iso("ts") + " AS ts" if c == "ts" else c for c in columns)
    return f"SELECT {shown} FROM ({sql})", params


def plan_csv(con: duckdb.DuckDBPyConnection, selection: Selection) -> str:
    """The rollback plan as one CSV: the restore rows in order (section `restore`), then the irreversible actions
    (section `irreversible`, their reason in `note`, written fields in `field`). Values are JSON text; every
    field is quoted and a text cell a spreadsheet would run as a formula starts with ``'``
    (agentwatch.store.spreadsheet)."""
    restore = run(con, _export_frame(restore_sql(selection), RESTORE_COLUMNS)).select(
        pl.lit("restore").alias("section"), *[c for c in CSV_COLUMNS if c in RESTORE_COLUMNS],
        pl.lit(None, pl.String).alias("kind"))
    gone = run(con, _export_frame(irreversible_sql(selection), IRREVERSIBLE_COLUMNS)).select(
        pl.lit("irreversible").alias("section"), "event_id", "ts", "agent_id", "agent_version", "action",
        "resource_type", "resource_id", pl.col("fields").alias("field"), "kind", pl.col("reason").alias("note"))
    return csv_text(pl.concat([restore, gone], how="diagonal_relaxed").select(CSV_COLUMNS))


def plan_json(con: duckdb.DuckDBPyConnection, selection: Selection, generated_at: datetime | None = None) -> str:
    """The rollback plan as JSON: ``{"generated_at", "selection", "restore": [...], "irreversible": [...]}``,
    built by DuckDB (values stay JSON: a string, a number, null)."""
    restore, restore_params = _export_frame(restore_sql(selection), RESTORE_COLUMNS)
    gone, gone_params = _export_frame(irreversible_sql(selection), IRREVERSIBLE_COLUMNS)
    at = (generated_at or datetime.now(UTC)).astimezone(UTC).strftime(ISO)
    sql = f"""SELECT to_json({{
        'generated_at': ?, 'selection': CAST(? AS JSON),
        'restore': coalesce((SELECT list(r ORDER BY r.step) FROM ({restore}) r), []),
        'irreversible': coalesce((SELECT list(i) FROM ({gone}) i), [])}}) AS plan"""
    params = [at, json.dumps(selection.describe()), *restore_params, *gone_params]
    return str(run(con, (sql, params))["plan"][0])


# --- one event -----------------------------------------------------------------------------------------------------


def shown(value: Any, present: bool = True) -> str:
    """A JSON value as the diff table shows it (like the `changes` column)."""
    if not present:
        return NOT_RECORDED
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def as_object(value: Any) -> dict[str, Any] | None:
    """A JSON column's value as a dict (DuckDB hands JSON over as text)."""
    if value is None:
        return None
    parsed = json.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else {"(value)": parsed}


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> pl.DataFrame:
    """One event's before/after as rows (field, before, after, changed), the written fields first."""
    before, after = before or {}, after or {}
    keys = list(after) + [k for k in before if k not in after]
    return pl.DataFrame({
        "field": keys,
        "before": [shown(before.get(k), k in before) for k in keys],
        "after": [shown(after.get(k), k in after) for k in keys],
        "changed": [k in after and (k not in before or before[k] != after[k]) for k in keys],
    }, schema={"field": pl.String, "before": pl.String, "after": pl.String, "changed": pl.Boolean})
