"""The agentwatch command, run as a real subprocess against a home in a temporary folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentwatch.app.demo.simulate import BAD_RELEASE, MANAGER_OFFSITE, SimulationConfig
from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.collector.ingest.snapshots import ingest_snapshot_files
from agentwatch.core.home import Home
from agentwatch.store.datasets import ACTIONS, OUTCOMES
from agentwatch.store.reader import open_reader

FIXTURES = Path(__file__).parent / "fixtures"
CLI_TIMEOUT_S = 120
CLOSING_LINE = re.compile(r"(\w+): ([\d,]+) accepted, ([\d,]+) duplicates skipped, ([\d,]+) rejected")


def run_cli(*args: object, cwd: Path, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``python -m agentwatch.app.cli`` with the given arguments; AGENTWATCH_HOME is never inherited."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "agentwatch.app.cli", *(str(a) for a in args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def closing_lines(stdout: str) -> dict[str, tuple[int, int, int]]:
    """{dataset: (accepted, duplicates, rejected)} from every closing line printed."""
    return {m[1]: tuple(int(n.replace(",", "")) for n in m.groups()[1:]) for m in CLOSING_LINE.finditer(stdout)}


def count(home_root: Path, sql: str) -> int:
    con = open_reader(Home.resolve(home_root))
    try:
        return con.execute(sql).fetchall()[0][0]
    finally:
        con.close()


# -- ingest ----------------------------------------------------------------------------------------


def test_ingest_actions_prints_the_closing_line_and_exits_0(tmp_path, make_action, write_jsonl):
    """`ingest actions` prints "N accepted, D duplicates skipped, R rejected" and exits 0, then all duplicates."""
    home = tmp_path / "home"
    path = write_jsonl(tmp_path / "a.jsonl", [make_action(event_id=f"e{i}") for i in range(3)])
    first = run_cli("ingest", "actions", path, "--home", home, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert closing_lines(first.stdout) == {"actions": (3, 0, 0)}
    assert "rejected " not in first.stderr
    again = run_cli("ingest", "actions", path, "--home", home, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert closing_lines(again.stdout) == {"actions": (0, 3, 0)}
    assert count(home, "SELECT count(*) FROM actions") == 3
    assert not (tmp_path / ".agentwatch").exists()  # --home was used, not the default folder


def test_ingest_outcomes(tmp_path, make_outcome, write_jsonl):
    """`ingest outcomes` stores outcome events and prints their closing line."""
    home = tmp_path / "home"
    path = write_jsonl(tmp_path / "o.jsonl", [make_outcome(), make_outcome(kind="closed_won", amount=900.0)])
    result = run_cli("ingest", "outcomes", path, "--home", home, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert closing_lines(result.stdout) == {"outcomes": (2, 0, 0)}
    assert count(home, "SELECT sum(amount) FROM outcomes") == 900.0


def test_ingest_with_rejections_exits_1_and_names_line_and_field(tmp_path, make_action, write_jsonl):
    """With rejected events `ingest` exits 1, stores the valid ones and prints file, line and field on stderr."""
    home = tmp_path / "home"
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        make_action(event_id="good-1"), make_action(event_id="too-sure", confidence=1.5), make_action(event_id="g2"),
    ])
    result = run_cli("ingest", "actions", path, "--home", home, cwd=tmp_path)
    assert result.returncode == 1
    assert closing_lines(result.stdout) == {"actions": (2, 0, 1)}
    assert f"{path} line 2 (event_id 'too-sure'): confidence:" in result.stderr
    match = re.search(r"rejected events and their errors are in (\S+)", result.stderr)
    assert match, result.stderr
    rejects_file = Path(match[1])
    assert rejects_file.parent == home.resolve() / "rejects"
    [record] = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    assert (record["number"], record["event_id"]) == (2, "too-sure")
    assert "Traceback" not in result.stderr
    assert count(home, "SELECT count(*) FROM actions") == 2


def test_ingest_schema_salesforce(tmp_path):
    """`ingest schema --format salesforce --taken-at` stores the describe result as one snapshot."""
    home = tmp_path / "home"
    args = ("ingest", "schema", FIXTURES / "salesforce" / "lead_describe.json", "--format", "salesforce",
            "--taken-at", "2026-10-01T11:30:00+02:00", "--home", home)
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert closing_lines(result.stdout) == {"schema_snapshots": (1, 0, 0)}
    assert count(home, "SELECT max(taken_at) FROM schema_snapshots") == datetime(2026, 10, 1, 9, 30, tzinfo=UTC)
    assert closing_lines(run_cli(*args, cwd=tmp_path).stdout) == {"schema_snapshots": (0, 1, 0)}


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing-file", "missing.jsonl: no such file"),
        ("empty-folder", "holds no .jsonl"),
        ("unknown-extension", "--format"),
        ("json-not-json", "not valid JSON"),
        ("hubspot-without-object", "--object"),
        ("bad-taken-at", "--taken-at"),
        ("home-is-a-file", "is a file"),
    ],
)
def test_user_mistakes_exit_2_with_one_error_line(tmp_path, case, needle):
    """A user mistake exits 2 with one "error:" line on stderr naming the problem, and no traceback."""
    home = tmp_path / "home"
    (tmp_path / "empty").mkdir()
    (tmp_path / "events.log").write_text("{}\n")
    (tmp_path / "bad.json").write_text("[{\"event_id\": ")
    (tmp_path / "not-a-folder").write_text("")
    hubspot = FIXTURES / "hubspot" / "contacts_properties.json"
    salesforce = FIXTURES / "salesforce" / "lead_describe.json"
    args = {
        "missing-file": ("ingest", "actions", tmp_path / "missing.jsonl"),
        "empty-folder": ("ingest", "outcomes", tmp_path / "empty"),
        "unknown-extension": ("ingest", "actions", tmp_path / "events.log"),
        "json-not-json": ("ingest", "actions", tmp_path / "bad.json"),
        "hubspot-without-object": ("ingest", "schema", hubspot, "--format", "hubspot"),
        "bad-taken-at": ("ingest", "schema", salesforce, "--format", "salesforce", "--taken-at", "2026-10-01T09:30"),
        "home-is-a-file": ("status",),
    }[case]
    if case == "home-is-a-file":
        home = tmp_path / "not-a-folder"
    result = run_cli(*args, "--home", home, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


# -- status ----------------------------------------------------------------------------------------


@pytest.fixture
def filled_home(tmp_path, make_action, make_outcome, make_snapshot, write_jsonl) -> Home:
    """A home with actions of two agents (one error, one rejected line), two outcomes and three snapshots."""
    home = Home.resolve(tmp_path / "home")
    actions = write_jsonl(tmp_path / "a.jsonl", [
        make_action(agent_id="lead-router", ts="2026-10-01T08:00:00Z"),
        make_action(agent_id="lead-router", ts="2026-10-03T18:15:00+02:00", status="error", error={"code": "x"}),
        make_action(agent_id="lead-router", ts="2026-10-02T12:00:00Z"),
        make_action(agent_id="qualifier-agent", ts="2026-10-02T09:00:00Z"),
        make_action(agent_id="qualifier-agent", action="no-dot"),
    ])
    ingest_files(home, ACTIONS, [actions])
    ingest_files(home, OUTCOMES, [write_jsonl(tmp_path / "o.jsonl", [
        make_outcome(ts="2026-10-04T10:00:00Z"), make_outcome(ts="2026-10-05T10:00:00Z"),
    ])])
    snapshots = tmp_path / "snaps.json"
    snapshots.write_text(json.dumps([
        make_snapshot(object="Opportunity", taken_at="2026-10-01T00:00:00Z", fields=[{"name": "Id", "type": "id"}]),
        make_snapshot(object="Opportunity", taken_at="2026-10-02T00:00:00Z"),
    ]))
    ingest_snapshot_files(home, [snapshots])
    ingest_snapshot_files(home, [FIXTURES / "salesforce" / "lead_describe.json"], fmt="salesforce",
                          taken_at=datetime(2026, 10, 1, 9, 30, tzinfo=UTC))
    return home


def test_status_json_reports_what_the_store_holds(filled_home, tmp_path):
    """`status --json` reports actions per agent with errors and first/last event, outcomes, snapshots and rejects."""
    result = run_cli("status", "--json", "--home", filled_home.root, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["home"] == str(filled_home.root)
    assert summary["actions"]["total"] == 4
    agents = [{k: a[k] for k in ("agent_id", "actions", "errors", "first_event", "last_event")}
              for a in summary["actions"]["agents"]]
    assert agents == [
        {"agent_id": "lead-router", "actions": 3, "errors": 1,
         "first_event": "2026-10-01T08:00:00+00:00", "last_event": "2026-10-03T16:15:00+00:00"},
        {"agent_id": "qualifier-agent", "actions": 1, "errors": 0,
         "first_event": "2026-10-02T09:00:00+00:00", "last_event": "2026-10-02T09:00:00+00:00"},
    ]
    assert summary["outcomes"] == {"outcomes": 2, "first_event": "2026-10-04T10:00:00+00:00",
                                   "last_event": "2026-10-05T10:00:00+00:00"}
    snapshots = {(s["source"], s["object"]): (s["snapshots"], s["fields_now"]) for s in summary["schema_snapshots"]}
    lead_fields = len(json.loads((FIXTURES / "salesforce" / "lead_describe.json").read_text())["fields"])
    assert snapshots == {("custom", "Opportunity"): (2, 3), ("salesforce", "Lead"): (1, lead_fields)}
    assert summary["rejects"] == {"actions": 1}


def test_status_tables_on_an_empty_home(tmp_path):
    """`status` on a new home prints the store path on one line and says there are no rejects."""
    home = tmp_path / "a-home-with-a-long-name-so-that-the-path-is-wider-than-eighty-columns" / "home"
    Home.resolve(home)  # status reads: it refuses a home that does not exist
    result = run_cli("status", "--home", home, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"store: {home.resolve()}" in result.stdout.splitlines()
    assert "outcomes: 0" in result.stdout
    assert "rejects: none" in result.stdout


# -- keys ------------------------------------------------------------------------------------------


def test_keys_create_prints_a_token_shown_once(tmp_path):
    """`keys create --scope ingest` prints a token on stdout and keeps only a hash of it in keys.json."""
    pytest.importorskip("agentwatch.core.api_keys")
    home = tmp_path / "home"
    result = run_cli("keys", "create", "--scope", "ingest", "--name", "router", "--home", home, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    token = lines[0].strip()
    assert len(token) >= 32 and " " not in token
    keys_file = Home.resolve(home).keys_file
    assert keys_file.exists()
    stored = keys_file.read_text()
    assert token not in stored
    assert "ingest" in stored and "router" in stored
    listed = run_cli("keys", "list", "--home", home, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "router" in listed.stdout and token not in listed.stdout


# -- demo ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoRuns:
    home: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    counts_after_first: tuple[int, int, int]
    counts_after_second: tuple[int, int, int]


def _store_counts(home: Path) -> tuple[int, int, int]:
    con = open_reader(Home.resolve(home))
    try:
        return con.execute("SELECT (SELECT count(*) FROM actions), (SELECT count(*) FROM outcomes), "
                           "(SELECT count(*) FROM schema_snapshots)").fetchall()[0]
    finally:
        con.close()


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> DemoRuns:
    """`demo --no-serve --days 7` run twice on one home (the second without replaying the checks)."""
    root = tmp_path_factory.mktemp("demo")
    home = root / "home"
    first = run_cli("demo", "--no-serve", "--days", "7", "--home", home, cwd=root)
    after_first = _store_counts(home)
    second = run_cli("demo", "--no-serve", "--no-checks", "--days", "7", "--home", home, cwd=root)
    return DemoRuns(home, first, second, after_first, _store_counts(home))


def test_demo_ingests_the_simulated_week(demo_runs):
    """The demo exits 0 and stores every simulated action, outcome and snapshot, none rejected."""
    assert demo_runs.first.returncode == 0, demo_runs.first.stderr
    lines = closing_lines(demo_runs.first.stdout)
    actions, outcomes, snapshots = demo_runs.counts_after_first
    assert lines == {"schema_snapshots": (snapshots, 0, 0), "actions": (actions, 0, 0), "outcomes": (outcomes, 0, 0)}
    assert actions > 10_000 and outcomes > 100 and snapshots > 7
    assert count(demo_runs.home, "SELECT count(DISTINCT agent_id) FROM actions") == 4


def test_demo_stores_the_rename_snapshot(demo_runs):
    """The store holds Lead snapshots with deal_stage, then from the rename on with opportunity_stage instead."""
    con = open_reader(Home.resolve(demo_runs.home))
    try:
        rows = con.execute("""
            SELECT taken_at, list_contains(list_transform(fields, lambda f: f.name), 'deal_stage'),
                   list_contains(list_transform(fields, lambda f: f.name), 'opportunity_stage')
            FROM schema_snapshots WHERE object = 'Lead' ORDER BY taken_at""").fetchall()
        stage_fields = con.execute("""
            SELECT f.name, f.type, f.picklist_values
            FROM (SELECT taken_at, unnest(fields) AS f FROM schema_snapshots WHERE object = 'Lead')
            WHERE f.name IN ('deal_stage', 'opportunity_stage')""").fetchall()
    finally:
        con.close()
    flags = [(has_old, has_new) for _, has_old, has_new in rows]
    renamed_from = flags.index((False, True))
    assert 0 < renamed_from < len(flags)
    assert flags == [(True, False)] * renamed_from + [(False, True)] * (len(flags) - renamed_from)
    # Only the API name changed: same type and values before and after.
    assert {name for name, _, _ in stage_fields} == {"deal_stage", "opportunity_stage"}
    assert len({(field_type, tuple(values or ())) for _, field_type, values in stage_fields}) == 1


def test_demo_router_reads_deal_stage_as_null_after_the_rename(demo_runs):
    """After the rename snapshot, every router read of deal_stage is null; before it some were not."""
    con = open_reader(Home.resolve(demo_runs.home))
    try:
        rows = con.execute("""
            WITH rename AS (
                SELECT min(taken_at) AS renamed_at FROM schema_snapshots
                WHERE object = 'Lead' AND list_contains(list_transform(fields, lambda f: f.name), 'opportunity_stage')
            )
            SELECT ts >= (SELECT renamed_at FROM rename) AS after_rename,
                   count(*) FILTER (WHERE inputs ->> 'deal_stage' IS NULL) AS null_reads,
                   count(*) FILTER (WHERE inputs ->> 'deal_stage' IS NOT NULL) AS value_reads
            FROM actions
            WHERE agent_id = 'lead-router' AND json_exists(inputs, '$.deal_stage')
            GROUP BY ALL ORDER BY ALL""").fetchall()
    finally:
        con.close()
    (_, before_values), (after_null, after_values) = [r[1:] for r in rows]
    assert [r[0] for r in rows] == [False, True]
    assert before_values > 0
    assert after_null > 0 and after_values == 0
    assert f"read deal_stage as null {after_null:,} times" in " ".join(demo_runs.first.stdout.split())


def test_demo_twice_skips_duplicates_and_keeps_counts(demo_runs):
    """A second demo run reports every event as a duplicate and leaves the store's counts unchanged."""
    assert demo_runs.second.returncode == 0, demo_runs.second.stderr
    actions, outcomes, snapshots = demo_runs.counts_after_first
    assert closing_lines(demo_runs.second.stdout) == {
        "schema_snapshots": (0, snapshots, 0), "actions": (0, actions, 0), "outcomes": (0, outcomes, 0),
    }
    assert demo_runs.counts_after_second == demo_runs.counts_after_first


