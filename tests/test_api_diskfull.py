"""A full disk under the WAL: 507 insufficient_storage, one log line per episode, nothing lost, and back to 200.

The WAL folder of a real server's home is a 1 MiB tmpfs, filled up by the test. Mounting needs root (or
CAP_SYS_ADMIN); elsewhere the test is skipped saying so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from tests.live_support import stop
from tests.test_api import action, bearer, query
from tests.test_api_durability import free_port, start_server, wait_healthy


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at tmp_path/home/wal."""
    mount_point = tmp_path / "home" / "wal"
    mount_point.mkdir(parents=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root or CAP_SYS_ADMIN): "
                    f"{result.stderr.strip() or result.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its file system is full."""
    filler = folder / "filler.bin"
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(block)
    with pytest.raises(OSError) as full:
        (folder / "probe").write_bytes(block)
    assert full.value.errno == errno.ENOSPC
    return filler


@pytest.mark.slow
def test_a_full_disk_answers_507_logs_once_and_recovers(small_disk: Path, tmp_path: Path) -> None:
    home = Home.resolve(tmp_path / "home")
    token = KeyStore(home).create("ingest", name="disk full test")[1]
    log, port = tmp_path / "server.log", free_port()
    server = start_server(home, port, log, flush_interval_s=0.2)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(server, port, log)
        filler = fill(small_disk)
        batch = [action(n, rationale="x" * 200) for n in range(100)]
        for _ in range(5):
            response = httpx.post(f"{url}/v1/actions", json=batch, headers=bearer(token), timeout=30)
            assert response.status_code == 507, response.text
            error = response.json()["error"]
            assert error["code"] == "insufficient_storage"
            assert "nothing of this batch was acknowledged" in error["message"] and str(home.root) in error["message"]
        health = httpx.get(f"{url}/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "failing"
        assert [r["code"] for r in health.json()["reasons"]] == ["disk_full"]

        os.unlink(filler)
        # Health sees the room by itself: a load balancer sends nothing to a failing server, so recovery must
        # not wait for a write.
        recovered = httpx.get(f"{url}/healthz", timeout=10)
        assert recovered.status_code == 200 and recovered.json()["status"] == "ok", recovered.text
        response = httpx.post(f"{url}/v1/actions", json=batch, headers=bearer(token), timeout=30)
        assert response.json() == {"accepted": 100, "duplicates": 0}
        deadline_health = httpx.get(f"{url}/healthz", timeout=10).json()
        assert deadline_health["status"] == "ok", deadline_health
    finally:
        stop(server)
    text = log.read_text()
    assert "Traceback" not in text
    assert text.count("no space left") == 1, text  # one line for the episode
    assert text.count("space is available again") == 1, text
    restarted = start_server(home, port, log, flush_interval_s=0.2)
    try:
        wait_healthy(restarted, port, log)
    finally:
        stop(restarted)
    assert query(home, "SELECT count(*), count(DISTINCT event_id) FROM actions") == [(100, 100)]
