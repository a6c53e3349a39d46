"""The durable outbox: notifications wait here until a destination took them, across restarts.

A notification is queued in the same transaction that records it as sent (see ``agentwatch.alerts.notify``), then
delivered by whichever process gets to it first: a sender leases one row at a time before sending it, so two
processes never send one row at once, and a row is only marked while it is still pending (a sender that lost
its lease cannot overwrite another's result). A row is marked delivered after the destination answered 2xx;
a crash between the answer and the mark resends it once the lease ends (at once when the holder was killed on
this host, see ``agentwatch.alerts.leases``), with the same id (``X-Agentwatch-Delivery``, PagerDuty's
``dedup_key``), so receivers can drop the copy. After
``max_attempts`` it is marked failed, and stays visible (``agentwatch alerts outbox``, ``/healthz``) until
retried.

Order: per destination and group, notifications go out strictly in the order they were planned (``seq``). A
row is only claimed when no earlier row of its group and destination is still pending, so while an earlier
one waits for its retry the later ones wait behind it, and a later state never overtakes an earlier one. A
pending acknowledge or repeat with a later notification queued behind it, or a pending update with a resolve
behind it, says nothing the later one does not: it is marked ``superseded`` (with the id that superseded it)
and skipped. A trigger is never skipped. A failed row no longer holds its group back; retrying it after a later
row of its group was delivered would send an older state last, so such a row is marked superseded instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from agentwatch.alerts.leases import holder_gone, this_holder
from agentwatch.core.errors import ConfigError
from agentwatch.core.sqlite import SqliteFile
from agentwatch.schemas.notifications import Notification

STATES = ("pending", "delivered", "failed", "superseded")
# Events a later notification makes needless: (the early event, the later events that supersede it).
SUPERSEDED_BY = {"acknowledge": ("trigger", "update", "repeat", "acknowledge", "resolve"),
                 "repeat": ("trigger", "update", "repeat", "acknowledge", "resolve"), "update": ("resolve",)}
_EVENTS = ("trigger", "update", "repeat", "acknowledge", "resolve")
AFTER_DELIVERED = {event: _EVENTS for event in _EVENTS}  # anything delivered later makes a failed row stale


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
    superseded_by: str | None = None

    def notification(self) -> Notification:
        return Notification.model_validate_json(self.body)


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


COLUMNS = ("id, destination, state, attempts, next_attempt_at, last_error, last_status, created_at, delivered_at, "
           "body, superseded_by")
# True for a pending row of outbox `o` that an earlier pending row of its destination and group holds back.
BEHIND = ("EXISTS (SELECT 1 FROM outbox AS e WHERE e.destination = o.destination AND e.group_key = o.group_key "
          "AND e.state = 'pending' AND e.seq < o.seq)")


def _row(values: tuple) -> OutboxRow:
    (id_, destination, state, attempts, next_at, error, status, created, delivered, body, superseded_by) = values
    return OutboxRow(id_, destination, state, attempts, datetime.fromtimestamp(next_at, UTC), error, status,
                     datetime.fromtimestamp(created, UTC), _time(delivered), body, superseded_by)


def enqueue(con: sqlite3.Connection, notifications: Iterable[Notification], now: datetime) -> int:
    """Queue notifications inside the caller's transaction; an id already queued is left as it is."""
    (top,) = con.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()
    rows = [(n.id, n.destination, n.group_key, n.event, top + order, n.model_dump_json(), _epoch(now), _epoch(now))
            for order, n in enumerate(notifications, 1)]
    before = con.total_changes
    con.executemany("INSERT OR IGNORE INTO outbox (id, destination, group_key, event, seq, body, state, "
                    "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)", rows)
    return con.total_changes - before


