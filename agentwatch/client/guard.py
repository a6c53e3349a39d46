"""May this agent act now? The guard's answers, cached per agent, and the rule when agentwatch cannot answer.

An agent asks before every action, so each agent's answer is kept `guard_cache_s` seconds. When the server
cannot answer (connection error, timeout, 429, 5xx) and no fresh answer is cached, `on_unreachable` decides:
"auto" refuses an action marked irreversible (fail closed) and allows any other (fail open); "closed" and
"open" force one way. Marked irreversible: named in the client's `irreversible_actions`, or in the
`fail_closed_actions` the server last sent for that agent (its policy's forbidden_actions and
requires_approval). A failed attempt is not repeated for `guard_cache_s` either, so a hanging server costs
one timeout per period, not one per action.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import quote

import httpx

from agentwatch.client.errors import AuthenticationFailed, InvalidArgument, RequestRefused
from agentwatch.client.transport import Answer, auth_headers, no_answer, read_answer

log = logging.getLogger("agentwatch.client")

OnUnreachable = Literal["auto", "closed", "open"]
ON_UNREACHABLE = ("auto", "closed", "open")


@dataclass(frozen=True)
class GuardDecision:
    """The guard's answer for one agent (and action), as the client applies it."""

    allowed: bool
    reason: str | None  # why not allowed; or, when agentwatch was unreachable, which rule decided
    incident_id: str | None  # the incident that pauses the agent (null for an operator's pause)
    fail_closed_actions: tuple[str, ...] = ()  # the server's list for this agent (the last one it sent)
    source: Literal["server", "cache", "unreachable"] = "server"


@dataclass
class _Known:
    """What the client knows of one agent: its last answer, when it came, and the last failed attempt."""

    decision: GuardDecision | None = None
    fetched_at: float = -float("inf")
    failed_at: float = -float("inf")
    failure: str = ""
    warned: frozenset[tuple[str | None, bool]] = frozenset()  # (action, allowed) logged in this unreachable episode


class GuardCache:
    """Answers `allowed` from the server, a fresh cached answer, or the unreachable rule."""

    def __init__(self, url: str, key: str, cache_s: float, on_unreachable: OnUnreachable,
                 irreversible_actions: Iterable[str], timeout_s: float) -> None:
        if on_unreachable not in ON_UNREACHABLE:
            raise InvalidArgument(f"on_unreachable={on_unreachable!r}: use 'auto' (fail closed for irreversible "
                                  "actions, open otherwise), 'closed' or 'open'")
        self._url = url
        self._cache_s = cache_s
        self._on_unreachable = on_unreachable
        self._irreversible = frozenset(irreversible_actions)
        self._http = httpx.Client(headers=auth_headers(key), timeout=timeout_s)
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}

    def close(self) -> None:
        self._http.close()

    def decide(self, agent_id: str, action: str | None) -> GuardDecision:
        now = time.monotonic()
        with self._lock:
            known = self._known.setdefault(agent_id, _Known())
            if known.decision is not None and now - known.fetched_at < self._cache_s:
                return replace(known.decision, source="cache")
            if now - known.failed_at < self._cache_s:
                return self._unreachable(agent_id, known, action)
        answer = self._ask(agent_id)
        with self._lock:
            if answer.verdict == "ok":
                decision = _decision(answer.body)
                if known.warned or known.failure:
                    log.warning("agentwatch client: the guard answers again for %s", agent_id)
                known.decision, known.fetched_at = decision, time.monotonic()
                known.failed_at, known.failure, known.warned = -float("inf"), "", frozenset()
                return decision
            known.failed_at, known.failure = time.monotonic(), f"{answer.code}: {answer.message}"
            return self._unreachable(agent_id, known, action)

    def _ask(self, agent_id: str) -> Answer:
        try:
            answer = read_answer(self._http.get(f"{self._url}/v1/agents/{quote(agent_id, safe='')}/guard"))
        except httpx.HTTPError as exc:
            return no_answer(exc)
        if answer.verdict in ("ok", "retry"):
            return answer
        error = AuthenticationFailed if answer.status in (401, 403) else RequestRefused
        hint = (": check AGENTWATCH_KEY, the guard takes a key of scope ingest, read or admin"
                if answer.status in (401, 403) else "")
        raise error(f"the guard of {agent_id} at {self._url} refused the request (HTTP {answer.status} "
                    f"{answer.code}): {answer.message}{hint}", answer.status or 0, answer.code,
                    answer.body.get("error", {}).get("details"), answer.body)

    def _unreachable(self, agent_id: str, known: _Known, action: str | None) -> GuardDecision:
        learned = known.decision.fail_closed_actions if known.decision else ()
        irreversible = action is not None and (action in self._irreversible or action in learned)
        if self._on_unreachable == "auto":
            allowed = not irreversible
            rule = (f"{action} is marked irreversible, so the client fails closed" if irreversible else
                    f"{action or 'this action'} is not marked irreversible, so the client fails open")
        else:
            allowed = self._on_unreachable == "open"
            rule = f"on_unreachable={self._on_unreachable!r}"
        reason = f"agentwatch guard unreachable ({known.failure}); {rule}"
        if (action, allowed) not in known.warned:  # once per action and verdict until the guard answers again
            known.warned = known.warned | {(action, allowed)}
            log.warning("agentwatch client: %s %s: %s", agent_id, "allowed" if allowed else "NOT allowed", reason)
        return GuardDecision(allowed, reason, None, learned, "unreachable")


def _decision(body: dict[str, Any]) -> GuardDecision:
    fail_closed = body.get("fail_closed_actions") or []
    return GuardDecision(allowed=body.get("allowed") is True, reason=body.get("reason"),
                         incident_id=body.get("incident_id"),
                         fail_closed_actions=tuple(a for a in fail_closed if isinstance(a, str)))

