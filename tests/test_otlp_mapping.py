"""OTLP spans into agentwatch events: the real payloads of shared/realdata/otel (read in place, never copied) and the
project's own fixtures of the same shape (tests/fixtures/otlp), both GenAI convention generations and OpenInference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from agentwatch.collector.otlp import mapping
from agentwatch.collector.otlp.config import OtlpConfig, ToolMapping
from agentwatch.collector.otlp.decode import JSON, PROTOBUF, DecodedExport, decode_export
from agentwatch.collector.otlp.mapping import MappedExport, map_export
from agentwatch.schemas import ActionEvent, SpanSummary

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"
# Real payloads live beside the repository, never inside it (licence): see shared/realdata/README.md.
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "otel"
NOW_NS = 1_800_000_000 * 10**9  # 2027-01-15: after every payload here


def real(name: str) -> Path:
    path = REALDATA / name
    if not path.exists():
        pytest.skip(f"real payload {path} not present (shared/realdata is outside the repository)")
    return path


def mapped_file(path: Path, config: OtlpConfig | None = None) -> MappedExport:
    return map_export(decode_export(path.read_bytes(), JSON, 64), config or OtlpConfig(), NOW_NS)


def valid(result: MappedExport) -> MappedExport:
    """Every event the mapping made passes the same model as /v1/actions (and the span summary's)."""
    for event in result.actions:
        ActionEvent.model_validate_json(json.dumps(event))
    for summary in result.summaries:
        SpanSummary.model_validate_json(json.dumps(summary))
    return result


def without(event: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in keys}


# -- real payloads -------------------------------------------------------------------------------------------


def test_real_chat_spans_of_both_convention_generations_are_model_calls_with_the_same_figures() -> None:
    """openai-v2 2.4b0 (gen_ai.provider.name) and 2.1b0 (gen_ai.system) record the same two calls."""
    latest = valid(mapped_file(real("chat_tool_calls.latest.otlp.json")))
    older = valid(mapped_file(real("chat_tool_calls.v2.1b0.otlp.json")))
    for result in (latest, older):
        assert result.actions == [] and result.rejected == [] and result.total == 2
        assert [(s["kind"], s["operation"], s["provider"], s["model"], s["input_tokens"], s["output_tokens"],
                 s["status"]) for s in result.summaries] == [
            ("model", "chat", "openai", "gpt-4o-mini-2024-07-18", 75, 51, "ok"),
            ("model", "chat", "openai", "gpt-4o-mini-2024-07-18", 99, 25, "ok")]
        # No agent attribute anywhere: the resource's service.name names the agent.
        assert {s["agent_id"] for s in result.summaries} == {"otel-contrib-cassette-replay"}
    first = json.loads(real("chat_tool_calls.latest.otlp.json").read_text())["resourceSpans"][0]["scopeSpans"][0]
    span = first["spans"][0]
    assert latest.summaries[0]["event_id"] == f"otel-{span['traceId']}-{span['spanId']}"
    assert latest.summaries[0]["latency_ms"] == pytest.approx(
        (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e6)


def test_a_real_failed_chat_call_is_an_error_with_its_type() -> None:
    result = valid(mapped_file(real("chat_404_error.latest.otlp.json")))
    (summary,) = result.summaries
    assert (summary["status"], summary["error_type"], summary["model"]) == (
        "error", "<class 'openai.NotFoundError'>", "this-model-does-not-exist")


def _span_of_attribute_map(path: Path, name: str) -> DecodedExport:
    """A real attribute map (openinference-genai's fixtures) as the one span of an export."""
    attributes = []
    for key, value in json.loads(path.read_text()).items():
        any_value = AnyValue()
        if isinstance(value, list):
            any_value.array_value.values.extend(AnyValue(string_value=str(v)) for v in value)
        elif isinstance(value, bool):
            any_value.bool_value = value
        elif isinstance(value, int):
            any_value.int_value = value
        elif isinstance(value, float):
            any_value.double_value = value
        else:
            any_value.string_value = value
        attributes.append(KeyValue(key=key, value=any_value))
    span = Span(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name=name,
                start_time_unix_nano=NOW_NS - 10**9, end_time_unix_nano=NOW_NS, attributes=attributes)
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    return decode_export(request.SerializeToString(), PROTOBUF, 64)


def test_a_real_execute_tool_attribute_map_is_an_action() -> None:
    decoded = _span_of_attribute_map(real("otel_genai_tool_execution_span.json"), "execute_tool get_weather")
    result = valid(map_export(decoded, OtlpConfig(), NOW_NS))
    (action,) = result.actions
    assert (action["action"], action["resource"], action["status"]) == (
        "tool.get_weather", {"type": "tool_call", "id": "1234"}, "ok")


def test_a_real_chat_attribute_map_with_tool_calls_is_a_model_call_not_an_action() -> None:
    decoded = _span_of_attribute_map(real("otel_genai_client_span_tool_calls.json"), "chat gpt-4")
    result = valid(map_export(decoded, OtlpConfig(), NOW_NS))
    assert result.actions == []
    (summary,) = result.summaries
    assert (summary["kind"], summary["model"], summary["input_tokens"], summary["output_tokens"]) == (
        "model", "gpt-4-0613", 97, 52)


# -- project fixtures ----------------------------------------------------------------------------------------


def test_genai_agent_run_gives_one_action_per_tool_call_under_the_agent_of_its_ancestor() -> None:
    result = valid(mapped_file(FIXTURES / "genai_agent_run.latest.otlp.json"))
    assert result.rejected == [] and result.total == 4
    update, email = result.actions
    trace = "5b8efff798038103d269b633813fc60c"
    assert update == {
        "event_id": f"otel-{trace}-a1b2c3d4e5f60718", "ts": "2026-09-21T14:13:20.430000Z",
        "agent_id": "lead-router", "agent_version": "2.3.0", "action": "tool.update_crm_record",
        "resource": {"type": "tool_call", "id": "call_q9XkPz"}, "status": "ok", "latency_ms": 412.0,
        "trace_id": trace, "span_id": "a1b2c3d4e5f60718",
        "inputs": {"object": "lead", "record_id": "00Q5e00000AbCdE", "fields": {"OwnerId": "005-rep17"}}}
    assert "otel" not in update  # an unknown key in every event would cost the store; the trace has the rest
    # Status from the span status and error.type, the message from it, the record from agentwatch.* attributes.
    assert (email["status"], email["error"], email["resource"], email["external"], email["latency_ms"]) == (
        "error", {"code": "TimeoutError", "message": "SMTP relay did not answer in 30 s"},
        {"type": "contact", "id": "0035e00000XyZ12"}, True, 30000.0)
    kinds = {s["name"]: (s["kind"], s["agent_id"]) for s in result.summaries}
    assert kinds == {"chat gpt-4o-mini": ("model", "lead-router"), "invoke_agent Lead router": ("agent", "lead-router")}


def test_older_genai_conventions_and_an_agent_named_on_the_resource() -> None:
    result = valid(mapped_file(FIXTURES / "genai_tool_call.v1_2x.otlp.json"))
    (meeting,) = result.actions
    assert (meeting["agent_id"], meeting["action"], meeting["inputs"]) == (
        "followup-writer", "tool.book_meeting", {"lead_id": "00Q5e00000ZzYyX", "slot": "2026-09-22T10:00:00Z"})
    assert "agent_version" not in meeting  # neither the span, an ancestor nor the resource says one
    chat, http = result.summaries
    assert (chat["provider"], chat["input_tokens"], chat["output_tokens"]) == ("openai", 120, 40)
    assert (http["kind"], http["agent_id"], http["name"]) == ("unmatched", "followup-writer", "HTTP POST")


def test_openinference_tool_under_chain_under_agent() -> None:
    result = valid(mapped_file(FIXTURES / "openinference_agent.otlp.json"))
    (qualify,) = result.actions
    assert (qualify["agent_id"], qualify["action"], qualify["inputs"]) == (
        "lead-qualifier", "tool.qualify_lead", {"lead_id": "00Q5e00000QqRrS", "deal_stage": None, "employees": 120})
    assert qualify["resource"] == {"type": "tool_call", "id": "00f067aa0ba902b7"}  # no call id: the span's id
    kinds = sorted((s["kind"], s["operation"], s.get("model")) for s in result.summaries)
    assert kinds == [("agent", "AGENT", None), ("agent", "CHAIN", None), ("model", "LLM", "gpt-4o"),
                     ("other", "RETRIEVER", None)]
    (llm,) = [s for s in result.summaries if s["kind"] == "model"]
    assert (llm["provider"], llm["input_tokens"], llm["output_tokens"]) == ("openai", 300, 20)


def test_a_tool_mapping_names_the_record_and_the_state_from_arguments_and_result() -> None:
    config = OtlpConfig.model_validate({"tools": {"update_crm_record": {
        "action": "crm.update_field", "resource": {"type": "args.object", "id": "args.record_id"},
        "after": "args.fields", "before": "result.previous", "authorized_by": "policy:routing"}}})
    result = valid(mapped_file(FIXTURES / "genai_agent_run.latest.otlp.json", config))
    update = result.actions[0]
    assert (update["action"], update["resource"], update["before"], update["after"], update["authorized_by"]) == (
        "crm.update_field", {"type": "lead", "id": "00Q5e00000AbCdE"}, {"OwnerId": "005-queue"},
        {"OwnerId": "005-rep17"}, "policy:routing")
    assert result.actions[1]["action"] == "tool.send_email"  # other tools keep the default


def test_a_mapping_that_does_not_apply_rejects_that_span_alone_naming_the_key() -> None:
    config = OtlpConfig.model_validate({"tools": {"update_crm_record": {
        "resource": {"type": "lead", "id": "args.lead_id"}}}})
    result = mapped_file(FIXTURES / "genai_agent_run.latest.otlp.json", config)
    (rejected,) = result.rejected
    assert rejected.span.span_id == "a1b2c3d4e5f60718"
    assert "otlp.tools.update_crm_record.resource.id (args.lead_id) is missing" in rejected.text()
    assert [a["action"] for a in result.actions] == ["tool.send_email"] and len(result.summaries) == 2


def test_agentwatch_attributes_win_over_the_mapping_and_make_any_span_an_action() -> None:
    attributes = {"agentwatch.action": "lead.assign_owner", "agentwatch.resource.type": "lead",
                  "agentwatch.resource.id": "L-7", "agentwatch.before": '{"OwnerId": "queue"}',
                  "agentwatch.after": '{"OwnerId": "rep-4"}', "agentwatch.decision": '{"route_to": "rep-4"}',
                  "agentwatch.confidence": 0.91, "agentwatch.status": "pending_approval",
                  "agentwatch.records_affected": 1, "agentwatch.agent_id": "router-b",
                  "agentwatch.rationale": "EMEA", "agentwatch.approval.approved_by": "mgr-3",
                  "agentwatch.approval.approved_at": "2026-10-01T10:05:00Z"}
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="route", start_time_unix_nano=NOW_NS - 5 * 10**6,
                end_time_unix_nano=NOW_NS, attributes=[KeyValue(key=k, value=_any(v)) for k, v in attributes.items()])
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    result = valid(map_export(decode_export(request.SerializeToString(), PROTOBUF, 64), OtlpConfig(), NOW_NS))
    (event,) = result.actions
    assert without(event, "ts", "event_id", "trace_id", "span_id") == {
        "agent_id": "router-b", "action": "lead.assign_owner", "resource": {"type": "lead", "id": "L-7"},
        "status": "pending_approval", "latency_ms": 5.0, "before": {"OwnerId": "queue"},
        "after": {"OwnerId": "rep-4"}, "decision": {"route_to": "rep-4"}, "confidence": 0.91, "rationale": "EMEA",
        "records_affected": 1, "approval": {"approved_by": "mgr-3", "approved_at": "2026-10-01T10:05:00Z"}}


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


@pytest.mark.parametrize(("name", "expected"), [
    ("update_crm_record", "tool.update_crm_record"),
    ("crm/update record", "tool.crm_update_record"),
    ("2fa.check", "tool.t_2fa_check"),
])
def test_tool_names_become_dotted_verbs(name: str, expected: str) -> None:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x03" * 8, name=f"execute_tool {name}",
                start_time_unix_nano=NOW_NS - 10**6, end_time_unix_nano=NOW_NS,
                attributes=[KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="execute_tool")),
                            KeyValue(key="gen_ai.tool.name", value=AnyValue(string_value=name))])
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    (event,) = valid(map_export(decode_export(request.SerializeToString(), PROTOBUF, 64), OtlpConfig(),
                                NOW_NS)).actions
    assert event["action"] == expected


