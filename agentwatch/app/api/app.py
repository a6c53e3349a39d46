"""The collector's HTTP API: agents POST action and outcome events, admins POST CRM schema snapshots.

``create_app(home)`` builds the FastAPI app; ``agentwatch.app.api.server.serve`` runs it with uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from agentwatch.alerts.health import delivery_health
from agentwatch.app.api.audit_routes import router as audit_router
from agentwatch.app.api.auth import require_ingest, require_read
from agentwatch.app.api.body import TooDeep, depth_message, parse_batch, read_body
from agentwatch.app.api.docs_assets import install_offline_docs
from agentwatch.app.api.errors import (
    ERROR_RESPONSES,
    ApiError,
    ErrorBody,
    EventRejection,
    RejectedBatchBody,
    error_response,
    install_error_handlers,
)
from agentwatch.app.api.events import ingest_events, shown
from agentwatch.app.api.guard import router as guard_router
from agentwatch.app.api.health import Facts, health_bodies, now
from agentwatch.app.api.incident_routes import router as incident_router
from agentwatch.app.api.metrics import router as metrics_router
from agentwatch.app.api.ratelimit import RateLimits
from agentwatch.app.api.refusals import RefusedRequests
from agentwatch.app.api.startup import WalStartup
from agentwatch.app.api.storage import DiskFull
from agentwatch.app.api.traces import router as traces_router
from agentwatch.app.api.watched_config import WatchedConfig
from agentwatch.app.metrics import count_events
from agentwatch.app.scheduler import StoreMaintenance
from agentwatch.app.status import checks_keeping_up, store_status
from agentwatch.collector.ingest.snapshots import ingest_snapshot_items
from agentwatch.collector.wal import WriteAheadLog
from agentwatch.core.api_keys import ApiKey, KeyStore
from agentwatch.core.home import Home
from agentwatch.core.limits import Limits
from agentwatch.schemas import ActionEvent, OutcomeEvent, SchemaSnapshot, parse_rfc3339
from agentwatch.store.datasets import ACTIONS, OUTCOMES, Dataset
from agentwatch.store.quarantine import quarantined_parts

API_VERSION = "1"
MAINTENANCE_STOP_S = 5  # at shutdown, a compaction pass gets this long to finish before it is left behind
RECOVERED_FREE_BYTES = 512 << 10  # free space that ends a full-disk episode: room for an ordinary batch


class ApiSettings(BaseModel):
    """Limits and WAL timing of the HTTP API."""

    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Larger request bodies get 413.")
    flush_interval_s: float = Field(1.0, gt=0, description="How often the WAL is flushed into the store.")
    flush_max_bytes: int = Field(64 * 1024 * 1024, gt=0, description="A WAL segment this large is flushed at once.")
    config_path: Path | None = Field(None, description="The agentwatch.yaml the agent guard reads (default: the one "
                                                       "in the home).")
    check_every_s: float | None = Field(None, description="How often this server runs the checks (None: it does "
                                                          "not); a last run much older than that is degraded.")
    limits: Limits = Field(default_factory=Limits, description="Bounds on batches, events and request rates (the "
                                                               "config's limits: section; `serve` reads it).")
    maintain_store: bool = Field(True, description="Run compaction, retention and deletions past the grace in the "
                                                   "background (the config's store: section, re-read every pass).")


class IngestResult(BaseModel):
    """What happened to the events of a batch."""

    accepted: int = Field(description="New events, durably logged (they reach the store within a flush interval).")
    duplicates: int = Field(description="Events whose event_id was repeated in the batch, pending, or already stored.")


class HealthReason(BaseModel):
    """One reason for a status other than ok."""

    severity: Literal["failing", "degraded"]
    code: str = Field(description="Stable snake_case code: wal_unavailable, wal_unwritable, disk_full, flush_failing, "
                                  "delivery_failed, parts_quarantined, checks_behind, compaction_failing, "
                                  "crm_poller_failing.")
    text: str = Field(description="A short fixed phrase (never a path or an error text).")


class Health(BaseModel):
    """Status, its reasons and counts: what anyone may see."""

    status: Literal["starting", "ok", "degraded", "failing"] = Field(
        description="starting (503): the write-ahead log is being replayed, events are not taken yet; failing (503): "
                    "events cannot be logged or flushed; degraded (200): notifications failed, damaged store parts "
                    "were quarantined or the checks are behind; ok (200).")
    reasons: list[HealthReason] = Field(description="Why the status is not ok (empty when it is).")
    wal_pending: int = Field(description="Events acknowledged and not yet flushed into the store.")
    alerts_pending: int = Field(description="Notifications queued and not yet delivered (retries included).")
    alerts_failed: int = Field(description="Notifications given up on after their last retry "
                                           "(`agentwatch alerts outbox --state failed`).")
    checks: dict[str, Any] = Field(description="The latest live run of the checks (`last_run`: finished_at, as_of, "
                                               "seconds, failed_checks, number: runs are counted) and `lag_s`, how far "
                                               "the newest action is past what it evaluated.")
    quarantined_parts: int = Field(description="Damaged store parts moved to the quarantine folder (their events "
                                               "are out of every query; `agentwatch status` lists them).")


class HealthDetail(Health):
    """Health with what only operators may see: the home and the error texts."""

    home: str = Field(description="The home this server serves.")
    startup_error: str | None = Field(description="Why the write-ahead log could not be opened.")
    wal_failure: str | None = Field(description="Why the write-ahead log refuses writes (a failed fsync).")
    last_flush_error: str | None = Field(description="Why the last flush failed; null once a flush succeeds.")
    last_alert_error: str | None = Field(description="The latest delivery error of a failed or retrying "
                                                     "notification.")


# -- request bodies ------------------------------------------------------------------------------

ACTION_EXAMPLE = {
    "event_id": "act-8f3a2c1e",
    "ts": "2026-10-01T09:30:00+02:00",
    "agent_id": "lead-router",
    "agent_version": "2.3.0",
    "action": "lead.assign_owner",
    "resource": {"type": "lead", "id": "00Q5e00000AbCdE"},
    "status": "ok",
    "inputs": {"country": "DE", "employees": 120, "deal_stage": "new"},
    "decision": {"route_to": "rep-17", "qualified": True},
    "confidence": 0.82,
    "latency_ms": 412,
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
}
ACTION_ERROR_EXAMPLE = {
    "event_id": "act-8f3a2c1f",
    "ts": "2026-10-01T09:31:02Z",
    "agent_id": "followup-writer",
    "action": "email.send",
    "resource": {"type": "contact", "id": "0035e00000XyZ12"},
    "status": "error",
    "error": {"code": "timeout", "message": "SMTP relay did not answer in 30 s"},
    "external": True,
}
OUTCOME_EXAMPLE = {
    "event_id": "out-1b2c3d4e",
    "ts": "2026-10-02T14:05:00Z",
    "kind": "owner_changed",
    "resource": {"type": "lead", "id": "00Q5e00000AbCdE"},
    "actor": "rep-04",
    "field": "OwnerId",
    "from": "rep-17",
    "to": "rep-04",
    "corrects_event_id": "act-8f3a2c1e",
}
OUTCOME_WON_EXAMPLE = {
    "event_id": "out-1b2c3d4f",
    "ts": "2026-11-20T16:45:00-05:00",
    "kind": "closed_won",
    "resource": {"type": "opportunity", "id": "0065e00000Qw3rT"},
    "amount": 48000.0,
}
SNAPSHOT_EXAMPLE = {
    "taken_at": "2026-10-01T00:00:00Z",
    "source": "salesforce",
    "object": "Lead",
    "fields": [
        {"name": "Email", "type": "email", "nullable": True, "label": "Email"},
        {"name": "Status", "type": "picklist", "nullable": False, "picklist_values": ["Open", "Working", "Closed"]},
        {"name": "NumberOfEmployees", "type": "integer", "source_type": "int"},
    ],
}
SALESFORCE_EXAMPLE = {
    "name": "Lead",
    "fields": [
        {"name": "Email", "type": "email", "label": "Email", "nillable": True},
        {"name": "Status", "type": "picklist", "label": "Lead Status", "nillable": False,
         "picklistValues": [{"value": "Open", "active": True}, {"value": "Working", "active": True}]},
    ],
}


def _events_request_body(model: str, examples: list[dict[str, Any]], noun: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model}"}
    return {
        "requestBody": {
            "required": True,
            "description": f"One {noun} (a JSON object) or a JSON array of them. Unknown top-level keys are kept "
                           "(stored in the `extra` column).",
            "content": {
                "application/json": {
                    "schema": {"oneOf": [ref, {"type": "array", "items": ref}]},
                    "examples": {
                        "one": {"summary": f"One {noun}", "value": examples[0]},
                        "batch": {"summary": f"A batch of {noun}s", "value": examples},
                    },
                }
            },
        }
    }


SNAPSHOT_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "description": "With `format=native` (the default): one SchemaSnapshot or an array of them. With "
                       "`format=salesforce`: a describe result (`GET /sobjects/<Object>/describe`). With "
                       "`format=hubspot`: a properties response (`GET /crm/v3/properties/<object>`); `object` is then "
                       "required. An array of such payloads is accepted too.",
        "content": {
            "application/json": {
                "schema": {"oneOf": [
                    {"$ref": "#/components/schemas/SchemaSnapshot"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/SchemaSnapshot"}},
                    {"type": "object", "description": "A Salesforce describe result or a HubSpot properties response."},
                ]},
                "examples": {
                    "native": {"summary": "A native snapshot", "value": SNAPSHOT_EXAMPLE},
                    "salesforce": {"summary": "A Salesforce describe result (format=salesforce&taken_at=...)",
                                   "value": SALESFORCE_EXAMPLE},
                },
            }
        },
    }
}

EVENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": IngestResult, "description": "Every event was valid; `accepted` ones are durably logged.",
          "content": {"application/json": {"example": {"accepted": 498, "duplicates": 2}}}},
    **ERROR_RESPONSES,
    422: {
        "model": RejectedBatchBody,
        "description": "Some events were refused. The valid events of the same batch WERE kept: `accepted` and "
                       "`duplicates` count them. Fix the refused ones (named by index and event_id) and send only "
                       "those again.",
        "content": {"application/json": {"example": {
            "error": {
                "code": "invalid_events",
                "message": "1 of 3 action events refused: ...",
                "details": [{"index": 1, "event_id": "act-8f3a2c1f",
                             "errors": [{"field": "resource.id", "message": "Field required"}]}],
            },
            "accepted": 2,
            "duplicates": 0,
        }}},
    },
    413: {"model": ErrorBody, "description": "The body is over the server's byte limit (code body_too_large), or the "
                                             "batch holds more events than `limits.max_batch_items` (code "
                                             "too_many_events): nothing of it was read; split it."},
    503: {"model": ErrorBody, "description": "The server is starting (code starting: it replays its write-ahead log) "
                                             "or cannot log events now; nothing was acknowledged, retry after the "
                                             "Retry-After seconds."},
    507: {"model": ErrorBody, "description": "The disk under the server's home is full (code insufficient_storage): "
                                             "nothing of this batch was acknowledged; retry once space is freed."},
}

DESCRIPTION = """
agentwatch collects what AI sales agents do (**action events**), what happened afterwards (**outcome
events**) and the CRM schema they work against (**schema snapshots**), to catch silent failures.

