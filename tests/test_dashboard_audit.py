"""The audit trail: its query, the rollback plan (restore steps, irreversible actions, CSV and JSON) and the page."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from agentwatch.core.home import Home
from agentwatch.dashboards import audit_trail as trail
from agentwatch.dashboards.escape import md
from agentwatch.store.reader import open_reader
from tests.checks_support import T0, iso, store_events
from tests.dashboard_support import (
    open_dashboard,  # noqa: F401  (autouse: no key asked)
    open_page,
    sql,
)

ROOT = Path(__file__).resolve().parents[1]
AGENT = "router"


def action(event_id: str, hours: float, action: str, resource: str, status: str = "ok", agent: str = AGENT,
           **keys: Any) -> dict[str, Any]:
    return {"event_id": event_id, "ts": iso(T0 + timedelta(hours=hours)), "agent_id": agent, "action": action,
            "resource": {"type": "lead", "id": resource}, "status": status, "agent_version": "1.2.0", **keys}


EVENTS = [
    action("e1", 1, "lead.assign_owner", "L-1", before={"owner": "queue", "status": "new"},
           after={"owner": "rep-1", "status": "routed"}),
    action("e2", 2, "lead.assign_owner", "L-1", before={"owner": "rep-1"}, after={"owner": "rep-2"}),
    action("e3", 3, "crm.update_field", "L-2", before={"industry": None}, after={"industry": "Retail"}),
    action("e4", 4, "email.send", "L-1", external=True, decision={"template": "intro-1"},
           approval={"approved_by": "mgr-3", "approved_at": iso(T0 + timedelta(hours=3.5))}),
    action("e5", 5, "crm.update_field", "L-2", status="error", before={"industry": "Retail"},
           after={"industry": "Tech"}, error={"code": "timeout"}),
    action("e6", 6, "crm.log_activity", "L-3", after={"last_activity": "call"}),
    action("e7", 7, "crm.update_field", "L-3", before={"region": "EU"}, after={"region": "EU", "score": 5}),
    action("e8", 8, "crm.update_field", "L-2", agent="enricher", before={"industry": "Retail"},
           after={"industry": "Media"}),
    action("e9", 1.5, "lead.qualify", "L-4", status="pending_approval"),
    action("e10", 2.5, "email.send", "L-4", status="skipped", decision={"reason": "unsubscribed"}),
    action("e11", 3.5, "lead.route", "L-4", decision={"route_to": "rep-4"}, confidence=0.8),
    action("e0", -72, "crm.update_field", "L-5", before={"region": None}, after={"region": "NA"}),  # out of range
]
CORRECTION = {"event_id": "o1", "ts": iso(T0 + timedelta(hours=9)), "kind": "owner_changed",
              "resource": {"type": "lead", "id": "L-1"}, "actor": "rep-9", "field": "owner", "from": "rep-2",
              "to": "rep-9", "corrects_event_id": "e2"}
LATEST = T0 + timedelta(hours=8)  # e8, the newest action event

# The restore steps for the router's last 48 h, newest write first, worked out by hand:
# (step, event, field, value to restore, value written, final, changed again by, later change by)
EXPECTED_RESTORE = [
    (1, "e3", "industry", None, "Retail", True, None, "enricher (crm.update_field, e8)"),
    (2, "e2", "owner", "rep-1", "rep-2", False, None, "rep-9 (owner_changed, o1)"),
    (3, "e1", "owner", "queue", "rep-1", True, "e2", "rep-9 (owner_changed, o1)"),
    (4, "e1", "status", "new", "routed", True, None, None),
]
# (event, kind, fields), newest first
EXPECTED_IRREVERSIBLE = [("e7", "missing_before", "score"), ("e6", "no_before", "last_activity"),
                         ("e4", "external", None)]


@pytest.fixture
def small(home: Home) -> Home:
    """A home with the known events above and the rep's correction of e2."""
    store_events(home, actions=EVENTS, outcomes=[CORRECTION])
    return home


