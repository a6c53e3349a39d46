"""What every check is: a small object with options, ``prepare(data)`` once, ``evaluate(step)`` per time.

A check never touches the incident store. It reports :class:`Finding` objects; the engine turns them
into incidents (open, update, resolve) and links causes to effects. ``prepare`` runs the heavy,
vectorised work once over the whole evaluation range (DuckDB or Polars), so a backtest of a thousand
steps costs one scan plus a thousand cheap look-ups, not a thousand scans.

A check whose statistics move over hours sets ``every_minutes``: the engine evaluates it at most that often in
step time and re-reports its last findings in between, and `serve`'s minute runs that fall in between do not
prepare it at all (:meth:`Check.due`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agentwatch.core.severity import Severity
from agentwatch.schemas.incidents import Incident
from agentwatch.store.rollups import floor_to

if TYPE_CHECKING:
    from agentwatch.checks.activity import Activity
    from agentwatch.checks.config import ChecksConfig
    from agentwatch.checks.data import EvalData


SAMPLE_IDS = 20  # event ids an incident keeps as examples


def subject_key(check: str, subject: Mapping[str, str]) -> str:
    """The identity of an incident: its check and its subject, in a canonical string."""
    return check + " " + json.dumps(dict(sorted(subject.items())), separators=(",", ":"))


@dataclass(frozen=True)
class Finding:
    """One check firing on one subject at one evaluation time."""

    check: str
    subject: dict[str, str]
    severity: Severity
    summary: str
    started_at: datetime
    affected: int
    evidence: dict[str, Any] = field(default_factory=dict)
    sample_event_ids: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return subject_key(self.check, self.subject)

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "subject": {str(k): str(v) for k, v in self.subject.items()},
                "severity": self.severity.value, "summary": self.summary,
                "started_at": self.started_at.isoformat(), "affected": int(self.affected),
                "evidence": json.loads(json.dumps(self.evidence, default=str)),
                "sample_event_ids": self.sample_event_ids}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        return cls(check=data["check"], subject=dict(data["subject"]), severity=Severity(data["severity"]),
                   summary=data["summary"], started_at=datetime.fromisoformat(data["started_at"]),
                   affected=int(data["affected"]), evidence=dict(data["evidence"]),
                   sample_event_ids=list(data["sample_event_ids"]))


@dataclass(frozen=True)
class Step:
    """One evaluation time and what the engine knows of incidents open at that time."""

    at: datetime
    open_incidents: Mapping[str, Incident] = field(default_factory=dict)  # subject_key -> the open incident

    @cached_property
    def open_since(self) -> Mapping[str, datetime]:
        """subject_key -> started_at of each open incident."""
        return {key: incident.started_at for key, incident in self.open_incidents.items()}

    def started(self, check: str, subject: Mapping[str, str]) -> datetime | None:
        """When the open incident of this check and subject began, if one is open."""
        return self.open_since.get(subject_key(check, subject))

    def incident(self, check: str, subject: Mapping[str, str]) -> Incident | None:
        """The open incident of this check and subject, with what it remembers of its cause, if one is open."""
        return self.open_incidents.get(subject_key(check, subject))


@dataclass(frozen=True)
class Clearance:
    """What a check sees of an open incident's condition once the check stops firing: cleared, on data that
    exists, or not (no data, too little, or the cause still there), and the sentence saying which."""

    cleared: bool
    note: str


class CheckOptions(BaseModel):
    """Options every check has; a check's own options extend these."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="Run this check; every check is on by default, since each one "
                          "stays quiet on ordinary traffic.")
    resolve_after_minutes: float = Field(
        60, gt=0, description="Resolve an incident once its condition has been clear this long: an hour rides "
        "out a quiet spell without closing and reopening the same incident."
    )
    clear_min_events: int = Field(
        10, ge=1, description="Resolve only when at least this many of the subject's events arrived since the "
        "incident last fired, none of them firing it: ten events judged normal show the condition cleared, while "
        "no events (an agent paused by the guard, a night) show nothing, and keep the incident open."
    )
    every_minutes: float | None = Field(
        None, gt=0, description="Evaluate once per this many minutes of evaluation time (at the first evaluation in "
        "each slot, counted from the Unix epoch plus a phase of whole minutes that spreads the checks with a cadence "
        "over the minutes: see the top of docs/checks.md), the last findings standing in between; unset: at every "
        "evaluation. Checks whose statistics move over hours set it, so `serve`'s minute runs skip them until due."
    )


OptionsT = TypeVar("OptionsT", bound=CheckOptions)


