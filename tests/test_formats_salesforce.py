"""Tests for agentwatch.collector.formats.salesforce: sObject describe results -> SchemaSnapshot."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agentwatch.collector.formats.salesforce import snapshot_from_salesforce_describe
from agentwatch.core.errors import FormatError
from agentwatch.schemas.snapshots import SchemaSnapshot

FIXTURES = Path(__file__).parent / "fixtures" / "salesforce"
# Real payloads live beside the repository, never inside it (licence): see shared/realdata/README.md.
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "salesforce"
TAKEN_AT = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def lead() -> dict[str, Any]:
    return load("lead_describe.json")


def field_of(payload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in payload["fields"] if f["name"] == name)


def index_of(payload: dict[str, Any], name: str) -> int:
    return next(i for i, f in enumerate(payload["fields"]) if f["name"] == name)


def test_maps_every_field_and_validates_as_snapshot(lead: dict[str, Any]) -> None:
    """The Lead describe maps to a snapshot that round-trips through SchemaSnapshot validation."""
    snap = snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)
    assert isinstance(snap, SchemaSnapshot)
    assert snap.source == "salesforce"
    assert snap.object == "Lead"
    assert [f.name for f in snap.fields] == [f["name"] for f in lead["fields"]]
    again = SchemaSnapshot.model_validate_json(snap.model_dump_json())
    assert again == snap


def test_type_mapping_keeps_source_type(lead: dict[str, Any]) -> None:
    """Salesforce types map to the common vocabulary and the original stays in source_type."""
    snap = snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)
    got = {f.name: (f.type, f.source_type) for f in snap.fields}
    assert got == {
        "Id": ("id", "id"),
        "IsDeleted": ("boolean", "boolean"),
        "LastName": ("string", "string"),
        "FirstName": ("string", "string"),
        "Company": ("string", "string"),
        "Email": ("email", "email"),
        "Phone": ("string", "phone"),
        "Website": ("string", "url"),
        "Description": ("string", "textarea"),
        "Status": ("picklist", "picklist"),
        "LeadSource": ("picklist", "picklist"),
        "AnnualRevenue": ("number", "currency"),
        "NumberOfEmployees": ("integer", "int"),
        "OwnerId": ("reference", "reference"),
        "Address": ("compound", "address"),
        "CreatedDate": ("datetime", "datetime"),
        "LastActivityDate": ("date", "date"),
        "Region__c": ("picklist", "picklist"),
        "Products_of_Interest__c": ("multipicklist", "multipicklist"),
        "Fit_Score__c": ("number", "double"),
    }


@pytest.mark.parametrize(
    ("sf_type", "expected"),
    [
        ("encryptedstring", "string"),
        ("percent", "number"),
        ("long", "integer"),
        ("time", "time"),
        ("location", "compound"),
        ("base64", "binary"),
        ("anyType", "any"),
        ("json", "json"),
        ("someFutureType", "someFutureType"),
    ],
)
def test_type_mapping_of_types_not_in_the_lead_fixture(
    lead: dict[str, Any], sf_type: str, expected: str
) -> None:
    """Less common Salesforce types map as documented, and an unknown type passes through unchanged."""
    field_of(lead, "Description")["type"] = sf_type
    snap = snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)
    mapped = next(f for f in snap.fields if f.name == "Description")
    assert (mapped.type, mapped.source_type) == (expected, sf_type)


def test_nullable_and_label_come_from_nillable_and_label(lead: dict[str, Any]) -> None:
    """nullable mirrors nillable and label mirrors label, field by field."""
    snap = snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)
    by_name = {f.name: f for f in snap.fields}
    for raw in lead["fields"]:
        assert by_name[raw["name"]].nullable is raw["nillable"]
        assert by_name[raw["name"]].label == raw["label"]
    assert by_name["LastName"].nullable is False
    assert by_name["FirstName"].nullable is True


def test_picklist_values_are_active_values_only(lead: dict[str, Any]) -> None:
    """Picklist and multipicklist fields list only active values, in order; other types get None."""
    snap = snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)
    by_name = {f.name: f for f in snap.fields}
    assert by_name["Status"].picklist_values == [
        "Open - Not Contacted",
        "Working - Contacted",
        "Closed - Converted",
        "Closed - Not Converted",
    ]
    assert "Nurturing" not in by_name["Status"].picklist_values
    assert by_name["Region__c"].picklist_values == ["AMER", "EMEA", "APAC"]
    assert by_name["Products_of_Interest__c"].picklist_values == ["Widgets", "Gadgets", "Support Plan"]
    assert by_name["Email"].picklist_values is None
    assert by_name["OwnerId"].picklist_values is None


def test_combobox_is_string_with_its_suggested_values(lead: dict[str, Any]) -> None:
    """A combobox maps to string yet keeps its active suggested values as picklist_values."""
    source = field_of(lead, "LeadSource")
    source["type"] = "combobox"
    snap = snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)
    mapped = next(f for f in snap.fields if f.name == "LeadSource")
    assert mapped.type == "string"
    assert mapped.source_type == "combobox"
    assert mapped.picklist_values == [p["value"] for p in source["picklistValues"]]


def test_object_name_defaults_to_payload_name(lead: dict[str, Any]) -> None:
    """Without object_name the snapshot's object is the payload's top-level name."""
    assert snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT).object == "Lead"


def test_object_name_matching_payload_is_accepted(lead: dict[str, Any]) -> None:
    """An object_name equal to the payload's name is accepted."""
    snap = snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT, object_name="Lead")
    assert snap.object == "Lead"


