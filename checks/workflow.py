"""Workflow checks: state changes the configured state machine forbids, leads left waiting past their SLA,
and outreach whose CRM write never landed.

``prepare`` runs one DuckDB query per check over the range and keeps the result as arrays sorted by event
time; ``evaluate`` only slices them. The two rate checks (SLA, partial failure) judge *cases* that become
known at a deadline (a lead's SLA deadline, an email's follow-up allowance): a case counts at a step only
once its deadline has passed, and its verdict depends only on events up to that deadline, so no step
ever looks ahead.
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
from agentwatch.checks.base import SAMPLE_IDS, Check, CheckOptions, Finding, Step, register
from agentwatch.checks.config import WorkflowConfig
from agentwatch.checks.data import MICROSECOND, EvalData, from_micros, rows_in_window, to_micros
from agentwatch.checks.policy import ViolationOptions
from agentwatch.checks.rollup_sql import follow_up_cases, invalid_transitions, new_record_cases
from agentwatch.checks.stats import bernoulli_llr, cusum_end
from agentwatch.core.severity import Severity

DAY_US = timedelta(days=1) // MICROSECOND
PRIOR_CASES = 10  # pseudo-cases that pull a thin baseline towards the broader (or floor) share




def _state_path(field: str) -> str:
    """A JSONPath naming one top-level key, quoted so dots and spaces stay inside it."""
    return '$."' + field.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- workflow.invalid_transition -------------------------------------------------------------------------


class TransitionOptions(ViolationOptions):
    window_minutes: float = Field(
        60, gt=0,
        description="Report invalid transitions with event time in this last stretch before each evaluation, "
                    "counted per agent x action. One hour keeps a single bad write visible for a few evaluations "
                    "and groups a burst into one finding.",
    )
    statuses: list[str] = Field(
        ["ok", "error"],
        description="Action statuses whose before/after count. `error` is included because the agent still tried "
                    "the move, which is the bug to report even when the CRM refused it.",
    )


@register
class InvalidTransition(Check[TransitionOptions]):
    """An agent moved a record to a state the configured state machine forbids.

    Reads ``workflow.state_field`` from ``before`` and ``after`` of actions on ``workflow.object``
    (compared case-insensitively). A move between two different states is invalid when its from-state
    is a key of ``workflow.transitions`` and its to-state is not listed under it. A from-state the
    config does not name (a terminal state, or one the team did not model) is not judged: the config
    says nothing about where it may go. Does nothing without a ``workflow:`` section.
    """

    clears_when = (
        "Resolves when the agent's further transitions of this kind, at least `clear_min_events` since it "
        "last fired, are all allowed by the state machine. No further actions keep it open."
    )

    name: ClassVar[str] = "workflow.invalid_transition"
    family: ClassVar[str] = "workflow"
    Options: ClassVar[type[CheckOptions]] = TransitionOptions
    history: timedelta = timedelta(hours=1)

    def prepare(self, data: EvalData) -> None:
        options = self.options
        self.window = timedelta(minutes=options.window_minutes)
        self.moves = pl.DataFrame(schema={"event_id": pl.String, "ts": pl.Datetime("us", "UTC"), "agent_id": pl.String,
                                          "action": pl.String, "from_state": pl.String, "to_state": pl.String})
        workflow = self.config.workflow
        if workflow is not None and workflow.transitions:
            pairs = [(src.lower(), dst.lower()) for src, dsts in workflow.transitions.items() for dst in dsts]
            states = sorted({src.lower() for src in workflow.transitions})  # a state may allow no move at all
            rollup = invalid_transitions(workflow.object, _state_path(workflow.state_field), options.statuses, states,
                                         pairs)
            # A rollup: serve holds the settled moves between its minute runs and reads only the last minutes.
            found = data.rollup(rollup, since=data.look_back_from - self.window).sort("ts", "event_id")
            if found.height:
                self.moves = found
        self.ts = self.moves["ts"].dt.epoch("us").to_numpy()

    def evaluate(self, step: Step) -> list[Finding]:
        recent = rows_in_window(self.moves, self.ts, self.window, step.at)
        if recent.is_empty():
            return []
        recent = recent.with_columns((pl.col("from_state") + " -> " + pl.col("to_state")).alias("transition"))
        pairs = recent.group_by("agent_id", "action", "transition").len().sort("len", "transition", descending=True)
        groups = recent.group_by("agent_id", "action").agg(
            pl.len().alias("events"), pl.col("ts").min().alias("started_at"),
            pl.col("event_id").head(SAMPLE_IDS).alias("sample"),
        ).sort("agent_id", "action")
        object_name = self.config.workflow.object  # type: ignore[union-attr]
        minutes = round(self.window.total_seconds() / 60)
        findings = []
        for row in groups.iter_rows(named=True):
            mine = pairs.filter((pl.col("agent_id") == row["agent_id"]) & (pl.col("action") == row["action"]))
            transitions = dict(zip(mine["transition"].to_list(), mine["len"].to_list(), strict=True))
            listed = ", ".join(f"{t} ({n})" for t, n in list(transitions.items())[:3])
            findings.append(Finding(
                check=self.name, subject={"agent_id": row["agent_id"], "action": row["action"]},
                severity=Severity.warning,
                summary=f"{row['agent_id']} made {row['events']} {object_name} state change(s) through "
                        f"{row['action']} in the last {minutes} minutes that the workflow forbids: {listed}.",
                started_at=row["started_at"], affected=row["events"], sample_event_ids=list(row["sample"]),
                evidence={"transitions": transitions, "events": row["events"], "window_minutes": minutes,
                          "object": object_name, "agents": [row["agent_id"]]},
            ))
        return findings


# --- the machinery of the two rate checks -------------------------------------------------------------


class RiseOptions(CheckOptions):
    every_minutes: float | None = Field(
        5, gt=0, description="Evaluate once per this many minutes (slots of the clock), the last findings "
        "standing in between: a case is judged only once its deadline passed, so the test moves at the pace of "
        "deadlines, and five minutes (one bucket) adds little to a delay of half an hour while `serve` reads a week "
        "of cases a fifth as often."
    )
    window_minutes: float = Field(
        120, gt=0,
        description="Cases whose deadline fell in this last stretch are tested for a rise. Two hours hold enough "
                    "cases at a few per hour, and the CUSUM inside it finds where the rise began.",
    )
    baseline_days: float = Field(
        7, gt=0, description="The usual failure share is measured over this many days before the window: a week "
                             "covers every weekday once.",
    )
    min_share: float = Field(
        0.3, gt=0, lt=1,
        description="The failure share the test looks for, at least: a rise to under 30% of cases is slowness "
                    "people live with, not a broken step.",
    )
    ratio: float = Field(
        3, gt=1, description="The share tested for is also at least this multiple of the usual share, so a step that "
                             "is always somewhat slow only fires when it gets clearly worse.",
    )
    baseline_floor: float = Field(
        0.05, gt=0, lt=1,
        description="The usual share is taken as at least this, so a spotless history does not make a few "
                    "failures look like a rise.",
    )
    threshold: float = Field(
        6, gt=0,
        description="CUSUM log-likelihood ratio to fire. 6 takes four failures in a row against a clean baseline "
                    "(each weighs log(0.3/0.05) = 1.8), more when successes sit between them; simulated at a 5% "
                    "usual share and 150 cases a day, it fires by chance about once in 20 weeks (5 did every 1-2).",
    )
    min_failed: int = Field(
        3, ge=1, description="Fire only with at least this many failed cases in the rise: one or two slow cases are "
                             "normal.",
    )


def _new_records(rows: pl.DataFrame, creation_share: float) -> pl.DataFrame:
    """The SLA's cases (began, due, creator, event_id, failed) from the rows of `new_record_cases`: the records
    created by a creation action when the data holds any, else those first seen through an intake action (one that
    is the first event of at least `creation_share` of the records it touches)."""
    cases = rows.filter(pl.col("kind") != "touch")
    created = cases.filter(pl.col("kind") == "created")
    if created.height:
        chosen = created
    else:
        touched = rows.filter(pl.col("kind") == "touch").group_by("action").agg(pl.col("touched").sum())
        started = cases.group_by("action").agg(pl.len().alias("started"))
        intake = started.join(touched, on="action").filter(pl.col("started") >= creation_share * pl.col("touched"))
        chosen = cases.filter(pl.col("action").is_in(intake["action"].to_list()))
    return chosen.select("began", "due", "creator", "event_id", "failed")


def by_due(frame: pl.DataFrame) -> pl.DataFrame:
    """Cases in deadline order, ties broken by event id: one order for the arrays built from the frame."""
    return frame.sort("due", "event_id")


@dataclass(frozen=True)
class Cases:
    """Cases sorted by deadline: each one known at its deadline, failed or not."""

    due: np.ndarray  # microseconds since the epoch
    began: np.ndarray  # when each case began (lead created, email sent), microseconds
    failed: np.ndarray  # bool
    failed_upto: np.ndarray  # failed_upto[i] = failed cases among the first i (length n + 1)
    ids: pl.Series  # the event that began each case (read by index for samples: a list of 500k strings costs 0.1 s)

    @classmethod
    def of(cls, frame: pl.DataFrame) -> Cases:
        """From a frame with columns due, began, failed, event_id, sorted by due (see `by_due`)."""
        failed = frame["failed"].to_numpy().astype(bool)
        return cls(due=frame["due"].dt.epoch("us").to_numpy(), began=frame["began"].dt.epoch("us").to_numpy(),
                   failed=failed, failed_upto=np.concatenate([[0], np.cumsum(failed)]),
                   ids=frame["event_id"])

    def counts(self, lows: np.ndarray, highs: np.ndarray) -> tuple[int, int]:
        """Cases and failed cases with deadline in any of the windows (low, high] (windows must not overlap)."""
        lo = np.searchsorted(self.due, lows, side="right")
        hi = np.searchsorted(self.due, np.maximum(highs, lows), side="right")
        return int((hi - lo).sum()), int((self.failed_upto[hi] - self.failed_upto[lo]).sum())


@dataclass(frozen=True)
class Rise:
    """A rise in the failure share at the end of the window, from the case where it most likely began."""

    first: int  # index of the run's first case
    last: int  # index after the run's last case
    failed: int
    cases: int
    statistic: float
    usual: float
    tested: float


def find_rise(cases: Cases, at: int, usual: float, options: RiseOptions) -> Rise | None:
    """The CUSUM over the window's cases of "failure share is `tested`" against "it is `usual`"."""
    tested = min(0.95, max(options.min_share, options.ratio * usual))
    if tested <= usual:
        return None
    window = timedelta(minutes=options.window_minutes) // MICROSECOND
    lo, hi = np.searchsorted(cases.due, [at - window, at], side="right")
    failed = cases.failed[lo:hi]
    if int(failed.sum()) < options.min_failed:
        return None
    statistic, _ = cusum_end(bernoulli_llr(failed.astype(float), np.ones(failed.size), usual, tested))
    if statistic < options.threshold:
        return None
    first = int(lo) + _change_point(failed, usual)
    run_failed = int(cases.failed[first:hi].sum())
    if run_failed < options.min_failed:
        return None
    return Rise(first=first, last=int(hi), failed=run_failed, cases=int(hi) - first, statistic=statistic,
                usual=usual, tested=tested)


