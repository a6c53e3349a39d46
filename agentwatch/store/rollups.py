"""Aggregates kept in the home per day partition and brought up to date as parts arrive (incremental check state).

A :class:`Rollup` is a plain SQL query that turns events into rows stamped with a cell time (a 5-minute bucket,
an hour) of one dataset; its rows for a cell depend only on the events of that cell. The checks used to run such
queries over a week of events on every run; a :class:`RollupStore` keeps their rows per day instead, in
``aggregates/<rollup>/day=YYYY-MM-DD.parquet`` with a state file beside it saying which parts the rows summarise
and up to which time (``covered_until``, always a whole hour). For a run over the events in ``(since, last]``:

1. For each day in the range, list the day's visible parts (``agentwatch.store.partitions``) and compare them with
   the state: the stored rows stay valid when every part they summarise is still visible, or was merged by a
   compaction into a file holding exactly its rows (same row count: an erasure's rewrite holds fewer, and
   invalidates the day), and every new part holds only events at or after ``covered_until`` (a late event, or a
   re-ingested partition, invalidates the day, which is then summarised again from its parts).
2. Extend the stored rows to ``min(day end, cutoff)`` rounded down to the hour, where ``cutoff`` is the wall clock
   less a settling margin (events still arriving for the current hour are read raw): the query runs over a view of
   exactly the listed parts, so the state names precisely what the rows hold.
3. Answer with the stored rows of every whole cell inside the range plus the same query over the raw events of
   what is left (the range's ragged start, and everything from the stored end to ``last``). The answer is the
   same whatever is stored: a store that was never summarised gives the full recompute.

The queries of the checks' rollups live in one module (``agentwatch.checks.rollup_sql``): plain SQL over the
Parquet layout, so another engine can run them (docs/architecture.md, "Aggregates").
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from agentwatch.core.durable import fsync_dir, fsync_file
from agentwatch.core.home import Home
from agentwatch.core.locks import WriteLock
from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.store import duck
from agentwatch.store.datasets import DATASETS
from agentwatch.store.partitions import PARTITION_PREFIX, REWRITTEN_PREFIX, list_partition, read_sidecar, sidecar_of

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Events of the last minutes are still arriving (the API flushes every second, agents send late): never stored.
SETTLE = timedelta(minutes=5)
STATE_VERSION = 1

Select = Callable[[str, "Span"], str]  # (source relation, the events' time span) -> SELECT of the rollup's rows


@dataclass(frozen=True)
class Rollup:
    """One aggregate: its name (with any parameter that changes its rows), the dataset it reads, the cell its rows
    are stamped with (the column `time_column`, a whole number of cells per hour), and its query."""

    name: str
    dataset: str
    grain: timedelta
    time_column: str
    select: Select


@dataclass(frozen=True)
class Span:
    """Events with time in [lo, hi) (`lo_open`: (lo, hi); `hi_closed`: up to hi inclusive)."""

    lo: datetime
    hi: datetime
    lo_open: bool = False
    hi_closed: bool = False

    def condition(self, column: str = "ts") -> str:
        low = ">" if self.lo_open else ">="
        high = "<=" if self.hi_closed else "<"
        return (f"{column} {low} TIMESTAMPTZ '{self.lo.isoformat()}' AND "
                f"{column} {high} TIMESTAMPTZ '{self.hi.isoformat()}'")


@dataclass
class DayState:
    """What a day's stored rows summarise."""

    covered_until: datetime
    parts: dict[str, int]  # part file name -> its rows
    file: str | None  # the Parquet file of the rows (None: no rows)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "covered_until": self.covered_until.isoformat(), "parts": self.parts,
                "file": self.file}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DayState | None:
        if data.get("version") != STATE_VERSION:
            return None
        return cls(datetime.fromisoformat(data["covered_until"]), dict(data["parts"]), data.get("file"))


