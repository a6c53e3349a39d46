"""One planning pass over a home: read the incidents, decide what is due, record it and queue it at once."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from agentwatch.alerts.config import AlertsConfig
from agentwatch.alerts.db import alerts_db, install_id
from agentwatch.alerts.outbox import enqueue
from agentwatch.alerts.planner import PlanState, SentGroup, plan
from agentwatch.alerts.silences import Silences
from agentwatch.checks.engine import incident_store
from agentwatch.core.home import Home
from agentwatch.schemas.notifications import Notification


def plan_pass(home: Home, alerts: AlertsConfig, now: datetime | None = None) -> list[Notification]:
    """Queue the notifications due at `now` in the home's outbox; returns them.

    The plan is read, decided and written in one transaction of ``alerts.sqlite3``: two processes planning at
    once (the server and `agentwatch check`) queue each notification once."""
    now = now or datetime.now(UTC)
    if not alerts.destinations:
        return []
    db = alerts_db(home)
    installation = install_id(db)
    store = incident_store(home)
    silences = Silences(db).active(now)
    with db.writing() as con:
        state = load_state(con)
        incidents = {i.id: i for i in store.list(["open", "acknowledged"])}
        missing = state.open_members() - set(incidents)
        incidents.update({i.id: i for i in store.get_many(sorted(missing))})
        notifications = plan(incidents.values(), state, alerts, silences, now, installation)
        save_state(con, state)
        enqueue(con, notifications, now)
    return notifications


def load_state(con: sqlite3.Connection) -> PlanState:
    state = PlanState(groups=dict(con.execute("SELECT incident_id, group_key FROM incident_groups").fetchall()))
    for destination, key, revision, status, severity, members, first, last in con.execute(
            "SELECT destination, group_key, revision, status, severity, members, first_sent_at, last_sent_at "
            "FROM sent_groups"):
        state.sent[(destination, key)] = SentGroup(revision, status, severity, json.loads(members),
                                                   _time(first), _time(last))
    return state


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def save_state(con: sqlite3.Connection, state: PlanState) -> None:
    """Write what the last pass changed."""
    con.executemany("INSERT OR REPLACE INTO incident_groups (incident_id, group_key) VALUES (?, ?)",
                    list(state.changed_groups.items()))
    con.executemany(
        "INSERT OR REPLACE INTO sent_groups (destination, group_key, revision, status, severity, members, "
        "first_sent_at, last_sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(d, k, s.revision, s.status, s.severity, json.dumps(s.members), s.first_sent_at.timestamp(),
          s.last_sent_at.timestamp()) for (d, k) in state.changed_sent for s in [state.sent[(d, k)]]])
