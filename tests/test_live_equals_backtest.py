"""A backtest predicts what `serve` does: the same scenario replayed through the live path (events arriving in
order, `check --as-of` at successive times, each a fresh process) opens the same incidents as one `backtest` over
the same range: same check, subject, severity, start (within one 5-minute bucket) and final status. The scenario
is the demo month (the deal_stage rename on day 17) with the router paused and silent for two days after it,
evaluated up to 13 days after the rename: past the 8 days of reads a live run loads, so an incident that forgot
its cause would name other agents live than in the backtest."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest

from agentwatch.app.config import config_for
from agentwatch.app.demo.run import DEMO_CONFIG
from agentwatch.app.demo.simulate import SimulationConfig, SimulationFiles, simulate
from agentwatch.checks.engine import evaluate, incident_store
from agentwatch.core.home import Home
from tests.live_support import Feed, agentwatch
from tests.test_serve_checks import free_port

pytestmark = pytest.mark.slow

EVERY = timedelta(hours=24)
SERVE_TIMEOUT_S = 180  # four scheduled runs after the server starts, on a busy 2-core machine
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
    files = simulate(work / "sim", SimulationConfig(days=30, leads_per_weekday=100))
    paused = (pl.col("agent_id") == "lead-router") & pl.col("at").is_between(
        files.rename_at + timedelta(hours=2), files.rename_at + timedelta(days=2))
    # From the second week (a week of history behind the first run, as the checks' baselines want), a day apart:
    # 23 fresh `check` processes keep CI in its budget, and the rename on day 17 still has 9 days before it.
    start = SimulationConfig().start + timedelta(days=8)
    steps = [start + i * EVERY for i in range(int(timedelta(days=22) / EVERY) + 1)]
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
                                     steps[-1].isoformat(), "--every", "24h", "--json"))

    live_incidents = comparable(json.loads(agentwatch(live, "incidents", "--json")))
    assert any(check == "schema.field_renamed" for check, _ in live_incidents), "the scenario's rename is caught"
    assert live_incidents == comparable(backtest)


def test_serves_scheduler_opens_what_a_backtest_at_its_run_times_opens(tmp_path: Path) -> None:
    """A real `agentwatch serve` evaluating every 2 s on a recent rename (its check objects kept from run to run,
    as they are for months in production), against a backtest at exactly the times its runs evaluated."""
    now = datetime.now(UTC)
    start = (now - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    # The rename lands yesterday at 10:40 UTC, whatever the time of day now: at least 13 hours of it to see.
    files = simulate(tmp_path / "sim", SimulationConfig(start=start, days=4, leads_per_weekday=100, rename_day=2))
    served = Home.resolve(tmp_path / "served")
    replay = Home.resolve(tmp_path / "replay")
    for home in (served, replay):
        home.config_file.write_text(DEMO_CONFIG)
        Feed(home, files, tmp_path / f"input-{home.root.name}").until(now)

    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-c", "from agentwatch.app.cli import main; main()", "serve",
                                   "--home", str(served.root), "--port", str(port), "--check-every", "2s"],
                                  stdout=out, stderr=subprocess.STDOUT)
    run_times: list[datetime] = []
    numbers: list[int] = []
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while len(run_times) < 4:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                run = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["checks"]["last_run"]
            except httpx.TransportError:
                run = None
            if run and (not run_times or datetime.fromisoformat(run["as_of"]) > run_times[-1]):
                run_times.append(datetime.fromisoformat(run["as_of"]))
                numbers.append(run["number"])
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    # Every run is seen (runs are numbered): the backtest below evaluates at exactly the times serve evaluated. The
    # first run also builds the aggregates of the settled hours, so it may take longer than the 2 s between runs.
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), (numbers, run_times)

    backtest = evaluate(replay, config_for(replay), run_times, incident_store(replay)).incidents
    served_incidents = comparable([json.loads(i.model_dump_json()) for i in incident_store(served).list()])
    assert any(check == "schema.field_renamed" for check, _ in served_incidents)
    assert served_incidents == comparable([json.loads(i.model_dump_json()) for i in backtest])


def test_the_detection_benchmarks_silent_agent_scenario_agrees_live_and_in_backtest() -> None:
    """bench/live_vs_backtest.py on the scenario where an agent stops mid-day (its silence is the fault), small:
    every scenario, at full size, is in docs/benchmarks.md."""
    done = subprocess.run([sys.executable, "bench/live_vs_backtest.py", "--family", "volume-drop",
                           "--leads-per-day", "300", "--every", "2h"], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Live and backtest agree." in done.stdout
    row = re.search(r"\| volume-drop \| (\d+) \| (\d+) \|", done.stdout)
    assert row and int(row.group(1)) >= 1, done.stdout  # the agent's silence was caught, in both
