"""The time ranges pages show: whole UTC hours ending with the hour of the latest event (demo data lies in the
past, so ranges end there, not now), and the range of the same length before, for the deltas."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Window:
    """A time range of whole UTC hours, ``[start, end)``."""

    start: datetime
    end: datetime

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    @property
    def hours(self) -> float:
        return self.span / HOUR

    @property
    def previous_start(self) -> datetime:
        """Where the range of the same length just before this one starts."""
        return self.start - self.span

    def previous(self) -> Window:
        """The range of the same length just before this one."""
        return Window(self.previous_start, self.start)

    def days(self) -> tuple[date, date]:
        """The UTC days (hive partitions) the range touches."""
        return self.start.astimezone(UTC).date(), (self.end - timedelta(microseconds=1)).astimezone(UTC).date()


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def range_ending(latest: datetime, span: timedelta) -> Window:
    """The `span` ending with the hour that holds `latest`."""
    end = floor_hour(latest) + HOUR
    return Window(end - span, end)

