"""``volume.action_spike`` and ``volume.action_drop``: an agent x action's event rate against its seasonal baseline.

Both compare the recent 5-minute counts of each agent x action with what the seasonal baseline
(:mod:`agentwatch.checks.seasonal`) expects at this hour of this kind of day, scaled by a level factor that
follows steady growth, and accumulate the evidence with a Poisson CUSUM: a big stream fires within
minutes, a small one once enough events (or missing events) show the change. The drop check also
follows the other agents' traffic, so a holiday (everyone quieter) is not an agent that stopped.

A scheduled job (a nightly sweep, a weekly import: :mod:`agentwatch.checks.schedule`) is not judged by the
seasonal band, which fires whenever the job starts earlier or later than last week: the drop check fires when its
usual run did not begin within its usual interval plus a grace learnt from its own jitter, and the spike check
when a run is far larger than its usual runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import Field, field_validator

from agentwatch.checks.base import SAMPLE_IDS, Check, CheckOptions, Finding, Step, register, subject_key
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import BUCKET, EvalData
from agentwatch.checks.schedule import RunIndex, Schedule, ScheduleRules
from agentwatch.checks.seasonal import (
    SLOTS_PER_DAY,
    ActionSeries,
    Dispersion,
    action_series,
    local_weekdays,
    prefix_sums,
    seasonal_expectation,
    suffix_max,
    weekly_expectation,
)
from agentwatch.checks.stats import cusum_end, poisson_llr
from agentwatch.core.severity import Severity
from agentwatch.store import duck

SPIKE = "volume.action_spike"
DROP = "volume.action_drop"
# The level factor: median of the last 7 daily observed / expected ratios. It follows steady growth and
# ignores one odd day (a holiday, an outage). Each check applies it only where it makes it quieter: a spike
# against max(level, 1), a drop against min(level, 1), so a bad level can never raise an alarm.
LEVEL_DAYS = 7
LEVEL_BOUNDS = (0.67, 1.5)
MIN_LEVEL_DAY_EVENTS = 20.0  # a day with fewer expected events says nothing about the level
QUIET_FLOOR_SHARE = 0.1  # spikes: expect at least 10% of the week's mean rate, so a batch job that runs
#                           20 minutes late at night does not look like a 100x spike
RECENT_BUCKETS = 6  # a run still goes on while its last 30 minutes favour the change
PEER_BUCKETS = 12  # the other agents' traffic ratio is taken over the trailing hour of each bucket
MIN_PEER_EXPECTED = 15.0  # ... and needs this many expected events in that hour to mean anything
PEERS_SILENT = 0.05  # peers below 5% of their usual traffic are down, not on holiday
# Scheduled jobs are learnt from the runs of the last four weeks: a weekly job with a day of jitter has three.
SCHEDULE_LOOK_BACK_DAYS = 29
MIN_GRACE_BUCKETS = 6  # a scheduled run is never missed before 30 minutes past its due time
MAX_ACTIVE_SHARE = 0.15  # a series with events in more buckets than this is a stream, whatever its rhythm
MICROSECOND_BEFORE = timedelta(microseconds=1)  # sample ids are read in (since, until]: include the first bucket
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class VolumeOptions(CheckOptions):
    """Options both volume checks share (the baseline and the window)."""

    window_hours: float = Field(
        6, gt=0, le=24,
        description="How far back the CUSUM looks for the start of a change. 6 h lets a small stream (a few "
                    "events an hour) build enough evidence, and keeps each step a cheap slice.",
    )
    history_days: int = Field(
        14, ge=1, le=14,
        description="Days of history the seasonal baseline averages (the same 5-minute slot on each). 14 days "
                    "give two of each weekday, so a regular Monday-morning burst is expected, not flagged.",
    )
    same_weekday_weight: float = Field(
        3.0, ge=1,
        description="Weight of the same weekday in the baseline; other days of the same kind (weekday or "
                    "weekend) weigh 1 and the other kind 0. 3 makes weekly patterns (Monday mornings) dominate "
                    "while the other weekdays still steady small streams.",
    )
    timezone: str = Field(
        "UTC",
        description="The team's time zone: decides which buckets are a weekend. UTC unless your agents follow "
                    "another working week.",
    )
    threshold: float = Field(10, gt=0, description="CUSUM statistic needed to fire; each check says why its default.")
    kinds: dict[str, Literal["stream", "scheduled"]] = Field(
        default_factory=dict,
        description="Overrides the learnt kind of a series: `agent_id/action` (or `agent_id/*` for all its actions) "
                    "-> `stream` or `scheduled`. Left empty, each series is learnt from its own history, which is "
                    "right unless a job is too new (fewer than `schedule_min_runs` runs) or too irregular to learn.",
    )
    idle_gap_minutes: float = Field(
        120, gt=0,
        description="A scheduled job's run ends after this long without an event. Two hours joins the pauses of "
                    "a slow sweep into one run and still separates a nightly run from the next.",
    )
    schedule_min_runs: int = Field(
        3, ge=3,
        description="Runs a series needs in the four weeks before (plus a day) "
                    "before it is taken for a scheduled job: three runs give two intervals to compare, so a "
                    "weekly job is learnt once it has run three times.",
    )
    schedule_regularity: float = Field(
        0.35, gt=0, lt=1,
        description="An interval between run starts within this share of their median is regular: 0.35 takes a "
                    "nightly job whose start moves by up to 8 hours and a weekly one by two days.",
    )
    jitter_multiple: float = Field(
        1.5, ge=1,
        description="The grace a run may be late is this multiple of the largest deviation of a regular "
                    "interval seen: a job whose start moved by up to 3 h waits 4.5 h before it counts as missed.",
    )
    grace_share: float = Field(
        0.1, ge=0, lt=1,
        description="And never less than this share of the interval (2.4 h for a nightly job): a job learnt "
                    "from a few punctual runs still gets the slack an ordinary late start needs.",
    )

    @field_validator("kinds")
    @classmethod
    def _series_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            agent, slash, action = key.rpartition("/")
            if not (slash and agent and action):
                raise ValueError(f"kinds key {key!r} should be agent_id/action or agent_id/*, e.g. hygiene-agent/*")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}, e.g. Europe/Paris") from None
        return value


VolumeOptionsT = TypeVar("VolumeOptionsT", bound=VolumeOptions)


class SpikeOptions(VolumeOptions):
    threshold: float = Field(
        10, gt=0,
        description="CUSUM statistic (log-likelihood ratio) needed to fire. 10 means the counts are e^10 times "
                    "likelier under a spike than under the baseline: about one Poisson false alarm per series "
                    "per two months.",
    )
    spike_ratio: float = Field(
        5, gt=1,
        description="The rate the CUSUM tests for, as a multiple of the expected rate. Evidence only builds "
                    "above about half of it (2.5x for 5), so a busy morning at twice the usual rate, on top of "
                    "steady growth, stays quiet while a loop (10x) fires within minutes.",
    )
    min_excess_events: float = Field(
        20, ge=0,
        description="Events above the expectation the spike must add before it fires: a dozen extra emails is "
                    "not worth a page.",
    )
    critical_ratio: float = Field(
        10, gt=1, description="A spike this many times the expected rate is critical (a loop), else a warning.",
    )


class DropOptions(VolumeOptions):
    threshold: float = Field(
        10, gt=0,
        description="CUSUM statistic needed to fire. 10 makes a silence fire once about 11 events were expected "
                    "(P(0 | 11 expected) is 1 in 60,000): 80 clean streams over two weeks gave no false drop, and "
                    "a stream of 40 an hour is caught within 20 minutes.",
    )
    drop_ratio: float = Field(
        0.1, gt=0, lt=1,
        description="The rate the CUSUM tests for, as a share of the expected rate. 0.1 stays quiet on a slow "
                    "afternoon at half the usual rate and fires on an agent that (nearly) stopped.",
    )
    min_missing_events: float = Field(
        12, ge=0,
        description="Expected events that must be missing before it fires, so a quiet Sunday or night (little "
                    "expected) never pages.",
    )
    working_share: float = Field(
        0.5, ge=0,
        description="A drop fires only when the usual rate over it is at least this share of the stream's mean "
                    "rate over the last week: that is what working hours mean for this agent x action. 0.5 keeps "
                    "nights and quiet weekend hours out, while a weekday morning (or a busy Sunday) counts.",
    )
    peer_floor: float = Field(
        0.3, gt=0, le=1,
        description="The expectation follows the other agents' traffic over the trailing hour (a holiday lowers "
                    "everyone's), but never below this share, so an agent that stopped on a quiet day still fires. "
                    "Peers below 5% of their usual traffic count as an outage, not a holiday, and are ignored.",
    )


@dataclass
class VolumeModel:
    """The seasonal expectation of every agent x action over the run, shared by both checks."""

    series: ActionSeries
    weekdays: np.ndarray
    expected: np.ndarray  # NaN where there is no baseline yet
    weekly: np.ndarray  # the same weekday's slot in earlier weeks only (NaN where none)
    seen_prefix: np.ndarray  # prefix sums of events where the baseline is known
    expected_prefix: np.ndarray  # prefix sums of the expectation (0 where unknown)
    known_prefix: np.ndarray  # prefix counts of buckets with an expectation
    agent_index: np.ndarray  # row -> agent number, to sum per agent
    dispersion: Dispersion  # per row: variance / mean of counts around the expectation, learnt as time goes


def volume_model(data: EvalData, options: VolumeOptions) -> VolumeModel:
    def build() -> VolumeModel:
        series = action_series(data)
        weekdays = local_weekdays(series.origin, series.events.shape[1], options.timezone)
        expected = seasonal_expectation(series.events, weekdays, options.history_days, options.same_weekday_weight)
        known = ~np.isnan(expected)
        _, agent_index = np.unique(np.array(series.agents, dtype=object), return_inverse=True)
        spread = Dispersion(series.events, expected)
        weekly = weekly_expectation(series.events, options.history_days)
        return VolumeModel(series, weekdays, expected, weekly, prefix_sums(np.where(known, series.events, 0.0)),
                           prefix_sums(np.where(known, expected, 0.0)), prefix_sums(known.astype(float)),
                           agent_index.astype(np.int64), spread)

    key = f"volume_model:{options.history_days}:{options.same_weekday_weight}:{options.timezone}"
    return data.shared(key, build)


@dataclass
class Window:
    """The recent complete buckets of every row at one step."""

    start: int
    end: int  # one past the last complete bucket
    observed: np.ndarray  # rows x buckets, 0 where there is no baseline
    baseline: np.ndarray  # seasonal expectation, NaN where there is none yet
    level: np.ndarray  # per row
    week_mean: np.ndarray  # per row: mean expectation per bucket over the week before the window
    weekly: np.ndarray  # the same weekday's slot in earlier weeks, NaN where none


class VolumeCheck(Check[VolumeOptionsT]):
    """Shared machinery of the spike and drop checks (not registered itself)."""

    family: ClassVar[str] = "volume"
    history: timedelta = timedelta(days=22)  # with the default history_days of 14: see __init__

    def __init__(self, options: VolumeOptionsT, config: ChecksConfig) -> None:
        super().__init__(options, config)
        # The level factor and the week's mean look LEVEL_DAYS (7) back from the window, and each of those days'
        # expectation needs history_days before it: read all of it, so a live run learns what a backtest does.
        # A weekly job's schedule is learnt from the four weeks before (SCHEDULE_LOOK_BACK_DAYS).
        self.history = timedelta(days=max(options.history_days + LEVEL_DAYS + 1, SCHEDULE_LOOK_BACK_DAYS + 1),
                                 hours=options.window_hours)

    def prepare(self, data: EvalData) -> None:
        self.data = data
        self.model = volume_model(data, self.options)
        series = self.model.series
        self.subjects = [{"agent_id": a, "action": b} for a, b in zip(series.agents, series.actions, strict=True)]
        self.run_index = run_index(data, self.model, self.options)
        self.forced = {row: kind for row, s in enumerate(self.subjects)
                       if (kind := _kind_override(self.options.kinds, s["agent_id"], s["action"]))}
        self.schedules: dict[int, Schedule] = {}
        # An open incident of either check freezes the level factor at its start.
        self.freeze_keys = [[subject_key(name, s) for name in (SPIKE, DROP)] for s in self.subjects]
        self.levels: dict[int, np.ndarray] = {}

    def window(self, step: Step) -> Window | None:
        model = self.model
        series = model.series
        end = series.column_of(step.at)
        start = max(0, end - int(self.options.window_hours * 60 / 5))
        if series.size == 0 or end <= start:
            return None
        self.schedules = self.schedules_at(end)
        # The level factor moves slowly: compute it at the hour, once, and apart for rows whose incident froze it.
        hour = start - start % 12
        if hour not in self.levels:
            self.levels = {hour: self.level_at(np.arange(series.size), np.full(series.size, hour))}
        level = self.levels[hour].copy()
        for row, keys in enumerate(self.freeze_keys if step.open_since else ()):
            since = [step.open_since[k] for k in keys if k in step.open_since]
            if since:
                frozen = min(start, max(0, series.column_of(min(since))))
                level[row] = self.level_at(np.array([row]), np.array([frozen]))[0]
        baseline = model.expected[:, start:end]
        observed = np.where(np.isnan(baseline), 0.0, series.events[:, start:end])
        week_start = max(0, start - 7 * SLOTS_PER_DAY)
        week_known = np.maximum(model.known_prefix[:, start] - model.known_prefix[:, week_start], 1.0)
        week_mean = (model.expected_prefix[:, start] - model.expected_prefix[:, week_start]) / week_known
        # Quasi-Poisson: clustered events weigh less. Learnt from the buckets before the window.
        self.spread = model.dispersion.before(start)[:, None]
        return Window(start, end, observed, baseline, level, week_mean, model.weekly[:, start:end])

    def schedules_at(self, end: int) -> dict[int, Schedule]:
        """The rows that are scheduled jobs at bucket `end`, with their schedules."""
        found = {}
        for row in self.run_index.runs:
            kind = self.forced.get(row)
            if kind != "stream" and (schedule := self.run_index.schedule(row, end, kind == "scheduled")):
                found[row] = schedule
        return found

    def seasonal_rows(self, llr: np.ndarray) -> np.ndarray:
        """The evidence with the rows of scheduled jobs zeroed: the seasonal band does not judge them."""
        if self.schedules:
            llr[list(self.schedules)] = 0.0
        return llr

    def schedule_evidence(self, row: int, schedule: Schedule) -> dict:
        series = self.model.series
        return {"agents": [self.subjects[row]["agent_id"]], "kind": "scheduled",
                "interval_hours": round(schedule.interval * BUCKET / timedelta(hours=1), 2),
                "grace_minutes": round(schedule.grace * BUCKET / timedelta(minutes=1)), "runs_learnt": schedule.runs,
                "last_run_started_at": series.time_of(schedule.last_start).isoformat(),
                "last_run_events": int(schedule.last_events), "usual_run_events": round(schedule.usual_events, 1),
                "kind_source": "option kinds" if row in self.forced else "learnt"}

    def level_at(self, rows: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Per row: the median observed / expected ratio of the LEVEL_DAYS days before its end column."""
        model = self.model
        bounds = np.maximum(0, ends[:, None] - np.arange(LEVEL_DAYS + 1)[None, :] * SLOTS_PER_DAY)
        at = rows[:, None]
        seen = model.seen_prefix[at, bounds[:, :-1]] - model.seen_prefix[at, bounds[:, 1:]]
        usual = model.expected_prefix[at, bounds[:, :-1]] - model.expected_prefix[at, bounds[:, 1:]]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = np.where(usual >= MIN_LEVEL_DAY_EVENTS, seen / usual, np.nan)
        level = np.ones(len(rows))
        informed = ~np.isnan(ratios).all(axis=1)
        if informed.any():
            level[informed] = np.nanmedian(ratios[informed], axis=1)
        return level.clip(*LEVEL_BOUNDS)

    def runs(self, llr: np.ndarray) -> list[tuple[int, float, int]]:
        """(row, CUSUM statistic, first bucket of the run) of every row whose CUSUM reaches the threshold
        while the change still goes on: its last 30 minutes still favour it (a CUSUM that climbed high
        takes hours to fall back, and the incident should resolve soon after the loop or outage ends)."""
        threshold = self.options.threshold
        found = []
        for row in np.flatnonzero(suffix_max(llr) >= threshold):  # all rows at once, then the shared helper
            stat, start = cusum_end(llr[row])
            if stat >= threshold and llr[row, max(start, llr.shape[1] - RECENT_BUCKETS):].sum() >= 0:
                found.append((int(row), stat, start))
        return found

    def describe_time(self, window: Window, offset: int) -> tuple[datetime, str, str]:
        """The start of a run, its length in words and the local weekday name of the window's end."""
        column = window.start + offset
        started = self.model.series.time_of(column)
        minutes = (window.end - column) * 5
        length = f"{minutes} minutes" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"
        return started, length, DAY_NAMES[int(self.model.weekdays[window.end - 1]) - 1]

    def sample_ids(self, row: int, since: datetime, until: datetime, newest_first: bool) -> list[str]:
        """Up to 20 event ids of one agent x action in (since, until] (one small query per finding)."""
        order = "DESC" if newest_first else "ASC"
        # The run's view of only the days from `since`: the store-wide view opens every part of every day (40 ms).
        rows = duck.run(
            self.data.con,
            f"SELECT event_id FROM {self.data.view('actions', since)} WHERE agent_id = ? AND action = ? AND ts > ? "
            f"AND ts <= ? "
            f"ORDER BY ts {order} LIMIT {SAMPLE_IDS}",
            [self.model.series.agents[row], self.model.series.actions[row], since, until],
        )
        return [r[0] for r in rows]


