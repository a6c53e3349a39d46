"""Silences: for a while, incidents matching some patterns are recorded and shown but not sent.

A silence is a list of ``key=pattern`` matchers (all must match, shell-style globs such as ``schema.*``),
a time window, who made it and why. It lives in the ``silences`` table of ``alerts.sqlite3``; times there
are epoch seconds. Expiring a silence early keeps its row (``expired_at``) so the history stays.
"""

from __future__ import annotations

import builtins
import getpass
import json
import os
import socket
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, Field

from agentwatch.alerts.config import MATCH_KEYS, pattern_problem
from agentwatch.checks.base import REGISTRY
from agentwatch.checks.catalog import load_all
from agentwatch.core.durations import format_duration
from agentwatch.core.errors import ConfigError
from agentwatch.core.sqlite import SqliteFile

SILENCE_KEYS = (*MATCH_KEYS, "id")
SilenceState = Literal["active", "pending", "expired"]
COLUMNS = "id, matchers, starts_at, ends_at, created_by, comment, created_at, expired_at"


class Silence(BaseModel):
    """Notifications of incidents matching every matcher are held back from starts_at until ends_at."""

    id: str = Field(description="SIL-<n>, unique in the home.")
    matchers: list[tuple[str, str]] = Field(description="(key, shell-style pattern); every one must match.")
    starts_at: datetime
    ends_at: datetime = Field(description="When it ends as planned.")
    created_by: str = Field(description="Who made it, e.g. ana@laptop.")
    comment: str = Field(description="Why it exists.")
    created_at: datetime
    expired_at: datetime | None = Field(None, description="When it was ended early; None otherwise.")

    @property
    def ended_at(self) -> datetime:
        """When it stops silencing: the planned end, or the early expiry if that came first."""
        return min(self.ends_at, self.expired_at) if self.expired_at else self.ends_at

    def active(self, at: datetime) -> bool:
        return self.starts_at <= _utc(at) < self.ended_at

    def state(self, at: datetime) -> SilenceState:
        at = _utc(at)
        if at >= self.ended_at:
            return "expired"
        return "pending" if at < self.starts_at else "active"

    def matches(self, properties: dict[str, list[str]]) -> bool:
        """True when each matcher's pattern matches one of the incident's values for its key."""
        return all(any(fnmatchcase(value, pattern) for value in properties.get(key, []))
                   for key, pattern in self.matchers)

    def describe(self) -> str:
        """The matchers as ``key=pattern`` words."""
        return " ".join(f"{key}={pattern}" for key, pattern in self.matchers)


def parse_matcher(text: str, option: str = "matcher") -> tuple[str, str]:
    """``check=volume.*`` as ``("check", "volume.*")``; ConfigError naming the text and the allowed keys."""
    key, sep, pattern = text.partition("=")
    key, pattern = key.strip(), pattern.strip()
    allowed = ", ".join(SILENCE_KEYS)
    if not sep or not pattern:
        raise ConfigError(f"{option} {text!r}: give key=pattern, e.g. check=volume.* (keys: {allowed})")
    if key not in SILENCE_KEYS:
        raise ConfigError(f"{option} {text!r}: unknown key {key!r}; the keys are {allowed}")
    return key, pattern


def operator_name() -> str:
    """Who is at the keyboard, as ``user@host``: $USER, else the login name."""
    user = os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


def silence_for(silences: Iterable[Silence], properties: dict[str, list[str]], at: datetime) -> Silence | None:
    """Of the silences active at `at` that match, the one that lasts longest; None when none does."""
    matching = [s for s in silences if s.active(at) and s.matches(properties)]
    return max(matching, key=lambda s: s.ended_at, default=None)


