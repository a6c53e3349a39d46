"""Ingest CRM schema snapshots: native, Salesforce describe results and HubSpot properties responses.

Snapshots are few and small, so pydantic validates each one; they are stored one row per snapshot
with their fields as a list of structs. A snapshot's id is (source, object, taken_at): sending
the same snapshot again is a no-op.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from agentwatch.collector.formats.hubspot import snapshot_from_hubspot_properties
from agentwatch.collector.formats.salesforce import snapshot_from_salesforce_describe
from agentwatch.collector.ingest.pipeline import IngestReport, expand_paths
from agentwatch.collector.ingest.rejects import FieldError, Rejection, RejectLog, field_errors
from agentwatch.core.errors import ConfigError, FormatError, InputFileError
from agentwatch.core.home import Home
from agentwatch.core.json_structure import max_depth, may_nest_deeper, too_deep_message
from agentwatch.core.limits import Limits
from agentwatch.schemas import SchemaSnapshot
from agentwatch.store import duck
from agentwatch.store.datasets import SCHEMA_SNAPSHOTS
from agentwatch.store.event_keys import event_key
from agentwatch.store.writer import DatasetWriter

SNAPSHOT_FORMATS = ("native", "salesforce", "hubspot")

_FIELD_STRUCT = pa.struct([
    ("name", pa.string()), ("type", pa.string()), ("nullable", pa.bool_()), ("label", pa.string()),
    ("picklist_values", pa.list_(pa.string())), ("source_type", pa.string()),
])
_ROW_SCHEMA = pa.schema([
    ("line_no", pa.int64()), ("event_id", pa.string()), ("event_key", pa.uint64()),
    ("taken_at", pa.timestamp("us", tz="UTC")), ("source", pa.string()), ("object", pa.string()),
    ("field_count", pa.int32()), ("fields", pa.list_(_FIELD_STRUCT)),
])


def snapshot_id(snapshot: SchemaSnapshot) -> str:
    """The identity of a snapshot: which system, which object, when."""
    return f"{snapshot.source}/{snapshot.object}/{snapshot.taken_at.isoformat()}"


def parse_snapshot(
    item: Any, fmt: str = "native", taken_at: datetime | None = None, object_name: str | None = None
) -> SchemaSnapshot:
    """One payload as a SchemaSnapshot; raises FormatError or pydantic's ValidationError."""
    if fmt == "salesforce":
        if not isinstance(item, dict):
            raise FormatError("salesforce describe: expected a JSON object (the describe result)")
        return snapshot_from_salesforce_describe(item, taken_at=taken_at, object_name=object_name)
    if fmt == "hubspot":
        if not object_name:
            raise ConfigError("--object is required with --format hubspot: a properties response names no object")
        if not isinstance(item, dict):
            raise FormatError("hubspot properties: expected a JSON object with a 'results' list")
        return snapshot_from_hubspot_properties(item, object_name=object_name, taken_at=taken_at)
    if fmt != "native":
        raise ConfigError(f"unknown snapshot format {fmt!r}; use one of {', '.join(SNAPSHOT_FORMATS)}")
    if isinstance(item, dict):  # the options fill in what the payload leaves out
        if taken_at is not None and "taken_at" not in item:
            item = {**item, "taken_at": taken_at.isoformat()}
        if object_name and "object" not in item:
            item = {**item, "object": object_name}
    return SchemaSnapshot.model_validate_json(json.dumps(item))


Located = tuple[str, str, int, Any]  # (source, unit, number, payload)


def ingest_snapshot_items(
    home: Home,
    items: list[Any],
    source: str,
    fmt: str = "native",
    taken_at: datetime | None = None,
    object_name: str | None = None,
    unit: str = "item",
) -> IngestReport:
    """Validate and durably store snapshot payloads; each invalid one is rejected on its own."""
    located = [(source, unit, number, item) for number, item in enumerate(items, start=1)]
    return _ingest_located(home, located, fmt, taken_at, object_name)


def ingest_snapshot_files(
    home: Home,
    paths: Iterable[Path],
    fmt: str = "native",
    taken_at: datetime | None = None,
    object_name: str | None = None,
    limits: Limits | None = None,
) -> IngestReport:
    """Ingest snapshot files (JSON: one payload or a list of native snapshots; JSONL of native ones) in one commit."""
    located: list[Located] = []
    for path in expand_paths(paths):
        items, unit = _read_items(path, fmt, limits or Limits())
        located.extend((str(path), unit, number, item) for number, item in items)
    return _ingest_located(home, located, fmt, taken_at, object_name)


