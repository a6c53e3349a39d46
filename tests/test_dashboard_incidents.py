"""The incidents page and its detail view, run with Streamlit's AppTest over the 7-day demo home (its fault: on day
5, Lead.deal_stage renamed opportunity_stage, the rename INC-1 explaining the null spike INC-2, which explains the
routing drift INC-3)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.properties import incident_properties
from agentwatch.alerts.silences import Silences
from agentwatch.checks.engine import incident_store
from agentwatch.core.home import Home
from agentwatch.dashboards.escape import md
from agentwatch.dashboards.incident_view import MAX_DECISIONS, evidence_rows
from agentwatch.schemas.incidents import Incident
from agentwatch.store.reader import open_reader
from tests.dashboard_support import open_dashboard  # noqa: F401  (autouse: no key asked)

ROOT = Path(__file__).resolve().parents[1]
SEVERITY = {"critical": 0, "warning": 1, "info": 2}
LIST_COLUMNS = ["id", "status", "severity", "check", "subject", "age", "opened", "links", "summary"]


def app(monkeypatch: pytest.MonkeyPatch, home: Home, incident: str | None = None) -> AppTest:
    monkeypatch.setenv("AGENTWATCH_HOME", str(home.root))
    at = AppTest.from_file(str(ROOT / "dashboards" / "app.py"), default_timeout=60)
    if incident is not None:
        at.query_params["incident"] = incident
    at.run()
    assert not at.exception
    return at


def table(at: AppTest, first_column: str, columns: int) -> pd.DataFrame:
    """The page's table whose first column and width are these."""
    found = [d.value for d in at.dataframe if d.value.shape[1] == columns and d.value.columns[0] == first_column]
    assert found, f"no table starting with {first_column!r}"
    return found[0]


def charts(at: AppTest) -> list[dict[str, pd.DataFrame]]:
    """Every Altair chart's datasets, as frames by name."""
    return [{d.name: pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets}
            for chart in at.get("vega_lite_chart")]


def one(home: Home, check: str) -> Incident:
    (found,) = [i for i in incident_store(home).list() if i.check == check]
    return found


def copy_of(demo_home: Home, tmp_path: Path) -> Home:
    shutil.copytree(demo_home.root, tmp_path / "home")
    return Home.resolve(tmp_path / "home")


def sql(home: Home, text: str, params: list | None = None) -> list[tuple]:
    con = open_reader(home)
    try:
        return con.execute(text, params or []).fetchall()
    finally:
        con.close()


def under_causes(incidents: list[Incident]) -> list[tuple[Incident, int]]:
    """The list's order worked out here: the incidents no other explains in the usual order (unresolved first,
    then by severity, then newest opened), each followed by what it caused, and what that caused, with depths."""
    def rank(i: Incident) -> tuple:
        return i.status == "resolved", SEVERITY[i.severity], -i.opened_at.timestamp()

    ids = {i.id for i in incidents}
    found: list[tuple[Incident, int]] = []

    def walk(incident: Incident, depth: int) -> None:
        found.append((incident, depth))
        for effect in sorted((i for i in incidents if i.caused_by[:1] == [incident.id]), key=rank):
            walk(effect, depth + 1)

    for root in sorted((i for i in incidents if not set(i.caused_by) & ids), key=rank):
        walk(root, 0)
    return found