**Authentication.** Every `/v1` route needs `Authorization: Bearer <key>`. Create a key with
`agentwatch keys create --scope ingest` (send events), `--scope read` (read status, the audit trail and
incidents) or `--scope admin` (both, and acknowledge or resolve incidents). Revoke one with
`agentwatch keys revoke <id>`: a running server notices at once.

**Durability.** A 200 (or 422) answer means the accepted events are on disk, in the server's write-ahead
log, fsynced. They reach the store within a flush interval (1 s by default); a crash in between loses
nothing, they are replayed at the next start.

**Idempotence.** Sending an event_id again is a no-op: the store keeps each event_id once, so retry
freely. `duplicates` counts ids this server already holds; an id that another process (a file
ingest) stored in the last few seconds may be counted in `accepted`, and is still stored once.

**Partial acceptance.** A batch with some invalid events is answered 422; its valid events are kept
all the same, and the error's `details` name each refused event by its index, event_id and field (the
first `limits.max_error_details` of them; the message counts all).

**Bounds.** The config's `limits:` section bounds what one request may cost: a batch holds at most
`max_batch_items` events (else 413 too_many_events, before any is read); an event nests at most
`max_depth` levels (a deeper one is refused on its own). Each key may make `requests_per_second`
requests (bursts of twice that); each client address `auth_failures_per_minute` requests with a bad
key. Past either, the answer is 429 with `Retry-After`.

