"""schema.*: diffs of consecutive snapshots, renames inferred, severity by whether agents read the field."""

from __future__ import annotations

from datetime import timedelta

from agentwatch.checks.schema_diff import diff
from tests.checks_support import T0, iso, opened, run, store_events

STAGES = ["open", "negotiation", "won"]


def lead_fields(stage_name: str = "deal_stage", extra: list[dict] | None = None, stage_type: str = "picklist",
                stages: list[str] | None = None) -> list[dict]:
    fields = [
        {"name": "Id", "type": "id", "nullable": False, "label": "Lead ID"},
        {"name": "Email", "type": "email", "label": "Email"},
        {"name": "Fax", "type": "string", "label": "Fax"},
        {"name": stage_name, "type": stage_type, "label": "Deal Stage",
         "picklist_values": (stages or STAGES) if stage_type == "picklist" else None},
    ]
    return fields + (extra or [])


def snapshot(at, fields: list[dict]) -> dict:
    return {"taken_at": iso(at), "source": "salesforce", "object": "Lead", "fields": fields}


def router_reads(days: float, key: str = "deal_stage") -> list[dict]:
    """The router reads `key` every 10 minutes from T0 on."""
    events = []
    for i in range(int(days * 144)):
        events.append({"event_id": f"r-{i}", "ts": iso(T0 + timedelta(minutes=10 * i)), "agent_id": "lead-router",
                       "action": "lead.route", "resource": {"type": "lead", "id": f"L-{i}"}, "status": "ok",
                       "inputs": {key: "open", "email": "a@b.co"}})
    return events


class TestDiff:
    """The pure diff of two snapshots."""

    def test_rename_is_paired_by_label_type_and_values(self):
        """A field that vanishes while a same-labelled, same-typed one appears is a rename, not remove + add."""
        changes = diff(lead_fields(), lead_fields("opportunity_stage"), "sf", "Lead", T0, T0 + timedelta(hours=1))
        assert [(c.kind, c.label) for c in changes] == [("renamed", "deal_stage -> opportunity_stage")]

    def test_unrelated_remove_and_add_are_not_a_rename(self):
        """Fax removed while Twitter_Handle__c appears: two changes, no rename."""
        after = [f for f in lead_fields() if f["name"] != "Fax"] + [
            {"name": "Twitter_Handle__c", "type": "string", "label": "Twitter Handle"}]
        kinds = sorted((c.kind, c.field) for c in diff(lead_fields(), after, "sf", "Lead", T0, T0))
        assert kinds == [("added", "Twitter_Handle__c"), ("removed", "Fax")]

    def test_type_and_picklist_changes(self):
        """A changed type and changed picklist values are reported with what changed."""
        typed = diff(lead_fields(), lead_fields(stage_type="string"), "sf", "Lead", T0, T0)
        assert [(c.kind, c.details) for c in typed] == [("type_changed", {"from": "picklist", "to": "string"})]
        values = diff(lead_fields(), lead_fields(stages=["open", "won", "lost"]), "sf", "Lead", T0, T0)
        assert [(c.kind, c.details) for c in values] == [
            ("picklist_changed", {"values_added": ["lost"], "values_removed": ["negotiation"]})]


