"""What the routes would have sent over a past period: plan at every step of a backtest, in memory.

``agentwatch backtest --alerts print`` lists the notifications; ``--alerts send`` also delivers each one, at its
step, through the home's outbox to the configured destinations (to try routes and grouping on real history
against a test channel).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from agentwatch.alerts.config import AlertsConfig
from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.delivery import DeliveryReport, deliver_due
from agentwatch.alerts.outbox import Outbox, enqueue
from agentwatch.alerts.planner import PlanState, plan
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from agentwatch.schemas.notifications import Notification


class NotificationReplay:
    """An ``on_step`` hook for :func:`agentwatch.checks.engine.evaluate` collecting the notifications each step
    calls for, and with `send_to` delivering them as it goes.

    Silences are not applied: they belong to the present, not to the period replayed."""

    def __init__(self, alerts: AlertsConfig, send_to: Home | None = None, install_id: str | None = None) -> None:
        self.alerts = alerts
        # A fresh id per replay: a second replay of the same period numbers its incidents alike, and must not
        # collide with the first one's outbox rows or PagerDuty dedup keys.
        self.install_id = install_id or f"replay-{secrets.token_hex(3)}"
        self.state = PlanState()
        self.notifications: list[Notification] = []
        self.delivery = DeliveryReport()
        self._db = alerts_db(send_to) if send_to else None

    def __call__(self, at: datetime, incidents: list[Incident]) -> None:
        due = plan(incidents, self.state, self.alerts, [], at, self.install_id)
        self.notifications += due
        if self._db is None or not due:
            return
        with self._db.writing() as con:
            enqueue(con, due, at)
        report = deliver_due(Outbox(self._db), self.alerts)
        self.delivery.delivered += report.delivered
        self.delivery.retrying += report.retrying
        self.delivery.failed += report.failed
