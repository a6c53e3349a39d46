"""The outcome event: rep feedback and business outcomes about a record an agent touched."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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
    "field_changed",
)
# A field_changed outcome is matched to the agent's write of the same field (outcome.write_reverted): without its
# `field` it matches nothing, so it is refused at ingest rather than stored unusable.
FIELD_NAMED_BY = "field_changed"
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
    "field_changed",
]


class OutcomeEvent(BaseModel):
    """A rep correction or business outcome, format version 1. Unknown keys are kept."""

    model_config = ConfigDict(
        strict=True, extra="allow", title="agentwatch outcome event v1",
        json_schema_extra={
            "if": {"properties": {"kind": {"const": FIELD_NAMED_BY}}, "required": ["kind"]},
            "then": {"properties": {"field": {"type": "string", "minLength": 1}}, "required": ["field"]},
        },
    )

    event_id: Identifier
    ts: Timestamp
    kind: OutcomeKind
    resource: Resource
    actor: str | None = Field(None, description="Who caused the outcome, e.g. the rep's id.")
    field: str | None = Field(
        None, validate_default=True,
        description="The CRM field that changed, for corrections; required, non-empty, for field_changed.",
    )
    from_: Any = Field(None, alias="from", description="The value before (any JSON value).")
    to: Any = Field(None, description="The value after (any JSON value).")
    amount: float | None = Field(None, allow_inf_nan=False)
    corrects_event_id: str | None = Field(None, description="The action event this outcome corrects.")

    @field_validator("field")
    @classmethod
    def _field_changed_names_its_field(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") == FIELD_NAMED_BY and not value:
            raise ValueError(f"a {FIELD_NAMED_BY} outcome must name the CRM field that changed (a non-empty string)")
        return value