def _change_point(failed: np.ndarray, usual: float) -> int:
    """Where the rise most likely began: the first failure of the suffix whose own failure share, against
    the usual one, is the likeliest change (a GLR; the CUSUM's fixed tested share would let earlier
    scattered failures drag the start back)."""
    n = np.arange(failed.size, 0, -1, dtype=float)  # suffix lengths
    hits = np.cumsum(failed[::-1])[::-1].astype(float)  # failures in each suffix
    share = np.clip(hits / n, 1e-9, 1 - 1e-9)
    llr = hits * np.log(share / usual) + (n - hits) * np.log((1 - share) / (1 - usual))
    llr[(share <= usual) | ~failed] = -np.inf  # a rise, starting with a failure
    return int(np.argmax(llr))


def smoothed_share(failed: int, cases: int, prior: float, floor: float) -> float:
    """A failure share that a thin sample moves only partly away from `prior`, never under `floor`."""
    return max(floor, (failed + PRIOR_CASES * prior) / (cases + PRIOR_CASES))


def _frozen_end(step: Step, check: str, subject: dict[str, str], at: int) -> int:
    """The baseline's end: now, or when the open incident on this subject began (its baseline stays clean)."""
    started = step.started(check, subject)
    return min(at, to_micros(started)) if started is not None else at


