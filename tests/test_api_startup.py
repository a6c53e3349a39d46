"""A real server answers at once while it replays its WAL: /healthz says `starting` (503), ingest says retry."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.core.locks import WriteLock
from tests.live_support import stop
from tests.test_api import action, bearer, query
from tests.test_api_durability import START_TIMEOUT_S, free_port, start_server, wait_healthy

PENDING = 20_000


def first_answer(server: subprocess.Popen, port: int, log: Path) -> httpx.Response:
    """The first answer /healthz gives (it must come while the replay cannot finish)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"no answer within {START_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.mark.slow
def test_healthz_answers_starting_while_the_wal_replays(tmp_path: Path) -> None:
    """A WAL of 20,000 acknowledged events is replayed in the background: meanwhile /healthz answers 503
    `starting` and ingest answers 503 with Retry-After; afterwards every event is stored once."""
    home = Home.resolve(tmp_path / "home")
    token = KeyStore(home).create("ingest", name="startup test")[1]
    home.wal.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(action(n)) + "\n" for n in range(PENDING))
    (home.wal / "actions-000000000001.jsonl").write_text(lines)
    log, port = tmp_path / "server.log", free_port()
    # Holding the actions write lock keeps the replay from committing: the server is observably starting.
    with WriteLock(home.lock_file("actions")):
        server = start_server(home, port, log, flush_interval_s=0.2)
        try:
            health = first_answer(server, port, log)
            assert health.status_code == 503, health.text
            assert health.json()["status"] == "starting"
            refused = httpx.post(f"http://127.0.0.1:{port}/v1/actions", json=action(PENDING), headers=bearer(token),
                                 timeout=10)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "starting"
            assert int(refused.headers["retry-after"]) >= 1
        except BaseException:
            stop(server)
            raise
    try:
        wait_healthy(server, port, log)
        response = httpx.post(f"http://127.0.0.1:{port}/v1/actions", json=[action(1), action(PENDING)],
                              headers=bearer(token), timeout=10)
        assert response.json() == {"accepted": 1, "duplicates": 1}
        deadline = time.monotonic() + START_TIMEOUT_S
        while httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["wal_pending"]:
            assert time.monotonic() < deadline, "the WAL did not drain"
            time.sleep(0.05)
    finally:
        stop(server)
    assert query(home, "SELECT count(*), count(DISTINCT event_id) FROM actions") == [(PENDING + 1, PENDING + 1)]