class TestChecks:
    """The schema checks through the real store and engine."""

    def test_rename_of_a_field_agents_read_is_critical(self, home):
        """Renaming deal_stage while the router reads it opens one critical incident named old -> new."""
        rename_at = T0 + timedelta(days=2, hours=10)
        store_events(home, actions=router_reads(3), snapshots=[
            snapshot(T0, lead_fields()), snapshot(rename_at, lead_fields("opportunity_stage"))])
        report = run(home, T0 + timedelta(days=2), T0 + timedelta(days=2, hours=12))
        (at, incident), = opened(report, "schema.field_renamed")
        assert incident.subject == {"object": "Lead", "field": "deal_stage -> opportunity_stage"}
        assert incident.severity == "critical"
        assert incident.evidence["agents"] == ["lead-router"]
        assert rename_at <= at <= rename_at + timedelta(minutes=15)
        assert not opened(report, "schema.field_removed") and not opened(report, "schema.field_added")

    def test_new_unused_field_is_info_only(self, home):
        """A new field no agent reads is an info incident, never a warning or a page."""
        added_at = T0 + timedelta(days=2, hours=9)
        extra = [{"name": "Twitter_Handle__c", "type": "string", "label": "Twitter Handle"}]
        store_events(home, actions=router_reads(3), snapshots=[
            snapshot(T0, lead_fields()), snapshot(added_at, lead_fields(extra=extra))])
        report = run(home, T0 + timedelta(days=2), T0 + timedelta(days=2, hours=12))
        assert [(i.check, i.severity) for _, i in report.opened] == [("schema.field_added", "info")]

    def test_removed_field_severity_follows_readers(self, home):
        """Removing a field nobody reads is info; removing one the router reads is critical."""
        removed_at = T0 + timedelta(days=2, hours=9)
        after = [f for f in lead_fields() if f["name"] not in ("Fax", "deal_stage")]
        store_events(home, actions=router_reads(3),
                     snapshots=[snapshot(T0, lead_fields()), snapshot(removed_at, after)])
        report = run(home, T0 + timedelta(days=2), T0 + timedelta(days=2, hours=12))
        severities = {i.subject["field"]: i.severity for _, i in opened(report, "schema.field_removed")}
        assert severities == {"Fax": "info", "deal_stage": "critical"}

    def test_fields_mapping_links_a_differently_named_key(self, home):
        """With `fields: {stage: Lead.deal_stage}`, an agent reading `stage` makes the rename critical."""
        rename_at = T0 + timedelta(days=2, hours=10)
        store_events(home, actions=router_reads(3, key="stage"), snapshots=[
            snapshot(T0, lead_fields()), snapshot(rename_at, lead_fields("opportunity_stage"))])
        plain = run(home, T0 + timedelta(days=2), T0 + timedelta(days=2, hours=12), only=["schema.field_renamed"])
        assert [i.severity for _, i in plain.opened] == ["info"]

    def test_fields_mapping_makes_the_reader_known(self, home):
        """The same store with the mapping configured: the rename is critical and names the reader."""
        rename_at = T0 + timedelta(days=2, hours=10)
        store_events(home, actions=router_reads(3, key="stage"), snapshots=[
            snapshot(T0, lead_fields()), snapshot(rename_at, lead_fields("opportunity_stage"))])
        report = run(home, T0 + timedelta(days=2), T0 + timedelta(days=2, hours=12), only=["schema.field_renamed"],
                     config={"fields": {"stage": "Lead.deal_stage"}})
        (_, incident), = report.opened
        assert incident.severity == "critical" and incident.evidence["input_keys"] == ["stage"]

    def test_type_and_picklist_checks_fire(self, home):
        """A type change of a read field is critical; a picklist change of a read field is a warning."""
        store_events(home, actions=router_reads(3), snapshots=[
            snapshot(T0, lead_fields()),
            snapshot(T0 + timedelta(days=2, hours=9), lead_fields(stages=["open", "won", "lost"])),
            snapshot(T0 + timedelta(days=2, hours=10), lead_fields(stage_type="string")),
        ])
        report = run(home, T0 + timedelta(days=2), T0 + timedelta(days=2, hours=12))
        assert [i.severity for _, i in opened(report, "schema.picklist_changed")] == ["warning"]
        assert [i.severity for _, i in opened(report, "schema.type_changed")] == ["critical"]

    def test_benign_look_alikes_never_page(self, home):
        """An unrelated removal and addition in one snapshot is no rename, and changes to fields no agent reads
        (Fax removed, a type and a picklist changed on unread fields) stay info: nothing warns or pages."""
        extra_before = [{"name": "Rating", "type": "picklist", "label": "Rating", "picklist_values": ["Hot", "Cold"]},
                        {"name": "Score", "type": "number", "label": "Score"}]
        extra_after = [{"name": "Rating", "type": "picklist", "label": "Rating", "picklist_values": ["Hot", "Warm"]},
                       {"name": "Score", "type": "string", "label": "Score"},
                       {"name": "Twitter_Handle__c", "type": "string", "label": "Twitter Handle"}]
        after = [f for f in lead_fields(extra=extra_after) if f["name"] != "Fax"]
        store_events(home, actions=router_reads(3), snapshots=[
            snapshot(T0, lead_fields(extra=extra_before)), snapshot(T0 + timedelta(days=2, hours=9), after)])
        report = run(home, T0 + timedelta(days=2), T0 + timedelta(days=2, hours=12))
        found = sorted((i.check, i.subject["field"], i.severity) for _, i in report.opened)
        assert found == [("schema.field_added", "Twitter_Handle__c", "info"), ("schema.field_removed", "Fax", "info"),
                         ("schema.picklist_changed", "Rating", "info"), ("schema.type_changed", "Score", "info")]