**Starting and health.** A server answers at once when it starts: `GET /healthz` says `starting` (503)
and event routes answer 503 with `Retry-After` while it replays its write-ahead log. `/healthz` (no
key) shows a status, reasons as codes and counts; `GET /v1/health` (scope read) adds the home and the
error texts. A full disk is answered 507: nothing of that batch was acknowledged.

**Errors.** Every error has one shape:
`{"error": {"code": "snake_case", "message": "what failed and what to do", "details": [...]}}`.
"""


def _custom_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ActionEvent, OutcomeEvent, SchemaSnapshot):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    app.openapi_schema = schema
    return schema


# -- the app -------------------------------------------------------------------------------------


def create_app(home: Home, settings: ApiSettings | None = None) -> FastAPI:
    """The API app of one home. Its lifespan opens the WAL in the background (the app answers as `starting`
    while it replays leftovers) and flushes it at the end."""
    settings = settings or ApiSettings()
    limits = settings.limits
    wal = WriteAheadLog(home, settings.flush_interval_s, settings.flush_max_bytes)
    startup = WalStartup(wal)
    disk_full = DiskFull(home)

    maintenance = StoreMaintenance(home, settings.config_path) if settings.maintain_store else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(startup.begin)
        if maintenance:
            maintenance.start()
        try:
            yield
        finally:
            if maintenance:  # a pass cut short by the exit is safe: its next run cleans up (rewrite.py)
                await run_in_threadpool(maintenance.stop, MAINTENANCE_STOP_S)
            await run_in_threadpool(startup.end)

    app = FastAPI(
        title="agentwatch collector",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # install_offline_docs serves /docs and /redoc
        redoc_url=None,
        openapi_tags=[
            {"name": "events", "description": "Action and outcome events from agents, and OpenTelemetry traces "
                                              "(OTLP/HTTP)."},
            {"name": "schema", "description": "CRM schema snapshots."},
            {"name": "status", "description": "What the store holds; liveness."},
            {"name": "agents", "description": "Whether an agent may act now (the agent guard), and its pauses."},
            {"name": "audit", "description": "The audit trail: what the agents did, by agent, action, resource and "
                                             "time."},
            {"name": "incidents", "description": "Incidents the checks opened; acknowledge or resolve them."},
        ],
    )
    app.state.home = home
    app.state.settings = settings
    app.state.keys = KeyStore(home)
    app.state.wal = wal
    app.state.disk_full = disk_full
    app.state.config_watch = WatchedConfig(home, settings.config_path)  # the guard's and OTLP ingest's
    app.state.startup = startup
    app.state.maintenance = maintenance
    app.state.rate_limits = RateLimits(limits)
    install_error_handlers(app)
    app.add_middleware(RefusedRequests)
    install_offline_docs(app)  # /docs and /redoc from installed packages, not from a CDN
    app.openapi = lambda: _custom_openapi(app)  # type: ignore[method-assign]
    app.include_router(guard_router)
    app.include_router(traces_router)
    app.include_router(audit_router)
    app.include_router(incident_router)
    app.include_router(metrics_router)

    @app.post(
        "/v1/actions",
        tags=["events"],
        summary="Send action events",
        description="Log what agents did: one action event or an array of them. Each event is validated on its "
                    "own; valid ones are durably logged before the answer is sent. Needs scope `ingest`.",
        responses=EVENT_RESPONSES,
        openapi_extra=_events_request_body("ActionEvent", [ACTION_EXAMPLE, ACTION_ERROR_EXAMPLE], "action event"),
    )
    async def post_actions(request: Request, key: Annotated[ApiKey, Depends(require_ingest)]) -> JSONResponse:
        return await _post_events(request, ACTIONS)

    @app.post(
        "/v1/outcomes",
        tags=["events"],
        summary="Send outcome events",
        description="Log rep corrections and business outcomes: one outcome event or an array of them. Each event "
                    "is validated on its own; valid ones are durably logged before the answer is sent. Needs scope "
                    "`ingest`.",
        responses=EVENT_RESPONSES,
        openapi_extra=_events_request_body("OutcomeEvent", [OUTCOME_EXAMPLE, OUTCOME_WON_EXAMPLE], "outcome event"),
    )
    async def post_outcomes(request: Request, key: Annotated[ApiKey, Depends(require_ingest)]) -> JSONResponse:
        return await _post_events(request, OUTCOMES)

    @app.post(
        "/v1/schema-snapshots",
        tags=["schema"],
        summary="Send CRM schema snapshots",
        description="Store what fields a CRM object has now. Snapshots are stored durably before the answer; a "
                    "snapshot is identified by (source, object, taken_at), so sending it again is a no-op counted "
                    "in `duplicates` (a Salesforce or HubSpot payload sent without `taken_at` is stamped with its "
                    "arrival time, so each such send records a new snapshot). Refused payloads get 422 with the "
                    "valid ones of the batch stored. Needs scope `ingest`.",
        responses=EVENT_RESPONSES,
        openapi_extra=SNAPSHOT_REQUEST_BODY,
    )
    async def post_schema_snapshots(
        request: Request,
        key: Annotated[ApiKey, Depends(require_ingest)],
        format: Annotated[
            Literal["native", "salesforce", "hubspot"],
            Query(description="How the body is written: native SchemaSnapshot(s), a Salesforce describe result, "
                              "or a HubSpot properties response."),
        ] = "native",
        object: Annotated[
            str | None,
            Query(description="The CRM object (required for hubspot; overrides the describe's name for salesforce; "
                              "fills in a native snapshot's missing `object`).", examples=["Lead"]),
        ] = None,
        taken_at: Annotated[
            str | None,
            Query(description="When the payload was read (RFC 3339 with offset); defaults to now for salesforce "
                              "and hubspot.", examples=["2026-10-01T00:00:00Z"]),
        ] = None,
    ) -> JSONResponse:
        when: datetime | None = None
        if taken_at is not None:
            try:
                when = parse_rfc3339(taken_at)
            except ValueError as exc:
                raise ApiError(400, "invalid_parameter", f"query parameter taken_at: {exc}") from None
        if format == "hubspot" and not object:
            raise ApiError(400, "invalid_parameter", "format=hubspot needs the object query parameter "
                           "(e.g. &object=contacts): a HubSpot properties response does not name its object")
        startup.require_ready()
        body = await read_body(request, settings.max_body_bytes)
        return await run_in_threadpool(_ingest_snapshots, home, body, format, when, object, limits)

    @app.get(
        "/v1/status",
        tags=["status"],
        summary="What the store holds",
        description="Event counts per agent, time ranges, schema snapshots, rejects and WAL backlog. Needs scope "
                    "`read`.",
        responses={k: v for k, v in ERROR_RESPONSES.items() if k != 413},
    )
    def get_status(key: Annotated[ApiKey, Depends(require_read)]) -> dict[str, Any]:

        return store_status(home)

    async def health(request: Request) -> tuple[dict[str, Any], dict[str, Any], int]:
        disk_full.recheck(RECOVERED_FREE_BYTES)
        delivery = await run_in_threadpool(delivery_health, home)
        checks = await run_in_threadpool(checks_keeping_up, home)
        quarantined = len(await run_in_threadpool(quarantined_parts, home))
        failing = bool(app.state.maintenance and app.state.maintenance.failing)
        return health_bodies(Facts(home, startup, disk_full, delivery, checks, quarantined, settings.check_every_s,
                                   now(), failing))

    @app.get(
        "/healthz",
        tags=["status"],
        summary="Liveness and readiness",
        description="No authentication. `status` is starting (503) while the write-ahead log replays, failing "
                    "(503) when events cannot be logged or flushed, degraded (200) when notifications failed or "
                    "the checks are behind, else ok (200); `reasons` say why, as codes and fixed phrases. No paths "
                    "or error texts: `GET /v1/health` has those.",
        response_model=Health,
        responses={503: {"model": Health, "description": "Starting or failing."}},
    )
    async def healthz(request: Request) -> JSONResponse:
        public, _, code = await health(request)
        return JSONResponse(public, status_code=code)

    @app.get(
        "/v1/health",
        tags=["status"],
        summary="Health, with the details",
        description="What `/healthz` says, plus the home and the error texts behind it (`last_flush_error`, "
                    "`last_alert_error`, `wal_failure`, `startup_error`). Needs scope `read`. Answers 503 when "
                    "`/healthz` does.",
        response_model=HealthDetail,
        responses={**{k: v for k, v in ERROR_RESPONSES.items() if k != 413},
                   503: {"model": HealthDetail, "description": "Starting or failing."}},
    )
    async def get_health(request: Request, key: Annotated[ApiKey, Depends(require_read)]) -> JSONResponse:
        _, full, code = await health(request)
        return JSONResponse(full, status_code=code)

    async def _post_events(request: Request, dataset: Dataset) -> JSONResponse:
        startup.require_ready()
        body = await read_body(request, settings.max_body_bytes)
        return await run_in_threadpool(ingest_events, wal, disk_full, dataset, body, limits)

    return app


# -- schema snapshots ------------------------------------------------------------------------------


def _ingest_snapshots(
    home: Home, body: bytes, fmt: str, taken_at: datetime | None, object_name: str | None, limits: Limits
) -> JSONResponse:
    items = parse_batch(body, "snapshot" if fmt == "native" else f"{fmt} payload", limits)
    deep = [EventRejection(index=i, event_id=None, errors=[{"field": "", "message": depth_message(item.depth, limits)}])
            for i, item in enumerate(items) if isinstance(item, TooDeep)]
    kept = [i for i, item in enumerate(items) if not isinstance(item, TooDeep)]
    report = ingest_snapshot_items(home, [items[i] for i in kept], "POST /v1/schema-snapshots", fmt=fmt,
                                   taken_at=taken_at, object_name=object_name)
    refused = report.rejected + len(deep)
    count_events("/v1/schema-snapshots", "snapshots", report.accepted, report.duplicates, refused)
    if refused:
        details = [rejection.model_dump() for rejection in deep] + [
            EventRejection(
                index=kept[rejection.number - 1],  # the ingest numbers the items it was given from 1
                event_id=rejection.event_id,
                errors=[asdict(error) for error in rejection.errors],
            ).model_dump()
            for rejection in report.sample
        ]
        details = sorted(details, key=lambda d: d["index"])[:limits.max_error_details]
        listed = shown(refused, limits) or ("" if len(details) == refused else
                                            f" (details show the first {len(details)})")
        return error_response(
            422,
            "invalid_snapshots",
            f"{refused} of {len(items)} schema snapshot payloads refused{listed}: fix the fields named in "
            f"details and send those again; the valid ones of this batch were stored ({report.accepted} accepted, "
            f"{report.duplicates} duplicates)",
            details,
            extra={"accepted": report.accepted, "duplicates": report.duplicates},
        )
    return JSONResponse({"accepted": report.accepted, "duplicates": report.duplicates})
