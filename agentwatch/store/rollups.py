"""Aggregates kept in the home per day partition and brought up to date as parts arrive (incremental check state).

A :class:`Rollup` is a plain SQL query that turns one dataset's events into rows stamped with a cell (a 5-minute
bucket, an hour, an event's own time); a row depends only on the events of its cell, plus, for some, events up to
a fixed `reach` after it (the follow-up a case waits for) or a `look_back` before it. The checks used to run such
queries over a week of events on every run; a :class:`RollupStore` keeps their rows per day instead, in
``aggregates/<rollup>/day=YYYY-MM-DD.parquet`` with a state file beside it saying which parts the rows summarise
(with their row counts) and up to which whole hour (``covered_until``). For a run over the events in
``(since, last]``:

1. For each day in the range, list the visible parts the day's rows read (``agentwatch.store.partitions``: the
   day's, and those of the days its look-back and reach touch) and compare them with the state. The stored rows
   stay valid when every part they summarise is still visible, or was merged by a compaction into a file holding
   exactly its rows (same count: an erasure's rewrite holds fewer, and the day is summarised again), and every new
   part holds only events after ``covered_until + reach`` (a late event or a re-ingested day is summarised again).
2. Extend the stored rows to the last whole hour before ``min(day end, now - SETTLE - reach)``: events still
   arriving, and rows still waiting for their reach, are never stored. The query runs over a view of exactly the
   listed parts, so the state names precisely what the rows hold.
3. Answer with the stored rows of every cell in the range (whole cells, from the one holding ``since``) whose
   reach the run can see (a run in the past never uses a row that read later events), plus the same query over
   the raw events from the stored end to ``last``. The answer is the same whatever is stored: nothing stored
   gives the full recompute.
4. A process that runs every minute (``serve``, with :class:`KeptRows`) also holds the settled cells after the
   stored hours in memory, summarised once and extended as minutes pass by the rule of step 1 (which follows a
   compaction of the open day, as it does for a stored day's parts), so a run reads
   raw only the last few minutes (not for rollups that look back: their look-back is the cost, read either way).
5. Such a process also holds each rollup's last answer over its settled (stored and held) cells, so the next run
   reads and decodes only the cells settled since and the raw minutes, not a week of rows again. Whatever finds
   rows under it changed (a stored day or a held tail summarised again by the rule of step 1, a day dropped)
   drops it, and the run reads the whole range; so does a stored day of another lineage (another process, a
   cron ``check``, summarised it again: a day's lineage is made anew only then, and kept while it is extended),
   and a stored hour the answer held in memory that this run did not find valid (another process stored it).

Days are updated one run at a time (``locks/aggregates.lock``); deleting ``aggregates/`` is always safe.
The queries of the checks' rollups live in one module (``agentwatch.checks.rollup_sql``): plain SQL over the
Parquet layout, so another engine can run them (docs/architecture.md, "Aggregates").
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from agentwatch.core.durable import fsync_dir
from agentwatch.core.home import Home
from agentwatch.core.locks import WriteLock
from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.store import duck
from agentwatch.store.datasets import DATASETS
from agentwatch.store.kept_rows import HeldAnswer, HeldTail, KeptRows
from agentwatch.store.layout import schema_part_path
from agentwatch.store.partitions import (
    PARTITION_PREFIX,
    REWRITTEN_PREFIX,
    list_partition,
    parts_sql,
    read_sidecar,
    sidecar_of,
)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Events of the last minutes are still arriving (the API flushes every second, agents send late): never stored.
SETTLE = timedelta(minutes=5)
STATE_VERSION = 2
# Below this many bytes of parts in a run's range, reading the events is as fast as reading kept aggregates (about
# 300,000 events at the 25 bytes an event a compacted day takes): nothing is kept, so small homes (and the test
# suite's) do not pay for keeping them. Not more: at 32 MB a whole day of 700,000 events counted as small, and serve
# read the outcome checks' day of actions from the events every time (0.1 s) instead of holding it.
SMALL_RANGE_BYTES = 8 * 1024 * 1024
MAX_CHUNKS = 16  # a held answer grows a chunk a run; past this many it is made one again
NO_EVENTS = "no events"  # the lineage of a day with no events (nothing stored)
# Each part's earliest event, read once per process (a part never changes: an update writes a new part): serve's
# minute runs would read each new part's times again for every rollup that meets it.
MAX_EARLIEST_CACHED = 100_000
_earliest_seen: dict[str, datetime] = {}


@dataclass(frozen=True)
class Span:
    """The events whose rows a query produces: time in [lo, hi) (`lo_open`: (lo, hi); `hi_closed`: up to hi
    inclusive). A query that follows each event a while (a case waits for its follow-up) or looks back reads
    further, but never past `horizon`: the latest event time the run may see."""

    lo: datetime
    hi: datetime
    lo_open: bool = False
    hi_closed: bool = False
    horizon: datetime | None = None

    def condition(self, column: str = "ts") -> str:
        low = ">" if self.lo_open else ">="
        high = "<=" if self.hi_closed else "<"
        return (f"{column} {low} TIMESTAMPTZ '{self.lo.isoformat()}' AND "
                f"{column} {high} TIMESTAMPTZ '{self.hi.isoformat()}'")

    def wide_condition(self, column: str = "ts", reach: timedelta = timedelta(0),
                       look_back: timedelta = timedelta(0)) -> str:
        """The events a row of this span may read: from `look_back` before it to `reach` after it (not past the
        horizon)."""
        end = self.hi + reach
        if self.horizon is not None:
            end = min(end, self.horizon)
        return (f"{column} >= TIMESTAMPTZ '{(self.lo - look_back).isoformat()}' AND "
                f"{column} <= TIMESTAMPTZ '{end.isoformat()}'")


Select = Callable[[Mapping[str, str], Span], str]  # (dataset -> relation to read, span) -> SELECT of the rows


@dataclass(frozen=True)
class Rollup:
    """One aggregate: its name (with every parameter that changes its rows), the dataset whose events its rows
    stand for, the cell its rows are stamped with (the column `time_column`; whole cells per hour), its query, and
    what else a row reads: events up to `reach` after its own (a row is final only once they are in) and from
    `look_back` before it, and the events of the datasets in `reads` over that same stretch (the outcomes that
    correct an action)."""

    name: str
    dataset: str
    grain: timedelta
    time_column: str
    select: Select
    reach: timedelta = timedelta(0)
    look_back: timedelta = timedelta(0)
    reads: tuple[str, ...] = ()

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset the query reads, its own first."""
        return (self.dataset, *self.reads)

    def views(self) -> dict[str, str]:
        """Each dataset the query reads, as the reader's view of every visible part of it."""
        return {name: name for name in self.datasets}


