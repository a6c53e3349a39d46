"""A full disk says so: one clear error, nothing acknowledged that is not stored, nothing lost once space returns.

The disk is real: a 4 MB tmpfs mounted over the home or its store folder, and filled. Mounting needs root; the
tests skip (saying why) where it is not permitted.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentwatch.collector.wal import pending_events, segment_files
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.store.reader import open_reader

DISK_SIZE = "4m"
DEADLINE_S = 120.0  # a server's start or flush on a busy 2-core machine: generous
CLI_TIMEOUT_S = 600


def _mount_small_disk(mount_point: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a small real disk needs `mount -t tmpfs`, which needs root (id -u is not 0)")
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"`mount -t tmpfs` is not permitted here: {done.stderr.strip()}")


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Mount points to unmount at the end (lazily: a server being stopped may still hold a file)."""
    mounted: list[Path] = []
    yield mounted
    for mount_point in reversed(mounted):
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)


def small_disk(mounts: list[Path], mount_point: Path) -> Path:
    _mount_small_disk(mount_point)
    mounts.append(mount_point)
    return mount_point


def fill(folder: Path) -> Path:
    """Fill the disk under `folder` to the last byte; returns the filler file (delete it to free the space)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        for size in (1 << 16, 1 << 12, 1 << 8, 1):
            while True:
                try:
                    out.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    return filler


def _events(prefix: str, n: int) -> list[dict[str, Any]]:
    return [{"event_id": f"{prefix}-{i:04d}", "ts": "2026-10-01T09:30:00Z", "agent_id": "lead-router",
             "action": "lead.route", "resource": {"type": "lead", "id": f"L-{i}"}, "status": "ok",
             "inputs": {"note": "x" * 200}} for i in range(n)]


def _stored_ids(home: Home) -> list[str]:
    con = open_reader(home)
    try:
        return [row[0] for row in con.execute("SELECT event_id FROM actions").fetchall()]
    finally:
        con.close()


def _leftovers(store: Path) -> list[Path]:
    """Files a failed write may have left in the store: staging folders' contents and temporary files."""
    return [p for p in store.rglob("*") if p.is_file() and (".staging" in p.parts or p.name.endswith(".tmp"))]


def _agentwatch(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from agentwatch.app.cli import main; main()", *args,
                           "--home", str(home.root)], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                          env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"})


def test_file_ingest_on_a_full_disk_says_so_in_one_line(tmp_path: Path, mounts: list[Path]) -> None:
    home = Home.resolve(tmp_path / "home")
    small_disk(mounts, home.store)
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in _events("file", 2000)))
    filler = fill(home.store)

    done = _agentwatch(home, "ingest", "actions", str(source))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "no space left" in done.stderr and str(home.root) in done.stderr
    assert _leftovers(home.store) == []

    filler.unlink()
    again = _agentwatch(home, "ingest", "actions", str(source))
    assert again.returncode == 0, again.stderr
    assert sorted(_stored_ids(home)) == [f"file-{i:04d}" for i in range(2000)]


# -- a real server --------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(what: str, condition: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {DEADLINE_S} s:\n{log.read_text()[-5000:]}")


class Server:
    """`agentwatch serve` on a free port, flushing its WAL every 0.2 s, without scheduled checks."""

    def __init__(self, home: Home, log: Path) -> None:
        self.home, self.log, self.port = home, log, _free_port()
        self.token = KeyStore(home).create("ingest", name="disk full test")[1]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from agentwatch.app.cli import main; main()", "serve", "--port",
                 str(self.port), "--flush-interval", "0.2", "--check-every", "0", "--home", str(home.root)],
                stdout=out, stderr=subprocess.STDOUT)
        _wait_for("the server's start", self._answers, log)

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            return self.health()["status"] != "starting"
        except httpx.TransportError:
            return False

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=30).json()
        return body

    def send(self, events: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{self.port}/v1/actions", json=events, timeout=60,
                          headers={"Authorization": f"Bearer {self.token}"})

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=60)
        return self.log.read_text()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=60)


def test_flushing_into_a_full_store_fails_quietly_and_resumes_by_itself(tmp_path: Path, mounts: list[Path],
                                                                         servers: list[Server]) -> None:
    """The WAL (on another disk) keeps acknowledging; the flush fails with one log line, then resumes."""
    home = Home.resolve(tmp_path / "home")
    small_disk(mounts, home.store)
    server = Server(home, tmp_path / "server.log")
    servers.append(server)
    filler = fill(home.store)

    sent: list[str] = []

    def send(prefix: str, n: int) -> None:
        batch = _events(prefix, n)
        assert server.send(batch).status_code == 200
        sent.extend(e["event_id"] for e in batch)

    send("first", 200)
    _wait_for("the flush to fail", lambda: "no space left" in server.log.read_text(), server.log)
    # Each flush attempt closes the open segment, and the next batch opens a new one: with 4 segments, an attempt
    # after the first failure has failed in full (it closed the 3rd, the one after it closed the 4th).
    deadline = time.monotonic() + DEADLINE_S
    while len(segment_files(home)) < 4:
        assert time.monotonic() < deadline, server.log.read_text()
        send(f"more{len(sent)}", 20)
        time.sleep(0.1)
    assert server.log.read_text().count("no space left") == 1  # one line for the episode, not one per retry
    assert server.health()["status"] == "failing"

    filler.unlink()
    _wait_for("the flushes to resume", lambda: pending_events(home) == 0, server.log)
    assert server.health()["status"] == "ok"
    text = server.stop()
    assert "Traceback" not in text, text
    assert "resumed" in text
    assert sorted(_stored_ids(home)) == sorted(sent)
    assert _leftovers(home.store) == []


def test_a_full_disk_acknowledges_nothing_and_loses_nothing(tmp_path: Path, mounts: list[Path],
                                                            servers: list[Server]) -> None:
    """With the whole home full, the WAL refuses the batch; once space returns, the same batch is stored once."""
    home = Home.resolve(small_disk(mounts, tmp_path / "home"))
    server = Server(home, tmp_path / "server.log")
    servers.append(server)
    first = _events("before", 100)
    assert server.send(first).status_code == 200
    _wait_for("the first flush", lambda: pending_events(home) == 0 and len(_stored_ids(home)) == 100, server.log)
    filler = fill(home.root)

    refused = _events("during", 100)
    answer = server.send(refused)
    assert answer.status_code == 507, answer.text  # the API's wording of StoreFullError

    filler.unlink()
    assert server.send(refused).status_code == 200
    _wait_for("the flush after space returned", lambda: pending_events(home) == 0, server.log)
    text = server.stop()
    assert "Traceback" not in text, text
    assert sorted(_stored_ids(home)) == sorted(e["event_id"] for e in first + refused)
