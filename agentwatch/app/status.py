"""What the store holds, at a glance: is data flowing, from which agents, up to when."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from agentwatch.checks.engine import incident_store
from agentwatch.collector.crm.state import poller_status
from agentwatch.collector.ingest.rejects import reject_counts
from agentwatch.collector.wal import pending_events
from agentwatch.core.home import Home
from agentwatch.store.datasets import DATASETS
from agentwatch.store.partitions import visible_files
from agentwatch.store.quarantine import quarantined_parts
from agentwatch.store.reader import SCHEMA_PART, latest_event_sql, open_reader


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _rows(con: Any, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [{n: _jsonable(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


# OpenTelemetry spans that are not actions (POST /v1/traces), counted per agent: model calls and their tokens and
# errors, agent runs, and the spans no rule recognised (so a mapping that misses its tools shows).
SPANS_BY_AGENT_SQL = """
    SELECT agent_id, count(*) AS spans,
           count(*) FILTER (WHERE kind = 'model') AS model_calls,
           count(*) FILTER (WHERE kind = 'model' AND status = 'error') AS model_errors,
           coalesce(sum(input_tokens) FILTER (WHERE kind = 'model'), 0)::BIGINT AS input_tokens,
           coalesce(sum(output_tokens) FILTER (WHERE kind = 'model'), 0)::BIGINT AS output_tokens,
           count(*) FILTER (WHERE kind = 'agent') AS agent_runs,
           count(*) FILTER (WHERE kind = 'other') AS other,
           count(*) FILTER (WHERE kind = 'unmatched') AS unmatched,
           max(ts) AS last_span
    FROM spans GROUP BY agent_id ORDER BY agent_id"""


def store_status(home: Home) -> dict[str, Any]:
    """A JSON-able summary of the store (also served by ``GET /v1/status``)."""
    con = open_reader(home)
    try:
        agents = _rows(con, """
            SELECT agent_id, count(*) AS actions, count(*) FILTER (WHERE status = 'error') AS errors,
                   min(ts) AS first_event, max(ts) AS last_event, max(ingested_at) AS last_ingested
            FROM actions GROUP BY agent_id ORDER BY agent_id""")
        outcomes = _rows(con, """
            SELECT count(*) AS outcomes, min(ts) AS first_event, max(ts) AS last_event FROM outcomes""")[0]
        spans = _rows(con, SPANS_BY_AGENT_SQL)
        snapshots = _rows(con, """
            SELECT source, object, count(*) AS snapshots, min(taken_at) AS first_taken,
                   max(taken_at) AS last_taken, arg_max(field_count, taken_at) AS fields_now
            FROM schema_snapshots GROUP BY source, object ORDER BY source, object""")
    finally:
        con.close()
    return {
        "home": str(home.root),
        "checks": checks_keeping_up(home),
        "actions": {"total": sum(a["actions"] for a in agents), "agents": agents},
        "outcomes": outcomes,
        "spans": {"total": sum(a["spans"] for a in spans), "agents": spans},
        "schema_snapshots": snapshots,
        "crm_pollers": poller_status(home, datetime.now(UTC)),
        "rejects": reject_counts(home.rejects),
        "wal_pending": pending_events(home),
        "quarantined": [{"dataset": part.dataset, "path": str(part.path), "original": str(part.original),
                         "size": part.size, "reason": part.reason, "quarantined_at": part.quarantined_at}
                        for part in quarantined_parts(home)],
        "part_files": {name: sum(1 for p in visible_files(home, name) if p.name != SCHEMA_PART)
                       for name in DATASETS},
    }


def checks_keeping_up(home: Home) -> dict[str, Any]:
    """The latest live run of the checks and how far the newest action is past what it evaluated (``lag_s``:
    events the checks have not looked at yet; it grows when a scheduler stalls or falls behind)."""
    run = incident_store(home).last_run()
    if run is None:
        return {"last_run": None, "lag_s": None}
    newest_event, lag = newest_action(home), None
    if newest_event is not None:
        behind = datetime.fromisoformat(newest_event) - datetime.fromisoformat(run["as_of"])
        lag = max(0.0, behind.total_seconds())
    return {"last_run": run, "lag_s": lag}


def newest_action(home: Home) -> str | None:
    """The time of the newest action in the store that is not in the future (ISO 8601), or None when it holds
    none; reads only the latest day's partition."""
    con = open_reader(home)
    try:
        (newest,) = con.execute(f"SELECT {latest_event_sql('actions')}").fetchone() or (None,)
    finally:
        con.close()
    return _jsonable(newest)


def checks_degraded(checks: dict[str, Any], every_s: float | None, now: datetime) -> bool:
    """A server that runs the checks is degraded when a check failed in the last run, or when the last run
    finished more than three intervals ago (a stuck or overloaded scheduler)."""
    run = checks["last_run"]
    if every_s is None or run is None:
        return False
    stale = (now - datetime.fromisoformat(run["finished_at"])).total_seconds() > 3 * every_s + 60
    return stale or bool(run["failed_checks"])
