"""What the schema page asks of the store: each CRM object's snapshots, the diff between two of them (through
checks/schema_diff.py, the same diff and rename inference the schema checks use) and which agents read which
fields (the keys of their action ``inputs``, by name or through ``fields:`` in the config)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl

from agentwatch.app.config import Config
from agentwatch.checks.crm_fields import key_reads_field
from agentwatch.checks.schema_diff import SchemaChange, diff
from agentwatch.dashboards.context import query

READ_WINDOW = timedelta(days=7)  # the recent window in which an agent's input keys count as reads
READ_ROWS = 1_000_000  # ...shortened, a day at a time, to stay within this many events (JSON keys are costly)
KINDS = ("renamed", "removed", "added", "type_changed", "picklist_changed")


@dataclass(frozen=True)
class CrmObject:
    """One object of one source (snapshots are diffed per source and object)."""

    source: str
    object: str


def objects() -> dict[str, CrmObject]:
    """label -> object, for every object with a snapshot: the object's name, with its source when two sources
    share the name ('Lead (hubspot)')."""
    frame = query("SELECT source, object FROM schema_snapshots GROUP BY ALL ORDER BY object, source")
    shared = frame.group_by("object").len().filter(pl.col("len") > 1)["object"].to_list()
    return {(f"{o} ({s})" if o in shared else o): CrmObject(s, o) for s, o in frame.iter_rows()}


def timeline(crm: CrmObject) -> pl.DataFrame:
    """taken_at, source, field_count, changed: the object's snapshots, oldest first; `changed` says whether the
    fields differ from the previous snapshot's (null for the first), compared in DuckDB by a digest."""
    return query(
        "SELECT taken_at, source, field_count, "
        "CASE WHEN lag(digest) OVER w IS NULL THEN NULL ELSE digest <> lag(digest) OVER w END AS changed "
        "FROM (SELECT taken_at, source, field_count, md5(CAST(list_sort(fields) AS VARCHAR)) AS digest "
        "FROM schema_snapshots WHERE source = ? AND object = ?) WINDOW w AS (ORDER BY taken_at) ORDER BY taken_at",
        crm.source, crm.object,
    ).with_columns(pl.col("taken_at").dt.convert_time_zone("UTC"))


def default_pair(snapshots: pl.DataFrame) -> tuple[int, int]:
    """Indexes (before, after) to diff first: around the latest change, else the last two snapshots."""
    changed = [i for i, c in enumerate(snapshots["changed"].to_list()) if c]
    if changed:
        return changed[-1] - 1, changed[-1]
    last = snapshots.height - 1
    return max(last - 1, 0), last


def fields_at(crm: CrmObject, taken_at: datetime) -> list[dict[str, Any]]:
    """The fields of one snapshot, as dicts (name, type, nullable, label, picklist_values, source_type)."""
    frame = query("SELECT fields FROM schema_snapshots WHERE source = ? AND object = ? AND taken_at = ?",
                  crm.source, crm.object, taken_at)
    return frame["fields"][0].to_list() if frame.height else []


def compare(crm: CrmObject, before_at: datetime, after_at: datetime) -> list[SchemaChange]:
    """The changes from the snapshot at `before_at` to the one at `after_at` (schema_diff.diff: renames
    inferred by similarity of name, label, type and picklist values)."""
    return diff(fields_at(crm, before_at), fields_at(crm, after_at), crm.source, crm.object, before_at, after_at)


@dataclass(frozen=True)
class ReadWindow:
    """Whole UTC days, ``first`` to ``last`` inclusive, holding `events` action events."""

    first: date
    last: date
    events: int


def read_window() -> ReadWindow | None:
    """The recent window in which agents' input keys count as reads: the last READ_WINDOW of days up to the
    latest event's, fewer (never below that one day) while it holds more than READ_ROWS events. Day counts
    come from the partitions, so choosing costs next to nothing; None without any action event."""
    last = query("SELECT max(day) AS day FROM actions")["day"][0]
    if last is None:
        return None
    days = query("SELECT day, count(*) AS events FROM actions WHERE day > ? GROUP BY day ORDER BY day DESC",
                 last - READ_WINDOW)
    first, total = last, 0
    for day, events in days.iter_rows():
        if total and total + events > READ_ROWS:
            break
        first, total = day, total + events
    return ReadWindow(first=first, last=last, events=total)


