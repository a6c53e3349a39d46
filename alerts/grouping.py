"""Which incidents go out together: a root and everything it explains, and a burst of one check.

Two incidents share a group when one explains the other (``caused_by``: a rename, the null spike it caused,
the drift that followed), or when both are roots of the same check opened within ``group_wait`` of each
other (seven agents spiking at once on a webinar is one story, not seven pages). A group is named by its
first incident (the key). An incident's group is decided when it is first seen and then kept, so a group
that was notified keeps its members; the one exception is an incident whose cause was linked after it was
first seen, whose own group was never sent: it moves to its cause's group.
"""

from __future__ import annotations

from datetime import timedelta

from agentwatch.checks.incidents import incident_number
from agentwatch.schemas.incidents import Incident


def assign_groups(incidents: dict[str, Incident], assigned: dict[str, str], sent_keys: set[str],
                  group_wait: timedelta) -> dict[str, str]:
    """The group key of every incident in `incidents`, extending `assigned` (earlier decisions, kept).

    Returns only the assignments that are new or changed, to be stored."""
    changed: dict[str, str] = {}
    for incident in sorted(incidents.values(), key=lambda i: incident_number(i.id)):
        current = assigned.get(incident.id)
        cause_group = _cause_group(incident, incidents, assigned)
        if current is not None:
            # A link found after the incident was first seen: join the cause's group if ours was never sent.
            if cause_group and current == incident.id and current != cause_group and current not in sent_keys:
                assigned[incident.id] = changed[incident.id] = cause_group
            continue
        key = cause_group or _burst_group(incident, incidents, assigned, group_wait) or incident.id
        assigned[incident.id] = changed[incident.id] = key
    return changed


def _cause_group(incident: Incident, incidents: dict[str, Incident], assigned: dict[str, str]) -> str | None:
    """The group of the incident's earliest cause (the cause's own id when its group is not known yet)."""
    if not incident.caused_by:
        return None
    cause = min(incident.caused_by, key=incident_number)
    seen = {incident.id}
    while cause not in assigned and cause in incidents and incidents[cause].caused_by and cause not in seen:
        seen.add(cause)
        cause = min(incidents[cause].caused_by, key=incident_number)
    return assigned.get(cause, cause)


def _burst_group(incident: Incident, incidents: dict[str, Incident], assigned: dict[str, str],
                 group_wait: timedelta) -> str | None:
    """The group of a root of the same check opened within `group_wait` of this one, if any."""
    if incident.caused_by:
        return None
    for other_id, key in assigned.items():
        if other_id != key or key == incident.id or key not in incidents:
            continue
        other = incidents[key]
        if other.check == incident.check and not other.caused_by \
                and abs(other.opened_at - incident.opened_at) <= group_wait:
            return key
    return None