def _supersede(con: sqlite3.Connection, rules: Mapping[str, tuple[str, ...]], early_states: tuple[str, ...],
               later_states: tuple[str, ...], now: datetime, ids: list[str] | None = None) -> list[str]:
    """Mark superseded the rows in `early_states` (those of `ids`, or all) that a later row of their destination
    and group in `later_states` makes needless by `rules` (never one a sender holds); returns their ids."""
    found: list[tuple[str, str]] = []
    for event, later_events in rules.items():
        found += con.execute(
            f"SELECT o.id, (SELECT l.id FROM outbox AS l WHERE l.destination = o.destination "
            f"AND l.group_key = o.group_key AND l.seq > o.seq AND l.state IN ({_marks(later_states)}) "
            f"AND l.event IN ({_marks(later_events)}) ORDER BY l.seq DESC LIMIT 1) AS later FROM outbox AS o "
            f"WHERE o.event = ? AND o.state IN ({_marks(early_states)}) AND o.lease_until <= ? AND later IS NOT NULL"
            + (f" AND o.id IN ({_marks(ids)})" if ids is not None else ""),
            [*later_states, *later_events, event, *early_states, _epoch(now), *(ids or [])]).fetchall()
    con.executemany("UPDATE outbox SET state = 'superseded', superseded_by = ?, lease_until = 0 WHERE id = ?",
                    [(later, early) for early, later in found])
    return [early for early, _ in found]


def _release_leases_of_the_dead(con: sqlite3.Connection, now: datetime) -> None:
    """End the leases of senders that were killed mid-send (see ``agentwatch.alerts.leases``)."""
    holders = [h for (h,) in con.execute("SELECT DISTINCT lease_holder FROM outbox WHERE state = 'pending' "
                                         "AND lease_until > ? AND lease_holder IS NOT NULL", [_epoch(now)])]
    con.executemany("UPDATE outbox SET lease_until = 0 WHERE lease_holder = ? AND state = 'pending'",
                    [(h,) for h in holders if holder_gone(h)])


def _marks(values: Iterable[object]) -> str:
    return ", ".join("?" for _ in values)


class Outbox:
    """The outbox table of one ``alerts.sqlite3``."""

    def __init__(self, db: SqliteFile) -> None:
        self.db = db

    def claim_due(self, now: datetime, lease_s: float, limit: int = 50) -> list[OutboxRow]:
        """Pending rows due by `now` that no other sender holds and no earlier pending row of their destination
        and group holds back, leased to the caller for `lease_s`; superseded rows are marked so first."""
        with self.db.writing() as con:
            _release_leases_of_the_dead(con, now)
            _supersede(con, SUPERSEDED_BY, ("pending",), ("pending",), now)
            rows = con.execute(f"SELECT {COLUMNS} FROM outbox AS o WHERE state = 'pending' AND next_attempt_at <= ? "
                               f"AND lease_until <= ? AND NOT {BEHIND} ORDER BY seq LIMIT ?",
                               [_epoch(now), _epoch(now), limit]).fetchall()
            holder = this_holder()
            con.executemany("UPDATE outbox SET lease_until = ?, lease_holder = ? WHERE id = ?",
                            [(_epoch(now) + lease_s, holder, r[0]) for r in rows])
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
                                "ORDER BY seq DESC LIMIT ?", [*wanted, limit]).fetchall()
        return [_row(r) for r in found]

    def counts(self) -> dict[str, int]:
        """Rows per state (every state present, 0 when none)."""
        with self.db.reading() as con:
            found = dict(con.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        return {state: found.get(state, 0) for state in STATES}

    def next_due(self) -> datetime | None:
        """When the next pending row no earlier one holds back is due (None when nothing is pending)."""
        with self.db.reading() as con:
            (value,) = con.execute("SELECT min(max(next_attempt_at, lease_until)) FROM outbox AS o "
                                   f"WHERE state = 'pending' AND NOT {BEHIND}").fetchone()
        return _time(value)

    def retry(self, row_ids: list[str] | None, now: datetime) -> int:
        """Put failed rows (those given, or all) back in the queue with their attempts reset; one whose group
        already told the destination something later is marked superseded instead (sending it now would make an
        older state the last word)."""
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
            _supersede(con, AFTER_DELIVERED, ("failed",), ("delivered",), now, row_ids or None)
            cursor = con.execute(f"UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, "
                                 f"lease_until = 0 WHERE {where}", [_epoch(now), *params])
            return cursor.rowcount
