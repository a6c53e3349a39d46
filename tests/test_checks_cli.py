"""The check, backtest, incidents and incident commands on a small store holding the deal_stage rename."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from tests.checks_support import T0, iso, store_events
from tests.cli_support import PLAIN_WIDE, main_error
from tests.cli_support import run_cli as agentwatch

RENAME_AT = T0 + timedelta(days=2, hours=10)  # Wednesday 10:00 UTC: Lead.deal_stage becomes opportunity_stage
END = RENAME_AT + timedelta(hours=4)
EVENT_EVERY = timedelta(minutes=3)
BASE_FIELDS = [{"name": "Id", "type": "id", "nullable": False, "label": "Lead ID"},
               {"name": "email", "type": "email", "label": "Email"}]
STAGES = ["open", "negotiation", "won"]
CHECKS = ["schema.field_renamed", "quality.null_spike"]


def stage_field(name: str, label: str) -> dict:
    return {"name": name, "type": "picklist", "label": label, "picklist_values": STAGES}


def lead_snapshot(at: object, stage: dict) -> dict:
    return {"taken_at": iso(at), "source": "custom", "object": "Lead", "fields": [*BASE_FIELDS, stage]}


def store_rename(home: Home) -> None:
    """Lead snapshots before and at the rename; lead-router reads deal_stage with values before, null after."""
    snapshots = [lead_snapshot(T0 + timedelta(days=1), stage_field("deal_stage", "Deal Stage")),
                 lead_snapshot(RENAME_AT, stage_field("opportunity_stage", "Opportunity Stage"))]
    actions, at, n = [], T0, 0
    while at <= END:
        stage = None if at >= RENAME_AT else STAGES[n % len(STAGES)]
        actions.append({"event_id": f"a-{n:05d}", "ts": iso(at), "agent_id": "lead-router", "action": "lead.route",
                        "resource": {"type": "lead", "id": f"L-{n}"}, "status": "ok",
                        "inputs": {"deal_stage": stage, "email": f"lead{n}@example.com"},
                        "decision": {"route_to": "ae-pool" if stage else "nurture"}})
        at, n = at + EVENT_EVERY, n + 1
    store_events(home, actions=actions, snapshots=snapshots)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rename store, built once; each test works on its own copy."""
    home = Home.resolve(tmp_path_factory.mktemp("built") / "home")
    store_rename(home)
    return home.root


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    root = tmp_path / "home"
    shutil.copytree(built, root)
    return root


def stored(home: Path, *status: str) -> list[Incident]:
    code, out, _ = agentwatch("incidents", "--json", "--home", home, *(f"--status={s}" for s in status))
    assert code == 0
    return [Incident.model_validate(i) for i in json.loads(out)]


def by_check(incidents: list[Incident]) -> dict[str, Incident]:
    return {i.check: i for i in incidents}


def test_check_as_of_opens_the_rename_and_the_null_spike_linked(home: Path) -> None:
    """`check --as-of` after the rename opens the rename (root) and the null spike on deal_stage (its effect)."""
    code, out, err = agentwatch("check", "--as-of", iso(END), "--home", home, *(f"--only={c}" for c in CHECKS))
    assert code == 0, err
    assert "opened INC-" in out and "schema.field_renamed" in out and "quality.null_spike" in out
    assert "2 opened, 2 open, 0 resolved" in out
    found = by_check(stored(home))
    rename, nulls = found["schema.field_renamed"], found["quality.null_spike"]
    assert rename.subject == {"object": "Lead", "field": "deal_stage -> opportunity_stage"}
    assert rename.severity == "critical" and nulls.subject == {"field": "deal_stage"}
    assert nulls.caused_by == [rename.id] and rename.effects == [nulls.id]
    assert f"opened {rename.id} [critical] schema.field_renamed object=Lead field=deal_stage -> " in out
    assert abs(nulls.started_at - RENAME_AT) <= timedelta(minutes=15)
    assert rename.opened_at == nulls.opened_at == END


def test_check_again_updates_instead_of_opening(home: Path) -> None:
    """A second `check` a little later updates the two open incidents and opens none."""
    agentwatch("check", "--as-of", iso(END - timedelta(minutes=30)), "--home", home, *(f"--only={c}" for c in CHECKS))
    code, out, _ = agentwatch("check", "--as-of", iso(END), "--home", home, *(f"--only={c}" for c in CHECKS))
    assert code == 0 and "0 opened, 2 open" in out
    assert len(stored(home)) == 2
    assert {i.last_fired_at for i in stored(home)} == {END}


def test_check_before_the_rename_opens_nothing(home: Path) -> None:
    """`check --as-of` before the rename snapshot sees no change and no nulls."""
    code, out, _ = agentwatch("check", "--as-of", iso(RENAME_AT - timedelta(minutes=5)), "--home", home,
                              *(f"--only={c}" for c in CHECKS))
    assert code == 0 and "0 opened, 0 open" in out
    assert stored(home) == []


