"""DuckDB connections configured the way every part of agentwatch expects."""

from __future__ import annotations

from typing import Any

import duckdb


def connect(memory_limit: str = "1GB", threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with UTC session time and a bounded memory budget.

    In-memory on purpose: a DuckDB file can be opened by one process only, so the shared state
    lives in Parquet files and every process has its own connection over them.
    """
    con = duckdb.connect(config={"memory_limit": memory_limit})
    run(con, "SET TimeZone = 'UTC'")
    run(con, "SET enable_progress_bar = false")
    if threads:
        run(con, f"SET threads = {int(threads)}")
    return con


def run(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """Execute and fetch every row (DuckDB 2 refuses new work while a result is unread)."""
    return con.execute(sql, params or []).fetchall()


ARROW_BATCH_ROWS = 1_000_000


def run_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """Execute and fetch the whole result as one Arrow table, streamed in batches: DuckDB then never holds the
    whole result a second time (a 2-million-row result peaked 160 MB higher fetched at once)."""
    return con.sql(sql, params=params or None).to_arrow_reader(ARROW_BATCH_ROWS).read_all()
