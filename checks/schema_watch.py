"""schema.watcher_blind: a CRM schema poller that keeps failing, so a rename there would go unseen.

The pollers (``crm:`` in agentwatch.yaml, docs/crm.md) record every poll in the home; this check reads those
records, so a poller that fails shows as an incident instead of as a CRM whose schema never changes. It judges each
evaluation time from the polls up to it, so a backtest opens what a live run opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import ClassVar

import numpy as np

from agentwatch.checks.activity import Activity
from agentwatch.checks.base import Check, CheckOptions, Clearance, Finding, Step, register
from agentwatch.checks.data import EvalData, from_micros, to_micros
from agentwatch.collector.crm.state import PollState, poller_name
from agentwatch.core.severity import Severity
from agentwatch.schemas.incidents import Incident


@dataclass(frozen=True)
class _Polls:
    """One poller's polls in time order."""

    source: str
    object: str
    at_us: np.ndarray  # poll times, microseconds since the epoch
    ok: np.ndarray
    last_ok: np.ndarray  # per poll: the index of the latest successful poll at or before it, -1 for none
    errors: list[str | None]
    grace_minutes: np.ndarray

    def upto(self, at: datetime) -> int:
        """The index of the latest poll at or before `at`, -1 for none."""
        return int(np.searchsorted(self.at_us, to_micros(at), side="right")) - 1


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@register
class WatcherBlind(Check[CheckOptions]):
    """A CRM schema poller has failed for longer than ``crm.failing_grace_minutes``: renames and removals in that
    CRM object go unseen until it polls again. A warning, so a guard pausing agents on critical schema incidents
    does not stop them for a watcher's outage."""

    name = "schema.watcher_blind"
    family: ClassVar[str] = "schema"
    clears_when = (
        "A later successful poll of the same object (the pollers record each poll in the home). Polls that keep "
        "failing keep it open, and so does no poll at all (a server stopped, the crm: section removed): it never "
        "resolves because the pollers went quiet, and it says what it waits for."
    )

    def prepare(self, data: EvalData) -> None:
        rows = PollState(data.home).polls(data.last) if data.home is not None else []
        self.polls: dict[str, _Polls] = {}
        for poller, group in groupby(rows, key=itemgetter(0)):  # the rows come by poller, then time
            mine = list(group)
            ok = np.array([row[4] for row in mine], dtype=bool)
            indexes = np.where(ok, np.arange(len(mine)), -1)
            self.polls[poller] = _Polls(
                source=mine[0][1], object=mine[0][2], at_us=np.array([to_micros(row[3]) for row in mine]),
                ok=ok, last_ok=np.maximum.accumulate(indexes), errors=[row[5] for row in mine],
                grace_minutes=np.array([row[6] for row in mine], dtype=float))

    def evaluate(self, step: Step) -> list[Finding]:
        findings = []
        for poller, polls in self.polls.items():
            last = polls.upto(step.at)
            if last < 0 or polls.ok[last]:
                continue
            first_failed = int(polls.last_ok[last]) + 1
            since = from_micros(polls.at_us[first_failed])
            grace = timedelta(minutes=float(polls.grace_minutes[last]))
            if step.at - since < grace:
                continue
            failed = last - first_failed + 1
            success = int(polls.last_ok[last])
            findings.append(Finding(
                check=self.name, subject={"source": polls.source, "object": polls.object}, severity=Severity.warning,
                summary=f"the {polls.source} {polls.object} schema poller has failed since {_when(since)} ({failed} "
                        f"polls): schema changes there go unseen; last error: {polls.errors[last]}",
                started_at=since, affected=failed,
                evidence={"source": polls.source, "object": polls.object, "poller": poller,
                          "failing_since": since.isoformat(), "failed_polls": failed,
                          "last_error": polls.errors[last], "last_poll_at": from_micros(polls.at_us[last]).isoformat(),
                          "last_success_at": from_micros(polls.at_us[success]).isoformat() if success >= 0 else None,
                          "grace_minutes": float(polls.grace_minutes[last])},
            ))
        return findings

    def clearance(self, step: Step, incident: Incident, activity: Activity) -> Clearance:
        """Resolved by a successful poll after the incident last fired; no poll at all keeps it open."""
        source = incident.subject.get("source") or incident.evidence.get("source", "")
        object_name = incident.subject.get("object", "")
        poller, since = poller_name(source, object_name), incident.last_fired_at
        polls = self.polls.get(poller)
        if polls is not None:
            start = int(np.searchsorted(polls.at_us, to_micros(since), side="right"))
            end = polls.upto(step.at) + 1
            succeeded = np.flatnonzero(polls.ok[start:end])
            if succeeded.size:
                at = from_micros(polls.at_us[start + int(succeeded[0])])
                return Clearance(True, f"the {poller} poller succeeded at {_when(at)}")
            if end > start:
                return Clearance(False, f"all {end - start} polls of {poller} since {_when(since)} failed")
        return Clearance(False, f"no poll of {poller} since {_when(since)}: nothing shows the poller sees the CRM "
                                "again (does `agentwatch serve` run with the crm: section?)")