def floor_to(at: datetime, grain: timedelta) -> datetime:
    """The start of the cell of `grain` holding `at` (cells aligned to the Unix epoch)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((at - epoch) // grain) * grain


def ceil_to(at: datetime, grain: timedelta) -> datetime:
    floor = floor_to(at, grain)
    return floor if floor == at else floor + grain


class RollupStore:
    """The stored rollups of one home, read and brought up to date through one DuckDB connection."""

    def __init__(self, home: Home, con: duckdb.DuckDBPyConnection, cutoff: datetime | None = None) -> None:
        self.home = home
        self.con = con
        # Nothing after this is stored: events of the last minutes are still arriving.
        self.cutoff = floor_to((cutoff or datetime.now(UTC)) - SETTLE, HOUR)
        self.root = home.root / "aggregates"
        self.updated: dict[str, int] = {}  # rollup name -> days summarised again or extended by this store

    def frame(self, rollup: Rollup, since: datetime, last: datetime) -> pl.DataFrame:
        """The rollup's rows over the events with time in (since, last]."""
        return pl.DataFrame(duck.run_arrow(self.con, self.sql(rollup, since, last)))

    def sql(self, rollup: Rollup, since: datetime, last: datetime) -> str:
        """A SELECT of the rollup's rows over the events with time in (since, last], stored days brought up to
        date first (valid while this connection's temp objects and the stored files live: use it at once)."""
        stored_from = ceil_to(since + timedelta(microseconds=1), rollup.grain)  # the first whole cell
        whole_until = floor_to(last + timedelta(microseconds=1), rollup.grain)  # the end of the last whole cell
        stored_until = min(whole_until, self.cutoff)
        pieces: list[str] = []
        if stored_from < stored_until:
            with WriteLock(self.home.lock_file("aggregates")):
                files = self._bring_up_to_date(rollup, stored_from, stored_until)
            if files:
                column = quote_identifier(rollup.time_column)
                pieces.append(f"SELECT * FROM read_parquet({_paths(files)}) WHERE {column} >= "
                              f"TIMESTAMPTZ '{stored_from.isoformat()}' AND {column} < "
                              f"TIMESTAMPTZ '{stored_until.isoformat()}'")
            raw = [Span(since, stored_from, lo_open=True), Span(stored_until, last, hi_closed=True)]
        else:
            raw = [Span(since, last, lo_open=True, hi_closed=True)]
        pieces += [rollup.select(rollup.dataset, span) for span in raw if span.lo <= span.hi]
        return " UNION ALL BY NAME ".join(f"({p})" for p in pieces)

    # --- keeping the days up to date --------------------------------------------------------------------------

    def _bring_up_to_date(self, rollup: Rollup, start: datetime, end: datetime) -> list[Path]:
        """Update the stored days of [start, end) and return the files holding their rows."""
        folder = self.root / rollup.name
        files = []
        day = start.date()
        while _day_start(day) < end:
            covered = min(_day_start(day) + DAY, end)
            state = self._update_day(rollup, folder, day, covered)
            if state is not None and state.file:
                files.append(folder / state.file)
            day += DAY
        return files

    def _update_day(self, rollup: Rollup, folder: Path, day: date, until: datetime) -> DayState | None:
        parts = list_partition(self.home.dataset_dir(rollup.dataset) / f"{PARTITION_PREFIX}{day.isoformat()}")
        state_path = folder / f"{PARTITION_PREFIX}{day.isoformat()}.json"
        state = _load_state(state_path)
        if not parts:
            return None  # no events that day; a part landing later makes the state below stale
        names = {p.name: p for p in parts}
        kept = self._still_valid(state, names) if state is not None else None
        if state is not None and kept is not None and state.covered_until >= until:
            if set(kept) != set(names):  # record the new parts (their events are all after covered_until)
                state.parts = kept | self._row_counts([names[n] for n in names if n not in kept])
                _save_state(state_path, state)
            return state
        if state is None or kept is None:  # never summarised, or stale: summarise the whole day again
            state, kept, previous = DayState(_day_start(day), {}, None), {}, None
        else:
            previous = folder / state.file if state.file else None
        span = Span(state.covered_until, until)
        new_rows = self._summarise(rollup, parts, span)
        pieces = [p for p in (str(previous) if previous else None, new_rows) if p]
        file = self._write_rows(folder, day, pieces)
        state = DayState(until, kept | self._row_counts([names[n] for n in names if n not in kept]), file)
        _save_state(state_path, state)
        if previous is not None:
            previous.unlink(missing_ok=True)
        self.updated[rollup.name] = self.updated.get(rollup.name, 0) + 1
        return state

    def _still_valid(self, state: DayState, visible: dict[str, Path]) -> dict[str, int] | None:
        """The parts (name -> rows) the stored rows summarise, as now visible; None when they no longer hold."""
        kept = {n: r for n, r in state.parts.items() if n in visible}
        gone = set(state.parts) - set(kept)
        new = [n for n in visible if n not in kept]
        for name in [n for n in new if n.startswith(REWRITTEN_PREFIX)]:
            replaced = read_sidecar(sidecar_of(visible[name])) or []
            if replaced and set(replaced) <= gone:
                rows = self._row_counts([visible[name]])[name]
                if rows != sum(state.parts[r] for r in replaced):
                    return None  # rows were removed (an erasure): summarise again
                gone -= set(replaced)
                kept[name] = rows
        if gone:
            return None
        fresh = [visible[n] for n in visible if n not in kept]
        if fresh and self._earliest(fresh) < state.covered_until:
            return None  # late events (or a re-ingest) in the summarised hours
        return kept

    def _summarise(self, rollup: Rollup, parts: tuple[Path, ...], span: Span) -> str:
        """A SELECT of the rollup's rows over exactly `parts`, for the events in `span`."""
        source = f"_rollup_source_{uuid.uuid4().hex[:8]}"
        duck.run(self.con, f"CREATE OR REPLACE TEMP VIEW {source} AS {_parts_select(rollup.dataset, parts)}")
        table = f"_rollup_rows_{uuid.uuid4().hex[:8]}"
        duck.run(self.con, f"CREATE TEMP TABLE {table} AS {rollup.select(source, span)}")
        duck.run(self.con, f"DROP VIEW {source}")
        return table

    def _write_rows(self, folder: Path, day: date, pieces: list[str]) -> str:
        """Write the day's rows (from stored files and temp tables) to a new file; returns its name."""
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{PARTITION_PREFIX}{day.isoformat()}-{uuid.uuid4().hex[:12]}.parquet"
        temp = folder / f".{name}.tmp"
        sources = [f"SELECT * FROM read_parquet({sql_string(p)})" if p.endswith(".parquet") else f"SELECT * FROM {p}"
                   for p in pieces]
        try:
            duck.run(self.con, f"COPY ({' UNION ALL BY NAME '.join(sources)}) TO {sql_string(str(temp))} "
                               "(FORMAT parquet, COMPRESSION zstd)")
            fsync_file(temp)
            os.replace(temp, folder / name)
            fsync_dir(folder)
        finally:
            temp.unlink(missing_ok=True)
            for piece in pieces:
                if not piece.endswith(".parquet"):
                    duck.run(self.con, f"DROP TABLE IF EXISTS {piece}")
        return name

    def _row_counts(self, parts: list[Path]) -> dict[str, int]:
        if not parts:
            return {}
        rows = duck.run(self.con, f"SELECT file_name, num_rows FROM parquet_file_metadata({_paths(parts)})")
        return {Path(file).name: int(count) for file, count in rows}

    def _earliest(self, parts: list[Path]) -> datetime:
        (earliest,) = duck.run(self.con, f"SELECT min(ts) FROM read_parquet({_paths(parts)})")[0]
        return earliest if earliest is not None else datetime.max.replace(tzinfo=UTC)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _paths(paths: list[Path] | tuple[Path, ...]) -> str:
    return "[" + ", ".join(sql_string(str(p)) for p in paths) + "]"


def _parts_select(dataset: str, parts: tuple[Path, ...]) -> str:
    """The dataset's columns read from exactly these parts (the view's columns, without the partition key)."""
    columns = ", ".join(quote_identifier(n) for n, _ in DATASETS[dataset].table_columns() if n != "day")
    return f"SELECT {columns} FROM read_parquet({_paths(parts)}, union_by_name = true)"


def _load_state(path: Path) -> DayState | None:
    try:
        return DayState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None  # none yet, or unreadable: the day is summarised again


def _save_state(path: Path, state: DayState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    temp.write_text(json.dumps(state.to_json()), encoding="utf-8")
    fsync_file(temp)
    os.replace(temp, path)
    fsync_dir(path.parent)
