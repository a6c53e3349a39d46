"""What routes and silences match on: an incident's properties as lists of strings."""

from __future__ import annotations

from agentwatch.schemas.incidents import Incident, agents_named


def incident_properties(incident: Incident) -> dict[str, list[str]]:
    """check, severity, agent_id, object, field, action and id; a rename's field matches its old and new name."""
    properties: dict[str, list[str]] = {"check": [incident.check], "severity": [incident.severity],
                                        "agent_id": agents_named(incident), "id": [incident.id]}
    for key in ("object", "action"):
        if key in incident.subject:
            properties[key] = [incident.subject[key]]
    if "field" in incident.subject:
        field = incident.subject["field"]
        properties["field"] = [field, *(part.strip() for part in field.split("->"))] if "->" in field else [field]
    return properties
