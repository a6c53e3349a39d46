"""approval.queue_backlog, approval.latency, approval.rubber_stamp: the human approval gate in front of actions.

An agent reports an action that needs a person's approval first with status ``pending_approval`` (the request);
the person's answer is a later event of the same agent, action and record that carries ``approval`` (approved)
or has status ``skipped`` (rejected or withdrawn). Two aggregates kept in the home hold the requests and the events
that may answer one (narrow rows); :func:`approval_requests` pairs each request with the first answer after it in
Polars, once per run for the three checks, which keep the pairs as NumPy arrays per subject; ``evaluate`` only
slices them. A request is waiting at a time until its answer's event time (what the data shows then), so no step
looks ahead. Incidents' sample events are the requests.

Approvers work office hours: a request made on Friday evening is answered on Monday morning. Waits and
latencies are therefore counted in the approvers' working hours (:class:`WorkingClock`), the hours of the week in
which the gate's requests were answered over the last weeks (learnt, so no time zone or roster is configured),
and the queue's size is compared with its size at the same hour of earlier weeks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from agentwatch.checks.activity import Activity
from agentwatch.checks.base import REGISTRY, SAMPLE_IDS, Check, CheckOptions, Finding, Step, register
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import MICROSECOND, EvalData, from_micros, to_micros
from agentwatch.checks.options import options_for
from agentwatch.core.severity import Severity
from agentwatch.store.rollups import Rollup, Span

# How long a request usually waits at most (made on Friday evening, answered on Monday): requests are read from this
# long before the first answer a check judges, so each is paired (an answer whose request was not read is left out),
# and an earlier week's queue is known once the subject's requests go back this long before it.
REQUEST_REACH = timedelta(days=3)
NEVER = np.iinfo(np.int64).max  # the answer time of a request not answered (yet)
# The usual queue at the same hour of an earlier week is its largest size within this much of that time, sampled
# every quarter hour: a queue is a step function, and one point would miss a request answered a minute earlier.
SAME_HOUR_US = np.arange(-30, 31, 15) * (timedelta(minutes=1) // MICROSECOND)


# --- reading the requests and their answers ---------------------------------------------------------------

# The record an answer must match: agent, action and resource, as one 64-bit number (part of an MD5, the same in any
# engine and version) so the answers kept for three weeks stay small.
RECORD = "(md5_number(concat_ws(chr(31), agent_id, action, resource_type, resource_id)) >> 64)::UBIGINT"


def _requests_select(src: Mapping[str, str], span: Span) -> str:
    """event_id, ts, agent_id, action, record, external: every ``pending_approval`` event."""
    return (f"SELECT event_id, ts, agent_id, action, {RECORD} AS record, coalesce(external, false) AS external "
            f"FROM {src['actions']} WHERE {span.condition()} AND status = 'pending_approval'")


def _answers_select(src: Mapping[str, str], span: Span) -> str:
    """ts, record, approved_by, approved_at, external: every event that may answer a request (approved or skipped)."""
    return (f"SELECT ts, {RECORD} AS record, approved_by, approved_at, coalesce(external, false) AS external "
            f"FROM {src['actions']} WHERE {span.condition()} "
            f"AND (status = 'skipped' OR (approved_by IS NOT NULL AND status <> 'pending_approval'))")


# Kept in the home per day like the other checks' aggregates: read from the events, the pairing query cost 5.7 s over
# the 14 days of a 10M-event store like the benchmark's (the string columns of every row group), where serve has one
# second a minute; from the kept rows, 0.05 s.
APPROVAL_REQUESTS = Rollup("approval_requests-v1", "actions", MICROSECOND, "ts", _requests_select)
APPROVAL_ANSWERS = Rollup("approval_answers-v1", "actions", MICROSECOND, "ts", _answers_select)
CHECK_NAMES = ("approval.queue_backlog", "approval.latency", "approval.rubber_stamp")


def approval_requests(data: EvalData) -> pl.DataFrame:
    """agent_id, action, request_id, requested_at, external, answered_at, approved_by, approved_at: each request with
    the first answer after it of the same agent, action and record (nulls while unanswered), in request order. A
    re-sent request (a second ``pending_approval`` before any answer) is the same request. Read once per run from
    the earliest time any of the three checks needs, so they share it and serve holds one answer of each rollup."""

    def build() -> pl.DataFrame:
        since = data.look_back_from - approval_history(data.config)
        requests = data.rollup(APPROVAL_REQUESTS, since=since).sort("ts", "event_id")
        answers = (data.rollup(APPROVAL_ANSWERS, since=since)
                   .join(requests.select("record").unique(), on="record", how="semi")
                   .select("ts", "record", pl.col("ts").alias("answered_at"), "approved_by", "approved_at",
                           pl.col("external").alias("answer_external"))
                   .sort("ts"))
        paired = requests.join_asof(answers, on="ts", by="record", strategy="forward", check_sortedness=False)
        paired = paired.sort("record", "ts", "event_id").unique(["record", "answered_at"], keep="first")
        return paired.select(
            "agent_id", "action", pl.col("event_id").alias("request_id"), pl.col("ts").alias("requested_at"),
            (pl.col("external") | pl.col("answer_external").fill_null(False)).alias("external"),
            "answered_at", "approved_by", "approved_at",
        ).sort("requested_at", "request_id")

    return data.shared("approval.requests", build)


def approval_history(config: ChecksConfig) -> timedelta:
    """The longest history the enabled approval checks need."""
    needs = [REGISTRY[name](options, config).history for name in CHECK_NAMES
             if (options := options_for(config, name)).enabled]
    return max(needs, default=timedelta(0))


def _micros(column: pl.Series) -> np.ndarray:
    """A timestamp column as microseconds since the epoch, NEVER where it is null."""
    return column.dt.epoch("us").fill_null(NEVER).to_numpy().astype(np.int64)


# --- working hours ----------------------------------------------------------------------------------------

HOUR_US = timedelta(hours=1) // MICROSECOND
WEEK_HOURS = 168
MONDAY = 96  # hours from the epoch (a Thursday) to Monday 1970-01-05 00:00 UTC: hour 0 of every week


def hour_of_week(micros: np.ndarray) -> np.ndarray:
    """The hour of the week (0 = Monday 00:00 UTC .. 167) of each time, in microseconds since the epoch."""
    return (micros // HOUR_US - MONDAY) % WEEK_HOURS


class WorkingClock:
    """Working seconds elapsed since a fixed Monday, counting only the hours of the week marked as working: the
    working time between two instants is the difference."""

    def __init__(self, working: np.ndarray) -> None:
        self.working = working  # bool per hour of the week
        self.before = np.concatenate([[0], np.cumsum(working)])  # working hours before each hour of the week

    def seconds(self, micros: np.ndarray) -> np.ndarray:
        hours = micros // HOUR_US
        weeks, hour = np.divmod(hours - MONDAY, WEEK_HOURS)
        into_hour = np.where(self.working[hour], (micros - hours * HOUR_US) / 1e6, 0.0)
        return (weeks * self.before[-1] + self.before[hour]) * 3600.0 + into_hour

    def at(self, micros: int) -> float:
        return float(self.seconds(np.array([micros]))[0])


@dataclass(frozen=True)
class Answers:
    """When one subject's requests were answered: the answers' event times (sorted) and the hour of the week each
    was given in (``approved_at``; a skip's own time)."""

    times: np.ndarray
    hours: np.ndarray

    @classmethod
    def of(cls, requests: pl.DataFrame) -> Answers:
        answered = requests.filter(pl.col("answered_at").is_not_null()).sort("answered_at")
        given = pl.col("approved_at").fill_null(pl.col("answered_at"))
        return cls(times=_micros(answered["answered_at"]), hours=hour_of_week(_micros(answered.select(given)[:, 0])))

    def since(self, since: datetime, until: datetime) -> int:
        """How many answers arrived in (since, until]."""
        lo, hi = np.searchsorted(self.times, [to_micros(since), to_micros(until)], side="right")
        return int(max(hi - lo, 0))

    def clock(self, at: int, options: WorkingHoursOptions) -> WorkingClock:
        """The approvers' working hours as the answers before `at` show them (see WorkingHoursOptions)."""
        lo, hi = np.searchsorted(self.times, [at - int(options.learn_weeks * WEEK_HOURS * HOUR_US), at], side="right")
        learnt = np.bincount(self.hours[lo:hi], minlength=WEEK_HOURS) >= options.min_answers_per_hour
        # A quiet hour or two between working hours (lunch, a slow afternoon) is working time too; a night is not.
        before = np.roll(learnt, 1) | np.roll(learnt, 2)
        after = np.roll(learnt, -1) | np.roll(learnt, -2)
        return WorkingClock(learnt | (before & after))


class WorkingHoursOptions(CheckOptions):
    """How the approvers' working hours are learnt: waits and latencies count those hours only."""

    learn_weeks: float = Field(
        2, gt=0, description="The approvers' working hours are the hours of the week (UTC) in which the subject's "
        "requests were answered over this many weeks before the evaluation: two weeks see every hour of the week "
        "twice, and follow a team that starts earlier or covers weekends, in whatever time zone, with no setting."
    )
    min_answers_per_hour: int = Field(
        2, ge=1, description="An hour of the week is working time once at least this many answers fell in it (and so "
        "is a gap of up to two hours between such hours, a lunch or a quiet hour): one approval sent from a phone "
        "at 3 a.m. does not make the night working time (its queue would count as waiting); two in the same hour "
        "is someone on duty."
    )


# --- approval.queue_backlog -------------------------------------------------------------------------------


class BacklogOptions(WorkingHoursOptions):
    every_minutes: float | None = Field(
        15, gt=0, description="Evaluate once per this many minutes (slots of the clock), the last findings standing "
        "in between: waits are measured in hours, so a quarter of an hour adds little to the delay while `serve` "
        "prepares the check a fifteenth as often."
    )
    clear_min_events: int = Field(
        5, ge=1, description="Resolve only once at least this many requests of the subject were answered since it "
        "last fired, none leaving it firing: approvers answering five in a row are back, and an approval gate sees "
        "fewer events than an agent's other actions."
    )
    max_wait_minutes: float = Field(
        240, gt=0, description="A request waiting longer than this many minutes of the approvers' working hours is "
        "overdue: half a working day, far beyond the minutes to an hour approvers usually take, while the night and "
        "the weekend never count."
    )
    expire_hours: float = Field(
        24, gt=0, description="A request waiting longer than this many working hours (two to three working days) is "
        "expired: what the agent wanted to do has gone stale. Expired requests of an action that reaches outside make "
        "the incident critical."
    )
    min_overdue: int = Field(
        3, ge=1, description="Fire when at least this many requests are overdue at once: one slow answer (a tricky "
        "request, an approver in a meeting) is normal, three waiting together is a gate that stopped."
    )
    queue_ratio: float = Field(
        3, gt=1, description="Also fire when the requests waiting are at least this multiple of the usual queue at "
        "the same hour of the week, so a queue filling faster than approvers can answer fires before its requests "
        "are overdue; the Monday-morning pile of the weekend's requests is usual, not growth."
    )
    min_queue_excess: int = Field(
        10, ge=1, description="... and at least this many more than usual: a queue of 4 against a usual 1 is a busy "
        "hour, not a backlog."
    )
    baseline_weeks: int = Field(
        2, ge=1, le=4, description="The usual queue is the largest at the same hour (within half an hour) of this "
        "many earlier weeks: two weeks see the weekly rhythm twice and read three weeks of requests in all."
    )
    forget_days: float = Field(
        7, gt=0, description="A request unanswered for this many days (wall clock) has been given up on by whoever "
        "asked: it leaves the queue, so a request nobody will ever answer does not hold an incident open forever."
    )


@dataclass(frozen=True)
class Queue:
    """One agent x action's requests, in request order, and when its requests were answered."""

    requested: np.ndarray  # microseconds since the epoch
    answered: np.ndarray  # the answer's event time, NEVER while unanswered
    ids: pl.Series
    answers: Answers
    external: bool  # the action reaches outside (a request or an answer said so)


@register
class QueueBacklog(Check[BacklogOptions]):
    """Approval requests wait with no answer: the approval gate backed up.

    For each agent x action, the requests waiting at the evaluation time (made, not yet answered, not older than
    ``forget_days``) are counted. It fires when at least ``min_overdue`` of them have waited longer than
    ``max_wait_minutes`` of the approvers' working hours, or when the queue is at least ``queue_ratio`` times, and
    ``min_queue_excess`` more than, its usual size: the largest it was at the same hour of the week over the last
    ``baseline_weeks`` weeks (a week counts once the subject's requests go back three days before it, so that
    week's weekend queue is whole; before that, growth is not judged). The working hours are learnt from when the
    subject's requests were answered (``learn_weeks``, ``min_answers_per_hour``), so the queue that builds
    overnight and over the weekend, answered in the morning, is not a backlog, in any time zone; neither is one
    slow answer. A new gate, with no answers yet, has no working hours and is not judged on waits. Requests
    waiting longer than ``expire_hours`` of working time are reported as expired; the incident is critical when an
    expired request is of an action that reaches outside (the request or an answer of the agent x action has
    ``external: true``), a warning otherwise.
    """

    clears_when = (
        "Resolves when approvers answer the agent x action's requests again: at least `clear_min_events` requests "
        "answered (approved or skipped) since it last fired, the queue no longer overdue. No answers keep it open, "
        "even once the waiting requests are forgotten."
    )

    name: ClassVar[str] = "approval.queue_backlog"
    family: ClassVar[str] = "approval"
    Options: ClassVar[type[CheckOptions]] = BacklogOptions
    history: timedelta = timedelta(days=21)  # forget_days plus baseline_weeks with the defaults: see __init__

    def __init__(self, options: BacklogOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        self.history = max(timedelta(days=options.forget_days + 7 * options.baseline_weeks),
                           timedelta(weeks=options.learn_weeks))
        self.queues: dict[tuple[str, str], Queue] = {}

    def prepare(self, data: EvalData) -> None:
        self.queues = {}  # afresh: the scheduler may reuse this object
        rows = approval_requests(data)
        for (agent, action), part in rows.partition_by("agent_id", "action", as_dict=True, maintain_order=True).items():
            self.queues[(str(agent), str(action))] = Queue(
                requested=_micros(part["requested_at"]), answered=_micros(part["answered_at"]), ids=part["request_id"],
                answers=Answers.of(part), external=bool(part["external"].any()))

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """Requests of the agent x action answered since: each one is an approver at work."""
        queue = self.queues.get((subject["agent_id"], subject["action"]))
        what = f"answered approval requests of {subject['action']} by {subject['agent_id']}"
        return (queue.answers.since(since, step.at) if queue else 0), what

    def evaluate(self, step: Step) -> list[Finding]:
        opts = self.options
        at = to_micros(step.at)
        forget = int(timedelta(days=opts.forget_days) // MICROSECOND)
        findings = []
        for (agent, action), queue in sorted(self.queues.items()):
            lo, hi = np.searchsorted(queue.requested, [at - forget, at], side="right")
            waiting = lo + np.flatnonzero(queue.answered[lo:hi] > at)
            if waiting.size == 0:
                continue
            clock = queue.answers.clock(at, opts)
            wait = clock.at(at) - clock.seconds(queue.requested[waiting])
            overdue = waiting[wait > opts.max_wait_minutes * 60]
            expired = waiting[wait > opts.expire_hours * 3600]
            usual = self._usual(queue, at, forget)
            grown = usual is not None and waiting.size >= max(opts.queue_ratio * usual, usual + opts.min_queue_excess)
            if overdue.size < opts.min_overdue and not grown:
                continue
            findings.append(self._finding(agent, action, queue, waiting, overdue, expired, usual, float(wait.max())))
        return findings

    def _usual(self, queue: Queue, at: int, forget: int) -> int | None:
        """The largest queue within half an hour of the same time in each earlier week whose queue is known: the
        subject's requests go back REQUEST_REACH before it, a weekend's queue (None without any such week)."""
        weeks = np.arange(1, self.options.baseline_weeks + 1) * WEEK_HOURS * HOUR_US
        weeks = weeks[at - weeks - REQUEST_REACH // MICROSECOND >= queue.requested[0]]
        if weeks.size == 0:
            return None
        times = ((at - weeks)[:, None] + SAME_HOUR_US[None, :]).ravel()
        lo, hi = np.searchsorted(queue.requested, [times.min() - forget, times.max()], side="right")
        requested, answered = queue.requested[lo:hi, None], queue.answered[lo:hi, None]
        waiting = (requested <= times) & (requested > times - forget) & (answered > times)
        return int(waiting.sum(axis=0).max())

    def _finding(self, agent: str, action: str, queue: Queue, waiting: np.ndarray, overdue: np.ndarray,
                 expired: np.ndarray, usual: int | None, longest: float) -> Finding:
        opts = self.options
        late = overdue if overdue.size else waiting
        summary = f"{waiting.size} {action} requests by {agent} wait for approval"
        if usual is not None:
            summary += f" (at most {usual} at this hour of the week usually)"
        if overdue.size:
            summary += f", {overdue.size} of them longer than {_duration(opts.max_wait_minutes * 60)} of working time"
        if expired.size:
            summary += f", {expired.size} expired (past {opts.expire_hours:g} working hours)"
        summary += f"; the oldest since {from_micros(queue.requested[late[0]]):%a %Y-%m-%d %H:%M} UTC."
        critical = expired.size > 0 and queue.external
        return Finding(
            check=self.name, subject={"agent_id": agent, "action": action},
            severity=Severity.critical if critical else Severity.warning, summary=summary,
            started_at=from_micros(queue.requested[late[0]]), affected=int(late.size),
            evidence={
                "agents": [agent], "waiting": int(waiting.size), "overdue": int(overdue.size),
                "expired": int(expired.size), "usual_waiting_same_hour": usual,
                "longest_wait_working_hours": round(longest / 3600, 2), "max_wait_minutes": opts.max_wait_minutes,
                "expire_hours": opts.expire_hours, "min_overdue": opts.min_overdue, "external": queue.external,
            },
            sample_event_ids=[str(queue.ids[int(i)]) for i in late[:SAMPLE_IDS]],
        )


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


# --- the approvals: requests answered with an approval ------------------------------------------------------


@dataclass(frozen=True)
class Approvals:
    """One subject's approvals in order of their answers' event times."""

    answered: np.ndarray  # the answers' event times, microseconds since the epoch
    requested: np.ndarray
    approved: np.ndarray  # approved_at
    ids: pl.Series  # the requests (the samples: an answer's own event id is not kept)
    agents: pl.Series  # the agent whose request it was

    @classmethod
    def of(cls, frame: pl.DataFrame) -> Approvals:
        return cls(answered=_micros(frame["answered_at"]), requested=_micros(frame["requested_at"]),
                   approved=_micros(frame["approved_at"]), ids=frame["request_id"], agents=frame["agent_id"])

    def recent(self, at: int, hours: float, last: int) -> slice:
        """The last `last` approvals answered in the `hours` before `at`."""
        lo, hi = np.searchsorted(self.answered, [at - int(hours * HOUR_US), at], side="right")
        return slice(int(max(lo, hi - last)), int(hi))

    def since(self, since: datetime, until: datetime) -> int:
        """How many approvals arrived in (since, until]."""
        lo, hi = np.searchsorted(self.answered, [to_micros(since), to_micros(until)], side="right")
        return int(max(hi - lo, 0))


def approved(rows: pl.DataFrame) -> pl.DataFrame:
    """The requests answered with an approval given after them, in answer order. An approval dated before the
    request it answers (clock skew, an approval reused) says nothing of how long the approver took."""
    return (rows.filter(pl.col("approved_by").is_not_null() & (pl.col("approved_at") >= pl.col("requested_at")))
            .sort("answered_at", "request_id"))


# --- approval.latency -------------------------------------------------------------------------------------


class LatencyOptions(WorkingHoursOptions):
    every_minutes: float | None = Field(
        30, gt=0, description="Evaluate once per this many minutes (slots of the clock), the last findings standing "
        "in between: the median moves only as approvals come in, a few an hour, so half an hour adds little to a "
        "delay of hours."
    )
    recent_hours: float = Field(
        24, gt=0, description="Judge the approvals answered in this many hours before the evaluation (the last "
        "`recent_approvals` of them): a day, so a slow morning is compared as soon as it is answered."
    )
    recent_approvals: int = Field(
        12, ge=1, description="... at most this many, the latest: twelve make a median that a few slow answers do "
        "not move, yet a real rise shows within about seven approvals."
    )
    min_recent: int = Field(
        6, ge=1, description="Judge only with at least this many recent approvals: fewer make a median of chance."
    )
    baseline_days: float = Field(
        7, gt=0, description="The usual latency is the median over the approvals answered in this many days before "
        "the recent window: a week holds every weekday."
    )
    min_baseline: int = Field(
        20, ge=1, description="Judge only with at least this many approvals in the baseline, so a new gate is "
        "learnt before it is judged."
    )
    ratio: float = Field(
        3, gt=1, description="Fire when the recent median latency is at least this multiple of the usual one: "
        "approvals taking three times as long is a gate slowing down, not a busy day."
    )
    min_increase_minutes: float = Field(
        30, gt=0, description="... and at least this many minutes of working time longer: a gate going from 20 "
        "seconds to 2 minutes is still fast, and does not page."
    )


@dataclass(frozen=True)
class Gate:
    """One agent x action's approvals, and when its requests were answered (its approvers' working hours)."""

    approvals: Approvals
    answers: Answers


@register
class ApprovalLatency(Check[LatencyOptions]):
    """The time to approval of an agent x action's requests rises against its usual level.

    The latency of an approval is ``approved_at`` minus the request's time (the first answer after the
    request, same agent, action and record), counted in the approvers' working hours, learnt from when the
    subject's requests were answered (``learn_weeks``, ``min_answers_per_hour``): a request made on Friday
    evening and approved on Monday an hour into the working day took an hour, not three days. The median over
    the recent approvals (the last ``recent_approvals`` answered within ``recent_hours``) is compared with the
    median over the ``baseline_days`` before them (frozen while an incident is open): it fires when the recent
    median is at least ``ratio`` times the usual and ``min_increase_minutes`` longer. A few slow answers do not
    move a median, and the weekend adds no working time. Requests never answered are
    ``approval.queue_backlog``'s. A warning.
    """

    clears_when = (
        "Resolves when the agent x action's newer requests are approved as fast as usual again: at least "
        "`clear_min_events` approvals since it last fired, the recent median back under the threshold. No "
        "approvals keep it open."
    )

    name: ClassVar[str] = "approval.latency"
    family: ClassVar[str] = "approval"
    Options: ClassVar[type[CheckOptions]] = LatencyOptions
    history: timedelta = timedelta(days=14)  # the longer of learn_weeks and the baseline with the recent window and
    #                                          REQUEST_REACH (11 days), with the defaults: see __init__

    def __init__(self, options: LatencyOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        self.history = max(timedelta(days=options.baseline_days, hours=options.recent_hours) + REQUEST_REACH,
                           timedelta(weeks=options.learn_weeks))
        self.gates: dict[tuple[str, str], Gate] = {}

    def prepare(self, data: EvalData) -> None:
        self.gates = {}
        rows = approval_requests(data)
        for (agent, action), part in rows.partition_by("agent_id", "action", as_dict=True, maintain_order=True).items():
            self.gates[(str(agent), str(action))] = Gate(Approvals.of(approved(part)), Answers.of(part))

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """The agent x action's approvals since: each is a latency judged again."""
        gate = self.gates.get((subject["agent_id"], subject["action"]))
        return (gate.approvals.since(since, step.at) if gate else 0), \
            f"approvals of {subject['action']} requests by {subject['agent_id']}"

    def evaluate(self, step: Step) -> list[Finding]:
        opts = self.options
        at = to_micros(step.at)
        findings = []
        for (agent, action), gate in sorted(self.gates.items()):
            approvals = gate.approvals
            recent = approvals.recent(at, opts.recent_hours, opts.recent_approvals)
            if recent.stop - recent.start < opts.min_recent:
                continue
            subject = {"agent_id": agent, "action": action}
            started = step.started(self.name, subject)
            base_end = min(at, to_micros(started) if started else at) - int(opts.recent_hours * HOUR_US)
            base = slice(*(int(i) for i in np.searchsorted(
                approvals.answered, [base_end - int(opts.baseline_days * 24 * HOUR_US), base_end], side="right")))
            if base.stop - base.start < opts.min_baseline:
                continue
            clock = gate.answers.clock(at, opts)
            usual = float(np.median(_working(clock, approvals, base)))
            latency = _working(clock, approvals, recent)
            now = float(np.median(latency))
            if now < opts.ratio * usual or now - usual < opts.min_increase_minutes * 60:
                continue
            findings.append(self._finding(subject, approvals, latency, recent, now, usual, base.stop - base.start))
        return findings

    def _finding(self, subject: dict[str, str], approvals: Approvals, latency: np.ndarray, recent: slice, now: float,
                 usual: float, baseline: int) -> Finding:
        """`latency`: the working seconds of the recent approvals."""
        opts = self.options
        slow_level = max(opts.ratio * usual, usual + opts.min_increase_minutes * 60)
        indexes = np.arange(recent.start, recent.stop)
        slow = indexes[latency >= slow_level]
        first = slow[np.argmin(approvals.requested[slow])]
        agent, action = subject["agent_id"], subject["action"]
        return Finding(
            check=self.name, subject=subject, severity=Severity.warning,
            summary=f"Approving {agent}'s {action} requests now takes {_duration(now)} of working time (median of "
                    f"the last {indexes.size}), against a usual {_duration(usual)}; {slow.size} took over "
                    f"{_duration(slow_level)}.",
            started_at=from_micros(approvals.requested[first]), affected=int(slow.size),
            evidence={
                "agents": [agent], "recent_approvals": int(indexes.size), "slow_approvals": int(slow.size),
                "median_working_minutes": round(now / 60, 1), "usual_median_working_minutes": round(usual / 60, 1),
                "baseline_approvals": baseline, "ratio": opts.ratio, "min_increase_minutes": opts.min_increase_minutes,
            },
            sample_event_ids=[str(approvals.ids[int(i)]) for i in slow[:SAMPLE_IDS]],
        )


def _working(clock: WorkingClock, approvals: Approvals, rows: slice) -> np.ndarray:
    """The working seconds from request to approval of the approvals in `rows`."""
    return clock.seconds(approvals.approved[rows]) - clock.seconds(approvals.requested[rows])


# --- approval.rubber_stamp --------------------------------------------------------------------------------


class RubberStampOptions(CheckOptions):
    every_minutes: float | None = Field(
        30, gt=0, description="Evaluate once per this many minutes (slots of the clock), the last findings standing "
        "in between: the share moves only as approvals come in, a few an hour."
    )
    min_review_seconds: float = Field(
        10, gt=0, description="An approval given less than this many seconds after the request is faster than a "
        "person can read what they approve: ten seconds barely covers opening the request."
    )
    recent_hours: float = Field(
        72, gt=0, description="Judge the approver's approvals answered in this many hours before the evaluation (the "
        "last `recent_approvals` of them): three days, so Monday morning still sees Friday's."
    )
    recent_approvals: int = Field(
        20, ge=1, description="... at most this many, the latest: twenty show a habit, and a new one within about "
        "ten approvals."
    )
    min_approvals: int = Field(
        10, ge=1, description="Judge an approver only with at least this many recent approvals: a few fast ones of "
        "someone who rarely approves say little."
    )
    fast_share: float = Field(
        0.5, gt=0, le=1, description="Fire when at least this share of the recent approvals came that fast: an "
        "approver who sometimes answers within seconds (looking at the queue as a request arrives) stays well "
        "below half."
    )


@register
class RubberStamp(Check[RubberStampOptions]):
    """An approver approves faster than a person can read: the approval gate became a rubber stamp.

    For each approver (``approved_by``), the time from each request to its ``approved_at`` (wall clock: the
    request's first answer, same agent, action and record) is judged over the approver's recent approvals (the
    last ``recent_approvals`` answered within ``recent_hours``): it fires when at least ``min_approvals`` of them
    are there and at least ``fast_share`` came within ``min_review_seconds``. An approval with no request before
    it is not judged: its event time is when the agent acted after the approval, not when the approver was asked,
    so nothing says how long they looked. An approver who answers fast now and then stays quiet. A warning.
    """

    clears_when = (
        "Resolves when the approver's newer approvals take a reading's time again: at least `clear_min_events` "
        "approvals since it last fired, the fast share back under `fast_share`. No approvals keep it open."
    )

    name: ClassVar[str] = "approval.rubber_stamp"
    family: ClassVar[str] = "approval"
    Options: ClassVar[type[CheckOptions]] = RubberStampOptions
    history: timedelta = timedelta(days=6)  # recent_hours + REQUEST_REACH: see __init__

    def __init__(self, options: RubberStampOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        self.history = timedelta(hours=options.recent_hours) + REQUEST_REACH
        self.approvers: dict[str, Approvals] = {}

    def prepare(self, data: EvalData) -> None:
        self.approvers = {}
        rows = approved(approval_requests(data))
        for (approver,), part in rows.partition_by("approved_by", as_dict=True, maintain_order=True).items():
            self.approvers[str(approver)] = Approvals.of(part)

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """The approver's approvals since: each is a review time judged again."""
        approvals = self.approvers.get(subject["approver"])
        return (approvals.since(since, step.at) if approvals else 0), f"approvals by {subject['approver']}"

    def evaluate(self, step: Step) -> list[Finding]:
        opts = self.options
        at = to_micros(step.at)
        findings = []
        for approver, approvals in sorted(self.approvers.items()):
            recent = approvals.recent(at, opts.recent_hours, opts.recent_approvals)
            count = recent.stop - recent.start
            if count < opts.min_approvals:
                continue
            review = (approvals.approved[recent] - approvals.requested[recent]) / 1e6
            fast = recent.start + np.flatnonzero(review < opts.min_review_seconds)
            if fast.size < opts.fast_share * count:
                continue
            findings.append(self._finding(approver, approvals, recent, fast))
        return findings

    def _finding(self, approver: str, approvals: Approvals, recent: slice, fast: np.ndarray) -> Finding:
        opts = self.options
        count = recent.stop - recent.start
        agents = sorted({str(a) for a in approvals.agents.slice(recent.start, count).to_list()})
        median = float(np.median(approvals.approved[recent] - approvals.requested[recent])) / 1e6
        return Finding(
            check=self.name, subject={"approver": approver}, severity=Severity.warning,
            summary=f"{approver} approved {fast.size} of their last {count} requests within "
                    f"{opts.min_review_seconds:g} seconds of the request (median {median:.0f} s): faster than a "
                    f"person can read them.",
            started_at=from_micros(approvals.answered[fast[0]]), affected=int(fast.size),
            evidence={
                "agents": agents, "approvals": count, "fast_approvals": int(fast.size),
                "fast_share": round(fast.size / count, 3), "median_review_seconds": round(median, 1),
                "min_review_seconds": opts.min_review_seconds,
            },
            sample_event_ids=[str(approvals.ids[int(i)]) for i in fast[:SAMPLE_IDS]],
        )
