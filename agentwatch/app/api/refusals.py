"""One log line and one count per refused request, written in one place: the response path.

Every client error (4xx) and every 507 leaves a line on the ``agentwatch.api.refused`` logger naming the method,
the endpoint (the route template, so an id in the path is not repeated), the status, the error code, the key id
and the first refused field. Never the key's secret (only the id part of a token is read) and never the body of
the request (the answer's error code and field names are read, not its message, which can quote a value).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentwatch.app.metrics import count_refused
from agentwatch.core.api_keys import parse_token

log = logging.getLogger("agentwatch.api.refused")

MAX_ERROR_BODY = 64 << 10  # error answers are small (details are bounded); a larger one is not parsed
UNMATCHED = "unmatched"  # the endpoint label of a path no route matches (bounded: the label is not the raw path)
PROTOBUF = "application/x-protobuf"


def refused(status: int) -> bool:
    return 400 <= status < 500 or status == 507


class RefusedRequests:
    """ASGI middleware: logs and counts each refused request once its answer is complete."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answer: dict[str, Any] = {}
        body = bytearray()

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["type"] = _header(message.get("headers", []), b"content-type")
            elif message["type"] == "http.response.body" and refused(answer.get("status", 200)):
                if len(body) <= MAX_ERROR_BODY:
                    body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    _report(scope, answer["status"], answer["type"], bytes(body))
            await send(message)

        await self.app(scope, receive, send_and_watch)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    return next((value.decode("latin-1") for key, value in headers if key.lower() == name), "")


def _report(scope: Scope, status: int, content_type: str, body: bytes) -> None:
    route = scope.get("route")
    endpoint = getattr(route, "path", None) or UNMATCHED
    code, field = _code_and_field(content_type, body)
    key_id = _key_id(scope)
    count_refused(endpoint, status, code)
    fields = {"method": scope["method"], "endpoint": endpoint, "status": status, "error_code": code,
              "key_id": key_id, "field": field}
    if endpoint == UNMATCHED:
        fields["path"] = scope["path"][:200]
    shown = f"{scope['method']} {fields.get('path', endpoint)}"
    extras = ", ".join(f"{name} {value}" for name, value in (("key", key_id), ("field", field)) if value is not None)
    log.warning("refused %s: %d %s%s", shown, status, code, f" ({extras})" if extras else "", extra=fields)


def _code_and_field(content_type: str, body: bytes) -> tuple[str, str | None]:
    """The error code and the first refused field of an error answer (our JSON shape, or an OTLP Status)."""
    if len(body) > MAX_ERROR_BODY:
        return "unparsed", None
    if content_type.startswith(PROTOBUF):
        from google.rpc.status_pb2 import Status  # the protobuf runtime: only an OTLP error needs it

        status = Status()
        try:
            status.ParseFromString(body)
        except Exception:  # not a Status after all: the count and the line stand without a code
            return "unparsed", None
        code, _, _ = status.message.partition(":")
        return (code if code.isidentifier() else "unparsed"), None
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return "unparsed", None
    if not isinstance(error, dict):
        return "unparsed", None
    code = error.get("code")
    return (code if isinstance(code, str) else "unparsed"), _first_field(error.get("details"))


def _first_field(details: Any) -> str | None:
    """`field` of the first detail: a parameter's ({field, message}), or a refused event's first error."""
    if not isinstance(details, list) or not details or not isinstance(details[0], dict):
        return None
    first = details[0]
    if isinstance(first.get("errors"), list) and first["errors"] and isinstance(first["errors"][0], dict):
        first = first["errors"][0]
    field = first.get("field")
    return field if isinstance(field, str) else None


def _key_id(scope: Scope) -> str | None:
    """The id of the request's key: the authenticated one, else the id part of a well-formed token."""
    key = scope.get("state", {}).get("api_key")
    if key is not None:
        return str(key.id)
    header = _header(scope.get("headers", []), b"authorization")
    scheme, _, token = header.partition(" ")
    parsed = parse_token(token) if scheme.lower() == "bearer" else None
    return parsed[0] if parsed else None
