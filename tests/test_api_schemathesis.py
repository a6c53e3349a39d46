"""Schemathesis over the API's own OpenAPI document, against a real `agentwatch serve`: no request it can
generate from the schema (valid or not, authenticated or not) may make the server answer 5xx.

Bounded: a fixed seed, a fixed number of examples per operation and a time budget, so CI stays short.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home

START_TIMEOUT_S = 120  # a server starting on a busy 2-core machine
RUN_TIMEOUT_S = 600
MAX_EXAMPLES = 10  # per operation: enough to reach every refusal path, few enough for CI
SEED = 20261206
PERMISSIVE_LIMITS = "limits:\n  requests_per_second: 100000\n  auth_failures_per_minute: 100000\n"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed beside {sys.executable}: run make test, which installs the dev extras"
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, str, Path]]:
    """A real server on a fresh home (rate limits lifted: schemathesis sends hundreds of requests a second)."""
    home = Home.resolve(tmp_path / "home")
    home.root.mkdir(parents=True, exist_ok=True)
    home.config_file.write_text(PERMISSIVE_LIMITS)
    _, token = KeyStore(home).create("admin", "schemathesis")
    port = _free_port()
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
    with open(log, "wb") as out:
        server = subprocess.Popen([_bin("agentwatch"), "serve", "--home", str(home.root), "--port", str(port),
                                   "--check-every", "0"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert server.poll() is None, f"the server exited: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no healthy server in {START_TIMEOUT_S} s: {log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield port, token, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_no_request_generated_from_the_openapi_document_gets_a_server_error(
        served: tuple[int, str, Path], tmp_path: Path) -> None:
    port, token, log = served
    done = subprocess.run(
        [_bin("schemathesis"), "run", f"http://127.0.0.1:{port}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
         "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "60",
         "--max-time", "50", "--header", f"Authorization: Bearer {token}", "--no-color",
         "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, f"schemathesis found failures:\n{report}\nserver log:\n{log.read_text()[-3000:]}"
    assert "Server error" not in done.stdout, report
    # It really exercised the API: the summary counts the operations and the cases it sent.
    assert "operations" in done.stdout.lower() or "operation" in done.stdout.lower(), report