def rollup_name(base: str, **parameters: object) -> str:
    """A rollup's name: its base and a digest of the parameters its rows depend on (other parameters, other rows)."""
    if not parameters:
        return base
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{base}-{digest}"


@dataclass
class DayState:
    """What a day's stored rows summarise."""

    covered_until: datetime
    parts: dict[str, int]  # part file name -> its rows
    file: str  # the Parquet file of the rows
    file_bytes: int  # its size: a file cut short by a crash (they are not fsynced) is summarised again
    # Made anew whenever the day is summarised from its start, kept while it is extended: rows answered under one
    # lineage are the rows of any later state of it (another process may summarise the day again meanwhile).
    lineage: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "covered_until": self.covered_until.isoformat(), "parts": self.parts,
                "file": self.file, "file_bytes": self.file_bytes, "lineage": self.lineage}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DayState | None:
        if data.get("version") != STATE_VERSION:
            return None
        return cls(datetime.fromisoformat(data["covered_until"]), dict(data["parts"]), data["file"],
                   int(data["file_bytes"]), str(data.get("lineage", "")))

    def file_intact(self, folder: Path) -> bool:
        try:
            return (folder / self.file).stat().st_size == self.file_bytes
        except FileNotFoundError:
            return False


def floor_to(at: datetime, grain: timedelta) -> datetime:
    """The start of the cell of `grain` holding `at` (cells aligned to the Unix epoch)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((at - epoch) // grain) * grain


def requested_span(rollup: Rollup, since: datetime, last: datetime, until: datetime | None = None) -> Span:
    """The events whose rows a run asking for (since, until] gets: whole cells from the one holding `since`, up to
    `until` (default and at most `last`) inclusive. Widening the start to its cell's start (at most one grain of
    extra history) lets the stored cells answer all of it: a ragged start read raw cost as much as the rest of the
    range together, since a case there still reads its whole look-back or reach. An `until` not after `since` asks
    for nothing (an open span)."""
    end = min(until or last, last)
    if end <= since:
        return Span(since, since, lo_open=True, hi_closed=True, horizon=last)
    return Span(floor_to(since, rollup.grain), end, hi_closed=True, horizon=last)


@dataclass(frozen=True)
class Answer:
    """A SELECT of a rollup's rows, and where its rows read from stored and held rows end (the settled cells)."""

    sql: str
    settled_until: datetime
    stored_until: datetime  # where its rows from stored days end (the held tail's, if any, begin)


