"""Tests for agentwatch.collector.formats.hubspot: CRM v3 properties responses -> SchemaSnapshot."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agentwatch.collector.formats.hubspot import snapshot_from_hubspot_properties
from agentwatch.core.errors import FormatError
from agentwatch.schemas.snapshots import SchemaSnapshot

FIXTURES = Path(__file__).parent / "fixtures" / "hubspot"
TAKEN_AT = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def contacts() -> dict[str, Any]:
    return json.loads((FIXTURES / "contacts_properties.json").read_text())


def prop_of(payload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in payload["results"] if p["name"] == name)


def index_of(payload: dict[str, Any], name: str) -> int:
    return next(i for i, p in enumerate(payload["results"]) if p["name"] == name)


def snapshot(payload: Any, **kwargs: Any) -> SchemaSnapshot:
    kwargs.setdefault("object_name", "contacts")
    kwargs.setdefault("taken_at", TAKEN_AT)
    return snapshot_from_hubspot_properties(payload, **kwargs)


def test_maps_properties_and_validates_as_snapshot(contacts: dict[str, Any]) -> None:
    """The contacts response maps to a snapshot that round-trips through SchemaSnapshot validation."""
    snap = snapshot(contacts)
    assert isinstance(snap, SchemaSnapshot)
    assert (snap.source, snap.object) == ("hubspot", "contacts")
    assert SchemaSnapshot.model_validate_json(snap.model_dump_json()) == snap


def test_archived_properties_are_left_out(contacts: dict[str, Any]) -> None:
    """Archived properties do not appear; every other property does, in response order."""
    snap = snapshot(contacts)
    expected = [p["name"] for p in contacts["results"] if not p.get("archived")]
    assert [f.name for f in snap.fields] == expected
    assert "legacy_region" not in expected
    assert len(expected) == len(contacts["results"]) - 1


def test_type_mapping_keeps_source_type(contacts: dict[str, Any]) -> None:
    """HubSpot types (and boolean/multi-select fieldTypes) map as documented; source_type keeps 'type'."""
    got = {f.name: (f.type, f.source_type) for f in snapshot(contacts).fields}
    assert got == {
        "email": ("string", "string"),
        "firstname": ("string", "string"),
        "direct_dial": ("string", "phone_number"),
        "lifecyclestage": ("picklist", "enumeration"),
        "hs_lead_status": ("picklist", "enumeration"),
        "gdpr_consent_given": ("boolean", "enumeration"),
        "is_decision_maker": ("boolean", "bool"),
        "preferred_channels": ("multipicklist", "enumeration"),
        "createdate": ("datetime", "datetime"),
        "date_of_birth": ("date", "date"),
        "hs_analytics_num_visits": ("number", "number"),
        "hubspot_owner_id": ("picklist", "enumeration"),
    }


def test_unknown_type_passes_through(contacts: dict[str, Any]) -> None:
    """A HubSpot type outside the table is kept as is rather than failing the response."""
    prop_of(contacts, "firstname")["type"] = "object_coordinates"
    mapped = next(f for f in snapshot(contacts).fields if f.name == "firstname")
    assert (mapped.type, mapped.source_type) == ("object_coordinates", "object_coordinates")


def test_every_property_is_nullable_and_keeps_its_label(contacts: dict[str, Any]) -> None:
    """HubSpot properties are always optional, so nullable is True; label is copied."""
    for field in snapshot(contacts).fields:
        assert field.nullable is True
        assert field.label == prop_of(contacts, field.name)["label"]


def test_picklist_values_leave_out_hidden_options(contacts: dict[str, Any]) -> None:
    """Enumeration fields list their non-hidden option values in order; a hidden option is excluded."""
    by_name = {f.name: f for f in snapshot(contacts).fields}
    assert by_name["hs_lead_status"].picklist_values == [
        "NEW",
        "OPEN",
        "IN_PROGRESS",
        "OPEN_DEAL",
        "UNQUALIFIED",
        "ATTEMPTED_TO_CONTACT",
        "CONNECTED",
    ]
    assert "BAD_TIMING" not in by_name["hs_lead_status"].picklist_values
    assert by_name["preferred_channels"].picklist_values == ["email", "phone", "sms", "linkedin"]
    assert by_name["lifecyclestage"].picklist_values is not None
    assert len(by_name["lifecyclestage"].picklist_values) == 8


def test_non_picklist_types_have_no_picklist_values(contacts: dict[str, Any]) -> None:
    """Booleans (whatever their options), strings, numbers and dates carry picklist_values None."""
    by_name = {f.name: f for f in snapshot(contacts).fields}
    for name in ("gdpr_consent_given", "is_decision_maker", "email", "hs_analytics_num_visits", "createdate"):
        assert by_name[name].picklist_values is None, name


def test_external_options_give_no_picklist_values(contacts: dict[str, Any]) -> None:
    """An enumeration whose options live elsewhere (hubspot_owner_id) has picklist_values None, not []."""
    owner = next(f for f in snapshot(contacts).fields if f.name == "hubspot_owner_id")
    assert owner.type == "picklist"
    assert owner.picklist_values is None


def test_object_name_is_used_as_given(contacts: dict[str, Any]) -> None:
    """The snapshot's object is the object_name argument, since the response names none."""
    assert snapshot(contacts, object_name="p_partner_accounts").object == "p_partner_accounts"


def test_empty_object_name_is_refused(contacts: dict[str, Any]) -> None:
    """An empty object_name is refused with a clear message."""
    with pytest.raises(FormatError, match=r"object_name must be a non-empty string"):
        snapshot(contacts, object_name="")


def test_source_name_is_configurable(contacts: dict[str, Any]) -> None:
    """source_name sets the snapshot's source."""
    assert snapshot(contacts, source_name="hubspot-sandbox").source == "hubspot-sandbox"


