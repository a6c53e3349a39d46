"""Types shared by every agentwatch format.

The regular expressions and value sets here are the single source of truth: the pydantic
models use them, and so does the vectorized validator in ``agentwatch.collector.ingest.fast_path``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

FORMAT_VERSION = 1

# RFC 3339 date-time: a full date, a time, optional fraction and a mandatory offset. Hours stop at 23
# and seconds at 59 so that Python and DuckDB (which takes hour 24) agree on every string.
RFC3339_PATTERN = (
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
)
_RFC3339 = re.compile(RFC3339_PATTERN)

# A dotted verb such as ``lead.assign_owner``: at least two segments.
ACTION_PATTERN = r"[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)+"

MAX_ID_LENGTH = 256


def parse_rfc3339(value: Any) -> datetime:
    """Parse an RFC 3339 timestamp with an offset and return it in UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp needs a UTC offset, e.g. 2026-10-01T09:30:00+02:00")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{value.isoformat()} falls outside years 1 to 9999 in UTC") from None
    if not isinstance(value, str):
        raise ValueError("timestamp must be an RFC 3339 string, e.g. 2026-10-01T09:30:00Z")
    if not _RFC3339.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an RFC 3339 timestamp with offset, e.g. 2026-10-01T09:30:00+02:00"
        )
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date and time: {exc}") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        raise ValueError(f"{value!r} falls outside years 1 to 9999 in UTC") from None


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": f"^{RFC3339_PATTERN}$"}),
]
"""An RFC 3339 timestamp with offset; stored and returned in UTC."""

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
_ACTION = re.compile(ACTION_PATTERN)


def _check_action(value: str) -> str:
    if not _ACTION.fullmatch(value):
        raise ValueError(f"{value!r} is not a dotted verb such as lead.assign_owner or email.send")
    return value


ActionName = Annotated[
    str,
    AfterValidator(_check_action),
    WithJsonSchema({"type": "string", "pattern": f"^{ACTION_PATTERN}$", "examples": ["lead.assign_owner"]}),
]
JsonObject = dict[str, Any]


class Resource(BaseModel):
    """The CRM record an event is about, e.g. ``{"type": "lead", "id": "L-1"}``."""

    model_config = ConfigDict(strict=True, extra="forbid")

    type: Identifier = Field(description="Record type: lead, contact, account, opportunity, ...")
    id: Identifier = Field(description="The record's id in the CRM.")