def _ingest_located(
    home: Home, located: list[Located], fmt: str, taken_at: datetime | None, object_name: str | None
) -> IngestReport:
    started = time.perf_counter()
    report = IngestReport(SCHEMA_SNAPSHOTS.name)
    snapshots: list[tuple[int, SchemaSnapshot]] = []
    rejections: list[Rejection] = []
    for order, (source, unit, number, item) in enumerate(located):
        try:
            snapshots.append((order, parse_snapshot(item, fmt, taken_at, object_name)))
        except ValidationError as exc:
            rejections.append(_rejection(source, unit, number, item, field_errors(exc)))
        except FormatError as exc:
            rejections.append(_rejection(source, unit, number, item, (FieldError("", str(exc)),)))
    accepted = duplicates = 0
    if snapshots:
        accepted, duplicates = _commit(home, snapshots)
    report.add(accepted, duplicates, rejections)
    log = RejectLog(home.rejects, SCHEMA_SNAPSHOTS.name)
    log.write(rejections)
    report.rejects_file = log.written
    report.seconds = time.perf_counter() - started
    return report


def _read_items(path: Path, fmt: str, limits: Limits) -> tuple[list[tuple[int, Any]], str]:
    """The payloads of one file with their numbers (line numbers for JSONL: blank lines count)."""
    text = _read_text(path, limits)
    if path.name.lower().endswith(".gz"):
        path = path.with_suffix("")  # the format is that of the name inside
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        items = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                _require_depth(path, line, limits, f"line {number}")
                try:
                    items.append((number, json.loads(line)))
                except ValueError as exc:
                    raise InputFileError(path, f"line {number} is not valid JSON: {exc}") from None
        return items, "line"
    _require_depth(path, text, limits, "the payload")
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise InputFileError(path, f"not valid JSON: {exc}") from None
    if fmt == "native" and isinstance(payload, list):
        return list(enumerate(payload, start=1)), "item"
    return [(1, payload)], "file"


def _read_text(path: Path, limits: Limits) -> str:
    """The file as text; a .gz is inflated up to limits.max_decompressed_bytes (snapshot files are read whole)."""
    try:
        if not path.name.lower().endswith(".gz"):
            return path.read_bytes().decode("utf-8-sig")
        with gzip.open(path, "rb") as stream:
            raw = stream.read(limits.max_decompressed_bytes + 1)
        if len(raw) > limits.max_decompressed_bytes:
            raise InputFileError(path, f"inflates to more than {limits.max_decompressed_bytes:,} bytes, the bound set "
                                       "by limits.max_decompressed_bytes in agentwatch.yaml; nothing was read from it")
        return raw.decode("utf-8-sig")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"cannot read as UTF-8 JSON text: {exc}") from None


def _require_depth(path: Path, text: str, limits: Limits, what: str) -> None:
    """Parsing a text nested deeper than the bound would cost a RecursionError: refuse it first."""
    if may_nest_deeper(text.encode(), limits.max_depth) and (depth := max_depth(text.encode())) > limits.max_depth:
        raise InputFileError(path, too_deep_message(depth, limits.max_depth, what))


def _rejection(source: str, unit: str, number: int, item: Any, errors: tuple[FieldError, ...]) -> Rejection:
    raw = json.dumps(item)[:65_536]
    return Rejection(source, unit, number, None, errors, raw)


def _commit(home: Home, snapshots: list[tuple[int, SchemaSnapshot]]) -> tuple[int, int]:
    rows = []
    for number, snapshot in snapshots:
        identity = snapshot_id(snapshot)
        rows.append({
            "line_no": number, "event_id": identity, "event_key": event_key(identity),
            "taken_at": snapshot.taken_at, "source": snapshot.source, "object": snapshot.object,
            "field_count": len(snapshot.fields),
            "fields": [f.model_dump() for f in snapshot.fields],
        })
    con = duck.connect(memory_limit="256MB")
    try:
        con.register("snapshot_rows", pa.Table.from_pylist(rows, schema=_ROW_SCHEMA))
        duck.run(con, "CREATE TEMP TABLE snapshot_batch AS SELECT * FROM snapshot_rows")
        result = DatasetWriter(home, SCHEMA_SNAPSHOTS).commit(con, "snapshot_batch")
    finally:
        con.close()
    return result.accepted, result.duplicates