def test_list_orders_unresolved_first_and_metrics_count_the_store(demo_home, tmp_path, monkeypatch) -> None:
    """Open and acknowledged incidents come first (then critical, warning, info), each effect right under the
    incident that explains it, marked and indented (the resolved drift under the acknowledged null spike, under
    the open rename), and the four metrics equal the incident store's counts, including an acknowledgement and a
    resolution made just now."""
    home = copy_of(demo_home, tmp_path)
    store = incident_store(home)
    drift, spike, rename = (one(home, c) for c in ("drift.distribution", "quality.null_spike", "schema.field_renamed"))
    store.set_status(drift.id, "resolved")
    store.set_status(spike.id, "acknowledged")
    at = app(monkeypatch, home)

    incidents = store.list()
    now = datetime.now(UTC)
    expected = {
        "Open critical": sum(i.status == "open" and i.severity == "critical" for i in incidents),
        "Open warning": sum(i.status == "open" and i.severity == "warning" for i in incidents),
        "Acknowledged": sum(i.status == "acknowledged" for i in incidents),
        "Resolved, last 7 days": sum(i.resolved_at is not None and now - i.resolved_at < timedelta(days=7)
                                     for i in incidents),
    }
    assert expected == {"Open critical": 1, "Open warning": 0, "Acknowledged": 1, "Resolved, last 7 days": 1}
    assert {m.label: int(m.value) for m in at.metric} == expected

    shown = table(at, "id", len(LIST_COLUMNS))
    assert list(shown.columns) == LIST_COLUMNS
    order = under_causes(incidents)
    assert list(shown["id"]) == [i.id for i, _ in order]
    assert list(shown["id"][:3]) == [rename.id, spike.id, drift.id]  # the cause first, its effects under it
    assert list(shown["check"][:3]) == ["schema.field_renamed", "\u21b3 quality.null_spike",
                                        "\u00a0\u00a0\u21b3 drift.distribution"]
    assert set(shown["status"][3:]) == {"resolved"} and not any("\u21b3" in c for c in shown["check"][3:])
    picker = at.selectbox(key="incident_pick")
    assert picker.options[:2] == [
        f"{rename.id} · schema.field_renamed · Lead.deal_stage -> opportunity_stage",
        f"\u21b3 {spike.id} · quality.null_spike · field=deal_stage"]
    row = shown[shown["id"] == rename.id].iloc[0]
    assert row["links"] == f"effects {spike.id}" and row["subject"] == "Lead.deal_stage -> opportunity_stage"
    assert row["age"] == f"{(now - rename.opened_at).days} d"


def test_filters_narrow_the_list(demo_home, monkeypatch) -> None:
    """Each filter (check, agent named anywhere in the incident, CRM object, status) leaves exactly the incidents
    that match it."""
    incidents = incident_store(demo_home).list()
    at = app(monkeypatch, demo_home)

    def ids(**filters: list[str]) -> set[str]:
        for key in ("filter_check", "filter_agent", "filter_object", "filter_status"):
            at.multiselect(key=key).set_value(filters.get(key, []))
        at.run()
        assert not at.exception
        return set(table(at, "id", len(LIST_COLUMNS))["id"])

    assert ids(filter_check=["volume.action_spike"]) == {i.id for i in incidents if i.check == "volume.action_spike"}
    assert len(ids(filter_check=["volume.action_spike"])) == 7
    by_router = {i.id for i in incidents
                 if i.subject.get("agent_id") == "lead-router" or "lead-router" in i.evidence.get("agents", [])}
    assert ids(filter_agent=["lead-router"]) == by_router
    rename, spike = one(demo_home, "schema.field_renamed"), one(demo_home, "quality.null_spike")
    assert {rename.id, spike.id} <= by_router  # named by the evidence only, not by the subject
    on_lead = {i.id for i in incidents if i.subject.get("object") == "Lead" or "Lead" in i.evidence.get("objects", [])}
    assert ids(filter_object=["Lead"]) == on_lead
    assert spike.id in on_lead
    assert ids(filter_status=["open"]) == {i.id for i in incidents if i.status == "open"} == {
        rename.id, spike.id, one(demo_home, "drift.distribution").id}
    assert ids(filter_status=["open"], filter_agent=["enrichment-agent"]) == {rename.id, spike.id}


