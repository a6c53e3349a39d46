"""Small transactional state in SQLite files of the home (incidents, alert outbox, silences, agent pauses).

SQLite in WAL mode gives concurrent readers and short, serialised writers across processes (the server,
the CLI and the dashboard touch the same files); a DuckDB file admits one process only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agentwatch.core.errors import StoreError


class SqliteFile:
    """One SQLite file with a schema, opened per operation (a connection is never shared between threads)."""

    def __init__(self, path: Path, schema: str, what: str) -> None:
        self.path = path
        self.what = what
        try:
            with self.reading() as con:
                con.executescript(schema)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the {what} {path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA busy_timeout=30000")
        return con

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection, closed afterwards (sqlite3's own context manager leaves it open)."""
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE): committed on success, else rolled back."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()
