"""schema.field_renamed, field_removed, field_added, type_changed, picklist_changed.

Each diffs consecutive snapshots of every CRM object (see checks/schema_diff.py). How loud a change
is depends on whether agents read the field (seen as a key of their action ``inputs``, by name or
through ``fields:``): breaking a field an agent reads is critical; a change nobody reads is info.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field

from agentwatch.checks.activity import Activity
from agentwatch.checks.aggregates import key_counts
from agentwatch.checks.base import Check, CheckOptions, Clearance, Finding, Step, register
from agentwatch.checks.crm_fields import key_reads_field
from agentwatch.checks.data import BUCKET, EvalData
from agentwatch.checks.schema_diff import RENAME_MIN_SIMILARITY, SchemaChange, schema_changes, snapshot_history
from agentwatch.core.severity import Severity
from agentwatch.schemas.incidents import Incident

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
    """When each agent's inputs carried each key, per 5-minute bucket: how many reads, how many with a value."""

    def __init__(self, counts: pl.DataFrame) -> None:
        present = counts.filter((pl.col("scope") == "inputs") & (pl.col("present") > 0))
        present = present.select("agent_id", "key", pl.col("bucket").dt.epoch("s").alias("t"), "present", "nonnull")
        # key -> agent -> (bucket starts, running reads, running reads with a value, buckets with a value)
        self.series: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
        for (agent, key), group in present.group_by("agent_id", "key"):
            group = group.group_by("t").agg(pl.col("present", "nonnull").sum()).sort("t")
            t, reads, values = group["t"].to_numpy(), group["present"].to_numpy(), group["nonnull"].to_numpy()
            self.series.setdefault(key, {})[agent] = (t, np.cumsum(reads), np.cumsum(values), t[values > 0])

    def read_keys(self) -> list[str]:
        return list(self.series)

    def agents(self, key: str, start: datetime, end: datetime, nulls_only: bool = False) -> list[str]:
        """Agents whose inputs carried `key` (as null, with `nulls_only`) in buckets starting in (start, end]."""
        found = []
        for agent in self.series.get(key, {}):
            reads, values = self._sums(key, agent, start.timestamp(), end.timestamp(), side="right")
            if reads > values if nulls_only else reads > 0:
                found.append(agent)
        return sorted(found)

    def sums(self, keys: list[str], agents: list[str], since: datetime, until: datetime) -> tuple[int, int]:
        """Reads of `keys` by `agents`, and those with a value, in whole buckets from `since` to `until`."""
        end = until.timestamp() - BUCKET.total_seconds()
        totals = [self._sums(k, a, since.timestamp(), end, side="left") for k in keys for a in agents]
        return sum(r for r, _ in totals), sum(v for _, v in totals)

    def _sums(self, key: str, agent: str, start: float, end: float,
              side: Literal["left", "right"]) -> tuple[int, int]:
        """Reads and reads with a value in buckets starting after `start` (side right) or from it (left), to
        `end` inclusive."""
        series = self.series.get(key, {}).get(agent)
        if series is None:
            return 0, 0
        t, reads, values, _ = series
        lo = int(np.searchsorted(t, start, side=side))
        hi = int(np.searchsorted(t, end, side="right"))
        if hi <= lo:
            return 0, 0
        return (int(reads[hi - 1] - (reads[lo - 1] if lo else 0)),
                int(values[hi - 1] - (values[lo - 1] if lo else 0)))

    def last_non_null(self, key: str, before: datetime) -> float | None:
        """The latest bucket start (epoch s) before `before` in which some agent read a value of `key`."""
        best = None
        for *_, with_value in self.series.get(key, {}).values():
            i = np.searchsorted(with_value, before.timestamp(), side="left")
            if i > 0:
                best = max(best or 0, float(with_value[i - 1]))
        return best


