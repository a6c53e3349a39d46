"""The outcome event: rep feedback and business outcomes about a record an agent touched."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentwatch.schemas.common import Identifier, Resource, Timestamp

OUTCOME_KINDS = (
    "owner_changed",
    "requalified",
    "meeting_booked",
    "meeting_accepted",
    "meeting_cancelled",
    "replied",
    "opportunity_created",
    "closed_won",
    "closed_lost",
    "marked_spam",
)
OutcomeKind = Literal[
    "owner_changed",
    "requalified",
    "meeting_booked",
    "meeting_accepted",
    "meeting_cancelled",
    "replied",
    "opportunity_created",
    "closed_won",
    "closed_lost",
    "marked_spam",
]


class OutcomeEvent(BaseModel):
    """A rep correction or business outcome, format version 1. Unknown keys are kept."""

    model_config = ConfigDict(
        strict=True, extra="allow", title="agentwatch outcome event v1"
    )

    event_id: Identifier
    ts: Timestamp
    kind: OutcomeKind
    resource: Resource
    actor: str | None = Field(None, description="Who caused the outcome, e.g. the rep's id.")
    field: str | None = Field(None, description="The CRM field that changed, for corrections.")
    from_: Any = Field(None, alias="from", description="The value before (any JSON value).")
    to: Any = Field(None, description="The value after (any JSON value).")
    amount: float | None = Field(None, allow_inf_nan=False)
    corrects_event_id: str | None = Field(None, description="The action event this outcome corrects.")
