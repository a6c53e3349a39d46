"""The audit trail over the ``actions`` view: which actions match a selection, and the actions themselves, a page
at a time or all of them as a stream. The dashboard's Audit trail page (its filters), ``GET /v1/actions`` and
``agentwatch audit`` all select with :class:`Selection`, so the three agree.

Order: newest first, by (``ts``, ``event_id``) descending. A page ends with a cursor naming its last action; the
next page holds the actions after it in that order (a keyset, not an offset), so actions stored meanwhile never
shift a page: one newer than the first page is not listed, an older one that arrives late is listed when its turn
comes. An action is the JSON object :class:`agentwatch.schemas.ActionEvent` dumps (times in UTC, every key, the
unknown keys it was sent with after them), built by DuckDB; the CSV holds the store's flat columns
(docs/formats.md), neutralised for spreadsheets (:mod:`agentwatch.store.spreadsheet`). Streams read the
selection in DuckDB batches, so memory stays bounded whatever its size.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb
import polars as pl

from agentwatch.core.durations import DURATION, parse_duration_text
from agentwatch.core.errors import ConfigError
from agentwatch.schemas import ActionEvent, parse_rfc3339
from agentwatch.schemas.actions import ACTION_STATUSES
from agentwatch.store import duck
from agentwatch.store.datasets import ACTIONS
from agentwatch.store.spreadsheet import neutralised

Query = tuple[str, list[Any]]
ISO = "%Y-%m-%dT%H:%M:%S.%fZ"
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)  # the open ends of a range: every time an event may carry
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
MAX_PAGE = 1_000  # actions in one page of GET /v1/actions (its `limit`)
STREAM_BATCH_ROWS = 10_000  # actions a stream reads from DuckDB at a time: what it holds in memory
MAX_CURSOR_CHARS = 2_048  # a cursor this server gives is far shorter (an event_id is at most 256 characters)
StreamFormat = Literal["ndjson", "csv"]


@dataclass(frozen=True)
class Selection:
    """The audit trail's filters: a time range (both ends included) and optional agent, action, resource, status,
    and an incident's own actions: a SQL predicate built by code (agentwatch.checks.incident_audit), never from what
    a user typed."""

    start: datetime
    end: datetime
    agents: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()  # globs: `lead.*`; a plain name matches itself
    resource_type: str | None = None
    resource_id: str | None = None
    statuses: tuple[str, ...] = ()
    label: str = ""  # how the range was chosen ("Last 48 hours"), for the export
    predicate: str = ""  # SQL over actions with ? placeholders (an incident's bad-input actions); empty: none
    predicate_params: tuple[Any, ...] = ()
    incident: str = ""  # the incident whose actions the predicate selects, for the export

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("the time range needs a timezone")
        if self.start > self.end:
            raise ValueError(f"the range starts ({self.start:%Y-%m-%d %H:%M}) after it ends "
                             f"({self.end:%Y-%m-%d %H:%M}): swap them")
        unknown = sorted(set(self.statuses) - set(ACTION_STATUSES))
        if unknown:
            raise ValueError(f"unknown status {', '.join(unknown)}: use {', '.join(ACTION_STATUSES)}")

    def where(self, time_only: bool = False) -> Query:
        """The SQL predicate over ``actions`` and its parameters; the time bounds also prune ``day`` partitions."""
        start, end = self.start.astimezone(UTC), self.end.astimezone(UTC)
        clauses = ["ts >= ?", "ts <= ?", "day >= ?", "day <= ?"]
        params: list[Any] = [start, end, start.date(), end.date()]
        if not time_only:
            if self.agents:
                clauses.append(f"agent_id IN ({', '.join('?' * len(self.agents))})")
                params += list(self.agents)
            if self.actions:
                clauses.append("(" + " OR ".join("action GLOB ?" for _ in self.actions) + ")")
                params += list(self.actions)
            if self.resource_type:
                clauses.append("resource_type = ?")
                params.append(self.resource_type)
            if self.resource_id:
                clauses.append("resource_id = ?")
                params.append(self.resource_id)
            if self.statuses:
                clauses.append(f"status IN ({', '.join('?' * len(self.statuses))})")
                params += list(self.statuses)
            if self.predicate:
                clauses.append(f"({self.predicate})")
                params += list(self.predicate_params)
        return " AND ".join(clauses), params

    def describe(self) -> dict[str, Any]:
        """The filters as the JSON export records them (times in UTC)."""
        return {
            "from": self.start.astimezone(UTC).strftime(ISO),
            "to": self.end.astimezone(UTC).strftime(ISO),
            "agents": list(self.agents),
            "actions": list(self.actions),
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "statuses": list(self.statuses),
            "range": self.label,
            **({"incident": self.incident} if self.incident else {}),
        }



class FilterError(ConfigError):
    """A filter of the audit trail that cannot be read; `parameter` names it as the caller calls it."""

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        self.problem = problem
        super().__init__(f"{parameter}: {problem}")


def select(now: datetime, since: str | None = None, until: str | None = None, agent_id: str | None = None,
           action: str | None = None, resource_id: str | None = None, status: str | None = None,
           names: Mapping[str, str] | None = None) -> Selection:
    """The selection these filters make (`since` and `until` as :func:`moment` reads them, relative to `now`; an
    open end reaches every time an event may carry). A FilterError names the filter by `names` (the caller's
    spelling of each argument, e.g. ``{"agent_id": "--agent"}``)."""
    def name(argument: str) -> str:
        return (names or {}).get(argument, argument)

    bounds: dict[str, datetime] = {}
    for argument, text in (("since", since), ("until", until)):
        if text is not None:
            try:
                bounds[argument] = moment(text, now)
            except ValueError as exc:
                raise FilterError(name(argument), str(exc)) from None
    try:
        return Selection(bounds.get("since", EARLIEST), bounds.get("until", LATEST),
                         agents=(agent_id,) if agent_id else (), actions=(action,) if action else (),
                         resource_id=resource_id or None, statuses=(status,) if status else ())
    except ValueError as exc:
        blamed = name("status") if status and status not in ACTION_STATUSES else f"{name('since')}, {name('until')}"
        raise FilterError(blamed, str(exc)) from None


def moment(text: str, now: datetime) -> datetime:
    """A time as a person gives it: RFC 3339 with an offset, or a duration before `now` (``48h``: 48 hours ago).
    A ValueError says what is expected."""
    text = text.strip()
    if DURATION.match(text):
        return now - parse_duration_text(text)
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (48h, 30m, 7d: that long ago) nor an RFC 3339 time with "
                         "an offset (2026-10-01T09:30:00Z)") from None


# --- one action as the action event format -------------------------------------------------------------------------


def utc_text(column: str) -> str:
    """A TIMESTAMPTZ column as pydantic writes a UTC time: ``2026-10-01T07:30:00Z``, microseconds only when any."""
    at = f"({column} AT TIME ZONE 'UTC')"
    return (f"strftime({at}, '%Y-%m-%dT%H:%M:%S') || CASE strftime({at}, '%f') WHEN '000000' THEN '' "
            f"ELSE '.' || strftime({at}, '%f') END || 'Z'")


# Each key of ActionEvent, in the model's order, as a SQL expression over the stored columns.
_EVENT_KEYS = {
    "event_id": "event_id",
    "ts": utc_text("ts"),
    "agent_id": "agent_id",
    "action": "action",
    "resource": "json_object('type', resource_type, 'id', resource_id)",
    "status": "status",
    "agent_version": "agent_version",
    "inputs": "inputs",
    "before": "before",
    "after": "after",
    "decision": "decision",
    "confidence": "confidence",
    "rationale": "rationale",
    "authorized_by": "authorized_by",
    "approval": "CASE WHEN approved_by IS NOT NULL THEN "
                f"json_object('approved_by', approved_by, 'approved_at', {utc_text('approved_at')}) END",
    "external": "external",
    "records_affected": "coalesce(records_affected, 1)",
    "error": "CASE WHEN error_code IS NOT NULL THEN json_object('code', error_code, 'message', error_message) END",
    "latency_ms": "latency_ms",
    "trace_id": "trace_id",
    "span_id": "span_id",
}
if list(_EVENT_KEYS) != list(ActionEvent.model_fields):  # a key added to the format must be added here too
    raise AssertionError(f"the audit trail writes {list(_EVENT_KEYS)}, the action event has "
                         f"{list(ActionEvent.model_fields)}")
_KNOWN = "json_object(" + ", ".join(f"'{key}', {sql}" for key, sql in _EVENT_KEYS.items()) + ")"
# The unknown keys the event was sent with (`extra`) follow the known ones, as pydantic dumps them: the object's
# closing brace gives way to the members of `extra` (JSON text surgery, but both are objects DuckDB wrote).
EVENT_JSON = (f"CASE WHEN extra IS NULL OR json_keys(extra) = [] THEN CAST({_KNOWN} AS VARCHAR) "
              f"ELSE regexp_replace(CAST({_KNOWN} AS VARCHAR), '}}$', '') || ',' "
              "|| regexp_replace(CAST(json(extra) AS VARCHAR), '^[{]', '') END")

# The CSV: the store's flat columns (not its internal key, nor when it was ingested), times as RFC 3339 UTC text.
CSV_COLUMNS = [name for name, _ in ACTIONS.stored_columns() if name not in ("event_key", "ingested_at")]
_CSV_SELECT = ", ".join(
    f"{utc_text(name)} AS {name}" if kind == "TIMESTAMPTZ" else
    f"CAST({name} AS VARCHAR) AS {name}" if kind == "JSON" else name
    for name, kind in ACTIONS.stored_columns() if name in CSV_COLUMNS)


# --- pages ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where a page ended, and the selection it belongs to. Opaque to clients: base64 of JSON."""

    ts: datetime  # the last action listed: the next page starts after (ts, event_id)
    event_id: str
    start: datetime  # the time range of the first page (a relative `48h` is not moved on by later pages)
    end: datetime
    filters: str  # the other filters' fingerprint: a cursor applies to the selection that made it

    def encode(self) -> str:
        body = {"ts": _micros(self.ts), "id": self.event_id, "from": _micros(self.start), "to": _micros(self.end),
                "f": self.filters}
        return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor a page gave; a ValueError for anything else."""
        try:
            if len(text) > MAX_CURSOR_CHARS:
                raise ValueError
            body = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            return cls(_from_micros(body["ts"]), str(body["id"]), _from_micros(body["from"]), _from_micros(body["to"]),
                       str(body["f"]))
        except (ValueError, KeyError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
            raise ValueError("not a cursor this server gave: pass the next_cursor of the previous page as it is, "
                             "or leave it out to start from the newest action") from None


def _micros(at: datetime) -> int:
    return (at - EARLIEST) // timedelta(microseconds=1)


def _from_micros(value: Any) -> datetime:
    if not isinstance(value, int):
        raise TypeError
    return EARLIEST + timedelta(microseconds=value)


def filters_key(selection: Selection) -> str:
    """A fingerprint of the selection's filters other than its time range."""
    filters: list[Any] = [selection.agents, selection.actions, selection.resource_type, selection.resource_id,
                          selection.statuses]
    if selection.predicate:  # only then: cursors of selections without one keep their fingerprint
        filters.append([selection.predicate, [str(p) for p in selection.predicate_params]])
    return hashlib.sha256(json.dumps(filters).encode()).hexdigest()[:16]


