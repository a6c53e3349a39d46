"""The one JSON shape of every error the API sends, and the handlers that produce it.

Every error response, whatever raised it, reads::

    {"error": {"code": "<snake_case>", "message": "<what failed, on what, what to do>", "details": [...]}}

``details`` is always present (an empty list when there is nothing more to say). A batch with
refused events (422) also carries the top-level counts ``accepted`` and ``duplicates`` of the
events of that batch that were kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentwatch.core.errors import (
    AgentwatchError,
    AuthError,
    ConfigError,
    FormatError,
    StoreError,
    StoreFullError,
)

log = logging.getLogger(__name__)


class ErrorInfo(BaseModel):
    """What went wrong."""

    code: str = Field(description="Stable snake_case code, e.g. invalid_json, missing_api_key, body_too_large.")
    message: str = Field(description="What failed, on what, and what to do about it.")
    details: list[Any] = Field(default_factory=list, description="Itemized problems, e.g. one entry per refused event.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorInfo


class EventRejection(BaseModel):
    """One refused event of a batch."""

    index: int = Field(description="Position of the event in the batch (0 for a single object).")
    event_id: str | None = Field(description="The event's event_id when it has a readable one.")
    errors: list[dict[str, str]] = Field(description="One {field, message} pair per problem; field is dotted.")


class RejectedBatchBody(ErrorBody):
    """A 422 answer: some events were refused, the `accepted` ones of the same batch were stored."""

    accepted: int
    duplicates: int


class ApiError(Exception):
    """An error with its HTTP status, code and message; turned into the error shape by a handler."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers
        self.extra = extra or {}


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """The error shape as a dict."""
    return {"error": {"code": code, "message": message, "details": details or []}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A JSONResponse in the error shape; `extra` adds top-level keys (the 422 batch counts)."""
    return JSONResponse({**error_body(code, message, details), **(extra or {})}, status_code=status, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    507: "insufficient_storage",
}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers, exc.extra)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _STATUS_CODES.get(status, "http_error")
    if status == 404:
        message = f"no such route: {request.method} {request.url.path}; the routes are listed at /docs"
    elif status == 405:
        allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
        message = f"{request.method} is not allowed on {request.url.path}"
        message += f"; use {allowed}" if allowed else "; see /docs"
    else:
        message = str(exc.detail) if exc.detail else f"HTTP {status}"
    return error_response(status, code, message, headers=dict(exc.headers) if exc.headers else None)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(part) for part in error.get("loc", ())), "message": str(error.get("msg", ""))}
        for error in exc.errors()
    ]
    names = ", ".join(d["field"] for d in details) or "the request"
    return error_response(
        400, "invalid_parameter", f"invalid request parameter(s): {names}; see details and /docs", details
    )


async def _agentwatch_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, AuthError):
        return error_response(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, ConfigError):
        return error_response(400, "invalid_parameter", str(exc))
    if isinstance(exc, FormatError):
        return error_response(422, "invalid_payload", str(exc))
    if isinstance(exc, StoreFullError):
        log.error("no space left on %s %s: %s", request.method, request.url.path, exc)
        return error_response(507, "insufficient_storage", f"{exc}; nothing of this request was acknowledged")
    if isinstance(exc, StoreError):
        log.error("store error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "store_unavailable", f"the store cannot take this request now: {exc}; retry later")
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500,
        "internal_error",
        "the server failed on this request (the traceback is in its log); it was not acknowledged: retry it "
        "later (events are de-duplicated by event_id, so a retry never stores one twice)",
    )


# gRPC status codes of google.rpc.Status, as OTLP/HTTP maps them from HTTP statuses.
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14, 507: 8}
OTLP_PROTOBUF_ROUTES = ("/v1/traces",)


def _as_otlp_status(request: Request, response: Response) -> Response:
    """The error as the google.rpc.Status an OTLP exporter expects, when it sent protobuf to an OTLP route."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.url.path not in OTLP_PROTOBUF_ROUTES or content_type != "application/x-protobuf":
        return response
    from google.rpc.status_pb2 import Status  # the protobuf runtime: only an OTLP error needs it

    error = json.loads(bytes(response.body))["error"]
    status = Status(code=_GRPC_CODES.get(response.status_code, 2), message=f"{error['code']}: {error['message']}")
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    return Response(status.SerializeToString(), status_code=response.status_code, headers=headers,
                    media_type="application/x-protobuf")


def _shaped(handler: Callable[[Request, Exception], Awaitable[Response]]
            ) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        return _as_otlp_status(request, await handler(request, exc))
    return handle


def install_error_handlers(app: FastAPI) -> None:
    """Make every error the app sends use the one shape (a google.rpc.Status to an OTLP protobuf exporter)."""
    app.add_exception_handler(ApiError, _shaped(_api_error))
    app.add_exception_handler(StarletteHTTPException, _shaped(_http_exception))
    app.add_exception_handler(RequestValidationError, _shaped(_request_validation))
    app.add_exception_handler(AgentwatchError, _shaped(_agentwatch_error))
    app.add_exception_handler(Exception, _shaped(_unexpected))


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody,
          "description": "The body is not JSON, has the wrong top-level type, or a parameter is wrong."},
    401: {"model": ErrorBody, "description": "No API key, a malformed one, or an unknown or revoked one."},
    403: {"model": ErrorBody, "description": "The API key's scope does not allow this route."},
    413: {"model": ErrorBody, "description": "The body is larger than the server's limit."},
    500: {"model": ErrorBody, "description": "The server failed; the request was not acknowledged, retry it."},
}