def test_demo_shows_the_rename_as_root_incident_with_the_null_spike_as_its_effect(demo_runs):
    """The demo's replay opens the deal_stage -> opportunity_stage rename as a root incident; the null spike on
    deal_stage is linked to it as its effect, names the agents reading it, and counts the open-deal leads sent
    to nurture since."""
    from agentwatch.checks.engine import incident_store

    store = incident_store(Home.resolve(demo_runs.home))
    found = store.list()
    (rename,) = [i for i in found if i.check == "schema.field_renamed"]
    assert rename.subject["field"] == "deal_stage -> opportunity_stage"
    assert rename.severity == "critical" and not rename.caused_by
    (spike,) = [i for i in found if i.check == "quality.null_spike" and i.subject == {"field": "deal_stage"}]
    assert spike.caused_by == [rename.id] and spike.id in rename.effects
    assert {"lead-router", "enrichment-agent"} <= set(spike.evidence["agents"])
    con = open_reader(Home.resolve(demo_runs.home))
    try:
        (open_deal_nurture,) = con.execute(
            "SELECT count(*) FROM actions WHERE action = 'lead.route' AND ts >= $1 AND decision ->> 'sequence' = "
            "'cold-nurture' AND inputs ->> 'opportunity_id' IS NOT NULL", [spike.started_at]).fetchall()[0]
    finally:
        con.close()
    assert open_deal_nurture > 0
    assert {"decision": "sequence=cold-nurture", "count": open_deal_nurture} in spike.evidence["decisions"]
    printed = " ".join(demo_runs.first.stdout.split())
    assert "deal_stage -> opportunity_stage" in printed and spike.id in printed