def test_backtest_prints_when_each_incident_would_have_opened_and_records_nothing(home: Path) -> None:
    """`backtest --every 15m` prints a table of the incidents it would have opened; the home's store stays empty."""
    code, out, err = agentwatch("backtest", "--start", iso(RENAME_AT - timedelta(hours=1)), "--end", iso(END),
                                "--every", "15m", "--home", home, *(f"--only={c}" for c in CHECKS))
    assert code == 0, err
    assert "incidents the checks would have opened" in out
    assert "schema.field_renamed" in out and "quality.null_spike" in out
    assert "deal_stage -> opportunity_stage" in out
    assert "21 evaluations" in out  # 5 h at 15 min, both ends included
    assert stored(home) == []


def test_backtest_json_lists_valid_incidents(home: Path) -> None:
    """`backtest --json` prints incidents valid against the Incident schema, linked, opened at 15-minute steps."""
    code, out, err = agentwatch("backtest", "--start", iso(RENAME_AT - timedelta(hours=1)), "--end", iso(END),
                                "--every", "15m", "--json", "--home", home, *(f"--only={c}" for c in CHECKS))
    assert code == 0, err
    found = by_check([Incident.model_validate(i) for i in json.loads(out)])
    assert set(found) == set(CHECKS)
    rename, nulls = found["schema.field_renamed"], found["quality.null_spike"]
    assert rename.opened_at == RENAME_AT  # the first step that sees the snapshot
    assert RENAME_AT < nulls.opened_at <= RENAME_AT + timedelta(hours=2)
    assert (nulls.opened_at - RENAME_AT) % timedelta(minutes=15) == timedelta(0)
    assert nulls.caused_by == [rename.id]
    assert stored(home) == []


def test_backtest_record_keeps_the_incidents_in_the_home(home: Path) -> None:
    """`backtest --record` saves what it opened into the home's incident store."""
    code, _, err = agentwatch("backtest", "--start", iso(RENAME_AT - timedelta(hours=1)), "--end", iso(END),
                              "--every", "1h", "--record", "--home", home, *(f"--only={c}" for c in CHECKS))
    assert code == 0, err
    assert set(by_check(stored(home))) == set(CHECKS)


def test_incidents_lists_filters_and_acks(home: Path) -> None:
    """`incidents` lists the open ones; `incident ack` moves one to acknowledged and --status filters by it."""
    agentwatch("check", "--as-of", iso(END), "--home", home, *(f"--only={c}" for c in CHECKS))
    rename = by_check(stored(home))["schema.field_renamed"]
    code, out, _ = agentwatch("incidents", "--home", home)
    assert code == 0 and rename.id in out and "open" in out and "quality.null_spike" in out
    code, out, _ = agentwatch("incident", "ack", rename.id, "--home", home)
    assert code == 0 and f"{rename.id} acknowledged" in out
    assert [i.id for i in stored(home, "acknowledged")] == [rename.id]
    assert [i.check for i in stored(home, "open")] == ["quality.null_spike"]
    assert {i.id for i in stored(home, "open", "acknowledged")} == {i.id for i in stored(home)}
    assert stored(home, "resolved") == []
    assert stored(home, "acknowledged")[0].acknowledged_at is not None


def test_incident_resolve_stands_and_a_still_firing_check_opens_a_new_one(home: Path) -> None:
    """`incident resolve` closes it; the next `check`, still seeing nulls, opens a new incident for them."""
    agentwatch("check", "--as-of", iso(END - timedelta(minutes=30)), "--home", home, *(f"--only={c}" for c in CHECKS))
    nulls = by_check(stored(home))["quality.null_spike"]
    code, out, _ = agentwatch("incident", "resolve", nulls.id, "--home", home)
    assert code == 0 and f"{nulls.id} resolved" in out
    assert stored(home, "resolved")[0].id == nulls.id
    agentwatch("check", "--as-of", iso(END), "--home", home, *(f"--only={c}" for c in CHECKS))
    spikes = [i for i in stored(home) if i.check == "quality.null_spike"]
    assert sorted(i.status for i in spikes) == ["open", "resolved"]


def test_incident_show_prints_summary_links_and_evidence(home: Path) -> None:
    """`incident show` prints the incident, its effects' summaries and its evidence."""
    agentwatch("check", "--as-of", iso(END), "--home", home, *(f"--only={c}" for c in CHECKS))
    found = by_check(stored(home))
    rename, nulls = found["schema.field_renamed"], found["quality.null_spike"]
    code, out, _ = agentwatch("incident", "show", rename.id, "--home", home)
    assert code == 0
    assert out.startswith(f"{rename.id} [critical, open] schema.field_renamed")
    assert rename.summary in out
    assert f"effects {nulls.id} [{nulls.severity}] quality.null_spike" in out
    assert "old_field: deal_stage" in out and "new_field: opportunity_stage" in out
    code, out, _ = agentwatch("incident", "show", nulls.id, "--home", home)
    assert code == 0 and f"caused by {rename.id}" in out and "sample events: a-" in out


