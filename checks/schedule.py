"""Scheduled jobs among the action series: runs at roughly regular intervals with idle gaps between.

A nightly hygiene sweep or a weekly import is not a stream. Judged by hour-of-week buckets it "goes silent" or
"spikes" whenever it starts an hour earlier or later than last week. This module learns, per agent x action
and at each evaluation time from the weeks before it only, whether the series is such a job and what its
schedule is, the way cron monitors do:

1. A *run* is a stretch of 5-minute buckets with events, no two more than ``idle_gap`` apart.
2. The series is scheduled when, over the look-back, it had at least ``min_runs`` runs, nine in ten intervals
   between run starts lie within ``regularity`` of their median, and a run usually lasts at most a quarter of
   that interval (a working-hours stream is one long run a day, so it stays a stream).
3. Its next run is due by the last run's start plus the median interval plus a grace learnt from its own
   jitter (the largest deviation of a regular interval, times ``jitter_multiple``, never under ``grace_share``
   of the interval nor ``min_grace``).

Everything is computed from bucket counts the volume checks already hold, so a live run and a backtest learn
the same schedule at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGULAR_SHARE = 0.9  # intervals that must be regular: one skipped run in ten still leaves a schedule
MAX_RUN_SHARE = 0.25  # a run lasting longer than this share of its interval is a working day, not a job


@dataclass(frozen=True)
class ScheduleRules:
    """How a schedule is recognised, in buckets (from the volume options)."""

    idle_gap: int  # empty buckets that end a run
    look_back: int  # buckets of history a schedule is learnt from
    min_runs: int
    regularity: float  # an interval within this share of the median is regular
    jitter_multiple: float
    grace_share: float
    min_grace: int
    max_active_share: float  # rows busier than this share of the look-back's buckets are streams


@dataclass(frozen=True)
class Schedule:
    """The learnt schedule of one series at one evaluation time (columns are buckets of its series)."""

    interval: int  # median buckets between run starts
    grace: int  # buckets a run may be late before it counts as missed
    runs: int  # runs it was learnt from
    last_start: int  # first bucket of the latest run before the evaluation time
    last_end: int  # last bucket with events of that run
    last_events: float  # events of that run so far
    usual_events: float  # median events of the earlier runs

    @property
    def due_by(self) -> int:
        """The bucket by whose start the next run should have begun."""
        return self.last_start + self.interval + self.grace

    def missed(self, end: int) -> int:
        """Runs missed by bucket `end` (exclusive): 0 while the next one is still within its grace."""
        return 0 if end <= self.due_by else 1 + (end - self.due_by) // self.interval


class RunIndex:
    """Every run of every row, found once per check run; judged per evaluation time from the look-back before it
    only, so neither later events nor how much history a run loaded change a verdict."""

    def __init__(self, events: np.ndarray, rules: ScheduleRules) -> None:
        self.rules = rules
        self.events = events
        self.runs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # row -> starts, ends, sizes
        # Prefix counts of buckets with events: a row's busy share over any look-back is one subtraction.
        self.active_prefix = np.concatenate([np.zeros((events.shape[0], 1)), np.cumsum(events > 0, axis=1)], axis=1)
        # Both volume checks ask for the same step's schedules: the answers of the latest step are kept.
        self._end = -1
        self._answers: dict[tuple[int, bool], Schedule | None] = {}
        for row in np.flatnonzero(events.any(axis=1)):
            active = np.flatnonzero(events[row] > 0)
            first = np.concatenate([[True], np.diff(active) > rules.idle_gap])
            starts = np.flatnonzero(first)
            ends = np.concatenate([starts[1:], [active.size]]) - 1
            sizes = np.add.reduceat(events[row, active], starts)
            self.runs[int(row)] = (active[starts], active[ends], sizes)

    def schedule(self, row: int, end: int, forced: bool = False) -> Schedule | None:
        """The schedule of `row` learnt from its runs that began in the look-back before bucket `end`
        (exclusive), or None when it is not a scheduled job. `forced`: the user said it is one, so any two runs
        give its interval and no regularity is asked."""
        if end != self._end:
            self._end, self._answers = end, {}
        if (row, forced) not in self._answers:
            self._answers[(row, forced)] = self._learn(row, end, forced)
        return self._answers[(row, forced)]

    def _learn(self, row: int, end: int, forced: bool) -> Schedule | None:
        if row not in self.runs:
            return None
        rules = self.rules
        busy = self.active_prefix[row, end] - self.active_prefix[row, max(0, end - rules.look_back)]
        if not forced and busy > rules.max_active_share * rules.look_back:
            return None  # events in too many buckets for a job: a stream, whatever its rhythm
        starts, ends, sizes = self.runs[row]
        lo, hi = np.searchsorted(starts, [end - rules.look_back, end])
        if hi - lo < (2 if forced else rules.min_runs):
            return None
        starts, run_ends, sizes = starts[lo:hi], np.minimum(ends[lo:hi], end - 1), sizes[lo:hi]
        intervals = np.diff(starts)
        interval = int(np.median(intervals))
        deviation = np.abs(intervals - interval)
        regular = deviation <= rules.regularity * interval
        lasting = float(np.median(run_ends - starts + 1))
        if not forced and (regular.mean() < REGULAR_SHARE or lasting > MAX_RUN_SHARE * interval):
            return None
        jitter = float(deviation[regular].max()) if regular.any() else 0.0
        grace = max(rules.min_grace, round(rules.grace_share * interval), round(rules.jitter_multiple * jitter))
        last_events = float(self.events[row, starts[-1]:end].sum()) if ends[hi - 1] >= end else float(sizes[-1])
        usual = float(np.median(sizes[:-1]))
        return Schedule(interval, int(grace), int(hi - lo), int(starts[-1]), int(run_ends[-1]), last_events, usual)
