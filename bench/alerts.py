"""Speed of alerting: one planning pass over many open incidents, delivery to a loopback receiver, the guard.

Run: ``.venv/bin/python bench/alerts.py [--incidents 2000] [--notifications 500] [--guard-requests 1000]``.

1. A home with ``--incidents`` open incidents (bursts of ten of one check, and cascades of three linked
   incidents) and a config routing them to three destinations; times the first planning pass (which queues
   a notification per group and destination) and a second pass (which finds nothing due: what the server
   does every second).
2. Delivers ``--notifications`` queued webhook notifications to a real HTTP receiver on 127.0.0.1 and
   reports notifications per second.
3. Asks ``GET /v1/agents/{id}/guard`` ``--guard-requests`` times through a real uvicorn server with
   those incidents open, and reports the median and 99th percentile latency.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentwatch.alerts.config import AlertsConfig
from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.delivery import deliver_due
from agentwatch.alerts.notify import plan_pass
from agentwatch.alerts.outbox import Outbox, enqueue
from agentwatch.checks.engine import incident_store
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from tests.receiver import Receiver
from tests.test_serve_checks import free_port


def make_incidents(count: int, now: datetime) -> list[Incident]:
    incidents = []
    for n in range(1, count + 1):
        opened = now - timedelta(minutes=30 + (n // 10))
        kind = n % 3
        check = ("volume.action_spike", "quality.null_spike", "drift.distribution")[kind]
        caused_by = [f"INC-{n - 1}"] if kind and n > 1 else []
        incidents.append(Incident(
            id=f"INC-{n}", check=check, severity="critical" if kind == 1 else "warning", status="open",
            opened_at=opened, started_at=opened - timedelta(minutes=5), last_fired_at=now,
            subject={"agent_id": f"agent-{n % 40}", "action": "lead.route"}, summary=f"incident {n}",
            evidence={"agents": [f"agent-{n % 40}"]}, affected=n, caused_by=caused_by))
    return incidents


def config_text(receiver: Receiver) -> str:
    return f"""
alerts:
  destinations:
    slack: {{type: slack, url: "{receiver.url('/slack')}"}}
    pd: {{type: pagerduty, routing_key: k, url: "{receiver.url('/v2/enqueue')}"}}
    hook: {{type: webhook, url: "{receiver.url('/hook')}", secret: s}}
  routes:
    - match: {{severity: critical}}
      destinations: [pd, slack, hook]
  default: [slack, hook]
  group_wait: 0s
guard:
  pause_on: [quality.null_spike]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--notifications", type=int, default=500)
    parser.add_argument("--guard-requests", type=int, default=1000)
    args = parser.parse_args()
    receiver = Receiver().start()
    with tempfile.TemporaryDirectory(prefix="agentwatch-bench-alerts-") as scratch:
        home = Home.resolve(Path(scratch) / "home")
        (home.root / "agentwatch.yaml").write_text(config_text(receiver))
        now = datetime.now(UTC)
        incident_store(home).save(make_incidents(args.incidents, now), 1)
        from agentwatch.app.config import config_for

        alerts: AlertsConfig = config_for(home).alerts
        began = time.perf_counter()
        queued = plan_pass(home, alerts, now)
        first = time.perf_counter() - began
        began = time.perf_counter()
        again = plan_pass(home, alerts, now + timedelta(seconds=1))
        second = time.perf_counter() - began
        print(f"planning over {args.incidents:,} open incidents: first pass {first * 1000:.0f} ms "
              f"({len(queued):,} notifications queued), next pass {second * 1000:.0f} ms ({len(again)} due)")

        db = alerts_db(home)
        with db.writing() as con:  # replace the queue by N webhook notifications of the same size
            con.execute("DELETE FROM outbox")
            hook = [n.model_copy(update={"destination": "hook", "id": f"bench-{i}"})
                    for i, n in zip(range(args.notifications), _cycle(queued), strict=False)]
            enqueue(con, hook, now)
        began = time.perf_counter()
        delivered = 0
        with httpx.Client() as client:
            while delivered < args.notifications:
                delivered += len(deliver_due(Outbox(db), alerts, client=client, limit=100).delivered)
        seconds = time.perf_counter() - began
        print(f"delivery: {delivered:,} webhook notifications to a loopback receiver in {seconds:.1f} s "
              f"({delivered / seconds:.0f}/s)")

        token = KeyStore(home).create("ingest", name="bench")[1]
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
        server = subprocess.Popen([str(Path(sys.executable).parent / "agentwatch"), "serve", "--home",
                                   str(home.root), "--port", str(port), "--check-every", "0"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            latencies = _guard_latencies(port, token, args.guard_requests)
        finally:
            server.terminate()
            server.wait(timeout=30)
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99)]
        print(f"guard: {len(latencies):,} requests with {args.incidents:,} open incidents: median "
              f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    receiver.stop()


def _cycle(items: list):
    while True:
        yield from items


def _guard_latencies(port: int, token: str, count: int) -> list[float]:
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        while time.monotonic() < deadline:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        latencies = []
        for n in range(count):
            began = time.perf_counter()
            client.get(f"/v1/agents/agent-{n % 40}/guard").raise_for_status()
            latencies.append(time.perf_counter() - began)
    return latencies


if __name__ == "__main__":
    main()
