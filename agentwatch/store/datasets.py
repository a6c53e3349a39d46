"""What each stored dataset holds: its input keys, their kinds, and the columns they land in.

One declarative table per dataset serves three readers: the SQL generator of the vectorized
validator (``agentwatch.collector.ingest.sql``), the Python row builder of the slow path, and the store's
column layout. The pydantic models in ``schemas`` remain the contract; a property test proves the
generated SQL and the models give the same verdict on every event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel

from agentwatch.schemas import (
    ACTION_STATUSES,
    OUTCOME_KINDS,
    SPAN_KINDS,
    SPAN_STATUSES,
    ActionEvent,
    OutcomeEvent,
    SchemaSnapshot,
    SpanSummary,
)
from agentwatch.schemas.common import ACTION_PATTERN, MAX_ID_LENGTH
from agentwatch.schemas.outcomes import FIELD_NAMED_BY

# Largest integer the store keeps exactly (BIGINT).
MAX_INT64 = 2**63 - 1


class Kind(StrEnum):
    """How a JSON value is checked and which column type it lands in."""

    ID = "id"  # non-empty string of at most MAX_ID_LENGTH characters
    NONEMPTY = "nonempty"  # non-empty string
    TEXT = "text"  # any string
    TIMESTAMP = "timestamp"  # RFC 3339 string with offset -> TIMESTAMPTZ (UTC)
    ENUM = "enum"  # one of `values`
    PATTERN = "pattern"  # a string matching `pattern`
    OBJECT = "object"  # a JSON object -> JSON column
    ANY = "any"  # any JSON value -> JSON column
    NUMBER = "number"  # int or float within bounds -> DOUBLE
    INTEGER = "integer"  # int within bounds -> BIGINT
    BOOLEAN = "boolean"
    STRUCT = "struct"  # a closed object whose `subfields` are flattened into columns


COLUMN_TYPES: dict[Kind, str] = {
    Kind.ID: "VARCHAR",
    Kind.NONEMPTY: "VARCHAR",
    Kind.TEXT: "VARCHAR",
    Kind.TIMESTAMP: "TIMESTAMPTZ",
    Kind.ENUM: "VARCHAR",
    Kind.PATTERN: "VARCHAR",
    Kind.OBJECT: "JSON",
    Kind.ANY: "JSON",
    Kind.NUMBER: "DOUBLE",
    Kind.INTEGER: "BIGINT",
    Kind.BOOLEAN: "BOOLEAN",
}


@dataclass(frozen=True)
class FieldSpec:
    """One key of an input event."""

    key: str
    kind: Kind
    required: bool = False
    column: str | None = None  # the stored column; defaults to `key`
    values: tuple[str, ...] = ()
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    default: int | float | None = None
    subfields: tuple[FieldSpec, ...] = ()
    # (key, value): when that key of the same event holds that value, this key must be a non-empty string.
    required_if: tuple[str, str] | None = None

    @property
    def column_name(self) -> str:
        return self.column or self.key

    def columns(self) -> list[tuple[str, str]]:
        """(column, DuckDB type) pairs this key lands in."""
        if self.kind is Kind.STRUCT:
            return [pair for sub in self.subfields for pair in sub.columns()]
        return [(self.column_name, COLUMN_TYPES[self.kind])]


# Columns every event dataset carries besides its fields.
EVENT_KEY_COLUMN = ("event_key", "UBIGINT")  # md5-based 64-bit key of event_id, for de-duplication
EXTRA_COLUMN = ("extra", "JSON")  # unknown top-level keys, kept as sent
INGESTED_AT_COLUMN = ("ingested_at", "TIMESTAMPTZ")
DAY_COLUMN = ("day", "DATE")  # UTC day of `ts`; the hive partition key


@dataclass(frozen=True)
class Dataset:
    """A stored event dataset."""

    name: str
    model: type[BaseModel]
    fields: tuple[FieldSpec, ...]
    time_key: str
    partitioned_by_day: bool = True
    keeps_extra: bool = True
    column_override: tuple[tuple[str, str], ...] | None = None
    known_keys: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "known_keys", frozenset(f.key for f in self.fields))

    def stored_columns(self) -> list[tuple[str, str]]:
        """Every column of a stored part file, in order (the day partition is in the path)."""
        if self.column_override is not None:
            return list(self.column_override)
        columns = [("event_id", "VARCHAR"), EVENT_KEY_COLUMN]
        columns += [pair for f in self.fields if f.key != "event_id" for pair in f.columns()]
        if self.keeps_extra:
            columns.append(EXTRA_COLUMN)
        columns.append(INGESTED_AT_COLUMN)
        return columns

    def table_columns(self) -> list[tuple[str, str]]:
        """The columns a reader sees: stored columns plus the partition column."""
        return self.stored_columns() + ([DAY_COLUMN] if self.partitioned_by_day else [])


def _resource() -> FieldSpec:
    return FieldSpec(
        "resource",
        Kind.STRUCT,
        required=True,
        subfields=(
            FieldSpec("type", Kind.ID, required=True, column="resource_type"),
            FieldSpec("id", Kind.ID, required=True, column="resource_id"),
        ),
    )


ACTIONS = Dataset(
    name="actions",
    model=ActionEvent,
    time_key="ts",
    fields=(
        FieldSpec("event_id", Kind.ID, required=True),
        FieldSpec("ts", Kind.TIMESTAMP, required=True),
        FieldSpec("agent_id", Kind.ID, required=True),
        FieldSpec("agent_version", Kind.TEXT),
        FieldSpec("action", Kind.PATTERN, required=True, pattern=ACTION_PATTERN),
        _resource(),
        FieldSpec("status", Kind.ENUM, required=True, values=ACTION_STATUSES),
        FieldSpec("inputs", Kind.OBJECT),
        FieldSpec("before", Kind.OBJECT),
        FieldSpec("after", Kind.OBJECT),
        FieldSpec("decision", Kind.OBJECT),
        FieldSpec("confidence", Kind.NUMBER, minimum=0, maximum=1),
        FieldSpec("rationale", Kind.TEXT),
        FieldSpec("authorized_by", Kind.TEXT),
        FieldSpec(
            "approval",
            Kind.STRUCT,
            subfields=(
                FieldSpec("approved_by", Kind.NONEMPTY, required=True),
                FieldSpec("approved_at", Kind.TIMESTAMP, required=True),
            ),
        ),
        FieldSpec("external", Kind.BOOLEAN),
        FieldSpec("records_affected", Kind.INTEGER, minimum=0, maximum=MAX_INT64, default=1),
        FieldSpec(
            "error",
            Kind.STRUCT,
            subfields=(
                FieldSpec("code", Kind.NONEMPTY, required=True, column="error_code"),
                FieldSpec("message", Kind.TEXT, column="error_message"),
            ),
        ),
        FieldSpec("latency_ms", Kind.NUMBER, minimum=0),
        FieldSpec("trace_id", Kind.TEXT),
        FieldSpec("span_id", Kind.TEXT),
    ),
)

OUTCOMES = Dataset(
    name="outcomes",
    model=OutcomeEvent,
    time_key="ts",
    fields=(
        FieldSpec("event_id", Kind.ID, required=True),
        FieldSpec("ts", Kind.TIMESTAMP, required=True),
        FieldSpec("kind", Kind.ENUM, required=True, values=OUTCOME_KINDS),
        _resource(),
        FieldSpec("actor", Kind.TEXT),
        FieldSpec("field", Kind.TEXT, required_if=("kind", FIELD_NAMED_BY)),
        FieldSpec("from", Kind.ANY, column="from_value"),
        FieldSpec("to", Kind.ANY, column="to_value"),
        FieldSpec("amount", Kind.NUMBER),
        FieldSpec("corrects_event_id", Kind.TEXT),
    ),
)

# Spans of OTLP exports that are not actions (model calls, agent runs, unmatched spans), written by the API from
# decoded protobuf (never sent as JSON by agents): counted per agent by `status` and the Agents page.
SPANS = Dataset(
    name="spans",
    model=SpanSummary,
    time_key="ts",
    keeps_extra=False,
    fields=(
        FieldSpec("event_id", Kind.ID, required=True),
        FieldSpec("ts", Kind.TIMESTAMP, required=True),
        FieldSpec("agent_id", Kind.ID, required=True),
        FieldSpec("kind", Kind.ENUM, required=True, values=SPAN_KINDS),
        FieldSpec("name", Kind.TEXT, required=True),
        FieldSpec("operation", Kind.TEXT),
        FieldSpec("provider", Kind.TEXT),
        FieldSpec("model", Kind.TEXT),
        FieldSpec("input_tokens", Kind.INTEGER, minimum=0, maximum=MAX_INT64),
        FieldSpec("output_tokens", Kind.INTEGER, minimum=0, maximum=MAX_INT64),
        FieldSpec("status", Kind.ENUM, required=True, values=SPAN_STATUSES),
        FieldSpec("error_type", Kind.TEXT),
        FieldSpec("latency_ms", Kind.NUMBER, minimum=0),
        FieldSpec("trace_id", Kind.TEXT),
        FieldSpec("span_id", Kind.TEXT),
        FieldSpec("service", Kind.TEXT),
    ),
)

# Schema snapshots are few and small: they are validated by pydantic alone and stored one row per
# snapshot, keyed by a content-independent id (source, object, taken_at) so re-sending is a no-op.
SNAPSHOT_FIELDS_TYPE = (
    "STRUCT(name VARCHAR, type VARCHAR, nullable BOOLEAN, label VARCHAR, "
    "picklist_values VARCHAR[], source_type VARCHAR)[]"
)
SCHEMA_SNAPSHOTS = Dataset(
    name="schema_snapshots",
    column_override=(
        ("event_id", "VARCHAR"),  # snapshot id: a hash of (source, object, taken_at)
        EVENT_KEY_COLUMN,
        ("taken_at", "TIMESTAMPTZ"),
        ("source", "VARCHAR"),
        ("object", "VARCHAR"),
        ("field_count", "INTEGER"),
        ("fields", SNAPSHOT_FIELDS_TYPE),
        INGESTED_AT_COLUMN,
    ),
    model=SchemaSnapshot,
    time_key="taken_at",
    partitioned_by_day=False,
    keeps_extra=False,
    fields=(),  # no SQL validator: pydantic checks each snapshot; the columns are column_override
)


DATASETS: dict[str, Dataset] = {d.name: d for d in (ACTIONS, OUTCOMES, SPANS, SCHEMA_SNAPSHOTS)}

__all__ = ["ACTIONS", "DATASETS", "MAX_ID_LENGTH", "OUTCOMES", "SCHEMA_SNAPSHOTS", "SPANS", "Dataset", "FieldSpec",
           "Kind"]
