"""The durable outbox: notifications wait here until a destination took them, across restarts.

A notification is queued in the same transaction that records it as sent (see ``agentwatch.alerts.notify``), then
delivered by whichever process gets to it first: a sender leases one row at a time before sending it, so two
processes never send one row at once, and a row is only marked while it is still pending (a sender that lost
its lease cannot overwrite another's result). A row is marked delivered after the destination answered 2xx;
a crash between the answer and the mark resends it once the lease ends, with the same id
(``X-Agentwatch-Delivery``, PagerDuty's ``dedup_key``), so receivers can drop the copy. After
``max_attempts`` it is marked failed, and stays visible (``agentwatch alerts outbox``, ``/healthz``) until
retried.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from agentwatch.core.errors import ConfigError
from agentwatch.core.sqlite import SqliteFile
from agentwatch.schemas.notifications import Notification

STATES = ("pending", "delivered", "failed")


@dataclass(frozen=True)
class OutboxRow:
    """One queued notification and how its delivery went."""

    id: str
    destination: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_status: int | None
    created_at: datetime
    delivered_at: datetime | None
    body: str

    def notification(self) -> Notification:
        return Notification.model_validate_json(self.body)


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


COLUMNS = ("id, destination, state, attempts, next_attempt_at, last_error, last_status, created_at, delivered_at, "
           "body")


def _row(values: tuple) -> OutboxRow:
    (id_, destination, state, attempts, next_at, error, status, created, delivered, body) = values
    return OutboxRow(id_, destination, state, attempts, datetime.fromtimestamp(next_at, UTC), error, status,
                     datetime.fromtimestamp(created, UTC), _time(delivered), body)


def enqueue(con: sqlite3.Connection, notifications: Iterable[Notification], now: datetime) -> int:
    """Queue notifications inside the caller's transaction; an id already queued is left as it is."""
    rows = [(n.id, n.destination, n.model_dump_json(), _epoch(now), _epoch(now)) for n in notifications]
    before = con.total_changes
    con.executemany("INSERT OR IGNORE INTO outbox (id, destination, body, state, next_attempt_at, created_at) "
                    "VALUES (?, ?, ?, 'pending', ?, ?)", rows)
    return con.total_changes - before


class Outbox:
    """The outbox table of one ``alerts.sqlite3``."""

    def __init__(self, db: SqliteFile) -> None:
        self.db = db

    def claim_due(self, now: datetime, lease_s: float, limit: int = 50) -> list[OutboxRow]:
        """Pending rows due by `now` that no other sender holds, leased to the caller for `lease_s`."""
        with self.db.writing() as con:
            rows = con.execute(f"SELECT {COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
                               "AND lease_until <= ? ORDER BY created_at, id LIMIT ?",
                               [_epoch(now), _epoch(now), limit]).fetchall()
            con.executemany("UPDATE outbox SET lease_until = ? WHERE id = ?",
                            [(_epoch(now) + lease_s, r[0]) for r in rows])
        return [_row(r) for r in rows]

    def delivered(self, row_id: str, status: int | None, now: datetime) -> None:
        with self.db.writing() as con:
            con.execute("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_status = ?, "
                        "last_error = NULL, delivered_at = ?, lease_until = 0 WHERE id = ? AND state = 'pending'",
                        [status, _epoch(now), row_id])

    def retry_later(self, row_id: str, error: str, status: int | None, next_attempt_at: datetime) -> None:
        with self.db.writing() as con:
            con.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, last_status = ?, "
                        "next_attempt_at = ?, lease_until = 0 WHERE id = ? AND state = 'pending'",
                        [error, status, _epoch(next_attempt_at), row_id])

    def failed(self, row_id: str, error: str, status: int | None) -> None:
        with self.db.writing() as con:
            con.execute("UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?, "
                        "last_status = ?, lease_until = 0 WHERE id = ? AND state = 'pending'", [error, status, row_id])

    def postpone(self, row_id: str, error: str, next_attempt_at: datetime) -> None:
        """Try again later without counting an attempt (nothing was sent: this process cannot send it)."""
        with self.db.writing() as con:
            con.execute("UPDATE outbox SET last_error = ?, next_attempt_at = ?, lease_until = 0 "
                        "WHERE id = ? AND state = 'pending'", [error, _epoch(next_attempt_at), row_id])

    def rows(self, states: Iterable[str] = STATES, limit: int = 100) -> list[OutboxRow]:
        """Rows in the given states, newest first."""
        wanted = list(states)
        with self.db.reading() as con:
            found = con.execute(f"SELECT {COLUMNS} FROM outbox WHERE state IN ({', '.join('?' for _ in wanted)}) "
                                "ORDER BY created_at DESC, id DESC LIMIT ?", [*wanted, limit]).fetchall()
        return [_row(r) for r in found]

    def counts(self) -> dict[str, int]:
        """Rows per state (every state present, 0 when none)."""
        with self.db.reading() as con:
            found = dict(con.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        return {state: found.get(state, 0) for state in STATES}

    def next_due(self) -> datetime | None:
        """When the next pending row is due (None when nothing is pending)."""
        with self.db.reading() as con:
            (value,) = con.execute("SELECT min(max(next_attempt_at, lease_until)) FROM outbox "
                                   "WHERE state = 'pending'").fetchone()
        return _time(value)

    def retry(self, row_ids: list[str] | None, now: datetime) -> int:
        """Put failed rows (those given, or all) back in the queue with their attempts reset."""
        with self.db.writing() as con:
            if row_ids:
                known = {r for (r,) in con.execute(
                    f"SELECT id FROM outbox WHERE id IN ({', '.join('?' for _ in row_ids)})", row_ids)}
                unknown = [r for r in row_ids if r not in known]
                if unknown:
                    raise ConfigError(f"no notification has the id {unknown[0]!r}; `agentwatch alerts outbox "
                                      "--state failed` lists the failed ones")
                where, params = f"id IN ({', '.join('?' for _ in row_ids)}) AND state = 'failed'", row_ids
            else:
                where, params = "state = 'failed'", []
            cursor = con.execute(f"UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, "
                                 f"lease_until = 0 WHERE {where}", [_epoch(now), *params])
            return cursor.rowcount
