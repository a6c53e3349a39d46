"""What the audit trail should return, computed apart from agentwatch.store.audit: a plain SQL query of the store's
columns, each row rebuilt into the event it was sent as and dumped by the ActionEvent model."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from agentwatch.core.home import Home
from agentwatch.schemas import ActionEvent
from agentwatch.store.reader import open_reader

AGENT = "lead-router"
WINDOW = timedelta(hours=48)


def latest_action(home: Home) -> datetime:
    con = open_reader(home)
    try:
        return con.execute("SELECT max(ts) FROM actions").fetchone()[0]
    finally:
        con.close()


def as_event(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the action event format: nested objects rebuilt, JSON columns parsed, unknown keys merged,
    then validated and dumped by the model."""
    event: dict[str, Any] = {
        "event_id": row["event_id"], "ts": row["ts"], "agent_id": row["agent_id"], "action": row["action"],
        "resource": {"type": row["resource_type"], "id": row["resource_id"]}, "status": row["status"],
    }
    for key in ("agent_version", "confidence", "rationale", "authorized_by", "external", "records_affected",
                "latency_ms", "trace_id", "span_id"):
        if row[key] is not None:
            event[key] = row[key]
    for key in ("inputs", "before", "after", "decision"):
        if row[key] is not None:
            event[key] = json.loads(row[key])
    if row["approved_by"] is not None:
        event["approval"] = {"approved_by": row["approved_by"], "approved_at": row["approved_at"]}
    if row["error_code"] is not None:
        event["error"] = {"code": row["error_code"], "message": row["error_message"]}
    event.update(json.loads(row["extra"]) if row["extra"] else {})
    return ActionEvent.model_validate(event).model_dump(mode="json")


def expected_actions(home: Home, agent: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The agent's actions with start <= ts <= end, newest first (ties by event_id, descending)."""
    con = open_reader(home)
    try:
        cursor = con.execute("SELECT * FROM actions WHERE agent_id = ? AND ts BETWEEN ? AND ? "
                             "ORDER BY ts DESC, event_id DESC", [agent, start, end])
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
    return [as_event(row) for row in rows]


def rfc3339(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