class Silences:
    """The silences of one home, in the ``silences`` table of its alerts database."""

    def __init__(self, db: SqliteFile) -> None:
        self.db = db

    def add(self, matchers: Iterable[tuple[str, str]], duration: timedelta, comment: str, created_by: str,
            now: datetime | None = None, starts_at: datetime | None = None) -> Silence:
        """A new silence from `starts_at` (default now) for `duration`; it must match something and say why."""
        pairs = [_checked(key, pattern) for key, pattern in matchers]
        if not pairs:
            raise ConfigError(f"a silence needs at least one matcher key=pattern (keys: {', '.join(SILENCE_KEYS)})")
        if duration <= timedelta(0):
            raise ConfigError(f"a silence must last longer than 0; {format_duration(duration)} was given")
        if not comment.strip():
            raise ConfigError("a silence must say why it exists: give a comment")
        if not created_by.strip():
            raise ConfigError("a silence must say who made it: give a name")
        created = _utc(now or datetime.now(UTC))
        start = _utc(starts_at) if starts_at else created
        with self.db.writing() as con:
            number = _next_number(con)
            silence = Silence(id=f"SIL-{number}", matchers=pairs, starts_at=start, ends_at=start + duration,
                              created_by=created_by.strip(), comment=comment.strip(), created_at=created)
            con.execute(f"INSERT INTO silences ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(silence))
            con.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('next_silence', ?)", [str(number + 1)])
        return silence

    def list(self, include_expired: bool = False, now: datetime | None = None) -> builtins.list[Silence]:
        """Active and pending silences, newest first; with include_expired also those that have ended."""
        at = _utc(now or datetime.now(UTC))
        with self.db.reading() as con:
            rows = con.execute(f"SELECT {COLUMNS} FROM silences ORDER BY created_at DESC, rowid DESC").fetchall()
        found = [_silence(row) for row in rows]
        return found if include_expired else [s for s in found if s.ended_at > at]

    def get(self, silence_id: str) -> Silence:
        with self.db.reading() as con:
            row = con.execute(f"SELECT {COLUMNS} FROM silences WHERE id = ?", [silence_id]).fetchone()
        if row is None:
            raise _unknown(silence_id)
        return _silence(row)

    def expire(self, silence_id: str, now: datetime | None = None) -> Silence:
        """End a silence now; one that has already ended is returned as it is."""
        at = _utc(now or datetime.now(UTC))
        with self.db.writing() as con:
            row = con.execute(f"SELECT {COLUMNS} FROM silences WHERE id = ?", [silence_id]).fetchone()
            if row is None:
                raise _unknown(silence_id)
            silence = _silence(row)
            if silence.ended_at <= at:
                return silence
            silence = silence.model_copy(update={"expired_at": at})
            con.execute("UPDATE silences SET expired_at = ? WHERE id = ?", [at.timestamp(), silence_id])
        return silence

    def active(self, now: datetime | None = None) -> builtins.list[Silence]:
        at = _utc(now or datetime.now(UTC))
        return [s for s in self.list(now=at) if s.active(at)]

    def silenced_by(self, properties: dict[str, builtins.list[str]], now: datetime | None = None) -> Silence | None:
        """The active silence holding back an incident with these properties (the longest lasting), or None."""
        at = _utc(now or datetime.now(UTC))
        return silence_for(self.active(at), properties, at)


def _checked(key: str, pattern: str) -> tuple[str, str]:
    """A matcher to store: well formed, and a check or severity pattern that matches something (a misspelled
    check would silence nothing while looking as if it worked)."""
    key, pattern = parse_matcher(f"{key}={pattern}")
    load_all()
    problem = pattern_problem(key, pattern, list(REGISTRY))
    if problem:
        raise ConfigError(f"{key}={pattern}: {problem}")
    return key, pattern


def _unknown(silence_id: str) -> ConfigError:
    return ConfigError(f"no silence has the id {silence_id!r}; `agentwatch silence list --all` lists them")


def _next_number(con: sqlite3.Connection) -> int:
    row = con.execute("SELECT value FROM meta WHERE name = 'next_silence'").fetchone()
    return int(row[0]) if row else 1


def _utc(at: datetime) -> datetime:
    """An aware time in UTC; a naive one is taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _row(silence: Silence) -> builtins.list[object]:
    expired = silence.expired_at.timestamp() if silence.expired_at else None
    return [silence.id, json.dumps(silence.matchers), silence.starts_at.timestamp(), silence.ends_at.timestamp(),
            silence.created_by, silence.comment, silence.created_at.timestamp(), expired]


def _silence(row: tuple) -> Silence:
    id_, matchers, starts, ends, by, comment, created, expired = row
    return Silence(id=id_, matchers=[tuple(pair) for pair in json.loads(matchers)], starts_at=_time(starts),
                   ends_at=_time(ends), created_by=by, comment=comment, created_at=_time(created),
                   expired_at=_time(expired))
