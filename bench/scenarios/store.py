"""Write scenario traffic as JSONL and ingest it through the real pipeline into an agentwatch home."""

from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import polars as pl

from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.collector.ingest.snapshots import ingest_snapshot_items
from agentwatch.core.home import Home
from agentwatch.store.datasets import ACTIONS, OUTCOMES

_OPTIONAL_OBJECTS = ("approval", "error")  # absent unless their first key is set


def nested(frame: pl.DataFrame) -> pl.DataFrame:
    """The event as written: ``group.key`` columns become nested objects, bookkeeping columns go."""
    top: list[pl.Expr] = []
    groups: dict[str, list[str]] = defaultdict(list)
    for column in frame.columns:
        if column.startswith("_"):
            continue
        if "." in column:
            groups[column.split(".", 1)[0]].append(column)
        else:
            top.append(pl.col(column))
    for group, columns in groups.items():
        struct = pl.struct([pl.col(c).alias(c.split(".", 1)[1]) for c in columns])
        if group in _OPTIONAL_OBJECTS:
            struct = pl.when(pl.col(columns[0]).is_not_null()).then(struct)
        elif group == "after" and "status" in frame.columns:  # a failed write changed nothing
            struct = pl.when(pl.col("status") != "error").then(struct)
        top.append(struct.alias(group))
    return frame.select(top)


def write_jsonl(folder: Path, frames: dict[str, pl.DataFrame], start: datetime, end: datetime) -> list[Path]:
    """One JSONL file per frame with the events in [start, end); returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in frames.items():
        part = frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
        if part.height:
            path = folder / f"{name}.jsonl"
            nested(part.sort("ts")).write_ndjson(path)
            paths.append(path)
    return paths


def ingest(home: Home, folder: Path, actions: dict[str, pl.DataFrame], outcomes: dict[str, pl.DataFrame],
           snapshots: list[dict], start: datetime, end: datetime) -> int:
    """Ingest the events in [start, end) and the snapshots; returns the number of events stored."""
    stored = 0
    for dataset, frames in ((ACTIONS, actions), (OUTCOMES, outcomes)):
        paths = write_jsonl(folder / dataset.name, frames, start, end)
        if paths:
            report = ingest_files(home, dataset, paths)
            if report.rejected:
                problems = [r.describe() for r in report.sample[:3]]
                raise RuntimeError(f"{dataset.name}: {report.rejected} events rejected: {problems}")
            stored += report.accepted
    if snapshots:
        report = ingest_snapshot_items(home, snapshots, source="bench-poller")
        if report.rejected:
            raise RuntimeError(f"snapshots rejected: {[r.describe() for r in report.sample[:3]]}")
    return stored


def copy_home(template: Path, target: Path) -> Home:
    """A fresh home holding the template's store (the shared clean history)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(template, target)
    return Home.resolve(target)