def input_keys(window: ReadWindow) -> pl.DataFrame:
    """agent_id, key, events: the keys of each agent's action inputs in the window, in DuckDB (grouped by the
    key list first: agents send few distinct lists, so the JSON is read once per event and unnested rarely)."""
    return query(
        "SELECT agent_id, key, sum(events)::BIGINT AS events FROM (SELECT agent_id, unnest(keys) AS key, events "
        "FROM (SELECT agent_id, json_keys(inputs) AS keys, count(*) AS events FROM actions "
        "WHERE day BETWEEN ? AND ? AND inputs IS NOT NULL GROUP BY ALL)) GROUP BY ALL ORDER BY agent_id, key",
        window.first, window.last,
    )


class Readers:
    """Which agents read which field of an object: the keys their inputs carried that name it."""

    def __init__(self, keys: pl.DataFrame, config: Config) -> None:
        self.config = config
        self.agents_by_key: dict[str, list[str]] = {}
        for agent_id, key in keys.select("agent_id", "key").iter_rows():
            self.agents_by_key.setdefault(key, []).append(agent_id)

    def keys(self, object_name: str, field_name: str) -> list[str]:
        return sorted(k for k in self.agents_by_key if key_reads_field(k, object_name, field_name, self.config))

    def agents(self, object_name: str, field_name: str) -> list[str]:
        return sorted({a for k in self.keys(object_name, field_name) for a in self.agents_by_key[k]})


def _names(agents: list[str]) -> str:
    return ", ".join(agents)


def _values(values: list[str] | None) -> str:
    return ", ".join(values or [])


def change_tables(changes: list[SchemaChange], before: list[dict], after: list[dict],
                  readers: Readers) -> dict[str, pl.DataFrame]:
    """kind -> a readable table of that kind of change, each row with the agents that read the field and, for
    renamed and removed fields, `still_read`: agents read the old name in the recent window."""
    old = {f["name"]: f for f in before}
    new = {f["name"]: f for f in after}
    rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for change in changes:
        agents = readers.agents(change.object, change.field)
        read = {"read by agents": _names(agents)}
        if change.kind == "renamed":
            was, now = old[change.field], new[change.new_field or ""]
            shared = set(was.get("picklist_values") or []) & set(now.get("picklist_values") or [])
            every = set(was.get("picklist_values") or []) | set(now.get("picklist_values") or [])
            rows["renamed"].append({
                "field": change.field, "renamed to": change.new_field, "similarity": change.details["similarity"],
                "label": f"{was.get('label') or '-'} -> {now.get('label') or '-'}",
                "type": was["type"] if was["type"] == now["type"] else f"{was['type']} -> {now['type']}",
                "picklist values kept": f"{len(shared)} of {len(every)}" if every else "-",
                **read, "new name read by": _names(readers.agents(change.object, change.new_field or "")),
                "still_read": bool(agents)})
        elif change.kind in ("removed", "added"):
            spec = (old if change.kind == "removed" else new)[change.field]
            row = {"field": change.field, "label": spec.get("label") or "", "type": spec["type"], **read}
            rows[change.kind].append(row | ({"still_read": bool(agents)} if change.kind == "removed" else {}))
        elif change.kind == "type_changed":
            rows["type_changed"].append({"field": change.field, "type before": change.details["from"],
                                         "type after": change.details["to"], **read})
        else:
            rows["picklist_changed"].append({
                "field": change.field, "values added": _values(change.details["values_added"]),
                "values removed": _values(change.details["values_removed"]), **read})
    return {kind: pl.DataFrame(found).sort("field") for kind, found in rows.items() if found}


def fields_table(crm: CrmObject, fields: list[dict[str, Any]], readers: Readers) -> pl.DataFrame:
    """Every field of one snapshot with the agents that read it and the input keys they read it through."""
    return pl.DataFrame([{
        "field": f["name"], "label": f.get("label") or "", "type": f["type"],
        "nullable": f.get("nullable"), "picklist values": _values(f.get("picklist_values")),
        "read by agents": _names(readers.agents(crm.object, f["name"])),
        "input keys": _names(readers.keys(crm.object, f["name"])),
    } for f in fields], schema={"field": pl.String, "label": pl.String, "type": pl.String, "nullable": pl.Boolean,
                                "picklist values": pl.String, "read by agents": pl.String, "input keys": pl.String})