def test_object_name_differing_from_payload_raises(lead: dict[str, Any]) -> None:
    """An object_name that contradicts the payload's name is refused, naming both."""
    with pytest.raises(FormatError, match=r"describes 'Lead' but object_name is 'Opportunity'"):
        snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT, object_name="Opportunity")


def test_object_name_fills_in_when_payload_has_no_name(lead: dict[str, Any]) -> None:
    """When the payload lacks a name, object_name supplies it; with neither, the error says so."""
    del lead["name"]
    assert snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT, object_name="Lead").object == "Lead"
    with pytest.raises(FormatError, match=r"no top-level 'name'; pass object_name"):
        snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)


def test_source_name_is_configurable(lead: dict[str, Any]) -> None:
    """source_name sets the snapshot's source, e.g. to tell two orgs apart."""
    snap = snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT, source_name="salesforce-eu")
    assert snap.source == "salesforce-eu"


def test_taken_at_defaults_to_now_in_utc(lead: dict[str, Any]) -> None:
    """Without taken_at the snapshot is stamped with the current time in UTC."""
    before = datetime.now(UTC)
    snap = snapshot_from_salesforce_describe(lead)
    after = datetime.now(UTC)
    assert snap.taken_at.utcoffset() == timedelta(0)
    assert before <= snap.taken_at <= after


def test_taken_at_with_offset_is_converted_to_utc(lead: dict[str, Any]) -> None:
    """An explicit taken_at with a non-UTC offset is stored as the same instant in UTC."""
    paris = datetime(2026, 10, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    snap = snapshot_from_salesforce_describe(lead, taken_at=paris)
    assert snap.taken_at == paris
    assert snap.taken_at.utcoffset() == timedelta(0)
    assert snap.taken_at.hour == 9


def test_naive_taken_at_is_refused(lead: dict[str, Any]) -> None:
    """A taken_at without an offset is refused rather than guessed."""
    with pytest.raises(ValueError, match="UTC offset"):
        snapshot_from_salesforce_describe(lead, taken_at=datetime(2026, 10, 1, 9, 30))


def test_missing_type_names_index_and_field(lead: dict[str, Any]) -> None:
    """A field without 'type' is reported with its index and name."""
    index = index_of(lead, "Region__c")
    del lead["fields"][index]["type"]
    with pytest.raises(FormatError) as info:
        snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)
    assert str(info.value) == f"salesforce describe: fields[{index}] ('Region__c'): missing 'type'"


def test_missing_name_names_index(lead: dict[str, Any]) -> None:
    """A field without 'name' is reported with its index."""
    del lead["fields"][4]["name"]
    with pytest.raises(FormatError, match=r"fields\[4\]: missing 'name'"):
        snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)


def test_non_boolean_nillable_names_field(lead: dict[str, Any]) -> None:
    """A nillable that is not true/false is reported with the field and the bad value."""
    index = index_of(lead, "Email")
    lead["fields"][index]["nillable"] = "yes"
    with pytest.raises(
        FormatError, match=rf"fields\[{index}\] \('Email'\): 'nillable' must be true or false"
    ):
        snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)


