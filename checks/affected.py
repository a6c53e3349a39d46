"""What an incident's ``affected`` counts, in words: the unit depends on the check (``2 agents reading the field``,
``724 reads on records that had a value``). The dashboard's incident page and ``agentwatch incident show`` both
say it this way."""

from __future__ import annotations

from agentwatch.schemas.incidents import Incident

# What `affected` counts, per check (singular, plural); a family's `x.*` entry covers the rest of it.
AFFECTED_UNITS: dict[str, tuple[str, str]] = {
    "schema.*": ("agent reading the field", "agents reading the field"),
    "schema.watcher_blind": ("failed poll", "failed polls"),
    "quality.null_spike": ("read on a record that had a value", "reads on records that had a value"),
    "quality.duplicate": ("duplicate action", "duplicate actions"),
    "quality.identity_collision": ("collision", "collisions"),
    "quality.expectation_failed": ("failing row", "failing rows"),
    "volume.action_spike": ("event above the usual", "events above the usual"),
    "volume.action_drop": ("missing event", "missing events"),
    "errors.error_burst": ("failed event", "failed events"),
    "policy.*": ("record", "records"),
    "workflow.invalid_transition": ("forbidden transition", "forbidden transitions"),
    "workflow.sla_breach": ("record past the SLA", "records past the SLA"),
    "workflow.partial_failure": ("action without its CRM write", "actions without their CRM write"),
    "outcome.routing_accuracy_drop": ("reassigned lead", "reassigned leads"),
    "outcome.requalification_spike": ("requalified lead", "requalified leads"),
    "outcome.calibration": ("decision proven wrong", "decisions proven wrong"),
    "outcome.write_reverted": ("write set back", "writes set back"),
    "drift.distribution": ("event in the drifted window", "events in the drifted window"),
    "approval.queue_backlog": ("overdue request", "overdue requests"),
    "approval.latency": ("slow approval", "slow approvals"),
    "approval.rubber_stamp": ("approval within seconds", "approvals within seconds"),
}


def affected_text(incident: Incident) -> str:
    """``Affected`` with its unit, which depends on the check: ``2 agents reading the field``, ``724 reads ...``."""
    one, many = AFFECTED_UNITS.get(incident.check) or AFFECTED_UNITS.get(incident.check.split(".")[0] + ".*") \
        or ("event or record", "events or records")
    if incident.check == "quality.null_spike" and not incident.evidence.get("should_have_value"):
        one, many = "null read", "null reads"
    return f"{incident.affected:,} {one if incident.affected == 1 else many}"
