"""Start the Streamlit dashboard as its own process (``agentwatch dashboard``, and ``agentwatch demo`` beside the API).

Streamlit runs its own server; agentwatch only hands it the home and the config through the environment, and
binds it to loopback unless told otherwise.
"""

from __future__ import annotations

import importlib.util
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
                    quiet: bool = False) -> subprocess.Popen:
    """The dashboard process, started; the caller waits for it or stops it."""
    check_port_free(host, port)
    if config is not None and not config.exists():
        raise ConfigError(f"--config {config}: no such file")
    env = {**os.environ, HOME_ENV: str(home.root)}
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