class Check(Generic[OptionsT]):
    """The interface of every check. Subclasses set ``name``, ``family`` and ``Options`` (the model of
    ``OptionsT``, e.g. ``class NullSpike(Check[NullSpikeOptions])`` with ``Options = NullSpikeOptions``)."""

    name: ClassVar[str]
    family: ClassVar[str]
    clears_when: ClassVar[str]  # the evidence that resolves its incidents, and what no data does (docs/checks.md)
    Options: ClassVar[type[CheckOptions]] = CheckOptions
    # `prepare` starts work in another process and returns (Great Expectations' 3-second import): the engine
    # prepares such checks first, so the work overlaps the others'.
    prepares_in_background: ClassVar[bool] = False
    # How much history before the first evaluation time `prepare` needs (baselines, reference windows); a check
    # whose need depends on its options sets it per instance.
    history: timedelta = timedelta(days=1)
    # Where its `every_minutes` slots start, past the Unix epoch's: set by `agentwatch.checks.phases` for the checks
    # of a config, so checks with a cadence fall due in different minutes.
    phase: timedelta = timedelta(0)

    def __init__(self, options: OptionsT, config: ChecksConfig) -> None:
        self.options: OptionsT = options
        self.config = config
        # Kept across runs when the scheduler reuses this object, so `every_minutes` holds in `serve` too.
        self.evaluated_at: datetime | None = None
        self.last_findings: list[Finding] = []

    def cadence_state(self) -> dict[str, Any] | None:
        """What a later process needs to keep this check's cadence (`check` run by cron keeps serve's): when it was
        last evaluated and what it found, with a fingerprint of its options and config. None without a cadence."""
        if self.options.every_minutes is None or self.evaluated_at is None:
            return None
        return {"fingerprint": self._fingerprint(), "evaluated_at": self.evaluated_at.isoformat(),
                "findings": [f.to_json() for f in self.last_findings]}

    def restore_cadence(self, state: Mapping[str, Any] | None) -> None:
        """Take up the cadence a run in another process left (:meth:`cadence_state`), unless this object has its
        own, or the options or config changed since (then the check is due)."""
        if state is None or self.evaluated_at is not None or self.options.every_minutes is None:
            return
        if state.get("fingerprint") != self._fingerprint():
            return
        self.evaluated_at = datetime.fromisoformat(state["evaluated_at"])
        self.last_findings = [Finding.from_json(f) for f in state["findings"]]

    def _fingerprint(self) -> str:
        text = self.name + self.options.model_dump_json() + self.config.model_dump_json()
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def due(self, at: datetime) -> bool:
        """Whether the engine evaluates this check at `at`: unless `every_minutes` is set and the last evaluation
        was in the same `every_minutes` slot of the clock (slots from the Unix epoch plus `phase`, so serve's runs,
        whose times jitter by milliseconds, cron's and a backtest's steps all evaluate at the first time of each slot).
        A run at or before the last evaluation's time is always due: it may see events that came in since."""
        every, last = self.options.every_minutes, self.evaluated_at
        if every is None or last is None or at <= last:
            return True
        slot = timedelta(minutes=every)
        return floor_to(at - self.phase, slot) > floor_to(last - self.phase, slot)

    def prepare(self, data: EvalData) -> None:
        """Compute what `evaluate` needs over the whole range of `data` (once per run)."""

    def evaluate(self, step: Step) -> list[Finding]:
        """The findings at ``step.at``, from data with event time up to ``step.at`` only."""
        raise NotImplementedError

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """How many of the events this check judges the subject by arrived after `since` (whole 5-minute buckets
        up to ``step.at``), and what they are called. The default counts the actions of the subject's agent and
        action; a check whose subject names no agent says what its evidence is."""
        agent_id, action = subject.get("agent_id"), subject.get("action")
        if agent_id is None:
            raise NotImplementedError(f"{self.name}: which events show that its condition cleared?")
        count = activity.actions(agent_id, action, since, step.at)
        return count, f"{action} actions by {agent_id}" if action else f"actions by {agent_id}"

    def clearance(self, step: Step, incident: Incident, activity: Activity) -> Clearance:
        """Asked for an open incident this check has not fired on for ``resolve_after_minutes``: resolved only on
        evidence, enough of the subject's events judged normal; no events keep it open and say so."""
        since = incident.last_fired_at
        count, what = self.fresh_events(step, incident.subject, since, activity)
        when = f"{since.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        if count >= self.options.clear_min_events:
            return Clearance(True, f"{count:,} {what} since {when}, none firing {self.name}")
        if count == 0:
            return Clearance(False, f"no {what} since {when}: nothing shows the condition cleared")
        return Clearance(False, f"only {count:,} {what} since {when}: too few to show the condition cleared "
                                f"(clear_min_events {self.options.clear_min_events})")


REGISTRY: dict[str, type[Check[Any]]] = {}
CheckT = TypeVar("CheckT", bound=Check[Any])


def register(cls: type[CheckT]) -> type[CheckT]:
    """Class decorator: make a check known by its name."""
    if cls.name in REGISTRY:
        raise ValueError(f"two checks are named {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls


Builder = Callable[[], Any]
