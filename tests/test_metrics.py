"""``GET /metrics`` of a real ``agentwatch serve``: it parses with Prometheus' own text parser, its counters move by
exactly what the test sends (accepted, duplicate, refused), its gauges read the state, it needs a read key, and
``--metrics-port`` serves the same metrics without a key on loopback only. docs/operations.md lists every metric."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentwatch.app.api.app import create_app
from agentwatch.app.api.metrics import registry_of
from agentwatch.app.metrics import record_poll
from agentwatch.checks.engine import incident_store
from agentwatch.collector.crm.state import PollRecord, PollState
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from agentwatch.store.partitions import visible_files
from agentwatch.store.reader import SCHEMA_PART
from tests.live_support import Server, free_port, stop, stored_rows
from tests.test_docs import table_rows

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = ROOT / "docs" / "operations.md"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str], int]]:
    """One real server with a read, an ingest and an admin key, and its open metrics port."""
    root = tmp_path_factory.mktemp("metrics")
    home = Home.resolve(root / "home")
    store = KeyStore(home)
    keys = {scope: store.create(scope, name=f"metrics {scope}")[1] for scope in ("read", "ingest", "admin")}
    metrics_port = free_port()
    server = Server(home, free_port(), keys["ingest"], root / "server.log",
                    args=("--metrics-port", str(metrics_port))).start()
    yield server, keys, metrics_port
    assert server.process is not None
    stop(server.process)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of the exposition, parsed by prometheus_client's parser: (name, sorted labels) -> value."""
    answer = httpx.get(url, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def events(samples: Samples, endpoint: str, kind: str, outcome: str) -> float:
    return value(samples, "agentwatch_events_total", endpoint=endpoint, kind=kind, outcome=outcome)


def action(event_id: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "ts": "2026-10-01T09:30:00Z", "agent_id": "metrics-agent", "action": "lead.route",
            "resource": {"type": "lead", "id": "L-1"}, "status": "ok", **extra}


def test_metrics_need_a_key_of_scope_read(served: tuple[Server, dict[str, str], int]) -> None:
    """No key: 401; an ingest key: 403; a read key and an admin key: 200 with the metrics."""
    server, keys, _ = served
    url = f"{server.url}/metrics"
    assert httpx.get(url, timeout=30).status_code == 401
    refused = httpx.get(url, headers=bearer(keys["ingest"]), timeout=30)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"
    for scope in ("read", "admin"):
        assert value(scrape(url, bearer(keys[scope])), "agentwatch_build_info", version="0.1.0") == 1


def test_counters_move_by_exactly_what_was_sent(served: tuple[Server, dict[str, str], int]) -> None:
    """3 valid actions and 1 invalid one (422), the same 3 again (duplicates), 2 outcomes, 1 snapshot, a wrong key
    and 2 guard answers: each counter moves by exactly that much."""
    server, keys, _ = served
    url, ingest = f"{server.url}/metrics", bearer(keys["ingest"])
    before = scrape(url, bearer(keys["read"]))
    batch = [action(f"m-{i}") for i in range(3)]
    mixed = httpx.post(f"{server.url}/v1/actions", json=[*batch, action("m-bad", status="weird")], headers=ingest,
                       timeout=30)
    assert mixed.status_code == 422
    again = httpx.post(f"{server.url}/v1/actions", json=batch, headers=ingest, timeout=30)
    assert again.json() == {"accepted": 0, "duplicates": 3}
    outcomes = [{"event_id": f"mo-{i}", "ts": "2026-10-02T10:00:00Z", "kind": "owner_changed",
                 "resource": {"type": "lead", "id": "L-1"}} for i in range(2)]
    assert httpx.post(f"{server.url}/v1/outcomes", json=outcomes, headers=ingest, timeout=30).status_code == 200
    snapshot = {"taken_at": "2026-10-01T00:00:00Z", "source": "salesforce", "object": "Lead",
                "fields": [{"name": "Email", "type": "email"}]}
    assert httpx.post(f"{server.url}/v1/schema-snapshots", json=snapshot, headers=bearer(keys["admin"]),
                      timeout=30).json() == {"accepted": 1, "duplicates": 0}
    key_id = keys["ingest"].split("_")[1]
    wrong = httpx.post(f"{server.url}/v1/actions", json=batch, headers=bearer(f"aw_{key_id}_{'0' * 43}"), timeout=30)
    assert wrong.status_code == 401
    for _ in range(2):
        assert httpx.get(f"{server.url}/v1/agents/metrics-agent/guard", headers=ingest, timeout=30).json()["allowed"]

    after = scrape(url, bearer(keys["read"]))
    moved = {(endpoint, kind, outcome): events(after, endpoint, kind, outcome) - events(before, endpoint, kind, outcome)
             for endpoint, kind in (("/v1/actions", "actions"), ("/v1/outcomes", "outcomes"),
                                    ("/v1/schema-snapshots", "snapshots"))
             for outcome in ("accepted", "duplicate", "rejected")}
    assert moved == {
        ("/v1/actions", "actions", "accepted"): 3, ("/v1/actions", "actions", "duplicate"): 3,
        ("/v1/actions", "actions", "rejected"): 1,
        ("/v1/outcomes", "outcomes", "accepted"): 2, ("/v1/outcomes", "outcomes", "duplicate"): 0,
        ("/v1/outcomes", "outcomes", "rejected"): 0,
        ("/v1/schema-snapshots", "snapshots", "accepted"): 1, ("/v1/schema-snapshots", "snapshots", "duplicate"): 0,
        ("/v1/schema-snapshots", "snapshots", "rejected"): 0,
    }

    def refused(code: str, status: str) -> float:
        labels = {"endpoint": "/v1/actions", "status": status, "code": code}
        name = "agentwatch_http_refused_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert refused("invalid_events", "422") == 1
    assert refused("invalid_api_key", "401") == 1
    assert (value(after, "agentwatch_guard_decisions_total", decision="allowed")
            - value(before, "agentwatch_guard_decisions_total", decision="allowed")) == 2


def test_gauges_read_the_wal_the_store_and_the_checks(served: tuple[Server, dict[str, str], int]) -> None:
    """Once acknowledged events are flushed, the backlog is 0 and the part counts are the store's listing; a
    recorded run of the checks shows as its duration, finish time and failed checks."""
    server, keys, _ = served
    ingest = bearer(keys["ingest"])
    assert httpx.post(f"{server.url}/v1/actions", json=[action("g-1"), action("g-2")], headers=ingest,
                      timeout=30).status_code == 200
    stored_rows(server.home, "SELECT event_id FROM actions WHERE event_id LIKE 'g-%'", 2)
    finished = 1_790_000_000.0
    incidents = incident_store(server.home)
    incidents.record_run(as_of=_utc(finished - 60), seconds=2.5, failed=["volume.action_drop"],
                         finished_at=_utc(finished))
    incidents.save([incident(1, "critical", "open"), incident(2, "critical", "resolved"),
                    incident(3, "warning", "acknowledged"), incident(4, "warning", "acknowledged")], 1)
    deadline = time.monotonic() + 60
    while True:  # the WAL counts an event pending until its flush completes, a moment after the rows are visible
        samples = scrape(f"{server.url}/metrics", bearer(keys["read"]))
        if value(samples, "agentwatch_wal_pending_events") == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert value(samples, "agentwatch_wal_pending_events") == 0
    assert value(samples, "agentwatch_wal_flush_lag_seconds") == 0
    for dataset in ("actions", "outcomes", "spans", "schema_snapshots"):
        listed = sum(1 for p in visible_files(server.home, dataset) if p.name != SCHEMA_PART)
        assert value(samples, "agentwatch_store_parts", dataset=dataset) == listed, dataset
    assert value(samples, "agentwatch_store_parts", dataset="actions") >= 1
    assert value(samples, "agentwatch_check_run_duration_seconds") == 2.5
    assert value(samples, "agentwatch_check_run_last_finished_timestamp_seconds") == finished
    assert value(samples, "agentwatch_check_run_failed_checks") == 1
    unresolved = {(dict(labels)["severity"], dict(labels)["status"]): count for (name, labels), count in samples.items()
                  if name == "agentwatch_incidents_unresolved"}
    assert unresolved == {("info", "open"): 0, ("info", "acknowledged"): 0, ("warning", "open"): 0,
                          ("warning", "acknowledged"): 2, ("critical", "open"): 1, ("critical", "acknowledged"): 0}
    assert value(samples, "agentwatch_notifications_failed") == 0


def test_metrics_port_serves_without_a_key_on_loopback_only(served: tuple[Server, dict[str, str], int]) -> None:
    """`serve --metrics-port` answers /metrics with no key, with the same metric families as the keyed route, from a
    socket listening on 127.0.0.1 (not on every address)."""
    server, keys, metrics_port = served
    open_samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    keyed = scrape(f"{server.url}/metrics", bearer(keys["read"]))
    assert {name for name, _ in open_samples} == {name for name, _ in keyed}
    assert listening_addresses(metrics_port) == ["127.0.0.1"]


def listening_addresses(port: int) -> list[str]:
    """The local addresses of the IPv4 and IPv6 sockets listening on `port`, read from /proc/net."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(_address(address))
    return found


def _address(hex_address: str) -> str:
    if len(hex_address) == 8:  # IPv4, little-endian
        return ".".join(str(int(hex_address[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return hex_address  # IPv6: shown raw; only ever expected to be absent


def test_crm_pollers_show_from_the_hook_and_their_state_file(tmp_path: Path) -> None:
    """`record_poll`, the CRM pollers' hook, moves the poll counter by outcome; the pollers' state file gives each
    poller's last success, how long it has been failing and its next run."""
    home = Home.resolve(tmp_path / "home")
    registry = registry_of(create_app(home))
    failures = {"source": "hubspot", "object": "contacts", "outcome": "failure"}
    before = registry.get_sample_value("agentwatch_crm_polls_total", failures) or 0
    record_poll("hubspot", "contacts", ok=False)
    assert registry.get_sample_value("agentwatch_crm_polls_total", failures) == before + 1

    now = datetime.now(UTC)
    state = PollState(home)
    state.record(PollRecord("salesforce", "Lead", now - timedelta(minutes=30), True, True, None,
                            now + timedelta(minutes=15), 60))
    state.record(PollRecord("hubspot", "contacts", now - timedelta(minutes=20), False, False, "HTTP 500",
                            now + timedelta(minutes=5), 60))
    lead, contacts = {"source": "salesforce", "object": "Lead"}, {"source": "hubspot", "object": "contacts"}
    assert registry.get_sample_value("agentwatch_crm_poller_last_success_timestamp_seconds", lead) == pytest.approx(
        (now - timedelta(minutes=30)).timestamp())
    assert registry.get_sample_value("agentwatch_crm_poller_last_success_timestamp_seconds", contacts) is None
    assert registry.get_sample_value("agentwatch_crm_poller_failing_seconds", lead) == 0
    assert registry.get_sample_value("agentwatch_crm_poller_failing_seconds", contacts) == pytest.approx(1200, abs=60)
    assert registry.get_sample_value("agentwatch_crm_poller_next_run_timestamp_seconds", contacts) == pytest.approx(
        (now + timedelta(minutes=5)).timestamp())


def test_operations_doc_lists_exactly_the_metrics(tmp_path: Path) -> None:
    """docs/operations.md's metrics table has one row per metric of the registry, with its type, and no other."""
    registry = registry_of(create_app(Home.resolve(tmp_path / "home")))
    exposed = {}
    for family in registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        exposed[f"`{name}`"] = family.type
    rows = [row for row in table_rows(OPERATIONS.read_text(encoding="utf-8"))
            if row and re.fullmatch(r"`agentwatch_\w+`", row[0])]
    documented = {row[0]: row[1] for row in rows}
    assert len(rows) == len(documented), "a metric has two rows in docs/operations.md"
    assert documented == exposed


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def incident(number: int, severity: str, status: str) -> Incident:
    at = _utc(1_790_000_000.0)
    return Incident(id=f"INC-{number}", check="volume.action_drop", severity=severity, status=status, opened_at=at,
                    started_at=at, last_fired_at=at, resolved_at=at if status == "resolved" else None,
                    subject={"agent_id": f"agent-{number}"}, summary="a test incident", affected=1)