# --- workflow.sla_breach --------------------------------------------------------------------------------


class SlaOptions(RiseOptions):
    creation_actions: list[str] = Field(
        ["lead.create", "lead.created", "record.create"],
        description="Actions that create a record. When the data holds any of them, a record is created at its "
                    "first such action and only such records count; otherwise see `creation_share`.",
    )
    creation_share: float = Field(
        0.8, gt=0, le=1,
        description="Without creation actions, a record counts as new at its first event when that event's action "
                    "is the first event on at least this share of the records it touches (an intake step such as "
                    "lead.dedupe is; an email.send to records that existed before the data is not). 80% leaves "
                    "room for retries and records created just before the data begins.",
    )


@register
class SlaBreach(Check[SlaOptions]):
    """A rising share of new leads waits past the SLA for a first action by another agent.

    A lead is created at its creation action, or at its first event when that is an intake step (see
    ``creation_actions`` and ``creation_share``: older records first seen through outreach are not new); an
    event counts as a first only when no event of the lead came in the ``baseline_days`` before it, so a
    record's start does not move as the window slides past its first event;
    its SLA is met when another agent acts on it successfully within ``workflow.sla_first_action_minutes``.
    At each step the check looks at the leads whose deadline passed in the window and runs a Bernoulli
    CUSUM of "breached" against the usual share: the share over the same hours of the day on the previous
    ``baseline_days`` days (so leads that always wait overnight are not news), blended with the share over
    all those days when the matching hours hold few leads. The baseline is frozen while an incident is
    open. Does nothing without ``workflow.object`` and ``workflow.sla_first_action_minutes``.
    """

    clears_when = (
        "Resolves when new records keep coming due and get their first action in time: at least "
        "`clear_min_events` records due since it last fired, the failure share back to usual. No new records "
        "keep it open."
    )

    name: ClassVar[str] = "workflow.sla_breach"
    family: ClassVar[str] = "workflow"
    Options: ClassVar[type[CheckOptions]] = SlaOptions
    history: timedelta = timedelta(days=7)

    def prepare(self, data: EvalData) -> None:
        options = self.options
        workflow = self.config.workflow
        self.cases: Cases | None = None
        if workflow is None or workflow.sla_first_action_minutes is None:
            return
        self.sla = timedelta(minutes=workflow.sla_first_action_minutes)
        self.object = workflow.object
        window = timedelta(minutes=options.window_minutes)
        since = data.look_back_from - timedelta(days=options.baseline_days) - window - self.sla
        rows = data.rollup(new_record_cases(self.object, options.creation_actions, self.sla,
                                            timedelta(days=options.baseline_days)), since=since)
        frame = _new_records(rows, options.creation_share)
        frame = by_due(frame)
        self.cases = Cases.of(frame)
        self.creators = frame["creator"]  # read by index, as the ids

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """Records whose first action came due since: each one handled in time or not is evidence."""
        if self.cases is None:
            return 0, f"new {subject['object']} records"
        due, _ = self.cases.counts(np.array([to_micros(since)]), np.array([to_micros(step.at)]))
        return due, f"new {subject['object']} records due for a first action"

    def evaluate(self, step: Step) -> list[Finding]:
        if self.cases is None or not self.cases.due.size:
            return []
        options = self.options
        subject = {"object": self.object}
        at = to_micros(step.at)
        end = _frozen_end(step, self.name, subject, at)
        window = timedelta(minutes=options.window_minutes) // MICROSECOND
        days = int(np.ceil(options.baseline_days))
        all_cases, all_failed = self.cases.counts(np.array([end - days * DAY_US]), np.array([end - window]))
        # The same hours of the day on each previous day (capped at the baseline's end).
        back = np.arange(1, days + 1) * DAY_US
        hour_cases, hour_failed = self.cases.counts(at - back - window, np.minimum(at - back, end))
        overall = smoothed_share(all_failed, all_cases, options.baseline_floor, options.baseline_floor)
        usual = smoothed_share(hour_failed, hour_cases, overall, options.baseline_floor)
        rise = find_rise(self.cases, at, usual, options)
        if rise is None:
            return []
        minutes = round(self.sla.total_seconds() / 60)
        began = from_micros(self.cases.began[rise.first])
        breached = [i for i in range(rise.first, rise.last) if self.cases.failed[i]]
        return [Finding(
            check=self.name, subject=subject, severity=Severity.warning,
            summary=f"{rise.failed} of {rise.cases} new {self.object}s created since {began:%Y-%m-%d %H:%M} UTC got "
                    f"no first action from another agent within the {minutes}-minute SLA (usually "
                    f"{usual:.0%} of {self.object}s miss it).",
            started_at=began, affected=rise.failed,
            sample_event_ids=[str(self.cases.ids[i]) for i in breached[:SAMPLE_IDS]],
            evidence={
                "sla_minutes": minutes, "breached": rise.failed, "cases": rise.cases,
                "current_share": round(rise.failed / rise.cases, 4), "baseline_share": round(usual, 4),
                "baseline_cases_same_hours": hour_cases, "baseline_cases": all_cases,
                "tested_share": round(rise.tested, 4), "cusum": round(rise.statistic, 2),
                "threshold": options.threshold, "object": self.object,
                "agents": sorted({str(a) for a in self.creators.gather(breached).drop_nulls()}),
            },
        )]