def test_docs_name_every_key_and_operation_the_mapping_reads() -> None:
    """docs/otlp.md's mapping table is the code's (attribute keys, operations, tool-mapping keys), and
    docs/formats.md lists every agentwatch.* attribute."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    otlp_doc = (docs / "otlp.md").read_text(encoding="utf-8")
    formats_doc = (docs / "formats.md").read_text(encoding="utf-8")
    keys = {*mapping.AGENT_ID_KEYS, *mapping.TOOL_NAME_KEYS, *mapping.TOOL_CALL_ID_KEYS, *mapping.ARGUMENT_KEYS,
            *mapping.RESULT_KEYS, *mapping.AGENT_OPERATIONS, *mapping.MODEL_OPERATIONS, *mapping.OPENINFERENCE_AGENT,
            *mapping.OPENINFERENCE_MODEL, *mapping.TRACELOOP_AGENT, *mapping.TRACELOOP_MODEL,
            *ToolMapping.model_fields}
    assert not (missing := sorted(k for k in keys if f"`{k}`" not in otlp_doc)), f"docs/otlp.md lacks {missing}"
    attributes = {"agentwatch.action", "agentwatch.agent_id", "agentwatch.agent_version", "agentwatch.status",
                  "agentwatch.resource.type", "agentwatch.resource.id", "agentwatch.approval.approved_by",
                  "agentwatch.approval.approved_at", *(f"agentwatch.{k}" for k in mapping.OBJECT_FIELDS),
                  *(f"agentwatch.{k}" for k in mapping.SCALAR_FIELDS)}
    read = set(re.findall(r'"(agentwatch\.[a-z_.]+)"', Path(mapping.__file__).read_text()))
    assert read <= attributes, f"the mapping reads attributes this test does not list: {read - attributes}"
    assert not (missing := sorted(k for k in attributes if f"`{k}`" not in formats_doc)), \
        f"docs/formats.md's agentwatch span attributes table lacks {missing}"


TRICKY_ATTRIBUTES = [
    {}, {"agentwatch.confidence": 1}, {"agentwatch.confidence": 1.5}, {"agentwatch.confidence": float("nan")},
    {"agentwatch.records_affected": True}, {"agentwatch.records_affected": "3"}, {"agentwatch.records_affected": -1},
    {"agentwatch.external": 1}, {"agentwatch.rationale": ["a", "b"]}, {"agentwatch.status": "done"},
    {"agentwatch.approval.approved_by": "mgr-3"},
    {"agentwatch.approval.approved_by": "mgr-3", "agentwatch.approval.approved_at": "yesterday"},
    {"agentwatch.inputs": '{"score": 1e999}'}, {"agentwatch.inputs": '{"a": NaN}'}, {"agentwatch.action": "delete"},
    {"agentwatch.resource.type": "", "agentwatch.resource.id": "L-1"}, {"agentwatch.agent_id": "x" * 300},
    {"agentwatch.inputs": '{"a": ' * 70 + "1" + "}" * 70}, {"agentwatch.authorized_by": 7},
]


def _tricky_value(value: Any) -> AnyValue:
    if isinstance(value, list):
        return AnyValue(array_value={"values": [AnyValue(string_value=v) for v in value]})
    return _any(value)


@pytest.mark.parametrize("changes", TRICKY_ATTRIBUTES, ids=lambda c: ",".join(f"{k}={v!r}"[:40] for k, v in c.items()))
def test_mapped_events_get_the_same_verdict_as_objects_and_as_json_text(changes: dict[str, Any]) -> None:
    """/v1/traces validates the events it builds as Python objects (faster); /v1/actions validates JSON text. On
    what a span can carry, both give the same verdict and the same errors."""
    from agentwatch.app.api.events import check_events  # the API layer: only this test reaches up to it
    from agentwatch.core.limits import Limits
    from agentwatch.store.datasets import ACTIONS

    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t", **changes}
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x04" * 8, name="execute_tool t",
                start_time_unix_nano=NOW_NS - 123_456_789, end_time_unix_nano=NOW_NS,
                attributes=[KeyValue(key=k, value=_tricky_value(v)) for k, v in attributes.items()])
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    result = map_export(decode_export(request.SerializeToString(), PROTOBUF, 64), OtlpConfig(), NOW_NS)
    as_objects = check_events(ACTIONS, result.actions, Limits(), built_here=True)
    as_text = check_events(ACTIONS, result.actions, Limits(), built_here=False)
    assert as_objects == as_text


def test_openllmetry_tool_under_agent_under_workflow() -> None:
    """OpenLLMetry (Traceloop) marks spans with traceloop.span.kind and llm.request.type, not the GenAI operation."""
    result = valid(mapped_file(FIXTURES / "openllmetry_langchain.otlp.json"))
    (lookup,) = result.actions
    assert (lookup["agent_id"], lookup["action"], lookup["inputs"]["inputs"]) == (
        "lead-qualifier", "tool.lookup_account", {"domain": "acme.example"})
    kinds = sorted((s["kind"], s["name"], s["agent_id"]) for s in result.summaries)
    assert kinds == [("agent", "lead-qualifier.agent", "lead-qualifier"),
                     ("agent", "lead_qualification.workflow", "qualifier-service"),
                     ("model", "ChatOpenAI.chat", "lead-qualifier")]
    (chat,) = [s for s in result.summaries if s["kind"] == "model"]
    assert (chat["provider"], chat["model"], chat["input_tokens"], chat["output_tokens"]) == (
        "openai", "gpt-4o-2024-08-06", 410, 33)
    config = OtlpConfig.model_validate({"tools": {"lookup_account": {
        "action": "account.lookup", "resource": {"type": "account", "id": "result.outputs.account_id"},
        "inputs": "args.inputs"}}})
    (mapped,) = valid(mapped_file(FIXTURES / "openllmetry_langchain.otlp.json", config)).actions
    assert (mapped["action"], mapped["resource"], mapped["inputs"]) == (
        "account.lookup", {"type": "account", "id": "001-acme"}, {"domain": "acme.example"})


@pytest.mark.parametrize(("attributes", "says"), [
    ({"agentwatch.status": "failed"}, "status: Input should be 'ok', 'error', 'skipped' or 'pending_approval'"),
    ({"agentwatch.after": "{not json"}, "after: Input should be a valid dictionary"),
    ({"agentwatch.before": "{'OwnerId': 'x'}"}, "before: Input should be a valid dictionary"),
    ({"agentwatch.inputs": "[1, 2]"}, "inputs: Input should be a valid dictionary"),
    ({"agentwatch.resource.type": "lead"}, "agentwatch.resource.type and agentwatch.resource.id go together"),
    ({"agentwatch.approval.approved_by": "mgr-3"}, "approved_by and agentwatch.approval.approved_at go together"),
])
def test_an_agentwatch_attribute_that_does_not_fit_rejects_its_span_by_name(attributes: dict[str, Any],
                                                                          says: str) -> None:
    """A failure declared in a word the format lacks is never stored as ok; a state that is not a JSON object is
    never dropped unseen: the span is rejected, naming the attribute's field."""
    from agentwatch.app.api.events import check_events  # the API layer: the validation /v1/traces runs
    from agentwatch.core.limits import Limits
    from agentwatch.store.datasets import ACTIONS

    span = Span(trace_id=b"\x01" * 16, span_id=b"\x05" * 8, name="execute_tool t", start_time_unix_nano=NOW_NS - 10**6,
                end_time_unix_nano=NOW_NS, attributes=[KeyValue(key=k, value=_any(v)) for k, v in {
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t", **attributes}.items()])
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    result = map_export(decode_export(request.SerializeToString(), PROTOBUF, 64), OtlpConfig(), NOW_NS)
    reasons = [r.reason for r in result.rejected]
    _, _, _, refused = check_events(ACTIONS, result.actions, Limits(), built_here=True)
    reasons += [f"{e['field']}: {e['message']}" for r in refused for e in r["errors"]]
    assert len(reasons) == 1 and says in reasons[0], reasons
