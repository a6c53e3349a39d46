"""Replace some parts of a partition by one file, atomically for every reader: the primitive of compaction,
erasure and the retention of unpartitioned datasets. And the later deletion of what it made invisible.

``rewrite_parts`` (see ``agentwatch.store.partitions`` for why readers stay consistent):

1. reads the input parts (with the dataset's zero-row schema part, so every column is there and typed) and
   writes the rows that ``keep`` holds for, sorted by the time key then ``event_id``, zstd, in row groups of
   ``row_group_rows``, to ``store/.staging/rewrite/<dataset>/<uuid>/``;
2. counts the rows written (from the file's footer) and refuses, leaving the inputs as they are, unless they are
   exactly the rows it read that ``keep`` holds for;
3. fsyncs the file, then writes and fsyncs its sidecar ``part-c-<uuid>.replaces`` (the input names) in the
   partition folder: while its file is absent, a sidecar hides nothing;
4. under the dataset's write lock, checks every input is still visible (else it gives up, as in 2), renames the
   file into the partition and fsyncs the folder: from that instant readers list the file, not the inputs.

A process killed at any step leaves the store whole: before 4 the inputs are all that is visible, after it the
file is. ``delete_invisible`` (run by each compaction pass, under the dataset's compaction lock, which every
rewrite holds too) deletes the files hidden for longer than the grace, then the sidecars whose file is gone,
the staging leftovers of killed rewrites, and expired partitions past the grace.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from agentwatch.core.durable import fsync_dir, fsync_file
from agentwatch.core.errors import StoreError
from agentwatch.core.home import Home
from agentwatch.core.locks import WriteLock
from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.store import duck
from agentwatch.store.datasets import Dataset
from agentwatch.store.layout import SCHEMA_PART, ensure_schema_part, schema_part_path
from agentwatch.store.partitions import (
    EXPIRED_MARKER,
    PART_SUFFIX,
    REWRITTEN_PREFIX,
    SIDECAR_SUFFIX,
    is_part,
    list_partition,
    parts_sql,
    read_sidecar,
    sidecar_of,
)
from agentwatch.store.space import no_space_is_store_full

log = logging.getLogger(__name__)

DEFAULT_ROW_GROUP_ROWS = 131_072
REWRITE_MEMORY = "512MB"  # the sort spills to the staging folder beyond this


@dataclass(frozen=True)
class Rewrite:
    """What one rewrite did."""

    partition: str  # the folder's name (``day=2026-10-01``, or the dataset's for an unpartitioned one)
    parts_in: int
    rows_in: int
    rows_out: int
    bytes_in: int
    bytes_out: int
    seconds: float
    file: Path


def staging_root(home: Home, dataset: str) -> Path:
    """Where rewrites of a dataset stage their files (removed whole by each pass: only a dead rewrite's)."""
    return home.store / ".staging" / "rewrite" / dataset


@contextmanager
def rewrite_lock(home: Home, dataset: str, timeout_s: float = 600.0) -> Iterator[None]:
    """One rewrite (compaction pass, erasure) of a dataset at a time, across processes; writers never wait on it."""
    with WriteLock(home.lock_file(f"rewrite-{dataset}"), timeout_s):
        yield


def rewrite_parts(home: Home, dataset: Dataset, folder: Path, inputs: list[Path], keep: str = "true",
                  params: list[Any] | None = None, row_group_rows: int = DEFAULT_ROW_GROUP_ROWS) -> Rewrite:
    """Replace `inputs` (visible parts of `folder`) by one file of their rows for which the SQL condition `keep`
    holds; the caller holds ``rewrite_lock``. Raises StoreError (the inputs stay) when the count is off or an
    input was changed meanwhile."""
    started = time.monotonic()
    ensure_schema_part(home, dataset)
    name = f"{REWRITTEN_PREFIX}{uuid.uuid4().hex}{PART_SUFFIX}"
    staging = staging_root(home, dataset.name) / uuid.uuid4().hex
    staged, target, sidecar = staging / name, folder / name, sidecar_of(folder / name)
    swapped = False
    try:
        with no_space_is_store_full(home, f"rewriting {folder}"):
            staging.mkdir(parents=True)
            rows_in, expected = _stage(home, dataset, inputs, keep, params or [], staged, row_group_rows)
            written = pq.read_metadata(staged).num_rows
            if written != expected:
                raise StoreError(f"rewriting {folder}: wrote {written} rows where {expected} were expected; the "
                                 "parts were left as they are")
            fsync_file(staged)
            _write_sidecar(sidecar, [p.name for p in inputs])
            _swap(home, dataset, folder, inputs, staged, target)
            swapped = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not swapped:
            sidecar.unlink(missing_ok=True)
    return Rewrite(folder.name, len(inputs), rows_in, expected, sum(_size(p) for p in inputs), _size(target),
                   time.monotonic() - started, target)


def _stage(home: Home, dataset: Dataset, inputs: list[Path], keep: str, params: list[Any], staged: Path,
           row_group_rows: int) -> tuple[int, int]:
    """Write the kept rows of `inputs` sorted to `staged`; (rows read, rows kept)."""
    con = duck.connect(memory_limit=REWRITE_MEMORY, threads=1)  # beside the API and the checks: one core at most
    try:
        duck.run(con, f"SET temp_directory = {sql_string(str(staged.parent / 'spill'))}")
        files = parts_sql([schema_part_path(home, dataset), *inputs])
        duck.run(con, f"CREATE TEMP VIEW _inputs AS SELECT * FROM read_parquet({files}, union_by_name = true, "
                      "hive_partitioning = false)")
        rows_in, kept = duck.run(con, f"SELECT count(*), count(*) FILTER (WHERE {keep}) FROM _inputs", params)[0]
        columns = ", ".join(quote_identifier(n) for n, _ in dataset.stored_columns())
        order = f"{quote_identifier(dataset.time_key)}, event_id"
        duck.run(con, f"COPY (SELECT {columns} FROM _inputs WHERE {keep} ORDER BY {order}) TO "
                      f"{sql_string(str(staged))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {row_group_rows})",
                 params)
        return rows_in, kept
    finally:
        con.close()


def _write_sidecar(sidecar: Path, names: list[str]) -> None:
    """The sidecar, durable before its file can appear (a crash before the rename leaves an ignored orphan)."""
    sidecar.write_text(json.dumps(names) + "\n", encoding="utf-8")
    fsync_file(sidecar)
    fsync_dir(sidecar.parent)


def _swap(home: Home, dataset: Dataset, folder: Path, inputs: list[Path], staged: Path, target: Path) -> None:
    """Rename the file in, under the dataset's write lock (held for this step only: commits wait milliseconds)."""
    with WriteLock(home.lock_file(dataset.name)):
        visible = set(list_partition(folder))
        if gone := [p.name for p in inputs if p not in visible]:
            raise StoreError(f"rewriting {folder}: {', '.join(gone[:3])} changed meanwhile (quarantined or "
                             "replaced); the parts were left as they are, the next pass tries again")
        os.replace(staged, target)
        fsync_dir(folder)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# -- deleting what readers no longer see ------------------------------------------------------------------------


@dataclass(frozen=True)
class Deletion:
    """Files a pass deleted (or, in a dry run, would delete) in one partition folder."""

    partition: str
    files: int
    bytes: int
    expired: bool  # the whole partition folder, dropped by retention


def hidden_since(folder: Path) -> dict[str, int]:
    """Each hidden part's name -> when it became hidden (ns since the epoch): the earliest rename of a rewritten
    file naming it (taken as its sidecar's mtime or its own ctime, whichever is later, to err towards waiting)."""
    since: dict[str, int] = {}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return since
    for name in names:
        if not (name.startswith(REWRITTEN_PREFIX) and is_part(name)):
            continue
        path = folder / name
        try:
            at = max(path.stat().st_ctime_ns, sidecar_of(path).stat().st_mtime_ns)
        except FileNotFoundError:
            continue
        for hidden in read_sidecar(sidecar_of(path)) or []:
            since[hidden] = min(since.get(hidden, at), at)
    return since


def delete_invisible(home: Home, dataset: Dataset, folders: dict[str, Path], grace_s: float, now_ns: int,
                     dry_run: bool = False) -> list[Deletion]:
    """Delete what readers stopped seeing more than `grace_s` ago; the caller holds ``rewrite_lock``."""
    done = []
    if not dry_run:
        shutil.rmtree(staging_root(home, dataset.name), ignore_errors=True)  # dead rewrites' files
    cutoff = now_ns - int(grace_s * 1e9)
    for partition, folder in folders.items():
        marker = folder / EXPIRED_MARKER
        if marker.exists():
            if marker.stat().st_mtime_ns <= cutoff:
                done.append(_drop_folder(home, dataset, partition, folder, dry_run))
            continue
        old = [folder / n for n, at in hidden_since(folder).items() if at <= cutoff and (folder / n).exists()]
        size = sum(_size(p) for p in old)
        if not dry_run:
            for path in old:  # data first, then (below) the sidecars of files now gone: see partitions.list_partition
                path.unlink(missing_ok=True)
            if old:
                fsync_dir(folder)
            orphans = [folder / n for n in os.listdir(folder) if n.endswith(SIDECAR_SUFFIX)
                       and not (folder / (n[: -len(SIDECAR_SUFFIX)] + PART_SUFFIX)).exists()]
            for sidecar in orphans:
                sidecar.unlink(missing_ok=True)
            if orphans:
                fsync_dir(folder)
        if old:
            done.append(Deletion(partition, len(old), size, False))
    return done


def _drop_folder(home: Home, dataset: Dataset, partition: str, folder: Path, dry_run: bool) -> Deletion:
    files = [p for p in folder.iterdir() if p.is_file()]
    deletion = Deletion(partition, sum(1 for p in files if is_part(p.name) and p.name != SCHEMA_PART),
                        sum(_size(p) for p in files), True)
    if not dry_run:
        with WriteLock(home.lock_file(dataset.name)):  # no commit renames a late part into it meanwhile
            shutil.rmtree(folder)
            fsync_dir(folder.parent)
    return deletion