class RollupStore:
    """The stored rollups of one home, read and brought up to date through one DuckDB connection."""

    def __init__(self, home: Home, con: duckdb.DuckDBPyConnection, now: datetime | None = None,
                 small_bytes: int = SMALL_RANGE_BYTES, kept: KeptRows | None = None) -> None:
        self.home = home
        self.con = con
        self.kept = kept  # stored files held in memory from earlier runs of this process (serve's)
        self.now = now or datetime.now(UTC)
        self.small_bytes = small_bytes
        self.root = home.aggregates
        self.updated: dict[str, int] = {}  # rollup name -> days summarised again or extended by this store
        # rollup name -> what this store did with its held tail: summarised, extended, held; stored (into a day)
        self.tails: dict[str, list[str]] = {}
        # rollup name -> how `frame` answered: from the held answer plus the cells after it ("held"), or all "read"
        self.answers: dict[str, str] = {}
        self._views: dict[tuple[str, date, date], str] = {}  # this run's views over a stretch of days
        self._lineages: dict[tuple[str, date], str] = {}  # (rollup, day) -> its stored rows' lineage, this run
        self._tails_checked: dict[str, datetime] = {}  # rollup -> the start of its held tail found valid this run
        # rollup -> the generation of its held answers `frame` started from (None: another run forgot one since)
        self._generations: dict[str, int | None] = {}

    def cutoff(self, rollup: Rollup) -> datetime:
        """Nothing after this is stored: events of the last minutes are still arriving, and a row is final only
        once the events it follows (its `reach`) are in."""
        return floor_to(self.now - SETTLE - rollup.reach, HOUR)

    def frame(self, rollup: Rollup, since: datetime, last: datetime, until: datetime | None = None) -> pl.DataFrame:
        """The rollup's rows of the cells from the one holding `since` to `until` (default: last), seeing no event
        after last (see `requested_span`). A process that runs every minute (`kept`) answers the cells its last
        answer settled from that answer, and reads only the cells after it (step 5 of the module's docstring)."""
        if self.kept is None:
            return pl.DataFrame(duck.run_arrow(self.con, self.sql(rollup, since, last, until)))
        start = requested_span(rollup, since, last, until).lo
        # Read before anything is checked: held only if no other run forgot an answer meanwhile (`_rows_changed`).
        self._generations[rollup.name] = self.kept.generation(rollup.name)
        held = self.kept.answer(rollup.name)
        if held is not None and held.lo > start:
            held = None  # it starts later than asked: read the whole range
        answer = self._answer(rollup, since, last, until, held.hi if held is not None else None)
        if held is not None and not self._still_holds(rollup, held, answer, start):
            # Rows under it were summarised again (by this run or another process): read it all.
            held, answer = None, self._answer(rollup, since, last, until)
        self.answers[rollup.name] = "held" if held is not None else "read"
        frame = pl.DataFrame(duck.run_arrow(self.con, answer.sql))
        column = pl.col(rollup.time_column)
        if held is not None:
            frame = pl.concat([held.frame.filter(column >= start), frame.select(held.frame.columns)],
                              how="vertical_relaxed")
            if frame.n_chunks() > MAX_CHUNKS:  # a chunk a minute: a day of them slows every sort of the checks
                frame = frame.rechunk()
        if answer.settled_until > start:
            days = _days_between(start, answer.stored_until)
            if all((rollup.name, day) in self._lineages for day in days):
                lineages = {day: self._lineages[(rollup.name, day)] for day in days}
                generation = self._generations.pop(rollup.name, None)
                if generation is not None:
                    settled = frame.filter(column < answer.settled_until)
                    self.kept.hold_answer(rollup.name, HeldAnswer(start, answer.settled_until, answer.stored_until,
                                                                  lineages, settled), generation)
        return frame

    def _still_holds(self, rollup: Rollup, held: HeldAnswer, answer: Answer, start: datetime) -> bool:
        """Whether the held answer's rows are still the rollup's: nothing under it was found changed this run, its
        stored days are of the lineages they were (no process summarised them again), and the minutes it held after
        them were found valid by this run if they are stored now (another process may have stored them)."""
        if self.kept is None or self.kept.answer(rollup.name) is not held or held.hi > answer.settled_until:
            return False
        # Only the stored rows it still answers from count: those from the run's start (none when the run asks for a
        # window after them, as a one-hour window does in the first minutes after an hour is stored).
        if any(self._lineages.get((rollup.name, day)) != lineage for day, lineage in held.lineages.items()
               if max(start, _day_start(day)) < min(_day_start(day) + DAY, held.stored_until)):
            return False
        tail_stored = held.stored_until < held.hi and held.stored_until < answer.stored_until
        return not tail_stored or self._tails_checked.get(rollup.name) == held.stored_until

    def sql(self, rollup: Rollup, since: datetime, last: datetime, until: datetime | None = None) -> str:
        """A SELECT of the rollup's rows of the cells from the one holding `since` to `until` (default: up to
        `last`), seeing no event after `last` (see `requested_span`); the stored days are brought up to date first
        (the SELECT may name temporary tables of this connection: run it at once)."""
        return self._answer(rollup, since, last, until).sql

    def _answer(self, rollup: Rollup, since: datetime, last: datetime, until: datetime | None,
                known_until: datetime | None = None) -> Answer:
        """The SELECT of `sql`, and where its rows from stored and held rows end. With `known_until`, the stored and
        held rows before it are left out (the caller holds them); the days and the tail are kept up to date all the
        same."""
        requested = requested_span(rollup, since, last, until)
        if requested.lo_open:  # an empty range: nothing
            return Answer(rollup.select(self._raw_views(rollup, requested), requested), requested.lo, requested.lo)
        stored_from, end = requested.lo, requested.hi
        # The end of the last whole cell of the range whose rows read nothing after `last`.
        whole_until = min(floor_to(end + timedelta(microseconds=1), rollup.grain),
                          floor_to(last - rollup.reach + timedelta(microseconds=1), rollup.grain))
        stored_until = min(whole_until, self.cutoff(rollup))
        pieces: list[str] = []
        stored = stored_from < stored_until and not self._small(rollup, stored_from, stored_until)
        # A range that starts after the stored hours (the last hour of a short window, in the first minutes after an
        # hour is stored) is still answered from serve's held tail, which starts where the stored hours end.
        after_stored = (stored_until <= stored_from and self.kept is not None
                        and not self._small(rollup, stored_from, whole_until))
        if stored or after_stored:
            column = quote_identifier(rollup.time_column)
            if stored:
                with WriteLock(self.home.lock_file("aggregates")):
                    files = self._bring_up_to_date(rollup, stored_from, stored_until)
                read_from = max(stored_from, known_until or stored_from)
                if read_from < stored_until:
                    within = (f"WHERE {column} >= TIMESTAMPTZ '{read_from.isoformat()}' AND {column} < "
                              f"TIMESTAMPTZ '{stored_until.isoformat()}'")
                    pieces += [f"SELECT * FROM {source} {within}" for source in self._stored_sources(files)]
            raw_from = max(stored_until, stored_from)
            # serve: the settled cells after the stored ones are held between runs. Not for a rollup that looks
            # back: its cost is the look-back, which the rest of the range would read again.
            if self.kept is not None and not rollup.look_back:
                held_until = min(whole_until, floor_to(self.now - SETTLE - rollup.reach, rollup.grain))
                if raw_from < held_until:
                    tail = self._held_tail(rollup, stored_until, held_until)
                    shown_from = max(raw_from, known_until or raw_from)
                    if shown_from < held_until:
                        pieces.append(f"SELECT * FROM ({tail}) WHERE {column} >= "
                                      f"TIMESTAMPTZ '{shown_from.isoformat()}'")
                    raw_from = held_until
            raw = Span(raw_from, end, hi_closed=True, horizon=last)
        else:
            raw, raw_from, stored_until = requested, requested.lo, requested.lo
        if raw.lo <= raw.hi:
            pieces.append(rollup.select(self._raw_views(rollup, raw), raw))
        if not pieces:  # every cell held by the caller, none raw: no rows, with the rollup's columns
            pieces.append(f"SELECT * FROM ({rollup.select(self._raw_views(rollup, raw), raw)}) WHERE false")
        return Answer(" UNION ALL BY NAME ".join(f"({p})" for p in pieces), raw_from, stored_until)

    def _raw_views(self, rollup: Rollup, span: Span) -> dict[str, str]:
        """Temporary views over the visible parts of only the days a span's rows read (its look-back and reach
        included): the store-wide views would make every query of the last hour bind every part of every day."""
        last = span.hi + rollup.reach
        if span.horizon is not None:
            last = min(last, span.horizon)
        first = (span.lo - rollup.look_back).date()
        return {dataset: self.view(dataset, first, last.date()) for dataset in rollup.datasets}

    def view(self, dataset: str, first: date, last: date) -> str:
        """A temporary view of the dataset over the visible parts of the day partitions first..last only (made once
        per run): the store-wide view binds every part of every day, at every query."""
        if not DATASETS[dataset].partitioned_by_day:
            return dataset  # no day partitions to choose from: the store-wide view
        key = (dataset, first, last)
        if key not in self._views:
            name = f"_days_{dataset}_{uuid.uuid4().hex[:8]}"
            listed = [schema_part_path(self.home, DATASETS[dataset]), *_day_parts(self.home, dataset, first, last)]
            duck.run(self.con, f"CREATE TEMP VIEW {name} AS {_parts_select(dataset, listed)}")
            self._views[key] = name
        return self._views[key]

    def _stored_sources(self, files: list[Path]) -> list[str]:
        """What to read the stored files from: the files, or the tables held from earlier runs (registered on this
        run's connection under names of their own)."""
        if not files:
            return []
        if self.kept is None:
            return [f"read_parquet({parts_sql(files)})"]
        names = []
        for file in files:
            name = f"_kept_{uuid.uuid4().hex[:12]}"
            self.con.register(name, self.kept.table(file))
            names.append(name)
        return names

    def _held_tail(self, rollup: Rollup, lo: datetime, hi: datetime) -> str:
        """A SELECT of the rollup's rows of [lo, hi), the settled cells after the stored ones, from rows this process
        holds: summarised once, then extended run by run, by the rule of a stored day (step 1): they stay valid while
        every part they summarise is visible, or merged into a file holding exactly its rows plus later ones, and
        every new part holds only events after them and their reach."""
        assert self.kept is not None
        sources = self._parts_between(rollup, (lo - rollup.look_back).date(), _last_day_read(rollup, hi))
        held = self._valid_tail(rollup, lo, sources)
        known = dict(held.parts) if held is not None else {}
        parts = known | self._row_counts(sources, [k for k in sources if k not in known])
        if held is None:
            held = HeldTail(lo, hi, parts, self._rows(rollup, sources, Span(lo, hi)))
            self.tails.setdefault(rollup.name, []).append("summarised")
        elif held.hi < hi:
            more = self._rows(rollup, sources, Span(held.hi, hi))
            table = pa.concat_tables([held.table, more.select(held.table.column_names)], promote_options="permissive")
            held = HeldTail(lo, hi, parts, table)
            self.tails.setdefault(rollup.name, []).append("extended")
        else:
            held = HeldTail(lo, held.hi, parts, held.table)  # record the new parts
            self.tails.setdefault(rollup.name, []).append("held")
        self.kept.hold_tail(rollup.name, held)
        name = f"_held_{uuid.uuid4().hex[:12]}"
        self.con.register(name, held.table)
        return f"SELECT * FROM {name} WHERE {quote_identifier(rollup.time_column)} < TIMESTAMPTZ '{hi.isoformat()}'"

    def _rows_held(self, rollup: Rollup, sources: dict[str, Path], start: datetime, until: datetime) -> str | None:
        """A temporary table of the rows of [start, until) from the rollup's held tail (plus the few minutes after
        it), when it starts there and is still valid for these parts: serve held the hour it stores next already."""
        held = self._valid_tail(rollup, start, sources)
        if held is None:
            return None
        name, table = f"_held_{uuid.uuid4().hex[:12]}", f"_rollup_rows_{uuid.uuid4().hex[:8]}"
        self.con.register(name, held.table)
        try:
            duck.run(self.con, f"CREATE TEMP TABLE {table} AS SELECT * FROM {name} WHERE "
                               f"{quote_identifier(rollup.time_column)} < TIMESTAMPTZ '{until.isoformat()}'")
        finally:
            self.con.unregister(name)
        if held.hi < until:
            rest = self._summarise(rollup, sources, Span(held.hi, until, horizon=until + rollup.reach))
            duck.run(self.con, f"INSERT INTO {table} BY NAME SELECT * FROM {rest}")
            duck.run(self.con, f"DROP TABLE {rest}")
        self.tails.setdefault(rollup.name, []).append("stored")
        return table

    def _valid_tail(self, rollup: Rollup, lo: datetime, sources: dict[str, Path]) -> HeldTail | None:
        """The rollup's held tail if it starts at `lo` and still holds for these parts (step 1's rule, as a stored
        day's), naming the parts it summarises as now visible (the merged files of a compaction)."""
        held = self.kept.tail(rollup.name) if self.kept is not None else None
        if held is None:
            return None
        if held.lo != lo:
            # A tail before a stored hour: its rows are stored now (it was checked where they were, `_rows_held`).
            # Checked against `sources` it would find the parts of its first day gone, and forget answers for nothing.
            return None
        kept = self._still_valid(rollup, held.parts, held.hi, sources)
        if kept is None:
            self._rows_changed(rollup)  # a late event or an erasure under the tail: answers from it are stale
            return None
        self._tails_checked[rollup.name] = held.lo
        return replace(held, parts=kept)

    def _rows(self, rollup: Rollup, sources: dict[str, Path], span: Span) -> pa.Table:
        """The rollup's rows of the span (complete: its reach is in), read from exactly the parts in `sources`."""
        table = self._summarise(rollup, sources, Span(span.lo, span.hi, horizon=span.hi + rollup.reach))
        try:
            return duck.run_arrow(self.con, f"SELECT * FROM {table}")
        finally:
            duck.run(self.con, f"DROP TABLE IF EXISTS {table}")

    def _small(self, rollup: Rollup, start: datetime, end: datetime) -> bool:
        """Whether the parts of [start, end) are so small that reading them costs less than keeping aggregates."""
        total, day = 0, start.date()
        while _day_start(day) < end and total < self.small_bytes:
            for part in _day_parts(self.home, rollup.dataset, day, day):
                try:
                    total += part.stat().st_size
                except FileNotFoundError:  # merged away and deleted meanwhile
                    continue
            day += DAY
        return total < self.small_bytes

    # --- keeping the days up to date --------------------------------------------------------------------------

    def _bring_up_to_date(self, rollup: Rollup, start: datetime, end: datetime) -> list[Path]:
        """Update the stored days of [start, end) and return the files holding their rows."""
        folder = self.root / rollup.name
        files = []
        day = start.date()
        while _day_start(day) < end:
            covered = min(_day_start(day) + DAY, end)
            state = self._update_day(rollup, folder, day, covered)
            if state is not None:
                files.append(folder / state.file)
            self._lineages[(rollup.name, day)] = state.lineage if state is not None else NO_EVENTS
            day += DAY
        return files

    def _sources(self, rollup: Rollup, day: date, until: datetime) -> dict[str, Path]:
        """Every visible part a row of `day` (up to `until`) may read, by its key (dataset/partition/name)."""
        return self._parts_between(rollup, (_day_start(day) - rollup.look_back).date(), _last_day_read(rollup, until))

    def _parts_between(self, rollup: Rollup, first: date, last: date) -> dict[str, Path]:
        """The visible parts of the rollup's datasets in the day partitions first..last, by dataset/partition/name."""
        return {f"{dataset}/{p.parent.name}/{p.name}": p for dataset in rollup.datasets
                for p in _day_parts(self.home, dataset, first, last)}

    def _update_day(self, rollup: Rollup, folder: Path, day: date, until: datetime) -> DayState | None:
        """Bring one day's stored rows up to `until` (steps 1 and 2 of the module's docstring)."""
        own = f"{rollup.dataset}/{PARTITION_PREFIX}{day.isoformat()}/"
        sources = self._sources(rollup, day, until)
        state_path = folder / f"{PARTITION_PREFIX}{day.isoformat()}.json"
        if not any(key.startswith(own) for key in sources):
            # No events that day (any more: retention dropped the partition).
            if _forget_day(folder, day) or self._answered(rollup, day):
                self._rows_changed(rollup)
            return None
        state = _load_state(state_path)
        if state is not None and not state.file_intact(folder):
            state = None
        kept = self._still_valid(rollup, state.parts, state.covered_until, sources) if state is not None else None
        if state is not None and kept is not None and state.covered_until >= until:
            if set(kept) != set(sources):  # record the new parts (they hold nothing the stored rows read)
                state.parts = kept | self._row_counts(sources, [k for k in sources if k not in kept])
                _save_state(state_path, state)
            return state
        previous: Path | None
        if state is not None and kept is not None:
            start, previous, lineage = state.covered_until, folder / state.file, state.lineage
        else:  # never summarised, or stale: summarise the whole day again
            start, previous, kept, lineage = _day_start(day), None, {}, uuid.uuid4().hex
            self._rows_changed(rollup)  # its rows may differ from those answered before (a late event, an erasure)
        new_rows = (self._rows_held(rollup, sources, start, until)
                    or self._summarise(rollup, sources, Span(start, until, horizon=until + rollup.reach)))
        file, size = self._write_rows(folder, day, [str(previous) if previous else None, new_rows])
        state = DayState(until, kept | self._row_counts(sources, [k for k in sources if k not in kept]), file, size,
                         lineage)
        _save_state(state_path, state)
        if previous is not None:
            previous.unlink(missing_ok=True)
        self.updated[rollup.name] = self.updated.get(rollup.name, 0) + 1
        return state

    def _rows_changed(self, rollup: Rollup) -> None:
        """Rows of the rollup answered before may have changed: a held answer is not answered from again. This
        run's own answer may still be held after it, unless another run forgot one meanwhile too."""
        if self.kept is not None:
            expected = self._generations.get(rollup.name)
            generation = self.kept.forget_answer(rollup.name)
            if rollup.name in self._generations:
                self._generations[rollup.name] = (generation if expected is not None and generation == expected + 1
                                                  else None)

    def _answered(self, rollup: Rollup, day: date) -> bool:
        """Whether the rollup's held answer holds rows of `day` (a day with no events holds none)."""
        held = self.kept.answer(rollup.name) if self.kept is not None else None
        if held is None or not (held.lo < _day_start(day) + DAY and _day_start(day) < held.hi):
            return False
        if day in held.lineages:  # a stored day of the answer: it read rows of the day unless it had no events
            return held.lineages[day] != NO_EVENTS
        column = pl.col(rollup.time_column)
        return not held.frame.filter((column >= _day_start(day)) & (column < _day_start(day) + DAY)).is_empty()

    def _still_valid(self, rollup: Rollup, summarised: Mapping[str, int], covered_until: datetime,
                     sources: dict[str, Path]) -> dict[str, int] | None:
        """The parts (key -> rows) that rows summarising the parts `summarised` (key -> rows) up to `covered_until`
        read, as now visible; None when the rows no longer hold."""
        kept = {k: r for k, r in summarised.items() if k in sources}
        gone = set(summarised) - set(kept)
        new = [k for k in sources if k not in kept]
        for key in [k for k in new if sources[k].name.startswith(REWRITTEN_PREFIX)]:
            folder = key.rsplit("/", 1)[0]
            names = read_sidecar(sidecar_of(sources[key])) or []
            tracked = {f"{folder}/{name}" for name in names} & gone
            if not tracked:
                continue  # a merge of parts that came after the stored rows: new, like any other part
            # A merge of today's partition takes in the parts that landed since too: they are still on disk (the
            # grace), so their rows and times tell whether the merged file holds anything the stored rows lack.
            untracked = [sources[key].parent / name for name in names if f"{folder}/{name}" not in summarised]
            if any(not path.exists() for path in untracked):
                return None
            rows = self._row_counts(sources, [key])[key]
            if rows != sum(summarised[r] for r in tracked) + self._rows_in(untracked):
                return None  # rows were removed (an erasure): summarise again
            if untracked and self._earliest(untracked) <= covered_until + rollup.reach:
                return None
            gone -= tracked
            kept[key] = rows
        if gone:
            return None
        fresh = [sources[k] for k in sources if k not in kept]
        # A new part matters when it holds an event some stored row reads: a late event, a re-ingest.
        if fresh and self._earliest(fresh) <= covered_until + rollup.reach:
            return None
        return kept

    def _summarise(self, rollup: Rollup, sources: dict[str, Path], span: Span) -> str:
        """A temporary table of the rollup's rows for `span`, read from exactly the parts in `sources`."""
        tag = uuid.uuid4().hex[:8]
        table = f"_rollup_rows_{tag}"
        views = {dataset: f"_rollup_source_{dataset}_{tag}" for dataset in rollup.datasets}
        for dataset, view in views.items():
            parts = [schema_part_path(self.home, DATASETS[dataset]),
                     *(p for key, p in sorted(sources.items()) if key.startswith(f"{dataset}/"))]
            duck.run(self.con, f"CREATE OR REPLACE TEMP VIEW {view} AS {_parts_select(dataset, parts)}")
        try:
            duck.run(self.con, f"CREATE TEMP TABLE {table} AS {rollup.select(views, span)}")
        finally:
            for view in views.values():
                duck.run(self.con, f"DROP VIEW IF EXISTS {view}")
        return table

    def _write_rows(self, folder: Path, day: date, pieces: list[str | None]) -> tuple[str, int]:
        """Write the day's rows (a stored file and a temporary table) to a new file; returns its name and size. Not
        fsynced: aggregates can always be summarised again, and a run writes hundreds of them on a fresh store."""
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{PARTITION_PREFIX}{day.isoformat()}-{uuid.uuid4().hex[:12]}.parquet"
        temp = folder / f".{name}.tmp"
        sources = [f"SELECT * FROM read_parquet({sql_string(p)})" if p.endswith(".parquet") else f"SELECT * FROM {p}"
                   for p in pieces if p]
        try:
            duck.run(self.con, f"COPY ({' UNION ALL BY NAME '.join(sources)}) TO {sql_string(str(temp))} "
                               "(FORMAT parquet, COMPRESSION zstd)")
            size = temp.stat().st_size
            os.replace(temp, folder / name)
        finally:
            temp.unlink(missing_ok=True)
            for piece in pieces:
                if piece and not piece.endswith(".parquet"):
                    duck.run(self.con, f"DROP TABLE IF EXISTS {piece}")
        return name, size

    def _row_counts(self, sources: dict[str, Path], keys: list[str]) -> dict[str, int]:
        if not keys:
            return {}
        by_path = {str(sources[k]): k for k in keys}
        listed = parts_sql([Path(p) for p in by_path])
        rows = duck.run(self.con, f"SELECT file_name, num_rows FROM parquet_file_metadata({listed})")
        return {by_path[file]: int(count) for file, count in rows}

    def _rows_in(self, parts: list[Path]) -> int:
        if not parts:
            return 0
        return int(duck.run(self.con, f"SELECT sum(num_rows) FROM parquet_file_metadata({parts_sql(parts)})")[0][0])

    def _earliest(self, parts: list[Path]) -> datetime:
        known = {p: _earliest_seen.get(str(p)) for p in parts}
        unseen = [p for p, at in known.items() if at is None]
        if unseen:
            sql = (f"SELECT filename, min(ts) FROM read_parquet({parts_sql(unseen)}, union_by_name = true, "
                   "filename = true) GROUP BY filename")
            found = {Path(name): at for name, at in duck.run(self.con, sql)}
            if len(_earliest_seen) + len(found) > MAX_EARLIEST_CACHED:
                _earliest_seen.clear()
            for part in unseen:  # one DuckDB did not name (or with no rows): assume the worst, summarise again
                known[part] = found.get(part, datetime.min.replace(tzinfo=UTC))
                if part in found:
                    _earliest_seen[str(part)] = found[part]
        return min(at for at in known.values() if at is not None)


