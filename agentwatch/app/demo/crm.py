"""The simulated Salesforce org's schema: Lead and Opportunity snapshots over the month.

A snapshot of each object is taken every day at 00:05 UTC, and one more of an object right after
a metadata change to it, the way a change-data-capture listener would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEAL_STAGE_VALUES = ["prospecting", "proposal", "negotiation", "closed_won_pending"]
LEAD_STATUS_VALUES = ["new", "enriched", "qualified", "disqualified", "routed", "nurturing"]
BENIGN_FIELD = "Twitter_Handle__c"
BENIGN_DAY = 5  # day index on which the unused field is added
BENIGN_TIME = timedelta(hours=14, minutes=20)
RENAME_TIME = timedelta(hours=10, minutes=40)

_SOURCE_TYPES = {
    "id": "id",
    "string": "string",
    "email": "email",
    "phone": "phone",
    "url": "url",
    "picklist": "picklist",
    "integer": "int",
    "number": "currency",
    "reference": "reference",
    "boolean": "boolean",
    "datetime": "datetime",
    "date": "date",
}


def _field(name: str, type_: str, label: str, nullable: bool = True, values: list[str] | None = None) -> dict:
    field = {"name": name, "type": type_, "nullable": nullable, "label": label}
    if values is not None:
        field["picklist_values"] = values
    field["source_type"] = _SOURCE_TYPES[type_]
    return field


def lead_fields(renamed: bool, with_benign_field: bool) -> list[dict]:
    """The Lead object's fields; the deal-sync integration's fields are snake_case, as it created them."""
    fields = [
        _field("Id", "id", "Lead ID", nullable=False),
        _field("FirstName", "string", "First Name"),
        _field("LastName", "string", "Last Name", nullable=False),
        _field("Email", "email", "Email"),
        _field("Phone", "phone", "Phone"),
        _field("Title", "string", "Title"),
        _field("Company", "string", "Company", nullable=False),
        _field("Website", "url", "Website"),
        _field(
            "Industry",
            "picklist",
            "Industry",
            values=[
                "Software",
                "Financial Services",
                "Healthcare",
                "Manufacturing",
                "Retail",
                "Education",
                "Logistics",
                "Media",
                "Professional Services",
            ],
        ),
        _field("NumberOfEmployees", "integer", "Employees"),
        _field("AnnualRevenue", "number", "Annual Revenue"),
        _field("LeadSource", "picklist", "Lead Source", values=["web", "form", "webinar", "referral"]),
        _field("Status", "picklist", "Lead Status", nullable=False, values=LEAD_STATUS_VALUES),
        _field("Rating", "picklist", "Rating", values=["Hot", "Warm", "Cold"]),
        _field("Country", "string", "Country"),
        _field("Region__c", "picklist", "Region", values=["NA", "EMEA", "APAC"]),
        _field("Segment__c", "picklist", "Segment", values=["smb", "mid-market", "enterprise"]),
        _field("OwnerId", "reference", "Owner ID", nullable=False),
        _field("IsConverted", "boolean", "Converted", nullable=False),
        _field("opportunity_id", "reference", "Open Opportunity"),
        # The field RevOps renames: same type, label and values, only the API name changes.
        _field(
            "opportunity_stage" if renamed else "deal_stage",
            "picklist",
            "Deal Stage",
            values=list(DEAL_STAGE_VALUES),
        ),
        _field("CreatedDate", "datetime", "Created Date", nullable=False),
        _field("LastModifiedDate", "datetime", "Last Modified Date", nullable=False),
    ]
    if with_benign_field:
        fields.append(_field(BENIGN_FIELD, "string", "Twitter Handle"))
    return fields


def opportunity_fields() -> list[dict]:
    """The Opportunity object's fields; they do not change during the month."""
    return [
        _field("Id", "id", "Opportunity ID", nullable=False),
        _field("Name", "string", "Opportunity Name", nullable=False),
        _field("AccountId", "reference", "Account ID"),
        _field(
            "StageName",
            "picklist",
            "Stage",
            nullable=False,
            values=[*DEAL_STAGE_VALUES, "closed_won", "closed_lost"],
        ),
        _field("Amount", "number", "Amount"),
        _field("CloseDate", "date", "Close Date", nullable=False),
        _field("Probability", "number", "Probability (%)"),
        _field("OwnerId", "reference", "Owner ID", nullable=False),
        _field("LeadSource", "picklist", "Lead Source", values=["web", "form", "webinar", "referral"]),
        _field("Type", "picklist", "Type", values=["New Business", "Expansion", "Renewal"]),
        _field(
            "ForecastCategoryName",
            "picklist",
            "Forecast Category",
            values=["Pipeline", "Best Case", "Commit", "Closed", "Omitted"],
        ),
        _field("IsClosed", "boolean", "Closed", nullable=False),
        _field("IsWon", "boolean", "Won", nullable=False),
        _field("CreatedDate", "datetime", "Created Date", nullable=False),
        _field("LastModifiedDate", "datetime", "Last Modified Date", nullable=False),
    ]


@dataclass(frozen=True)
class SchemaTimeline:
    """When the org's schema changes during the simulated month."""

    start: datetime
    days: int
    rename_at: datetime
    benign_at: datetime | None

    def snapshots(self) -> list[tuple[datetime, str]]:
        """(taken_at, object) of every snapshot, in time order."""
        taken = [
            (self.start + timedelta(days=d, minutes=5), obj)
            for d in range(self.days)
            for obj in ("Lead", "Opportunity")
        ]
        taken.append((self.rename_at, "Lead"))
        if self.benign_at is not None:
            taken.append((self.benign_at, "Lead"))
        return sorted(taken)

    def fields(self, taken_at: datetime, obj: str) -> list[dict]:
        """The fields of ``obj`` as a snapshot at ``taken_at`` sees them."""
        if obj == "Opportunity":
            return opportunity_fields()
        benign = self.benign_at is not None and taken_at >= self.benign_at
        return lead_fields(renamed=taken_at >= self.rename_at, with_benign_field=benign)


def schema_timeline(start: datetime, days: int, rename_day: int) -> SchemaTimeline:
    """The month's schema changes: an unused field added on day 5, then the deal_stage rename."""
    benign_at = start + timedelta(days=BENIGN_DAY) + BENIGN_TIME if days > BENIGN_DAY else None
    return SchemaTimeline(start, days, start + timedelta(days=rename_day) + RENAME_TIME, benign_at)


def write_snapshots(directory: Path, timeline: SchemaTimeline) -> list[Path]:
    """Write one native SchemaSnapshot JSON file per snapshot; returns the paths in time order."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in [*directory.glob("Lead-*.json"), *directory.glob("Opportunity-*.json")]:
        stale.unlink()  # left over from an earlier, longer run into the same directory
    paths = []
    for taken_at, obj in timeline.snapshots():
        stamp = taken_at.astimezone(UTC)
        document = {
            "taken_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": "salesforce",
            "object": obj,
            "fields": timeline.fields(taken_at, obj),
        }
        path = directory / f"{obj}-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
        paths.append(path)
    return paths
