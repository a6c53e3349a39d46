"""Alerting as one step the server repeats and the CLI runs after changing incidents: plan, pause, deliver.

``agentwatch.app.alerting`` reads the config, runs this step every second in ``serve``, and once after a command
changed incidents when no server runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agentwatch.alerts.config import AlertsConfig, GuardConfig
from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.delivery import DeliveryReport, deliver_due
from agentwatch.alerts.guard import record_automatic_changes
from agentwatch.alerts.notify import plan_pass
from agentwatch.alerts.outbox import Outbox
from agentwatch.checks.engine import incident_store
from agentwatch.core.home import Home
from agentwatch.schemas.notifications import Notification

log = logging.getLogger(__name__)


@dataclass
class AlertPass:
    """What one pass did."""

    queued: list[Notification] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    guard_changes: int = 0


def run_alert_pass(home: Home, alerts: AlertsConfig, guard: GuardConfig, now: datetime | None = None,
                   deliver: bool = True) -> AlertPass:
    """Queue the notifications due now, record automatic agent pauses and resumes, and (with `deliver`) make one
    attempt at every notification due in the outbox."""
    now = now or datetime.now(UTC)
    result = AlertPass(queued=plan_pass(home, alerts, now))
    db = alerts_db(home)
    # Always, not only with guard.pause_on set: emptying it must record the resumes it causes.
    store = incident_store(home)
    unresolved = store.list(["open", "acknowledged"])
    result.guard_changes = len(record_automatic_changes(db, unresolved, guard, now, fetch=store.get_many))
    if deliver:
        result.delivery = deliver_due(Outbox(db), alerts)
    return result