@pytest.fixture
def con(small: Home):
    connection = open_reader(small)
    yield connection
    connection.close()


def router_48h() -> trail.Selection:
    start, end = trail.time_range("Last 48 hours", LATEST)
    return trail.Selection(start, end, agents=(AGENT,), label="Last 48 hours")


def restore_rows(frame) -> list[tuple]:
    return [(r["step"], r["event_id"], r["field"], json.loads(r["restore_value"]), json.loads(r["written_value"]),
             r["final"], r["changed_again_by"], r["later_change_by"]) for r in frame.iter_rows(named=True)]


def test_restore_plan_rows_values_and_order(con) -> None:
    """The restore plan holds one row per changed field of the agent's reversible writes, newest first, with the
    before to restore, the after written, the earliest write marked final and both kinds of later change named."""
    plan = trail.restore_plan(con, router_48h())
    assert restore_rows(plan) == EXPECTED_RESTORE
    notes = dict(zip(plan["step"].to_list(), plan["note"].to_list(), strict=True))
    assert notes[4] is None
    assert "changed again later by e2 at 2026-10-05T02:00:00.000000Z (in this plan)" in notes[3]
    assert "changed later by rep-9 (owner_changed, o1 at 2026-10-05T09:00:00.000000Z)" in notes[3]
    assert "enricher (crm.update_field, e8 at 2026-10-05T08:00:00.000000Z)" in notes[1]


def test_final_rows_are_the_state_after_applying_every_step(con) -> None:
    """Applying the steps in order to the records as the selection left them ends every field at the before of
    its earliest write in the selection, which is the value of the row marked final."""
    plan = trail.restore_plan(con, router_48h()).to_dicts()
    record = {("L-1", "owner"): "rep-2", ("L-1", "status"): "routed", ("L-2", "industry"): "Retail"}
    for row in sorted(plan, key=lambda r: r["step"]):
        record[(row["resource_id"], row["field"])] = json.loads(row["restore_value"])
    finals = {(r["resource_id"], r["field"]): json.loads(r["restore_value"]) for r in plan if r["final"]}
    assert record == finals == {("L-1", "owner"): "queue", ("L-1", "status"): "new", ("L-2", "industry"): None}


def test_irreversible_actions_are_listed_apart_with_reasons(con) -> None:
    """The email sent, the write without before and the write of a field its before lacks are irreversible, each
    with its reason; the failed, pending and skipped attempts and the read-only route are in neither list."""
    gone = trail.irreversible(con, router_48h())
    assert list(zip(gone["event_id"], gone["kind"], gone["fields"], strict=True)) == EXPECTED_IRREVERSIBLE
    reasons = dict(zip(gone["event_id"], gone["reason"], strict=True))
    assert reasons["e4"].startswith("reached someone outside the company")
    assert reasons["e6"] == ("wrote last_activity without recording the values before (no before state), so there "
                             "is no value to restore")
    assert "wrote score with no value for them in before" in reasons["e7"]
    planned = set(trail.restore_plan(con, router_48h())["event_id"])
    assert planned.isdisjoint({"e5", "e9", "e10", "e11"}) and set(gone["event_id"]).isdisjoint({"e5", "e9", "e10"})


def test_summary_counts_split_the_selection(con) -> None:
    """The summary counts the agent's 10 events in range: 3 not done, 1 external, 4 writes with before (one of
    them lacking a field), 1 without before, 1 that changed nothing; the event 3 days earlier is out."""
    summary = trail.run(con, trail.summary_sql(router_48h())).row(0, named=True)
    assert summary == {"events": 10, "not_done": 3, "external": 1, "writes_with_before": 4,
                       "writes_without_before": 1, "writes_missing_before": 1, "no_change": 1}
    assert trail.irreversible_count(summary) == len(EXPECTED_IRREVERSIBLE)


