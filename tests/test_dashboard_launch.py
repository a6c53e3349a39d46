"""`agentwatch dashboard` runs Streamlit as a child process: stopping the command stops the dashboard."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.test_serve_checks import free_port

START_TIMEOUT_S = 120.0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_command_stops_the_dashboard(tmp_path: Path, stop: signal.Signals) -> None:
    port = free_port()
    command = subprocess.Popen([sys.executable, "-c", "from agentwatch.app.cli import main; main()", "dashboard",
                                "--port", str(port), "--home", str(tmp_path / "home")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               # as from a terminal: a background job of a script inherits SIGINT ignored
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    url = f"http://127.0.0.1:{port}/_stcore/health"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(url, timeout=2).text == "ok":
                    break
            except httpx.TransportError:
                pass
            assert command.poll() is None, "agentwatch dashboard exited on its own"
            assert time.monotonic() < deadline, f"the dashboard did not answer within {START_TIMEOUT_S} s"
            time.sleep(0.3)
        command.send_signal(stop)
        assert command.wait(timeout=60) is not None
        with pytest.raises(httpx.TransportError):  # the Streamlit child is gone with it: nothing listens
            httpx.get(url, timeout=2)
    finally:
        if command.poll() is None:
            command.kill()
