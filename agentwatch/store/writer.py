"""Commit batches of validated events into a dataset: exactly once, atomically, durably.

A batch arrives as a DuckDB table with the dataset's stored columns (but ``ingested_at``) and a
``line_no`` column. Under the dataset's write lock the writer

1. drops ids repeated inside the batch (the first occurrence wins),
2. drops ids already stored (the key index says "maybe", the stored ids of the visible parts confirm),
3. writes the rest as Parquet into a staging folder, fsyncs, and renames each file into its
   ``day=`` partition with ``os.replace``, so a reader never sees a half-written file.

A writer that dies mid-commit leaves at most a staging folder (removed by the next commit) and
some renamed files (their ids are then found stored when the same input is sent again). A commit that
fails (a full disk raises ``StoreFullError``) removes its staging folder, partial files included.
A damaged part met while looking up stored ids is quarantined (``agentwatch.store.quarantine``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from agentwatch.core.durable import fsync_dir, fsync_file
from agentwatch.core.home import Home
from agentwatch.core.locks import WriteLock
from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.store import duck
from agentwatch.store.datasets import Dataset
from agentwatch.store.keyindex import EventKeyIndex
from agentwatch.store.partitions import parts_sql, visible_files
from agentwatch.store.quarantine import survive_damage
from agentwatch.store.space import no_space_is_store_full


@dataclass(frozen=True)
class CommitResult:
    """What one commit did with a batch."""

    accepted: int
    duplicates: int
    parts: tuple[Path, ...] = ()


class DatasetWriter:
    """Appends batches to one dataset; one instance per process and dataset."""

    def __init__(self, home: Home, dataset: Dataset) -> None:
        self.home = home
        self.dataset = dataset
        self.directory = home.dataset_dir(dataset.name)
        if not self.directory.exists():
            with no_space_is_store_full(home, f"creating {self.directory}"):
                self.directory.mkdir(parents=True, exist_ok=True)
                fsync_dir(self.directory.parent)
        self.lock = WriteLock(home.lock_file(dataset.name))
        self.index = EventKeyIndex(home, dataset.name)
        self._staging_root = home.store / ".staging" / dataset.name

    def commit(self, con: duckdb.DuckDBPyConnection, table: str) -> CommitResult:
        """Append the new rows of `table`; returns how many were accepted and how many were duplicates."""
        with self.lock, no_space_is_store_full(self.home, f"writing {self.dataset.name} to the store"):
            shutil.rmtree(self._staging_root, ignore_errors=True)  # a dead writer's leftovers
            self.index.refresh()
            total = duck.run(con, f"SELECT count(*) FROM {table}")[0][0]
            if total == 0:
                return CommitResult(0, 0)
            source = self._first_of_each_id(con, table, total)
            source, keys = self._not_yet_stored(con, source)
            accepted = len(keys)
            if accepted == 0:
                return CommitResult(0, total)
            parts = self._write_parts(con, source)
            self.index.add(keys, list(parts))
            return CommitResult(accepted, total - accepted, parts)

    def _first_of_each_id(self, con: duckdb.DuckDBPyConnection, table: str, total: int) -> str:
        distinct = duck.run(con, f"SELECT count(DISTINCT event_id) FROM {table}")[0][0]
        if distinct == total:
            return table
        duck.run(
            con,
            f"CREATE OR REPLACE TEMP TABLE _first_of_id AS SELECT * FROM {table} "
            "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY line_no) = 1",
        )
        return "_first_of_id"

    def _not_yet_stored(self, con: duckdb.DuckDBPyConnection, source: str) -> tuple[str, np.ndarray]:
        """The relation of rows whose id is not stored yet, and their keys."""
        keys = _keys_of(con, source)
        maybe_stored = self.index.contains(keys)
        if not maybe_stored.any():
            return source, keys
        con.register("_maybe_stored_keys", pa.table({"event_key": pa.array(keys[maybe_stored])}))

        def stored_ids() -> None:  # listed at each try: a repair moves a damaged part out
            files = visible_files(self.home, self.dataset.name)
            stored = (f"SELECT DISTINCT event_id FROM read_parquet({parts_sql(files)}, union_by_name = true) "
                      "WHERE event_key IN (SELECT event_key FROM _maybe_stored_keys)" if files else
                      "SELECT CAST(NULL AS VARCHAR) AS event_id WHERE false")  # every partition expired
            duck.run(con, f"CREATE OR REPLACE TEMP TABLE _stored_ids AS {stored}")

        try:
            survive_damage(self.home, stored_ids)
        finally:
            con.unregister("_maybe_stored_keys")
        duck.run(
            con,
            f"CREATE OR REPLACE TEMP TABLE _not_stored AS SELECT * FROM {source} "
            "WHERE event_id NOT IN (SELECT event_id FROM _stored_ids)",
        )
        return "_not_stored", _keys_of(con, "_not_stored")

    def _write_parts(self, con: duckdb.DuckDBPyConnection, source: str) -> tuple[Path, ...]:
        staging = self._staging_root / uuid.uuid4().hex
        try:
            return self._write_staged(con, source, staging)
        finally:  # a failed write (a full disk) leaves no partial file behind
            shutil.rmtree(staging, ignore_errors=True)

    def _write_staged(self, con: duckdb.DuckDBPyConnection, source: str, staging: Path) -> tuple[Path, ...]:
        staging.mkdir(parents=True)
        columns = [
            "now() AS ingested_at" if name == "ingested_at" else quote_identifier(name)
            for name, _ in self.dataset.stored_columns()
        ]
        options = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"
        target = staging
        if self.dataset.partitioned_by_day:
            time_column = quote_identifier(self.dataset.time_key)
            columns.append(f"CAST({time_column} AS DATE) AS day")
            options += ", PARTITION_BY (day), FILENAME_PATTERN 'part-{uuid}'"
        else:
            target = staging / f"part-{uuid.uuid4()}.parquet"
        duck.run(
            con,
            f"COPY (SELECT {', '.join(columns)} FROM {source}) TO {sql_string(str(target))} ({options})",
        )
        written = []
        created: set[Path] = set()  # new partition folders: their entry in the parent must be synced too
        for staged in sorted(staging.rglob("*.parquet")):
            destination = self.directory / staged.relative_to(staging)
            if not destination.parent.exists():
                destination.parent.mkdir(parents=True, exist_ok=True)
                created.add(destination.parent)
            fsync_file(staged)
            os.replace(staged, destination)
            written.append(destination)
        for folder in {p.parent for p in written} | {c.parent for c in created}:
            fsync_dir(folder)
        return tuple(written)


def _keys_of(con: duckdb.DuckDBPyConnection, relation: str) -> np.ndarray:
    result = con.execute(f"SELECT event_key FROM {relation}").fetchnumpy()["event_key"]
    return np.asarray(result, dtype=np.uint64)
