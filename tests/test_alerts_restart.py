"""The outbox survives the process: `agentwatch serve` killed with notifications pending delivers them after
a restart, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.delivery import LEASE_S
from agentwatch.alerts.outbox import Outbox, enqueue
from agentwatch.core.home import Home
from agentwatch.schemas.notifications import Notification
from tests.test_alert_delivery import incident, save, write_config
from tests.test_serve_checks import free_port, healthy, wait_until

PATIENT_RETRIES = "delivery: {max_attempts: 1000, first_retry: 100ms, max_retry: 200ms}"
# Every wait is on an event (a request arrived, a row changed state, the process exited) with this deadline:
# generous, because a server start on a busy shared machine has taken more than 30 s.
DEADLINE_S = 120.0


def start_server(home: Home, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
    script = Path(sys.executable).parent / "agentwatch"
    with open(log, "ab") as out:
        return subprocess.Popen([str(script), "serve", "--home", str(home.root), "--port", str(port),
                                 "--check-every", "0"], stdout=out, stderr=subprocess.STDOUT, env=env)


def test_notifications_pending_when_the_server_is_killed_are_delivered_after_restart(tmp_path, receiver) -> None:
    """Kill -9 while the receiver is down and two notifications are retrying; after a restart each is
    delivered exactly once."""
    home = Home.resolve(tmp_path / "home")
    write_config(home, receiver, retries=PATIENT_RETRIES)
    save(home, incident(1, "volume.action_spike", severity="warning", agent_id="a", action="email.send"),
         incident(2, "errors.error_burst", severity="warning", agent_id="b"))
    receiver.fail_next(100_000, 503)
    box = Outbox(alerts_db(home))
    log, port = tmp_path / "server.log", free_port()

    first = start_server(home, port, log)
    try:
        wait_until(lambda: len(receiver.requests) >= 4, "failed delivery attempts", DEADLINE_S, first, log)
    finally:
        first.kill()  # SIGKILL: no shutdown hook runs
        first.wait(timeout=DEADLINE_S)
    assert receiver.delivered() == []
    assert box.counts()["pending"] == 2

    receiver.recover()
    second = start_server(home, port, log)
    try:
        wait_until(lambda: box.counts()["delivered"] == 2, "both notifications delivered", DEADLINE_S, second, log)
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=DEADLINE_S) == 0, log.read_text()
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(timeout=DEADLINE_S)
    # The server has exited: whatever it sent is in, so a duplicate would show here (no window to guess).
    delivered = receiver.delivered("/hook")
    assert sorted(r.json()["group_key"] for r in delivered) == ["INC-1", "INC-2"]
    assert len({r.headers["x-agentwatch-delivery"] for r in delivered}) == 2


def test_a_running_servers_guard_flips_on_a_critical_incident_and_back_on_resolve(tmp_path, receiver) -> None:
    """`agentwatch serve`: the guard refuses lead-router while a critical null spike naming it is open, records
    agentwatch's pause and resume, and allows the agent again once the incident resolves."""
    import httpx

    from agentwatch.alerts.guard import AgentControls
    from agentwatch.checks.engine import incident_store
    from agentwatch.core.api_keys import KeyStore

    home = Home.resolve(tmp_path / "home")
    write_config(home, receiver, extra="guard: {pause_on: [quality.null_spike]}")
    token = KeyStore(home).create("ingest", name="lead-router")[1]
    log, port = tmp_path / "server.log", free_port()
    server = start_server(home, port, log)
    url = f"http://127.0.0.1:{port}/v1/agents/lead-router/guard"

    def guard() -> dict:
        return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=DEADLINE_S).json()

    try:
        wait_until(lambda: healthy(port), "answer on /healthz", DEADLINE_S, server, log)
        assert guard() == {"allowed": True, "reason": None, "incident_id": None, "fail_closed_actions": []}
        spike = incident(1, agent_id="lead-router")
        spike = spike.model_copy(update={"subject": {"field": "deal_stage"},
                                         "evidence": {"agents": ["lead-router", "enrichment-agent"]}})
        save(home, spike)
        refused = guard()
        assert refused["allowed"] is False and refused["incident_id"] == "INC-1"
        assert "quality.null_spike" in refused["reason"]
        controls = AgentControls(alerts_db(home))
        wait_until(lambda: [c.action for c in controls.history("lead-router")] == ["pause"], "the automatic pause",
                   DEADLINE_S, server, log)
        incident_store(home).set_status("INC-1", "resolved")
        assert guard()["allowed"] is True
        wait_until(lambda: [c.action for c in controls.history("lead-router")] == ["resume", "pause"],
                   "the automatic resume", DEADLINE_S, server, log)
        assert {c.by for c in controls.history("lead-router")} == {"agentwatch"}
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=DEADLINE_S) == 0, log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=DEADLINE_S)


CLAIM_THEN_DIE = """
import os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from agentwatch.alerts.db import open_alerts_db
from agentwatch.alerts.outbox import Outbox
assert Outbox(open_alerts_db(Path(sys.argv[1]))).claim_due(datetime.now(UTC), float(sys.argv[2]), 1)
os.kill(os.getpid(), signal.SIGKILL)  # killed mid-send: the lease is never given back
"""


def test_a_lease_held_by_a_killed_sender_is_taken_over_at_once(tmp_path) -> None:
    """A sender killed while sending leaves its row leased for minutes; the next sender sees the holder is gone
    and takes the row at once (the root of the restart test's flake: a kill landing mid-send held the row back
    past the deadline). A lease whose holder lives is still respected."""
    home = Home.resolve(tmp_path / "home")
    first = incident(1)
    note = Notification(id="n-1", event="trigger", destination="hook", group_key="INC-1", dedup_key="d",
                        status="open", severity="critical", title="t", incidents=[first], dashboard_url="http://x",
                        created_at=first.opened_at)
    box = Outbox(alerts_db(home))
    with box.db.writing() as con:
        enqueue(con, [note], datetime.now(UTC))
    child = subprocess.run([sys.executable, "-c", CLAIM_THEN_DIE, str(home.alerts_file), str(LEASE_S)],
                           capture_output=True, text=True, timeout=DEADLINE_S)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert [r.id for r in box.claim_due(datetime.now(UTC), LEASE_S)] == ["n-1"]
    assert box.claim_due(datetime.now(UTC), LEASE_S) == []  # now this live process holds it