def resume(selection: Selection, cursor: Cursor) -> Selection:
    """The selection a cursor continues: its own time range; a ValueError when its other filters differ."""
    if cursor.filters != filters_key(selection):
        raise ValueError("this cursor belongs to a selection with other filters: send the same agent_id, action, "
                         "resource_id and status as the first page, or leave the cursor out to start again")
    return replace(selection, start=cursor.start, end=cursor.end)


@dataclass(frozen=True)
class Page:
    """Actions of one page, as JSON texts, newest first, and the cursor of the next page (None after the last)."""

    actions: list[str]
    next_cursor: str | None

    def json(self) -> str:
        """``{"actions": [...], "next_cursor": ...}`` (the actions are DuckDB's JSON texts, joined as they are)."""
        return f'{{"actions":[{",".join(self.actions)}],"next_cursor":{json.dumps(self.next_cursor)}}}'


def page_sql(selection: Selection, limit: int, after: Cursor | None = None) -> Query:
    """Up to `limit` actions of the selection after `after`, newest first: (ts, event_id, action JSON) rows."""
    where, params = selection.where()
    if after is not None:
        where += " AND day <= ? AND (ts < ? OR (ts = ? AND event_id < ?))"
        params += [after.ts.date(), after.ts, after.ts, after.event_id]
    return (f"SELECT ts, event_id, {EVENT_JSON} AS action FROM actions WHERE {where} "
            "ORDER BY ts DESC, event_id DESC LIMIT ?", [*params, limit])