def test_demo_guard_pauses_the_agents_reading_the_renamed_field(demo_runs):
    """The demo config guards on the rename: the demo says lead-router is paused by the open rename incident, and
    agentwatch's own pause of it is recorded."""
    from agentwatch.alerts.db import alerts_db
    from agentwatch.alerts.guard import AgentControls
    from agentwatch.checks.engine import incident_store

    home = Home.resolve(demo_runs.home)
    (rename,) = [i for i in incident_store(home).list() if i.check == "schema.field_renamed"]
    printed = " ".join(demo_runs.first.stdout.split())
    assert f"agent guard: lead-router is paused by {rename.id} schema.field_renamed" in printed
    (pause,) = AgentControls(alerts_db(home)).history("lead-router")
    assert (pause.action, pause.by, pause.incident_id) == ("pause", "agentwatch", rename.id)


# The month up to the day the managers are back from their offsite: the enrichment release (day 12) and the
# offsite (days 20 and 21) are in it, the rename (day 17) too. A short week shows neither.
MONTH_DAYS = 23
MONTH_TIMEOUT_S = 600  # three weeks of replay: about 80 s on two busy cores


@pytest.fixture(scope="module")
def demo_month(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`demo --no-serve --days 23`: its home and what it printed."""
    root = tmp_path_factory.mktemp("demo-month")
    done = run_cli("demo", "--no-serve", "--days", MONTH_DAYS, "--home", root / "home", cwd=root,
                   timeout=MONTH_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return root / "home", " ".join(done.stdout.split())


def test_demo_shows_the_reverted_writes_and_the_approval_backlog(demo_month):
    """Among the demo's root incidents: reps setting back enrichment-agent 1.9.0's industries, opened within a day
    of the release and the only reverted-write incident (the reps' everyday edits are its baseline), and the
    approval requests waiting while the managers are at their offsite, opened within its first day and lasting
    until they are back."""
    from agentwatch.checks.engine import incident_store

    home, printed = demo_month
    found = incident_store(Home.resolve(home)).list()
    start = SimulationConfig().start
    released, away, back = start + BAD_RELEASE[0], start + MANAGER_OFFSITE[0], start + MANAGER_OFFSITE[1]

    (reverted,) = [i for i in found if i.check == "outcome.write_reverted"]
    assert reverted.subject == {"agent_id": "enrichment-agent", "action": "crm.update_field"}
    assert reverted.severity in ("warning", "critical") and not reverted.caused_by
    assert released <= reverted.started_at and reverted.opened_at - released < timedelta(hours=24)
    assert max(reverted.evidence["reverted_fields"].items(), key=lambda item: item[1])[0] == "industry"

    (backlog,) = [i for i in found if i.check == "approval.queue_backlog" and away <= i.opened_at < back]
    assert backlog.subject == {"agent_id": "followup-agent", "action": "email.send"}
    assert backlog.severity in ("warning", "critical") and not backlog.caused_by
    assert backlog.opened_at - away < timedelta(hours=24)
    assert back <= backlog.last_fired_at and backlog.resolved_at is not None  # answered once they were back
    for incident in (reverted, backlog):
        assert f"{incident.id} [{incident.severity}, " in printed
