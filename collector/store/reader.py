"""Read the store: DuckDB views over the Parquet parts, one per dataset.

Any number of processes may read while one writes: parts appear by atomic rename, and a view over
a non-empty dataset re-lists its files every time a query runs. A view created while its dataset had
no part at all stays empty: a long-lived connection calls ``create_views`` again to pick up a dataset's
first parts (it is cheap).
"""

from __future__ import annotations

import duckdb

from collector.datasets import DATASETS, Dataset
from collector.home import Home
from collector.ingest.sql import quote_identifier, sql_string
from collector.store import duck
from collector.store.keyindex import list_parts


def view_sql(home: Home, dataset: Dataset) -> str:
    """The SELECT behind a dataset's view (an empty, typed relation while nothing is stored)."""
    columns = dataset.table_columns()
    directory = home.dataset_dir(dataset.name)
    if not list_parts(directory):
        typed_nulls = ", ".join(f"CAST(NULL AS {t}) AS {quote_identifier(n)}" for n, t in columns)
        return f"SELECT {typed_nulls} WHERE FALSE"
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
