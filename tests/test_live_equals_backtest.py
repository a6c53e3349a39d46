"""A backtest predicts what `serve` does: the same scenario replayed through the live path (events arriving in
order, `check --as-of` at successive times, each a fresh process) opens the same incidents as one `backtest` over
the same range: same check, subject, severity, start (within one 5-minute bucket) and final status. The scenario
is the demo's (the deal_stage rename) with the router paused and silent for two days after it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from agentwatch.app.demo.run import DEMO_CONFIG
from agentwatch.app.demo.simulate import SimulationConfig, SimulationFiles, simulate
from agentwatch.core.home import Home
from tests.live_support import Feed, agentwatch

pytestmark = pytest.mark.slow

EVERY = timedelta(hours=6)
BUCKET_S = 300


def comparable(incidents: list[dict]) -> dict[tuple[str, str], tuple[str, int, str, list[str]]]:
    """(check, subject) -> (severity, start bucket, status, agents named) of each incident (the latest of a
    subject): the agents matter, the guard pauses them."""
    found = {}
    for incident in sorted(incidents, key=lambda i: int(i["id"].split("-")[1])):
        started = datetime.fromisoformat(incident["started_at"]).timestamp()
        found[(incident["check"], json.dumps(incident["subject"], sort_keys=True))] = (
            incident["severity"], int(started // BUCKET_S), incident["status"],
            sorted(incident["evidence"].get("agents", [])))
    return found


def scenario(work: Path) -> tuple[SimulationFiles, pl.Expr, list[datetime]]:
    files = simulate(work / "sim", SimulationConfig(days=12, leads_per_weekday=120, rename_day=8))
    paused = (pl.col("agent_id") == "lead-router") & pl.col("at").is_between(
        files.rename_at + timedelta(hours=2), files.rename_at + timedelta(days=2))
    start = SimulationConfig().start + timedelta(days=1)
    steps = [start + i * EVERY for i in range(int(timedelta(days=11) / EVERY) + 1)]
    return files, paused, steps


def test_live_checks_open_what_the_backtest_opens(tmp_path: Path) -> None:
    files, paused, steps = scenario(tmp_path)

    live = Home.resolve(tmp_path / "live")
    live.config_file.write_text(DEMO_CONFIG)
    feed = Feed(live, files, tmp_path, drop=paused)
    for at in steps:
        feed.until(at)
        agentwatch(live, "check", "--as-of", at.isoformat())

    replay = Home.resolve(tmp_path / "replay")
    replay.config_file.write_text(DEMO_CONFIG)
    Feed(replay, files, tmp_path / "replay-input", drop=paused).until(steps[-1])
    backtest = json.loads(agentwatch(replay, "backtest", "--start", steps[0].isoformat(), "--end",
                                     steps[-1].isoformat(), "--every", "6h", "--json"))

    live_incidents = comparable(json.loads(agentwatch(live, "incidents", "--json")))
    assert any(check == "schema.field_renamed" for check, _ in live_incidents), "the scenario's rename is caught"
    assert live_incidents == comparable(backtest)
