"""`agentwatch audit` in a fresh process, over the demo store: the same selection as GET /v1/actions, checked
against an independent query, as JSON lines, CSV and a table; and mistakes named by their option."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from agentwatch.checks.engine import incident_store
from agentwatch.core.home import Home
from agentwatch.store.reader import open_reader
from tests.audit_support import AGENT, WINDOW, expected_actions, latest_action, rfc3339
from tests.live_support import CLI_TIMEOUT_S, agentwatch, stored_rows
from tests.test_incidents import AT, finding, new_book, save, step


@pytest.fixture(scope="module")
def window(demo_home: Home) -> tuple[datetime, datetime]:
    end = latest_action(demo_home)
    return end - WINDOW, end


def test_jsonl_is_the_independent_query(demo_home: Home, window: tuple[datetime, datetime]) -> None:
    start, end = window
    printed = agentwatch(demo_home, "audit", "--agent", AGENT, "--since", rfc3339(start), "--until", rfc3339(end),
                         "--format", "jsonl")
    expected = expected_actions(demo_home, AGENT, start, end)
    assert len(expected) > 500
    assert [json.loads(line) for line in printed.splitlines()] == expected


def test_csv_is_the_independent_query(demo_home: Home, window: tuple[datetime, datetime]) -> None:
    start, end = window
    printed = agentwatch(demo_home, "audit", "--agent", AGENT, "--since", rfc3339(start), "--until", rfc3339(end),
                         "--format", "csv", "--status", "ok", "--action", "lead.*")
    expected = [e for e in expected_actions(demo_home, AGENT, start, end)
                if e["status"] == "ok" and e["action"].startswith("lead.")]
    rows = list(csv.DictReader(io.StringIO(printed)))
    assert [(r["event_id"], r["ts"], r["action"]) for r in rows] == [(e["event_id"], e["ts"], e["action"])
                                                                      for e in expected]


def test_the_table_shows_the_newest_and_counts_them_all(demo_home: Home, window: tuple[datetime, datetime]) -> None:
    start, end = window
    expected = expected_actions(demo_home, AGENT, start, end)
    one = expected[0]["resource"]["id"]
    on_record = [e for e in expected if e["resource"]["id"] == one]
    printed = agentwatch(demo_home, "audit", "--agent", AGENT, "--since", rfc3339(start), "--until", rfc3339(end),
                         "--limit", "5")
    assert f"the newest 5 of {len(expected):,} matching actions" in printed
    assert [e["event_id"] for e in expected[:5]] == [line.split()[-1] for line in printed.splitlines()
                                                     if "act-" in line]
    printed = agentwatch(demo_home, "audit", "--agent", AGENT, "--resource", one, "--since", rfc3339(start),
                         "--until", rfc3339(end))
    assert f"the newest {min(len(on_record), 50)} of {len(on_record):,} matching actions" in printed
    assert all(e["event_id"] in printed for e in on_record)


@pytest.mark.parametrize(("args", "named"), [
    (["--since", "yesterday"], "--since"),
    (["--until", "2026-10-01T09:30:00"], "--until"),
    (["--since", "2026-10-02T00:00:00Z", "--until", "2026-10-01T00:00:00Z"], "swap them"),
    (["--limit", "0"], "--limit"),
])
def test_mistakes_are_one_line_naming_the_option(demo_home: Home, args: list[str], named: str) -> None:
    done = subprocess.run([sys.executable, "-c", "from agentwatch.app.cli import main; main()", "audit", *args,
                           "--home", str(demo_home.root)], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                          env={"COLUMNS": "250", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and named in done.stderr and "Traceback" not in done.stderr


def test_an_empty_range_says_where_the_agents_actions_are(demo_home: Home) -> None:
    """The demo month lies in the past: `--since 48h` counts back from now and finds nothing, and says so with the
    agent's own range rather than a bare 0."""
    ((oldest, newest),) = stored_rows(demo_home, f"SELECT min(ts), max(ts) FROM actions WHERE agent_id = '{AGENT}'", 1)
    printed = agentwatch(demo_home, "audit", "--agent", AGENT, "--since", "48h")
    if newest.timestamp() > datetime.now().timestamp() - 48 * 3600:
        pytest.skip("the demo store reaches into the last 48 hours of this clock")
    assert "the newest 0 of 0 matching actions" in printed
    assert f"{AGENT}'s actions run from {oldest:%Y-%m-%d %H:%M} to {newest:%Y-%m-%d %H:%M} UTC" in " ".join(
        printed.split())


