"""``POST /v1/traces`` through the app's own client: encodings, OTLP's answers, duplicates, and bad input (a body
refused whole with a clear OTLP error; bad spans rejected one by one, named, with the valid ones kept)."""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from agentwatch.app.api.app import ApiSettings, create_app
from agentwatch.app.status import store_status
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.core.limits import Limits
from tests.test_api import assert_error_shape, bearer, flushed, query, wait_ready

with warnings.catch_warnings():  # starlette's TestClient warns that it prefers httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON_TYPE = {"Content-Type": "application/json"}
START_NS = 1_790_000_000 * 10**9  # 2026-09-21


@pytest.fixture
def client(home: Home) -> Iterator[TestClient]:
    settings = ApiSettings(flush_interval_s=0.05, max_body_bytes=256 * 1024, limits=Limits(max_batch_items=50))
    with TestClient(create_app(home, settings)) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.fixture
def keys(home: Home) -> dict[str, str]:
    store = KeyStore(home)
    return {scope: store.create(scope, name=f"otlp {scope}")[1] for scope in ("ingest", "read")}


def tool_span(number: int, **changes: Any) -> Span:
    """An execute_tool span with agentwatch attributes naming its record."""
    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "update_crm_record",
                  "agentwatch.agent_id": "lead-router", "agentwatch.resource.type": "lead",
                  "agentwatch.resource.id": f"L-{number}", **changes.pop("attributes", {})}
    span = Span(trace_id=number.to_bytes(16, "big"), span_id=(number + 1).to_bytes(8, "big"),
                name="execute_tool update_crm_record", start_time_unix_nano=START_NS + number * 10**9,
                end_time_unix_nano=START_NS + number * 10**9 + 250 * 10**6,
                attributes=[KeyValue(key=k, value=_any(v)) for k, v in attributes.items()])
    for key, value in changes.items():
        setattr(span, key, value)
    return span


def _any(value: Any) -> AnyValue:
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def export(*spans: Span) -> bytes:
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="sales-agents"))])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(spans=list(spans))])]).SerializeToString()


