"""A request body as a batch of events: its size, its JSON, its item count and each item's depth, checked in
that order, each before the work it bounds.

- bytes: ``max_body_bytes`` (413 body_too_large), while reading;
- items: ``limits.max_batch_items`` (413 too_many_events), counted on the bytes before anything is parsed;
- depth: ``limits.max_depth``, per event (that event alone is refused). A body nested past the JSON parser's
  own limit (~200) is split into its top-level items first, so one such event costs only itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pydantic_core
from fastapi import Request

from agentwatch.app.api.errors import ApiError
from agentwatch.core.json_structure import (
    depth_at_end,
    max_depth,
    may_nest_deeper,
    split_top_level,
    too_deep_message,
    top_level_items,
)
from agentwatch.core.limits import Limits

PARSER_DEPTH_ERROR = "recursion limit exceeded"  # what pydantic-core's parser (jiter) says past its own limit
EVENT_ID = re.compile(rb'"event_id"\s*:\s*("(?:[^"\\]|\\.){0,1000}")')


@dataclass(frozen=True)
class TooDeep:
    """An item of a batch refused for its depth before it was parsed."""

    event_id: str | None
    depth: int


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one over `limit` bytes: by Content-Length, then while reading."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"Content-Length {declared!r} is not a number") from None
        if size > limit:
            raise _too_large(size, limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(received, limit, streaming=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int, streaming: bool = False) -> ApiError:
    amount = f"more than {limit:,}" if streaming else f"{size:,}"
    return ApiError(
        413,
        "body_too_large",
        f"the request body is {amount} bytes, over this server's limit of {limit:,} bytes: split the batch "
        "into smaller ones (e.g. 500 events each)",
    )


def _strip_bom(body: bytes) -> bytes:
    return body[3:] if body.startswith(b"\xef\xbb\xbf") else body


def _invalid_json(reason: object) -> ApiError:
    return ApiError(400, "invalid_json", f"the request body is not valid JSON: {reason}; send one JSON object or a "
                                         "JSON array of them (UTF-8)")


def parse_json_body(body: bytes) -> Any:
    """The body as JSON (UTF-8, NaN and Infinity refused), or a 400 that says where it breaks."""
    body = _strip_bom(body)
    if not body.strip():
        raise ApiError(400, "invalid_json", "the request body is empty: send one JSON object or a JSON array of them")
    try:
        # pydantic-core's parser (jiter): about twice as fast as json.loads on event batches.
        return pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise _invalid_json(exc) from None


def parse_batch(body: bytes, noun: str, limits: Limits) -> list[Any]:
    """The items of a batch (one object is a batch of one), held to ``max_batch_items`` before any is parsed.

    An item nested past the parser's limit becomes a TooDeep in its place instead of failing the batch.
    """
    body = _strip_bom(body)
    # A batch of n items holds at least n - 1 commas: only a body with that many is counted exactly.
    if body.count(b",") >= limits.max_batch_items:
        count = top_level_items(body)
        if count > limits.max_batch_items:
            raise ApiError(413, "too_many_events",
                           f"the batch holds {count:,} {noun}s, over this server's limit of "
                           f"{limits.max_batch_items:,} per request (setting limits.max_batch_items): split it "
                           "into smaller batches; nothing of this one was read")
    try:
        return as_items(parse_json_body(body), noun)
    except ApiError as exc:
        if PARSER_DEPTH_ERROR not in exc.message:
            raise
    return _parse_deep(body, limits)  # rare: some item is nested past the parser's limit


def _parse_deep(body: bytes, limits: Limits) -> list[Any]:
    texts = split_top_level(body)
    if texts is None:  # one object: the whole body is one event
        texts = [body]
    items: list[Any] = []
    for index, text in enumerate(texts):
        depth = max_depth(text)
        if depth > limits.max_depth:
            items.append(TooDeep(_guess_event_id(text), depth))
            continue
        try:
            items.append(pydantic_core.from_json(text, allow_inf_nan=False))
        except ValueError as exc:
            raise _invalid_json(f"item {index} of the array: {exc}") from None
    return items


def _guess_event_id(text: bytes) -> str | None:
    """The event_id of an item too deep to parse: the first ``"event_id": "..."`` at its top level."""
    for number, match in enumerate(EVENT_ID.finditer(text, 0, 1 << 20)):
        if number == 10:  # keys of that name nested inside the event: give up rather than scan on
            break
        if depth_at_end(text[:match.start()]) == 1:
            try:
                value = json.loads(match.group(1))
            except ValueError:
                return None
            return value if isinstance(value, str) else None
    return None


def as_items(value: Any, noun: str) -> list[Any]:
    """A parsed body as a list of items: an object is a batch of one; anything else is a 400."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return value
    raise ApiError(400, "invalid_body", f"expected one {noun} (a JSON object) or a JSON array of them, got "
                                        f"{_json_type(value)}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def too_deep(text: bytes, limits: Limits) -> int | None:
    """The depth of an event's JSON text when it is over ``limits.max_depth``, else None (usually decided by
    counting brackets)."""
    if not may_nest_deeper(text, limits.max_depth):
        return None
    depth = max_depth(text)
    return depth if depth > limits.max_depth else None


def depth_message(depth: int | None, limits: Limits) -> str:
    """Why an event too deep is refused, naming the bound and its setting."""
    return too_deep_message(depth, limits.max_depth)
