"""OTLP attribute values as plain Python, and the JSON texts conventions put in string attributes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pydantic_core
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

MAX_VALUE_DEPTH = 100  # protobuf's own parser stops at 100 levels: nothing decoded is deeper


def plain(value: AnyValue) -> Any:
    """An AnyValue as Python: str, bool, int, float, bytes as hex, list, dict; unset is None."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [plain(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """Key-value pairs as a dict (a repeated key: the last wins, as in the SDKs)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        value = pair.value
        which = value.WhichOneof("value")
        # The scalars, nearly every attribute, read directly: this loop runs for every attribute of every span.
        if which == "string_value":
            out[pair.key] = value.string_value
        elif which == "int_value":
            out[pair.key] = value.int_value
        elif which == "double_value":
            out[pair.key] = value.double_value
        elif which == "bool_value":
            out[pair.key] = value.bool_value
        else:
            out[pair.key] = plain(value)
    return out


def json_object(value: Any) -> dict[str, Any] | None:
    """A mapping, or a JSON text of one (conventions carry arguments and results as JSON strings); else None."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value[:1] == "{":
        try:
            parsed = pydantic_core.from_json(value)  # several times faster than json.loads
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def json_value(value: Any) -> Any:
    """A JSON text parsed when it is one (objects and arrays), else the value as it is."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return pydantic_core.from_json(value)
        except ValueError:
            return value
    return value


def at_path(root: Any, keys: list[str]) -> Any:
    """``root[k1][k2]...`` through mappings (and list indexes), None when any step is missing."""
    for key in keys:
        if isinstance(root, dict):
            root = root.get(key)
        elif isinstance(root, list) and key.isdigit() and int(key) < len(root):
            root = root[int(key)]
        else:
            return None
    return root
