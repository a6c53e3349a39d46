"""``GET /v1/actions``: the audit trail, a page of JSON at a time, or the whole selection streamed as NDJSON or CSV.

The selection, its order and the format of each action are :mod:`agentwatch.store.audit`'s, which
``agentwatch audit`` and the dashboard's Audit trail page use too. Each request opens its own DuckDB reader over
the store (the views see parts as they land), in a worker thread; a stream closes it when it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from agentwatch.app.api.auth import require_read
from agentwatch.app.api.errors import ERROR_RESPONSES, ApiError
from agentwatch.app.api.query_params import known_query_parameters
from agentwatch.core.api_keys import ApiKey
from agentwatch.schemas import ActionEvent
from agentwatch.schemas.common import MAX_ID_LENGTH
from agentwatch.store import audit
from agentwatch.store.reader import open_reader

router = APIRouter(dependencies=[Depends(known_query_parameters)])

DEFAULT_PAGE = 100
READER_MEMORY = "1GB"  # DuckDB's budget for one request (a stream's sort spills past it)
MEDIA_TYPES: dict[str, audit.StreamFormat] = {"application/x-ndjson": "ndjson", "text/csv": "csv"}
ActionStatus = Literal["ok", "error", "skipped", "pending_approval"]


class ActionsPage(BaseModel):
    """One page of the audit trail."""

    actions: list[ActionEvent] = Field(description="Actions in the action event format, newest first: every key, "
                                                   "times in UTC, the unknown keys they were sent with after the "
                                                   "others.")
    next_cursor: str | None = Field(description="Pass it as `cursor` for the next page; null after the last one.")


ACTION_EXAMPLE = {
    "event_id": "act-8f3a2c1e", "ts": "2026-10-01T07:30:00Z", "agent_id": "lead-router", "action": "lead.assign_owner",
    "resource": {"type": "lead", "id": "00Q5e00000AbCdE"}, "status": "ok", "agent_version": "2.3.0",
    "inputs": {"country": "DE", "employees": 120, "deal_stage": "new"}, "before": {"OwnerId": "rep-04"},
    "after": {"OwnerId": "rep-17"}, "decision": {"route_to": "rep-17", "qualified": True}, "confidence": 0.82,
    "rationale": None, "authorized_by": None, "approval": None, "external": None, "records_affected": 1,
    "error": None, "latency_ms": 412.0, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": None,
}
CSV_EXAMPLE = ('"' + '","'.join(audit.CSV_COLUMNS) + '"\n"act-8f3a2c1e","2026-10-01T07:30:00Z","lead-router",'
               '"2.3.0","lead.assign_owner","lead","00Q5e00000AbCdE","ok",...\n')

ACTIONS_DESCRIPTION = f"""
The audit trail: every action the agents took, filtered by agent, action, resource, status and time, **newest
first** (by `ts`, then `event_id`, both descending). Needs scope `read`.

    curl -fsS -H "Authorization: Bearer $AGENTWATCH_KEY" \\
      "$AGENTWATCH_URL/v1/actions?agent_id=lead-router&since=48h"

**Pages.** The answer is JSON, `{{"actions": [...], "next_cursor": "..."}}`, at most `limit` actions (default
{DEFAULT_PAGE}, at most {audit.MAX_PAGE}); ask again with `cursor` set to `next_cursor` until it is null. The
cursor is a position, not an offset: actions stored between two pages never repeat or skip an older one on the
next page. A cursor keeps the time range of the first page (so `since=48h` does not move on as you page); send
the same other filters with it.

