"""Compaction: the many small parts of a partition become one large, sorted file; and the pass that runs it.

Each flush of the API adds a part per day partition, and every query opens every part, so parts are merged.
One pass (``run_pass``: ``agentwatch compact``, and ``agentwatch serve`` every ``store.compaction.every_seconds``),
per dataset, under the dataset's rewrite lock (one pass or erasure at a time; commits never wait on it):

1. retention drops the partitions past ``store.retention_days`` (``agentwatch.store.retention``);
2. picks the partitions to merge: a closed one (a day before today, UTC, or an unpartitioned dataset) holding
   more than one data part and quiet (no part landed) for ``quiet_minutes``; an open one holding more than
   ``max_open_parts`` data parts, of which it merges those smaller than one row group (full merged files stay);
3. merges each with ``rewrite.rewrite_parts``: sorted by time then event_id into row groups of
   ``target_row_group_rows``, zstd, the row count checked before the swap, the swap a rename under the write
   lock held for milliseconds (parts that land meanwhile stay beside the merged file);
4. deletes what readers stopped seeing more than ``grace_minutes`` ago (``rewrite.delete_invisible``): merged-away
   parts, the leftovers of killed rewrites, expired partitions.

A partition that fails to merge is reported and left as it was; the others go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from agentwatch.core.errors import StoreError
from agentwatch.core.home import Home
from agentwatch.store.datasets import DATASETS, Dataset
from agentwatch.store.layout import SCHEMA_PART
from agentwatch.store.partitions import list_partition, partition_day, partition_folders
from agentwatch.store.retention import Expiry, expire
from agentwatch.store.rewrite import Deletion, Rewrite, delete_invisible, rewrite_lock, rewrite_parts
from agentwatch.store.settings import CompactionSettings, StoreSettings


@dataclass(frozen=True)
class Candidate:
    """A partition a pass merges (or, in a dry run, would merge)."""

    dataset: str
    partition: str
    folder: Path
    parts: tuple[Path, ...]
    rows: int
    bytes: int
    reason: str


@dataclass
class PassReport:
    """What one pass did (or would do)."""

    dry_run: bool
    merged: list[tuple[Candidate, Rewrite]] = field(default_factory=list)
    planned: list[Candidate] = field(default_factory=list)  # a dry run's merges
    expired: list[Expiry] = field(default_factory=list)
    deleted: list[tuple[str, Deletion]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def candidates(home: Home, dataset: Dataset, settings: CompactionSettings, now: datetime) -> list[Candidate]:
    """The partitions of `dataset` worth merging at `now` (see the module's step 2)."""
    found = []
    quiet_ns = int(settings.quiet_minutes * 60e9)
    now_ns = int(now.timestamp() * 1e9)
    for name, folder in partition_folders(home, dataset.name).items():
        parts = [p for p in list_partition(folder) if p.name != SCHEMA_PART]
        if len(parts) < 2:
            continue
        day = partition_day(name)
        closed = not dataset.partitioned_by_day or (day is not None and day < now.date())
        newest = max(_mtime_ns(p) for p in parts)
        rows = {p: pq.read_metadata(p).num_rows for p in parts}
        if closed and now_ns - newest >= quiet_ns:
            chosen, reason = parts, f"closed, quiet for {(now_ns - newest) / 60e9:,.0f} min"
        elif len(parts) > settings.max_open_parts:
            chosen = [p for p in parts if rows[p] < settings.target_row_group_rows]
            reason = f"{len(parts)} parts, more than max_open_parts {settings.max_open_parts}"
            if len(chosen) < 2:
                continue
        else:
            continue
        found.append(Candidate(dataset.name, name, folder, tuple(chosen), sum(rows[p] for p in chosen),
                               sum(p.stat().st_size for p in chosen), reason))
    return found


def run_pass(home: Home, settings: StoreSettings, now: datetime | None = None, dry_run: bool = False,
             lock_timeout_s: float = 600.0) -> PassReport:
    """Retention, merges and deletions over every dataset (the module's steps 1-4)."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    report = PassReport(dry_run)
    compaction = settings.compaction
    for dataset in DATASETS.values():
        if not home.dataset_dir(dataset.name).is_dir():
            continue
        with rewrite_lock(home, dataset.name, lock_timeout_s):
            days = getattr(settings.retention_days, dataset.name)
            try:
                report.expired += expire(home, dataset, days, now.date(), dry_run, compaction.target_row_group_rows)
            except (StoreError, duckdb.Error, OSError) as exc:
                report.failures.append(f"retention of {dataset.name}: {exc}")
            try:
                chosen = candidates(home, dataset, compaction, now)
            except (StoreError, duckdb.Error, OSError) as exc:  # a part moved away meanwhile: the next pass
                report.failures.append(f"choosing what to merge in {dataset.name}: {exc}")
                chosen = []
            for candidate in chosen:
                if dry_run:
                    report.planned.append(candidate)
                    continue
                try:
                    merged = rewrite_parts(home, dataset, candidate.folder, list(candidate.parts),
                                           row_group_rows=compaction.target_row_group_rows)
                except (StoreError, duckdb.Error, OSError) as exc:
                    report.failures.append(f"merging {dataset.name} {candidate.partition}: {exc}")
                    continue
                report.merged.append((candidate, merged))
            folders = partition_folders(home, dataset.name)
            deleted = delete_invisible(home, dataset, folders, compaction.grace_minutes * 60,
                                       int(now.timestamp() * 1e9), dry_run)
            report.deleted += [(dataset.name, d) for d in deleted]
    report.seconds = time.monotonic() - started
    return report


def _mtime_ns(path: Path) -> int:
    return path.stat().st_mtime_ns
