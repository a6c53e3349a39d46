"""Schema snapshot ingest: native files (object, list, JSONL), Salesforce describe, HubSpot properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentwatch.collector.ingest.snapshots import ingest_snapshot_files, ingest_snapshot_items
from agentwatch.core.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
SALESFORCE_LEAD = FIXTURES / "salesforce" / "lead_describe.json"
HUBSPOT_CONTACTS = FIXTURES / "hubspot" / "contacts_properties.json"
TAKEN_AT = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)

SNAPSHOT_ROWS = "SELECT source, object, taken_at, field_count FROM schema_snapshots ORDER BY taken_at, source, object"


def write_json(path: Path, payload, indent: int | None = 2) -> Path:
    path.write_text(json.dumps(payload, indent=indent), encoding="utf-8")
    return path


def test_native_single_object_file(home, query, make_snapshot, tmp_path):
    """A pretty-printed native snapshot file stores one row with its time, source, object and field count."""
    report = ingest_snapshot_files(home, [write_json(tmp_path / "lead.json", make_snapshot())])
    assert (report.accepted, report.duplicates, report.rejected) == (1, 0, 0)
    assert query(SNAPSHOT_ROWS) == [("custom", "Lead", datetime(2026, 10, 1, tzinfo=UTC), 3)]


def test_native_list_file(home, query, make_snapshot, tmp_path):
    """A JSON list of native snapshots stores one row per snapshot; taken_at offsets are stored in UTC."""
    snapshots = [
        make_snapshot(taken_at="2026-10-02T02:00:00+02:00"),
        make_snapshot(object="Opportunity", taken_at="2026-10-03T00:00:00Z", fields=[{"name": "Id", "type": "id"}]),
    ]
    report = ingest_snapshot_files(home, [write_json(tmp_path / "all.json", snapshots, indent=None)])
    assert (report.accepted, report.rejected) == (2, 0)
    assert query(SNAPSHOT_ROWS) == [
        ("custom", "Lead", datetime(2026, 10, 2, tzinfo=UTC), 3),
        ("custom", "Opportunity", datetime(2026, 10, 3, tzinfo=UTC), 1),
    ]


def test_native_jsonl_file(home, query, make_snapshot, write_jsonl, tmp_path):
    """A JSONL file stores one snapshot per non-blank line."""
    path = write_jsonl(tmp_path / "snaps.jsonl", [
        make_snapshot(taken_at="2026-10-01T00:00:00Z"), "", make_snapshot(taken_at="2026-10-05T00:00:00Z"),
    ])
    report = ingest_snapshot_files(home, [path])
    assert (report.accepted, report.rejected) == (2, 0)
    assert [row[2].day for row in query(SNAPSHOT_ROWS)] == [1, 5]


def test_native_options_fill_in_what_the_payload_leaves_out(home, query, make_snapshot):
    """taken_at and object_name fill a native snapshot's missing keys but never override the payload's own."""
    items = [make_snapshot(drop=["taken_at", "object"]), make_snapshot(object="Contact")]
    report = ingest_snapshot_items(home, items, source="api", taken_at=TAKEN_AT, object_name="Account")
    assert (report.accepted, report.rejected) == (2, 0)
    assert query(SNAPSHOT_ROWS) == [
        ("custom", "Contact", datetime(2026, 10, 1, tzinfo=UTC), 3),
        ("custom", "Account", TAKEN_AT, 3),
    ]


def test_fields_are_a_list_of_structs_readable_by_sql(home, query, make_snapshot, tmp_path):
    """Stored fields keep name, type, nullable, label and picklist_values, and unnest into rows in SQL."""
    ingest_snapshot_files(home, [write_json(tmp_path / "lead.json", make_snapshot())])
    rows = query("""
        SELECT f.name, f.type, f.nullable, f.label, f.picklist_values, f.source_type
        FROM (SELECT unnest(fields) AS f FROM schema_snapshots)""")
    assert rows == [
        ("Id", "id", False, "Lead ID", None, None),
        ("deal_stage", "picklist", True, None, ["open", "negotiation", "won"], None),
        ("email", "email", True, None, None, None),
    ]
    assert query("SELECT list_contains(picklist_values, 'won') FROM "
                 "(SELECT unnest(fields, recursive := true) FROM schema_snapshots) WHERE name = 'deal_stage'") == [
        (True,)
    ]


def test_reingest_is_a_no_op(home, query, make_snapshot, tmp_path):
    """Sending the same snapshots again accepts none and counts each as a duplicate."""
    path = write_json(tmp_path / "all.json", [make_snapshot(taken_at=f"2026-10-0{d}T00:00:00Z") for d in (1, 2, 3)])
    first = ingest_snapshot_files(home, [path])
    again = ingest_snapshot_files(home, [path])
    assert (first.accepted, first.duplicates) == (3, 0)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 3, 0)
    assert query("SELECT count(*) FROM schema_snapshots") == [(3,)]


def test_same_snapshot_with_another_offset_is_a_duplicate(home, query, make_snapshot):
    """A snapshot is keyed by source, object and UTC instant: the same instant with another offset is a duplicate."""
    first = ingest_snapshot_items(home, [make_snapshot(taken_at="2026-10-01T00:00:00Z")], source="api")
    same = ingest_snapshot_items(home, [make_snapshot(taken_at="2026-10-01T02:00:00+02:00")], source="api")
    other_object = ingest_snapshot_items(home, [make_snapshot(object="Contact")], source="api")
    assert (first.accepted, same.accepted, same.duplicates, other_object.accepted) == (1, 0, 1, 1)
    assert query("SELECT object, count(*) FROM schema_snapshots GROUP BY object ORDER BY object") == [
        ("Contact", 1), ("Lead", 1)
    ]


def test_invalid_native_snapshot_is_rejected_and_others_kept(home, query, make_snapshot, tmp_path):
    """An invalid snapshot in a list is rejected with its item number and field; the others are stored."""
    snapshots = [
        make_snapshot(taken_at="2026-10-01T00:00:00Z"),
        make_snapshot(taken_at="2026-10-02T00:00:00Z", fields=[{"name": "Id"}]),  # field type missing
        make_snapshot(taken_at="2026-10-03T00:00:00"),  # no offset
        make_snapshot(taken_at="2026-10-04T00:00:00Z", drop=["object"]),
        make_snapshot(taken_at="2026-10-05T00:00:00Z"),
    ]
    path = write_json(tmp_path / "all.json", snapshots)
    report = ingest_snapshot_files(home, [path])
    assert (report.accepted, report.rejected) == (2, 3)
    got = {r.number: (r.unit, r.source, {e.field for e in r.errors}) for r in report.sample}
    assert got == {
        2: ("item", str(path), {"fields.0.type"}),
        3: ("item", str(path), {"taken_at"}),
        4: ("item", str(path), {"object"}),
    }
    assert [row[2].day for row in query(SNAPSHOT_ROWS)] == [1, 5]
    records = [json.loads(line) for line in report.rejects_file.read_text().splitlines()]
    assert [(r["dataset"], r["number"]) for r in records] == [("schema_snapshots", 2), ("schema_snapshots", 3),
                                                              ("schema_snapshots", 4)]
    assert json.loads(records[1]["raw"]) == snapshots[2]


def test_invalid_jsonl_snapshot_is_rejected_with_its_line_number(home, query, make_snapshot, write_jsonl, tmp_path):
    """A rejected snapshot in a JSONL file is reported at its line, counting blank lines."""
    path = write_jsonl(tmp_path / "snaps.jsonl", [
        make_snapshot(taken_at="2026-10-01T00:00:00Z"),
        "",
        make_snapshot(taken_at="2026-10-02T00:00:00Z", fields="none"),
        make_snapshot(taken_at="2026-10-03T00:00:00Z"),
    ])
    report = ingest_snapshot_files(home, [path])
    assert (report.accepted, report.rejected) == (2, 1)
    assert [(r.unit, r.number, [e.field for e in r.errors]) for r in report.sample] == [("line", 3, ["fields"])]


def test_duplicate_field_names_are_rejected(home, query, make_snapshot):
    """A snapshot naming one field twice is rejected, saying which name repeats."""
    fields = [{"name": "email", "type": "email"}, {"name": "email", "type": "string"}]
    report = ingest_snapshot_items(home, [make_snapshot(fields=fields)], source="api")
    assert (report.accepted, report.rejected) == (0, 1)
    assert "'email' appears twice" in report.sample[0].describe()
    assert query("SELECT count(*) FROM schema_snapshots") == [(0,)]


def test_salesforce_describe_with_taken_at(home, query):
    """A Salesforce describe result is stored as a Lead snapshot at the taken_at given, with mapped field types."""
    report = ingest_snapshot_files(home, [SALESFORCE_LEAD], fmt="salesforce", taken_at=TAKEN_AT)
    assert (report.accepted, report.rejected) == (1, 0)
    expected_fields = len(json.loads(SALESFORCE_LEAD.read_text())["fields"])
    assert query(SNAPSHOT_ROWS) == [("salesforce", "Lead", TAKEN_AT, expected_fields)]
    rows = query("""SELECT name, type, source_type, nullable, picklist_values
                    FROM (SELECT unnest(fields, recursive := true) FROM schema_snapshots)
                    WHERE name IN ('Id', 'Email', 'Status') ORDER BY name""")
    assert rows[0][:4] == ("Email", "email", "email", True)
    assert rows[1][:4] == ("Id", "id", "id", False)
    assert rows[2][:3] == ("Status", "picklist", "picklist")
    assert rows[2][4] and all(isinstance(v, str) for v in rows[2][4])
    again = ingest_snapshot_files(home, [SALESFORCE_LEAD], fmt="salesforce", taken_at=TAKEN_AT)
    assert (again.accepted, again.duplicates) == (0, 1)


def test_salesforce_payload_of_the_wrong_shape_is_rejected(home, query, tmp_path):
    """A file that is not a describe result is rejected with the reader's explanation, not stored."""
    path = write_json(tmp_path / "global.json", json.loads((FIXTURES / "salesforce" / "describe_global.json")
                                                           .read_text()))
    report = ingest_snapshot_files(home, [path], fmt="salesforce", taken_at=TAKEN_AT)
    assert (report.accepted, report.rejected) == (0, 1)
    assert (report.sample[0].unit, report.sample[0].number) == ("file", 1)
    assert "describeGlobal" in report.sample[0].describe()
    assert query("SELECT count(*) FROM schema_snapshots") == [(0,)]