def test_notification_link_opens_the_rename_with_its_effects_and_signal(demo_home, monkeypatch) -> None:
    """`?incident=<rename id>` opens the rename: header, its effect (the null spike) linked, and a chart of the
    hourly reads of deal_stage, with a value and null, equal to an independent DuckDB count (no value after the
    rename, some before; the null share 100% after, ~84% before); clicking the link opens the null spike and puts
    its id in the URL, and so does the picker."""
    rename, spike = one(demo_home, "schema.field_renamed"), one(demo_home, "quality.null_spike")
    assert rename.effects == [spike.id]
    at = app(monkeypatch, demo_home, incident=rename.id)
    assert at.subheader[0].value == f"{rename.id} · schema.field_renamed"
    assert at.selectbox(key="incident_pick").value == rename.id
    assert md(rename.summary) in [m.value for m in at.markdown]  # shown as written, nothing italic
    assert at.button(key=f"link_{spike.id}").label.startswith(f"{spike.id} · critical · open · quality.null_spike")
    evidence = table(at, "key", 2)
    assert dict(zip(evidence["key"], evidence["value"], strict=True))["input_keys"] == "deal_stage"

    (signal,) = [frame for datasets in charts(at) for frame in datasets.values() if "reads" in frame.columns]
    signal["bucket"] = pd.to_datetime(signal["bucket"], utc=True)
    independent = sql(demo_home, """
        SELECT date_trunc('hour', ts) AS hour, count(*) AS reads,
               avg(CASE WHEN inputs ->> '$.deal_stage' IS NULL THEN 1.0 ELSE 0.0 END) AS share,
               count(inputs ->> '$.deal_stage') AS with_value
        FROM actions
        WHERE ((agent_id = 'lead-router' AND action = 'lead.route')
               OR (agent_id = 'enrichment-agent' AND action = 'lead.enrich'))
          AND ts >= ? AND ts < ?
        GROUP BY ALL ORDER BY hour""", [signal["bucket"].min().to_pydatetime(),
                                        signal["bucket"].max().to_pydatetime() + timedelta(hours=1)])
    counted = {hour.astimezone(UTC): (reads, share, values) for hour, reads, share, values in independent}
    charted = {row.bucket.to_pydatetime(): (row.reads, row.actual, row.values) for row in signal.itertuples()
               if row.reads}
    assert charted.keys() == counted.keys() and len(charted) > 80
    for hour, (reads, share, values) in counted.items():
        assert charted[hour][0] == reads and charted[hour][1] == pytest.approx(float(share))
        assert charted[hour][2] == values  # the blue bars: reads that carried a value
    assert (signal["values"] + signal["nulls"] == signal["reads"]).all()  # stacked, they make every read
    after = [share for hour, (_, share, _) in charted.items() if hour >= rename.started_at + timedelta(hours=1)]
    assert after and all(share == 1.0 for share in after)
    assert sum(v for hour, (_, _, v) in charted.items() if hour < rename.started_at) > 10  # values, then none
    assert sum(v for hour, (_, _, v) in charted.items() if hour >= rename.started_at + timedelta(hours=1)) == 0
    assert 0.75 < float(np.nanmedian(signal["expected"])) < 0.95  # the usual share of null reads, about 84%

    at.button(key=f"link_{spike.id}").click().run()
    assert not at.exception
    assert at.subheader[0].value == f"{spike.id} · quality.null_spike"
    assert at.query_params["incident"] == spike.id
    assert at.button(key=f"link_{rename.id}")  # its cause links back
    at.selectbox(key="incident_pick").select(rename.id).run()  # picking puts the id in the URL too
    assert at.query_params["incident"] == rename.id and at.subheader[0].value.startswith(rename.id)


def test_acknowledge_and_resolve_store_the_new_status(demo_home, tmp_path, monkeypatch) -> None:
    """Acknowledge on a copy of the home stores `acknowledged` and the page says so (the button then disabled);
    Resolve then stores `resolved`."""
    home = copy_of(demo_home, tmp_path)
    rename = one(home, "schema.field_renamed")
    at = app(monkeypatch, home, incident=rename.id)
    assert not at.button(key="ack_button").disabled
    at.button(key="ack_button").click().run()
    assert not at.exception
    stored = incident_store(home).get(rename.id)
    assert stored.status == "acknowledged" and stored.acknowledged_at is not None
    assert f"{rename.id} is now acknowledged." in [s.value for s in at.success]
    assert at.button(key="ack_button").disabled and not at.button(key="resolve_button").disabled
    assert {m.label: int(m.value) for m in at.metric}["Acknowledged"] == 1

    at.button(key="resolve_button").click().run()
    assert incident_store(home).get(rename.id).status == "resolved"
    assert at.button(key="resolve_button").disabled


