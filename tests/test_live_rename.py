"""The demo's rename, run live: the router obeys the guard and goes silent for ten days; its silence must neither
resolve the rename nor lift its pause. A fix (a `fields:` mapping, or a snapshot with the field back) then does,
and the record says what lifted it. Each `check` is a fresh process at a later time, as `serve` users run it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from agentwatch.app.demo.simulate import SimulationConfig, simulate
from agentwatch.core.home import Home
from tests.live_support import Feed, agentwatch

pytestmark = pytest.mark.slow

GUARDED = """\
guard:
  pause_on: ["schema.*"]
"""
LATER = {"+3h": timedelta(hours=3), "+1d": timedelta(days=1), "+3d": timedelta(days=3),
         "+9d": timedelta(days=9), "+10d": timedelta(days=10)}


def rename_incident(home: Home) -> dict:
    found = [i for i in json.loads(agentwatch(home, "incidents", "--json"))
             if i["check"] == "schema.field_renamed" and i["subject"]["field"] == "deal_stage -> opportunity_stage"]
    assert len(found) == 1, found
    return found[0]


def guard(home: Home) -> dict:
    return json.loads(agentwatch(home, "agent", "status", "lead-router", "--json"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, Feed, object]:
    work = tmp_path_factory.mktemp("live-rename")
    files = simulate(work / "sim", SimulationConfig(days=30, leads_per_weekday=150))
    silent_from = files.rename_at + timedelta(hours=2)
    home = Home.resolve(work / "home")
    home.config_file.write_text(GUARDED)
    # The router obeys the guard: nothing from it after the first checks pause it.
    feed = Feed(home, files, work, drop=(pl.col("agent_id") == "lead-router") & (pl.col("at") > silent_from))
    return home, feed, files.rename_at


def test_the_paused_routers_silence_keeps_the_rename_open_until_a_mapping_fixes_it(live) -> None:
    home, feed, rename_at = live
    feed.until(rename_at + timedelta(hours=2))
    agentwatch(home, "check", "--as-of", (rename_at + timedelta(hours=2)).isoformat())
    assert not guard(home)["allowed"], "the rename of a field lead-router reads pauses it"

    for label, later in LATER.items():
        at = rename_at + later
        feed.until(at)
        agentwatch(home, "check", "--as-of", at.isoformat())
        incident = rename_incident(home)
        assert incident["status"] == "open", (label, incident["status_note"])
        assert "lead-router" in incident["evidence"]["agents"], label
        assert "no agent reads it" not in incident["summary"], (label, incident["summary"])
        decision = guard(home)
        assert not decision["allowed"] and decision["incident_id"] == incident["id"], (label, decision)

    # RevOps points the agents' deal_stage key at the renamed field: that, not silence, resolves it.
    home.config_file.write_text(GUARDED + "fields:\n  deal_stage: Lead.opportunity_stage\n")
    fixed_at = rename_at + timedelta(days=10, hours=1)
    feed.until(fixed_at)
    agentwatch(home, "check", "--as-of", fixed_at.isoformat())
    incident = rename_incident(home)
    assert incident["status"] == "resolved"
    assert incident["status_note"].startswith("fields: maps deal_stage to Lead.opportunity_stage")
    decision = guard(home)
    assert decision["allowed"], decision
    lift = decision["controls"][0]
    assert lift["action"] == "resume" and lift["by"] == "agentwatch"
    assert lift["reason"].startswith(f"{incident['id']} resolved: fields: maps deal_stage"), lift


def test_a_snapshot_with_the_field_back_resolves_the_rename(tmp_path: Path) -> None:
    files = simulate(tmp_path / "sim", SimulationConfig(days=24, leads_per_weekday=120))
    home = Home.resolve(tmp_path / "home")
    home.config_file.write_text(GUARDED)
    feed = Feed(home, files, tmp_path)
    at = files.rename_at + timedelta(hours=2)
    feed.until(at)
    agentwatch(home, "check", "--as-of", at.isoformat())
    assert rename_incident(home)["status"] == "open"
    # RevOps undoes the rename: the next Lead snapshot has deal_stage again.
    last = max((p for p in files.schema_snapshots if p.name.startswith("Lead-")), key=lambda p: p.name)
    body = json.loads(last.read_text())
    body["taken_at"] = (at + timedelta(hours=1)).isoformat()
    body["fields"] = [{**f, "name": "deal_stage"} if f["name"] == "opportunity_stage" else f for f in body["fields"]]
    undone = tmp_path / "Lead-undone.json"
    undone.write_text(json.dumps(body))
    agentwatch(home, "ingest", "schema", str(undone))
    later = at + timedelta(hours=3)
    agentwatch(home, "check", "--as-of", later.isoformat())
    incident = rename_incident(home)
    assert incident["status"] == "resolved"
    assert "has deal_stage again" in incident["status_note"]
    assert guard(home)["allowed"]
