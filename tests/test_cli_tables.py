"""The CLI's tables at 80 and 120 columns, as in a pipe or a log: every id, check name, status, severity, agent,
action, time and subject whole, no line wider than the width, and free text wrapped as a paragraph under its row.
Expected values come from the incidents saved by hand and from SQL over the store, not from the code printing them."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentwatch.checks.engine import incident_store
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from agentwatch.store.reader import open_reader
from tests.checks_support import iso, store_events
from tests.cli_support import run_cli
from tests.test_checks_cli import CHECKS as RENAME_CHECKS
from tests.test_checks_cli import END, RENAME_AT, store_rename

WIDTHS = [80, 120]
AT = datetime(2026, 10, 7, 16, 15, tzinfo=UTC)
LONG_AGENT = "enrichment-agent-emea-west-2"
LONG_ACTION = "crm.update_field_enrichment"


def incident(number: int, check: str, severity: str, status: str, subject: dict[str, str], summary: str,
             caused_by: tuple[str, ...] = (), effects: tuple[str, ...] = ()) -> Incident:
    opened = AT - timedelta(minutes=number)
    return Incident(id=f"INC-{number}", check=check, severity=severity, status=status, opened_at=opened,
                    started_at=opened - timedelta(minutes=25), last_fired_at=opened, subject=subject, summary=summary,
                    affected=40, caused_by=list(caused_by), effects=list(effects))


INCIDENTS = [
    incident(1, "schema.field_renamed", "critical", "open",
             {"object": "Opportunity", "field": "deal_stage_forecast_category -> opportunity_stage_forecast"},
             "Opportunity.deal_stage_forecast_category -> opportunity_stage_forecast was renamed (read by "
             f"{LONG_AGENT}, lead-router); {LONG_AGENT}, lead-router still read deal_stage_forecast_category and "
             "get null for every record changed since the rename", effects=("INC-2",)),
    incident(2, "quality.null_spike", "critical", "acknowledged", {"field": "deal_stage_forecast_category"},
             f"{LONG_AGENT}, lead-router read deal_stage_forecast_category as null 2,172 times since 2026-10-05 "
             "10:35 UTC (100% of recent reads, usually 84%); 194 were on records with opportunity_id set, so had a "
             "value", caused_by=("INC-1",), effects=("INC-12",)),
    incident(12, "drift.distribution", "warning", "resolved", {"agent_id": LONG_AGENT, "action": LONG_ACTION},
             f"{LONG_AGENT} {LONG_ACTION}: decision.sequence drifted in the last 24 h against the 7 days before "
             "('(none)' 17% -> 0% of events; Jensen-Shannon distance 0.25, threshold 0.1) [red]not markup[/red]",
             caused_by=("INC-2",)),
    incident(13, "volume.action_spike", "info", "open", {"agent_id": "qualifier-agent", "action": "lead.qualify"},
             "qualifier-agent ran lead.qualify 81 times in the 45 minutes since 16:00 UTC, 4.4x the 18 expected on "
             "a Wednesday at this hour, while the webinar follow-up campaign was sending its second wave"),
]


def printed(width: int, *args: object) -> str:
    """The real command's stdout at `width` columns, as in a pipe (stdout is not a terminal here)."""
    code, out, err = run_cli(*args, env={"COLUMNS": str(width), "NO_COLOR": "1"})
    assert code == 0, err
    return out


def assert_fits(out: str, width: int) -> None:
    assert [line for line in out.splitlines() if len(line) > width] == []
    assert "…" not in out and "\x1b" not in out


def row_block(out: str, first: str) -> list[str]:
    """The lines of the one row whose line starts with the value `first`: that line and those indented under it."""
    lines = out.splitlines()
    (start,) = [n for n, line in enumerate(lines) if line == first or line.startswith(first + " ")]
    end = start + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    return lines[start:end]


def assert_whole(value: str, block: list[str]) -> None:
    """Each word of `value` stands whole on a line of the block (never cut or folded), and the words follow each
    other in the block's text."""
    for word in value.split():
        assert any(re.search(rf"(?<!\S){re.escape(word)}(?!\S)", line) for line in block), (word, block)
    assert " ".join(value.split()) in " ".join(" ".join(block).split()), (value, block)


