"""``POST /v1/traces``: OTLP/HTTP trace exports in, as action events and span summaries.

1. The body is read under ``max_body_bytes``, inflated (gzip) under the same bound, and decoded as the
   Content-Type says (``agentwatch.collector.otlp.decode``); a body that does not decode is refused whole (400).
2. An export of more spans than ``limits.max_batch_items`` is refused whole (413), as a batch of events is.
3. Spans are mapped (``agentwatch.collector.otlp.mapping``); each event is then validated by the same models and
   rules as ``/v1/actions``; a span whose event fails is rejected on its own, named by its ids.
4. The valid events are logged to the write-ahead log (fsynced) before the answer: 200 means on disk.
5. The answer is OTLP's ``ExportTraceServiceResponse`` in the request's encoding, with ``partial_success``
   (``rejected_spans`` and a message naming the first rejected spans and why) when some were rejected. Headers
   add agentwatch's counts: ``Agentwatch-Actions-Accepted``, ``Agentwatch-Spans-Counted``,
   ``Agentwatch-Duplicates``.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agentwatch.app.api.auth import require_ingest
from agentwatch.app.api.body import read_body
from agentwatch.app.api.errors import ERROR_RESPONSES, ApiError
from agentwatch.app.api.events import check_events, log_events
from agentwatch.app.api.storage import DiskFull
from agentwatch.app.api.watched_config import WatchedConfig
from agentwatch.app.metrics import count_events
from agentwatch.collector.ingest.rejects import FieldError, Rejection, RejectLog
from agentwatch.collector.otlp.config import OtlpConfig
from agentwatch.collector.otlp.decode import PROTOBUF, OtlpBodyError, decode_export, inflate, media_type
from agentwatch.collector.otlp.mapping import MappedExport, SpanRef, SpanRejection, map_export
from agentwatch.collector.wal import WriteAheadLog
from agentwatch.core.api_keys import ApiKey
from agentwatch.core.limits import Limits
from agentwatch.store.datasets import ACTIONS, SPANS, Dataset

log = logging.getLogger(__name__)
router = APIRouter()
REJECTS_DATASET = "traces"  # rejects/traces-*.jsonl; `status` counts them under this name
SOURCE = "POST /v1/traces"

TRACES_DESCRIPTION = """
OpenTelemetry traces, as OTLP/HTTP exporters send them: an `ExportTraceServiceRequest` as protobuf
(`Content-Type: application/x-protobuf`, the exporters' default) or as OTLP/JSON (`application/json`), gzip
(`Content-Encoding: gzip`) or not. Point an exporter at `<server>/v1/traces` with the header
`Authorization=Bearer <key>` (scope `ingest`); docs/otlp.md shows the SDK, the OpenAI Agents SDK and LangChain.

Tool spans (GenAI `execute_tool`, OpenInference `TOOL`, or any span with `agentwatch.action`) become action
events; every other span (model calls, agent runs, unmatched spans) a span summary counted per agent in
`status`. The event id is `otel-<trace_id>-<span_id>`, so an export sent again is all duplicates.

The answer is OTLP's `ExportTraceServiceResponse` in the request's encoding; when some spans were rejected
(missing ids, absurd times, an event that fails validation, a tool mapping that does not apply),
`partialSuccess.rejectedSpans` counts them and `errorMessage` names the first ones and why; the other spans
were kept. Headers `Agentwatch-Actions-Accepted`, `Agentwatch-Spans-Counted` and `Agentwatch-Duplicates`
count what was stored. Errors that refuse the whole body (400, 401, 403, 413, 415, 429, 503, 507) are a
`google.rpc.Status` for a protobuf request, and the usual error shape for a JSON one.
"""

TRACES_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored (the accepted events are on disk). A partial success names the rejected spans.",
          "content": {
              "application/x-protobuf": {"schema": {"type": "string", "format": "binary",
                                                    "description": "ExportTraceServiceResponse"}},
              "application/json": {"example": {"partialSuccess": {
                  "rejectedSpans": "1",
                  "errorMessage": "1 of 3 spans rejected: span 00f067aa0ba902b7 of trace "
                                  "4bf92f3577b34da6a3ce929d0e0e4736 ('execute_tool update_crm_record'): it ends "
                                  "12 ms before it starts"}}}}},
    **ERROR_RESPONSES,
    413: {"description": "The body, or its gzip inflated, is over `max_body_bytes`, or the export holds more "
                         "spans than `limits.max_batch_items`: nothing was read."},
    415: {"description": "The Content-Type is not application/x-protobuf or application/json, or the "
                         "Content-Encoding is not gzip."},
    503: {"description": "The server is starting or cannot log events now; retry after Retry-After."},
    507: {"description": "The disk is full: nothing of this export was acknowledged."},
}

TRACES_REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/x-protobuf": {"schema": {"type": "string", "format": "binary",
                                          "description": "opentelemetry.proto.collector.trace.v1."
                                                         "ExportTraceServiceRequest"}},
    "application/json": {"schema": {"type": "object", "description": "OTLP/JSON ExportTraceServiceRequest"},
                         "example": {"resourceSpans": [{
                             "resource": {"attributes": [{"key": "service.name",
                                                          "value": {"stringValue": "lead-router"}}]},
                             "scopeSpans": [{"spans": [{
                                 "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
                                 "name": "execute_tool update_crm_record", "kind": 1,
                                 "startTimeUnixNano": "1790000000000000000", "endTimeUnixNano": "1790000000412000000",
                                 "attributes": [
                                     {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                                     {"key": "gen_ai.tool.name", "value": {"stringValue": "update_crm_record"}}],
                                 "status": {}}]}]}]}},
}}}


def trace_config(request: Request) -> WatchedConfig:
    """The app's config, as the guard reads it too (``app.state.config_watch``)."""
    watched: WatchedConfig = request.app.state.config_watch
    return watched


@router.post(
    "/v1/traces",
    tags=["events"],
    summary="Send OpenTelemetry traces (OTLP/HTTP)",
    description=TRACES_DESCRIPTION,
    responses=TRACES_RESPONSES,
    openapi_extra=TRACES_REQUEST_BODY,
    response_class=Response,
)
async def post_traces(
    request: Request,
    key: Annotated[ApiKey, Depends(require_ingest)],
    config: Annotated[WatchedConfig, Depends(trace_config)],
) -> Response:
    app = request.app
    encoding = _encoding(request)
    app.state.startup.require_ready()
    settings = app.state.settings
    body = await read_body(request, settings.max_body_bytes)
    otlp = config.get("OTLP ingest").otlp
    return await run_in_threadpool(
        ingest_traces, app.state.wal, app.state.disk_full, body, encoding,
        request.headers.get("content-encoding"), settings.max_body_bytes, settings.limits, otlp, _rejects(app))


def _rejects(app: Any) -> RejectLog:
    """The server run's file of rejected spans (``rejects/traces-<time>-<pid>-<random>.jsonl``), made once."""
    log_file = getattr(app.state, "trace_rejects", None)
    if log_file is None:
        log_file = app.state.trace_rejects = RejectLog(app.state.home.rejects, REJECTS_DATASET)
    return log_file


def _encoding(request: Request) -> str:
    try:
        return media_type(request.headers.get("content-type"))
    except OtlpBodyError as exc:
        raise ApiError(exc.status, "unsupported_media_type", str(exc)) from None


def ingest_traces(wal: WriteAheadLog, disk_full: DiskFull, body: bytes, encoding: str, content_encoding: str | None,
                  max_body_bytes: int, limits: Limits, otlp: OtlpConfig, rejects: RejectLog | None = None) -> Response:
    """Decode, map, validate and log one export (the module's steps 1 to 5)."""
    try:
        decoded = decode_export(inflate(body, content_encoding, max_body_bytes), encoding, limits.max_depth)
    except OtlpBodyError as exc:
        code = {413: "body_too_large", 415: "unsupported_media_type"}.get(exc.status, "invalid_otlp")
        raise ApiError(exc.status, code, str(exc)) from None
    spans = sum(len(s.spans) for r in decoded.request.resource_spans for s in r.scope_spans)
    if spans > limits.max_batch_items:
        raise ApiError(413, "too_many_events", f"the export holds {spans:,} spans, over this server's limit of "
                       f"{limits.max_batch_items:,} per request (setting limits.max_batch_items): export smaller "
                       "batches (the SDK's max_export_batch_size); nothing of this one was read")
    mapped = map_export(decoded, otlp)
    action_ids, action_lines = _valid(ACTIONS, mapped.actions, mapped.action_spans, mapped, limits)
    span_ids, span_lines = _valid(SPANS, mapped.summaries, mapped.summary_spans, mapped, limits)
    accepted, duplicates = log_events(wal, disk_full, ACTIONS, action_ids, action_lines)
    counted, span_duplicates = log_events(wal, disk_full, SPANS, span_ids, span_lines)
    count_events("/v1/traces", "actions", accepted, duplicates, 0)
    count_events("/v1/traces", "spans", counted, span_duplicates, len(mapped.rejected))
    if rejects is not None and mapped.rejected:
        # Exporters do not read a partial success: the rejects folder and `status` are where a person sees them.
        rejects.write([_rejection(number, rejection) for number, rejection in enumerate(mapped.rejected, 1)])
    headers = {"Agentwatch-Actions-Accepted": str(accepted), "Agentwatch-Spans-Counted": str(counted),
               "Agentwatch-Duplicates": str(duplicates + span_duplicates)}
    return _answer(encoding, mapped, limits, headers)


def _valid(dataset: Dataset, events: list[dict[str, Any]], refs: list[SpanRef], mapped: MappedExport,
           limits: Limits) -> tuple[list[str], list[bytes]]:
    """The ids and JSON lines of the events that pass validation; the others become span rejections."""
    ids, lines, _, refused = check_events(dataset, events, limits, built_here=True)
    for rejection in refused:
        errors = "; ".join(f"{e['field'] or 'the event'}: {e['message']}" for e in rejection["errors"])
        mapped.rejected.append(SpanRejection(refs[rejection["index"]], f"its {dataset.name[:-1]} event is invalid: "
                                                                       f"{errors}"))
    return ids, lines


def _rejection(number: int, rejection: SpanRejection) -> Rejection:
    span = rejection.span
    raw = json.dumps({"trace_id": span.trace_id, "span_id": span.span_id, "name": span.name})
    return Rejection(SOURCE, "span", number, f"otel-{span.trace_id}-{span.span_id}",
                     (FieldError("", rejection.reason),), raw)


def _answer(encoding: str, mapped: MappedExport, limits: Limits, headers: dict[str, str]) -> Response:
    response = ExportTraceServiceResponse()
    if mapped.rejected:
        shown = mapped.rejected[:limits.max_error_details]
        more = len(mapped.rejected) - len(shown)
        message = (f"{len(mapped.rejected)} of {mapped.total} spans rejected: "
                   + "; ".join(r.text() for r in shown) + (f"; and {more} more" if more else ""))
        response.partial_success.rejected_spans = len(mapped.rejected)
        response.partial_success.error_message = message
        log.warning("POST /v1/traces: %s", message[:2000])
    if encoding == PROTOBUF:
        return Response(response.SerializeToString(), media_type=PROTOBUF, headers=headers)
    return Response(json_format.MessageToJson(response, indent=None), media_type="application/json",
                    headers=headers)
