"""The agent guard: may an agent act now? Paused by an operator, or by a critical incident that names it.

An agent asks ``GET /v1/agents/{agent_id}/guard`` before acting. It is not allowed while an operator's
pause stands (``agentwatch agent pause``), nor while an unresolved critical incident of a check in
``guard.pause_on`` names it, unless an operator resumed it after that incident opened (an override).
Every pause and resume, by an operator or by agentwatch itself, is a row of ``agent_controls``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from agentwatch.alerts.config import GuardConfig
from agentwatch.checks.config import AgentPolicy
from agentwatch.core.errors import ConfigError
from agentwatch.core.sqlite import SqliteFile
from agentwatch.schemas.incidents import Incident, agents_named

AUTOMATIC_BY = "agentwatch"  # who the automatic pauses and resumes are by; reserved, operators cannot use it
UNRESOLVED = ("open", "acknowledged")

ControlAction = Literal["pause", "resume"]


class GuardDecision(BaseModel):
    """Whether an agent may act now, and if not, why."""

    allowed: bool = Field(description="False: the agent should not act on its own now.")
    reason: str | None = Field(description="Why it is not allowed (null when allowed), e.g. 'INC-12 "
                                           "schema.field_renamed (critical): Lead.deal_stage was renamed'.")
    incident_id: str | None = Field(description="The incident that pauses it; null when allowed or paused by an "
                                                "operator.")
    fail_closed_actions: list[str] = Field(
        default_factory=list, description="The actions the agent's policy forbids or puts under approval "
        "(`forbidden_actions` and `requires_approval` of the config's `agents:` section, `\"*\"` included): a client "
        "that cannot reach the guard refuses these and allows others (agentwatch.client's on_unreachable='auto').")


class AgentControl(BaseModel):
    """One pause or resume of an agent, by an operator or by agentwatch (`by` is then 'agentwatch')."""

    seq: int = Field(description="Order of recording.")
    agent_id: str
    action: ControlAction
    by: str = Field(description="Who: user@host of an operator, or 'agentwatch' for an automatic change.")
    reason: str = Field(description="Why.")
    at: datetime = Field(description="When it was recorded.")
    incident_id: str | None = Field(description="The incident behind an automatic change; null for an operator's.")

    @property
    def automatic(self) -> bool:
        return self.by == AUTOMATIC_BY


def _epoch(at: datetime | None) -> float:
    return (at or datetime.now(UTC)).timestamp()


def _control(row: tuple) -> AgentControl:
    seq, agent_id, action, by, reason, at, incident_id = row
    return AgentControl(seq=seq, agent_id=agent_id, action=action, by=by, reason=reason,
                        at=datetime.fromtimestamp(at, UTC), incident_id=incident_id)


COLUMNS = "seq, agent_id, action, by, reason, at, incident_id"


def _insert(con: sqlite3.Connection, agent_id: str, action: ControlAction, by: str, reason: str, at: float,
            incident_id: str | None) -> AgentControl:
    cursor = con.execute(
        "INSERT INTO agent_controls (agent_id, action, by, reason, at, incident_id) VALUES (?, ?, ?, ?, ?, ?)",
        [agent_id, action, by, reason, at, incident_id])
    return AgentControl(seq=cursor.lastrowid or 0, agent_id=agent_id, action=action, by=by, reason=reason,
                        at=datetime.fromtimestamp(at, UTC), incident_id=incident_id)


class AgentControls:
    """The pause/resume record of the agents of one home (the ``agent_controls`` table of ``alerts_db``)."""

    def __init__(self, db: SqliteFile) -> None:
        self.db = db

    def pause(self, agent_id: str, by: str, reason: str, now: datetime | None = None) -> AgentControl:
        """An operator pauses an agent until they resume it."""
        return self._operator(agent_id, "pause", by, reason, now)

    def resume(self, agent_id: str, by: str, reason: str, now: datetime | None = None) -> AgentControl:
        """An operator resumes an agent: their pause ends, and incidents opened before now no longer pause it."""
        return self._operator(agent_id, "resume", by, reason, now)

    def _operator(self, agent_id: str, action: ControlAction, by: str, reason: str,
                  now: datetime | None) -> AgentControl:
        agent_id, by, reason = agent_id.strip(), by.strip(), (reason or "").strip()
        if not agent_id:
            raise ConfigError(f"{action}: the agent id is empty; give the agent_id its events carry")
        if not reason:
            raise ConfigError(f"{action} {agent_id}: give a reason with --reason (it is recorded with who and when)")
        if not by:
            raise ConfigError(f"{action} {agent_id}: --by is empty; name who is doing it, or leave it out for "
                              "$USER@host")
        if by == AUTOMATIC_BY:
            raise ConfigError(f"{action} {agent_id}: --by {AUTOMATIC_BY!r} is reserved for agentwatch's automatic "
                              "pauses; name yourself")
        with self.db.writing() as con:
            return _insert(con, agent_id, action, by, reason, _epoch(now), None)

    def history(self, agent_id: str | None = None, limit: int = 100) -> list[AgentControl]:
        """Pauses and resumes, newest first; of one agent, or of all."""
        sql = f"SELECT {COLUMNS} FROM agent_controls"
        params: list[object] = []
        if agent_id is not None:
            sql += " WHERE agent_id = ?"
            params.append(agent_id)
        with self.db.reading() as con:
            rows = con.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit]).fetchall()
        return [_control(row) for row in rows]

    def latest_operator(self, agent_id: str) -> AgentControl | None:
        """The last pause or resume of this agent by an operator (not by agentwatch)."""
        with self.db.reading() as con:
            row = con.execute(f"SELECT {COLUMNS} FROM agent_controls WHERE agent_id = ? AND by <> ? "
                              "ORDER BY seq DESC LIMIT 1", [agent_id, AUTOMATIC_BY]).fetchone()
        return _control(row) if row else None


def incident_reason(incident: Incident) -> str:
    """'INC-12 schema.field_renamed (critical): <summary>'."""
    return f"{incident.id} {incident.check} ({incident.severity}): {incident.summary}"


def _pauses(incident: Incident, guard: GuardConfig) -> bool:
    return incident.status in UNRESOLVED and incident.severity == "critical" and guard.pauses(incident.check)


def _opening_order(incident: Incident) -> tuple[datetime, int, str]:
    number = incident.id.split("-")[-1]
    return incident.opened_at, int(number) if number.isdigit() else 0, incident.id


def pausing_incidents(incidents: list[Incident], guard: GuardConfig) -> dict[str, list[Incident]]:
    """agent_id -> the unresolved critical incidents of guarded checks naming it, earliest opened first."""
    paused: dict[str, list[Incident]] = {}
    for incident in sorted(incidents, key=_opening_order):
        if _pauses(incident, guard):
            for agent_id in agents_named(incident):
                paused.setdefault(agent_id, []).append(incident)
    return paused


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fail_closed_actions(policy: AgentPolicy) -> list[str]:
    """The actions a client refuses when it cannot reach the guard: those the policy forbids or wants approved."""
    return sorted({*policy.forbidden_actions, *policy.requires_approval})


def decide(agent_id: str, incidents: list[Incident], controls: AgentControls, guard: GuardConfig,
           policy: AgentPolicy | None = None) -> GuardDecision:
    """May `agent_id` act now? `incidents`: the unresolved ones (others are ignored). `policy`: the agent's
    effective policy, whose fail-closed actions the decision carries."""
    fail_closed = fail_closed_actions(policy) if policy else []
    operator = controls.latest_operator(agent_id)
    if operator is not None and operator.action == "pause":
        return GuardDecision(allowed=False, incident_id=None, fail_closed_actions=fail_closed,
                             reason=f"paused by {operator.by} at {_when(operator.at)}: {operator.reason}")
    for incident in pausing_incidents(incidents, guard).get(agent_id, []):
        if operator is not None and operator.at > incident.opened_at:
            continue  # an operator resumed the agent after this incident opened: their override stands
        return GuardDecision(allowed=False, reason=incident_reason(incident), incident_id=incident.id,
                             fail_closed_actions=fail_closed)
    return GuardDecision(allowed=True, reason=None, incident_id=None, fail_closed_actions=fail_closed)


def _why_no_longer(incident_id: str, agent_id: str, incidents: dict[str, Incident], guard: GuardConfig) -> str:
    incident = incidents.get(incident_id)
    if incident is None:
        return f"{incident_id} resolved"
    if incident.status == "resolved":
        return f"{incident_id} resolved: {incident.status_note}" if incident.status_note else f"{incident_id} resolved"
    if incident.severity != "critical":
        return f"{incident_id} is now {incident.severity}, not critical"
    if not guard.pauses(incident.check):
        return f"{incident_id}: guard.pause_on no longer covers {incident.check}"
    return f"{incident_id} no longer names {agent_id}"


def record_automatic_changes(db: SqliteFile, incidents: list[Incident], guard: GuardConfig,
                             now: datetime | None = None,
                             fetch: Callable[[list[str]], list[Incident]] | None = None) -> list[AgentControl]:
    """Record agentwatch's own pauses and resumes since the last call; returns the rows added.

    `incidents` must hold every unresolved incident (resolved ones may be included): an agent whose last
    automatic record is a pause and that no incident pauses any more is resumed. An agent paused by an
    incident gets a pause naming it; when that incident stops pausing while another still does, a new pause
    names the other. Nothing changed, nothing added, so calling it twice adds nothing. Operator overrides are
    not consulted: these rows say what the incidents demand, `decide` weighs them against the operators.
    `fetch(ids)` reads incidents missing from `incidents` (resolved ones), so a resume says what resolved them.
    """
    paused = pausing_incidents(incidents, guard)
    by_id = {incident.id: incident for incident in incidents}
    at = _epoch(now)
    added: list[AgentControl] = []
    with db.writing() as con:
        latest = {agent_id: (action, incident_id) for agent_id, action, incident_id in con.execute(
            "SELECT agent_id, action, incident_id FROM agent_controls WHERE seq IN "
            "(SELECT max(seq) FROM agent_controls WHERE by = ? GROUP BY agent_id)", [AUTOMATIC_BY])}
        for agent_id in sorted(paused):
            action, incident_id = latest.get(agent_id, ("resume", None))
            if action == "pause" and any(i.id == incident_id for i in paused[agent_id]):
                continue
            cause = paused[agent_id][0]
            added.append(_insert(con, agent_id, "pause", AUTOMATIC_BY, incident_reason(cause), at, cause.id))
        lifted = [i for a, (action, i) in latest.items() if action == "pause" and a not in paused and i]
        if fetch is not None:
            by_id.update({i.id: i for i in fetch([i for i in lifted if i not in by_id])})
        for agent_id, (action, incident_id) in sorted(latest.items()):
            if action == "pause" and agent_id not in paused:
                reason = _why_no_longer(incident_id or "?", agent_id, by_id, guard)
                added.append(_insert(con, agent_id, "resume", AUTOMATIC_BY, reason, at, incident_id))
    return added
