"""A real server in a subprocess: acknowledged events survive SIGKILL, and one home has one server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.store.reader import SCHEMA_PART, open_reader

BATCHES = 20
BATCH_SIZE = 500
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Home, port: int, log: Path, flush_interval_s: float = 3600.0) -> subprocess.Popen:
    code = (
        "from agentwatch.app.api.app import ApiSettings; from agentwatch.app.api.server import serve; "
        "from agentwatch.core.home import Home; "
        f"serve(Home.resolve({str(home.root)!r}), port={port}, "
        f"settings=ApiSettings(flush_interval_s={flush_interval_s}))"
    )
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server did not answer within {START_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.fixture
def token(home: Home) -> str:
    return KeyStore(home).create("ingest", name="durability test")[1]


def batch_body(number: int) -> bytes:
    events = [
        {
            "event_id": f"act-{number:03d}-{i:04d}",
            "ts": "2026-10-01T09:30:00Z",
            "agent_id": "lead-router",
            "action": "lead.assign_owner",
            "resource": {"type": "lead", "id": f"L-{number}-{i}"},
            "status": "ok",
            "decision": {"route_to": f"rep-{i % 17}"},
        }
        for i in range(BATCH_SIZE)
    ]
    return json.dumps(events).encode()


@pytest.mark.slow
def test_acknowledged_events_survive_sigkill(
    home: Home, token: str, tmp_path: Path, processes: list[subprocess.Popen]
) -> None:
    """Every event acknowledged before a SIGKILL is in the store exactly once after a restart on the same home."""
    log = tmp_path / "server.log"
    port = free_port()
    server = start_server(home, port, log)
    processes.append(server)
    wait_healthy(server, port, log)

    acknowledged: list[str] = []
    url = f"http://127.0.0.1:{port}/v1/actions"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def send(number: int) -> list[str]:
        body = batch_body(number)
        with httpx.Client(timeout=10.0) as client:
            response = client.post(url, content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": BATCH_SIZE, "duplicates": 0}
        return [event["event_id"] for event in json.loads(body)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        for ids in pool.map(send, range(BATCHES)):
            acknowledged.extend(ids)
    os.kill(server.pid, signal.SIGKILL)
    server.wait(timeout=10)

    # Nothing was flushed (the interval is an hour): the events exist only in the WAL.
    # (The zero-row typed part any reader writes, e.g. the scheduled checks, holds no events.)
    assert not [p for p in home.dataset_dir("actions").glob("**/part-*.parquet") if p.name != SCHEMA_PART]
    assert sum(p.read_bytes().count(b"\n") for p in home.wal.glob("actions-*.jsonl")) == len(acknowledged)

    restarted = start_server(home, port, log)
    processes.append(restarted)
    wait_healthy(restarted, port, log)  # replay happens before the server answers
    con = open_reader(home)
    try:
        rows = con.execute("SELECT event_id, count(*) FROM actions GROUP BY event_id").fetchall()
    finally:
        con.close()
    counts = dict(rows)
    assert len(acknowledged) == BATCHES * BATCH_SIZE
    assert set(counts) == set(acknowledged)
    assert set(counts.values()) == {1}
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["wal_pending"] == 0


@pytest.mark.slow
def test_sigterm_flushes_before_exit(home: Home, token: str, tmp_path: Path, processes: list[subprocess.Popen]) -> None:
    """A server stopped with SIGTERM flushes its WAL into the store before it exits."""
    log = tmp_path / "server.log"
    port = free_port()
    server = start_server(home, port, log)
    processes.append(server)
    wait_healthy(server, port, log)
    response = httpx.post(f"http://127.0.0.1:{port}/v1/actions", content=batch_body(1), timeout=10,
                          headers={"Authorization": f"Bearer {token}"})
    assert response.json() == {"accepted": BATCH_SIZE, "duplicates": 0}
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    assert list(home.wal.glob("*.jsonl")) == []
    con = open_reader(home)
    try:
        assert con.execute("SELECT count(*) FROM actions").fetchall() == [(BATCH_SIZE,)]
    finally:
        con.close()


@pytest.mark.slow
def test_second_server_on_the_same_home_refuses_to_start(
    home: Home, tmp_path: Path, processes: list[subprocess.Popen]
) -> None:
    """A second `serve` on a home that is being served exits at once, saying another server holds it."""
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    port = free_port()
    first = start_server(home, port, first_log)
    processes.append(first)
    wait_healthy(first, port, first_log)
    second = start_server(home, free_port(), second_log)
    processes.append(second)
    assert second.wait(timeout=START_TIMEOUT_S) != 0
    output = second_log.read_text()
    assert "already serving" in output and str(home.root) in output and f"pid {first.pid}" in output
    assert first.poll() is None  # the first one is unharmed
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