class SchemaChangeCheck(Check[SchemaOptions]):
    """Shared logic of the five schema checks; each subclass names one kind of change."""

    clears_when = (
        "A breaking change (a field agents read renamed, removed or retyped) resolves on a repair: a later "
        "snapshot with the field again (with its old type), a `fields:` mapping of every key the readers used "
        "to a field the object has, or the readers reading values again, at least `clear_min_events` reads at "
        "half their usual value share or more. No reads at all (an agent paused by the guard) keep it open, "
        "and it says so. A change that breaks no reader resolves once reported for `report_hours`. What it "
        "needs is stored with the incident when it opens (readers, keys, their usual value share), so it "
        "holds however far the data window slides."
    )

    family: ClassVar[str] = "schema"
    kind: ClassVar[str]
    Options = SchemaOptions
    history = timedelta(days=8)
    breaks_readers: ClassVar[bool] = True  # a reader of the field is hurt (critical) by this kind of change

    def prepare(self, data: EvalData) -> None:
        options = self.options
        self.reads = data.shared("schema_reads", lambda: _Reads(key_counts(data)))
        self.snapshots = snapshot_history(data)
        # Per change, once: the input keys naming the field, the agents that read them up to the snapshot
        # showing the change (an agent still sending the key after the change, reading nulls, read the field
        # as much as one that read values before it), and the share of their reads that had a value.
        self.changes = []
        for change in schema_changes(data, options.rename_min_similarity):
            if change.kind != self.kind:
                continue
            keys = [k for k in self.reads.read_keys() if key_reads_field(k, change.object, change.field, self.config)]
            read_from = change.previous_at - timedelta(days=options.read_window_days)
            readers = sorted({a for k in keys for a in self.reads.agents(k, read_from, change.taken_at)})
            reads, values = self.reads.sums(keys, readers, read_from, change.previous_at)
            self.changes.append((change, keys, readers, round(values / reads, 4) if reads else None))

    def evaluate(self, step: Step) -> list[Finding]:
        options = self.options
        findings = []
        for change, keys, readers, usual_share in self.changes:
            if change.taken_at > step.at:
                continue
            subject = {"object": change.object, "field": change.label}
            open_incident = step.incident(self.name, subject)
            if open_incident is not None:  # what the incident learnt when it opened holds, whatever the window
                readers = sorted({*readers, *open_incident.evidence.get("agents", [])})
                keys = sorted({*keys, *open_incident.evidence.get("input_keys", [])})
                usual_share = open_incident.evidence.get("usual_value_share", usual_share)
            if self._repaired(change.object, change.field, change.details.get("from"), keys, change.taken_at,
                              step.at):
                continue
            age = step.at - change.taken_at
            recent = step.at - timedelta(hours=options.still_read_hours)
            still_read = sorted({a for k in keys for a in self.reads.agents(k, recent, step.at, nulls_only=True)})
            if age > timedelta(hours=options.report_hours) and not (self.breaks_readers and still_read):
                continue
            findings.append(self._finding(change, keys, readers, still_read, usual_share))
        return findings

    def clearance(self, step: Step, incident: Incident, activity: Activity) -> Clearance:
        """Resolved by a later snapshot with the field again, a ``fields:`` mapping naming a field that exists for
        every key the readers used, or the readers reading values again at half their usual share or more. A
        change that breaks no reader (an addition, a picklist change, a field nobody read) resolves once reported
        for ``report_hours``. No reads at all (a paused agent) keep a breaking change open."""
        evidence = incident.evidence
        object_name, old = evidence["object"], evidence["old_field"]
        changed_at = datetime.fromisoformat(evidence["snapshot_at"])
        repaired = self._repaired(object_name, old, evidence.get("from"), evidence.get("input_keys", []), changed_at,
                                  step.at)
        if repaired:
            return Clearance(True, repaired)
        readers, keys = evidence.get("agents", []), evidence.get("input_keys", [])
        if not (self.breaks_readers and readers):
            until = changed_at + timedelta(hours=self.options.report_hours)
            if step.at >= until:
                why = "no agent read the field" if self.breaks_readers else f"a {self.kind} breaks no reader"
                return Clearance(True, f"{why}: reported for {self.options.report_hours:g} h, nothing to repair")
            return Clearance(False, f"reported until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
        since = incident.last_fired_at
        when = f"{since.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        reads, values = self.reads.sums(keys, readers, since, step.at)
        usual = evidence.get("usual_value_share")
        names, who = ", ".join(keys), ", ".join(readers)
        if reads >= self.options.clear_min_events and usual and values / reads >= usual / 2:
            return Clearance(True, f"{who} read {names} with a value {values / reads:.0%} of {reads:,} times since "
                                   f"{when} (usually {usual:.0%})")
        if reads == 0:
            return Clearance(False, f"no reads of {names} by {who} since {when}: nothing shows the field readable "
                                    "again (a paused agent sends nothing)")
        return Clearance(False, f"{who} read {names} as null {reads - values:,} of {reads:,} times since {when}")

    def _repaired(self, object_name: str, old: str, old_type: str | None, keys: list[str], changed_at: datetime,
                  at: datetime) -> str | None:
        """How a breaking change was repaired by `at`, if it was: a later snapshot that has the field again (with
        its old type, for a type change), or ``fields:`` mapping every key the readers used to a field the
        object has now."""
        if not self.breaks_readers:
            return None
        known = [(t, fields) for t, fields in self.snapshots.get(object_name, []) if t <= at]
        taken_at, fields_now = known[-1] if known else (None, {})
        back = old.lower() in fields_now and (self.kind != "type_changed" or fields_now[old.lower()] == old_type)
        if taken_at is not None and taken_at > changed_at and back:
            return f"the {object_name} snapshot of {taken_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC has {old} again"
        targets = [self.config.fields.get(key) for key in keys]
        if keys and all(t is not None and _names_field_of(t, object_name, fields_now, old) for t in targets):
            mapping = ", ".join(f"{key} to {target}" for key, target in zip(keys, targets, strict=True))
            return f"fields: maps {mapping}, a field the {object_name} snapshot has"
        return None

    def _finding(self, change: SchemaChange, keys: list[str], readers: list[str], still_read: list[str],
                 usual_share: float | None) -> Finding:
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
                "still_reading": still_read, "input_keys": keys, "usual_value_share": usual_share,
                **change.details,
            },
        )


def _names_field_of(target: str, object_name: str, fields_now: dict[str, str], old: str) -> bool:
    """Does a ``fields:`` target (Object.Field) name a field, other than the changed one, the object has now?"""
    target_object, target_field = target.split(".")
    return (target_object.lower() == object_name.lower() and target_field.lower() in fields_now
            and target_field.lower() != old.lower())


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