def post(client: TestClient, key: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.post("/v1/traces", content=body, headers={**bearer(key), **headers})


def otlp_answer(response: Any) -> ExportTraceServiceResponse:
    assert response.status_code == 200, response.content
    assert response.headers["content-type"] == "application/x-protobuf"
    return ExportTraceServiceResponse.FromString(response.content)


def otlp_status(response: Any, status: int) -> Status:
    assert response.status_code == status, response.content
    assert response.headers["content-type"] == "application/x-protobuf"
    return Status.FromString(response.content)


def test_json_export_is_stored_and_sending_it_again_is_all_duplicates(client: TestClient, keys: dict,
                                                                     home: Home) -> None:
    body = (FIXTURES / "genai_agent_run.latest.otlp.json").read_bytes()
    first = post(client, keys["ingest"], body, JSON_TYPE)
    assert first.status_code == 200 and first.json() == {}  # an empty ExportTraceServiceResponse: all taken
    assert (first.headers["Agentwatch-Actions-Accepted"], first.headers["Agentwatch-Spans-Counted"],
            first.headers["Agentwatch-Duplicates"]) == ("2", "2", "0")
    again = post(client, keys["ingest"], gzip.compress(body), {**JSON_TYPE, "Content-Encoding": "gzip"})
    assert (again.status_code, again.json()) == (200, {})
    assert (again.headers["Agentwatch-Actions-Accepted"], again.headers["Agentwatch-Duplicates"]) == ("0", "4")
    flushed(client)
    assert query(home, "SELECT action, status, error_code FROM actions ORDER BY ts") == [
        ("tool.update_crm_record", "ok", None), ("tool.send_email", "error", "TimeoutError")]
    assert query(home, "SELECT kind, agent_id, model, input_tokens FROM spans ORDER BY ts") == [
        ("agent", "lead-router", None, None), ("model", "lead-router", "gpt-4o-mini-2024-07-18", 812)]


def test_gzip_protobuf_is_read_and_a_gzip_bomb_is_refused_before_it_inflates(client: TestClient,
                                                                           keys: dict) -> None:
    ok = post(client, keys["ingest"], gzip.compress(export(tool_span(1))), {**PROTOBUF, "Content-Encoding": "gzip"})
    assert not otlp_answer(ok).HasField("partial_success")
    bomb = gzip.compress(b"\0" * (4 << 20))  # 4 MiB of zeros in about 4 KiB: over the 256 KiB limit inflated
    assert len(bomb) < 256 * 1024
    refused = otlp_status(post(client, keys["ingest"], bomb, {**PROTOBUF, "Content-Encoding": "gzip"}), 413)
    assert refused.code == 8 and "inflates to more than 262,144 bytes" in refused.message


def test_a_body_that_is_not_protobuf_gets_an_otlp_status_naming_the_problem(client: TestClient, keys: dict) -> None:
    status = otlp_status(post(client, keys["ingest"], b"\xff\xff\xff not protobuf", PROTOBUF), 400)
    assert status.code == 3  # INVALID_ARGUMENT
    assert status.message.startswith("invalid_otlp: the body is not a protobuf ExportTraceServiceRequest")


@pytest.mark.parametrize(("body", "says"), [
    (b'[{"resourceSpans": []}]', "should be an object with a resourceSpans array"),
    (b'{"resourceSpans": "all of them"}', "not an OTLP ExportTraceServiceRequest"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
     "not an OTLP ExportTraceServiceRequest"),
    (b'{"resourceSpans": [', "not valid JSON"),
])
def test_a_json_body_of_the_wrong_shape_gets_the_usual_error_shape(client: TestClient, keys: dict, body: bytes,
                                                                  says: str) -> None:
    error = assert_error_shape(post(client, keys["ingest"], body, JSON_TYPE), 400, "invalid_otlp")
    assert says in error["error"]["message"]


def test_bad_spans_are_rejected_by_name_and_the_valid_ones_beside_them_kept(client: TestClient, keys: dict,
                                                                          home: Home) -> None:
    spans = [
        tool_span(1),
        tool_span(2, span_id=b""),  # no span id
        tool_span(3, trace_id=b"\0" * 16),  # an all-zero trace id
        tool_span(4, end_time_unix_nano=START_NS),  # ends before it starts
        tool_span(5, start_time_unix_nano=631_152_000 * 10**9, end_time_unix_nano=631_152_001 * 10**9),  # 1990
        tool_span(6, start_time_unix_nano=4_102_444_800 * 10**9, end_time_unix_nano=4_102_444_801 * 10**9),  # 2100
        tool_span(7, start_time_unix_nano=0),
        tool_span(8, attributes={"agentwatch.confidence": 5.0}),  # maps, but the event is invalid
        tool_span(9),
    ]
    answer = otlp_answer(post(client, keys["ingest"], export(*spans), PROTOBUF))
    assert answer.partial_success.rejected_spans == 7
    message = answer.partial_success.error_message
    assert message.startswith("7 of 9 spans rejected: ")
    for number, reason in ((2, "spanId is missing"), (3, "traceId is missing"), (4, "ms before it starts"),
                           (5, "before 2000"), (6, "ahead of this server's clock"), (7, "is missing (0)"),
                           (8, "confidence: Input should be less than or equal to 1")):
        span = spans[number - 1]
        assert f"span {span.span_id.hex() or '(no id)'} of trace {span.trace_id.hex()}" in message
        assert reason in message.split(f"span {span.span_id.hex() or '(no id)'} of trace")[1].split("; span ")[0]
    flushed(client)
    assert query(home, "SELECT resource_id FROM actions ORDER BY resource_id") == [("L-1",), ("L-9",)]
    # Exporters ignore a partial success: the rejects folder keeps each span, and status counts them.
    assert store_status(home)["rejects"] == {"traces": 7}
    (kept,) = home.rejects.glob("traces-*.jsonl")
    lines = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [line["event_id"] for line in lines] == [
        f"otel-{spans[n - 1].trace_id.hex()}-{spans[n - 1].span_id.hex()}" for n in (2, 3, 4, 5, 6, 7, 8)]
    assert lines[2]["source"] == "POST /v1/traces" and "ms before it starts" in lines[2]["errors"][0]["message"]


def test_an_id_that_is_not_hex_in_json_rejects_that_span_only(client: TestClient, keys: dict, home: Home) -> None:
    document = json.loads((FIXTURES / "genai_tool_call.v1_2x.otlp.json").read_text())
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[1]["spanId"] = "not-hex!"
    answer = post(client, keys["ingest"], json.dumps(document).encode(), JSON_TYPE)
    assert answer.status_code == 200
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"  # proto3 JSON writes int64 as a string
    assert "spanId 'not-hex!' is not hex" in partial["errorMessage"]
    assert "'execute_tool book_meeting'" in partial["errorMessage"]
    assert answer.headers["Agentwatch-Spans-Counted"] == "2"


def test_whole_body_refusals(client: TestClient, keys: dict) -> None:
    too_many = otlp_status(post(client, keys["ingest"], export(*[tool_span(n) for n in range(51)]), PROTOBUF), 413)
    assert "holds 51 spans, over this server's limit of 50" in too_many.message
    assert otlp_status(post(client, "", export(tool_span(1)), PROTOBUF), 401).code == 16
    assert otlp_status(post(client, keys["read"], export(tool_span(1)), PROTOBUF), 403).code == 7
    wrong_type = post(client, keys["ingest"], b"x", {"Content-Type": "text/plain"})
    assert "is not an OTLP encoding" in assert_error_shape(wrong_type, 415)["error"]["message"]
    deflate = post(client, keys["ingest"], export(tool_span(1)), {**PROTOBUF, "Content-Encoding": "br"})
    assert otlp_status(deflate, 415).message.startswith("unsupported_media_type: Content-Encoding 'br'")
    truncated = post(client, keys["ingest"], gzip.compress(export(tool_span(1)))[:-9],
                     {**PROTOBUF, "Content-Encoding": "gzip"})
    assert "truncated" in otlp_status(truncated, 400).message


def test_the_tool_mapping_of_the_config_is_read_and_an_edit_is_picked_up(client: TestClient, keys: dict,
                                                                        home: Home) -> None:
    home.config_file.write_text("otlp:\n  tools:\n    update_crm_record:\n      action: crm.update_field\n")
    assert otlp_answer(post(client, keys["ingest"], export(tool_span(1)), PROTOBUF))
    home.config_file.write_text("otlp:\n  tools:\n    update_crm_record:\n      action: lead.assign_owner\n"
                                "      external: true\n")
    assert otlp_answer(post(client, keys["ingest"], export(tool_span(2)), PROTOBUF))
    flushed(client)
    assert query(home, "SELECT action, external FROM actions ORDER BY resource_id") == [
        ("crm.update_field", None), ("lead.assign_owner", True)]


def test_nesting_is_bounded_per_span_and_per_body(client: TestClient, keys: dict, home: Home) -> None:
    """A span whose event would nest past limits.max_depth is rejected alone; a JSON body nested past four times
    that (plus the envelope) is refused before it is parsed; protobuf past its parser's own limit is a 400."""
    deep_inputs = '{"a": ' * 70 + "1" + "}" * 70
    too_deep = tool_span(1, attributes={"agentwatch.inputs": deep_inputs})
    answer = otlp_answer(post(client, keys["ingest"], export(too_deep, tool_span(2)), PROTOBUF))
    assert answer.partial_success.rejected_spans == 1
    assert "nested 71 levels deep, more than 64 (limits.max_depth)" in answer.partial_success.error_message

    value = '{"stringValue": "x"}'
    for _ in range(80):
        value = '{"kvlistValue": {"values": [{"key": "k", "value": ' + value + "}]}}"
    body = ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", '
            '"spanId": "a1b2c3d4e5f60718", "name": "x", "attributes": [{"key": "deep", "value": ' + value +
            "}]}]}]}]}").encode()
    error = assert_error_shape(post(client, keys["ingest"], body, JSON_TYPE), 400, "invalid_otlp")
    assert "over this server's limit" in error["error"]["message"] and "limits.max_depth" in error["error"]["message"]

    # upb will not even build a message that deep, so the wire bytes are written here, field by field.
    deep = AnyValue(string_value="x").SerializeToString()
    for _ in range(60):  # three message levels each: past protobuf's own limit of 100
        pair = _field(KeyValue, "key", b"k") + _field(KeyValue, "value", deep)
        deep = _field(AnyValue, "kvlist_value", _field(KeyValueList, "values", pair))
    span = tool_span(3).SerializeToString() + _field(Span, "attributes", _field(KeyValue, "key", b"deep") +
                                                     _field(KeyValue, "value", deep))
    body = _field(ExportTraceServiceRequest, "resource_spans",
                  _field(ResourceSpans, "scope_spans", _field(ScopeSpans, "spans", span)))
    status = otlp_status(post(client, keys["ingest"], body, PROTOBUF), 400)
    assert status.message.startswith("invalid_otlp: the body is not a protobuf ExportTraceServiceRequest")
    flushed(client)
    assert query(home, "SELECT resource_id FROM actions") == [("L-2",)]


def _field(message: Any, name: str, payload: bytes) -> bytes:
    """One length-delimited field of `message`'s type on the wire: tag, length, bytes."""
    number = message.DESCRIPTOR.fields_by_name[name].number
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
