"""The pydantic models of every agentwatch format, and their JSON Schema files (``schemas/json``)."""

from agentwatch.schemas.actions import ACTION_STATUSES, ActionError, ActionEvent, Approval
from agentwatch.schemas.common import FORMAT_VERSION, Resource, parse_rfc3339
from agentwatch.schemas.outcomes import OUTCOME_KINDS, OutcomeEvent
from agentwatch.schemas.snapshots import SchemaField, SchemaSnapshot
from agentwatch.schemas.spans import SPAN_KINDS, SPAN_STATUSES, SpanSummary

__all__ = [
    "ACTION_STATUSES",
    "FORMAT_VERSION",
    "OUTCOME_KINDS",
    "SPAN_KINDS",
    "SPAN_STATUSES",
    "ActionError",
    "ActionEvent",
    "Approval",
    "OutcomeEvent",
    "Resource",
    "SchemaField",
    "SchemaSnapshot",
    "SpanSummary",
    "parse_rfc3339",
]
