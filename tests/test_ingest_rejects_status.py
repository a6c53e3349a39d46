"""`status` and `GET /v1/status` count rejects cheaply, whatever the rejects folder holds (issue 12, finding 2)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.store.datasets import ACTIONS, OUTCOMES
from tests.cli_support import run_cli

DEADLINE_S = 90.0


def _bad_lines(count: int, raw_chars: int) -> bytes:
    """Events refused for a missing agent_id, each carrying `raw_chars` of rationale (kept in the reject file)."""
    lines = []
    for n in range(count):
        event = {"event_id": f"bad-{n}", "ts": "2026-10-18T10:00:00Z", "action": "lead.route",
                 "resource": {"type": "lead", "id": f"L-{n}"}, "status": "ok", "rationale": "r" * raw_chars}
        lines.append(json.dumps(event))
    return ("\n".join(lines) + "\n").encode()


def _fill_rejects(home: Home, tmp_path: Path) -> dict[str, int]:
    """Eight ingest runs that each leave a reject file, two of them large; returns the expected counts."""
    expected = {"actions": 0, "outcomes": 0}
    for run in range(8):
        dataset = ACTIONS if run % 2 == 0 else OUTCOMES
        count, size = (2_000, 20_000) if run in (2, 5) else (50, 500)  # 40 MB of rejects in the large ones
        path = tmp_path / f"run-{run}.jsonl"
        path.write_bytes(_bad_lines(count, size))
        report = ingest_files(home, dataset, [path])
        assert report.rejected == count
        expected[dataset.name] += count
        path.unlink()
    assert len(list(home.rejects.glob("*.jsonl"))) == 8
    return expected


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_status_counts_many_and_large_reject_files(tmp_path: Path) -> None:
    """Eight reject files (two of 40 MB): the CLI's `status` and a real server's GET /v1/status both answer
    with the right counts (they crashed, and answered 500, from five files on)."""
    home = Home.resolve(tmp_path / "home")
    expected = _fill_rejects(home, tmp_path)

    code, stdout, stderr = run_cli("status", "--json", "--home", home.root)
    assert code == 0, stderr
    assert json.loads(stdout)["rejects"] == expected

    _, token = KeyStore(home).create("read", name="status test")
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "agentwatch.app.cli", "serve", "--home", str(home.root), "--port", str(port),
             "--check-every", "0"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DEADLINE_S
        answer = None
        while answer is None:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no answer within {DEADLINE_S} s:\n{log.read_text()}"
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=DEADLINE_S,
                                   headers={"Authorization": f"Bearer {token}"})
            except httpx.TransportError:
                time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        assert answer.json()["rejects"] == expected
    finally:
        server.terminate()
        try:
            server.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_two_runs_in_one_second_keep_separate_counts(tmp_path: Path) -> None:
    """Two ingest runs of one process within the same second each get their own reject file and count (they
    shared one file, and the second run's count replaced the first's: status under-counted)."""
    from agentwatch.collector.ingest.rejects import FieldError, Rejection, RejectLog, reject_counts

    home = Home.resolve(tmp_path / "home")
    home.rejects.mkdir(parents=True, exist_ok=True)
    first, second = RejectLog(home.rejects, "actions"), RejectLog(home.rejects, "actions")  # microseconds apart
    problem = (FieldError("agent_id", "Field required"),)
    first.write([Rejection("a.jsonl", "line", n, None, problem, "{}") for n in range(3)])
    second.write([Rejection("b.jsonl", "line", n, None, problem, "{}") for n in range(4)])
    assert first.path != second.path
    assert reject_counts(home.rejects) == {"actions": 7}
