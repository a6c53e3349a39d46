"""`agentwatch serve --check-every 1s`: a real server runs the checks on its schedule and keeps answering."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agentwatch.app.scheduler import CheckScheduler
from agentwatch.checks.base import REGISTRY
from agentwatch.checks.catalog import load_all
from agentwatch.checks.engine import incident_store
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from tests.checks_support import iso, store_events
from tests.cli_support import run_cli

CHECKS = ("schema.field_renamed", "quality.null_spike")
START_TIMEOUT_S = 30.0  # generous: the machine is shared; a normal start takes a few seconds
INCIDENT_TIMEOUT_S = 15.0
BASE_FIELDS = [{"name": "Id", "type": "id", "nullable": False, "label": "Lead ID"},
               {"name": "email", "type": "email", "label": "Email"}]
STAGES = ["open", "negotiation", "won"]


def stage_field(name: str, label: str) -> dict:
    return {"name": name, "type": "picklist", "label": label, "picklist_values": STAGES}


def store_recent_rename(home: Home, now: datetime) -> datetime:
    """Three days of lead-router reads of deal_stage up to `now`, renamed two hours ago; returns the rename time."""
    renamed_at = now - timedelta(hours=2)
    snapshots = [
        {"taken_at": iso(now - timedelta(days=1)), "source": "custom", "object": "Lead",
         "fields": [*BASE_FIELDS, stage_field("deal_stage", "Deal Stage")]},
        {"taken_at": iso(renamed_at), "source": "custom", "object": "Lead",
         "fields": [*BASE_FIELDS, stage_field("opportunity_stage", "Opportunity Stage")]},
    ]
    actions, at, n = [], now - timedelta(days=3), 0
    while at < now:
        stage = None if at >= renamed_at else STAGES[n % len(STAGES)]
        actions.append({"event_id": f"a-{n:05d}", "ts": iso(at), "agent_id": "lead-router", "action": "lead.route",
                        "resource": {"type": "lead", "id": f"L-{n}"}, "status": "ok",
                        "inputs": {"deal_stage": stage, "email": f"lead{n}@example.com"}})
        at, n = at + timedelta(minutes=3), n + 1
    store_events(home, actions=actions, snapshots=snapshots)
    return renamed_at


def only_these_checks(home: Home) -> None:
    """An agentwatch.yaml that turns every other check off, so each scheduled run takes well under a second."""
    load_all()
    lines = ["checks:"] + [f"  {name}: {{enabled: false}}" for name in sorted(REGISTRY) if name not in CHECKS]
    (home.root / "agentwatch.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(condition: object, what: str, timeout: float, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited with {server.returncode} waiting for {what}:\n{log.read_text()}")
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout} s:\n{log.read_text()}")


@pytest.fixture
def server_log(tmp_path: Path) -> Path:
    return tmp_path / "server.log"


@pytest.fixture
def serving(tmp_path: Path, server_log: Path) -> Iterator[tuple[Home, int, subprocess.Popen, datetime]]:
    """The rename data in a fresh home, served by the real command with the checks every second."""
    home = Home.resolve(tmp_path / "home")
    renamed_at = store_recent_rename(home, datetime.now(UTC))
    only_these_checks(home)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
    script = Path(sys.executable).parent / "agentwatch"
    with open(server_log, "wb") as log:
        server = subprocess.Popen([str(script), "serve", "--home", str(home.root), "--port", str(port),
                                   "--check-every", "1s"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: healthy(port), "answer on /healthz", START_TIMEOUT_S, server, server_log)
        yield home, port, server, renamed_at
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)


def test_serve_runs_the_checks_and_opens_the_incidents_the_data_implies(
        serving: tuple[Home, int, subprocess.Popen, datetime], server_log: Path) -> None:
    """Within seconds the home's store holds the rename and the linked null spike; the server still answers."""
    home, port, server, renamed_at = serving
    store = incident_store(home)

    def both_open() -> bool:
        return {i.check for i in store.list(["open"])} >= set(CHECKS)

    wait_until(both_open, "open rename and null spike incidents", INCIDENT_TIMEOUT_S, server, server_log)
    found: dict[str, Incident] = {i.check: i for i in store.list()}
    rename, nulls = found["schema.field_renamed"], found["quality.null_spike"]
    assert rename.subject == {"object": "Lead", "field": "deal_stage -> opportunity_stage"}
    assert rename.severity == "critical" and nulls.subject == {"field": "deal_stage"}
    assert abs(rename.started_at - renamed_at) <= timedelta(minutes=5)
    assert nulls.caused_by == [rename.id]
    assert len(store.list()) == 2  # later scheduled runs update these two, they do not open more

    runs_seen = store.get(rename.id).last_fired_at
    wait_until(lambda: store.get(rename.id).last_fired_at > runs_seen, "later scheduled run", INCIDENT_TIMEOUT_S,
               server, server_log)
    assert len(store.list()) == 2
    assert healthy(port)
    assert "incident INC-" in server_log.read_text()  # the scheduler logs what it opened
    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
    run = health["checks"]["last_run"]  # how the scheduler keeps up: its last run, and the lag behind the data
    assert datetime.fromisoformat(run["as_of"]) >= runs_seen and run["failed_checks"] == []
    assert 0 < run["seconds"] < 60 and health["checks"]["lag_s"] == 0 and health["status"] == "ok"

    server.send_signal(signal.SIGINT)
    assert server.wait(timeout=15) == 0, server_log.read_text()
    assert "Traceback" not in server_log.read_text()


