"""The outbox survives the process: `agentwatch serve` killed with notifications pending delivers them after
a restart, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from alerts.db import alerts_db
from alerts.outbox import Outbox
from collector.home import Home
from tests.test_alert_delivery import incident, save, write_config
from tests.test_serve_checks import START_TIMEOUT_S, free_port, healthy, wait_until

PATIENT_RETRIES = "delivery: {max_attempts: 1000, first_retry: 100ms, max_retry: 200ms}"


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
        wait_until(lambda: len(receiver.requests) >= 4, "failed delivery attempts", START_TIMEOUT_S, first, log)
    finally:
        first.kill()  # SIGKILL: no shutdown hook runs
        first.wait(timeout=10)
    assert receiver.delivered() == []
    assert box.counts()["pending"] == 2

    receiver.recover()
    second = start_server(home, port, log)
    try:
        wait_until(lambda: healthy(port), "answer on /healthz", START_TIMEOUT_S, second, log)
        wait_until(lambda: box.counts()["delivered"] == 2, "both notifications delivered", START_TIMEOUT_S,
                   second, log)
        wait_until(lambda: len(receiver.requests) > 0, "nothing", 1.5, second, log)  # time for a duplicate to show
        delivered = receiver.delivered("/hook")
        assert sorted(r.json()["group_key"] for r in delivered) == ["INC-1", "INC-2"]
        assert len({r.headers["x-agentwatch-delivery"] for r in delivered}) == 2
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=30) == 0, log.read_text()
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(timeout=10)