def test_bad_picklist_entry_names_field_and_position(lead: dict[str, Any]) -> None:
    """A picklist entry without 'value' is reported with the field and the entry's position."""
    index = index_of(lead, "Status")
    del lead["fields"][index]["picklistValues"][2]["value"]
    with pytest.raises(
        FormatError, match=rf"fields\[{index}\] \('Status'\): picklistValues\[2\]: missing 'value'"
    ):
        snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)


def test_duplicate_field_name_names_both_indexes(lead: dict[str, Any]) -> None:
    """Two fields with one name are reported with both indexes."""
    lead["fields"].append(copy.deepcopy(lead["fields"][1]))
    last = len(lead["fields"]) - 1
    with pytest.raises(FormatError, match=rf"fields\[{last}\] \('IsDeleted'\): duplicate .* fields\[1\]"):
        snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)


def test_describe_global_is_recognised() -> None:
    """A describeGlobal response is refused with a pointer to the per-object describe endpoint."""
    with pytest.raises(
        FormatError, match=r"describeGlobal response .* 4 objects.*/sobjects/\{Object\}/describe"
    ):
        snapshot_from_salesforce_describe(load("describe_global.json"), taken_at=TAKEN_AT)


def test_basic_info_response_is_recognised(lead: dict[str, Any]) -> None:
    """The GET /sobjects/{Object} basic-info response is refused, naming the object and the fix."""
    basic = {"objectDescribe": {"name": "Lead", "label": "Lead", "keyPrefix": "00Q"}, "recentItems": []}
    with pytest.raises(FormatError, match=r"basic-info response of GET /sobjects/Lead"):
        snapshot_from_salesforce_describe(basic, taken_at=TAKEN_AT)


def test_error_response_is_recognised() -> None:
    """A Salesforce REST error body (a list of errorCode/message) is reported as such."""
    body = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
    with pytest.raises(FormatError, match=r"Salesforce error response.*NOT_FOUND: The requested resource"):
        snapshot_from_salesforce_describe(body, taken_at=TAKEN_AT)  # type: ignore[arg-type]


def test_missing_fields_lists_the_keys_found() -> None:
    """A payload without 'fields' is reported with the keys it does have."""
    with pytest.raises(
        FormatError, match=r"expected a top-level 'fields' list; got keys \['label', 'name'\]"
    ):
        snapshot_from_salesforce_describe({"name": "Lead", "label": "Lead"}, taken_at=TAKEN_AT)


def test_hubspot_payload_is_pointed_to_the_hubspot_reader() -> None:
    """A HubSpot properties response passed here is reported as probably HubSpot."""
    with pytest.raises(FormatError, match=r"HubSpot properties response\? use --format hubspot"):
        snapshot_from_salesforce_describe({"results": []}, taken_at=TAKEN_AT)


def test_fields_must_be_a_list(lead: dict[str, Any]) -> None:
    """A 'fields' that is not a list is reported with the type found."""
    lead["fields"] = {"Id": {}}
    with pytest.raises(FormatError, match=r"'fields' must be a list; got dict"):
        snapshot_from_salesforce_describe(lead, taken_at=TAKEN_AT)


@pytest.mark.parametrize(
    ("filename", "obj", "count"),
    [
        ("cumulusci_Lead.describe.json", "Lead", 54),
        ("cumulusci_Opportunity.describe.json", "Opportunity", 40),
    ],
)
def test_real_describe_payloads_map_cleanly(filename: str, obj: str, count: int) -> None:
    """Real describe results recorded from a Salesforce org map completely, field for field."""
    path = REALDATA / filename
    if not path.is_file():
        pytest.skip(f"real payload {path} not present (shared/realdata is outside the repository)")
    payload = json.loads(path.read_text())
    snap = snapshot_from_salesforce_describe(payload, taken_at=TAKEN_AT)
    assert snap.object == obj
    assert len(snap.fields) == count
    if obj == "Lead":
        assert sum(f.picklist_values is not None for f in snap.fields) == 7
    else:
        stage = next(f for f in snap.fields if f.name == "StageName")
        assert stage.type == "picklist"
        assert stage.nullable is False
        assert {"Prospecting", "Closed Won", "Closed Lost"} <= set(stage.picklist_values or [])
