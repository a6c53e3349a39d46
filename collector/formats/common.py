"""Helpers shared by the vendor payload mappers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError


def resolve_taken_at(taken_at: datetime | None) -> datetime:
    """``taken_at`` in UTC; now when not given. A naive time is refused rather than guessed."""
    if taken_at is None:
        return datetime.now(UTC)
    if not isinstance(taken_at, datetime):
        raise TypeError(f"taken_at must be a datetime with a UTC offset; got {type(taken_at).__name__}")
    if taken_at.tzinfo is None or taken_at.utcoffset() is None:
        raise ValueError(f"taken_at needs a UTC offset (e.g. tzinfo=UTC); got naive {taken_at.isoformat()}")
    return taken_at.astimezone(UTC)


def keys_preview(payload: Mapping[str, Any], limit: int = 12) -> str:
    """The payload's top-level keys, sorted and capped, for error messages."""
    keys = sorted(str(key) for key in payload)
    shown = ", ".join(repr(key) for key in keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}]"


def summarize_validation_error(exc: ValidationError) -> str:
    """A pydantic error as one line: ``loc: message; loc: message``."""
    parts = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        parts.append(f"{loc}: {error['msg']}" if loc else error["msg"])
    return "; ".join(parts)