@register
class ActionSpike(VolumeCheck[SpikeOptions]):
    """An agent x action runs far more often than usual for this hour and day (e.g. an agent stuck in a loop).

    A Poisson CUSUM tests the recent 5-minute counts against `spike_ratio` times the seasonal
    expectation (same slot on previous days, same weekday weighted most, scaled by a level factor that
    follows steady growth). It fires when the evidence reaches `threshold` and the spike has added at
    least `min_excess_events`; `started_at` is the start of the CUSUM run.

    A scheduled job (runs at roughly regular intervals with idle gaps between: a nightly sweep, a weekly import;
    learnt from its last four weeks, or set by `kinds`) is judged by its runs instead: it fires when the latest
    run has `spike_ratio` times the events of its usual run (the median of the earlier ones) and at least
    `min_excess_events` more. A run that starts hours earlier or later than last week is not a spike.
    """

    clears_when = (
        "Resolves when the agent's actions of this kind are back in their band: at least `clear_min_events` "
        "of them since it last fired, none firing it. An agent that stops acting (paused by the guard) keeps "
        "it open: its silence does not show the loop was fixed."
    )

    name: ClassVar[str] = SPIKE
    Options: ClassVar[type[CheckOptions]] = SpikeOptions
    options: SpikeOptions

    def evaluate(self, step: Step) -> list[Finding]:
        window = self.window(step)
        if window is None:
            return []
        opts = self.options
        lift = np.maximum(window.level, 1.0)[:, None]
        floor = QUIET_FLOOR_SHARE * window.week_mean[:, None] * lift
        # A rise the same weekday already showed in an earlier week is a weekly pattern, not a spike.
        usual_rate = np.where(np.isnan(window.baseline), np.nan, np.fmax(window.baseline, window.weekly))
        expected = np.maximum(usual_rate * lift, floor)  # NaN (no baseline) stays NaN
        known = ~np.isnan(expected)
        expected = np.where(known, expected, 0.0)
        llr = np.where(known, poisson_llr(window.observed, expected, opts.spike_ratio), 0.0) / self.spread
        findings = self.oversized_runs(step, window)
        for row, stat, offset in self.runs(self.seasonal_rows(llr)):
            seen = float(window.observed[row, offset:].sum())
            usual = float(expected[row, offset:].sum())
            # Counted in independent units: events that come in clusters (several writes per lead) are
            # worth less than their number; and the rise itself must be large, not just long.
            ratio = seen / max(usual, 0.1)
            if (seen - usual) / self.spread[row, 0] < opts.min_excess_events or ratio < (1 + opts.spike_ratio) / 2:
                continue
            started, length, day = self.describe_time(window, offset)
            subject = self.subjects[row]
            opening = step.started(self.name, subject) is None
            findings.append(Finding(
                check=self.name, subject=subject,
                severity=Severity.critical if ratio >= opts.critical_ratio else Severity.warning,
                summary=(f"{subject['agent_id']} ran {subject['action']} {seen:.0f} times in the {length} since "
                         f"{started:%H:%M} UTC, {ratio:.1f}x the {usual:.0f} expected on a {day} at this hour."),
                started_at=started, affected=round(seen - usual),
                evidence={
                    "agents": [subject["agent_id"]], "observed": int(seen), "expected": round(usual, 1),
                    "ratio": round(ratio, 2), "run_started_at": started.isoformat(), "cusum": round(stat, 2),
                    "threshold": opts.threshold, "spike_ratio": opts.spike_ratio,
                    "min_excess_events": opts.min_excess_events, "level_factor": round(float(lift[row, 0]), 3),
                    "dispersion": round(float(self.spread[row, 0]), 2),
                    "baseline": _baseline_text(opts),
                },
                sample_event_ids=self.sample_ids(row, started, step.at, newest_first=False) if opening else [],
            ))
        return findings

    def oversized_runs(self, step: Step, window: Window) -> list[Finding]:
        """Scheduled jobs whose latest run, recent, is `spike_ratio` times their usual run or more."""
        opts, findings = self.options, []
        for row, schedule in self.schedules.items():
            seen, usual = schedule.last_events, schedule.usual_events
            if schedule.last_end < window.start or seen < opts.spike_ratio * max(usual, 1.0) \
                    or seen - usual < opts.min_excess_events:
                continue
            subject, ratio = self.subjects[row], seen / max(usual, 1.0)
            started = self.model.series.time_of(schedule.last_start)
            every = _duration(schedule.interval * BUCKET)
            findings.append(Finding(
                check=self.name, subject=subject,
                severity=Severity.critical if ratio >= opts.critical_ratio else Severity.warning,
                summary=(f"{subject['agent_id']}'s {subject['action']}, a job that runs about every {every}, ran "
                         f"{seen:.0f} times in its run since {started:%H:%M} UTC, {ratio:.1f}x its usual run of "
                         f"{usual:.0f}."),
                started_at=started, affected=round(seen - usual),
                evidence={**self.schedule_evidence(row, schedule), "observed": int(seen), "expected": round(usual, 1),
                          "ratio": round(ratio, 2), "spike_ratio": opts.spike_ratio},
                sample_event_ids=self.sample_ids(row, started - MICROSECOND_BEFORE, step.at, newest_first=False)
                if step.started(self.name, subject) is None else [],
            ))
        return findings


