"""Snapshots of the CRM's Lead object, as a poller that describes it every 15 minutes would send them.

The poller sends a snapshot when the description changed since the last poll, and one every day at
00:05 even when nothing changed (a heartbeat that proves the poller is alive). Identical polls in
between are not sent: they carry no information and would only grow the store.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from scenarios.timeline import Timeline

POLL = timedelta(minutes=15)
DAILY = timedelta(minutes=5)
BENIGN_FIELD = "Twitter_Handle__c"
_STAGES = ["prospecting", "proposal", "negotiation", "closed_won_pending"]


def _field(name: str, type_: str, label: str, nullable: bool = True, values: list[str] | None = None) -> dict:
    field: dict = {"name": name, "type": type_, "nullable": nullable, "label": label}
    if values is not None:
        field["picklist_values"] = values
    return field


def lead_fields(renamed: bool, with_benign_field: bool) -> list[dict]:
    """The Lead object's fields; deal_stage and opportunity_id come from a deal-sync integration."""
    fields = [
        _field("Id", "id", "Lead ID", nullable=False),
        _field("FirstName", "string", "First Name"),
        _field("LastName", "string", "Last Name", nullable=False),
        _field("Email", "email", "Email"),
        _field("Company", "string", "Company", nullable=False),
        _field("Industry", "picklist", "Industry",
               values=["Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Education",
                       "Logistics"]),
        _field("NumberOfEmployees", "integer", "Employees"),
        _field("LeadSource", "picklist", "Lead Source", values=["web", "form", "webinar", "referral"]),
        _field("Status", "picklist", "Lead Status", nullable=False,
               values=["new", "enriched", "qualified", "disqualified", "routed", "nurturing"]),
        _field("Region__c", "picklist", "Region", values=["NA", "EMEA", "APAC"]),
        _field("Segment__c", "picklist", "Segment", values=["smb", "mid-market", "enterprise"]),
        _field("OwnerId", "reference", "Owner ID", nullable=False),
        _field("opportunity_stage" if renamed else "deal_stage", "picklist", "Deal Stage", values=_STAGES),
        _field("opportunity_id", "reference", "Opportunity"),
        _field("CreatedDate", "datetime", "Created Date", nullable=False),
    ]
    if with_benign_field:
        fields.append(_field(BENIGN_FIELD, "string", "Twitter Handle"))
    return fields


def _next_poll(at: datetime) -> datetime:
    """The first poll at or after `at` (polls run at :00, :15, :30 and :45)."""
    floor = at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
    return floor if floor == at else floor + POLL


def snapshots(timeline: Timeline, start: datetime, end: datetime, rename_at: datetime | None = None,
              benign: bool = True) -> list[dict]:
    """The snapshots sent in [start, end): daily heartbeats plus one at the first poll after each change."""
    changes = [at for at in (rename_at, timeline.benign_field_at if benign else None) if at is not None]
    times = {_next_poll(at) for at in changes}
    day = timeline.start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < timeline.end:
        times.add(day + DAILY)
        day += timedelta(days=1)
    result = []
    for at in sorted(t for t in times if start <= t < end):
        renamed = rename_at is not None and at >= rename_at
        with_benign = benign and at >= timeline.benign_field_at
        result.append({"taken_at": at.isoformat(), "source": "salesforce", "object": "Lead",
                       "fields": lead_fields(renamed, with_benign)})
    return result