**Everything at once.** With `Accept: application/x-ndjson` (one action per line) or `Accept: text/csv` (the
store's flat columns, docs/formats.md; times in UTC; nested objects as JSON text) the answer streams the whole
selection, in the same order, without pages (`cursor` and `limit` are refused). CSV cells a spreadsheet would
run as a formula (starting with `=`, `+`, `-`, `@`) start with `'`.

**Times.** `since` and `until` (both included) take an RFC 3339 time with an offset or a duration before now
(`48h`, `30m`, `7d`); each end is open when left out.
"""


def _stream_format(request: Request) -> audit.StreamFormat | None:
    """The stream the Accept header asks for (the first of its types we stream), or None for JSON pages."""
    for part in request.headers.get("accept", "").split(","):
        wanted = MEDIA_TYPES.get(part.split(";")[0].strip().lower())
        if wanted:
            return wanted
    return None


def _bad(parameter: str, problem: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"query parameter {parameter}: {problem}",
                    [{"field": f"query.{parameter}", "message": problem}])


def _closing(con: Any, chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        con.close()


@router.get(
    "/v1/actions",
    tags=["audit"],
    summary="The audit trail: actions by agent, action, resource and time",
    description=ACTIONS_DESCRIPTION,
    response_model=None,
    responses={
        200: {"model": ActionsPage, "description": "A page of actions (JSON), or the whole selection (NDJSON, CSV).",
              "content": {
                  "application/json": {"example": {"actions": [ACTION_EXAMPLE], "next_cursor": "eyJ0cyI6NjM5MjcwM"}},
                  "application/x-ndjson": {"schema": {"type": "string"}, "example": "{\"event_id\": ...}\n"},
                  "text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLE},
              }},
        **{k: v for k, v in ERROR_RESPONSES.items() if k != 413},
    },
)
def get_actions(
    request: Request,
    key: Annotated[ApiKey, Depends(require_read)],
    agent_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, description="Only this agent's actions.",
                                          examples=["lead-router"])] = None,
    action: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, description="Only this action; a glob matches "
                                        "several (`lead.*`).", examples=["lead.assign_owner"])] = None,
    resource_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, description="Only actions on this CRM "
                                             "record.", examples=["00Q5e00000AbCdE"])] = None,
    since: Annotated[str | None, Query(max_length=64, description="From this time on: RFC 3339 with an offset, or "
                                       "a duration before now.", examples=["48h", "2026-10-01T00:00:00Z"])] = None,
    until: Annotated[str | None, Query(max_length=64, description="Up to this time, as `since`.",
                                       examples=["2026-10-03T00:00:00Z"])] = None,
    status: Annotated[ActionStatus | None, Query(description="Only actions with this status.")] = None,
    limit: Annotated[int | None, Query(ge=1, le=audit.MAX_PAGE, description=f"Actions per page (default "
                                       f"{DEFAULT_PAGE}); JSON pages only.")] = None,
    cursor: Annotated[str | None, Query(max_length=audit.MAX_CURSOR_CHARS, description="The `next_cursor` of the "
                                        "previous page; JSON pages only.")] = None,
) -> Response:
    try:
        selection = audit.select(datetime.now(UTC), since, until, agent_id, action, resource_id, status)
    except audit.FilterError as exc:
        raise _bad(exc.parameter, exc.problem) from None
    streamed = _stream_format(request)
    if streamed and (cursor is not None or limit is not None):
        raise _bad("cursor" if cursor is not None else "limit", "a stream (Accept: application/x-ndjson or "
                   "text/csv) holds the whole selection: leave out cursor and limit, or ask for JSON pages")
    try:
        after = audit.Cursor.decode(cursor) if cursor is not None else None
    except ValueError as exc:
        raise _bad("cursor", str(exc)) from None
    con = open_reader(request.app.state.home, READER_MEMORY)
    if streamed:
        try:
            chunks = audit.stream(con, selection, streamed)
        except BaseException:
            con.close()
            raise
        media = "application/x-ndjson" if streamed == "ndjson" else "text/csv; charset=utf-8"
        headers = {"Content-Disposition": 'attachment; filename="actions.csv"'} if streamed == "csv" else None
        return StreamingResponse(_closing(con, chunks), media_type=media, headers=headers)
    try:
        found = audit.page(con, selection, limit or DEFAULT_PAGE, after)
    except ValueError as exc:  # the cursor belongs to other filters
        raise _bad("cursor", str(exc)) from None
    finally:
        con.close()
    return Response(found.json(), media_type="application/json")