def test_filters_select_by_action_glob_resource_and_status(con) -> None:
    """Action globs, the resource id and the status narrow the selection; the events table lists it newest first
    with a compact changes column."""
    start, end = trail.time_range("Last 7 days", LATEST)
    crm = trail.Selection(start, end, actions=("crm.*",))
    assert trail.run(con, trail.events_sql(crm))["event_id"].to_list() == ["e8", "e7", "e6", "e5", "e3", "e0"]
    one = trail.Selection(start, end, resource_id="L-1", statuses=("ok",))
    shown = trail.run(con, trail.events_sql(one))
    assert shown["event_id"].to_list() == ["e4", "e2", "e1"]
    assert shown["changes"].to_list() == ["", "owner: rep-1 -> rep-2", "owner: queue -> rep-1; status: new -> routed"]
    assert trail.run(con, trail.events_sql(one, limit=2))["event_id"].to_list() == ["e4", "e2"]


def test_bad_selections_say_why() -> None:
    """A range that ends before it starts, a naive time or an unknown status is refused with a plain message."""
    with pytest.raises(ValueError, match="after it ends"):
        trail.Selection(LATEST, LATEST - timedelta(hours=1))
    with pytest.raises(ValueError, match="timezone"):
        trail.Selection(datetime(2026, 10, 5), datetime(2026, 10, 6))
    with pytest.raises(ValueError, match="unknown status done"):
        trail.Selection(LATEST - timedelta(hours=1), LATEST, statuses=("done",))
    with pytest.raises(ValueError, match="a start and an end"):
        trail.time_range("Custom", LATEST)


def test_csv_round_trips(con) -> None:
    """The CSV parses back to the restore steps in order (values as JSON text), then the irreversible actions."""
    rows = list(csv.DictReader(io.StringIO(trail.plan_csv(con, router_48h()))))
    assert list(rows[0]) == trail.CSV_COLUMNS
    restore = [r for r in rows if r["section"] == "restore"]
    assert [(int(r["step"]), r["event_id"], r["field"], json.loads(r["restore_value"]), json.loads(r["written_value"]),
             r["final"] == "true", r["changed_again_by"] or None, r["later_change_by"] or None)
            for r in restore] == EXPECTED_RESTORE
    assert restore[0]["ts"] == "2026-10-05T03:00:00.000000Z"
    gone = [r for r in rows if r["section"] == "irreversible"]
    assert [(r["event_id"], r["kind"], r["field"] or None) for r in gone] == EXPECTED_IRREVERSIBLE
    assert rows.index(gone[0]) == len(restore)  # the irreversible rows come after every restore step


def test_json_round_trips(con) -> None:
    """The JSON holds generated_at, the selection's filters, the restore steps with JSON values and the
    irreversible actions with their reasons."""
    at = datetime(2026, 10, 6, 12, 0, tzinfo=UTC)
    plan = json.loads(trail.plan_json(con, router_48h(), generated_at=at))
    assert list(plan) == ["generated_at", "selection", "restore", "irreversible"]
    assert plan["generated_at"] == "2026-10-06T12:00:00.000000Z"
    assert plan["selection"] == {"from": "2026-10-03T08:00:00.000000Z", "to": "2026-10-05T08:00:00.000000Z",
                                 "agents": [AGENT], "actions": [], "resource_type": None, "resource_id": None,
                                 "statuses": [], "range": "Last 48 hours"}
    assert [(r["step"], r["event_id"], r["field"], r["restore_value"], r["written_value"], r["final"],
             r["changed_again_by"], r["later_change_by"]) for r in plan["restore"]] == EXPECTED_RESTORE
    assert [(r["event_id"], r["kind"], r["fields"]) for r in plan["irreversible"]] == EXPECTED_IRREVERSIBLE
    assert all(r["reason"] for r in plan["irreversible"])


