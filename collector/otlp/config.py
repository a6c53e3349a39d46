"""The ``otlp:`` section of ``agentwatch.yaml``: what the conventions lack, said per tool.

A tool's call arguments and result often name the CRM record and the fields it wrote; a mapping turns them
into the action's fields::

    otlp:
      tools:
        update_crm_record:
          action: crm.update_field
          resource: {type: args.object, id: args.record_id}
          after: args.fields

A value is a path (``args``, ``args.a.b``, ``result.x``, ``attributes.<span attribute key>``) or, anything else,
a literal (``type: lead``, ``external: true``). docs/otlp.md has the whole table.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentwatch.schemas.common import ACTION_PATTERN

PATH_ROOTS = ("args", "result", "attributes")
Value = str | int | float | bool


class ResourceMapping(BaseModel):
    """Where the CRM record of a tool's action comes from."""

    model_config = ConfigDict(extra="forbid")
    type: Value = Field(description="The record type: a literal such as `lead`, or a path such as `args.object`.")
    id: Value = Field(description="The record id: a path such as `args.record_id` (or a literal).")


class ToolMapping(BaseModel):
    """How one tool's spans become action events; each key is a path or a literal."""

    model_config = ConfigDict(extra="forbid")
    action: str | None = Field(None, description="The action name (default `tool.<tool name>`).")
    agent_id: Value | None = Field(None, description="Overrides the agent resolved from the trace.")
    resource: ResourceMapping | None = Field(None, description="The CRM record (default: the tool call itself).")
    inputs: Value | None = Field(None, description="The CRM fields the agent read (default: the call arguments).")
    before: Value | None = Field(None, description="The record's fields before the write.")
    after: Value | None = Field(None, description="The record's fields after the write.")
    decision: Value | None = Field(None, description="The model's outputs.")
    confidence: Value | None = None
    rationale: Value | None = None
    authorized_by: Value | None = None
    external: Value | None = Field(None, description="True when the action reached a person outside.")
    records_affected: Value | None = None

    @field_validator("action")
    @classmethod
    def _dotted(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(ACTION_PATTERN, value):
            raise ValueError(f"{value!r} is not a dotted verb such as crm.update_field")
        return value

    def fields(self) -> dict[str, Any]:
        """The mapped keys (action and resource apart), as given."""
        return {k: v for k, v in self.model_dump(exclude={"action", "resource"}).items() if v is not None}


class OtlpConfig(BaseModel):
    """The ``otlp:`` section: per-tool mappings, and how far ahead a span may start."""

    model_config = ConfigDict(extra="forbid")
    tools: dict[str, ToolMapping] = Field(default_factory=dict, description="Tool name (gen_ai.tool.name or "
                                          "tool.name) -> how its spans become actions.")
    max_future_minutes: int = Field(60, ge=0, description="A span starting further ahead of the server's clock is "
                                    "rejected: a clock that wrong would put the action on a day no check reads yet.")
