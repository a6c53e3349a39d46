"""schema.field_renamed, field_removed, field_added, type_changed, picklist_changed.

Each diffs consecutive snapshots of every CRM object (see checks/schema_diff.py). How loud a change
is depends on whether agents read the field (seen as a key of their action ``inputs``, by name or
through ``fields:``): breaking a field an agent reads is critical; a change nobody reads is info.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

import numpy as np
import polars as pl
from agentwatch.checks.aggregates import key_counts
from agentwatch.checks.base import Check, CheckOptions, Finding, Step, register
from agentwatch.checks.crm_fields import key_reads_field
from agentwatch.checks.data import BUCKET, EvalData
from agentwatch.checks.schema_diff import RENAME_MIN_SIMILARITY, SchemaChange, schema_changes
from pydantic import Field

from agentwatch.core.severity import Severity

KIND_WORDS = {
    "renamed": "was renamed",
    "removed": "was removed",
    "added": "was added",
    "type_changed": "changed type",
    "picklist_changed": "changed its picklist values",
}


class SchemaOptions(CheckOptions):
    report_hours: float = Field(
        24, gt=0, description="Keep reporting a change this long after the snapshot that shows it, so it is seen "
        "by whoever looks the next working day; longer while agents still read a removed or renamed field."
    )
    read_window_days: float = Field(
        7, gt=0, description="An agent reads a field if its inputs carried the key in this many days before the "
        "change: a week covers every weekday's workflow."
    )
    still_read_hours: float = Field(
        24, gt=0, description="A renamed or removed field still counts as read if an agent's inputs carried its old "
        "name this recently; a day spans nights and quiet hours, so the incident does not flap overnight."
    )
    rename_min_similarity: float = Field(
        RENAME_MIN_SIMILARITY, ge=0, le=1, description="Pair a removed and an added field as a rename above this "
        "similarity of name, label, type and picklist values (0..1); 0.6 needs more than a shared type."
    )


class _Reads:
    """When each agent's inputs carried each key: per key, per agent, the sorted bucket times."""

    def __init__(self, counts: pl.DataFrame) -> None:
        present = counts.filter((pl.col("scope") == "inputs") & (pl.col("present") > 0))
        present = present.select("agent_id", "key", pl.col("bucket").dt.epoch("s").alias("t"),
                                 (pl.col("present") - pl.col("nonnull")).alias("nulls"), "nonnull")
        self.times: dict[str, dict[str, np.ndarray]] = {}
        self.last_value: dict[str, dict[str, np.ndarray]] = {}
        for (agent, key), group in present.group_by("agent_id", "key"):
            group = group.sort("t")
            self.times.setdefault(key, {})[agent] = group["t"].to_numpy()
            self.last_value.setdefault(key, {})[agent] = group.filter(pl.col("nonnull") > 0)["t"].to_numpy()

    def read_keys(self) -> list[str]:
        return list(self.times)

    def agents(self, key: str, start: datetime, end: datetime) -> list[str]:
        """Agents whose inputs carried `key` in (start, end]."""
        lo, hi = start.timestamp(), end.timestamp()
        found = []
        for agent, times in self.times.get(key, {}).items():
            i = np.searchsorted(times, lo, side="right")
            if i < times.size and times[i] <= hi:
                found.append(agent)
        return sorted(found)

    def last_non_null(self, key: str, before: datetime) -> float | None:
        """The latest bucket start (epoch s) before `before` in which some agent read a value of `key`."""
        best = None
        for times in self.last_value.get(key, {}).values():
            i = np.searchsorted(times, before.timestamp(), side="left")
            if i > 0:
                best = max(best or 0, float(times[i - 1]))
        return best