def test_empty_plan_exports(con) -> None:
    """A selection with nothing to roll back exports a header-only CSV and empty JSON lists."""
    start, end = trail.time_range("Last 1 hour", LATEST)
    nothing = trail.Selection(start, end, agents=("nobody",))
    assert trail.plan_csv(con, nothing).strip() == ",".join(f'"{c}"' for c in trail.CSV_COLUMNS)
    plan = json.loads(trail.plan_json(con, nothing))
    assert plan["restore"] == [] and plan["irreversible"] == []


def test_field_names_with_dots_and_quotes(tmp_path: Path) -> None:
    """Field names holding a dot, quotes or a backslash are restored by name, not read as JSON paths."""
    odd = Home.resolve(tmp_path / "odd")
    keys = ["a.b", 'say "hi"', "back\\slash"]
    store_events(odd, actions=[action("x1", 1, "crm.update_field", "L-9", before={k: i for i, k in enumerate(keys)},
                                      after={k: i + 10 for i, k in enumerate(keys)})])
    connection = open_reader(odd)
    try:
        plan = trail.restore_plan(connection, router_48h())
    finally:
        connection.close()
    assert sorted(zip(plan["field"], plan["restore_value"], plan["written_value"], strict=True)) == sorted(
        (k, str(i), str(i + 10)) for i, k in enumerate(keys))


def test_diff_table_marks_changed_fields() -> None:
    """The diff lists written fields first, then fields only in before, with a dash for what was not recorded."""
    frame = trail.diff({"owner": "queue", "status": "new", "region": None}, {"owner": "rep-1", "status": "new"})
    assert frame.rows() == [("owner", "queue", "rep-1", True), ("status", "new", "new", False),
                            ("region", "null", "—", False)]
    assert trail.diff(None, {"x": 1}).rows() == [("x", "—", "1", True)]


