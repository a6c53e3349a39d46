"""The notification: what the outbox holds and what a generic webhook receives, as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentwatch.schemas.incidents import Incident, IncidentSeverity, IncidentStatus

NotificationEvent = Literal["trigger", "update", "repeat", "acknowledge", "resolve", "test"]


class Notification(BaseModel):
    """One message about one group of incidents (a root and what it caused) to one destination."""

    model_config = ConfigDict(extra="forbid", title="agentwatch notification v1")
    version: Literal["1"] = "1"
    id: str = Field(description="Unique and stable: the idempotency key of this delivery (header "
                                "X-Agentwatch-Delivery); a receiver that sees it twice should ignore the second.")
    event: NotificationEvent = Field(description="trigger: the group opened; update: incidents joined it or its "
                                                 "severity rose; repeat: "
                                                 "still open after the repeat interval; acknowledge; resolve; test.")
    destination: str = Field(description="The destination's name in the config.")
    group_key: str = Field(description="The id of the group's root incident.")
    dedup_key: str = Field(description="Stable for the group's whole life (PagerDuty's dedup_key).")
    status: IncidentStatus = Field(description="The group's: resolved when all its incidents are, acknowledged when "
                                               "all open ones are.")
    severity: IncidentSeverity = Field(description="The highest severity in the group.")
    title: str = Field(description="One line: severity, check and subject of the root, and how many related.")
    incidents: list[Incident] = Field(description="The root incident first, then those it explains.")
    dashboard_url: str = Field(description="The root incident in the dashboard.")
    created_at: datetime = Field(description="When the notification was decided.")

    @property
    def root(self) -> Incident:
        return self.incidents[0]
