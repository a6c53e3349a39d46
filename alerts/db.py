"""The alerting state of one home, in ``alerts.sqlite3``: outbox, what was sent per group, silences, pauses.

One file so that deciding a notification and queueing it commit together: a crash between the two can
neither lose the notification nor send it twice.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from agentwatch.core.home import Home
from agentwatch.core.sqlite import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
-- One row per notification to one destination; id is its idempotency key. Times are epoch seconds.
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    group_key TEXT,                            -- the notification's group: order is kept per destination and group
    event TEXT,                                -- trigger | update | repeat | acknowledge | resolve
    seq INTEGER,                               -- planned order (increasing over the whole outbox)
    body TEXT NOT NULL,
    state TEXT NOT NULL,                       -- pending | delivered | failed | superseded
    superseded_by TEXT,                        -- the later notification that made this one needless
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,       -- a sender holds the row until then
    lease_holder TEXT,                         -- host:pid:start of that sender (agentwatch.alerts.leases)
    last_error TEXT,
    last_status INTEGER,
    created_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
-- What each destination was last told about each group of incidents.
CREATE TABLE IF NOT EXISTS sent_groups (
    destination TEXT NOT NULL,
    group_key TEXT NOT NULL,
    revision INTEGER NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    members TEXT NOT NULL,                     -- JSON list of incident ids
    first_sent_at REAL NOT NULL,
    last_sent_at REAL NOT NULL,
    PRIMARY KEY (destination, group_key)
);
-- Which group each incident belongs to, decided when it is first seen (so a group keeps its members).
CREATE TABLE IF NOT EXISTS incident_groups (
    incident_id TEXT PRIMARY KEY,
    group_key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,                    -- JSON list of [key, pattern]
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at REAL NOT NULL,
    expired_at REAL
);
-- Every pause and resume of an agent, by an operator or by agentwatch itself.
CREATE TABLE IF NOT EXISTS agent_controls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL,
    action TEXT NOT NULL,                      -- pause | resume
    by TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    incident_id TEXT
);
CREATE INDEX IF NOT EXISTS agent_controls_agent ON agent_controls (agent_id, seq);
"""


def alerts_db(home: Home) -> SqliteFile:
    return open_alerts_db(home.alerts_file)


def open_alerts_db(path: Path) -> SqliteFile:
    db = SqliteFile(path, SCHEMA, "alerting state")
    _add_order_columns(db)
    return db


# Columns an outbox made before notifications were ordered (and leases named their holder) lacks, and how to
# fill them from what it holds (rows were inserted in planned order, so rowid is that order).
ORDER_COLUMNS = {"group_key": "json_extract(body, '$.group_key')", "event": "json_extract(body, '$.event')",
                 "seq": "rowid", "superseded_by": "NULL", "lease_holder": "NULL"}
ORDER_INDEX = ("CREATE INDEX IF NOT EXISTS outbox_order ON outbox (destination, group_key, seq);"
               "CREATE INDEX IF NOT EXISTS outbox_seq ON outbox (seq);")


def _add_order_columns(db: SqliteFile) -> None:
    with db.reading() as con:
        if set(ORDER_COLUMNS) <= {row[1] for row in con.execute("PRAGMA table_info(outbox)")}:
            con.executescript(ORDER_INDEX)
            return
    with db.writing() as con:
        present = {row[1] for row in con.execute("PRAGMA table_info(outbox)")}
        for column, value in ORDER_COLUMNS.items():
            if column not in present:
                con.execute(f"ALTER TABLE outbox ADD COLUMN {column} {'INTEGER' if column == 'seq' else 'TEXT'}")
                con.execute(f"UPDATE outbox SET {column} = {value}")
        for statement in ORDER_INDEX.split(";")[:-1]:
            con.execute(statement)


def install_id(db: SqliteFile) -> str:
    """A random id of this installation, made once: it keeps PagerDuty dedup keys of two installs apart."""
    with db.writing() as con:
        row = con.execute("SELECT value FROM meta WHERE name = 'install_id'").fetchone()
        if row:
            return row[0]
        value = secrets.token_hex(4)
        con.execute("INSERT INTO meta (name, value) VALUES ('install_id', ?)", [value])
        return value