def paragraph(text: str, block: list[str]) -> list[str]:
    """The lines of the block that hold `text`, wrapped: consecutive lines whose words are exactly its words."""
    words = text.split()
    for start in range(len(block)):
        got: list[str] = []
        for end in range(start, len(block)):
            got += block[end].split()
            if got == words:
                return block[start:end + 1]
            if len(got) >= len(words):
                break
    raise AssertionError(f"{text!r} is not a paragraph of {block}")


@pytest.fixture(scope="module")
def incidents_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    home = Home.resolve(tmp_path_factory.mktemp("tables") / "home")
    incident_store(home).save(INCIDENTS, 1)
    return home


@pytest.mark.parametrize("width", WIDTHS)
def test_incidents_show_every_value_whole_and_the_summary_as_a_paragraph(incidents_home: Home, width: int) -> None:
    out = printed(width, "incidents", "--home", incidents_home.root)
    assert_fits(out, width)
    for saved in INCIDENTS:
        block = row_block(out, saved.id)
        for value in (saved.status, saved.severity, saved.check, saved.opened_at.strftime("%Y-%m-%d %H:%M"),
                      *(f"<-{i}" for i in saved.caused_by), *(f"->{i}" for i in saved.effects)):
            assert_whole(value, block)
        assert_whole(" ".join(f"{k}={v}" for k, v in saved.subject.items()), block)
        lines = paragraph(saved.summary, block)
        assert len(lines) > 1 and all(line.startswith("    ") for line in lines)
        assert sum(len(line.strip()) for line in lines[:-1]) / len(lines[:-1]) > width / 2  # a paragraph, not a column


def test_incidents_json_is_the_stored_incidents(incidents_home: Home) -> None:
    """--json prints the stored incidents, newest first, indented by two, whatever the width."""
    con = sqlite3.connect(incidents_home.incidents_file)
    try:
        stored = [json.loads(body) for (body,) in con.execute("SELECT body FROM incidents ORDER BY seq DESC")]
    finally:
        con.close()
    assert [i["id"] for i in stored] == [i.id for i in reversed(INCIDENTS)]
    for width in WIDTHS:
        out = printed(width, "incidents", "--json", "--home", incidents_home.root)
        assert out == json.dumps(stored, indent=2) + "\n"


def test_control_characters_from_events_are_shown_not_obeyed(tmp_path: Path) -> None:
    """An ESC sequence in an agent id (it comes from events) is printed escaped, so it cannot clear the terminal."""
    home = Home.resolve(tmp_path / "home")
    agent = "lead-router\x1b[2J"
    incident_store(home).save([incident(1, "volume.action_drop", "warning", "open", {"agent_id": agent},
                                        f"{agent} went silent at 12:35 UTC")], 1)
    out = printed(80, "incidents", "--home", home.root)
    assert_fits(out, 80)
    assert "agent_id=lead-router\\x1b[2J" in out and "lead-router\\x1b[2J went silent" in out