def test_incident_notes_from_the_command_line_show_with_who(tmp_path: Path) -> None:
    """`incident ack --note` keeps the note; `incident show` prints who acknowledged and the note."""
    home = Home.resolve(tmp_path / "home")
    store = incident_store(home)
    book = new_book(store)
    step(book, AT, finding())
    save(store, book)
    (incident,) = store.list()
    agentwatch(home, "incident", "ack", incident.id, "--note", "on it: rolling back the layout")
    shown = agentwatch(home, "incident", "show", incident.id)
    assert "note: on it: rolling back the layout" in shown and "acknowledged by: " in shown
    assert store.get(incident.id).operator_note == "on it: rolling back the layout"


def run_at_80(home: Home, *args: str) -> subprocess.CompletedProcess:
    """The real command in a fresh process, its output in a pipe at COLUMNS=80."""
    return subprocess.run([sys.executable, "-c", "from agentwatch.app.cli import main; main()", *args,
                           "--home", str(home.root)], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                          env={"COLUMNS": "80", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})


def test_incident_selects_what_the_dashboard_selects(demo_home: Home) -> None:
    """`audit --incident <rename>` writes exactly the actions its null spike took on bad input and the writes that
    carried out their decisions (the same agent's, same lead, same trace; counted here from the definition), none
    of the other actions on the same leads; the table says which; another filter than --resource, an unknown
    incident and one about no agent's actions are one line each."""
    incidents = incident_store(demo_home).list()
    (rename,) = [i for i in incidents if i.check == "schema.field_renamed"]
    (spike,) = [i for i in incidents if i.check == "quality.null_spike"]
    con = open_reader(demo_home)
    try:
        rows = con.execute("""
            SELECT event_id, resource_id FROM actions
            WHERE ((agent_id = 'lead-router' AND action = 'lead.route')
                   OR (agent_id = 'enrichment-agent' AND action = 'lead.enrich'))
              AND ts >= ? AND ts <= ? AND inputs ->> '$.deal_stage' IS NULL
              AND inputs ->> '$.opportunity_id' IS NOT NULL""", [spike.started_at, spike.last_fired_at]).fetchall()
        writes = {event_id for (event_id,) in con.execute("""
            SELECT DISTINCT w.event_id FROM actions w JOIN actions b
              ON list_contains(?, b.event_id) AND b.after IS NULL AND b.trace_id IS NOT NULL
             AND w.trace_id = b.trace_id AND w.agent_id = b.agent_id AND w.resource_id = b.resource_id
            WHERE w.after IS NOT NULL""", [[event_id for event_id, _ in rows]]).fetchall()}
    finally:
        con.close()
    bad = {event_id for event_id, _ in rows} | writes
    leads = {lead for _, lead in rows}
    assert writes
    printed = agentwatch(demo_home, "audit", "--incident", rename.id, "--format", "jsonl")
    assert {json.loads(line)["event_id"] for line in printed.splitlines()} == bad
    table = agentwatch(demo_home, "audit", "--incident", rename.id, "--limit", "3")
    assert " ".join(table.split()).startswith(
        f"{rename.id}: the {len(bad):,} lead.enrich and lead.route actions that read deal_stage as null on "
        f"{len(leads):,} leads with opportunity_id set, with the writes that carried out their decisions")
    assert f"the newest 3 of {len(bad):,} matching actions" in table
    (added,) = [i for i in incidents if i.check == "schema.field_added"]
    for args, said in ((["--agent", "lead-router"], "leave out --since, --until, --agent"),
                       (["--status", "ok"], "leave out --since"),
                       ([], "is about no agent's actions")):
        done = run_at_80(demo_home, "audit", "--incident", added.id if not args else rename.id, *args)
        assert done.returncode == 2 and said in " ".join(done.stderr.split()) and "Traceback" not in done.stderr
    done = run_at_80(demo_home, "audit", "--incident", "INC-999")
    assert done.returncode == 2 and "no incident has the id 'INC-999'" in done.stderr
