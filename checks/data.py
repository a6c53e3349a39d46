"""What checks read: the store's views over one time range, plus results shared between checks.

``EvalData`` spans ``[first - history, last]`` where ``first`` and ``last`` are the first and last
evaluation times (equal for ``agentwatch check``). Aggregates several checks need (bucketed action
counts, null counts per input key) are built once through :meth:`EvalData.shared`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import duckdb
import numpy as np
import polars as pl

from agentwatch.checks.config import ChecksConfig
from agentwatch.core.home import Home
from agentwatch.store import duck
from agentwatch.store.rollups import Rollup, RollupStore, requested_span

T = TypeVar("T")
BUCKET = timedelta(minutes=5)  # the grain of every time series the checks keep
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass
class EvalData:
    """The store seen by one run of the checks."""

    con: duckdb.DuckDBPyConnection
    config: ChecksConfig
    first: datetime  # first evaluation time
    last: datetime  # last evaluation time: no event after it is ever read
    load_from: datetime  # earliest event time any check needs
    # Where the checks' look-back windows start from: the first evaluation time, or the start of the oldest
    # incident still open when that is earlier. An open incident freezes its check's baseline at its start, so a
    # live run days into it must read as far back as a backtest that has been running since before it.
    anchor: datetime | None = None
    # The aggregates kept in the home (None: every rollup is computed from the events, as a full recompute does).
    rollups: RollupStore | None = None
    # subject_key -> start of each incident open when the run began: what the first step's `Step.open_since` holds.
    open_since: Mapping[str, datetime] = field(default_factory=dict)
    # The home, for the state kept beside the store (the CRM pollers' polls); None when a run has no home.
    home: Home | None = None
    _shared: dict[str, Any] = field(default_factory=dict)

    @property
    def look_back_from(self) -> datetime:
        return min(self.anchor, self.first) if self.anchor else self.first

    def shared(self, key: str, build: Callable[[], T]) -> T:
        """Build a value once per run and hand the same one to every check that asks."""
        if key not in self._shared:
            self._shared[key] = build()
        return self._shared[key]

    def time_filter(self, column: str = "ts", since: datetime | None = None) -> str:
        """A WHERE condition keeping the run's range (parameters are the bound times, inlined safely)."""
        start = since or self.load_from
        return f"{column} > TIMESTAMPTZ '{start.isoformat()}' AND {column} <= TIMESTAMPTZ '{self.last.isoformat()}'"

    def view(self, dataset: str, since: datetime) -> str:
        """The relation to read the dataset's events after `since` from: a view over only the days from `since` to
        the run's last time (the store-wide view when computing from scratch)."""
        if self.rollups is None:
            return dataset
        return self.rollups.view(dataset, since.date(), self.last.date())

    def rollup_sql(self, rollup: Rollup, since: datetime | None = None, until: datetime | None = None) -> str:
        """A SELECT of a rollup's rows of the cells from the one holding `since` (default: the run's first time to
        load) to `until` (default: the run's last time), the rows reading no event after the run's last time."""
        start = since or self.load_from
        if self.rollups is None:
            return rollup.select(rollup.views(), requested_span(rollup, start, self.last, until))
        return self.rollups.sql(rollup, start, self.last, until)

    def rollup(self, rollup: Rollup, since: datetime | None = None, until: datetime | None = None) -> pl.DataFrame:
        """A rollup's rows of the cells from the one holding `since` to `until` (default: the run's last time), as
        a frame."""
        if self.rollups is None:
            return self.frame(self.rollup_sql(rollup, since, until))
        return self.rollups.frame(rollup, since or self.load_from, self.last, until)

    def frame(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """A query's result as a Polars frame."""
        return pl.DataFrame(duck.run_arrow(self.con, sql, params))


def to_micros(at: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (the unit of Polars' and DuckDB's timestamps)."""
    return (at - EPOCH) // MICROSECOND


def from_micros(micros: int | np.integer) -> datetime:
    """The UTC time `micros` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=int(micros))


def rows_in_window(frame: pl.DataFrame, ts_us: np.ndarray, window: timedelta, at: datetime) -> pl.DataFrame:
    """The rows of a time-sorted frame (`ts_us`: its times in microseconds) with time in (at - window, at]."""
    end = to_micros(at)
    lo, hi = np.searchsorted(ts_us, [end - window // MICROSECOND, end], side="right")
    return frame.slice(int(lo), max(int(hi - lo), 0))


def count_between(times_us: np.ndarray, start_us: int, end_us: int) -> int:
    """How many of the sorted `times_us` (microseconds) fall in (start_us, end_us]."""
    lo, hi = np.searchsorted(times_us, [start_us, end_us], side="right")
    return int(max(hi - lo, 0))


def floor_to_bucket(at: datetime) -> datetime:
    """The start of the bucket holding `at` (buckets are aligned to the Unix epoch)."""
    seconds = BUCKET.total_seconds()
    return datetime.fromtimestamp((at.timestamp() // seconds) * seconds, tz=at.tzinfo)
