"""What the routes would have sent over a past period: plan at every step of a backtest, in memory."""

from __future__ import annotations

from datetime import datetime

from alerts.config import AlertsConfig
from alerts.notification import Notification
from alerts.planner import PlanState, plan
from schemas.incidents import Incident


class NotificationReplay:
    """An ``on_step`` hook for :func:`checks.engine.evaluate` collecting the notifications each step calls for.

    Silences are not applied: they belong to the present, not to the period replayed."""

    def __init__(self, alerts: AlertsConfig, install_id: str = "replay") -> None:
        self.alerts = alerts
        self.install_id = install_id
        self.state = PlanState()
        self.notifications: list[Notification] = []

    def __call__(self, at: datetime, incidents: list[Incident]) -> None:
        self.notifications += plan(incidents, self.state, self.alerts, [], at, self.install_id)
