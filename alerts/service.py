"""Alerting as one step the server repeats and the CLI runs after changing incidents: plan, pause, deliver."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.delivery import DeliveryReport, deliver_due
from agentwatch.alerts.guard import record_automatic_changes
from agentwatch.alerts.notify import plan_pass
from agentwatch.alerts.outbox import Outbox
from agentwatch.checks.engine import config_for, incident_store
from agentwatch.core.errors import AgentwatchError
from agentwatch.core.home import Home
from agentwatch.schemas.notifications import Notification

log = logging.getLogger(__name__)


@dataclass
class AlertPass:
    """What one pass did."""

    queued: list[Notification] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    guard_changes: int = 0


def alert_pass(home: Home, config_path: Path | None = None, now: datetime | None = None,
               deliver: bool = True) -> AlertPass:
    """Queue the notifications due now, record automatic agent pauses and resumes, and (with `deliver`) make one
    attempt at every notification due in the outbox."""
    now = now or datetime.now(UTC)
    config = config_for(home, config_path)
    result = AlertPass(queued=plan_pass(home, config.alerts, now))
    db = alerts_db(home)
    # Always, not only with guard.pause_on set: emptying it must record the resumes it causes.
    unresolved = incident_store(home).list(["open", "acknowledged"])
    result.guard_changes = len(record_automatic_changes(db, unresolved, config.guard, now))
    if deliver:
        result.delivery = deliver_due(Outbox(db), config.alerts)
    return result


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
