"""``GET /v1/agents/{agent_id}/guard``: may this agent act now? And the record of its pauses and resumes.

Fast by design (an agent asks before every action): it reads two small SQLite files (incidents, alerting
state) and a config kept in memory, re-read only when the file's mtime, size or inode changes. It never
opens the DuckDB store.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials

from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.guard import AgentControl, AgentControls, GuardDecision, decide
from agentwatch.app.api.auth import bearer_scheme, require_ingest, require_read
from agentwatch.app.api.errors import ERROR_RESPONSES, ApiError, ErrorBody
from agentwatch.app.api.watched_config import WatchedConfig
from agentwatch.app.config import Config
from agentwatch.app.metrics import count_guard_decision
from agentwatch.checks.engine import incident_store
from agentwatch.core.api_keys import ApiKey
from agentwatch.core.home import Home

router = APIRouter()

_state_lock = threading.Lock()


class GuardState:
    """What the guard of one app keeps between requests: the stores, and the last good config (its ``guard:``
    section and the agents' policies), read again when the file changes."""

    def __init__(self, home: Home, watched: WatchedConfig) -> None:
        self.home = home
        self.incidents = incident_store(home)
        self.controls = AgentControls(alerts_db(home))
        self.watched = watched

    def config(self) -> Config:
        """The config, re-read when the file changed; an invalid file leaves the last good one."""
        return self.watched.get("the guard")


def guard_state(request: Request) -> GuardState:
    """The app's GuardState, made at the first request."""
    app = request.app
    state = getattr(app.state, "guard_state", None)
    if state is None:
        with _state_lock:
            state = getattr(app.state, "guard_state", None)
            if state is None:
                state = GuardState(app.state.home, app.state.config_watch)
                app.state.guard_state = state
    return state


async def require_ingest_or_read(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> ApiKey:
    """Admit a valid key of scope ingest (what agents hold), read, or admin."""
    try:
        return await require_ingest(request, credentials)
    except ApiError as exc:
        if exc.status != 403:
            raise
    try:
        return await require_read(request, credentials)
    except ApiError as exc:
        if exc.status != 403:
            raise
        raise ApiError(403, "insufficient_scope", f"{request.method} {request.url.path} needs a key of scope "
                       "'ingest' or 'read' (or 'admin'): use one made with `agentwatch keys create --scope "
                       "ingest`") from None


AgentId = Annotated[str, PathParam(description="The agent_id the agent's action events carry.",
                                   examples=["lead-router"])]
ERRORS = {k: v for k, v in ERROR_RESPONSES.items() if k != 413}
STORE_UNAVAILABLE_TEXT = "the state files cannot be read (code store_unavailable); retry later."
STORE_UNAVAILABLE = {"model": ErrorBody, "description": STORE_UNAVAILABLE_TEXT}

GUARD_DESCRIPTION = """
Whether the agent may act on its own now. An agent calls it before acting and stops when `allowed` is
false:

    curl -fsS -H "Authorization: Bearer $AGENTWATCH_KEY" $AGENTWATCH_URL/v1/agents/lead-router/guard

    guard = httpx.get(f"{url}/v1/agents/{agent_id}/guard", headers={"Authorization": f"Bearer {key}"})
    allowed = guard.raise_for_status().json()["allowed"]

`fail_closed_actions` lists the actions the agent's policy forbids or puts under approval: a client that
cannot reach the guard later should refuse those and may allow others (what `agentwatch.client` does).

Not allowed while an operator's pause stands (`agentwatch agent pause`; `incident_id` is then null), or
while an open or acknowledged **critical** incident of a check listed in the config's `guard.pause_on`
names the agent (its subject's agent, or the agents its evidence lists), unless an operator resumed the
agent after that incident opened (`agentwatch agent resume`). `reason` says why; `incident_id` names the
incident (the earliest opened, if several). Needs a key of scope `ingest` (what agents hold), `read` or
`admin`. Answers in milliseconds: it reads small SQLite files and a config cached until the file changes.
"""

GUARD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The decision.", "content": {"application/json": {"examples": {
        "allowed": {"summary": "Allowed", "value": {"allowed": True, "reason": None, "incident_id": None,
                                                    "fail_closed_actions": ["email.send", "record.delete"]}},
        "incident": {"summary": "Paused by an incident", "value": {
            "allowed": False, "incident_id": "INC-12", "fail_closed_actions": ["email.send", "record.delete"],
            "reason": "INC-12 schema.field_renamed (critical): Lead.deal_stage -> opportunity_stage was renamed"}},
        "operator": {"summary": "Paused by an operator", "value": {
            "allowed": False, "incident_id": None, "fail_closed_actions": [],
            "reason": "paused by ana@ops-laptop at 2026-10-05 09:12:00 UTC: wrong owners since 9:00"}},
    }}}},
    **ERRORS,
    503: {"model": ErrorBody, "description": "The config is invalid and no earlier version of it was read, so the "
                                             "guard cannot decide (code config_invalid); or " +
                                             STORE_UNAVAILABLE_TEXT},
}


@router.get(
    "/v1/agents/{agent_id}/guard",
    tags=["agents"],
    summary="May this agent act now?",
    description=GUARD_DESCRIPTION,
    response_model=GuardDecision,
    responses=GUARD_RESPONSES,
)
def get_guard(
    agent_id: AgentId,
    key: Annotated[ApiKey, Depends(require_ingest_or_read)],
    state: Annotated[GuardState, Depends(guard_state)],
) -> GuardDecision:
    config = state.config()
    # Only critical incidents can pause an agent: read just those.
    decision = decide(agent_id, state.incidents.unresolved_critical(), state.controls, config.guard,
                      config.policy_for(agent_id))
    count_guard_decision(decision.allowed)
    return decision


@router.get(
    "/v1/agents/{agent_id}/controls",
    tags=["agents"],
    summary="Pauses and resumes of an agent",
    description="Every pause and resume of the agent, newest first: by operators (`agentwatch agent pause|resume`, "
                "`by` is user@host) and by agentwatch itself when a critical incident pauses the agent or resolves "
                "(`by` is `agentwatch`, `incident_id` names the incident). Needs scope `read`.",
    response_model=list[AgentControl],
    responses={**ERRORS, 503: STORE_UNAVAILABLE},
)
def get_controls(
    agent_id: AgentId,
    key: Annotated[ApiKey, Depends(require_read)],
    state: Annotated[GuardState, Depends(guard_state)],
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first.")] = 100,
) -> list[AgentControl]:
    return state.controls.history(agent_id, limit)
