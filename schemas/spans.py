"""The span summary: one OpenTelemetry span that is not an action (a model call, an agent run, anything else).

``POST /v1/traces`` turns tool spans into action events and every other span into one of these, so nothing an
exporter sent is silently dropped: ``status`` and the Agents page count them per agent (model calls, tokens,
errors, spans no rule matched). docs/otlp.md says which span lands in which kind.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentwatch.schemas.common import Identifier, Timestamp

SPAN_KINDS = ("model", "agent", "other", "unmatched")
SpanKind = Literal["model", "agent", "other", "unmatched"]
SPAN_STATUSES = ("ok", "error")
SpanStatus = Literal["ok", "error"]


class SpanSummary(BaseModel):
    """A span that is not an action, format version 1 (written by agentwatch from OTLP, not sent by agents)."""

    model_config = ConfigDict(strict=True, extra="forbid", title="agentwatch span summary v1")

    event_id: Identifier = Field(description="otel-<trace_id>-<span_id>: a re-sent export is a duplicate.")
    ts: Timestamp = Field(description="When the span started.")
    agent_id: Identifier = Field(description="The agent the span belongs to (resolved as for actions).")
    kind: SpanKind = Field(description="model: an LLM or embeddings call; agent: an agent or chain run; other: a "
                                       "GenAI or OpenInference span of another kind (retrieval, guardrail, ...); "
                                       "unmatched: no rule recognised it.")
    name: str = Field(description="The span's name.")
    operation: str | None = Field(None, description="gen_ai.operation.name, or the OpenInference span kind.")
    provider: str | None = Field(None, description="gen_ai.provider.name (gen_ai.system in older conventions).")
    model: str | None = Field(None, description="The response model, else the requested one.")
    input_tokens: int | None = Field(None, ge=0)
    output_tokens: int | None = Field(None, ge=0)
    status: SpanStatus
    error_type: str | None = Field(None, description="error.type, or the first exception's type.")
    latency_ms: float | None = Field(None, ge=0, allow_inf_nan=False)
    trace_id: str | None = None
    span_id: str | None = None
    service: str | None = Field(None, description="The resource's service.name.")
