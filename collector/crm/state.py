"""What the schema pollers did, kept in ``crm_polls.sqlite3`` in the home, for every process to read.

``pollers``: one row per poller (``salesforce/Lead``): its last try, last success, last error (a fixed phrase with
status codes, never a secret), since when it fails, its next run and the grace after which failing counts. Read by
``agentwatch status``, ``/healthz`` and the dashboard's Schema page.

``polls``: one row per poll, kept ``POLLS_KEPT`` (longer than the checks ever read back): the ``schema.watcher_blind``
check judges a poller at any evaluation time from these rows, so a backtest sees what a live run saw.

Readers never create the file: ``/healthz`` of a home without pollers stays a stat of a missing file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agentwatch.core.home import Home
from agentwatch.core.sqlite import SqliteFile

POLLS_KEPT = timedelta(days=45)

SCHEMA = """
CREATE TABLE IF NOT EXISTS pollers (
    poller TEXT PRIMARY KEY, source TEXT NOT NULL, object TEXT NOT NULL,
    last_attempt_at TEXT, last_success_at TEXT, last_error TEXT, last_error_at TEXT, failing_since TEXT,
    next_run_at TEXT, grace_minutes REAL NOT NULL, last_stored_at TEXT, api_usage TEXT
);
CREATE TABLE IF NOT EXISTS polls (
    poller TEXT NOT NULL, source TEXT NOT NULL, object TEXT NOT NULL, at TEXT NOT NULL, ok INTEGER NOT NULL,
    error TEXT, stored INTEGER NOT NULL, grace_minutes REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS polls_by_time ON polls (at);
"""


def stamp(at: datetime) -> str:
    """A UTC time as fixed-width text, so SQLite compares times as it compares the texts."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def poller_name(source: str, object_name: str) -> str:
    return f"{source}/{object_name}"


@dataclass(frozen=True)
class PollRecord:
    """One poll's result, as recorded."""

    source: str
    object: str
    at: datetime
    ok: bool
    stored: bool
    error: str | None
    next_run_at: datetime
    grace_minutes: float
    api_usage: str | None = None


@dataclass(frozen=True)
class PollerStatus:
    """A poller as the last poll left it."""

    poller: str
    source: str
    object: str
    last_attempt_at: str | None
    last_success_at: str | None
    last_error: str | None
    last_error_at: str | None
    failing_since: str | None
    next_run_at: str | None
    grace_minutes: float
    last_stored_at: str | None
    api_usage: str | None

    def failing_past_grace(self, now: datetime) -> bool:
        """Failing for longer than its grace: the CRM's schema changes go unseen."""
        if self.failing_since is None:
            return False
        return now - datetime.fromisoformat(self.failing_since) >= timedelta(minutes=self.grace_minutes)

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {**asdict(self), "failing_past_grace": self.failing_past_grace(now)}


class PollState:
    """The pollers' file in one home."""

    def __init__(self, home: Home) -> None:
        self.path = home.crm_polls_file

    def _file(self) -> SqliteFile:
        return SqliteFile(self.path, SCHEMA, "CRM pollers' state")

    def record(self, poll: PollRecord) -> None:
        """Write one poll: its row in ``polls`` and the poller's row; polls older than POLLS_KEPT go."""
        name, at = poller_name(poll.source, poll.object), stamp(poll.at)
        with self._file().writing() as con:
            con.execute("INSERT INTO polls VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (name, poll.source, poll.object, at, int(poll.ok), poll.error, int(poll.stored),
                         poll.grace_minutes))
            con.execute("DELETE FROM polls WHERE at < ?", (stamp(poll.at - POLLS_KEPT),))
            con.execute("INSERT OR IGNORE INTO pollers (poller, source, object, grace_minutes) VALUES (?, ?, ?, ?)",
                        (name, poll.source, poll.object, poll.grace_minutes))
            if poll.ok:
                con.execute("UPDATE pollers SET last_success_at = ?, failing_since = NULL WHERE poller = ?",
                            (at, name))
            else:
                con.execute("UPDATE pollers SET last_error = ?, last_error_at = ?, "
                            "failing_since = coalesce(failing_since, ?) WHERE poller = ?",
                            (poll.error, at, at, name))
            if poll.stored:
                con.execute("UPDATE pollers SET last_stored_at = ? WHERE poller = ?", (at, name))
            con.execute("UPDATE pollers SET last_attempt_at = ?, next_run_at = ?, grace_minutes = ?, "
                        "api_usage = coalesce(?, api_usage) WHERE poller = ?",
                        (at, stamp(poll.next_run_at), poll.grace_minutes, poll.api_usage, name))

    def keep_only(self, pollers: list[tuple[str, str]]) -> None:
        """Forget the status of pollers no longer configured (their polls stay, for backtests)."""
        if not self.path.exists():
            return
        names = [poller_name(source, name) for source, name in pollers]
        with self._file().writing() as con:
            marks = ", ".join("?" for _ in names)
            con.execute(f"DELETE FROM pollers WHERE poller NOT IN ({marks})" if names else "DELETE FROM pollers",
                        names)

    def pollers(self) -> list[PollerStatus]:
        """Every poller's status, by name; none when no poller ever ran here."""
        if not self.path.exists():
            return []
        with self._file().reading() as con:
            rows = con.execute("SELECT poller, source, object, last_attempt_at, last_success_at, last_error, "
                               "last_error_at, failing_since, next_run_at, grace_minutes, last_stored_at, api_usage "
                               "FROM pollers ORDER BY poller").fetchall()
        return [PollerStatus(*row) for row in rows]

    def polls(self, until: datetime) -> list[tuple[str, str, str, datetime, bool, str | None, float]]:
        """(poller, source, object, at, ok, error, grace_minutes) of every kept poll up to `until`, by poller and
        time."""
        if not self.path.exists():
            return []
        with self._file().reading() as con:
            rows = con.execute("SELECT poller, source, object, at, ok, error, grace_minutes FROM polls WHERE at <= ? "
                               "ORDER BY poller, at", (stamp(until),)).fetchall()
        return [(p, s, o, datetime.fromisoformat(at), bool(ok), error, grace) for p, s, o, at, ok, error, grace in rows]


def pollers_failing(home: Home, now: datetime) -> bool:
    """Whether a poller has failed for longer than its grace (``/healthz``'s ``crm_poller_failing``)."""
    return any(p.failing_past_grace(now) for p in PollState(home).pollers())


def poller_status(home: Home, now: datetime) -> list[dict[str, Any]]:
    """Every poller's status as JSON (``agentwatch status``, ``GET /v1/status``)."""
    return [p.to_json(now) for p in PollState(home).pollers()]