# --- the page -----------------------------------------------------------------------------------------------------


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> dict[str, Callable[[], Any]]:
    """The download buttons' deferred contents by file extension, captured as the page registers them."""
    found: dict[str, Callable[[], Any]] = {}
    real = MediaFileManager.add_deferred

    def capture(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        found[Path(file_name or "").suffix] = data_callable
        return real(self, data_callable, mimetype, coordinates, file_name=file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", capture)
    return found


def open_audit(monkeypatch: pytest.MonkeyPatch, home: Home) -> AppTest:
    return open_page(monkeypatch, home, "audit")


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_page_counts_one_agent_48h_on_the_demo(monkeypatch: pytest.MonkeyPatch, demo_home: Home,
                                               deferred: dict[str, Callable[[], Any]]) -> None:
    """Filtered to lead-router and the last 48 h, the page's counts equal DuckDB's over the same home, and the
    download buttons hold that agent's plan: one restore row per changed field, every reversible write in it."""
    at = open_audit(monkeypatch, demo_home)
    at.selectbox(key="audit_range").select("Last 48 hours").run()
    at.multiselect(key="audit_agents").select("lead-router").run()
    assert not at.exception and not at.error
    where = "agent_id = 'lead-router' AND ts >= (SELECT max(ts) FROM actions) - INTERVAL 48 HOURS"
    ((events, writes, not_done),) = sql(demo_home, f"""
        SELECT count(*), count(*) FILTER (WHERE status = 'ok' AND before IS NOT NULL AND after IS NOT NULL),
               count(*) FILTER (WHERE status <> 'ok') FROM actions WHERE {where}""")
    assert events > 1_000 and writes > 0
    assert metric(at, "Matching events") == f"{events:,}"
    assert metric(at, "Reversible writes") == f"{writes:,}"
    assert metric(at, "Not done") == f"{not_done:,}"
    assert any(f"Showing the latest **1,000** of **{events:,}**" in m.value for m in at.markdown)
    assert len(at.dataframe[0].value) == 1_000
    # the restore rows, counted here in Python from the events themselves
    changed = 0
    for before, after in sql(demo_home, f"SELECT before, after FROM actions WHERE {where} AND status = 'ok' "
                                        "AND before IS NOT NULL AND after IS NOT NULL"):
        old, new = json.loads(before), json.loads(after)
        changed += sum(1 for k in new if k in old and old[k] != new[k])
    assert metric(at, "Restore steps") == f"{changed:,}"
    assert {b.key for b in at.get("download_button")} == {"rollback_csv", "rollback_json"}
    rows = list(csv.DictReader(io.StringIO(deferred[".csv"]())))
    restore = [r for r in rows if r["section"] == "restore"]
    assert len(restore) == changed and {r["agent_id"] for r in rows} == {"lead-router"}
    assert [int(r["step"]) for r in restore] == list(range(1, changed + 1))
    plan = json.loads(deferred[".json"]())
    assert plan["selection"]["agents"] == ["lead-router"] and plan["selection"]["range"] == "Last 48 hours"
    assert len(plan["restore"]) == changed
    assert [r["event_id"] for r in plan["restore"]] == [r["event_id"] for r in restore]


def test_page_shows_an_event_with_its_diff(monkeypatch: pytest.MonkeyPatch, small: Home) -> None:
    """Picking an event shows its before/after diff table, its decision and approval."""
    at = open_audit(monkeypatch, small)
    at.multiselect(key="audit_agents").select(AGENT).run()
    assert at.dataframe[0].value["event_id"].tolist() == ["e7", "e6", "e5", "e4", "e11", "e3", "e10", "e2", "e9", "e1"]
    at.selectbox(key="audit_event").select("e1").run()
    assert not at.exception
    diff = next(d.value for d in at.dataframe if "changed" in d.value.columns)
    assert diff.values.tolist() == [["owner", "queue", "rep-1", True], ["status", "new", "routed", True]]
    at.selectbox(key="audit_event").select("e4").run()
    assert any(f"**approval:** {md('mgr-3 at 2026-10-05 03:30 UTC')}" in m.value for m in at.markdown)
    assert at.json[-1].value == json.dumps({"template": "intro-1"})


def test_page_irreversible_list_and_plan_preview(monkeypatch: pytest.MonkeyPatch, small: Home) -> None:
    """The plan section previews the known restore steps and lists the email, the write without before and the
    write with a missing before field as irreversible."""
    at = open_audit(monkeypatch, small)
    at.multiselect(key="audit_agents").select(AGENT).run()
    assert metric(at, "Restore steps") == "4" and metric(at, "Fields restored") == "3"
    assert metric(at, "Changed again later") == "1" and metric(at, "Overwrite later changes") == "3"
    preview = next(d.value for d in at.dataframe if "step" in d.value.columns)
    assert preview["field"].tolist() == ["industry", "owner", "owner", "status"]
    assert preview["restore"].tolist() == ["null", '"rep-1"', '"queue"', '"new"']
    gone = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert gone["event_id"].tolist() == ["e7", "e6", "e4"]
    assert any(s.value == "Irreversible actions: 3" for s in at.subheader)


def test_page_empty_states(monkeypatch: pytest.MonkeyPatch, home: Home, small: Home) -> None:
    """An empty store says how to send events; filters that match nothing say to widen the range."""
    empty = Home.resolve(home.root.parent / "empty")
    at = open_audit(monkeypatch, empty)
    assert at.info[0].value.startswith("No action events yet")
    at = open_audit(monkeypatch, small)
    at.text_input(key="audit_resource_id").input("L-404").run()
    assert at.info[0].value.startswith("Nothing matches these filters: widen the time range")
    assert not at.dataframe


def test_page_refuses_a_reversed_custom_range(monkeypatch: pytest.MonkeyPatch, small: Home) -> None:
    """A custom range whose From is after its To gives a message on the page, not a stack trace."""
    at = open_audit(monkeypatch, small)
    at.selectbox(key="audit_range").select("Custom").run()
    at.datetime_input(key="audit_from").set_value(datetime(2026, 10, 5, 6, 0)).run()
    at.datetime_input(key="audit_to").set_value(datetime(2026, 10, 5, 5, 0)).run()
    assert not at.exception
    assert "after it ends" in at.error[0].value
    at.datetime_input(key="audit_to").set_value(datetime(2026, 10, 5, 7, 30)).run()
    assert metric(at, "Matching events") == "2"  # e6 at 06:00 and e7 at 07:00


# --- an incident's damaged records -------------------------------------------------------------------------------


def bad_reads(home: Home, spike: Any) -> dict[str, str]:
    """event_id -> lead of the null spike's bad-input reads, from its definition: lead-router's lead.route and
    enrichment-agent's lead.enrich that read deal_stage null while opportunity_id was set, over the spike's range."""
    end = spike.resolved_at or spike.last_fired_at
    return dict(sql(home, """
        SELECT event_id, resource_id FROM actions
        WHERE ((agent_id = 'lead-router' AND action = 'lead.route')
               OR (agent_id = 'enrichment-agent' AND action = 'lead.enrich'))
          AND ts >= ? AND ts <= ? AND resource_type = 'lead'
          AND inputs ->> '$.deal_stage' IS NULL AND inputs ->> '$.opportunity_id' IS NOT NULL""",
                    spike.started_at, end))


def carried_out(home: Home, bad: dict[str, str]) -> set[str]:
    """The writes that carried out decisions taken on bad input, from the definition: a bad read that wrote
    nothing itself, and the writes (an after state) of the same agent on the same record in the same trace."""
    return {event_id for (event_id,) in sql(home, """
        SELECT DISTINCT w.event_id FROM actions w JOIN actions b
          ON list_contains(?, b.event_id) AND b.after IS NULL AND b.trace_id IS NOT NULL
         AND w.trace_id = b.trace_id AND w.agent_id = b.agent_id AND w.resource_type = b.resource_type
         AND w.resource_id = b.resource_id
        WHERE w.after IS NOT NULL""", sorted(bad))}


def test_page_narrowed_to_an_incidents_bad_input_actions(monkeypatch: pytest.MonkeyPatch, demo_home: Home,
                                                         deferred: dict[str, Callable[[], Any]]) -> None:
    """`audit?incident=<rename>` shows exactly the actions its null spike took on bad input and the writes that
    carried out their decisions (counted here from the definition), not the other actions on the same leads
    (enrichment-agent's crm.update_field writes, which a rollback would undo wrongly), says which in a note, and
    its plan (which restores the owners and sequences set on bad input) and export cover those alone; clearing
    the filter goes back to the whole trail."""
    from agentwatch.checks.engine import incident_store

    incidents = incident_store(demo_home).list()
    (rename,) = [i for i in incidents if i.check == "schema.field_renamed"]
    (spike,) = [i for i in incidents if i.check == "quality.null_spike"]
    bad = bad_reads(demo_home, spike)
    leads = set(bad.values())
    ((others,),) = sql(demo_home, "SELECT count(*) FROM actions WHERE resource_type = 'lead' AND "
                       "list_contains(?, resource_id) AND ts >= ? AND agent_id = 'enrichment-agent' AND action = "
                       "'crm.update_field'", sorted(leads), spike.started_at)
    assert others > 0  # the finding: other writes on the damaged leads, which the selection must leave out
    monkeypatch.setenv("AGENTWATCH_HOME", str(demo_home.root))
    at = AppTest.from_file(str(ROOT / "dashboards" / "app.py"), default_timeout=60)
    at.run()
    at.query_params["incident"] = rename.id
    at.switch_page("views/audit.py").run()
    assert not at.exception and not at.error
    (note,) = at.info
    writes = carried_out(demo_home, bad)
    selected = set(bad) | writes
    assert writes and not writes & set(bad)
    assert note.value.startswith(
        f"Showing **{rename.id}**: " + md(f"the {len(selected):,} lead.enrich and lead.route actions that read "
                                          f"deal_stage as null on {len(leads):,} leads with opportunity_id set, with "
                                          "the writes that carried out their decisions"))
    assert metric(at, "Matching events") == f"{len(selected):,}"
    listed = next(d.value for d in at.dataframe if "first" in d.value.columns)
    assert set(listed["resource"]) == {f"lead {lead}" for lead in leads}
    shown = next(d.value for d in at.dataframe if "changes" in d.value.columns)
    assert set(shown["event_id"]) <= selected and len(shown) == min(len(selected), trail.SHOWN)
    plan = json.loads(deferred[".json"]())
    assert plan["selection"]["incident"] == rename.id
    assert {r["event_id"] for r in plan["restore"] + plan["irreversible"]} <= selected
    assert {r["action"] for r in plan["restore"]} == {"lead.assign_owner", "sequence.enroll"}

    at.button(key="audit_clear_incident").click().run()
    assert not at.exception and "incident" not in at.query_params and not at.info
    assert not [d for d in at.dataframe if "first" in d.value.columns]


def test_an_incident_without_damage_selects_its_subjects_actions(monkeypatch: pytest.MonkeyPatch,
                                                                 demo_home: Home) -> None:
    """A volume spike measures no damage: `audit?incident=` selects its agent's actions of its action from its start
    to its end (counted here), not the last 24 hours of every agent."""
    from agentwatch.checks.engine import incident_store

    spike = next(i for i in incident_store(demo_home).list() if i.check == "volume.action_spike")
    agent, action = spike.subject["agent_id"], spike.subject["action"]
    end = spike.resolved_at or spike.last_fired_at
    ((events, leads),) = sql(demo_home, "SELECT count(*), count(DISTINCT resource_id) FROM actions WHERE agent_id = ? "
                             "AND action = ? AND ts >= ? AND ts <= ?", agent, action, spike.started_at, end)
    assert events > 0
    at = AppTest.from_file(str(ROOT / "dashboards" / "app.py"), default_timeout=60)
    monkeypatch.setenv("AGENTWATCH_HOME", str(demo_home.root))
    at.run()
    at.query_params["incident"] = spike.id
    at.switch_page("views/audit.py").run()
    assert not at.exception and not at.error
    (note,) = at.info
    assert note.value.startswith(f"Showing **{spike.id}**: " + md(f"the {events:,} actions of {agent} {action} on "
                                                                  f"{leads:,} leads, from"))
    assert metric(at, "Matching events") == f"{events:,}"
    shown = next(d.value for d in at.dataframe if "changes" in d.value.columns)
    assert set(shown["agent"]) == {agent} and set(shown["action"]) == {action}


def test_page_says_when_an_incident_has_no_actions(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """An unknown incident, or one about no agent's actions (a field added), is said in a warning; the page shows
    the whole trail."""
    from agentwatch.checks.engine import incident_store

    (added,) = [i for i in incident_store(demo_home).list() if i.check == "schema.field_added"]
    monkeypatch.setenv("AGENTWATCH_HOME", str(demo_home.root))
    for wanted, said in (("INC-999", f"There is no incident {md(repr('INC-999'))} in this home"),
                         (added.id, f"{added.id} ({md('schema.field_added')}) is about no agent's actions")):
        at = AppTest.from_file(str(ROOT / "dashboards" / "app.py"), default_timeout=60)
        at.run()
        at.query_params["incident"] = wanted
        at.switch_page("views/audit.py").run()
        assert not at.exception
        assert at.warning[0].value.startswith(said) and "showing every record" in at.warning[0].value
        assert at.selectbox(key="audit_range").value == "Last 24 hours"
