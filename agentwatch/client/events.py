"""Making events: ids, timestamps, resources, and the JSON text each event is sent as.

An event is encoded when it is made, in the caller's thread, so a value JSON cannot carry (a naive datetime,
NaN, an object) fails there with the key named, instead of in the background sender.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from agentwatch.client.errors import InvalidArgument

ACTION_STATUSES = ("ok", "error", "skipped", "pending_approval")  # as agentwatch.schemas.actions (kept light here)
ResourceArg = tuple[str, str] | Mapping[str, Any]


@dataclass(frozen=True)
class Event:
    """One event ready to send: its dataset, its id, and its JSON text."""

    dataset: str  # "actions" | "outcomes"
    event_id: str
    text: bytes


def new_event_id(prefix: str) -> str:
    """``act-<32 hex digits>``: random (uuid4), so a retry re-sends the same id and never makes a second event."""
    return f"{prefix}-{uuid.uuid4().hex}"


def rfc3339(value: datetime | str | None) -> str:
    """An RFC 3339 UTC timestamp with offset: now when None, a datetime converted, a string kept as given."""
    if value is None:
        return datetime.now(UTC).isoformat(timespec="microseconds")
    if isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        raise InvalidArgument(f"a timestamp must be a datetime or an RFC 3339 string, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(f"timestamp {value.isoformat()} has no time zone; use datetime.now(UTC) or give an "
                              "offset (agentwatch stores times in UTC and cannot guess the zone)")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def resource_dict(resource: ResourceArg) -> dict[str, str]:
    """``("lead", "L-1")`` or ``{"type": "lead", "id": "L-1"}`` as the event's resource object."""
    if isinstance(resource, tuple) and len(resource) == 2:
        kind, ident = resource
    elif isinstance(resource, Mapping) and set(resource) == {"type", "id"}:
        kind, ident = resource["type"], resource["id"]
    else:
        raise InvalidArgument(f"resource {resource!r} is neither a (type, id) tuple nor a {{'type', 'id'}} dict; "
                              "write e.g. resource=('lead', '00Q5e00000AbCdE')")
    if not isinstance(kind, str) or not isinstance(ident, str) or not kind or not ident:
        raise InvalidArgument(f"resource {resource!r}: type and id must be non-empty strings (a CRM id as text)")
    return {"type": kind, "id": ident}


def _json_value(value: Any) -> Any:
    """What json.dumps cannot write itself: datetimes and dates as RFC 3339 / ISO text."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def encode(dataset: str, event: dict[str, Any]) -> Event:
    """The event without its None values, as compact JSON; InvalidArgument names what JSON cannot carry."""
    body = {key: value for key, value in event.items() if value is not None}
    return Event(dataset, body["event_id"], json_text(body, f"{dataset} event {body['event_id']}"))


def json_text(value: Any, what: str) -> bytes:
    """Compact UTF-8 JSON of `value` (datetimes as RFC 3339); InvalidArgument naming the top-level key at fault."""
    try:
        text = json.dumps(value, default=_json_value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        keys = [k for k, v in value.items() if not _encodable(v)] if isinstance(value, dict) else []
        where = f" key {keys[0]!r}" if keys else ""
        raise InvalidArgument(f"{what}:{where} cannot be sent as JSON ({exc}); use strings, numbers (not NaN or "
                              "infinity), booleans, lists, dicts and aware datetimes") from None
    return text.encode()


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, default=_json_value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True