def test_silence_form_creates_a_silence_matching_the_incident(demo_home, tmp_path, monkeypatch) -> None:
    """The silence form stores a silence of the chosen length with the comment, matching the incident's check and
    field, and names its id; without a comment it refuses with a message."""
    home = copy_of(demo_home, tmp_path)
    spike = one(home, "quality.null_spike")
    at = app(monkeypatch, home, incident=spike.id)
    at.button(key="silence_button").click().run()
    assert not at.exception
    assert any("must say why" in e.value for e in at.error)
    assert Silences(alerts_db(home)).list() == []

    at.selectbox(key="silence_for").select("8h")
    at.text_input(key="silence_comment").input("fix deploying")
    at.button(key="silence_button").click().run()
    assert not at.exception
    (silence,) = Silences(alerts_db(home)).list()
    assert silence.matchers == [("check", "quality.null_spike"), ("field", "deal_stage")]
    assert silence.ends_at - silence.starts_at == timedelta(hours=8) and silence.comment == "fix deploying"
    assert silence.matches(incident_properties(spike))
    assert not silence.matches(incident_properties(one(home, "schema.field_renamed")))
    assert any(s.value.startswith(f"Silenced as {silence.id} until ") for s in at.success)
    assert any(silence.id in c.value and "held back" in c.value for c in at.caption)


def test_sample_events_come_from_the_store(demo_home, monkeypatch) -> None:
    """The null spike's sample events table lists exactly its sample ids, with agent, action and decision as
    stored; each is a bad-input read at or after the start (deal_stage null, opportunity_id set)."""
    spike = one(demo_home, "quality.null_spike")
    at = app(monkeypatch, demo_home, incident=spike.id)
    samples = table(at, "event_id", 7)
    assert list(samples.columns) == ["event_id", "ts", "agent_id", "action", "resource", "status", "decision"]
    assert sorted(samples["event_id"]) == sorted(spike.sample_event_ids) and len(samples) == 10
    stored = sql(demo_home, "SELECT event_id, agent_id, action, resource_type || '/' || resource_id, "
                 "CAST(decision AS VARCHAR), ts, inputs ->> '$.deal_stage', inputs ->> '$.opportunity_id' "
                 "FROM actions WHERE list_contains(?, event_id)", [spike.sample_event_ids])
    assert {r[0]: r[1:5] for r in stored} == {
        row.event_id: (row.agent_id, row.action, row.resource, row.decision) for row in samples.itertuples()}
    assert all(ts >= spike.started_at and stage is None and opportunity for *_, ts, stage, opportunity in stored)


def test_samples_before_the_start_are_left_out(demo_home, tmp_path, monkeypatch) -> None:
    """A sample event from before the incident began (ordinary traffic) is not in the table; a caption says so."""
    home = copy_of(demo_home, tmp_path)
    store = incident_store(home)
    spike = one(home, "quality.null_spike")
    ((early,),) = sql(home, "SELECT event_id FROM actions WHERE agent_id = 'lead-router' AND action = 'lead.route' "
                      "AND ts < ? AND ts >= ? ORDER BY ts DESC LIMIT 1", [spike.started_at,
                                                                           spike.started_at - timedelta(hours=20)])
    store.save([spike.model_copy(update={"sample_event_ids": [early, *spike.sample_event_ids]})],
               first_number=10_000)  # above every id: the spike is an update
    at = app(monkeypatch, home, incident=spike.id)
    samples = table(at, "event_id", 7)
    assert early not in set(samples["event_id"]) and sorted(samples["event_id"]) == sorted(spike.sample_event_ids)
    assert any(c.value.startswith("1 of the sample events are from before the incident began") for c in at.caption)


BAD_READS = """((agent_id = 'lead-router' AND action = 'lead.route')
    OR (agent_id = 'enrichment-agent' AND action = 'lead.enrich')) AND ts >= ? AND ts <= ? AND resource_type = 'lead'
    AND inputs ->> '$.deal_stage' IS NULL AND inputs ->> '$.opportunity_id' IS NOT NULL"""


def damage_of(home: Home, spike: Incident) -> tuple[set[str], list[tuple[str, str, int]]]:
    """The null spike's damage counted here from its definition: the leads that lead-router's lead.route or
    enrichment-agent's lead.enrich read with deal_stage null while opportunity_id was set, from the spike's start to
    its last firing; and per decision (text or true/false values of the done ones), the leads it was taken on, the
    most first (ties by key, then value)."""
    rows = sql(home, """
        SELECT resource_id, status, CAST(decision AS VARCHAR) FROM actions
        WHERE ((agent_id = 'lead-router' AND action = 'lead.route')
               OR (agent_id = 'enrichment-agent' AND action = 'lead.enrich'))
          AND ts >= ? AND ts <= ? AND resource_type = 'lead'
          AND inputs ->> '$.deal_stage' IS NULL AND inputs ->> '$.opportunity_id' IS NOT NULL""",
               [spike.started_at, spike.last_fired_at])
    taken: dict[tuple[str, str], set[str]] = {}
    for lead, status, decision in rows:
        for key, value in json.loads(decision or "{}").items():
            if status == "ok" and isinstance(value, str | bool):
                taken.setdefault((key, str(value).lower() if isinstance(value, bool) else value), set()).add(lead)
    decisions = sorted(((k, v, len(leads)) for (k, v), leads in taken.items()), key=lambda d: (-d[2], d[0], d[1]))
    return {lead for lead, _, _ in rows}, decisions