def page(con: duckdb.DuckDBPyConnection, selection: Selection, limit: int, after: Cursor | None = None) -> Page:
    """One page of the selection (`limit` at most MAX_PAGE); `after`, the cursor of an earlier page, continues it
    (over that page's time range; a ValueError when its other filters differ from `selection`'s)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit {limit}: give 1 to {MAX_PAGE}")
    if after is not None:
        selection = resume(selection, after)
    rows = duck.run(con, *page_sql(selection, limit + 1, after))  # one more than asked: is there a next page?
    shown = rows[:limit]
    more = len(rows) > limit
    cursor = Cursor(shown[-1][0], shown[-1][1], selection.start, selection.end, filters_key(selection)).encode() \
        if more else None
    return Page([row[2] for row in shown], cursor)


def count(con: duckdb.DuckDBPyConnection, selection: Selection) -> int:
    """How many actions the selection holds."""
    where, params = selection.where()
    return int(duck.run(con, f"SELECT count(*) FROM actions WHERE {where}", params)[0][0])


# --- streams -------------------------------------------------------------------------------------------------------


def stream_sql(selection: Selection, fmt: StreamFormat) -> Query:
    """Every action of the selection, newest first: one `action` JSON text per row, or the CSV columns."""
    where, params = selection.where()
    shown = f"{EVENT_JSON} AS action" if fmt == "ndjson" else _CSV_SELECT
    # ordered by the columns, not by the CSV's `ts` text of the same name (text sorts "...00Z" after "...00.5Z")
    return f"SELECT {shown} FROM actions WHERE {where} ORDER BY actions.ts DESC, actions.event_id DESC", params


def stream(con: duckdb.DuckDBPyConnection, selection: Selection, fmt: StreamFormat,
           batch_rows: int = STREAM_BATCH_ROWS) -> Iterator[bytes]:
    """The whole selection as NDJSON lines or CSV (a header, then every field quoted), in chunks of `batch_rows`
    actions. The query is bound here, before the first chunk is asked for, so a store that cannot be read fails
    the call rather than a response already under way."""
    sql, params = stream_sql(selection, fmt)
    reader = con.sql(sql, params=params or None).to_arrow_reader(batch_rows)
    return _ndjson(reader) if fmt == "ndjson" else _csv(reader)


def _ndjson(reader: Any) -> Iterator[bytes]:
    for batch in reader:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        if frame.height:
            yield (frame["action"].str.join("\n").item() + "\n").encode()


def _csv(reader: Any) -> Iterator[bytes]:
    header = True
    for batch in reader:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        yield neutralised(frame).write_csv(quote_style="always", include_header=header).encode()
        header = False
    if header:  # nothing matched: the header alone
        yield (",".join(f'"{name}"' for name in CSV_COLUMNS) + "\n").encode()
