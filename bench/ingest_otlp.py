"""OTLP ingest speed against native ingest, end to end (issue 15): spans/s through ``POST /v1/traces`` vs events/s
through ``POST /v1/actions``, the same events on both sides.

    python bench/ingest_otlp.py                               # 100k events, 512 per request, 3 connections
    python bench/ingest_otlp.py --events 300000 --connections 2

Builds ingest_http's realistic action events (about 600 bytes, inputs and decision objects) and the same events as
OTLP spans: each one GenAI ``execute_tool`` span carrying ``agentwatch.*`` attributes (action, agent, resource,
inputs and decision as JSON texts, confidence), with the event's trace and span ids, start time, latency and, for
a failed call, an error status, ``error.type`` and an exception event. The spans go into protobuf
``ExportTraceServiceRequest`` bodies built with the official generated classes, 512 spans a request (the SDK's
default ``max_export_batch_size``) under one resource and scope, as an SDK exporter sends them. Building is not
timed.

Then three runs, each on a fresh AGENTWATCH_HOME and a fresh ``serve`` (checks off, flush interval 1 s): the JSON
bodies to ``/v1/actions``, the protobuf bodies to ``/v1/traces``, and the protobuf bodies gzip-compressed (level 9,
as the exporters' gzip) to ``/v1/traces``. Each run measures the time until every request is acknowledged (200:
fsynced in the WAL), then until every event is in the store, and the server's CPU per event (Linux). It checks that
every span became exactly one stored action and that the stored actions are the native ones field by field (all but
event_id and extra). Prints one JSON line with the rates and the ratios OTLP / native.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import google.protobuf
import httpx
from google.protobuf.internal import api_implementation
from ingest_http import (
    free_port,
    json_counts,
    make_bodies,
    send_all,
    start_server,
    stored_count,
    wait_drained,
    wait_healthy,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from opentelemetry.sdk.version import __version__ as sdk_version

from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.store.reader import open_reader

BATCH = 512  # BatchSpanProcessor's default max_export_batch_size
PROTOBUF = "application/x-protobuf"
# Every stored column but event_id/event_key (otel-<trace>-<span> vs act-...), extra (the OTLP side keeps its
# span name, tool name and scope there) and ingested_at.
COMPARED = ("ts, agent_id, agent_version, action, resource_type, resource_id, status, inputs, before, after, "
            "decision, confidence, rationale, authorized_by, approved_by, approved_at, external, records_affected, "
            "error_code, error_message, latency_ms, trace_id, span_id, day")


def _text(value: str) -> AnyValue:
    return AnyValue(string_value=value)


def _attr(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=_text(value))


def _nanos(ts: str) -> int:
    """An RFC 3339 time with whole seconds (ingest_http's) as Unix nanoseconds."""
    return int(datetime.fromisoformat(ts).timestamp()) * 10**9


def event_span(event: dict[str, Any], index: int) -> Span:
    """One native action event as the ``execute_tool`` span an instrumented agent would export for it."""
    tool = event["action"].replace(".", "_")
    start = _nanos(event["ts"])
    attributes = [
        _attr("gen_ai.operation.name", "execute_tool"),
        _attr("gen_ai.tool.name", tool),
        _attr("gen_ai.tool.type", "function"),
        _attr("gen_ai.tool.call.id", f"call_{index:012d}"),
        _attr("agentwatch.agent_id", event["agent_id"]),
        _attr("agentwatch.agent_version", event["agent_version"]),
        _attr("agentwatch.action", event["action"]),
        _attr("agentwatch.resource.type", event["resource"]["type"]),
        _attr("agentwatch.resource.id", event["resource"]["id"]),
        _attr("agentwatch.inputs", json.dumps(event["inputs"], separators=(",", ":"))),
        _attr("agentwatch.decision", json.dumps(event["decision"], separators=(",", ":"))),
        _attr("agentwatch.confidence", float(event["confidence"])),
    ]
    span = Span(
        trace_id=bytes.fromhex(event["trace_id"]),
        span_id=bytes.fromhex(event["span_id"]),
        parent_span_id=(index * 2654435761 % 2**64 or 1).to_bytes(8, "big"),  # the agent run, in another export
        name=f"execute_tool {tool}",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start,
        end_time_unix_nano=start + event["latency_ms"] * 10**6,
        attributes=attributes,
    )
    if event["status"] == "error":
        error = event["error"]
        span.attributes.append(_attr("error.type", error["code"]))
        span.status.code = Status.STATUS_CODE_ERROR
        span.status.message = error["message"]
        span.events.add(time_unix_nano=span.end_time_unix_nano, name="exception", attributes=[
            _attr("exception.type", error["code"]), _attr("exception.message", error["message"])])
    return span


def make_otlp_bodies(events: list[dict[str, Any]], batch: int = BATCH) -> list[bytes]:
    """The events as serialized ``ExportTraceServiceRequest`` bodies of `batch` spans, one resource and scope each."""
    resource = Resource(attributes=[
        _attr("service.name", "sales-agents"), _attr("service.version", "2.4.0"),
        _attr("service.instance.id", "6f1c2a4e-0b7d-4f5e-9a51-3c2d8e7f9b10"),
        _attr("deployment.environment.name", "production"), _attr("host.name", "agents-7c9f5d-x2kq4"),
        _attr("process.pid", 4127), _attr("process.runtime.name", "cpython"),
        _attr("process.runtime.version", platform.python_version()),
        _attr("telemetry.sdk.language", "python"), _attr("telemetry.sdk.name", "opentelemetry"),
        _attr("telemetry.sdk.version", sdk_version)])
    scope = InstrumentationScope(name="sales_agents.lead_router", version="1.4.0")
    bodies = []
    for first in range(0, len(events), batch):
        spans = [event_span(e, first + i) for i, e in enumerate(events[first:first + batch])]
        request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)],
            schema_url="https://opentelemetry.io/schemas/1.26.0")])
        bodies.append(request.SerializeToString())
    return bodies


