"""Read the store: DuckDB views over the Parquet parts, one per dataset.

Any number of processes may read while one writes and a compaction merges: each view reads an explicit list of
the dataset's visible parts (``agentwatch.store.partitions``: a merged file hides the parts it replaces, and those
are deleted only after a grace period), and the connection lists them again before a query whenever
``store_version`` changed, so a long-lived connection sees new parts as they land and never a row twice.
Every dataset holds one zero-row part with the full column types (``part-schema.parquet``, in the
``day=1970-01-01`` partition where there are partitions), so the list always holds a file and
the view's types are right before any event arrives. A damaged part is quarantined when a query
fails on it, and the query runs again over the rest (``agentwatch.store.quarantine``).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import cast

import duckdb

from agentwatch.core.home import Home
from agentwatch.core.sql import quote_identifier
from agentwatch.store import duck
from agentwatch.store.datasets import DATASETS, Dataset
from agentwatch.store.guarded import GuardedConnection, StoreViews
from agentwatch.store.layout import EMPTY_PARTITION, SCHEMA_PART, ensure_schema_part, schema_part_path
from agentwatch.store.partitions import parts_sql, store_version, visible_files
from agentwatch.store.quarantine import SuspectedDamage, repair, survive_damage

log = logging.getLogger(__name__)

__all__ = ["EMPTY_PARTITION", "SCHEMA_PART", "create_views", "ensure_schema_part", "latest_event_sql",
           "open_reader", "schema_part_path", "view_sql"]


def view_sql(home: Home, dataset: Dataset) -> str:
    """The SELECT behind a dataset's view."""
    ensure_schema_part(home, dataset)
    columns = dataset.table_columns()
    names = ", ".join(quote_identifier(n) for n, _ in columns)
    hive = ", hive_partitioning = true, hive_types = {'day': DATE}" if dataset.partitioned_by_day else ""
    files = parts_sql(visible_files(home, dataset.name))
    return f"SELECT {names} FROM read_parquet({files}, union_by_name = true{hive})"


def create_views(con: duckdb.DuckDBPyConnection, home: Home) -> None:
    """(Re)create the views ``actions``, ``outcomes`` and ``schema_snapshots`` on `con`.

    Creating a view reads every part's footer (DuckDB binds it), so a damaged part is met here already; and a
    part whose columns have other types than the dataset's shows as a view with other types (``union_by_name``
    would silently widen them): both quarantine the part.
    """
    for dataset in DATASETS.values():
        def create(d: Dataset = dataset) -> None:
            duck.run(con, f"CREATE OR REPLACE VIEW {d.name} AS {view_sql(home, d)}")

        survive_damage(home, create)
        if (wrong := _wrong_types(con, dataset)) and repair(home, SuspectedDamage(wrong)):
            survive_damage(home, create)
            wrong = _wrong_types(con, dataset)
        if wrong:  # no part to blame: read on as before, and say so
            log.warning("the view %s reads %s, though no part holds other column types", dataset.name, wrong)


def _wrong_types(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> str:
    """The view's columns whose type is not the dataset's (from the catalog: nothing is read)."""
    bound = dict(duck.run(con, "SELECT column_name, data_type FROM duckdb_columns() "
                               "WHERE schema_name = 'main' AND table_name = ?", [dataset.name]))
    declared = _declared_types(dataset.name)
    return ", ".join(f"{name} as {bound[name]} (not {t})" for name, t in declared.items()
                     if name in bound and bound[name] != t)


@cache
def _declared_types(name: str) -> dict[str, str]:
    """The dataset's column types as DuckDB spells them in its catalog."""
    con = duck.connect(memory_limit="64MB")
    try:
        columns = DATASETS[name].table_columns()
        typed_nulls = ", ".join(f"CAST(NULL AS {t}) AS {quote_identifier(n)}" for n, t in columns)
        return {row[0]: row[1] for row in duck.run(con, f"DESCRIBE SELECT {typed_nulls}")}
    finally:
        con.close()


def open_reader(home: Home, memory_limit: str = "2GB") -> duckdb.DuckDBPyConnection:
    """A fresh in-memory connection with a view per dataset, whose queries survive a damaged part. The views are
    made at the first statement that names one: most of the checks' runs read only views of their own days, and
    making these (every part's footer bound, their types checked) cost serve 0.07 s a minute for nothing."""
    for dataset in DATASETS.values():  # every view of the store reads it, the checks' own day views too
        ensure_schema_part(home, dataset)
    con = duck.connect(memory_limit=memory_limit)
    views = StoreViews(home, lambda c: create_views(c, home), store_version, names=DATASETS)
    # A GuardedConnection behaves as the connection it wraps (its other methods are the connection's own).
    return cast(duckdb.DuckDBPyConnection, GuardedConnection(con, home, views))


UTC_TODAY_SQL = "CAST(timezone('UTC', now()) AS DATE)"


def earliest_event_sql(view: str) -> str:
    """A scalar subquery: the earliest event time of a view, reading only the first day's partition (where the
    store's coverage begins: nothing before it can be judged)."""
    return f"(SELECT min(ts) FROM {view} WHERE day = (SELECT min(day) FROM {view}))"


def latest_event_sql(view: str) -> str:
    """A scalar subquery: the latest event time of a view that is not in the future (one event sent with a wrong
    clock must not move every range past the data), reading only the latest day's partition: cheap enough for a
    health check polled every few seconds."""
    return (f"(SELECT max(ts) FROM {view} WHERE ts <= now() "
            f"AND day = (SELECT max(day) FROM {view} WHERE day <= {UTC_TODAY_SQL}))")