def test_hubspot_properties_need_an_object_name(home, query):
    """A HubSpot properties response without object_name raises ConfigError naming --object and stores nothing."""
    with pytest.raises(ConfigError, match="--object"):
        ingest_snapshot_files(home, [HUBSPOT_CONTACTS], fmt="hubspot", taken_at=TAKEN_AT)
    assert query("SELECT count(*) FROM schema_snapshots") == [(0,)]


def test_hubspot_properties_with_object_name(home, query):
    """A HubSpot properties response with object_name is stored as that object's snapshot, archived ones left out."""
    payload = json.loads(HUBSPOT_CONTACTS.read_text())
    live = [p["name"] for p in payload["results"] if not p.get("archived")]
    report = ingest_snapshot_files(home, [HUBSPOT_CONTACTS], fmt="hubspot", taken_at=TAKEN_AT, object_name="contacts")
    assert (report.accepted, report.rejected) == (1, 0)
    assert query(SNAPSHOT_ROWS) == [("hubspot", "contacts", TAKEN_AT, len(live))]
    names = query("SELECT f.name FROM (SELECT unnest(fields) AS f FROM schema_snapshots)")
    assert [n for (n,) in names] == live


def test_snapshot_files_are_held_to_the_limits(home, make_snapshot, tmp_path):
    """A .gz snapshot file that inflates past limits.max_decompressed_bytes, and a payload nested deeper than
    limits.max_depth (100,000 deep: a RecursionError once), are each refused with a named error."""
    import gzip

    from agentwatch.core.errors import InputFileError
    from agentwatch.core.limits import Limits

    big = tmp_path / "big.json.gz"
    big.write_bytes(gzip.compress(json.dumps([make_snapshot()] * 2000).encode()))
    with pytest.raises(InputFileError, match=r"limits\.max_decompressed_bytes"):
        ingest_snapshot_files(home, [big], limits=Limits(max_decompressed_bytes=10_000))
    deep = tmp_path / "deep.json"
    deep.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(InputFileError, match=r"limits\.max_depth"):
        ingest_snapshot_files(home, [deep])
    lines = tmp_path / "deep.jsonl"
    lines.write_text(json.dumps(make_snapshot()) + "\n" + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(InputFileError, match=r"line 2 .*limits\.max_depth"):
        ingest_snapshot_files(home, [lines])