@register
class ActionDrop(VolumeCheck[DropOptions]):
    """An agent x action runs far less than usual for this hour and day, down to silence (the agent stopped).

    A Poisson CUSUM tests the recent 5-minute counts against `drop_ratio` times the seasonal
    expectation. The expectation follows the other agents' traffic in the same window (a holiday lowers
    everyone's; floored at `peer_floor` so a platform-wide outage still fires), and at least
    `min_missing_events` must be missing, so a quiet Sunday or night (little expected) stays quiet.
    A stop (the rate at `drop_ratio` or below, or no event, where twice `min_missing_events` were
    expected) is critical; a partial drop is a warning.

    A scheduled job (see `volume.action_spike`) is judged as a cron monitor judges it: it fires when its next run
    has not begun by the last run's start plus its usual interval (the median between run starts) plus a grace
    learnt from its own jitter (`jitter_multiple` times the largest deviation of a regular interval, at least
    `grace_share` of the interval and 30 minutes). One missed run is a warning, two in a row critical. A run that
    starts late but within its grace is not a drop, and a job's runs are not peers of the streams' holiday rule.
    """

    clears_when = (
        "Resolves when traffic is back in its band: at least `clear_min_events` actions of this agent and "
        "kind since it last fired, none firing it. Continued silence is the drop itself and keeps it open."
    )

    name: ClassVar[str] = DROP
    Options: ClassVar[type[CheckOptions]] = DropOptions
    options: DropOptions

    def prepare(self, data: EvalData) -> None:
        super().prepare(data)
        agents = self.model.agent_index
        self.by_agent = np.zeros((agents.max() + 1 if agents.size else 0, agents.size))
        self.by_agent[agents, np.arange(agents.size)] = 1.0  # agents x rows: sums rows per agent

    def missed_runs(self, step: Step, window: Window) -> list[Finding]:
        """Scheduled jobs whose next run has not begun within its usual interval plus its grace."""
        findings, series = [], self.model.series
        for row, schedule in self.schedules.items():
            missed = schedule.missed(window.end)
            if not missed:
                continue
            subject = self.subjects[row]
            last, due = series.time_of(schedule.last_start), series.time_of(schedule.due_by)
            every, grace = _duration(schedule.interval * BUCKET), _duration(schedule.grace * BUCKET)
            runs = "its usual run" if missed == 1 else f"{missed} runs in a row"
            findings.append(Finding(
                check=self.name, subject=subject, severity=Severity.critical if missed > 1 else Severity.warning,
                summary=(f"{subject['agent_id']}'s {subject['action']}, a job that runs about every {every}, missed "
                         f"{runs}: the last began {last:%a %d %H:%M} UTC, the next was due by {due:%a %d %H:%M} UTC "
                         f"(with a grace of {grace} learnt from its own jitter), and none has begun since."),
                started_at=due, affected=round(schedule.usual_events * missed),
                evidence={**self.schedule_evidence(row, schedule), "missed_runs": missed, "due_by": due.isoformat()},
                sample_event_ids=self.sample_ids(row, last - MICROSECOND_BEFORE, step.at, newest_first=True)
                if step.started(self.name, subject) is None else [],
            ))
        return findings

    def peer_ratio(self, window: Window) -> np.ndarray:
        """Per row and bucket: observed / expected traffic of the other agents over the trailing hour, in
        [peer_floor, 1]. Per bucket, so a holiday that begins mid-window (at midnight somewhere) is followed."""
        model, agents = self.model, self.model.agent_index
        first = max(0, window.start - PEER_BUCKETS + 1)
        baseline = model.expected[:, first:window.end]
        if self.schedules:  # a job's runs say nothing of a holiday: only streams are peers
            baseline = baseline.copy()
            baseline[list(self.schedules)] = np.nan
        usual = self.by_agent @ np.nan_to_num(baseline)
        seen = self.by_agent @ np.where(np.isnan(baseline), 0.0, model.series.events[:, first:window.end])
        other_usual = _trailing_sum(usual.sum(axis=0)[None, :] - usual[agents], PEER_BUCKETS)
        other_seen = _trailing_sum(seen.sum(axis=0)[None, :] - seen[agents], PEER_BUCKETS)
        skip = window.start - first  # the buckets before the window only fed the trailing sums
        other_usual, other_seen = other_usual[:, skip:], other_seen[:, skip:]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(other_usual >= MIN_PEER_EXPECTED, other_seen / other_usual, 1.0)
        # A holiday makes everyone quieter, never silent: silent peers mean an outage, which explains nothing.
        return np.where(ratio < PEERS_SILENT, 1.0, ratio.clip(self.options.peer_floor, 1.0))

    def evaluate(self, step: Step) -> list[Finding]:
        window = self.window(step)
        if window is None:
            return []
        opts = self.options
        peers = self.peer_ratio(window)
        expected = window.baseline * np.minimum(window.level, 1.0)[:, None] * peers
        known = ~np.isnan(expected)
        expected = np.where(known, expected, 0.0)
        llr = np.where(known, poisson_llr(window.observed, expected, opts.drop_ratio), 0.0) / self.spread
        findings = self.missed_runs(step, window)
        for row, stat, offset in self.runs(self.seasonal_rows(llr)):
            seen = float(window.observed[row, offset:].sum())
            usual = float(expected[row, offset:].sum())
            if (usual - seen) / self.spread[row, 0] < opts.min_missing_events:
                continue  # counted in independent units, as for spikes
            working_rate = float(np.nan_to_num(window.baseline[row, offset:]).mean())
            if working_rate < opts.working_share * window.week_mean[row]:
                continue  # a night or a quiet weekend for this stream
            started, length, day = self.describe_time(window, offset)
            subject = self.subjects[row]
            # Stopped: not one event (or at most drop_ratio of them) where twice min_missing_events were expected,
            # which a stream at a third of its rate rarely shows (e^-6). A partial drop is a warning.
            active = np.flatnonzero(window.observed[row, offset:] > 0)
            quiet_from = offset + (int(active[-1]) + 1 if active.size else 0)
            quiet_expected = float(expected[row, quiet_from:].sum())
            silent = quiet_expected >= 2 * opts.min_missing_events
            stopped = silent or (seen <= opts.drop_ratio * usual and usual >= 2 * opts.min_missing_events)
            who = f"{subject['agent_id']}'s {subject['action']}"
            if silent:
                since, quiet_length, _ = self.describe_time(window, quiet_from)
                summary = (f"{who} went silent at {since:%H:%M} UTC: no event in {quiet_length} where about "
                           f"{quiet_expected:.0f} were expected on a {day} at this hour.")
            else:
                summary = (f"{who} {'nearly stopped: it ' if stopped else ''}fell to {seen:.0f} events in the "
                           f"{length} since {started:%H:%M} UTC, "
                           f"{seen / usual:.0%} of the {usual:.0f} expected on a {day} at this hour.")
            active = np.flatnonzero(self.model.series.events[row, :window.end] > 0)
            last_bucket = self.model.series.time_of(int(active[-1])).isoformat() if active.size else None
            opening = step.started(self.name, subject) is None
            findings.append(Finding(
                check=self.name, subject=subject, severity=Severity.critical if stopped else Severity.warning,
                summary=summary, started_at=started, affected=round(usual - seen),
                evidence={
                    "agents": [subject["agent_id"]], "observed": int(seen), "expected": round(usual, 1),
                    "ratio": round(seen / usual, 3), "run_started_at": started.isoformat(), "cusum": round(stat, 2),
                    "threshold": opts.threshold, "drop_ratio": opts.drop_ratio,
                    "min_missing_events": opts.min_missing_events,
                    "level_factor": round(min(float(window.level[row]), 1.0), 3),
                    "peer_ratio": round(float(peers[row, offset:].mean()), 3), "last_active_bucket": last_bucket,
                    "dispersion": round(float(self.spread[row, 0]), 2),
                    "baseline": _baseline_text(opts),
                },
                # The last events before (or during) the drop: where to look for what stopped it.
                sample_event_ids=self.sample_ids(row, step.at - timedelta(days=1), step.at, newest_first=True)
                if opening else [],
            ))
        return findings