class OtlpCounts:
    """Reads (accepted, duplicates) from a ``/v1/traces`` answer's headers; keeps any partial success."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rejected = 0
        self.messages: list[str] = []

    def __call__(self, response: httpx.Response) -> tuple[int, int]:
        answer = ExportTraceServiceResponse.FromString(response.content)
        if answer.partial_success.rejected_spans:
            with self.lock:
                self.rejected += answer.partial_success.rejected_spans
                self.messages.append(answer.partial_success.error_message[:500])
        return (int(response.headers["Agentwatch-Actions-Accepted"]), int(response.headers["Agentwatch-Duplicates"]))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    name: str
    home: Home
    ack_s: float
    stored_s: float
    accepted: int
    duplicates: int
    stored: int
    server_cpu_s: float | None  # the server's CPU from the first request until the store held every event

    def figures(self, events: int) -> dict[str, Any]:
        cpu = self.server_cpu_s
        return {"ack_seconds": round(self.ack_s, 3), "ack_per_s": round(events / self.ack_s),
                "stored_seconds": round(self.stored_s, 3), "stored_per_s": round(events / self.stored_s),
                "server_cpu_us_per_event": round(cpu / events * 1e6, 1) if cpu is not None else None}


def measure(name: str, root: Path, bodies: list[bytes], connections: int, flush_interval: float, path: str,
            headers: dict[str, str] | None,
            counts: Callable[[httpx.Response], tuple[int, int]] = json_counts) -> Run:
    """One run on a fresh home and server: send every body, wait until the store holds them all."""
    home = Home.resolve(root / name / "home")
    log = root / name / "server.log"
    token = KeyStore(home).create("ingest", name="bench")[1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(home, port, flush_interval, log, check_every_s=None)
    try:
        wait_healthy(base, server, log)
        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        accepted, duplicates = send_all(base, token, bodies, connections, path=path, headers=headers, counts=counts)
        acked = time.perf_counter() - started
        wait_drained(base)
        stored_at = time.perf_counter() - started
        cpu_after = cpu_seconds(server.pid)
        stored = stored_count(home)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    print(f"{name}: {accepted} accepted, {duplicates} duplicates, {stored} stored; acknowledged in {acked:.2f} s, "
          f"stored in {stored_at:.2f} s", file=sys.stderr)
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return Run(name, home, acked, stored_at, accepted, duplicates, stored, cpu)


def stored_rows(home: Home) -> list[tuple]:
    con = open_reader(home)
    try:
        return con.execute(f"SELECT {COMPARED} FROM actions ORDER BY trace_id, span_id").fetchall()
    finally:
        con.close()


def one_action_per_span(home: Home, events: int) -> None:
    """Every span exactly one stored action: as many rows as events, every id once, every id of the OTLP form."""
    con = open_reader(home)
    try:
        rows, ids, otel = con.execute(
            "SELECT count(*), count(DISTINCT event_id), "
            "count(*) FILTER (WHERE event_id = 'otel-' || trace_id || '-' || span_id) FROM actions").fetchall()[0]
    finally:
        con.close()
    assert rows == ids == otel == events, f"{events} spans gave {rows} rows, {ids} ids, {otel} of the otel form"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=3, help="concurrent keep-alive connections (2-4)")
    parser.add_argument("--flush-interval", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes and the server logs")
    args = parser.parse_args()

    json_bodies = make_bodies(args.events, BATCH)
    events = [event for body in json_bodies for event in json.loads(body)]
    otlp_bodies = make_otlp_bodies(events)
    gzip_bodies = [gzip.compress(body) for body in otlp_bodies]
    root = Path(tempfile.mkdtemp(prefix="agentwatch-bench-otlp-"))
    try:
        native = measure("native", root, json_bodies, args.connections, args.flush_interval, "/v1/actions", None)
        runs = [native]
        for name, bodies, encoding in (("otlp", otlp_bodies, {}), ("otlp_gzip", gzip_bodies,
                                                                   {"Content-Encoding": "gzip"})):
            counts = OtlpCounts()
            run = measure(name, root, bodies, args.connections, args.flush_interval, "/v1/traces",
                          {"Content-Type": PROTOBUF, **encoding}, counts)
            assert counts.rejected == 0, f"{name}: {counts.rejected} spans rejected: {counts.messages[:3]}"
            runs.append(run)
        for run in runs:
            assert run.accepted == run.stored == args.events and run.duplicates == 0, (
                f"{run.name}: expected {args.events} events, got {run.accepted} accepted, {run.duplicates} duplicates "
                f"and {run.stored} stored; see {root / run.name / 'server.log'}")
        expected = stored_rows(native.home)
        for run in runs[1:]:
            one_action_per_span(run.home, args.events)
            assert stored_rows(run.home) == expected, f"{run.name}: the stored actions differ from the native ones"
        print(f"verified: each of the {args.events} spans is exactly one stored action, equal to its native event "
              "(event_id and extra aside)", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    native_figures, otlp, otlp_gzip = (run.figures(args.events) for run in runs)
    result = {
        "bench": "ingest_otlp",
        "events": args.events,
        "batch": BATCH,
        "connections": args.connections,
        "bytes_per_event_json": round(sum(map(len, json_bodies)) / args.events),
        "bytes_per_span_protobuf": round(sum(map(len, otlp_bodies)) / args.events),
        "bytes_per_span_gzip": round(sum(map(len, gzip_bodies)) / args.events),
        "native": native_figures,
        "otlp": otlp,
        "otlp_gzip": otlp_gzip,
        "ratio_ack": round(otlp["ack_per_s"] / native_figures["ack_per_s"], 3),
        "ratio_stored": round(otlp["stored_per_s"] / native_figures["stored_per_s"], 3),
        "ratio_gzip_ack": round(otlp_gzip["ack_per_s"] / native_figures["ack_per_s"], 3),
        "ratio_gzip_stored": round(otlp_gzip["stored_per_s"] / native_figures["stored_per_s"], 3),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "protobuf": f"{google.protobuf.__version__} ({api_implementation.Type()})",
        "platform": platform.platform(),
        "command": " ".join(["python", *sys.argv]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
