"""Dense per-series bucket counts and the seasonal expectation the volume checks compare against.

:func:`action_series` lays :func:`agentwatch.checks.aggregates.action_counts` out as matrices (one row per
agent x action, one column per 5-minute bucket) so a step is a slice, not a query.
:func:`seasonal_expectation` says how many events each row usually has in each bucket: the weighted
mean of the same 5-minute slot on previous days, where the same weekday counts most (it knows a
Monday-morning burst), other days of the same kind (weekday or weekend) count once, and days of the
other kind not at all. Neighbouring slots are pooled (+-10 minutes) so small streams get a stable
figure without blurring the start of the working day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from agentwatch.checks.aggregates import action_counts
from agentwatch.checks.data import BUCKET, EvalData, floor_to_bucket

SLOTS_PER_DAY = int(timedelta(days=1) / BUCKET)
SMOOTH_SLOTS = 2  # pool +-2 neighbouring slots (+-10 min): stable for small streams, keeps 9:00 edges sharp
DISPERSION_MIN_EXPECTED = 1.0  # buckets expecting fewer events say little about the spread
DISPERSION_MIN_BUCKETS = 100  # below this many such buckets a row is taken as plain Poisson
DISPERSION_BOUNDS = (1.0, 10.0)
DISPERSION_CAP = 25.0  # one bucket adds at most a 5-sigma residual: incidents in the history weigh little
# The buckets a factor is learnt from: a fixed trailing window, not everything loaded, so a live run (which
# loads the checks' history) and a backtest (which has run since long before) learn the same factor.
DISPERSION_WINDOW = 14 * SLOTS_PER_DAY
MIN_BASELINE_DAYS = 3  # comparable days (same kind) a bucket needs before it has an expectation: fewer is noise


@dataclass
class ActionSeries:
    """Events and errors per agent x action (rows) x 5-minute bucket (columns) over the run's range."""

    agents: list[str]
    actions: list[str]
    origin: datetime  # start of column 0
    events: np.ndarray  # float64, rows x columns
    errors: np.ndarray

    @property
    def size(self) -> int:
        return len(self.agents)

    def column_of(self, at: datetime) -> int:
        """The column of the bucket holding `at` (that bucket is incomplete at `at`)."""
        return int((floor_to_bucket(at) - self.origin) / BUCKET)

    def time_of(self, column: int) -> datetime:
        return self.origin + column * BUCKET


