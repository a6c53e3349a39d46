"""The client's exceptions: one tree under AgentwatchClientError (drawn in the package docstring)."""

from __future__ import annotations

from typing import Any


class AgentwatchClientError(Exception):
    """The root: every error the agentwatch client raises on purpose is one of these."""


class InvalidArgument(AgentwatchClientError, ValueError):
    """An argument cannot make a valid event or setting (a resource without an id, a naive datetime, ...)."""


class ClientClosed(AgentwatchClientError):
    """The client was closed: it takes no more events and makes no more requests."""


class QueueFull(AgentwatchClientError):
    """``max_queue`` events already wait to be sent: the new one was not queued (agentwatch is slow or down)."""


class FlushTimeout(AgentwatchClientError):
    """``flush(timeout)`` passed with events still unacknowledged; they stay queued and are still retried."""

    def __init__(self, message: str, pending: int) -> None:
        super().__init__(message)
        self.pending = pending


class ActionScopeError(AgentwatchClientError):
    """``aw.action(...)`` misused: a recorded action entered as a scope, or one scope entered twice."""


class ServerUnreachable(AgentwatchClientError):
    """A synchronous call (guard, schema snapshot) got no answer: connection error, timeout, 429 or 5xx."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RequestRefused(AgentwatchClientError):
    """The server refused a synchronous request for good (a 4xx other than 429); sending it again will not help."""

    def __init__(self, message: str, status: int, code: str, details: list[Any] | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details or []
        self.body = body or {}


class AuthenticationFailed(RequestRefused):
    """401 or 403: the key is missing, unknown, revoked, or of a scope that does not allow the route."""