@pytest.fixture(scope="module")
def rename_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deal_stage rename store, with a webhook the notifications are planned for (never sent here)."""
    home = Home.resolve(tmp_path_factory.mktemp("rename") / "home")
    store_rename(home)
    home.config_file.write_text("alerts:\n  destinations:\n    audit-hook: {type: webhook, url: "
                                "'http://127.0.0.1:9/hook', secret: s}\n  default: [audit-hook]\n")
    return home.root


@pytest.mark.parametrize("width", WIDTHS)
def test_backtest_table_shows_each_opened_incident_whole(rename_built: Path, tmp_path: Path, width: int) -> None:
    """`backtest --record --alerts print`: each incident it opened (read back from the incident store) has its row
    with its id, severity, check, opening time and subject whole; the notifications name them whole."""
    home = tmp_path / "home"
    shutil.copytree(rename_built, home)
    out = printed(width, "backtest", "--start", iso(RENAME_AT - timedelta(hours=1)), "--end", iso(END), "--every",
                  "15m", "--record", "--alerts", "print", "--home", home, *(f"--only={c}" for c in RENAME_CHECKS))
    assert_fits(out, width)
    opened = incident_store(Home.resolve(home)).list()
    assert {i.check for i in opened} == set(RENAME_CHECKS)
    table, notifications = out.split("\nnotifications\n")
    for saved in opened:
        when = saved.opened_at.strftime("%Y-%m-%d %H:%M")
        block = row_block(table, when)
        for value in (saved.id, saved.severity, saved.check, saved.started_at.strftime("%Y-%m-%d %H:%M")):
            assert_whole(value, block)
        assert_whole(" ".join(f"{k}={v}" for k, v in saved.subject.items()), block)
        assert re.search(rf"(?<!\S){saved.id}(?!\S)", notifications)
    assert "evaluations in" in table and f"notifications for {len(opened)} incidents" in notifications


AGENTS = [LONG_AGENT, "lead-router", "qualifier-agent-with-a-long-name"]
ACTIONS = [LONG_ACTION, "lead.assign_owner_round_robin", "sequence.enroll"]
STATUSES = ["ok", "pending_approval", "error", "skipped"]


@pytest.fixture(scope="module")
def actions_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """Actions with long agent ids, action names, resource and event ids, in every status."""
    home = Home.resolve(tmp_path_factory.mktemp("actions") / "home")
    start = datetime(2026, 10, 6, 8, 0, tzinfo=UTC)
    store_events(home, actions=[
        {"event_id": f"act-{n:04d}-7f3c9a2e5b814d6f8e0a1c2b3d4e5f60", "ts": iso(start + timedelta(minutes=7 * n)),
         "agent_id": AGENTS[min(n % 6, 2)], "action": ACTIONS[n % 3 if n % 5 else 1],
         "resource": {"type": "opportunity", "id": f"006Dn00000AbCdEfGH{n:03d}"}, "status": STATUSES[n % 4]}
        for n in range(60)])
    return home


def sql(home: Home, query: str) -> list[tuple]:
    con = open_reader(home)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_audit_table_shows_every_value_whole(actions_home: Home, width: int) -> None:
    """`audit --limit 12`: the newest 12 actions (by an independent query), each with its agent, action, resource,
    status and event id whole."""
    out = printed(width, "audit", "--limit", 12, "--home", actions_home.root)
    assert_fits(out, width)
    newest = sql(actions_home, "SELECT ts, agent_id, action, resource_type || ' ' || resource_id, status, event_id "
                               "FROM actions ORDER BY ts DESC, event_id DESC LIMIT 12")
    ((total,),) = sql(actions_home, "SELECT count(*) FROM actions")
    for ts, *values in newest:
        block = row_block(out, ts.strftime("%Y-%m-%d %H:%M:%S"))
        for value in values:
            assert_whole(value, block)
    assert f"the newest 12 of {total:,} matching actions" in " ".join(out.split())
    assert {status for *_, status, _ in newest} >= {"pending_approval", "error"}


@pytest.mark.parametrize("width", WIDTHS)
def test_status_shows_each_agent_whole(actions_home: Home, width: int) -> None:
    """`status`: each agent's row has its id, its actions and errors (counted apart in SQL) and its first and last
    event whole."""
    out = printed(width, "status", "--home", actions_home.root)
    assert_fits(out, width)
    agents = sql(actions_home, "SELECT agent_id, count(*), count(*) FILTER (WHERE status = 'error'), min(ts), max(ts) "
                               "FROM actions GROUP BY agent_id")
    assert len(agents) == len(AGENTS) and len({(count, errors) for _, count, errors, *_ in agents}) == len(AGENTS)
    for agent, count, errors, first, last in agents:
        block = row_block(out, agent)
        for value in (f"{count:,}", f"{errors:,}", first.strftime("%Y-%m-%d %H:%M"), last.strftime("%Y-%m-%d %H:%M")):
            assert_whole(value, block)
        assert f"{agent} {count:,} {errors:,} {first:%Y-%m-%d %H:%M}" in " ".join(" ".join(block).split())
