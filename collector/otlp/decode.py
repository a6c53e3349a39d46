"""An OTLP/HTTP trace export body as an ``ExportTraceServiceRequest``: protobuf or JSON, gzip or not.

1. Inflate a gzip body (``Content-Encoding: gzip``) piece by piece, stopping past ``max_body_bytes``: a small
   compressed body must not inflate to gigabytes in memory.
2. Protobuf (``application/x-protobuf``, the exporters' default) is parsed by the official generated classes.
3. JSON (``application/json``) follows OTLP/JSON's own rules, which differ from protobuf's canonical JSON in one
   place: trace and span ids are hex strings, not base64. They are rewritten to base64 before the official
   parser reads the rest (unknown keys ignored, as OTLP asks of receivers). An id that is not hex does not fail
   the body: it becomes empty, and its span is rejected on its own with the reason kept in ``bad_ids``.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentwatch.core.errors import FormatError
from agentwatch.core.json_structure import max_depth, may_nest_deeper

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
INFLATE_PIECE = 64 << 10
ENVELOPE_DEPTH = 16
ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")

SpanPlace = tuple[int, int, int]  # (resource, scope, span) indexes in the request


class OtlpBodyError(FormatError):
    """The body is not an OTLP trace export in the encoding it declares; nothing of it was read."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class DecodedExport:
    """The request, its encoding, and the spans whose ids could not be read (place -> reason)."""

    request: ExportTraceServiceRequest
    encoding: str  # PROTOBUF or JSON
    bad_ids: dict[SpanPlace, str] = field(default_factory=dict)


def media_type(content_type: str | None) -> str:
    """The body's encoding from its Content-Type (parameters ignored); anything else is a 415."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in (PROTOBUF, JSON):
        return kind
    raise OtlpBodyError(f"Content-Type {content_type or '(none)'!r} is not an OTLP encoding: send "
                        f"{PROTOBUF} (the exporters' default) or {JSON}", status=415)


def inflate(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body, inflated when it is gzip; more than `limit` bytes inflated is a 413."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise OtlpBodyError(f"Content-Encoding {content_encoding!r} is not supported: send gzip or no encoding",
                            status=415)
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    pieces: list[bytes] = []
    size = 0
    data = body
    try:
        while data:
            piece = inflater.decompress(data, INFLATE_PIECE)
            size += len(piece)
            if size > limit:
                raise OtlpBodyError(f"the gzip body inflates to more than {limit:,} bytes, over this server's "
                                    "limit (setting api max_body_bytes): export smaller batches", status=413)
            pieces.append(piece)
            data = inflater.unconsumed_tail
        if not inflater.eof:
            raise OtlpBodyError("the gzip body is truncated: it ends before its gzip trailer")
    except zlib.error as exc:
        raise OtlpBodyError(f"the body is not valid gzip although Content-Encoding says so: {exc}") from None
    return b"".join(pieces)


def decode_export(body: bytes, encoding: str, max_event_depth: int) -> DecodedExport:
    """The export request a body holds, in the encoding its Content-Type named."""
    if encoding == PROTOBUF:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpBodyError(f"the body is not a protobuf ExportTraceServiceRequest: {exc}; send what an OTLP "
                                "exporter sends, or JSON with Content-Type application/json") from None
        return DecodedExport(request, PROTOBUF)
    return _decode_json(body, max_event_depth)


def json_depth_bound(max_event_depth: int) -> int:
    """How deep an OTLP/JSON body may nest: each level of an attribute value costs four levels of JSON
    (``{"kvlistValue": {"values": [{"value": ...}]}}``), under an envelope of about ten."""
    return 4 * max_event_depth + ENVELOPE_DEPTH


def _decode_json(body: bytes, max_event_depth: int) -> DecodedExport:
    bound = json_depth_bound(max_event_depth)
    if may_nest_deeper(body, bound) and (depth := max_depth(body)) > bound:
        raise OtlpBodyError(f"the JSON body nests {depth} levels deep, over this server's limit of {bound} "
                            f"(four times limits.max_depth, plus {ENVELOPE_DEPTH} for OTLP's envelope)")
    try:
        data = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise OtlpBodyError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OtlpBodyError("the JSON body should be an object with a resourceSpans array (OTLP/JSON "
                            "ExportTraceServiceRequest)")
    bad_ids = _hex_ids_to_base64(data)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True, max_recursion_depth=bound)
    except json_format.ParseError as exc:
        raise OtlpBodyError(f"the JSON body is not an OTLP ExportTraceServiceRequest: {exc}") from None
    return DecodedExport(request, JSON, bad_ids)


def _hex_ids_to_base64(data: dict[str, Any]) -> dict[SpanPlace, str]:
    """Rewrite the hex ids of spans (and their links) in place as base64; returns the spans with unreadable ids."""
    bad: dict[SpanPlace, str] = {}
    for r, resource_spans in enumerate(_items(data, "resourceSpans", "resource_spans")):
        for s, scope_spans in enumerate(_items(resource_spans, "scopeSpans", "scope_spans")):
            for i, span in enumerate(_items(scope_spans, "spans")):
                if not isinstance(span, dict):
                    continue
                problems = _rewrite_ids(span)
                for link in _items(span, "links"):
                    if isinstance(link, dict):
                        problems += [f"link {p}" for p in _rewrite_ids(link)]
                if problems:
                    bad[(r, s, i)] = "; ".join(problems)
    return bad


def _items(parent: Any, *keys: str) -> list[Any]:
    if not isinstance(parent, dict):
        return []
    for key in keys:
        value = parent.get(key)
        if isinstance(value, list):
            return value
    return []


def _rewrite_ids(holder: dict[str, Any]) -> list[str]:
    problems = []
    for key in ID_KEYS:
        value = holder.get(key)
        if not isinstance(value, str) or not value:
            continue
        try:
            holder[key] = base64.b64encode(bytes.fromhex(value)).decode()
        except ValueError:
            problems.append(f"{key} {value[:40]!r} is not hex")
            holder[key] = ""
    return problems


def hex_id(raw: bytes) -> str:
    """An id as OTLP/JSON and every trace viewer write it: lower-case hex."""
    return raw.hex()
