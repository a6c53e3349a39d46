"""Start the Streamlit dashboard as its own process (``agentwatch dashboard``, and ``agentwatch demo`` beside the API).

Streamlit runs its own server; agentwatch only hands it the home and the config through the environment, and
binds it to loopback unless told otherwise. The dashboard asks for an API key unless it listens on loopback AND
the operator opted out (``dashboard: {require_key: false}``, or ``--no-key``): :func:`key_required` is that rule,
applied by the dashboard itself to the address Streamlit really listens on.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from agentwatch.core.errors import ConfigError
from agentwatch.core.home import CONFIG_ENV, HOME_ENV, Home

# The dashboard is the floor above this one: it is run as Streamlit's script, never imported from here.
DASHBOARD_SCRIPT = "agentwatch.dashboards.app"
# Set to 1 by `--no-key` (and `agentwatch demo`): open without a key, honoured on loopback only.
NO_KEY_ENV = "AGENTWATCH_DASHBOARD_NO_KEY"


def is_loopback(host: str | None) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost); no host means every interface."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def key_required(host: str | None, require_key: bool, no_key: bool) -> bool:
    """Whether the dashboard asks for a key: always off loopback; on loopback unless the operator opted out."""
    return not (is_loopback(host) and (not require_key or no_key))


def dashboard_script() -> Path:
    """The file ``streamlit run`` executes, found without importing it (it imports Streamlit)."""
    spec = importlib.util.find_spec(DASHBOARD_SCRIPT)
    if spec is None or spec.origin is None:
        raise ConfigError(f"{DASHBOARD_SCRIPT} is not installed; reinstall agentwatch")
    return Path(spec.origin)


def dashboard_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line of the dashboard."""
    return [sys.executable, "-m", "streamlit", "run", str(dashboard_script()), "--server.address", host,
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--theme.base", "light", "--client.toolbarMode", "viewer"]


def check_port_free(host: str, port: int) -> None:
    """A ConfigError naming the address when something already listens there."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror}; is another server using "
                              "that port? pick another with --port") from None


def start_dashboard(home: Home, host: str = "127.0.0.1", port: int = 8501, config: Path | None = None,
                    quiet: bool = False, no_key: bool = False) -> subprocess.Popen:
    """The dashboard process, started; the caller waits for it or stops it. `no_key` opens it without a key
    (loopback only: elsewhere it is refused, as the dashboard would ask anyway)."""
    if no_key and not is_loopback(host):
        raise ConfigError(f"--no-key is honoured on loopback only: listening on {host}, the dashboard always asks "
                          "for an API key of scope read (`agentwatch keys create --scope read`)")
    check_port_free(host, port)
    if config is not None and not config.exists():
        raise ConfigError(f"--config {config}: no such file")
    env = {**os.environ, HOME_ENV: str(home.root)}
    env.pop(NO_KEY_ENV, None)  # only this call's choice counts, not one inherited from a parent's environment
    if no_key:
        env[NO_KEY_ENV] = "1"
    if config is not None:
        env[CONFIG_ENV] = str(config.resolve())
    output = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(dashboard_command(host, port), env=env, stdout=output, stderr=output)


def wait_for_dashboard(process: subprocess.Popen) -> None:
    """Wait until the dashboard process ends. Ctrl-C or SIGTERM to this process (a service manager stopping it)
    stops the dashboard too: Streamlit runs as a child, which would otherwise keep serving on its own."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        # Never one blocking wait: a signal the kernel hands to a library's native thread (DuckDB, Polars)
        # would not interrupt it, and its handler would only run when the dashboard exits by itself.
        while process.poll() is None:
            time.sleep(0.2)
    except KeyboardInterrupt:
        process.terminate()
        process.wait(timeout=30)
    finally:
        signal.signal(signal.SIGTERM, previous)