def test_the_rename_says_what_broke_since_when_what_it_did_and_what_to_do(demo_home, monkeypatch) -> None:
    """The rename's page answers in order: what broke (old and new field, the object, the snapshot pair, the agents
    reading it), since when, what it did (the leads acted on with bad input, counted here independently, and the
    decisions taken on them, with their counts), with a link to exactly those records in the audit trail, and what
    to do (the fields: mapping, or updating the agents). `Affected` says its unit."""
    rename, spike = one(demo_home, "schema.field_renamed"), one(demo_home, "quality.null_spike")
    assert {(r["agent_id"], r["action"]) for r in spike.evidence["readers"]} == {
        ("lead-router", "lead.route"), ("enrichment-agent", "lead.enrich")}  # the readers damage_of names
    at = app(monkeypatch, demo_home, incident=rename.id)
    texts = [m.value for m in at.markdown]
    headings = [t.strip("# ") for t in texts if t.startswith("#### ")]
    assert headings[:5] == ["What broke", "Since when", "What it did", "What to do", "Signal around the start"]
    section = {h: [] for h in headings}
    current = None
    for text in texts:
        current = text.strip("# ") if text.startswith("#### ") else current
        if current in section and not text.startswith("#### "):
            section[current].append(text)

    broke = " ".join(section["What broke"])
    evidence = rename.evidence
    assert f"**Lead.{md('deal_stage')}** was renamed **{md('opportunity_stage')}**" in broke
    for snapshot in (evidence["previous_snapshot_at"], evidence["snapshot_at"]):
        assert md(datetime.fromisoformat(snapshot).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")) in broke
    assert f"**Agents reading it:** {md('enrichment-agent, lead-router')}" in broke
    since = " ".join(section["Since when"])
    assert f"**Began** {rename.started_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" in since
    assert "**Affected** 2 agents reading the field" in since

    leads, decisions = damage_of(demo_home, spike)
    ((actions,),) = sql(demo_home, f"SELECT count(*) FROM actions WHERE {BAD_READS}", [spike.started_at,
                                                                                     spike.last_fired_at])
    assert len(leads) > 50
    did = "\n".join(section["What it did"])
    assert f"**{len(leads):,} leads** acted on with bad input since it began" in did
    shown = [line for line in did.splitlines() if line.startswith("- **")]
    expected = [f"- **{n:,}** " for _, _, n in decisions[:MAX_DECISIONS]]
    assert [line[:len(prefix)] for line, prefix in zip(shown, expected, strict=True)] == expected
    for line, (key, value, _) in zip(shown, decisions[:MAX_DECISIONS], strict=True):
        assert line.endswith(f"({md(f'{key}={value}')})")
    nurtured = next(n for key, value, n in decisions if (key, value) == ("route_to", "nurture"))
    assert f"- **{nurtured:,}** {md('leads with opportunity_id set routed to nurture')} ({md('route_to=nurture')})" \
        in shown
    further = decisions[MAX_DECISIONS:]
    assert further  # the demo takes more decisions than the page lists: it says how many more, on how many leads
    ((more_leads,),) = sql(demo_home, f"""
        SELECT count(DISTINCT resource_id) FROM actions, json_each(decision) AS e
        WHERE {BAD_READS} AND status = 'ok' AND e.type IN ('VARCHAR', 'BOOLEAN')
          AND list_contains(?, e.key || '=' || (e.value ->> '$'))""",
                           [spike.started_at, spike.last_fired_at, [f"{k}={v}" for k, v, _ in further]])
    assert did.splitlines()[-1] == f"- and {len(further):,} more decisions ({more_leads:,} leads)"
    (link,) = at.get("page_link")
    assert (link.proto.page, link.proto.query_string) == ("audit", f"incident={rename.id}")
    ((writes,),) = sql(demo_home, f"""
        SELECT count(DISTINCT w.event_id) FROM actions w JOIN (SELECT * FROM actions WHERE {BAD_READS}) b
          ON b.after IS NULL AND b.trace_id IS NOT NULL AND w.trace_id = b.trace_id AND w.agent_id = b.agent_id
         AND w.resource_type = b.resource_type AND w.resource_id = b.resource_id
        WHERE w.after IS NOT NULL""", [spike.started_at, spike.last_fired_at])
    assert writes > 0  # lead-router's lead.assign_owner and sequence.enroll after each bad lead.route
    assert link.proto.label == (f"See these {actions:,} actions on {len(leads):,} records in the audit trail, with "
                                f"the {writes:,} writes that carried out their decisions, and their rollback plan")

    todo = " ".join(section["What to do"])
    assert "`fields: {deal_stage: Lead.opportunity_stage}`" in todo
    assert f"update the agents {md('(enrichment-agent, lead-router)')} to read opportunity{md('_')}stage" in todo
    assert "once reads carry values again" in todo
    assert [c.value.strip() for c in at.code] == ["fields:\n  deal_stage: Lead.opportunity_stage"]


def test_an_effect_names_its_root_and_links_there(demo_home, monkeypatch) -> None:
    """The routing drift, an effect of the null spike which is an effect of the rename, says the rename explains
    it (the root, not the spike), tells to fix that first, and its button opens the rename."""
    rename, drift = one(demo_home, "schema.field_renamed"), one(demo_home, "drift.distribution")
    assert drift.caused_by == [one(demo_home, "quality.null_spike").id]
    at = app(monkeypatch, demo_home, incident=drift.id)
    (note,) = at.info
    assert note.value.startswith(f"Explained by **{rename.id}** ({md('schema.field_renamed')}")
    assert any(m.value.startswith(f"Fix the cause first, **{rename.id}**: Map the old key") for m in at.markdown)
    assert any(f"**Affected** {drift.affected:,} events in the drifted window" in m.value for m in at.markdown)
    at.button(key="root_link").click().run()
    assert not at.exception
    assert at.subheader[0].value == f"{rename.id} · schema.field_renamed" and at.query_params["incident"] == rename.id


def test_drift_incident_shows_its_drift_report(demo_home, monkeypatch) -> None:
    """The drift incident shows every compared column's score (highest first, the drifted one flagged), a chart of
    them, the category shares of the drifted column and Evidently's value."""
    drift = one(demo_home, "drift.distribution")
    at = app(monkeypatch, demo_home, incident=drift.id)
    assert "Drift report (Evidently)" in [m.value.strip("# ") for m in at.markdown]
    scores = table(at, "column", 5)
    expected = sorted(drift.evidence["scores"].items(), key=lambda kv: -kv[1])
    assert list(zip(scores["column"], scores["score"], strict=True)) == [(c, pytest.approx(s)) for c, s in expected]
    assert list(scores.loc[scores["drifted"], "column"]) == drift.evidence["drifted_columns"] == ["decision.sequence"]
    assert set(scores["role"]) == {"decision", "input"}

    bars = [frame for datasets in charts(at) for frame in datasets.values() if "drifted" in frame.columns]
    assert bars and dict(zip(bars[0]["column"], bars[0]["score"], strict=True)) == pytest.approx(
        drift.evidence["scores"])
    shares = [frame for datasets in charts(at) for frame in datasets.values() if "window" in frame.columns]
    reported = {s["value"]: s for s in drift.evidence["columns"]["decision.sequence"]["shares"]}
    assert {(r.value, r.window): r.share for r in shares[0].itertuples()} == pytest.approx(
        {(v, w): s[w] for v, s in reported.items() for w in ("reference", "current")})
    evidently = table(at, "column", 4)
    assert evidently["value"][0] == pytest.approx(drift.evidence["report"][0]["value"])


def test_event_count_signal_matches_an_independent_count(demo_home, monkeypatch) -> None:
    """signals.event_counts gives an agent x action's events per 5 minutes as DuckDB counts them, and its band at
    the start is the median and 10th-90th percentile of the same hour on the same kind of day before (the demo has
    under 2 weeks of history), zero-filled, computed here with numpy."""
    monkeypatch.setenv("AGENTWATCH_HOME", str(demo_home.root))
    from agentwatch.dashboards import signals

    spike = next(i for i in incident_store(demo_home).list() if i.check == "volume.action_spike"
                 and i.subject == {"agent_id": "enrichment-agent", "action": "crm.update_field"})
    start, end = signals.window(spike)
    frame = signals.event_counts(["enrichment-agent"], "crm.update_field", start, end)
    rows = sql(demo_home, "SELECT time_bucket(INTERVAL '5 minutes', ts) AS b, count(*) FROM actions "
               "WHERE agent_id = 'enrichment-agent' AND action = 'crm.update_field' AND ts >= ? AND ts < ? "
               "GROUP BY ALL", [start - timedelta(days=21), end])
    counts = {b.astimezone(UTC): n for b, n in rows}
    buckets = [start + i * timedelta(minutes=5) for i in range(int((end - start) / timedelta(minutes=5)))]
    assert frame["bucket"].to_list() == buckets
    assert frame["actual"].to_list() == [float(counts.get(b, 0)) for b in buckets]

    at_start = frame.filter(pl.col("bucket") == spike.started_at.replace(minute=spike.started_at.minute // 5 * 5))
    first = min(counts)
    history = [first + i * timedelta(minutes=5) for i in range(int((start - first) / timedelta(minutes=5)))]
    weekend = spike.started_at.weekday() >= 5
    same = np.array([counts.get(b, 0) for b in history
                     if b.hour == spike.started_at.hour and (b.weekday() >= 5) == weekend], dtype=float)
    assert same.size >= 24  # two weekdays or more of 12 five-minute buckets
    assert at_start["expected"][0] == pytest.approx(np.median(same))
    assert at_start["low"][0] == pytest.approx(np.quantile(same, 0.1))
    assert at_start["high"][0] == pytest.approx(np.quantile(same, 0.9))
    assert at_start["actual"][0] > at_start["high"][0]  # the spike is above the band


def test_unknown_incident_in_the_url_is_said_plainly(demo_home, monkeypatch) -> None:
    """`?incident=INC-999` shows a warning naming it and the list, with no detail and no error."""
    at = app(monkeypatch, demo_home, incident="INC-999")
    assert any(md("'INC-999'") in w.value for w in at.warning)
    assert not at.subheader and at.selectbox(key="incident_pick").value is None
    assert len(table(at, "id", len(LIST_COLUMNS))) == len(incident_store(demo_home).list())


def test_empty_home_says_what_to_do(home, monkeypatch) -> None:
    """A home without incidents shows how to get some, and opening the page creates no incident store."""
    at = app(monkeypatch, home)
    assert [i.value for i in at.info] == [
        "No incidents yet: run `agentwatch check` (or `agentwatch serve`, which runs the checks every minute)"]
    assert not at.metric and not at.dataframe
    assert not home.incidents_file.exists()


def test_evidence_rows_are_readable() -> None:
    """Evidence becomes key/value text: scalars as written, lists of scalars joined, nested values as JSON; text
    for markdown has its punctuation escaped."""
    rows = evidence_rows({"agents": ["a", "b"], "ratio": 4.4412, "readers": [{"agent_id": "a", "reads": 3}],
                          "note": None, "cusum": 10})
    assert dict(rows.iter_rows()) == {"agents": "a, b", "ratio": "4.441", "note": "null", "cusum": "10",
                                      "readers": json.dumps([{"agent_id": "a", "reads": 3}], separators=(", ", ": "))}
    assert md("read deal_stage :red[x] *\n# h") == r"read deal\_stage \:red\[x\] \* \# h"


def test_a_drift_incident_shows_evidentlys_full_report_on_request(demo_home: Home, monkeypatch) -> None:
    """Turning on the report toggle renders Evidently's DataDriftPreset HTML for the incident's windows, covering
    the drifted column; the sample holds both windows of the incident's agent and action."""
    from agentwatch.dashboards.drift_report import report_columns, sample_sql

    drift = next(i for i in incident_store(demo_home).list() if i.check == "drift.distribution")
    columns = report_columns(drift)
    assert columns[0][0] == drift.evidence["drifted_columns"][0]
    sql, params = sample_sql(drift, columns)
    con = open_reader(demo_home)
    try:
        windows = dict(con.sql(f"SELECT sample, count(*) FROM ({sql}) GROUP BY sample", params=params).fetchall())
    finally:
        con.close()
    assert set(windows) == {"reference", "current"} and min(windows.values()) > 0
    at = app(monkeypatch, demo_home, drift.id)
    at.toggle(key="evidently_toggle").set_value(True).run(timeout=120)
    assert not at.exception
    (frame,) = at.get("iframe")
    html = frame.proto.srcdoc
    assert "<html" in html.lower() and drift.evidence["drifted_columns"][0] in html


def test_an_error_burst_says_what_its_failures_left_undone(demo_home, tmp_path, monkeypatch) -> None:
    """An error burst's failed lead.route actions are leads not routed, not leads acted on with bad input: the page
    says so with no rollback wording, and its audit link selects exactly the failed actions (not the ok ones of the
    same agent and action in its range)."""
    from tests.checks_support import iso, store_events

    home = copy_of(demo_home, tmp_path)
    ((latest,),) = sql(home, "SELECT max(ts) FROM actions")
    start = latest + timedelta(hours=1)
    actions = [{"event_id": f"burst-{n}", "ts": iso(start + timedelta(minutes=n)), "agent_id": "lead-router",
                "action": "lead.route", "resource": {"type": "lead", "id": f"L-B{n % 4}"},
                "status": "error" if n % 2 else "ok", "decision": {"route_to": "nurture"},
                **({"error": {"code": "UNABLE_TO_LOCK_ROW", "message": "locked"}} if n % 2 else {})}
               for n in range(9)]
    store_events(home, actions=actions)
    burst = Incident(id="INC-99", check="errors.error_burst", severity="warning", status="open", opened_at=start,
                     started_at=start, last_fired_at=start + timedelta(minutes=10),
                     subject={"agent_id": "lead-router", "action": "lead.route"}, summary="lead.route failed",
                     evidence={"agents": ["lead-router"]}, sample_event_ids=[], affected=4)
    incident_store(home).save([burst], first_number=99)
    ((failed, leads),) = sql(home, "SELECT count(*), count(DISTINCT resource_id) FROM actions WHERE agent_id = "
                             "'lead-router' AND action = 'lead.route' AND status = 'error' AND ts >= ? AND ts <= ?",
                             [burst.started_at, burst.last_fired_at])
    assert (failed, leads) == (4, 2)  # 1, 3, 5, 7 on L-B1 and L-B3 (the 9th, at 8 minutes, is ok)
    at = app(monkeypatch, home, incident=burst.id)
    did = " ".join(m.value for m in at.markdown)
    assert f"**{leads} leads** not routed (the actions failed): {failed} actions" in did
    assert "bad input" not in did and "rollback" not in did
    (link,) = at.get("page_link")
    assert link.proto.label == f"See these {failed} failed actions in the audit trail"
    at.query_params["incident"] = burst.id
    at.switch_page("views/audit.py").run()
    assert not at.exception
    shown = next(d.value for d in at.dataframe if "changes" in d.value.columns)
    assert sorted(shown["event_id"]) == ["burst-1", "burst-3", "burst-5", "burst-7"]
    assert "nothing to roll back" in at.info[0].value


def test_an_incident_without_damage_links_its_subjects_actions(demo_home, monkeypatch) -> None:
    """A volume spike measures no damage: its page links to its agent's actions of its action over its range,
    counted here."""
    spike = next(i for i in incident_store(demo_home).list() if i.check == "volume.action_spike")
    agent, action = spike.subject["agent_id"], spike.subject["action"]
    ((events,),) = sql(demo_home, "SELECT count(*) FROM actions WHERE agent_id = ? AND action = ? AND ts >= ? AND "
                       "ts <= ?", [agent, action, spike.started_at, spike.resolved_at or spike.last_fired_at])
    assert events > 0
    at = app(monkeypatch, demo_home, incident=spike.id)
    (link,) = at.get("page_link")
    assert link.proto.query_string == f"incident={spike.id}"
    assert link.proto.label.startswith(f"See the {events:,} " + md(f"actions of {agent} {action}") + " from ")
