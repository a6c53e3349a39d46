"""approval.queue_backlog, approval.latency, approval.rubber_stamp: the human approval gate in front of actions.

An agent reports an action that needs a person's approval first with status ``pending_approval`` (the request);
the person's answer is a later event of the same agent, action and record that carries ``approval`` (approved)
or has status ``skipped`` (rejected or withdrawn). Two aggregates kept in the home hold the requests and the events
that may answer one (narrow rows); :func:`approval_requests` pairs each request with the first answer after it in
Polars, once per run for the three checks, which keep the pairs as NumPy arrays per subject; ``evaluate`` only
slices them. A request is waiting at a time until its answer's event time (what the data shows then), so no step
looks ahead. Incidents' sample events are the requests.

Approvers answer in their working hours, in whatever time zones: a request made on Friday evening is answered on
Monday morning, one made late in one region's afternoon the next local morning. Waits and latencies are therefore
judged against those of the gate's requests made at the same time of the week in earlier weeks (:class:`History`),
learnt, so no time zone or roster is configured, and the queue's size against its size at the same hour of earlier
weeks.
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
from agentwatch.checks.data import MICROSECOND, EvalData, count_between, from_micros, to_micros
from agentwatch.checks.options import options_for
from agentwatch.checks.rollup_sql import APPROVAL_ANSWERS, APPROVAL_REQUESTS
from agentwatch.core.severity import Severity

# How long a request usually waits at most (made on Friday evening, answered on Monday): requests are read from this
# long before the first answer a check judges, so each is paired (an answer whose request was not read is left out),
# and an earlier week's queue is known once the subject's requests go back this long before it.
REQUEST_REACH = timedelta(days=3)
NEVER = np.iinfo(np.int64).max  # the answer time of a request not answered (yet)
# The usual queue at the same hour of an earlier week is its largest size within this much of that time, sampled
# every quarter hour: a queue is a step function, and one point would miss a request answered a minute earlier.
SAME_HOUR_US = np.arange(-30, 31, 15) * (timedelta(minutes=1) // MICROSECOND)


# --- reading the requests and their answers (kept rows: checks/rollup_sql.py) -----------------------------

CHECK_NAMES = ("approval.queue_backlog", "approval.latency", "approval.rubber_stamp")
RESENT_WITHIN = timedelta(days=1)  # a second request for the same record this soon is a reminder, not a new request


def approval_requests(data: EvalData) -> pl.DataFrame:
    """agent_id, action, request_id, requested_at, external, answered_at, approved_by, approved_at: each request with
    the first answer after it of the same agent, action and record (nulls while unanswered), in request order. A
    re-sent request (a second ``pending_approval`` within RESENT_WITHIN of the one before, before any answer) is the
    same request; a request followed by a later, separate one before any answer was abandoned and stays unanswered.
    Read once per run from the earliest time any of the three checks needs, so they share it and serve holds one
    answer of each rollup."""

    def build() -> pl.DataFrame:
        since = data.look_back_from - approval_history(data.config)
        requests = data.rollup(APPROVAL_REQUESTS, since=since).sort("ts", "event_id")
        answers = (data.rollup(APPROVAL_ANSWERS, since=since)
                   .join(requests.select("record").unique(), on="record", how="semi")
                   .select("ts", "record", pl.col("ts").alias("answered_at"), "approved_by", "approved_at",
                           pl.col("external").alias("answer_external"))
                   .sort("ts"))
        paired = requests.join_asof(answers, on="ts", by="record", strategy="forward", check_sortedness=False)
        # Requests of a record that meet the same answer are one request re-sent when each came within RESENT_WITHIN
        # of the one before; an older one, left without answer before a later request, was abandoned (unanswered),
        # so a request weeks old never takes a new one's answer, whatever history a run loaded.
        same = ["record", "answered_at"]
        paired = paired.sort("record", "ts", "event_id").with_columns(
            (pl.col("ts").diff().over(same).fill_null(RESENT_WITHIN * 2) > RESENT_WITHIN).cum_sum().over(same)
            .alias("sent"))
        answered = pl.col("sent") == pl.col("sent").max().over(same)
        paired = paired.unique([*same, "sent"], keep="first", maintain_order=True).with_columns(
            *[pl.when(answered).then(pl.col(c)).alias(c)
              for c in ("answered_at", "approved_by", "approved_at", "answer_external")])
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


# --- the same time of the week ----------------------------------------------------------------------------

HOUR_US = timedelta(hours=1) // MICROSECOND
WEEK_US = timedelta(weeks=1) // MICROSECOND
# How far from the same time of the week a quiet time of the week borrows the requests it lacks: half a day reaches
# the busy hours around a night, never the other end of the week.
SAME_TIME_REACH = timedelta(hours=12)


class SameTimeOptions(CheckOptions):
    """How a request's usual is learnt: from the gate's requests made at the same time of the week in earlier weeks,
    so the night's and the weekend's waits are compared with earlier nights and weekends (in any time zone)."""

    baseline_weeks: int = Field(
        2, ge=1, le=4, description="Learn the usual from the requests made at the same time of the week in this "
        "many earlier weeks: two see every time of the week twice, so one odd week does not set the usual alone."
    )
    same_time_hours: float = Field(
        2, gt=0, le=12, description="The same time of the week is within this many hours either side: a request "
        "made at 16:00 is compared with those of 14:00 to 18:00, which the same approvers answer the same way "
        "(before or after their evening), while the night's and the morning's stay apart."
    )
    min_same_time: int = Field(
        16, ge=2, description="Learn from at least this many requests: a quiet time of the week (a night, a weekend, "
        "a gate of a few requests an hour) with fewer takes the nearest this many within 12 hours of it, so that the "
        "one request in ten of an hour that usually waits for the approvers' next morning is among them."
    )


@dataclass(frozen=True)
class History:
    """One subject's requests in request order, each with what is learnt from it (its wait or its latency, seconds)
    and when that became known (its answer's event time, NEVER while unanswered)."""

    requested: np.ndarray  # microseconds since the epoch
    known: np.ndarray
    value: np.ndarray

    def same_time(self, at: int, options: SameTimeOptions, before: int | None = None) -> np.ndarray:
        """The values of the requests made at the same time of the week as `at` in each of the `baseline_weeks`
        weeks before it: those within `same_time_hours`, or else the `min_same_time` nearest within SAME_TIME_REACH;
        only those known by `at` (and made before `before`). Empty when there are not `min_same_time`. A week whose
        reach starts before the first request is left out: a gate's first hours are not the same time of its week."""
        reach = SAME_TIME_REACH // MICROSECOND
        centres = at - np.arange(1, options.baseline_weeks + 1) * WEEK_US
        centres = centres[centres - reach >= (self.requested[0] if self.requested.size else NEVER)]
        bounds = np.searchsorted(self.requested, np.stack([centres - reach, centres + reach], axis=1))
        rows = np.concatenate([np.arange(lo, hi) for lo, hi in bounds] or [np.arange(0)])
        distance = np.abs(self.requested[rows] - np.repeat(centres, bounds[:, 1] - bounds[:, 0]))
        keep = self.known[rows] <= at
        if before is not None:
            keep &= self.requested[rows] < before
        rows, distance = rows[keep], distance[keep]
        near = distance <= int(options.same_time_hours * HOUR_US)
        if np.count_nonzero(near) >= options.min_same_time:
            return self.value[rows[near]]
        if rows.size < options.min_same_time:
            return self.value[:0]
        return self.value[rows[np.argpartition(distance, options.min_same_time - 1)[:options.min_same_time]]]

    def all_before(self, at: int, weeks: int) -> np.ndarray:
        """The values of every request made in the `weeks` weeks before `at` and known by then."""
        lo, hi = np.searchsorted(self.requested, [at - weeks * WEEK_US, at])
        return self.value[lo:hi][self.known[lo:hi] <= at]


# --- approval.queue_backlog -------------------------------------------------------------------------------


class BacklogOptions(SameTimeOptions):
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
    usual_quantile: float = Field(
        0.98, gt=0.5, lt=1, description="A request's usual longest wait is this quantile of the waits (wall clock, "
        "request to answer) of the requests made at the same time of the week: nearly the longest, so the Friday "
        "evening's wait to Monday and the evening's wait to the next morning, even when only some requests of that "
        "hour have it, are usual."
    )
    usual_margin: float = Field(
        1.5, ge=1, description="A request is overdue once it has waited this multiple of its usual longest wait: "
        "half as long again leaves room for a slower morning, while a request still waiting the next day when "
        "its like are answered within hours is late."
    )
    max_wait_minutes: float = Field(
        240, gt=0, description="... and never before this many minutes (wall clock): half a working day, so a gate "
        "whose requests are usually answered within minutes does not fire on a meeting or a lunch."
    )
    expire_hours: float = Field(
        24, gt=0, description="A request still waiting this many hours after it became overdue is expired: a day "
        "late, what the agent wanted to do has gone stale. Expired requests of an action that reaches outside make "
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
    forget_days: float = Field(
        7, gt=0, description="A request unanswered for this many days (wall clock) has been given up on by whoever "
        "asked: it leaves the queue, so a request nobody will ever answer does not hold an incident open forever."
    )


@dataclass(frozen=True)
class Queue:
    """One agent x action's requests, in request order, and when they were answered."""

    requested: np.ndarray  # microseconds since the epoch
    answered: np.ndarray  # the answer's event time, NEVER while unanswered
    answer_times: np.ndarray  # the answered ones', sorted
    ids: pl.Series
    history: History  # the requests' waits, to learn the usual from
    external: bool  # the action reaches outside (a request or an answer said so)
    limits: dict[int, float]  # request -> the wait after which it is overdue (seconds, nan: not judged), learnt once

    @classmethod
    def of(cls, rows: pl.DataFrame) -> Queue:
        requested, answered = _micros(rows["requested_at"]), _micros(rows["answered_at"])
        waits = np.where(answered == NEVER, np.nan, (answered - requested) / 1e6)
        return cls(requested=requested, answered=answered, answer_times=np.sort(answered[answered != NEVER]),
                   ids=rows["request_id"], history=History(requested, answered, waits),
                   external=bool(rows["external"].any()), limits={})


@register
class QueueBacklog(Check[BacklogOptions]):
    """Approval requests wait with no answer: the approval gate backed up.

    For each agent x action, the requests waiting at the evaluation time (made, not yet answered, not older than
    ``forget_days``) are counted. A request is overdue once it has waited (wall clock) ``usual_margin`` times as
    long as the requests made at the same time of the week usually wait, and at least ``max_wait_minutes``: the
    usual is the ``usual_quantile`` of the waits of the gate's requests made within ``same_time_hours`` of the same
    time of the week in each of the ``baseline_weeks`` weeks before, as known when the request was made (a quiet
    time of the week takes the ``min_same_time`` nearest requests within 12 hours, and with fewer still the gate's
    requests of those weeks at any time). It fires when at least ``min_overdue`` requests are overdue, or when the
    queue is at least ``queue_ratio`` times, and ``min_queue_excess`` more than, its usual size: the largest it was
    at the same hour of the week over the last ``baseline_weeks`` weeks (a week counts once the subject's requests
    go back three days before it, so that week's weekend queue is whole; before that, growth is not judged).

    Comparing like with like needs no time zone or roster: a request made on Friday evening and answered on Monday
    morning waited as Friday evening's requests do, and so did a request of a late North American afternoon
    answered the next morning when the gate's approvers work in several regions; a Tuesday-morning request still
    waiting on Wednesday did not. Neither is one slow answer a backlog. Requests made in the first week of a gate,
    whose same time of the last week is unknown, are not judged on their waits. A request still waiting
    ``expire_hours`` after it became overdue is expired; the incident is critical when an expired request is of an
    action that reaches outside (the request or an answer of the agent x action has ``external: true``), a warning
    otherwise.
    """

    clears_when = (
        "Resolves when approvers answer the agent x action's requests again: at least `clear_min_events` requests "
        "answered (approved or skipped) since it last fired, the queue no longer overdue. No answers keep it open, "
        "even once the waiting requests are forgotten."
    )

    name: ClassVar[str] = "approval.queue_backlog"
    family: ClassVar[str] = "approval"
    Options: ClassVar[type[CheckOptions]] = BacklogOptions
    history: timedelta = timedelta(days=21, hours=12)  # forget_days, baseline_weeks and SAME_TIME_REACH: see __init__

    def __init__(self, options: BacklogOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        self.history = timedelta(days=options.forget_days, weeks=options.baseline_weeks) + SAME_TIME_REACH
        self.queues: dict[tuple[str, str], Queue] = {}

    def prepare(self, data: EvalData) -> None:
        self.queues = {}  # afresh: the scheduler may reuse this object
        rows = approval_requests(data)
        for (agent, action), part in rows.partition_by("agent_id", "action", as_dict=True, maintain_order=True).items():
            self.queues[(str(agent), str(action))] = Queue.of(part)

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """Requests of the agent x action answered since: each one is an approver at work."""
        queue = self.queues.get((subject["agent_id"], subject["action"]))
        what = f"answered approval requests of {subject['action']} by {subject['agent_id']}"
        return (count_between(queue.answer_times, to_micros(since), to_micros(step.at)) if queue else 0), what

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
            wait = (at - queue.requested[waiting]) / 1e6
            limit = np.array([self._limit(queue, int(i)) for i in waiting])
            overdue = waiting[wait > limit]  # never where the limit is nan (not judged)
            expired = waiting[wait > limit + opts.expire_hours * 3600]
            usual = self._usual(queue, at, forget)
            grown = usual is not None and waiting.size >= max(opts.queue_ratio * usual, usual + opts.min_queue_excess)
            if overdue.size < opts.min_overdue and not grown:
                continue
            findings.append(self._finding(agent, action, queue, at, waiting, overdue, expired, usual))
        return findings

    def _limit(self, queue: Queue, request: int) -> float:
        """How long the request may wait before it is overdue (seconds; nan: not judged), learnt once from what was
        known when it was made."""
        if request not in queue.limits:
            queue.limits[request] = self._learn_limit(queue.history, int(queue.requested[request]))
        return queue.limits[request]

    def _learn_limit(self, history: History, made: int) -> float:
        opts = self.options
        if made - history.requested[0] < (timedelta(weeks=1) + SAME_TIME_REACH) // MICROSECOND:
            return np.nan  # a new gate: the same time of the last week is not known yet
        waits = history.same_time(made, opts)
        if waits.size == 0:
            waits = history.all_before(made, opts.baseline_weeks)
            if waits.size < opts.min_same_time:
                return np.nan
        usual = float(np.quantile(waits, opts.usual_quantile))
        return max(opts.usual_margin * usual, opts.max_wait_minutes * 60)

    def _usual(self, queue: Queue, at: int, forget: int) -> int | None:
        """The largest queue within half an hour of the same time in each earlier week whose queue is known: the
        subject's requests go back REQUEST_REACH before it, a weekend's queue (None without any such week)."""
        weeks = np.arange(1, self.options.baseline_weeks + 1) * WEEK_US
        weeks = weeks[at - weeks - REQUEST_REACH // MICROSECOND >= queue.requested[0]]
        if weeks.size == 0:
            return None
        times = ((at - weeks)[:, None] + SAME_HOUR_US[None, :]).ravel()
        lo, hi = np.searchsorted(queue.requested, [times.min() - forget, times.max()], side="right")
        requested, answered = queue.requested[lo:hi, None], queue.answered[lo:hi, None]
        waiting = (requested <= times) & (requested > times - forget) & (answered > times)
        return int(waiting.sum(axis=0).max())

    def _finding(self, agent: str, action: str, queue: Queue, at: int, waiting: np.ndarray, overdue: np.ndarray,
                 expired: np.ndarray, usual: int | None) -> Finding:
        opts = self.options
        late = overdue if overdue.size else waiting
        limit = queue.limits[int(late[0])]
        summary = f"{waiting.size} {action} requests by {agent} wait for approval"
        if usual is not None:
            summary += f" (at most {usual} at this hour of the week usually)"
        if overdue.size:
            summary += (f", {overdue.size} of them longer than requests made at their time of the week usually "
                        f"wait (the oldest's limit {_duration(limit)})")
        if expired.size:
            summary += f", {expired.size} expired ({opts.expire_hours:g} h past their limit)"
        summary += f"; the oldest since {from_micros(queue.requested[late[0]]):%a %Y-%m-%d %H:%M} UTC."
        critical = expired.size > 0 and queue.external
        return Finding(
            check=self.name, subject={"agent_id": agent, "action": action},
            severity=Severity.critical if critical else Severity.warning, summary=summary,
            started_at=from_micros(queue.requested[late[0]]), affected=int(late.size),
            evidence={
                "agents": [agent], "waiting": int(waiting.size), "overdue": int(overdue.size),
                "expired": int(expired.size), "usual_waiting_same_hour": usual,
                "longest_wait_hours": round((at - int(queue.requested[waiting[0]])) / 3.6e9, 2),
                "oldest_limit_hours": None if np.isnan(limit) else round(limit / 3600, 2),
                "max_wait_minutes": opts.max_wait_minutes, "usual_quantile": opts.usual_quantile,
                "usual_margin": opts.usual_margin, "expire_hours": opts.expire_hours, "min_overdue": opts.min_overdue,
                "external": queue.external,
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


def approved(rows: pl.DataFrame) -> pl.DataFrame:
    """The requests answered with an approval given after them, in answer order. An approval dated before the
    request it answers (clock skew, an approval reused) says nothing of how long the approver took."""
    return (rows.filter(pl.col("approved_by").is_not_null() & (pl.col("approved_at") >= pl.col("requested_at")))
            .sort("answered_at", "request_id"))


# --- approval.latency -------------------------------------------------------------------------------------


class LatencyOptions(SameTimeOptions):
    every_minutes: float | None = Field(
        30, gt=0, description="Evaluate once per this many minutes (slots of the clock), the last findings standing "
        "in between: the approvals come in a few an hour, so half an hour adds little to a delay of hours."
    )
    recent_hours: float = Field(
        24, gt=0, description="Judge the approvals of the requests made in this many hours before the evaluation "
        "(the last `recent_approvals` of them answered): a day, so a slow morning is judged as soon as it is "
        "answered, while requests still waiting are the backlog's."
    )
    recent_approvals: int = Field(
        12, ge=1, description="... at most this many, the latest requests: twelve make a verdict that a few slow "
        "answers do not move, yet a real rise shows within about seven approvals."
    )
    min_recent: int = Field(
        6, ge=1, description="Judge only with at least this many recent approvals whose time of the week has a "
        "usual (a night or a weekend of a gate quiet then has none): fewer make a verdict of chance."
    )
    tail_quantile: float = Field(
        0.9, gt=0.5, lt=1, description="An approval is slow only if it took longer than this quantile of the "
        "approvals of the same time of the week: at an hour when some requests usually wait for the approvers' "
        "next morning (a gate served from several regions), such a wait stays usual."
    )
    ratio: float = Field(
        3, gt=1, description="... and at least this multiple of their median: approvals taking three times as long "
        "is a gate slowing down, not a busy day."
    )
    min_increase_minutes: float = Field(
        30, gt=0, description="... and at least this many minutes longer than the median: a gate going from 20 "
        "seconds to 2 minutes is still fast, and does not page."
    )


@dataclass(frozen=True)
class Gate:
    """One agent x action's approvals in request order (their latencies, seconds, known at their answers' event
    times)."""

    history: History
    ids: pl.Series
    answer_times: np.ndarray  # sorted

    @classmethod
    def of(cls, rows: pl.DataFrame) -> Gate:
        rows = approved(rows).sort("requested_at", "request_id")
        requested, answered = _micros(rows["requested_at"]), _micros(rows["answered_at"])
        latency = (_micros(rows["approved_at"]) - requested) / 1e6
        return cls(History(requested, answered, latency), rows["request_id"], np.sort(answered))


@register
class ApprovalLatency(Check[LatencyOptions]):
    """The time to approval of an agent x action's requests rises against what is usual at that time of the week.

    The latency of an approval is ``approved_at`` minus the request's time (the first answer after the request,
    same agent, action and record), wall clock. Each recent approval (of the last ``recent_approvals`` requests made
    within ``recent_hours`` and approved by the evaluation) is compared with the approvals of the requests made at
    the same time of the week: within ``same_time_hours`` of it in each of the ``baseline_weeks`` weeks before
    (a quiet time of the week takes the ``min_same_time`` nearest within 12 hours; a time with fewer is not judged),
    made before the incident started while one is open. It is slow when it took longer than their
    ``tail_quantile``, at least ``ratio`` times their median and ``min_increase_minutes`` more. It fires when at
    least half of at least ``min_recent`` judged approvals are slow.

    So a request made on Friday evening and approved on Monday morning is compared with earlier Friday evenings,
    and the overnight wait of a request made late in one region's afternoon, when the gate's approvers work in
    several regions, with the same hour's usual share of such waits: neither is slow. Nor are a few slow answers
    among many. Requests never answered are ``approval.queue_backlog``'s. A warning.
    """

    clears_when = (
        "Resolves when the agent x action's newer requests are approved as fast as usual again: at least "
        "`clear_min_events` approvals since it last fired, fewer than half of the recent ones slow. No approvals "
        "keep it open."
    )

    name: ClassVar[str] = "approval.latency"
    family: ClassVar[str] = "approval"
    Options: ClassVar[type[CheckOptions]] = LatencyOptions
    history: timedelta = timedelta(days=15, hours=12)  # recent_hours, baseline_weeks and SAME_TIME_REACH: see __init__

    def __init__(self, options: LatencyOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        self.history = timedelta(hours=options.recent_hours, weeks=options.baseline_weeks) + SAME_TIME_REACH
        self.gates: dict[tuple[str, str], Gate] = {}

    def prepare(self, data: EvalData) -> None:
        self.gates = {}
        rows = approval_requests(data)
        for (agent, action), part in rows.partition_by("agent_id", "action", as_dict=True, maintain_order=True).items():
            self.gates[(str(agent), str(action))] = Gate.of(part)

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """The agent x action's approvals since: each is a latency judged again."""
        gate = self.gates.get((subject["agent_id"], subject["action"]))
        return (count_between(gate.answer_times, to_micros(since), to_micros(step.at)) if gate else 0), \
            f"approvals of {subject['action']} requests by {subject['agent_id']}"

    def evaluate(self, step: Step) -> list[Finding]:
        opts = self.options
        at = to_micros(step.at)
        findings = []
        for (agent, action), gate in sorted(self.gates.items()):
            history = gate.history
            lo, hi = np.searchsorted(history.requested, [at - int(opts.recent_hours * HOUR_US), at], side="right")
            recent = (lo + np.flatnonzero(history.known[lo:hi] <= at))[-opts.recent_approvals:]
            if recent.size < opts.min_recent:
                continue
            subject = {"agent_id": agent, "action": action}
            started = step.started(self.name, subject)
            usual = self._usual(history, recent, to_micros(started) if started else None)
            judged = ~np.isnan(usual[:, 0])
            if np.count_nonzero(judged) < opts.min_recent:
                continue
            recent, usual = recent[judged], usual[judged]
            median, tail = usual[:, 0], usual[:, 1]
            slow_level = np.maximum.reduce([opts.ratio * median, median + opts.min_increase_minutes * 60, tail])
            is_slow = history.value[recent] >= slow_level
            if 2 * np.count_nonzero(is_slow) < recent.size:
                continue
            findings.append(self._finding(subject, gate, recent, is_slow, float(np.median(median))))
        return findings

    def _usual(self, history: History, recent: np.ndarray, before: int | None) -> np.ndarray:
        """(median, tail_quantile) of the latencies at the same time of the week of each recent approval (nan:
        none)."""
        usual = np.full((recent.size, 2), np.nan)
        for n, i in enumerate(recent):
            latencies = history.same_time(int(history.requested[i]), self.options, before)
            if latencies.size:
                usual[n] = np.quantile(latencies, [0.5, self.options.tail_quantile])
        return usual

    def _finding(self, subject: dict[str, str], gate: Gate, recent: np.ndarray, is_slow: np.ndarray,
                 usual: float) -> Finding:
        """`usual`: the median of the recent approvals' usual (median) latencies. It started at the first of the
        latest run of slow approvals: an evening request that waited a little longer than its like is slow now and
        then, and is not when the gate slowed."""
        opts = self.options
        slow = recent[is_slow]
        last = int(np.flatnonzero(is_slow)[-1])
        fast_before = np.flatnonzero(~is_slow[:last])
        first = recent[fast_before[-1] + 1] if fast_before.size else slow[0]
        now = float(np.median(gate.history.value[recent]))
        agent, action = subject["agent_id"], subject["action"]
        return Finding(
            check=self.name, subject=subject, severity=Severity.warning,
            summary=f"{slow.size} of the last {recent.size} approvals of {agent}'s {action} requests took far longer "
                    f"than usual for the time of the week they were made: median {_duration(now)}, against a usual "
                    f"{_duration(usual)} at those times.",
            started_at=from_micros(gate.history.requested[first]), affected=int(slow.size),
            evidence={
                "agents": [agent], "recent_approvals": int(recent.size), "slow_approvals": int(slow.size),
                "median_minutes": round(now / 60, 1), "usual_median_minutes": round(usual / 60, 1),
                "tail_quantile": opts.tail_quantile, "ratio": opts.ratio,
                "min_increase_minutes": opts.min_increase_minutes,
            },
            sample_event_ids=[str(gate.ids[int(i)]) for i in slow[:SAMPLE_IDS]],
        )


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
        answered = count_between(approvals.answered, to_micros(since), to_micros(step.at)) if approvals else 0
        return answered, f"approvals by {subject['approver']}"

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