def test_bad_every_is_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`backtest --every 15x` exits 2 with one line saying what a duration looks like."""
    err = main_error(capsys, monkeypatch, "backtest", "--start", iso(T0), "--end", iso(END), "--every", "15x",
                     "--home", home)
    assert "--every '15x'" in err and "15m" in err


def test_end_before_start_is_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`backtest` with --end before --start exits 2 saying so."""
    err = main_error(capsys, monkeypatch, "backtest", "--start", iso(END), "--end", iso(T0), "--home", home)
    assert "--end is before --start" in err


def test_bad_as_of_is_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`check --as-of yesterday` exits 2 naming the option."""
    assert "--as-of" in main_error(capsys, monkeypatch, "check", "--as-of", "yesterday", "--home", home)


@pytest.mark.parametrize("command", ["ack", "resolve", "show"])
def test_unknown_incident_id_is_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """`incident ack|resolve|show INC-404` exits 2 naming the id and how to list incidents."""
    err = main_error(capsys, monkeypatch, "incident", command, "INC-404", "--home", home)
    assert "'INC-404'" in err and "agentwatch incidents" in err


def test_bad_config_in_the_home_is_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid check option in the home's agentwatch.yaml stops `check` with the file, line and key."""
    (home / "agentwatch.yaml").write_text("checks:\n  quality.null_spike:\n    threshold: -1\n")
    err = main_error(capsys, monkeypatch, "check", "--as-of", iso(END), "--home", home)
    assert "agentwatch.yaml line 3 (checks.quality.null_spike.threshold)" in err


def test_missing_config_file_is_one_line_and_exit_2(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`--config` naming a file that does not exist exits 2 naming it."""
    err = main_error(capsys, monkeypatch, "backtest", "--start", iso(T0), "--end", iso(END),
                     "--config", tmp_path / "nope.yaml", "--home", home)
    assert "nope.yaml: no such file" in err


def test_installed_command_reports_bad_yaml_in_one_line(home: Path) -> None:
    """The installed `agentwatch` script prints one error line naming the config line, exit 2, no traceback."""
    (home / "agentwatch.yaml").write_text("agents:\n  lead-router: {allowed_actions: [lead.route}\n")
    script = Path(sys.executable).parent / "agentwatch"
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"} | PLAIN_WIDE
    done = subprocess.run([str(script), "check", "--home", str(home)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "agentwatch.yaml line 2: not valid YAML" in done.stderr


def test_incident_show_wraps_at_80_and_says_the_damage(demo_home: Home) -> None:
    """`incident show <rename> | cat` at COLUMNS=80 keeps every line within 80 columns, says `affected` with the
    page's unit, the damage (the leads its null spike acted on with bad input, counted here from the definition,
    and the decision taken on the most of them) and the command listing those actions."""
    from agentwatch.checks.engine import incident_store
    from agentwatch.store.reader import open_reader

    incidents = incident_store(demo_home).list()
    (rename,) = [i for i in incidents if i.check == "schema.field_renamed"]
    (spike,) = [i for i in incidents if i.check == "quality.null_spike"]
    con = open_reader(demo_home)
    try:
        ((leads, actions),) = con.execute("""
            SELECT count(DISTINCT resource_id), count(*) FROM actions
            WHERE ((agent_id = 'lead-router' AND action = 'lead.route')
                   OR (agent_id = 'enrichment-agent' AND action = 'lead.enrich'))
              AND ts >= ? AND ts <= ? AND inputs ->> '$.deal_stage' IS NULL
              AND inputs ->> '$.opportunity_id' IS NOT NULL""", [spike.started_at, spike.last_fired_at]).fetchall()
    finally:
        con.close()
    done = subprocess.run([sys.executable, "-c", "from agentwatch.app.cli import main; main()", "incident", "show",
                           rename.id, "--home", str(demo_home.root)], capture_output=True, text=True, timeout=60,
                          env={"COLUMNS": "80", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    flat = " ".join(done.stdout.split())
    assert f"affected {rename.affected} agents reading the field" in flat
    assert f"damage: {leads:,} leads acted on with bad input ({actions:,} actions);" in flat
    assert f"audit trail: agentwatch audit --incident {rename.id}" in flat
    assert "suggested fix: Map the old key to the new field" in flat
    assert "\n      fields:\n        deal_stage: Lead.opportunity_stage" in done.stdout