def forget(home: Home, days: list[date]) -> int:
    """Delete every rollup's stored rows of these days (an erasure: the rows may hold values of erased events, such
    as the drift sample's inputs); the next run summarises the days again. Returns the files deleted."""
    root = home.aggregates
    if not root.is_dir():
        return 0
    return sum(_forget_day(folder, day) for folder in root.iterdir() if folder.is_dir() for day in days)


def _forget_day(folder: Path, day: date) -> int:
    prefix = f"{PARTITION_PREFIX}{day.isoformat()}"
    doomed = [*folder.glob(f"{prefix}.json"), *folder.glob(f"{prefix}-*.parquet")]
    for path in doomed:
        path.unlink(missing_ok=True)
    if doomed:
        fsync_dir(folder)
    return len(doomed)


def _day_parts(home: Home, dataset: str, first: date, last: date) -> list[Path]:
    """The visible parts of the dataset's day partitions first..last."""
    directory, at = home.dataset_dir(dataset), first
    found: list[Path] = []
    while at <= last:
        found += list_partition(directory / f"{PARTITION_PREFIX}{at.isoformat()}")
        at += DAY
    return found


def _days_between(start: datetime, end: datetime) -> list[date]:
    """The days holding some time in [start, end)."""
    if end <= start:
        return []
    days, day = [], start.date()
    while _day_start(day) < end:
        days.append(day)
        day += DAY
    return days


def _last_day_read(rollup: Rollup, until: datetime) -> date:
    """The last day partition the rows of the cells before `until` read: up to their `reach` after them, inclusive
    (``Span.wide_condition``); without a reach, nothing at or after `until`. Yesterday's rows must not list today's
    partition: its new parts, every second, would make each run record them in yesterday's state."""
    return (until + rollup.reach).date() if rollup.reach else (until - timedelta(microseconds=1)).date()


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _parts_select(dataset: str, parts: list[Path]) -> str:
    """The dataset's columns read from exactly these parts (the view's columns, without the partition key; the
    zero-row schema part among them gives the types)."""
    columns = ", ".join(quote_identifier(n) for n, _ in DATASETS[dataset].table_columns() if n != "day")
    return f"SELECT {columns} FROM read_parquet({parts_sql(parts)}, union_by_name = true)"


def _load_state(path: Path) -> DayState | None:
    try:
        return DayState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None  # none yet, or unreadable: the day is summarised again


def _save_state(path: Path, state: DayState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    temp.write_text(json.dumps(state.to_json()), encoding="utf-8")
    os.replace(temp, path)  # atomic for readers; not fsynced (see `_write_rows`)
