"""When alerting runs: every second in ``agentwatch serve``, and at once after a command changed incidents when no
server runs for the home (``check``, ``incident ack|resolve``, the dashboard's buttons). The rule lives here, once.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path

from agentwatch.alerts.service import AlertPass, run_alert_pass
from agentwatch.app.config import config_for
from agentwatch.core.errors import AgentwatchError
from agentwatch.core.home import Home
from agentwatch.core.locks import is_served

log = logging.getLogger(__name__)


def alert_pass(home: Home, config_path: Path | None = None, now: datetime | None = None,
               deliver: bool = True) -> AlertPass:
    """One alert pass with the config read now (so an edited config applies at the next pass)."""
    config = config_for(home, config_path)
    return run_alert_pass(home, config.alerts, config.guard, now, deliver)


def notify_unless_served(home: Home, config_path: Path | None = None) -> AlertPass | None:
    """Tell the destinations at once when no server runs for the home; None when one does.

    A running server sends within a second, with the config it was started with (which may not be the one the
    caller read), so the caller leaves it to the server rather than racing it.
    """
    if is_served(home):
        return None
    return alert_pass(home, config_path)


class AlertLoop:
    """A daemon thread in ``agentwatch serve`` running :func:`alert_pass` every `every_s` seconds, so incidents
    opened by the scheduler, acknowledged from the CLI, or left pending by an earlier process go out."""

    def __init__(self, home: Home, config_path: Path | None = None, every_s: float = 1.0) -> None:
        self.home = home
        self.config_path = config_path
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="agentwatch-alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        last_error = None
        while not self._stop.is_set():
            try:
                alert_pass(self.home, self.config_path)
                last_error = None
            except AgentwatchError as exc:
                if str(exc) != last_error:  # say it once, not every second
                    log.error("alerts did not run: %s", exc)
                last_error = str(exc)
            except Exception:
                log.exception("alerts did not run")
            self._stop.wait(self.every_s)
