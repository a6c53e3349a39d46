"""``Client``: what an agent holds to send its actions and outcomes to agentwatch and to ask its guard."""

from __future__ import annotations

import atexit
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from agentwatch.client.errors import (
    AuthenticationFailed,
    ClientClosed,
    InvalidArgument,
    QueueFull,
    RequestRefused,
    ServerUnreachable,
)
from agentwatch.client.events import ResourceArg, encode, json_text, new_event_id, resource_dict, rfc3339
from agentwatch.client.guard import GuardCache, GuardDecision, OnUnreachable
from agentwatch.client.scope import ActionScope
from agentwatch.client.sender import BatchSender, SenderSettings
from agentwatch.client.stats import ClientStats, StatsKeeper
from agentwatch.client.transport import auth_headers, read_answer

log = logging.getLogger("agentwatch.client")

MAX_BATCH_ITEMS = 10_000  # the server's default limits.max_batch_items: a larger batch is refused whole


class Client:
    """Sends events in the background and answers whether an agent may act. Use it as a context manager, or call
    ``close()``; it is also closed (flushed) at interpreter exit. Thread-safe.

    `url`: the server, e.g. ``http://127.0.0.1:8000``. `key`: an API key of scope ingest (``agentwatch keys
    create --scope ingest``), never logged. `agent_id`, `agent_version`: defaults for the events and the guard.
    `batch_size` events at most per POST; a batch leaves when full or `flush_interval_s` after its first event
    was queued. `max_queue`: events waiting at most (QueueFull past it). `timeout_s`: per request.
    `max_retry_s`: the longest wait between two attempts of a batch. `guard_cache_s`: how long an agent's guard
    answer is reused. `on_unreachable`: "auto", "closed" or "open" (see ``allowed``). `irreversible_actions`:
    actions that fail closed under "auto", besides those the server names.
    """

    def __init__(self, url: str, key: str, *, agent_id: str | None = None, agent_version: str | None = None,
                 batch_size: int = 500, flush_interval_s: float = 1.0, max_queue: int = 10_000,
                 timeout_s: float = 10.0, max_retry_s: float = 30.0, guard_cache_s: float = 5.0,
                 on_unreachable: OnUnreachable = "auto", irreversible_actions: Iterable[str] = ()) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"url {url!r} is not an http(s) URL; give the server's address, e.g. "
                                  "http://127.0.0.1:8000")
        if not isinstance(key, str) or not key.strip():
            raise InvalidArgument("key is empty; create one with `agentwatch keys create --scope ingest` and pass it "
                                  "(e.g. from the AGENTWATCH_KEY environment variable)")
        if not 1 <= batch_size <= MAX_BATCH_ITEMS:
            raise InvalidArgument(f"batch_size={batch_size}: use 1 to {MAX_BATCH_ITEMS} (the server's batch limit)")
        if max_queue < 1:
            raise InvalidArgument(f"max_queue={max_queue}: use at least 1")
        for name, value in (("flush_interval_s", flush_interval_s), ("timeout_s", timeout_s),
                            ("max_retry_s", max_retry_s)):
            if not value > 0:
                raise InvalidArgument(f"{name}={value}: use a number of seconds above 0")
        if guard_cache_s < 0:
            raise InvalidArgument(f"guard_cache_s={guard_cache_s}: use 0 (ask every time) or more seconds")
        self.url = url.rstrip("/")
        self.agent_id = agent_id
        self.agent_version = agent_version
        self._key = key
        self._timeout_s = timeout_s
        self._stats = StatsKeeper()
        self._guard = GuardCache(self.url, key, guard_cache_s, on_unreachable, irreversible_actions, timeout_s)
        self._sender = BatchSender(SenderSettings(self.url, key, batch_size, flush_interval_s, max_queue, timeout_s,
                                                  max_retry_s), self._stats)
        self._closed = False
        atexit.register(self._close_at_exit)

    def __repr__(self) -> str:
        return f"Client({self.url!r}, agent_id={self.agent_id!r})"  # never the key

    # -- events ------------------------------------------------------------------------------------------------

    def action(self, action: str, resource: ResourceArg, *, status: str | None = None, agent_id: str | None = None,
               agent_version: str | None = None, event_id: str | None = None, ts: datetime | str | None = None,
               inputs: Mapping[str, Any] | None = None, before: Mapping[str, Any] | None = None,
               after: Mapping[str, Any] | None = None, decision: Mapping[str, Any] | None = None,
               confidence: float | None = None, rationale: str | None = None, authorized_by: str | None = None,
               approval: Mapping[str, Any] | None = None, external: bool | None = None,
               records_affected: int | None = None, error: Mapping[str, Any] | None = None,
               latency_ms: float | None = None, trace_id: str | None = None, span_id: str | None = None,
               **extra: Any) -> ActionScope:
        """An action event. With `status` ("ok", "error", "skipped", "pending_approval") it is queued now and the
        returned handle gives its ``event_id``; without, it is a scope to enter (``with aw.action(...) as act:``)
        that queues one action when the block ends (see agentwatch.client.scope). Unknown keyword arguments
        are keys of your own, kept in the event's ``extra`` column. Raises QueueFull, ClientClosed,
        InvalidArgument."""
        agent = agent_id or self.agent_id
        if not agent:
            raise InvalidArgument(f"action {action}: no agent_id; pass agent_id= here or to Client(...)")
        fields = {"event_id": event_id or new_event_id("act"), "ts": ts, "agent_id": agent,
                  "agent_version": agent_version or self.agent_version, "action": action,
                  "resource": resource_dict(resource), "status": status, "inputs": _dict(inputs),
                  "before": _dict(before), "after": _dict(after), "decision": _dict(decision),
                  "confidence": confidence, "rationale": rationale, "authorized_by": authorized_by,
                  "approval": _dict(approval), "external": external, "records_affected": records_affected,
                  "error": _dict(error), "latency_ms": latency_ms, "trace_id": trace_id, "span_id": span_id}
        scope = ActionScope(self._record_action, fields, extra)
        if status is not None:
            if scope.ts is None:
                scope.ts = rfc3339(None)  # the moment it was made
            scope.record_now()
        return scope

    def outcome(self, kind: str, resource: ResourceArg, *, event_id: str | None = None,
                ts: datetime | str | None = None, actor: str | None = None, field: str | None = None,
                from_: Any = None, to: Any = None, amount: float | None = None, corrects_event_id: str | None = None,
                **extra: Any) -> str:
        """Queue an outcome event (a rep's correction, a meeting booked, a deal won); returns its event_id.
        `from_` is the event's ``from``. Raises QueueFull, ClientClosed, InvalidArgument."""
        fields = {"event_id": event_id or new_event_id("out"), "ts": rfc3339(ts), "kind": kind,
                  "resource": resource_dict(resource), "actor": actor, "field": field, "from": from_, "to": to,
                  "amount": amount, "corrects_event_id": corrects_event_id}
        clashes = sorted(set(extra) & set(fields))
        if clashes:
            raise InvalidArgument(f"outcome {kind}: extra keys {clashes} are fields of the event")
        event = encode("outcomes", {**extra, **fields})
        self._sender.put(event)
        return event.event_id

    def schema_snapshot(self, snapshot: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, format: str = "native",
                        object: str | None = None, taken_at: datetime | str | None = None) -> dict[str, Any]:
        """Send CRM schema snapshot(s) now, not batched; returns the server's answer ``{accepted, duplicates}``.
        `format`: native, salesforce (a describe result) or hubspot (a properties response, `object` required).
        Raises RequestRefused (422: the valid ones of a list were stored, ``.body`` counts them; ``.details``
        names the refused), AuthenticationFailed, ServerUnreachable (nothing stored; sending it again is safe:
        a snapshot is identified by source, object and taken_at)."""
        self._open()
        params = {"format": format} | ({"object": object} if object else {}) | (
            {"taken_at": rfc3339(taken_at)} if taken_at is not None else {})
        try:
            body = json_text(snapshot, "schema snapshot")
            response = httpx.post(f"{self.url}/v1/schema-snapshots", params=params, content=body,
                                  headers=auth_headers(self._key), timeout=self._timeout_s)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"schema snapshot not sent to {self.url}: {type(exc).__name__}: {exc}; nothing "
                                    "was stored, send it again later") from None
        answer = read_answer(response)
        if answer.verdict == "ok":
            return answer.body
        message = f"schema snapshot: {self.url} answered HTTP {answer.status} {answer.code}: {answer.message}"
        if answer.verdict == "retry":
            raise ServerUnreachable(message + "; nothing was stored, send it again later", answer.status)
        error = AuthenticationFailed if answer.status in (401, 403) else RequestRefused
        raise error(message, answer.status or 0, answer.code, answer.body.get("error", {}).get("details"),
                    answer.body)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until every event queued so far is acknowledged (the server answered 200 or 422: on its disk)
        or refused for good. Raises FlushTimeout after `timeout` seconds (None: wait as long as it takes); the
        events then stay queued and keep being retried."""
        self._sender.flush(timeout)

    @property
    def stats(self) -> ClientStats:
        """Counts of what became of the events (sent, duplicates, refused, dropped, retries) and the last errors."""
        return self._sender.stats()

    # -- the guard ---------------------------------------------------------------------------------------------

    def guard(self, agent_id: str | None = None, action: str | None = None) -> GuardDecision:
        """The guard's decision for the agent (default: the client's), cached `guard_cache_s` seconds. When
        agentwatch cannot answer and nothing fresh is cached, `on_unreachable` decides: "auto" refuses an
        `action` marked irreversible (in `irreversible_actions`, or in the server's last `fail_closed_actions`
        for the agent) and allows any other; "closed" refuses, "open" allows; ``source`` is then "unreachable"
        and ``reason`` says why. Raises AuthenticationFailed (a bad key is not a reason to act)."""
        agent = agent_id or self.agent_id
        if not agent:
            raise InvalidArgument("guard: no agent_id; pass agent_id= here or to Client(...)")
        self._open()
        return self._guard.decide(agent, action)

    def allowed(self, agent_id: str | None = None, action: str | None = None) -> bool:
        """May the agent act now (on `action`)? ``guard(...).allowed``; call it before every action."""
        return self.guard(agent_id, action).allowed

    # -- the end -----------------------------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting up to `timeout` seconds), then stop. Events still unacknowledged are
        dropped: logged as an error and counted in ``stats.dropped``. Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        self._sender.close(timeout)  # logs what it drops
        self._guard.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _close_at_exit(self) -> None:
        self.close(self._timeout_s)

    def _open(self) -> None:
        if self._closed:
            raise ClientClosed(f"agentwatch client for {self.url} is closed; make a new Client")

    def _record_action(self, scope: ActionScope, at_exit: bool) -> None:
        event = encode("actions", scope.event())
        try:
            self._sender.put(event)
        except (QueueFull, ClientClosed) as exc:
            if not at_exit:
                raise
            # A scope's block has done its work: raising now would make it look failed (or hide its own error).
            self._stats.add(dropped=1)
            self._stats.error("actions", None, type(exc).__name__, str(exc), event.event_id)
            log.error("agentwatch client: action %s dropped: %s", event.event_id, exc)


def _dict(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)
