"""`agentwatch dashboard` runs Streamlit as a child process: stopping the command stops the dashboard."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from agentwatch.app.dashboard_launch import check_port_free, key_required
from agentwatch.core.home import Home
from tests.cli_support import main_error
from tests.test_serve_checks import free_port

START_TIMEOUT_S = 120.0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_command_stops_the_dashboard(home: Home, stop: signal.Signals) -> None:
    port = free_port()
    command = subprocess.Popen([sys.executable, "-c", "from agentwatch.app.cli import main; main()", "dashboard",
                                "--port", str(port), "--home", str(home.root)],
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
        check_port_free("127.0.0.1", port)  # and the port can be bound again
    finally:
        if command.poll() is None:
            command.kill()


def test_no_key_is_refused_off_loopback(home, capsys, monkeypatch) -> None:
    """`--no-key` with a non-loopback --host is one clear error (the dashboard would ask for a key anyway)."""
    error = main_error(capsys, monkeypatch, "dashboard", "--no-key", "--host", "0.0.0.0", "--port", free_port(),
                       "--home", home.root)
    assert "--no-key is honoured on loopback only" in error and "0.0.0.0" in error


@pytest.mark.parametrize("host, require_key, no_key, asks", [
    ("127.0.0.1", True, False, True), ("127.0.0.1", False, False, False), ("127.0.0.1", True, True, False),
    ("::1", False, False, False), ("localhost", True, True, False), ("127.8.9.10", False, False, False),
    ("0.0.0.0", False, True, True), ("192.168.1.2", False, False, True), ("::", False, True, True),
    (None, False, True, True), ("", False, True, True), ("example.com", False, True, True)])
def test_the_key_rule(host: str | None, require_key: bool, no_key: bool, asks: bool) -> None:
    """A key is asked off loopback always, on loopback unless the config or --no-key opts out."""
    assert key_required(host, require_key, no_key) is asks
