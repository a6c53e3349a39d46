"""Score a run: which injected faults an incident caught and how late, which incidents match no fault."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from agentwatch.schemas.incidents import Incident
from scenarios.faults import Fault

PAGES = ("warning", "critical")  # severities that reach a person; info incidents are a log, not a page
DELAY_TARGETS = {"schema": timedelta(minutes=30), "null": timedelta(minutes=30), "volume": timedelta(minutes=30),
                 "errors": timedelta(minutes=30), "policy": timedelta(minutes=30),
                 # One person's second lead shows only once an agent works it: outreach goes out 1 min to 4 h after
                 # a lead arrives, so the collisions of a broken dedup step come in over hours, and the rate rule
                 # waits for five beyond chance.
                 "quality.identity_collision": timedelta(hours=6),
                 "outcome": timedelta(hours=24), "drift": timedelta(hours=24),
                 # A missed run is known only once the job is later than its own jitter allows (up to 3 h here,
                 # times 1.5, from its due time), and a stalled approval only once requests wait past their limit:
                 # both are slow by nature.
                 "volume.scheduled": timedelta(hours=8), "approval": timedelta(hours=8)}
MAX_FALSE_PER_WEEK = 0.5


def matches(fault: Fault, incident: Incident) -> bool:
    """The incident is of a check that should catch the fault, pages someone, and names the fault's subject."""
    if incident.check not in fault.checks or incident.severity not in PAGES:
        return False
    for key, wanted in fault.subject.items():
        have = incident.subject.get(key)
        if have is None:
            continue  # a subject without the key does not contradict it (e.g. an agent-wide drop)
        if (wanted.lower() not in have.lower()) if key == "field" else (have != wanted):
            return False
    return True


@dataclass
class Detection:
    """One injected fault and the first incident that caught it, if any."""

    fault: Fault
    scenario: str
    incident: Incident | None = None
    already_open: bool = False  # an incident on the same subject was open before the fault

    @property
    def delay(self) -> timedelta | None:
        if self.incident is None:
            return None
        return max(self.incident.opened_at - self.fault.at, timedelta(0))

    def as_dict(self) -> dict[str, Any]:
        inc = self.incident
        return {
            "scenario": self.scenario, "family": self.fault.family, "fault": self.fault.name,
            "injected_at": self.fault.at.isoformat(), "detected": inc is not None,
            "delay_minutes": None if self.delay is None else round(self.delay.total_seconds() / 60, 1),
            "incident": None if inc is None else {
                "id": inc.id, "check": inc.check, "severity": inc.severity, "subject": inc.subject,
                "opened_at": inc.opened_at.isoformat(), "started_at": inc.started_at.isoformat(),
                "summary": inc.summary},
            "already_open": self.already_open,
        }


def detect(fault: Fault, scenario: str, incidents: list[Incident]) -> Detection:
    """The earliest incident opened at or after the fault that matches it."""
    found = sorted((i for i in incidents if matches(fault, i)), key=lambda i: i.opened_at)
    after = [i for i in found if i.opened_at >= fault.at]
    if after:
        return Detection(fault, scenario, after[0])
    open_then = [i for i in found if i.last_fired_at >= fault.at]
    if open_then:  # it was firing on this subject already; the fault kept it open
        return Detection(fault, scenario, open_then[0], already_open=True)
    return Detection(fault, scenario)


def unexplained(faults: tuple[Fault, ...], incidents: list[Incident]) -> list[Incident]:
    """Paging incidents that match none of the run's faults."""
    return [i for i in incidents if i.severity in PAGES and not any(matches(f, i) for f in faults)]


def describe(incident: Incident) -> dict[str, Any]:
    return {"id": incident.id, "check": incident.check, "severity": incident.severity, "subject": incident.subject,
            "opened_at": incident.opened_at.isoformat(), "summary": incident.summary}


def _minutes(delay: timedelta | None) -> str:
    if delay is None:
        return "—"
    minutes = delay.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 180 else f"{minutes / 60:.1f} h"


@dataclass
class FamilyResult:
    family: str
    detected: int
    faults: int
    median_delay: timedelta | None
    target: timedelta | None

    @property
    def passed(self) -> bool:
        if self.detected < self.faults:
            return False
        return self.target is None or (self.median_delay is not None and self.median_delay < self.target)


def by_family(detections: list[Detection]) -> list[FamilyResult]:
    results = []
    for family in dict.fromkeys(d.fault.family for d in detections):
        mine = [d for d in detections if d.fault.family == family]
        delays = [d.delay for d in mine if d.delay is not None]
        median = timedelta(seconds=statistics.median(x.total_seconds() for x in delays)) if delays else None
        results.append(FamilyResult(family, len(delays), len(mine), median, DELAY_TARGETS.get(family)))
    return results


def markdown(detections: list[Detection], false_incidents: list[Incident] | None, weeks: int,
             faults_table: bool = True) -> str:
    """The results as Markdown tables, ready for docs/benchmarks.md (per family, then per fault if asked)."""
    lines = ["| family | detected | median delay | target | met |", "|---|---|---|---|---|"]
    for r in by_family(detections):
        target = f"< {_minutes(r.target)}" if r.target else "detected"
        lines.append(f"| {r.family} | {r.detected}/{r.faults} | {_minutes(r.median_delay)} | {target} | "
                     f"{'yes' if r.passed else '**no**'} |")
    if false_incidents is not None:
        per_week = len(false_incidents) / weeks
        lines.append(f"| false warning/critical incidents per clean week | {len(false_incidents)} in {weeks} "
                     f"week{'s' if weeks > 1 else ''} | {per_week:.1f} / week | <= {MAX_FALSE_PER_WEEK:.1f} | "
                     f"{'yes' if per_week <= MAX_FALSE_PER_WEEK else '**no**'} |")
    if not faults_table:
        return "\n".join(lines)
    lines += ["", "| family | fault | injected | caught by | severity | delay |", "|---|---|---|---|---|---|"]
    for d in detections:
        inc = d.incident
        caught = "**missed**" if inc is None else f"`{inc.check}` {subject_text(inc.subject)}"
        if d.already_open:
            caught += " (already open)"
        lines.append(f"| {d.fault.family} | {d.fault.name} | {d.fault.at:%a %H:%M} | {caught} | "
                     f"{inc.severity if inc else '—'} | {_minutes(d.delay)} |")
    return "\n".join(lines)


def subject_text(subject: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(subject.items()))


def passed(detections: list[Detection], false_incidents: list[Incident] | None, weeks: int) -> bool:
    families_ok = all(r.passed for r in by_family(detections))
    noise_ok = false_incidents is None or len(false_incidents) / weeks <= MAX_FALSE_PER_WEEK
    return families_ok and noise_ok
