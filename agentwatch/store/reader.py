"""Read the store: DuckDB views over the Parquet parts, one per dataset.

Any number of processes may read while one writes: parts appear by atomic rename, and a view
re-lists its files every time a query runs, so a long-lived connection sees new parts as they land.
Every dataset holds one zero-row part with the full column types (``part-schema.parquet``, in the
``day=1970-01-01`` partition where there are partitions), so the glob always matches a file and
the view's types are right before any event arrives.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

from agentwatch.core.durable import fsync_dir, fsync_file
from agentwatch.core.home import Home
from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.store import duck
from agentwatch.store.datasets import DATASETS, Dataset

SCHEMA_PART = "part-schema.parquet"
EMPTY_PARTITION = "day=1970-01-01"


def schema_part_path(home: Home, dataset: Dataset) -> Path:
    """Where a dataset's zero-row, fully typed part lives."""
    directory = home.dataset_dir(dataset.name)
    return (directory / EMPTY_PARTITION if dataset.partitioned_by_day else directory) / SCHEMA_PART


def ensure_schema_part(home: Home, dataset: Dataset) -> None:
    """Write the dataset's zero-row part if it is missing (atomically: any process may race here)."""
    path = schema_part_path(home, dataset)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{SCHEMA_PART}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    typed_nulls = ", ".join(f"CAST(NULL AS {t}) AS {quote_identifier(n)}" for n, t in dataset.stored_columns())
    con = duck.connect(memory_limit="64MB")
    try:
        duck.run(con, f"COPY (SELECT {typed_nulls} WHERE FALSE) TO {sql_string(str(temp))} (FORMAT parquet)")
    finally:
        con.close()
    fsync_file(temp)
    os.replace(temp, path)
    fsync_dir(path.parent)


def view_sql(home: Home, dataset: Dataset) -> str:
    """The SELECT behind a dataset's view."""
    ensure_schema_part(home, dataset)
    columns = dataset.table_columns()
    directory = home.dataset_dir(dataset.name)
    names = ", ".join(quote_identifier(n) for n, _ in columns)
    glob = sql_string(str(directory / "**" / "part-*.parquet"))
    hive = ", hive_partitioning = true, hive_types = {'day': DATE}" if dataset.partitioned_by_day else ""
    return f"SELECT {names} FROM read_parquet({glob}, union_by_name = true{hive})"


def create_views(con: duckdb.DuckDBPyConnection, home: Home) -> None:
    """(Re)create the views ``actions``, ``outcomes`` and ``schema_snapshots`` on `con`."""
    for dataset in DATASETS.values():
        duck.run(con, f"CREATE OR REPLACE VIEW {dataset.name} AS {view_sql(home, dataset)}")


def open_reader(home: Home, memory_limit: str = "2GB") -> duckdb.DuckDBPyConnection:
    """A fresh in-memory connection with a view per dataset."""
    con = duck.connect(memory_limit=memory_limit)
    create_views(con, home)
    return con


UTC_TODAY_SQL = "CAST(timezone('UTC', now()) AS DATE)"


def latest_event_sql(view: str) -> str:
    """A scalar subquery: the latest event time of a view that is not in the future (one event sent with a wrong
    clock must not move every range past the data), reading only the latest day's partition: cheap enough for a
    health check polled every few seconds."""
    return (f"(SELECT max(ts) FROM {view} WHERE ts <= now() "
            f"AND day = (SELECT max(day) FROM {view} WHERE day <= {UTC_TODAY_SQL}))")
