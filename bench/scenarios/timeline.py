"""The simulated calendar: when history starts, when evaluation starts, holidays, and time helpers.

Times are int64 microseconds since the Unix epoch (UTC) inside the generator, so arrays stay numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
EVAL_START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday, 00:00 UTC: evaluation always starts on one


def us(at: datetime) -> int:
    return int(at.timestamp()) * SECOND + at.microsecond


def at_us(value: int) -> datetime:
    return datetime.fromtimestamp(value // SECOND, tz=UTC) + timedelta(microseconds=int(value % SECOND))


def weekday_of(day_index: np.ndarray | int) -> np.ndarray | int:
    """Monday = 0 .. Sunday = 6 of days counted from the epoch (1970-01-01 was a Thursday)."""
    return (day_index + 3) % 7


@dataclass(frozen=True)
class Timeline:
    """History (warm-up) days before a Monday, then whole evaluation weeks."""

    warmup_days: int
    weeks: int
    leads_per_day: int  # leads on an ordinary weekday at the start of evaluation
    growth_per_day: float = 0.02  # steady growth, compounded daily
    holidays: tuple[date, ...] = field(default=(EVAL_START.date() + timedelta(days=3),))  # the first Thursday
    # One region's holiday shifts which teams get leads for a day (every agent sees the shift): EMEA on the first
    # Friday, APAC on the second Wednesday.
    regional_holidays: tuple[tuple[date, str], ...] = field(default=(
        (EVAL_START.date() + timedelta(days=4), "EMEA"), (EVAL_START.date() + timedelta(days=9), "APAC")))

    @property
    def eval_start(self) -> datetime:
        return EVAL_START

    @property
    def start(self) -> datetime:
        return EVAL_START - timedelta(days=self.warmup_days)

    @property
    def end(self) -> datetime:
        return EVAL_START + timedelta(weeks=self.weeks)

    @property
    def benign_field_at(self) -> datetime:
        """When an admin adds a field no agent reads: Friday of the first week, 14:20."""
        return EVAL_START + timedelta(days=4, hours=14, minutes=20)


def business_hours(ts: np.ndarray, offset_h: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Move times outside 08:00-18:00 local, Monday-Friday, to the next working morning (+ jitter 0..1 of 3 h).

    Reps react to what agents did during their own working hours, not at 3 a.m. on a Sunday.
    """
    local = ts + offset_h * HOUR
    day = local // DAY
    hour = (local % DAY) // HOUR
    out = (hour >= 18) | (weekday_of(day) >= 5) | (hour < 8)
    next_day = np.where(hour < 8, day, day + 1)
    for _ in range(2):  # skip Saturday and Sunday
        next_day = np.where(weekday_of(next_day) >= 5, next_day + 1, next_day)
    morning = next_day * DAY + 8 * HOUR + (jitter * 3 * HOUR).astype(np.int64)
    return np.where(out, morning, local) - offset_h * HOUR
