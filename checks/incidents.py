"""Where incidents live: SQLite at ``AGENTWATCH_HOME/incidents.sqlite3``.

SQLite and not DuckDB because incidents are small, transactional state that several processes
change at once (the scheduler in ``serve``, ``agentwatch incident ack``, the dashboard reading):
SQLite's WAL mode gives concurrent readers and short, serialised writers; a DuckDB file admits one
process only. A run of the checks works on :class:`IncidentBook` in memory and saves once; on save
a human's acknowledgement or resolution made meanwhile wins over the run's view.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentwatch.checks.base import subject_key
from agentwatch.core.errors import ConfigError
from agentwatch.core.sqlite import SqliteFile
from agentwatch.schemas.incidents import Incident

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_key_status ON incidents (key, status);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


HUMAN_FIELDS = ("acknowledged_by", "resolved_by", "operator_note")  # what only a person's ack or resolve sets


def incident_key(incident: Incident) -> str:

    return subject_key(incident.check, incident.subject)


class IncidentStore:
    """The incidents of one agentwatch home (or of one backtest, in a file of its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(path, SCHEMA, "incident store")
        self._reading = self._file.reading
        self._writing = self._file.writing

    def list(self, statuses: Iterable[str] | None = None, check: str | None = None, agent_id: str | None = None,
             limit: int | None = None) -> builtins.list[Incident]:
        """Incidents, newest first, optionally only those with the given statuses, of one check, naming one agent
        (its subject's, or one its evidence lists: ``agents_named``), the newest `limit`; filtered in SQLite."""
        wanted = list(statuses or [])
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = list(wanted)
        if wanted:
            clauses.append(f"status IN ({', '.join('?' for _ in wanted)})")
        if check is not None:
            clauses.append("json_extract(body, '$.check') = ?")
            params.append(check)
        if agent_id is not None:
            clauses.append("(json_extract(body, '$.subject.agent_id') = ? OR EXISTS (SELECT 1 FROM "
                           "json_each(body, '$.evidence.agents') WHERE value = ?))")
            params += [agent_id, agent_id]
        sql = "SELECT body FROM incidents" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY seq DESC" + (" LIMIT ?" if limit is not None else "")
        with self._reading() as con:
            rows = con.execute(sql, params + ([limit] if limit is not None else [])).fetchall()
        return [Incident.model_validate_json(body) for (body,) in rows]

    def unresolved_critical(self) -> builtins.list[Incident]:
        """The open and acknowledged critical incidents, filtered in SQLite (the agent guard asks per request)."""
        with self._reading() as con:
            rows = con.execute("SELECT body FROM incidents WHERE status <> 'resolved' "
                               "AND json_extract(body, '$.severity') = 'critical' ORDER BY seq DESC").fetchall()
        return [Incident.model_validate_json(body) for (body,) in rows]

    def unresolved_counts(self) -> builtins.list[tuple[str, str, int]]:
        """(severity, status, count) of the open and acknowledged incidents, counted in SQLite (for metrics)."""
        if not self.path.exists():
            return []
        with self._reading() as con:
            rows = con.execute("SELECT json_extract(body, '$.severity'), status, count(*) FROM incidents "
                               "WHERE status <> 'resolved' GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        return [(str(severity), str(status), int(count)) for severity, status, count in rows]

    def get(self, incident_id: str) -> Incident:
        with self._reading() as con:
            row = con.execute("SELECT body FROM incidents WHERE id = ?", [incident_id]).fetchone()
        if row is None:
            raise ConfigError(f"no incident has the id {incident_id!r}; `agentwatch incidents` lists them")
        return Incident.model_validate_json(row[0])

    def get_many(self, incident_ids: builtins.list[str]) -> builtins.list[Incident]:
        """The incidents with these ids (those that exist)."""
        if not incident_ids:
            return []
        with self._reading() as con:
            rows = con.execute(f"SELECT body FROM incidents WHERE id IN ({', '.join('?' for _ in incident_ids)})",
                               incident_ids).fetchall()
        return [Incident.model_validate_json(body) for (body,) in rows]

    def set_status(self, incident_id: str, status: str, at: datetime | None = None, by: str | None = None,
                   note: str | None = None) -> Incident:
        """A human (`by`, e.g. user@host, or an API key's name) acknowledges or resolves an incident, with an
        optional `note` (why)."""
        at = at or datetime.now(UTC)
        with self._writing() as con:
            row = con.execute("SELECT body FROM incidents WHERE id = ?", [incident_id]).fetchone()
            if row is None:
                raise ConfigError(f"no incident has the id {incident_id!r}; `agentwatch incidents` lists them")
            incident = Incident.model_validate_json(row[0])
            if incident.status == "resolved" and status == "acknowledged":
                raise ConfigError(f"{incident_id} is already resolved")
            if incident.status == status:  # already so: keep who and when it first became so, and a new note
                if not note or note == incident.operator_note:
                    return incident
                incident = incident.model_copy(update={"operator_note": note})
                con.execute("UPDATE incidents SET body = ? WHERE id = ?", [incident.model_dump_json(), incident_id])
                return incident
            update: dict[str, Any] = {"status": status}
            update["acknowledged_at" if status == "acknowledged" else "resolved_at"] = at
            update["acknowledged_by" if status == "acknowledged" else "resolved_by"] = by
            if note:
                update["operator_note"] = note
            if status == "resolved":
                update["status_note"] = f"resolved by {by or 'hand'}" + (f": {note}" if note else "")
            incident = incident.model_copy(update=update)
            con.execute("UPDATE incidents SET status = ?, body = ? WHERE id = ?",
                        [status, incident.model_dump_json(), incident_id])
        return incident

    def forget_events(self, event_ids: Iterable[str]) -> int:
        """Drop erased events from every incident's sample_event_ids (``agentwatch erase``), so no page links to an
        event that is gone; returns how many incidents changed. Filtered in SQLite: only incidents citing one."""
        erased = sorted(set(event_ids))
        if not erased:
            return 0
        changed = 0
        with self._writing() as con:
            con.execute("CREATE TEMP TABLE IF NOT EXISTS _erased (event_id TEXT PRIMARY KEY)")
            con.execute("DELETE FROM _erased")
            con.executemany("INSERT OR IGNORE INTO _erased VALUES (?)", [(i,) for i in erased])
            rows = con.execute("SELECT id, body FROM incidents WHERE EXISTS (SELECT 1 FROM json_each(body, "
                               "'$.sample_event_ids') AS s JOIN _erased AS e ON e.event_id = s.value)").fetchall()
            gone = set(erased)
            for incident_id, body in rows:
                incident = Incident.model_validate_json(body)
                kept = [i for i in incident.sample_event_ids if i not in gone]
                con.execute("UPDATE incidents SET body = ? WHERE id = ?",
                            [incident.model_copy(update={"sample_event_ids": kept}).model_dump_json(), incident_id])
                changed += 1
            con.execute("DROP TABLE _erased")
        return changed

    def next_number(self, con: sqlite3.Connection) -> int:
        row = con.execute("SELECT value FROM meta WHERE name = 'next_incident'").fetchone()
        return int(row[0]) if row else 1

    def save(self, incidents: Iterable[Incident], first_number: int) -> int:
        """Insert or update incidents from a run; a human's ack/resolve made meanwhile is kept.

        Returns the next free incident number. `first_number` is what the run used for its new ids;
        if another run took numbers meanwhile, the new incidents are renumbered.
        """
        with self._writing() as con:
            number = self.next_number(con)
            renamed: dict[str, str] = {}
            batch = list(incidents)
            # The run numbered its new incidents from `first_number`; ids below it are incidents it loaded.
            new = sorted((i for i in batch if incident_number(i.id) >= first_number),
                         key=lambda i: incident_number(i.id))
            if number > first_number:  # another run took numbers meanwhile: the ids may be taken, renumber
                for incident in new:
                    renamed[incident.id] = f"INC-{number}"
                    number += 1
            elif new:
                number = max(number, incident_number(new[-1].id) + 1)
            for incident in batch:
                incident = _renumber(incident, renamed)
                row = con.execute("SELECT status, body FROM incidents WHERE id = ?", [incident.id]).fetchone()
                if row is None:
                    con.execute("INSERT INTO incidents (id, key, status, body) VALUES (?, ?, ?, ?)",
                                [incident.id, incident_key(incident), incident.status, incident.model_dump_json()])
                    continue
                stored = Incident.model_validate_json(row[1])
                incident = _keep_human_decision(stored, incident)
                con.execute("UPDATE incidents SET status = ?, body = ? WHERE id = ?",
                            [incident.status, incident.model_dump_json(), incident.id])
            con.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('next_incident', ?)", [str(number)])
        return number

    def record_run(self, as_of: datetime, seconds: float, failed: builtins.list[str],
                   finished_at: datetime | None = None) -> None:
        """Remember the latest live run of the checks (``check``, or ``serve``'s scheduler): when it finished,
        up to what time it evaluated, how long it took, which checks failed, and its number (runs are counted, so
        a reader polling this can tell whether it missed one)."""
        run = {"finished_at": (finished_at or datetime.now(UTC)).isoformat(), "as_of": as_of.isoformat(),
               "seconds": round(seconds, 3), "failed_checks": failed}
        with self._writing() as con:
            row = con.execute("SELECT value FROM meta WHERE name = 'last_check_run'").fetchone()
            run["number"] = (json.loads(row[0]).get("number", 0) if row else 0) + 1
            con.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('last_check_run', ?)", [json.dumps(run)])

    def last_run(self) -> dict[str, Any] | None:
        """What :meth:`record_run` recorded last, or None before the first live run."""
        if not self.path.exists():
            return None
        with self._reading() as con:
            row = con.execute("SELECT value FROM meta WHERE name = 'last_check_run'").fetchone()
        return json.loads(row[0]) if row else None

    def cadences(self) -> dict[str, dict[str, Any]]:
        """Check name -> what its last run left of its cadence (``Check.cadence_state``)."""
        if not self.path.exists():
            return {}
        with self._reading() as con:
            row = con.execute("SELECT value FROM meta WHERE name = 'check_cadences'").fetchone()
        return json.loads(row[0]) if row else {}

    def save_cadences(self, states: dict[str, dict[str, Any]]) -> None:
        """Record the checks' cadence states (others' stay as they were)."""
        if not states:
            return
        with self._writing() as con:
            row = con.execute("SELECT value FROM meta WHERE name = 'check_cadences'").fetchone()
            merged = {**(json.loads(row[0]) if row else {}), **states}
            con.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('check_cadences', ?)",
                        [json.dumps(merged, default=str)])

    def load_book(self) -> tuple[builtins.list[Incident], int]:
        """The incidents not resolved, and the next free number, to start a run from."""
        with self._reading() as con:
            rows = con.execute("SELECT body FROM incidents WHERE status <> 'resolved' ORDER BY seq").fetchall()
            number = self.next_number(con)
        return [Incident.model_validate_json(body) for (body,) in rows], number


def incident_number(incident_id: str) -> int:
    """The number of an id: INC-12 -> 12."""
    return int(incident_id.split("-")[1])


def _renumber(incident: Incident, renamed: dict[str, str]) -> Incident:
    if not renamed:
        return incident
    return incident.model_copy(update={
        "id": renamed.get(incident.id, incident.id),
        "caused_by": [renamed.get(i, i) for i in incident.caused_by],
        "effects": [renamed.get(i, i) for i in incident.effects],
    })


def _keep_human_decision(stored: Incident, ours: Incident) -> Incident:
    """A human's resolve stands; a human's ack stands unless the run resolved the incident. Who did it, and their
    note, stay whatever the run saw."""
    ours = ours.model_copy(update={name: getattr(stored, name) for name in HUMAN_FIELDS
                                   if getattr(ours, name) is None and getattr(stored, name) is not None})
    if stored.status == "resolved" and ours.status != "resolved":
        return ours.model_copy(update={"status": "resolved", "resolved_at": stored.resolved_at})
    if stored.status == "acknowledged" and ours.status == "open":
        return ours.model_copy(update={"status": "acknowledged", "acknowledged_at": stored.acknowledged_at})
    return ours


def dumps(incidents: builtins.list[Incident]) -> str:
    """Incidents as a JSON array."""
    return json.dumps([json.loads(i.model_dump_json()) for i in incidents], indent=2)