def run_index(data: EvalData, model: VolumeModel, options: VolumeOptions) -> RunIndex:
    """The runs of every row that may be a scheduled job, shared by both checks."""
    rules = ScheduleRules(
        idle_gap=round(timedelta(minutes=options.idle_gap_minutes) / BUCKET),
        look_back=SCHEDULE_LOOK_BACK_DAYS * SLOTS_PER_DAY, min_runs=options.schedule_min_runs,
        regularity=options.schedule_regularity, jitter_multiple=options.jitter_multiple,
        grace_share=options.grace_share, min_grace=MIN_GRACE_BUCKETS, max_active_share=MAX_ACTIVE_SHARE)
    return data.shared(f"volume_runs:{rules}", lambda: RunIndex(model.series.events, rules))


def _kind_override(kinds: Mapping[str, str], agent_id: str, action: str) -> str | None:
    return kinds.get(f"{agent_id}/{action}") or kinds.get(f"{agent_id}/*")


def _duration(span: timedelta) -> str:
    hours = span / timedelta(hours=1)
    return f"{hours / 24:.3g} days" if hours >= 48 else f"{hours:.3g} h"


def _trailing_sum(matrix: np.ndarray, width: int) -> np.ndarray:
    """Row-wise sum of each column and the width - 1 before it (fewer at the start)."""
    sums = prefix_sums(matrix)
    columns = np.arange(1, matrix.shape[1] + 1)
    return sums[:, columns] - sums[:, np.maximum(0, columns - width)]


def _baseline_text(opts: VolumeOptions) -> str:
    return (f"same 5-minute slot (+-10 min) over the previous {opts.history_days} days, same weekday weighted "
            f"{opts.same_weekday_weight:g}x, other days of the same kind (weekday or weekend) 1x, "
            f"times the level factor")
