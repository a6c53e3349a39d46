"""``aw.action(...)``: one action event, recorded at once (given a status) or around a block (as a scope).

The rule: called with ``status=`` the action is recorded at once and the returned handle only tells its
``event_id``; entering that handle raises ActionScopeError. Called without ``status=`` it is a scope: nothing is
recorded until the ``with`` block ends, then exactly one action, with ``latency_ms`` measured around the block
and ``status`` "ok", or "error" with ``error: {code: <exception class>, message: str(exc)}`` when the block
raised (the exception goes on). A scope that is never entered records nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from agentwatch.client.errors import ActionScopeError, AgentwatchClientError, InvalidArgument
from agentwatch.client.events import ACTION_STATUSES, rfc3339

Stage = Literal["new", "open", "recorded", "closed"]  # recorded: at once (status= given); closed: a scope that ended
# Queues the action; `at_exit` True when a scope ends (a full queue is then logged and counted, not raised).
Recorder = Callable[["ActionScope", bool], None]
log = logging.getLogger("agentwatch.client")


class ActionScope:
    """One action event being made. Set any field on it inside the block (``act.after = {...}``); ``extra`` holds
    keys of your own (stored in the event's ``extra`` column)."""

    def __init__(self, record: Recorder, fields: dict[str, Any], extra: dict[str, Any]) -> None:
        self._record = record
        self._stage: Stage = "new"
        self._started = 0.0
        self.event_id: str = fields["event_id"]
        self.ts: datetime | str | None = fields.get("ts")
        self.agent_id: str = fields["agent_id"]
        self.agent_version: str | None = fields.get("agent_version")
        self.action: str = fields["action"]
        self.resource: dict[str, str] = fields["resource"]
        self.status: str | None = fields.get("status")
        self.inputs: dict[str, Any] | None = fields.get("inputs")
        self.before: dict[str, Any] | None = fields.get("before")
        self.after: dict[str, Any] | None = fields.get("after")
        self.decision: dict[str, Any] | None = fields.get("decision")
        self.confidence: float | None = fields.get("confidence")
        self.rationale: str | None = fields.get("rationale")
        self.authorized_by: str | None = fields.get("authorized_by")
        self.approval: dict[str, Any] | None = fields.get("approval")
        self.external: bool | None = fields.get("external")
        self.records_affected: int | None = fields.get("records_affected")
        self.error: dict[str, Any] | None = fields.get("error")
        self.latency_ms: float | None = fields.get("latency_ms")
        self.trace_id: str | None = fields.get("trace_id")
        self.span_id: str | None = fields.get("span_id")
        self.extra: dict[str, Any] = dict(extra)

    @property
    def recorded(self) -> bool:
        """True once the event is handed to the client's queue."""
        return self._stage in ("recorded", "closed")

    def event(self) -> dict[str, Any]:
        """The action event as it is sent (None values are left out when it is encoded)."""
        if self.status not in ACTION_STATUSES:
            raise InvalidArgument(f"action {self.action} ({self.event_id}): status {self.status!r} is not one of "
                                  f"{', '.join(ACTION_STATUSES)}")
        fields = {"event_id": self.event_id, "ts": rfc3339(self.ts), "agent_id": self.agent_id,
                  "agent_version": self.agent_version, "action": self.action, "resource": self.resource,
                  "status": self.status, "inputs": self.inputs, "before": self.before, "after": self.after,
                  "decision": self.decision, "confidence": self.confidence, "rationale": self.rationale,
                  "authorized_by": self.authorized_by, "approval": self.approval, "external": self.external,
                  "records_affected": self.records_affected, "error": self.error, "latency_ms": self.latency_ms,
                  "trace_id": self.trace_id, "span_id": self.span_id}
        clashes = sorted(set(self.extra) & set(fields))
        if clashes:
            raise InvalidArgument(f"action {self.action}: extra keys {clashes} are fields of the event; set them "
                                  "as attributes")
        return {**self.extra, **fields}

    def record_now(self) -> None:
        """Record it at once (what ``aw.action(..., status=...)`` does)."""
        self._record(self, False)
        self._stage = "recorded"

    def __enter__(self) -> ActionScope:
        if self._stage == "recorded":
            raise ActionScopeError(f"action {self.action} ({self.event_id}) was recorded when it was made, because "
                                   "status= was given; to time a block, call aw.action(...) without status=")
        if self._stage in ("open", "closed"):
            state = "is already open" if self._stage == "open" else "was recorded when its block ended"
            raise ActionScopeError(f"action {self.action} ({self.event_id}) {state}; one scope records one action, "
                                   "make a new one with aw.action(...)")
        self._stage = "open"
        if self.ts is None:
            self.ts = rfc3339(None)  # when the action began
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> Literal[False]:
        if self.latency_ms is None:
            self.latency_ms = round((time.perf_counter() - self._started) * 1000, 3)
        if exc is not None:
            self.status = "error"
            self.error = {"code": type(exc).__name__, "message": str(exc)}
        elif self.status is None:
            self.status = "ok"
        try:
            self._record(self, True)
        except AgentwatchClientError:
            if exc is None:
                raise
            log.exception("agentwatch client: action %s (%s) could not be recorded", self.action, self.event_id)
        finally:
            self._stage = "closed"
        return False  # an exception of the block goes on to the caller