class SchemaChangeCheck(Check[SchemaOptions]):
    """Shared logic of the five schema checks; each subclass names one kind of change."""

    family: ClassVar[str] = "schema"
    kind: ClassVar[str]
    Options = SchemaOptions
    history = timedelta(days=8)
    breaks_readers: ClassVar[bool] = True  # a reader of the field is hurt (critical) by this kind of change

    def prepare(self, data: EvalData) -> None:
        options = self.options
        self.reads = data.shared("schema_reads", lambda: _Reads(key_counts(data)))
        # Per change, once: the input keys naming the field, and the agents that read them up to the snapshot
        # showing the change (an agent still sending the key after the change, reading nulls, read the field
        # as much as one that read values before it).
        self.changes = []
        for change in schema_changes(data, options.rename_min_similarity):
            if change.kind != self.kind:
                continue
            keys = [k for k in self.reads.read_keys() if key_reads_field(k, change.object, change.field, self.config)]
            read_from = change.previous_at - timedelta(days=options.read_window_days)
            readers = sorted({a for k in keys for a in self.reads.agents(k, read_from, change.taken_at)})
            self.changes.append((change, keys, readers))

    def evaluate(self, step: Step) -> list[Finding]:
        options = self.options
        findings = []
        for change, keys, readers in self.changes:
            if change.taken_at > step.at:
                continue
            age = step.at - change.taken_at
            recent = step.at - timedelta(hours=options.still_read_hours)
            still_read = sorted({a for k in keys for a in self.reads.agents(k, recent, step.at)})
            if age > timedelta(hours=options.report_hours) and not (self.breaks_readers and still_read):
                continue
            findings.append(self._finding(change, keys, readers, still_read))
        return findings

    def _finding(self, change: SchemaChange, keys: list[str], readers: list[str], still_read: list[str]) -> Finding:
        severity = Severity.info
        if readers:
            severity = Severity.critical if self.breaks_readers else Severity.warning
        started = change.taken_at
        last_value = max((v for k in keys if (v := self.reads.last_non_null(k, change.taken_at)) is not None),
                         default=None)
        if self.breaks_readers and last_value is not None:
            # The change happened after the last time an agent still read a value of the field.
            started = max(change.previous_at, datetime.fromtimestamp(last_value, tz=change.taken_at.tzinfo) + BUCKET)
            started = min(started, change.taken_at)
        who = f"read by {', '.join(readers)}" if readers else "no agent reads it"
        summary = f"{change.object}.{change.label} {KIND_WORDS[change.kind]} ({who})"
        if change.kind == "renamed" and still_read:
            summary += f"; {', '.join(still_read)} still read{'s' if len(still_read) == 1 else ''} {change.field}"
        return Finding(
            check=self.name, subject={"object": change.object, "field": change.label},
            severity=severity, summary=summary, started_at=started, affected=len(readers),
            evidence={
                "source": change.source, "object": change.object, "old_field": change.field,
                "new_field": change.new_field, "snapshot_at": change.taken_at.isoformat(),
                "previous_snapshot_at": change.previous_at.isoformat(), "agents": readers,
                "still_reading": still_read, "input_keys": keys, **change.details,
            },
        )


@register
class FieldRenamed(SchemaChangeCheck):
    """A CRM field was renamed (a field vanished and a similar one appeared), named ``old -> new``."""

    name = "schema.field_renamed"
    kind = "renamed"


@register
class FieldRemoved(SchemaChangeCheck):
    """A CRM field was removed with no similar field appearing."""

    name = "schema.field_removed"
    kind = "removed"


@register
class FieldAdded(SchemaChangeCheck):
    """A CRM field was added; info only, since no agent can have relied on it."""

    name = "schema.field_added"
    kind = "added"
    breaks_readers = False


@register
class TypeChanged(SchemaChangeCheck):
    """A CRM field kept its name but changed type (e.g. picklist to string)."""

    name = "schema.type_changed"
    kind = "type_changed"


@register
class PicklistChanged(SchemaChangeCheck):
    """A picklist field's allowed values changed; a warning when agents read it."""

    name = "schema.picklist_changed"
    kind = "picklist_changed"
    breaks_readers = False
