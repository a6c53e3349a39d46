"""Retention: events older than ``store.retention_days`` leave the store.

A day partition is dropped whole when its day is before today (UTC) minus the dataset's retention days (the
boundary day itself is kept: ``retention_days: 30`` on 2026-12-06 keeps 2026-11-06 and later). Dropping writes
the marker ``_expired`` in the partition folder: from then on it lists as nothing (``partitions``), and a later
compaction pass deletes the folder once the grace has passed (a running query may still read its files). The
zero-row schema partition (``day=1970-01-01``) is never dropped. Schema snapshots, which are not partitioned,
are rewritten without the snapshots taken before the cutoff (``rewrite.rewrite_parts``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq

from agentwatch.core.durable import fsync_dir, fsync_file
from agentwatch.core.home import Home
from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.store import duck
from agentwatch.store.datasets import Dataset
from agentwatch.store.layout import EMPTY_PARTITION, SCHEMA_PART
from agentwatch.store.partitions import (
    EXPIRED_MARKER,
    list_partition,
    partition_day,
    partition_folders,
    parts_sql,
)
from agentwatch.store.rewrite import rewrite_parts


@dataclass(frozen=True)
class Expiry:
    """Events retention dropped (or, in a dry run, would drop) from one partition."""

    dataset: str
    partition: str
    parts: int
    events: int
    cutoff: date  # events before this day go


def cutoff_day(today: date, days: int) -> date:
    """The first day kept: partitions before it are dropped."""
    return today - timedelta(days=days)


def expire(home: Home, dataset: Dataset, days: int | None, today: date, dry_run: bool = False,
           row_group_rows: int = 131_072) -> list[Expiry]:
    """Drop what is older than `days` before `today`; the caller holds ``rewrite.rewrite_lock`` of the dataset."""
    if days is None:
        return []
    cutoff = cutoff_day(today, days)
    if not dataset.partitioned_by_day:
        return _expire_rows(home, dataset, cutoff, dry_run, row_group_rows)
    dropped = []
    for name, folder in partition_folders(home, dataset.name).items():
        day = partition_day(name)
        if day is None or name == EMPTY_PARTITION or day >= cutoff or (folder / EXPIRED_MARKER).exists():
            continue
        parts = [p for p in list_partition(folder) if p.name != SCHEMA_PART]
        dropped.append(Expiry(dataset.name, name, len(parts), sum(pq.read_metadata(p).num_rows for p in parts),
                              cutoff))
        if not dry_run:
            marker = folder / EXPIRED_MARKER
            marker.write_text(json.dumps({"expired_at": datetime.now(UTC).isoformat(), "retention_days": days,
                                          "cutoff": cutoff.isoformat()}) + "\n", encoding="utf-8")
            fsync_file(marker)
            fsync_dir(folder)
    return dropped


def _expire_rows(home: Home, dataset: Dataset, cutoff: date, dry_run: bool, row_group_rows: int) -> list[Expiry]:
    """An unpartitioned dataset: rewrite the parts holding rows before the cutoff without them."""
    (folder,) = partition_folders(home, dataset.name).values()
    parts = [p for p in list_partition(folder) if p.name != SCHEMA_PART]
    if not parts:
        return []
    old = f"{quote_identifier(dataset.time_key)} < CAST({sql_string(cutoff.isoformat())} AS DATE)"
    con = duck.connect(memory_limit="256MB")
    try:
        rows = duck.run(con, f"SELECT filename, count(*) FROM read_parquet({parts_sql(parts)}, union_by_name = true,"
                             f" filename = true, hive_partitioning = false) WHERE {old} GROUP BY filename")
    finally:
        con.close()
    holding = [p for p in parts if str(p) in {r[0] for r in rows}]
    if not holding:
        return []
    if not dry_run:
        rewrite_parts(home, dataset, folder, holding, keep=f"NOT ({old})", row_group_rows=row_group_rows)
    return [Expiry(dataset.name, folder.name, len(holding), sum(r[1] for r in rows), cutoff)]
