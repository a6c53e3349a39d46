"""The action event: one thing an agent did (or tried to do) to one CRM record."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from agentwatch.schemas.common import ActionName, Identifier, JsonObject, NonEmptyStr, Resource, Timestamp

ACTION_STATUSES = ("ok", "error", "skipped", "pending_approval")
ActionStatus = Literal["ok", "error", "skipped", "pending_approval"]


def _null_means_one(value: Any) -> Any:
    return 1 if value is None else value


class Approval(BaseModel):
    """Who approved an action that needed a human's approval, and when."""

    model_config = ConfigDict(strict=True, extra="forbid")

    approved_by: NonEmptyStr
    approved_at: Timestamp


class ActionError(BaseModel):
    """Why an action failed."""

    model_config = ConfigDict(strict=True, extra="forbid")

    code: NonEmptyStr = Field(description="Machine-readable error code, e.g. 'timeout'.")
    message: str | None = None


class ActionEvent(BaseModel):
    """An agent action, format version 1. Unknown top-level keys are kept."""

    model_config = ConfigDict(strict=True, extra="allow", title="agentwatch action event v1")

    event_id: Identifier = Field(description="Unique id; sending the same id again is a no-op.")
    ts: Timestamp = Field(description="When the action happened (RFC 3339 with offset).")
    agent_id: Identifier
    action: ActionName = Field(description="Dotted verb, e.g. lead.assign_owner, email.send.")
    resource: Resource
    status: ActionStatus
    agent_version: str | None = None
    inputs: JsonObject | None = Field(None, description="CRM fields the agent read; values may be null.")
    before: JsonObject | None = Field(None, description="The record's fields before a write.")
    after: JsonObject | None = Field(None, description="The record's fields after a write.")
    decision: JsonObject | None = Field(None, description="Model outputs: route_to, qualified, score, ...")
    confidence: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    rationale: str | None = None
    authorized_by: str | None = None
    approval: Approval | None = None
    external: bool | None = Field(None, description="True when the action reached a person outside.")
    records_affected: Annotated[
        int,
        BeforeValidator(_null_means_one),
        WithJsonSchema({"type": ["integer", "null"], "minimum": 0, "maximum": 2**63 - 1, "default": 1}),
    ] = Field(
        1, ge=0, le=2**63 - 1, description="How many records the action touched; null or absent means 1."
    )
    error: ActionError | None = None
    latency_ms: float | None = Field(None, ge=0, allow_inf_nan=False)
    trace_id: str | None = None
    span_id: str | None = None
