"""Differences between consecutive schema snapshots of each CRM object, renames inferred.

A rename is a field that disappears while a similar one appears in the same diff. Similarity weighs
the API name, the label, the type and the picklist values; the best pairs above a threshold win.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from agentwatch.checks.data import EvalData

RENAME_MIN_SIMILARITY = 0.6


@dataclass(frozen=True)
class SchemaChange:
    """One change between two snapshots of one object."""

    kind: str  # renamed | removed | added | type_changed | picklist_changed
    source: str
    object: str
    taken_at: datetime  # the snapshot that first shows the change
    previous_at: datetime  # the snapshot before it
    field: str  # the field as named before the change (the new name for `added`)
    new_field: str | None = None  # for renames
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.field} -> {self.new_field}" if self.kind == "renamed" else self.field


def _normal(text: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (text or "").lower().removesuffix("__c"))


def similarity(old: dict[str, Any], new: dict[str, Any]) -> float:
    """0..1: how likely `new` is `old` under another name."""
    name = difflib.SequenceMatcher(None, _normal(old["name"]), _normal(new["name"])).ratio()
    label = difflib.SequenceMatcher(None, _normal(old.get("label")), _normal(new.get("label"))).ratio() \
        if old.get("label") and new.get("label") else name
    same_type = 1.0 if old["type"] == new["type"] else 0.0
    old_values, new_values = set(old.get("picklist_values") or []), set(new.get("picklist_values") or [])
    if old_values or new_values:
        values = len(old_values & new_values) / len(old_values | new_values)
    else:
        values = same_type * 0.5  # no picklists: a matching type says a little, not everything
    return 0.3 * name + 0.3 * label + 0.2 * same_type + 0.2 * values


def diff(previous: list[dict], current: list[dict], source: str, object_name: str, previous_at: datetime,
         taken_at: datetime, min_similarity: float = RENAME_MIN_SIMILARITY) -> list[SchemaChange]:
    """The changes from one snapshot's fields to the next."""
    before = {f["name"]: f for f in previous}
    after = {f["name"]: f for f in current}
    removed = [before[n] for n in before if n not in after]
    added = [after[n] for n in after if n not in before]
    change = partial(SchemaChange, source=source, object=object_name, taken_at=taken_at, previous_at=previous_at)
    changes: list[SchemaChange] = []
    pairs = sorted(((similarity(o, n), o["name"], n["name"]) for o in removed for n in added), reverse=True)
    renamed_old: set[str] = set()
    renamed_new: set[str] = set()
    for score, old_name, new_name in pairs:
        if score < min_similarity or old_name in renamed_old or new_name in renamed_new:
            continue
        renamed_old.add(old_name)
        renamed_new.add(new_name)
        changes.append(change("renamed", field=old_name, new_field=new_name,
                              details={"similarity": round(score, 3), "type": after[new_name]["type"]}))
    changes += [change("removed", field=f["name"], details={"type": f["type"]})
                for f in removed if f["name"] not in renamed_old]
    changes += [change("added", field=f["name"], details={"type": f["type"], "label": f.get("label")})
                for f in added if f["name"] not in renamed_new]
    for name in before.keys() & after.keys():
        old, new = before[name], after[name]
        if old["type"] != new["type"]:
            changes.append(change("type_changed", field=name, details={"from": old["type"], "to": new["type"]}))
        old_values, new_values = old.get("picklist_values") or [], new.get("picklist_values") or []
        if set(old_values) != set(new_values) and old["type"] == new["type"]:
            changes.append(change("picklist_changed", field=name, details={
                "values_added": sorted(set(new_values) - set(old_values)),
                "values_removed": sorted(set(old_values) - set(new_values)),
            }))
    return changes


def schema_changes(data: EvalData, min_similarity: float = RENAME_MIN_SIMILARITY) -> list[SchemaChange]:
    """Every change between consecutive snapshots taken up to the last evaluation time."""

    def build() -> list[SchemaChange]:
        rows = data.con.execute(
            "SELECT source, object, taken_at, fields FROM schema_snapshots "
            f"WHERE taken_at <= TIMESTAMPTZ '{data.last.isoformat()}' ORDER BY source, object, taken_at"
        ).fetchall()
        changes: list[SchemaChange] = []
        previous: dict[tuple[str, str], tuple[datetime, list[dict]]] = {}
        for source, object_name, taken_at, fields in rows:
            key = (source, object_name)
            if key in previous:
                before_at, before_fields = previous[key]
                changes += diff(before_fields, fields, source, object_name, before_at, taken_at, min_similarity)
            previous[key] = (taken_at, fields)
        return changes

    return data.shared(f"schema_changes:{min_similarity}", build)


def fields_by_object(data: EvalData) -> dict[str, set[str]]:
    """object -> every field name any snapshot up to the last evaluation time has shown (lower case)."""

    def build() -> dict[str, set[str]]:
        rows = data.con.execute(
            "SELECT DISTINCT object, lower(f.name) FROM schema_snapshots, unnest(fields) AS t(f) "
            f"WHERE taken_at <= TIMESTAMPTZ '{data.last.isoformat()}'"
        ).fetchall()
        found: dict[str, set[str]] = {}
        for object_name, name in rows:
            found.setdefault(object_name, set()).add(name)
        return found

    return data.shared("fields_by_object", build)


def snapshot_history(data: EvalData) -> dict[str, list[tuple[datetime, dict[str, str]]]]:
    """object -> its snapshots up to the last evaluation time, oldest first: (taken at, lower-case field name ->
    type). What a repair looks like: a later snapshot with the field again."""

    def build() -> dict[str, list[tuple[datetime, dict[str, str]]]]:
        rows = data.con.execute(
            "SELECT object, taken_at, fields FROM schema_snapshots "
            f"WHERE taken_at <= TIMESTAMPTZ '{data.last.isoformat()}' ORDER BY object, taken_at"
        ).fetchall()
        found: dict[str, list[tuple[datetime, dict[str, str]]]] = {}
        for object_name, taken_at, fields in rows:
            found.setdefault(object_name, []).append((taken_at, {f["name"].lower(): f["type"] for f in fields}))
        return found

    return data.shared("snapshot_history", build)
