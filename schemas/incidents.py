"""The incident: what a check opens when it fires, as ``agentwatch incidents --json`` prints it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentwatch.core.severity import SeverityField

IncidentStatus = Literal["open", "acknowledged", "resolved"]
IncidentSeverity = SeverityField


class Incident(BaseModel):
    """One anomaly on one subject, from first firing to resolution."""

    model_config = ConfigDict(extra="forbid", title="agentwatch incident v1")
    id: str = Field(description="Stable id, e.g. INC-12.")
    check: str = Field(description="The check that fired, e.g. schema.field_renamed.")
    severity: IncidentSeverity
    status: IncidentStatus
    opened_at: datetime = Field(description="The evaluation time that first fired.")
    started_at: datetime = Field(description="Best estimate, by event time, of when the anomaly began.")
    last_fired_at: datetime = Field(description="The latest evaluation time that fired.")
    resolved_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = Field(None, description="Who acknowledged it: user@host (`agentwatch incident ack`) "
                                        "or the name and id of the API key (`POST /v1/incidents/{id}/ack`).")
    resolved_by: str | None = Field(None, description="Who resolved it by hand, as acknowledged_by; null when its "
                                    "check resolved it.")
    operator_note: str | None = Field(None, description="What the person who acknowledged or resolved it wrote "
                                      "(the `note` of the API's ack or resolve), the latest one.")
    subject: dict[str, str] = Field(description="agent_id, action, field, object as they apply.")
    summary: str = Field(description="One sentence a RevOps person understands.")
    evidence: dict[str, Any] = Field(default_factory=dict, description="The numbers behind the finding.")
    sample_event_ids: list[str] = Field(default_factory=list)
    affected: int = Field(description="How many events or records.")
    caused_by: list[str] = Field(default_factory=list, description="Ids of incidents that explain this one.")
    effects: list[str] = Field(default_factory=list, description="Ids of incidents this one explains.")
    status_note: str | None = Field(None, description="Why it has its status: while open and its check quiet, what "
                                    "keeps it open (e.g. no reads of the field since a time); once resolved, the "
                                    "evidence that the condition cleared, or who resolved it.")


def agents_named(incident: Incident) -> list[str]:
    """The agents an incident is about: its subject's agent, then those its evidence names (e.g. the agents
    reading a renamed field)."""
    agents = [a for a in incident.evidence.get("agents", []) if isinstance(a, str)]
    if "agent_id" in incident.subject:
        agents.insert(0, incident.subject["agent_id"])
    return list(dict.fromkeys(agents))
