"""The real OpenTelemetry SDK and its OTLP/HTTP protobuf exporter against a real `agentwatch serve` on loopback.

An agent run (`invoke_agent`) with two tool calls (`execute_tool`, one failing), exported twice, must give exactly
two actions with the right agent, status, error and latency; the second export must be all duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from agentwatch.checks.engine import incident_store
from agentwatch.client import Client
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from tests.live_support import Server, agentwatch, free_port, stop, stored_rows

FLUSH_TIMEOUT_S = 60.0


@pytest.fixture
def server(home: Home, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real `agentwatch serve` (checks off), its URL and an ingest key."""
    running = Server(home, free_port(), KeyStore(home).create("ingest", name="otlp sdk test")[1],
                     tmp_path / "serve.log").start()
    try:
        yield running.url, running.key
    finally:
        assert running.process is not None
        stop(running.process)


def agent_run() -> list:
    """One `invoke_agent` span with two `execute_tool` children, the second failing, as the SDK records them."""
    captured = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "sales-agents"}))
    provider.add_span_processor(SimpleSpanProcessor(captured))
    tracer = provider.get_tracer("lead-router-agent", "1.4.0")
    with tracer.start_as_current_span("invoke_agent lead-router", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": "lead-router",
            "gen_ai.agent.name": "Lead router", "gen_ai.agent.version": "2.3.0", "gen_ai.provider.name": "openai"}):
        with tracer.start_as_current_span("execute_tool lookup_account", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_account",
                "gen_ai.tool.call.id": "call_1", "gen_ai.tool.call.arguments": '{"domain": "acme.example"}'}):
            time.sleep(0.02)
        with tracer.start_as_current_span("execute_tool update_crm_record", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "update_crm_record",
                "gen_ai.tool.call.id": "call_2"}, record_exception=False, set_status_on_exception=False) as span:
            try:
                raise TimeoutError("CRM did not answer in 30 s")
            except TimeoutError as exc:
                span.record_exception(exc)
                span.set_attribute("error.type", "TimeoutError")
                span.set_status(Status(StatusCode.ERROR, "CRM did not answer in 30 s"))
    provider.shutdown()
    spans = list(captured.get_finished_spans())
    assert len(spans) == 3
    return spans


def stored_actions(home: Home, expected: int) -> list[tuple]:
    """The stored actions once `expected` of them reached the store (the WAL flushes every 0.2 s)."""
    return stored_rows(home, "SELECT agent_id, agent_version, action, status, error_code, error_message, latency_ms, "
                             "trace_id, span_id, event_id FROM actions ORDER BY ts", expected)


def test_the_sdk_exporter_twice_gives_two_actions_then_only_duplicates(
        server: tuple[str, str], home: Home) -> None:
    url, key = server
    spans = agent_run()
    answers: list[requests.Response] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *args, **kwargs: answers.append(response))
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {key}"},
                                compression=Compression.Gzip, session=session, timeout=30)

    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()

    first, second = answers
    assert first.headers["content-type"] == "application/x-protobuf"
    assert (first.headers["Agentwatch-Actions-Accepted"], first.headers["Agentwatch-Spans-Counted"]) == ("2", "1")
    assert (second.headers["Agentwatch-Actions-Accepted"], second.headers["Agentwatch-Spans-Counted"]) == ("0", "0")
    assert second.headers["Agentwatch-Duplicates"] == "3"

    rows = stored_actions(home, 2)
    assert len(rows) == 2, rows
    by_action = {row[2]: row for row in rows}
    lookup, update = by_action["tool.lookup_account"], by_action["tool.update_crm_record"]
    assert lookup[:6] == ("lead-router", "2.3.0", "tool.lookup_account", "ok", None, None)
    assert update[:6] == ("lead-router", "2.3.0", "tool.update_crm_record", "error", "TimeoutError",
                          "CRM did not answer in 30 s")
    tool_spans = {s.name: s for s in spans}
    for row, name in ((lookup, "execute_tool lookup_account"), (update, "execute_tool update_crm_record")):
        span = tool_spans[name]
        assert row[6] == pytest.approx((span.end_time - span.start_time) / 1e6)
        assert row[7] == f"{span.context.trace_id:032x}" and row[8] == f"{span.context.span_id:016x}"
        assert row[9] == f"otel-{row[7]}-{row[8]}"
    assert lookup[6] >= 20  # the 20 ms the tool took


def test_a_forbidden_tool_call_seen_through_otlp_pauses_the_agent_for_the_client(
        server: tuple[str, str], home: Home) -> None:
    """The live path end to end: the SDK's batch exporter sends a tool call the config maps to a forbidden action;
    a fresh `agentwatch check` opens the incident, the guard pauses the agent, the client's allowed() says so."""
    url, key = server
    home.config_file.write_text(
        "agents:\n  lead-router: {forbidden_actions: [record.delete]}\n"
        "guard:\n  pause_on: [policy.*]\n"
        "otlp:\n  tools:\n    delete_lead: {action: record.delete, resource: {type: lead, id: args.lead_id}}\n")
    with Client(url, key, agent_id="lead-router", guard_cache_s=0.1) as aw:
        assert aw.allowed() is True
        provider = TracerProvider(resource=Resource.create({"service.name": "sales-agents",
                                                            "agentwatch.agent_id": "lead-router"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {key}"}, timeout=30)))
        tracer = provider.get_tracer("lead-router-agent")
        with tracer.start_as_current_span("execute_tool delete_lead", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "delete_lead",
                "gen_ai.tool.call.arguments": '{"lead_id": "00Q5e00000AbCdE"}'}):
            pass
        assert provider.force_flush(timeout_millis=60_000)
        provider.shutdown()
        (row,) = stored_actions(home, 1)
        assert row[:3] == ("lead-router", None, "record.delete")

        agentwatch(home, "check")
        (incident,) = [i for i in incident_store(home).list() if i.check == "policy.forbidden_action"]
        assert (incident.subject, incident.severity) == ({"agent_id": "lead-router", "action": "record.delete"},
                                                         "critical")
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while aw.allowed() and time.monotonic() < deadline:
            time.sleep(0.2)
        decision = aw.guard()
        assert (decision.allowed, decision.incident_id) == (False, incident.id)