# --- workflow.partial_failure ---------------------------------------------------------------------------


class PartialOptions(RiseOptions):
    follow_up_minutes: float = Field(
        10, gt=0,
        description="How long after an external action its follow-up write may land on the same record. Ten "
                    "minutes leaves room for queues and one retry; later than that, people act on a CRM that "
                    "does not show the email.",
    )


@register
class PartialFailure(Check[PartialOptions]):
    """An external action (e.g. ``email.send``) succeeded but the CRM write that must follow it did not.

    ``workflow.follow_ups`` (defaults apply without a ``workflow:`` section) maps each external action to
    the writes that must follow it on the same record. A case is an external action with status ``ok``; it
    failed when no listed write succeeded on the same record, by any agent, within ``follow_up_minutes``
    (whether the write errored or never came; one that errored and was retried in time is fine). Per
    agent x action, a Bernoulli CUSUM over the window's cases tests the failure share against its usual
    share over ``baseline_days`` (frozen while an incident is open). Critical: the prospect got the email
    while the CRM does not show it, so people double up or drop the thread.
    """

    clears_when = (
        "Resolves when the agent's external actions of this kind are followed by their writes again: at least "
        "`clear_min_events` actions since it last fired, none firing it. No actions keep it open."
    )

    name: ClassVar[str] = "workflow.partial_failure"
    family: ClassVar[str] = "workflow"
    Options: ClassVar[type[CheckOptions]] = PartialOptions
    history: timedelta = timedelta(days=7)

    def prepare(self, data: EvalData) -> None:
        options = self.options
        follow_ups = (self.config.workflow or WorkflowConfig(object="lead")).follow_ups
        self.allowance = timedelta(minutes=options.follow_up_minutes)
        self.subjects: dict[tuple[str, str], tuple[Cases, pl.DataFrame]] = {}
        pairs = [(ext, write) for ext, writes in follow_ups.items() for write in writes]
        if not pairs:
            return
        window = timedelta(minutes=options.window_minutes)
        since = data.look_back_from - timedelta(days=options.baseline_days) - window - self.allowance
        frame = data.rollup(follow_up_cases(pairs, self.allowance), since=since)
        for (agent_id, action), part in frame.partition_by("agent_id", "action", as_dict=True).items():
            part = by_due(part)
            self.subjects[(agent_id, action)] = (Cases.of(part), part.select("failed", "write_errors", "error_agents"))

    def evaluate(self, step: Step) -> list[Finding]:
        options = self.options
        at = to_micros(step.at)
        window = timedelta(minutes=options.window_minutes) // MICROSECOND
        baseline = int(timedelta(days=options.baseline_days) // MICROSECOND)
        findings = []
        for (agent_id, action), (cases, details) in sorted(self.subjects.items()):
            subject = {"agent_id": agent_id, "action": action}
            end = _frozen_end(step, self.name, subject, at)
            base_cases, base_failed = cases.counts(np.array([end - baseline]), np.array([end - window]))
            usual = smoothed_share(base_failed, base_cases, options.baseline_floor, options.baseline_floor)
            rise = find_rise(cases, at, usual, options)
            if rise is not None:
                findings.append(self._finding(subject, cases, details, rise, base_cases))
        return findings

    def _finding(self, subject: dict[str, str], cases: Cases, details: pl.DataFrame, rise: Rise,
                 base_cases: int) -> Finding:
        failed = [i for i in range(rise.first, rise.last) if cases.failed[i]]
        errored = details.slice(rise.first, rise.last - rise.first).filter(
            pl.col("failed") & (pl.col("write_errors") > 0))
        error_agents = sorted({a for agents in errored["error_agents"].to_list() for a in agents or []})
        minutes = round(self.allowance.total_seconds() / 60)
        began = from_micros(cases.began[rise.first])
        agent_id, action = subject["agent_id"], subject["action"]
        return Finding(
            check=self.name, subject=subject, severity=Severity.critical,
            summary=f"{rise.failed} of {rise.cases} {action} by {agent_id} since {began:%Y-%m-%d %H:%M} UTC "
                    f"succeeded but no CRM write followed on the same record within {minutes} minutes "
                    f"({errored.height} with the write failing; usually {rise.usual:.0%} miss it).",
            started_at=began, affected=rise.failed, sample_event_ids=[str(cases.ids[i]) for i in failed[:SAMPLE_IDS]],
            evidence={
                "follow_up_minutes": minutes, "failed": rise.failed, "cases": rise.cases,
                "write_errored": errored.height, "write_missing": rise.failed - errored.height,
                "current_share": round(rise.failed / rise.cases, 4), "baseline_share": round(rise.usual, 4),
                "baseline_cases": base_cases, "tested_share": round(rise.tested, 4),
                "cusum": round(rise.statistic, 2), "threshold": self.options.threshold,
                "agents": sorted({agent_id, *error_agents}),
            },
        )
