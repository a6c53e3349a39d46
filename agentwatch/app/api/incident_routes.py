"""``/v1/incidents``: list incidents, read one, and acknowledge or resolve one (as ``agentwatch incident ack|resolve``
does, recorded with the API key's name instead of user@host). The alert loop of the server notifies the
destinations of an ack or resolve within a second, as it does for the CLI's."""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from agentwatch.app.api.auth import require_admin, require_read
from agentwatch.app.api.errors import ERROR_RESPONSES, ApiError, ErrorBody
from agentwatch.app.api.query_params import known_query_parameters
from agentwatch.checks.engine import incident_store
from agentwatch.checks.incidents import IncidentStore
from agentwatch.core.api_keys import ApiKey
from agentwatch.core.errors import ConfigError
from agentwatch.schemas.common import MAX_ID_LENGTH
from agentwatch.schemas.incidents import Incident

router = APIRouter(dependencies=[Depends(known_query_parameters)])
_store_lock = threading.Lock()

MAX_INCIDENTS = 1_000  # incidents in one answer of GET /v1/incidents (its `limit`)
MAX_NOTE = 1_000  # characters of an ack's or resolve's note

INCIDENT_EXAMPLE = {
    "id": "INC-2", "check": "schema.field_renamed", "severity": "critical", "status": "acknowledged",
    "opened_at": "2026-10-18T10:45:00Z", "started_at": "2026-10-18T09:15:00Z", "last_fired_at": "2026-10-19T09:00:00Z",
    "resolved_at": None, "acknowledged_at": "2026-10-18T11:02:00Z", "acknowledged_by": "oncall-bot (API key 3f9a1c2e)",
    "resolved_by": None, "operator_note": "on it: rolling back the Lead layout",
    "subject": {"object": "Lead", "field": "deal_stage -> opportunity_stage"},
    "summary": "Lead.deal_stage -> opportunity_stage was renamed (read by enrichment-agent, lead-router)",
    "evidence": {"old_field": "deal_stage", "new_field": "opportunity_stage", "agents": ["enrichment-agent",
                                                                                         "lead-router"]},
    "sample_event_ids": [], "affected": 2, "caused_by": [], "effects": ["INC-3"], "status_note": None,
}
ERRORS = {k: v for k, v in ERROR_RESPONSES.items() if k != 413}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No incident has this id (code incident_not_found)."}}
IncidentId = Annotated[str, PathParam(max_length=64, description="The incident's id.", examples=["INC-2"])]


class OperatorNote(BaseModel):
    """Why, in a sentence (optional)."""

    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=MAX_NOTE, description="Recorded as the incident's operator_note (and "
                             "in its status_note when resolving).", examples=["on it: rolling back the Lead layout"])


NoteBody = Annotated[OperatorNote | None, Body(description="Optional: `{\"note\": \"...\"}`.")]


def incidents(request: Request) -> IncidentStore:
    """The app's incident store, made at the first request."""
    app = request.app
    with _store_lock:
        if getattr(app.state, "incident_store", None) is None:
            app.state.incident_store = incident_store(app.state.home)
    store: IncidentStore = app.state.incident_store
    return store


Store = Annotated[IncidentStore, Depends(incidents)]


def operator(key: ApiKey) -> str:
    """Who an API key acts for, as an incident records it: its name and id (the id alone when it has no name)."""
    return f"{key.name} (API key {key.id})" if key.name else f"API key {key.id}"


def _get(store: IncidentStore, incident_id: str) -> Incident:
    try:
        return store.get(incident_id)
    except ConfigError:
        raise ApiError(404, "incident_not_found", f"no incident has the id {incident_id!r}: GET /v1/incidents "
                       "lists them") from None


@router.get(
    "/v1/incidents",
    tags=["incidents"],
    summary="List incidents",
    description="Incidents, newest first, in the incident format (docs/formats.md), optionally only those with a "
                "status, of a check, or naming an agent (as its subject, or among the agents its evidence lists). "
                f"At most `limit` (default 100, at most {MAX_INCIDENTS}). Needs scope `read`.",
    response_model=list[Incident],
    responses={200: {"content": {"application/json": {"example": [INCIDENT_EXAMPLE]}}}, **ERRORS},
)
def list_incidents(
    key: Annotated[ApiKey, Depends(require_read)],
    store: Store,
    status: Annotated[Literal["open", "acknowledged", "resolved"] | None, Query(
        description="Only incidents with this status.")] = None,
    check: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, description="Only this check's incidents.",
                                       examples=["schema.field_renamed"])] = None,
    agent_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, description="Only incidents naming this agent.",
                                          examples=["lead-router"])] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_INCIDENTS, description="At most this many, newest first.")] = 100,
) -> list[Incident]:
    return store.list([status] if status else None, check=check, agent_id=agent_id, limit=limit)


@router.get(
    "/v1/incidents/{incident_id}",
    tags=["incidents"],
    summary="One incident",
    description="The incident in the incident format (docs/formats.md). Needs scope `read`.",
    response_model=Incident,
    responses={200: {"content": {"application/json": {"example": INCIDENT_EXAMPLE}}}, **ERRORS, **NOT_FOUND},
)
def get_incident(incident_id: IncidentId, key: Annotated[ApiKey, Depends(require_read)], store: Store) -> Incident:
    return _get(store, incident_id)


def _set_status(store: IncidentStore, incident_id: str, status: str, key: ApiKey, body: OperatorNote | None
                ) -> Incident:
    _get(store, incident_id)
    try:
        return store.set_status(incident_id, status, by=operator(key), note=body.note if body else None)
    except ConfigError as exc:  # acknowledging a resolved incident
        raise ApiError(409, "conflict", f"{exc}: it cannot be acknowledged; a check that still fires opens a new "
                       "one") from None


STATUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": INCIDENT_EXAMPLE}}}, **ERRORS, **NOT_FOUND,
    409: {"model": ErrorBody, "description": "Acknowledging a resolved incident (code conflict)."},
}


@router.post(
    "/v1/incidents/{incident_id}/ack",
    tags=["incidents"],
    summary="Acknowledge an incident",
    description="Someone is on it: its status becomes `acknowledged`, `acknowledged_by` records the API key's name "
                "and id, and `operator_note` the note when one is sent. Acknowledging it again changes nothing. "
                "Acknowledged incidents still resolve when their condition clears. Needs scope `admin`.",
    response_model=Incident,
    responses=STATUS_RESPONSES,
)
def ack_incident(incident_id: IncidentId, key: Annotated[ApiKey, Depends(require_admin)], store: Store,
                 body: NoteBody = None) -> Incident:
    return _set_status(store, incident_id, "acknowledged", key, body)


@router.post(
    "/v1/incidents/{incident_id}/resolve",
    tags=["incidents"],
    summary="Resolve an incident",
    description="Resolve it by hand: its status becomes `resolved`, `resolved_by` records the API key's name and "
                "id, `status_note` says `resolved by ...` with the note when one is sent. A check that still fires "
                "opens a new incident. Resolving it again changes nothing. Needs scope `admin`.",
    response_model=Incident,
    responses=STATUS_RESPONSES,
)
def resolve_incident(incident_id: IncidentId, key: Annotated[ApiKey, Depends(require_admin)], store: Store,
                     body: NoteBody = None) -> Incident:
    return _set_status(store, incident_id, "resolved", key, body)