def action_series(data: EvalData) -> ActionSeries:
    """The run's action counts as matrices, built once per run."""

    def build() -> ActionSeries:
        frame = action_counts(data)
        origin = floor_to_bucket(data.load_from)
        columns = int((floor_to_bucket(data.last) - origin) / BUCKET) + 1
        keys = frame.select("agent_id", "action").unique().sort("agent_id", "action").with_row_index("row")
        events = np.zeros((keys.height, columns))
        errors = np.zeros((keys.height, columns))
        if keys.height:
            cells = frame.join(keys, on=["agent_id", "action"]).with_columns(
                ((pl.col("bucket").dt.epoch("s") - int(origin.timestamp())) // int(BUCKET.total_seconds()))
                .alias("column")
            ).filter((pl.col("column") >= 0) & (pl.col("column") < columns))
            rows, cols = cells["row"].to_numpy(), cells["column"].to_numpy()
            events[rows, cols] = cells["events"].to_numpy()
            errors[rows, cols] = cells["errors"].to_numpy()
        return ActionSeries(keys["agent_id"].to_list(), keys["action"].to_list(), origin, events, errors)

    return data.shared("action_series", build)


def prefix_sums(matrix: np.ndarray) -> np.ndarray:
    """Row-wise prefix sums with a leading zero column: sum of columns [i, j) = P[:, j] - P[:, i]."""
    return np.concatenate([np.zeros((matrix.shape[0], 1)), np.cumsum(matrix, axis=1)], axis=1)


def suffix_max(llr: np.ndarray) -> np.ndarray:
    """Row-wise CUSUM statistic at the last column (max over k of sum(llr[k:])), for many rows at once."""
    return np.cumsum(llr[:, ::-1], axis=1).max(axis=1)


def local_weekdays(origin: datetime, columns: int, timezone: str) -> np.ndarray:
    """The weekday (1 = Monday .. 7 = Sunday) of each bucket in the team's time zone."""
    if columns == 0:
        return np.zeros(0, dtype=np.int8)
    times = pl.datetime_range(origin, origin + (columns - 1) * BUCKET, BUCKET, time_zone="UTC", eager=True)
    return times.dt.convert_time_zone(timezone).dt.weekday().to_numpy()


def seasonal_expectation(counts: np.ndarray, weekdays: np.ndarray, days: int, same_weekday_weight: float) -> np.ndarray:
    """Expected count per row x bucket from the same slot on the previous `days` days (NaN: no baseline yet).

    A row's days before its first event are not history (a new agent has no baseline, not a zero one).
    Only earlier days are read, so the expectation of a bucket never looks at the bucket itself.
    """
    rows, columns = counts.shape
    observed_from = np.where(counts.any(axis=1), np.argmax(counts > 0, axis=1), columns)
    weekend = weekdays >= 6
    total = np.zeros((rows, columns))
    weight = np.zeros((rows, columns))
    days_seen = np.zeros((rows, columns))
    for day in range(1, days + 1):
        lag = day * SLOTS_PER_DAY
        if lag >= columns:
            break
        source = np.arange(columns - lag)
        target = source + lag
        kind = np.where(weekdays[source] == weekdays[target], same_weekday_weight,
                        (weekend[source] == weekend[target]).astype(float))
        w = kind[None, :] * (source[None, :] >= observed_from[:, None])
        total[:, lag:] += w * counts[:, :columns - lag]
        weight[:, lag:] += w
        days_seen[:, lag:] += w > 0
    pooled = _centered_sum(weight, SMOOTH_SLOTS)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = _centered_sum(total, SMOOTH_SLOTS) / pooled
    return np.where(days_seen >= MIN_BASELINE_DAYS, expected, np.nan)


def weekly_expectation(counts: np.ndarray, days: int) -> np.ndarray:
    """Expected count per row x bucket from the same slot of the same weekday in earlier weeks only (NaN
    where there is none). A weekly pattern (the Wednesday webinar import) is explained by one precedent,
    where the day-type average would still dilute it among the other weekdays."""
    rows, columns = counts.shape
    observed_from = np.where(counts.any(axis=1), np.argmax(counts > 0, axis=1), columns)
    total = np.zeros((rows, columns))
    weight = np.zeros((rows, columns))
    for week in range(1, days // 7 + 1):
        lag = week * 7 * SLOTS_PER_DAY
        if lag >= columns:
            break
        source = np.arange(columns - lag)
        w = (source[None, :] >= observed_from[:, None]).astype(float)
        total[:, lag:] += w * counts[:, :columns - lag]
        weight[:, lag:] += w
    pooled = _centered_sum(weight, SMOOTH_SLOTS)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pooled > 0, _centered_sum(total, SMOOTH_SLOTS) / pooled, np.nan)


def _centered_sum(matrix: np.ndarray, half: int) -> np.ndarray:
    """Row-wise sum over columns [j - half, j + half], clipped at the edges."""
    padded = prefix_sums(np.pad(matrix, ((0, 0), (half, half))))
    width = 2 * half + 1
    return padded[:, width:] - padded[:, :-width]


class Dispersion:
    """Per row, how much more counts spread around the expectation than Poisson (variance / mean), from
    the buckets before a given column. Events that come in clusters (several field writes per lead) or a
    baseline that misses part of the pattern spread more; the checks divide their Poisson evidence, and
    the events they count, by this factor. Each bucket's share is capped, so an incident in the history
    does not inflate it; it is learnt from the 14 days before (no look-ahead, and no dependence on how much
    older data a run happened to load)."""

    def __init__(self, counts: np.ndarray, expected: np.ndarray) -> None:
        valid = expected >= DISPERSION_MIN_EXPECTED  # NaN compares False
        with np.errstate(invalid="ignore", divide="ignore"):
            residuals = np.where(valid, np.minimum((counts - expected) ** 2 / expected, DISPERSION_CAP), 0.0)
        self.residual_prefix = prefix_sums(residuals)
        self.valid_prefix = prefix_sums(valid.astype(float))

    def before(self, column: int) -> np.ndarray:
        """The factor of every row from the 14 days of buckets before `column` (1 where there are too few)."""
        since = max(0, column - DISPERSION_WINDOW)
        buckets = self.valid_prefix[:, column] - self.valid_prefix[:, since]
        residuals = self.residual_prefix[:, column] - self.residual_prefix[:, since]
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(buckets >= DISPERSION_MIN_BUCKETS, residuals / buckets, 1.0)
        return factor.clip(*DISPERSION_BOUNDS)
