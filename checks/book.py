"""The incidents of one run, in memory: findings open or update them; evidence that the condition cleared
resolves them (silence never does: an incident whose check is quiet stays open until its check sees the
condition gone on data that exists, and says what it waits for)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from agentwatch.checks.base import SAMPLE_IDS, Clearance, Finding, subject_key
from agentwatch.core.severity import Severity
from agentwatch.schemas.incidents import Incident


class IncidentBook:
    """Open/update/resolve logic; the engine saves ``touched`` incidents to the store at the end."""

    def __init__(self, unresolved: list[Incident], next_number: int) -> None:
        self.first_number = next_number
        self.next_number = next_number
        self.by_id: dict[str, Incident] = {i.id: i for i in unresolved}
        self.open_by_key: dict[str, str] = {subject_key(i.check, i.subject): i.id for i in unresolved}
        self.touched: set[str] = set()

    def unresolved(self) -> list[Incident]:
        return [self.by_id[i] for i in self.open_by_key.values()]

    def open_incidents(self) -> dict[str, Incident]:
        """subject key -> each incident not resolved."""
        return {key: self.by_id[i] for key, i in self.open_by_key.items()}

    def apply(self, findings: list[Finding], at: datetime, resolve_after: Mapping[str, timedelta],
              evaluated_checks: set[str], clearance: Callable[[Incident], Clearance]) -> list[Incident]:
        """Record one evaluation's findings; returns the incidents opened at this step.

        An open incident its check did not fire on for the check's ``resolve_after`` is resolved when
        `clearance(incident)` shows, on data, that its condition cleared; otherwise it stays open with the
        clearance's note saying what it waits for."""
        opened = []
        fired = set()
        for finding in findings:
            key = finding.key
            fired.add(key)
            if key in self.open_by_key:
                self._update(self.by_id[self.open_by_key[key]], finding, at)
            else:
                opened.append(self._open(finding, at))
        for key, incident_id in list(self.open_by_key.items()):
            incident = self.by_id[incident_id]
            if key in fired or incident.check not in evaluated_checks:
                continue
            if at - incident.last_fired_at < resolve_after.get(incident.check, timedelta(hours=1)):
                continue
            seen = clearance(incident)
            if seen.cleared:
                self._put(incident.model_copy(update={"status": "resolved", "resolved_at": at,
                                                      "status_note": seen.note}))
                del self.open_by_key[key]
            elif seen.note != incident.status_note:
                self._put(incident.model_copy(update={"status_note": seen.note}))
        return opened

    def _open(self, finding: Finding, at: datetime) -> Incident:
        incident = Incident(
            id=f"INC-{self.next_number}", check=finding.check, severity=finding.severity, status="open",
            opened_at=at, started_at=min(finding.started_at, at), last_fired_at=at, subject=finding.subject,
            summary=finding.summary, evidence=finding.evidence, sample_event_ids=finding.sample_event_ids[:SAMPLE_IDS],
            affected=finding.affected,
        )
        self.next_number += 1
        self.open_by_key[finding.key] = incident.id
        self._put(incident)
        return incident

    def _update(self, incident: Incident, finding: Finding, at: datetime) -> None:
        severity = max(Severity(incident.severity), finding.severity)
        self._put(incident.model_copy(update={
            "severity": severity, "last_fired_at": at, "summary": finding.summary, "status_note": None,
            "evidence": remembered(incident.evidence, finding.evidence),
            "affected": max(incident.affected, finding.affected),
            "sample_event_ids": finding.sample_event_ids[:SAMPLE_IDS] or incident.sample_event_ids,
            "started_at": min(incident.started_at, finding.started_at),
        }))

    def link(self, cause_id: str, effect_id: str) -> None:
        """Record that `cause_id` explains `effect_id` (both directions, once)."""
        cause, effect = self.by_id[cause_id], self.by_id[effect_id]
        if effect_id in cause.effects:
            return
        self._put(cause.model_copy(update={"effects": [*cause.effects, effect_id]}))
        self._put(effect.model_copy(update={"caused_by": [*effect.caused_by, cause_id]}))

    def _put(self, incident: Incident) -> None:
        self.by_id[incident.id] = incident
        self.touched.add(incident.id)


def remembered(kept: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """An incident's evidence after a new finding: the new numbers, but every agent it ever named is still named
    (the guard pauses the agents an incident names; a window that slid past them must not release them)."""
    merged = {**kept, **new}
    if "agents" in kept or "agents" in new:
        merged["agents"] = list(dict.fromkeys([*kept.get("agents", []), *new.get("agents", [])]))
    return merged