def test_scheduler_survives_a_run_that_fails(home: Home, caplog: pytest.LogCaptureFixture) -> None:
    """A run that fails (here the incident file is a folder) is logged and raises nothing, so the scheduler's
    thread lives on and its next run tries again."""
    from agentwatch.app.scheduler import CheckScheduler

    (home.root / "incidents.sqlite3").mkdir()
    scheduler = CheckScheduler(home, every_s=3600)
    with caplog.at_level("ERROR", logger="agentwatch.app.scheduler"):
        scheduler.run_once()
        scheduler.run_once()
    assert scheduler.runs == 0
    assert len([r for r in caplog.records if "checks did not run" in r.getMessage()]) == 2


def test_scheduler_keeps_its_checks_while_the_config_stays_the_same(home: Home) -> None:
    """Run after run the scheduler hands the engine the same check objects (so their throttles hold), and new
    ones once agentwatch.yaml changes."""
    from agentwatch.app.scheduler import CheckScheduler

    scheduler = CheckScheduler(home, every_s=3600)
    scheduler.run_once()
    first = scheduler._checks
    scheduler.run_once()
    assert scheduler._checks is first and scheduler.runs == 2
    (home.root / "agentwatch.yaml").write_text("checks:\n  quality.null_spike: {threshold: 12}\n")
    scheduler.run_once()
    assert scheduler._checks is not first
    (null_spike,) = [c for c in scheduler._checks[1] if c.name == "quality.null_spike"]
    assert null_spike.options.threshold == 12


class SlowScheduler(CheckScheduler):
    """The real scheduling loop around runs that take longer than the interval (each run sleeps instead of
    evaluating, so the loop's timing is what is tested)."""

    def __init__(self, home: Home, every_s: float, run_s: float) -> None:
        super().__init__(home, every_s)
        self.run_s, self.spans = run_s, []

    def run_once(self) -> None:
        began = time.monotonic()
        time.sleep(self.run_s)
        self.spans.append((began, time.monotonic()))


def test_a_scheduler_slower_than_its_interval_skips_runs_and_says_so_once(
        home: Home, caplog: pytest.LogCaptureFixture) -> None:
    """Runs of 0.5 s every 0.2 s: they never overlap or queue up, the missed runs are skipped, and the log says
    so once while it keeps falling behind."""
    scheduler = SlowScheduler(home, every_s=0.2, run_s=0.5)
    with caplog.at_level("WARNING", logger="agentwatch.app.scheduler"):
        scheduler.start()
        time.sleep(2.6)
        scheduler.stop()
    spans = scheduler.spans
    assert 3 <= len(spans) <= 6  # back to back at most: 2.6 s of 0.5-s runs, not 13 queued ones
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    assert scheduler.skipped >= 2 * (len(spans) - 1)
    warnings = [r.getMessage() for r in caplog.records if "longer than --check-every" in r.getMessage()]
    assert len(warnings) == 1, warnings


def test_status_shows_the_last_live_run_and_how_far_the_data_is_past_it(home: Home) -> None:
    """`agentwatch status --json` and its table: the last `check` run, and the newest action's lag behind it."""
    now = datetime.now(UTC).replace(microsecond=0)
    store_recent_rename(home, now)
    only_these_checks(home)
    as_of = now - timedelta(hours=1)
    code, _, _ = run_cli("check", "--as-of", as_of.isoformat(), "--home", home.root)
    assert code == 0
    code, out, _ = run_cli("status", "--json", "--home", home.root)
    checks = json.loads(out)["checks"]
    assert datetime.fromisoformat(checks["last_run"]["as_of"]) == as_of
    newest = max(datetime.fromisoformat(a["last_event"]) for a in json.loads(out)["actions"]["agents"])
    assert checks["lag_s"] == pytest.approx((newest - as_of).total_seconds())
    code, out, _ = run_cli("status", "--home", home.root)
    assert f"evaluated up to {as_of:%Y-%m-%d %H:%M} UTC (the newest event is 57 min after it)" in out