def test_taken_at_defaults_to_now_in_utc(contacts: dict[str, Any]) -> None:
    """Without taken_at the snapshot is stamped with the current time in UTC."""
    before = datetime.now(UTC)
    snap = snapshot_from_hubspot_properties(contacts, object_name="contacts")
    after = datetime.now(UTC)
    assert snap.taken_at.utcoffset() == timedelta(0)
    assert before <= snap.taken_at <= after


def test_taken_at_with_offset_is_converted_to_utc(contacts: dict[str, Any]) -> None:
    """An explicit taken_at with a negative offset is stored as the same instant in UTC."""
    boston = datetime(2026, 10, 1, 5, 30, tzinfo=timezone(timedelta(hours=-4)))
    snap = snapshot(contacts, taken_at=boston)
    assert snap.taken_at == boston
    assert snap.taken_at.utcoffset() == timedelta(0)
    assert snap.taken_at.hour == 9


def test_naive_taken_at_is_refused(contacts: dict[str, Any]) -> None:
    """A taken_at without an offset is refused rather than guessed."""
    with pytest.raises(ValueError, match="UTC offset"):
        snapshot(contacts, taken_at=datetime(2026, 10, 1, 9, 30))


def test_missing_results_lists_keys_and_hints(contacts: dict[str, Any]) -> None:
    """A payload without 'results' is reported with its keys and a hint about what it might be."""
    with pytest.raises(FormatError) as info:
        snapshot({"paging": {}, "total": 0})
    assert str(info.value) == (
        "hubspot properties: expected a top-level 'results' list; got keys ['paging', 'total'] "
        "(did you pass a single property or a search response?)"
    )


def test_single_property_is_recognised(contacts: dict[str, Any]) -> None:
    """One property object passed on its own is refused, naming the property and the right endpoint."""
    single = contacts["results"][0]
    with pytest.raises(FormatError, match=r"got a single property \('email'\).*GET /crm/v3/properties"):
        snapshot(single)


def test_search_response_is_recognised() -> None:
    """A search response (results of records with id and properties) is refused, naming the index."""
    search = {
        "total": 1,
        "results": [
            {
                "id": "51",
                "properties": {"email": "ana@example.com", "hs_object_id": "51"},
                "createdAt": "2024-05-02T10:11:12.000Z",
                "updatedAt": "2024-05-03T08:00:00.000Z",
                "archived": False,
            }
        ],
    }
    with pytest.raises(FormatError, match=r"results\[0\] is a CRM record .* search or list-objects response"):
        snapshot(search)


def test_bare_list_is_recognised(contacts: dict[str, Any]) -> None:
    """A bare list of properties (legacy v1/v2 endpoints) is refused with the v3 endpoint to use."""
    with pytest.raises(FormatError, match=r"bare list of 13 items .* legacy v1/v2"):
        snapshot(contacts["results"])


def test_error_response_is_recognised() -> None:
    """A HubSpot error body is reported as such, with its category and message."""
    body = {
        "status": "error",
        "message": "Unable to infer object type from: contactz",
        "correlationId": "8f0c1d52-1c53-4a47-9f0e-1b2e0d6a9a11",
        "category": "OBJECT_NOT_FOUND",
    }
    with pytest.raises(FormatError, match=r"HubSpot error response.*OBJECT_NOT_FOUND: Unable to infer"):
        snapshot(body)


def test_missing_type_names_index_and_property(contacts: dict[str, Any]) -> None:
    """A property without 'type' is reported with its index and name."""
    index = index_of(contacts, "hs_lead_status")
    del contacts["results"][index]["type"]
    with pytest.raises(FormatError) as info:
        snapshot(contacts)
    assert str(info.value) == f"hubspot properties: results[{index}] ('hs_lead_status'): missing 'type'"


def test_missing_options_on_enumeration_names_property(contacts: dict[str, Any]) -> None:
    """An enumeration without 'options' is reported with its index and name."""
    index = index_of(contacts, "lifecyclestage")
    del contacts["results"][index]["options"]
    with pytest.raises(FormatError, match=rf"results\[{index}\] \('lifecyclestage'\): missing 'options'"):
        snapshot(contacts)


def test_bad_option_names_property_and_position(contacts: dict[str, Any]) -> None:
    """An option whose value is not a string is reported with the property and the option's position."""
    index = index_of(contacts, "hs_lead_status")
    contacts["results"][index]["options"][3]["value"] = 3
    with pytest.raises(FormatError, match=rf"results\[{index}\] \('hs_lead_status'\): options\[3\]: 'value'"):
        snapshot(contacts)


def test_duplicate_property_name_names_both_indexes(contacts: dict[str, Any]) -> None:
    """Two live properties with one name are reported with both indexes."""
    contacts["results"].append(copy.deepcopy(contacts["results"][1]))
    last = len(contacts["results"]) - 1
    with pytest.raises(FormatError, match=rf"results\[{last}\] \('firstname'\): duplicate .* results\[1\]"):
        snapshot(contacts)


def test_archived_property_may_share_a_live_name(contacts: dict[str, Any]) -> None:
    """An archived property is skipped before the duplicate check, so a live namesake is fine."""
    ghost = copy.deepcopy(prop_of(contacts, "legacy_region"))
    ghost["name"] = "email"
    contacts["results"].append(ghost)
    assert [f.name for f in snapshot(contacts).fields].count("email") == 1


def test_salesforce_payload_is_pointed_to_the_salesforce_reader() -> None:
    """A Salesforce describe passed here is reported as probably Salesforce."""
    with pytest.raises(FormatError, match=r"Salesforce describe\? use --format salesforce"):
        snapshot({"name": "Lead", "fields": []})
