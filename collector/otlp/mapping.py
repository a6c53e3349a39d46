"""OTLP spans as agentwatch events: tool spans become action events, every other span a span summary.

For each span of a decoded export:

1. Its ids and times are checked; a span with missing ids, a start of 0, an end before its start, a start before
   2000 or further ahead of the server's clock than ``otlp.max_future_minutes`` is rejected on its own, named
   by its ids and name (OTLP's partial success counts it; the spans beside it are kept).
2. It is classified (``classify``): an action when it carries ``agentwatch.action``, is a GenAI ``execute_tool``
   span, an OpenInference ``TOOL`` span or an OpenLLMetry ``tool`` span; else a span summary of kind agent, model,
   other or unmatched.
3. Its agent is the first found of: ``agentwatch.agent_id``, ``gen_ai.agent.id``, ``gen_ai.agent.name`` (or
   OpenInference's ``agent.name``) on the span, then on its nearest agent ancestor in the same export, then on
   the resource, then the resource's ``service.name``. Exporters send a child before its parent ends, so an
   ancestor may arrive in a later export: a resource attribute is the exact way (docs/otlp.md).
4. An action's fields come from ``agentwatch.*`` span attributes first, then the tool's mapping in
   ``otlp.tools``, then the conventions (tool name, call arguments, status, exception events, span times).

The event id is ``otel-<trace_id>-<span_id>``: an export sent again gives the same ids, so duplicates, not new
actions. The span's other details (its name, the tool's own name and call id, its parent) stay with the trace, which
``trace_id`` and ``span_id`` join: an unknown key in every event would cost the store a third more per event.
Pure: no I/O, the clock is an argument.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentwatch.collector.otlp.attributes import at_path, attributes, json_object, json_value
from agentwatch.collector.otlp.config import PATH_ROOTS, OtlpConfig, ToolMapping
from agentwatch.collector.otlp.decode import DecodedExport, SpanPlace

AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent", "invoke_workflow"})
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
OPENINFERENCE_AGENT = frozenset({"AGENT", "CHAIN"})
OPENINFERENCE_MODEL = frozenset({"LLM", "EMBEDDING"})
TRACELOOP_AGENT = frozenset({"agent", "workflow", "task"})  # OpenLLMetry's traceloop.span.kind
TRACELOOP_MODEL = frozenset({"chat", "completion", "embedding"})  # OpenLLMetry's llm.request.type
EARLIEST_NS = 946_684_800 * 10**9  # 2000-01-01: a start before it is a clock or a bug, not an action
MAX_ANCESTORS = 64  # parent hops searched for an agent span: traces are shallow, a cycle must not spin
UNKNOWN_AGENT = "unknown_service"  # what the SDKs call a service with no name
_NOT_ACTION_CHARS = re.compile(r"[^A-Za-z0-9_-]")

# Attribute keys, most specific first.
AGENT_ID_KEYS = ("agentwatch.agent_id", "gen_ai.agent.id", "gen_ai.agent.name", "agent.name")
TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name", "traceloop.entity.name")
TOOL_CALL_ID_KEYS = ("gen_ai.tool.call.id", "tool_call.id")
ARGUMENT_KEYS = ("gen_ai.tool.call.arguments", "tool.parameters", "input.value", "traceloop.entity.input")
RESULT_KEYS = ("gen_ai.tool.call.result", "output.value", "traceloop.entity.output")
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name", "embedding.model_name")
INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
# agentwatch.<key> span attributes that fill the action's field of the same name.
OBJECT_FIELDS = ("inputs", "before", "after", "decision")
SCALAR_FIELDS = ("confidence", "rationale", "authorized_by", "external", "records_affected")
_OBJECT_ATTRIBUTES = tuple((key, f"agentwatch.{key}") for key in OBJECT_FIELDS)
_SCALAR_ATTRIBUTES = tuple((key, f"agentwatch.{key}") for key in SCALAR_FIELDS)


@dataclass(frozen=True)
class SpanRef:
    """Which span an event came from, to name it in a rejection."""

    trace_id: str
    span_id: str
    name: str

    def label(self) -> str:
        return f"span {self.span_id or '(no id)'} of trace {self.trace_id or '(no id)'} ({self.name[:80]!r})"


@dataclass(frozen=True)
class SpanRejection:
    span: SpanRef
    reason: str

    def text(self) -> str:
        return f"{self.span.label()}: {self.reason}"


@dataclass
class MappedExport:
    """What one export became: action events and span summaries (each with its span), and the rejected spans."""

    actions: list[dict[str, Any]] = field(default_factory=list)
    action_spans: list[SpanRef] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    summary_spans: list[SpanRef] = field(default_factory=list)
    rejected: list[SpanRejection] = field(default_factory=list)
    total: int = 0


@dataclass(slots=True)
class _Node:
    """One span, its fields read from protobuf once (each read of a upb field costs a Python object)."""

    span: Span
    attrs: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    ref: SpanRef
    parent: bytes
    start: int
    end: int


def classify(attrs: dict[str, Any]) -> str:
    """action, agent, model, other or unmatched (the module's step 2): by the GenAI conventions'
    gen_ai.operation.name, OpenInference's openinference.span.kind, or OpenLLMetry's traceloop.span.kind and
    llm.request.type."""
    operation = attrs.get("gen_ai.operation.name")
    kind = _upper(attrs.get("openinference.span.kind"))
    traceloop = attrs.get("traceloop.span.kind")
    request = attrs.get("llm.request.type")
    if "agentwatch.action" in attrs or operation == "execute_tool" or kind == "TOOL" or traceloop == "tool":
        return "action"
    if operation in AGENT_OPERATIONS or kind in OPENINFERENCE_AGENT or traceloop in TRACELOOP_AGENT:
        return "agent"
    if operation in MODEL_OPERATIONS or kind in OPENINFERENCE_MODEL or request in TRACELOOP_MODEL:
        return "model"
    if operation is not None or kind is not None or traceloop is not None or request is not None:
        return "other"
    return "unmatched"


def _upper(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) else None


def map_export(decoded: DecodedExport, config: OtlpConfig, now_ns: int | None = None) -> MappedExport:
    """Every span of the export as an action event, a span summary or a rejection (the module's steps)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    latest_ns = now_ns + config.max_future_minutes * 60 * 10**9
    nodes: dict[bytes, _Node] = {}
    ordered: list[tuple[SpanPlace, _Node]] = []
    for r, resource_spans in enumerate(decoded.request.resource_spans):
        resource = attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope.name
            for i, span in enumerate(scope_spans.spans):
                span_id = span.span_id
                node = _Node(span, attributes(span.attributes), resource, scope,
                             SpanRef(span.trace_id.hex(), span_id.hex(), span.name), span.parent_span_id,
                             span.start_time_unix_nano, span.end_time_unix_nano)
                if span_id:
                    nodes[span_id] = node
                ordered.append(((r, s, i), node))
    out = MappedExport(total=len(ordered))
    for place, node in ordered:
        problem = decoded.bad_ids.get(place) if decoded.bad_ids else None
        problem = problem or _id_problem(node.ref) or _time_problem(node, latest_ns)
        if problem:
            out.rejected.append(SpanRejection(node.ref, problem))
            continue
        kind = classify(node.attrs)
        agent_id, agent_version = _agent(node, nodes)
        if kind != "action":
            out.summaries.append(_summary(node, kind, agent_id))
            out.summary_spans.append(node.ref)
            continue
        try:
            event = _action(node, agent_id, agent_version, config)
        except _Unmapped as exc:
            out.rejected.append(SpanRejection(node.ref, str(exc)))
            continue
        out.actions.append(event)
        out.action_spans.append(node.ref)
    return out


def _id_problem(ref: SpanRef) -> str | None:
    if len(ref.trace_id) != 32 or not ref.trace_id.strip("0"):
        return "traceId is missing or not 16 bytes: an exporter always sets it; the span cannot be de-duplicated"
    if len(ref.span_id) != 16 or not ref.span_id.strip("0"):
        return "spanId is missing or not 8 bytes: an exporter always sets it; the span cannot be de-duplicated"
    return None


def _time_problem(node: _Node, latest_ns: int) -> str | None:
    start, end = node.start, node.end
    if start == 0 or end == 0:
        return "startTimeUnixNano or endTimeUnixNano is missing (0): export only ended spans"
    if end < start:
        return f"it ends {(start - end) / 1e6:,.0f} ms before it starts"
    if start < EARLIEST_NS:
        return f"it starts at {_rfc3339(start)}, before 2000: the clock of the process that made it is wrong"
    if start > latest_ns:
        return (f"it starts at {_rfc3339(start)}, ahead of this server's clock by more than otlp.max_future_minutes: "
                "the clock of the process that made it is wrong")
    return None


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _rfc3339(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 in UTC, to the microsecond (what the store keeps). The spans of an
    export share their seconds, so the formatted second is cached."""
    seconds, fraction = divmod(ns, 10**9)
    return f"{_second(seconds)}.{fraction // 1000:06d}Z"


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _own_agent(node: _Node) -> str | None:
    attrs = node.attrs
    agent = _first(attrs, AGENT_ID_KEYS)
    if agent is None and attrs.get("traceloop.span.kind") == "agent":
        agent = attrs.get("traceloop.entity.name") or node.ref.name or None  # OpenLLMetry's agent
    if agent is None and _upper(attrs.get("openinference.span.kind")) == "AGENT":
        agent = node.ref.name or None  # OpenInference names an agent span after the agent
    return str(agent) if agent is not None else None


def _agent(node: _Node, nodes: dict[bytes, _Node]) -> tuple[str, str | None]:
    """The agent and its version (the module's step 3)."""
    current: _Node | None = node
    for _ in range(MAX_ANCESTORS):
        if current is None:
            break
        agent = _own_agent(current)
        if agent is not None:
            version = _first(current.attrs, ("agentwatch.agent_version", "gen_ai.agent.version"))
            return agent, str(version) if version is not None else _service_version(node)
        current = nodes.get(current.parent) if current.parent else None
    resource = node.resource
    agent = _first(resource, AGENT_ID_KEYS) or resource.get("service.name") or UNKNOWN_AGENT
    version = _first(resource, ("agentwatch.agent_version", "gen_ai.agent.version"))
    return str(agent), str(version) if version is not None else _service_version(node)


def _service_version(node: _Node) -> str | None:
    version = node.resource.get("service.version")
    return str(version) if version is not None else None


def _failure(node: _Node) -> tuple[str | None, str | None]:
    """(error type, message) of a failed span, from error.type, its exception events and its status."""
    error_type = node.attrs.get("error.type")
    message = node.span.status.message or None
    for event in node.span.events:
        if event.name == "exception":
            details = attributes(event.attributes)
            error_type = error_type or details.get("exception.type")
            message = message or details.get("exception.message")
            break
    return (str(error_type) if error_type is not None else None), (str(message) if message is not None else None)


def _failed(node: _Node) -> bool:
    return node.span.status.code == Status.STATUS_CODE_ERROR or "error.type" in node.attrs


def _summary(node: _Node, kind: str, agent_id: str) -> dict[str, Any]:
    attrs, ref = node.attrs, node.ref
    operation = attrs.get("gen_ai.operation.name") or attrs.get("openinference.span.kind")
    failed = _failed(node)
    summary: dict[str, Any] = {
        "event_id": f"otel-{ref.trace_id}-{ref.span_id}",
        "ts": _rfc3339(node.start),
        "agent_id": agent_id,
        "kind": kind,
        "name": ref.name,
        "operation": _text(operation),
        "provider": _text(_first(attrs, PROVIDER_KEYS)),
        "model": _text(_first(attrs, MODEL_KEYS)),
        "input_tokens": _count(_first(attrs, INPUT_TOKEN_KEYS)),
        "output_tokens": _count(_first(attrs, OUTPUT_TOKEN_KEYS)),
        "status": "error" if failed else "ok",
        "error_type": _failure(node)[0] if failed else None,
        "latency_ms": (node.end - node.start) / 1e6,
        "trace_id": ref.trace_id,
        "span_id": ref.span_id,
        "service": _text(node.resource.get("service.name")),
    }
    return {k: v for k, v in summary.items() if v is not None}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _count(value: Any) -> int | None:
    """A token count; the SDKs write ints (OTLP/JSON as strings), anything else is not a count."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class _Unmapped(Exception):
    """A tool mapping names a value its span does not hold."""


def _action(node: _Node, agent_id: str, agent_version: str | None, config: OtlpConfig) -> dict[str, Any]:
    """An action event of a tool span (the module's step 4). Runs for every tool span: plain lookups, no loops
    over keys that are not there."""
    attrs, ref = node.attrs, node.ref
    # TOOL_NAME_KEYS, spelled out: this runs for every tool span
    tool = attrs.get("gen_ai.tool.name") or attrs.get("tool.name") or attrs.get("traceloop.entity.name")
    tool_name = str(tool) if tool else ref.name.removeprefix("execute_tool ").strip()
    call_id = attrs.get("gen_ai.tool.call.id") or attrs.get("tool_call.id")
    mapping = config.tools.get(tool_name)
    mapped: dict[str, Any] = {}
    roots: dict[str, Any] = {}
    if mapping is not None:
        roots = {"args": _arguments(attrs), "result": json_value(_first(attrs, RESULT_KEYS)), "attributes": attrs}
        mapped = {key: _evaluate(spec, roots) for key, spec in mapping.fields().items()}

    event: dict[str, Any] = {
        "event_id": f"otel-{ref.trace_id}-{ref.span_id}",
        "ts": _rfc3339(node.start),
        "agent_id": str(attrs.get("agentwatch.agent_id") or mapped.get("agent_id") or agent_id),
        "action": attrs.get("agentwatch.action") or (mapping and mapping.action) or _tool_action(tool_name),
        "resource": _resource(attrs, mapping, roots, tool_name, call_id, ref),
        "status": _status(node),
        "latency_ms": (node.end - node.start) / 1e6,
        "trace_id": ref.trace_id,
        "span_id": ref.span_id,
    }
    if agent_version is not None:
        event["agent_version"] = agent_version
    for key, attribute in _OBJECT_ATTRIBUTES:
        # An attribute that is not a JSON object text stays as it is: the event's validation then names it.
        value = (json_object(attrs[attribute]) or attrs[attribute]) if attribute in attrs else mapped.get(key)
        if value is None and key == "inputs":
            value = json_object(roots["args"] if roots else _arguments(attrs))
        if value is not None:
            event[key] = value
    for key, attribute in _SCALAR_ATTRIBUTES:
        value = attrs.get(attribute, mapped.get(key))
        if value is not None:
            event[key] = value
    approved_by = attrs.get("agentwatch.approval.approved_by")
    approved_at = attrs.get("agentwatch.approval.approved_at")
    if (approved_by is None) != (approved_at is None):
        raise _Unmapped("agentwatch.approval.approved_by and agentwatch.approval.approved_at go together: one is "
                        "set without the other")
    if approved_by is not None:
        event["approval"] = {"approved_by": approved_by, "approved_at": approved_at}
    if event["status"] == "error":
        error_type, message = _failure(node)
        event["error"] = {"code": error_type or "error", **({"message": message} if message else {})}
    return event


def _arguments(attrs: dict[str, Any]) -> Any:
    """The tool call's arguments, parsed when they are a JSON text."""
    return json_value(_first(attrs, ARGUMENT_KEYS))


def _tool_action(tool_name: str) -> str:
    """``tool.<name>``, the name made a dotted verb's segment (letters, digits, _ and -, a letter first)."""
    segment = _NOT_ACTION_CHARS.sub("_", tool_name) or "unnamed"
    return f"tool.{segment if segment[0].isalpha() else 't_' + segment}"


def _status(node: _Node) -> Any:
    """agentwatch.status as given (one not in the format is then refused by name, never read as ok), else the
    span's."""
    declared = node.attrs.get("agentwatch.status")
    if declared is not None:
        return declared
    return "error" if _failed(node) else "ok"


def _resource(attrs: dict[str, Any], mapping: ToolMapping | None, roots: dict[str, Any], tool_name: str, call_id: Any,
              ref: SpanRef) -> dict[str, str]:
    kind, ident = attrs.get("agentwatch.resource.type"), attrs.get("agentwatch.resource.id")
    if kind is not None or ident is not None:
        if kind is None or ident is None:
            raise _Unmapped("agentwatch.resource.type and agentwatch.resource.id go together: one is set without "
                            "the other")
        if isinstance(kind, dict | list) or isinstance(ident, dict | list):
            raise _Unmapped("agentwatch.resource.type and agentwatch.resource.id must be single values, not arrays")
        return {"type": str(kind), "id": str(ident)}
    if mapping is None or mapping.resource is None:
        return {"type": "tool_call", "id": str(call_id) if call_id is not None else ref.span_id}
    resource = {}
    for key in ("type", "id"):
        spec = getattr(mapping.resource, key)
        value = _evaluate(spec, roots)
        if value is None or value == "" or isinstance(value, dict | list):
            raise _Unmapped(f"otlp.tools.{tool_name}.resource.{key} ({spec}) is "
                            f"{'missing from' if value in (None, '') else 'not a single value in'} this call: "
                            "fix the mapping or the tool's arguments")
        resource[key] = str(value)
    return resource


def _evaluate(spec: Any, roots: dict[str, Any]) -> Any:
    """A mapping value: a path into args, result or attributes, else the literal itself."""
    if not isinstance(spec, str):
        return spec
    root, _, rest = spec.partition(".")
    if root not in PATH_ROOTS:
        return spec
    if root == "attributes":
        return roots["attributes"].get(rest) if rest else None
    return at_path(roots[root], rest.split(".")) if rest else roots[root]
