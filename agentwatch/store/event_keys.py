"""The 64-bit key of an event id, identical in Python and in DuckDB (``md5_number_lower``)."""

from __future__ import annotations

import hashlib


def event_key(event_id: str) -> int:
    """The lower 64 bits of the id's MD5, as DuckDB's ``md5_number_lower`` computes them."""
    return int.from_bytes(hashlib.md5(event_id.encode("utf-8")).digest()[8:], "little")
