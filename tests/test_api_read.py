"""The read API: the audit trail (GET /v1/actions, paged JSON and NDJSON/CSV streams) and incidents (list, get,
ack, resolve), over a copy of the demo store and over small stores a test writes."""

from __future__ import annotations

import csv
import io
import json
import shutil
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentwatch.app.api.app import ApiSettings, create_app
from agentwatch.checks.engine import incident_store
from agentwatch.checks.incidents import IncidentStore
from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.schemas import ActionEvent
from agentwatch.schemas.incidents import Incident, agents_named
from agentwatch.store.datasets import ACTIONS
from tests.audit_support import AGENT, WINDOW, expected_actions, latest_action, rfc3339
from tests.live_support import Server, free_port

with warnings.catch_warnings():  # starlette's TestClient warns that it prefers httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

STREAM_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def demo_copy(demo_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """The demo store, copied: keys are created in it (the shared demo home stays as it is)."""
    root = tmp_path_factory.mktemp("read-api") / "home"
    shutil.copytree(demo_home.root, root)
    return Home.resolve(root)


@pytest.fixture(scope="module")
def demo_keys(demo_copy: Home) -> dict[str, str]:
    store = KeyStore(demo_copy)
    return {scope: store.create(scope, name=f"{scope}-bot")[1] for scope in ("ingest", "read", "admin")}


def make_client(home: Home) -> Iterator[TestClient]:
    with TestClient(create_app(home, ApiSettings(maintain_store=False))) as client:
        yield client


@pytest.fixture(scope="module")
def demo_client(demo_copy: Home) -> Iterator[TestClient]:
    yield from make_client(demo_copy)


def bearer(token: str, accept: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **({"Accept": accept} if accept else {})}


@pytest.fixture(scope="module")
def window(demo_copy: Home) -> tuple[datetime, datetime]:
    """lead-router's last 48 h, ending at the store's newest action (not the wall clock)."""
    end = latest_action(demo_copy)
    return end - WINDOW, end


def pages(client: TestClient, token: str, params: dict[str, Any],
          between: Callable[[], None] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Every action through every page (calling `between` after each page), and how many pages there were."""
    found: list[dict[str, Any]] = []
    cursor, count = None, 0
    while True:
        answer = client.get("/v1/actions", params={**params, **({"cursor": cursor} if cursor else {})},
                            headers=bearer(token))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"actions", "next_cursor"}
        found += body["actions"]
        count += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return found, count
        if between:
            between()


def assert_error(answer: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code
    if field:
        assert field in error["message"], error
        assert any(d.get("field") == f"query.{field}" for d in error["details"]), error
    return error


# -- the audit trail over the demo store ------------------------------------------------------------


def test_every_page_together_is_the_independent_query(demo_client: TestClient, demo_copy: Home,
                                                      demo_keys: dict[str, str],
                                                      window: tuple[datetime, datetime]) -> None:
    start, end = window
    expected = expected_actions(demo_copy, AGENT, start, end)
    assert len(expected) > 500  # enough for many pages
    found, count = pages(demo_client, demo_keys["read"],
                         {"agent_id": AGENT, "since": rfc3339(start), "until": rfc3339(end), "limit": 97})
    assert count == -(-len(expected) // 97)
    assert found == expected


def test_ndjson_streams_the_whole_selection(demo_client: TestClient, demo_copy: Home, demo_keys: dict[str, str],
                                            window: tuple[datetime, datetime]) -> None:
    start, end = window
    answer = demo_client.get("/v1/actions", params={"agent_id": AGENT, "since": rfc3339(start),
                                                    "until": rfc3339(end)},
                             headers=bearer(demo_keys["read"], "application/x-ndjson"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    lines = answer.text.splitlines()
    assert answer.text.endswith("\n")
    assert [json.loads(line) for line in lines] == expected_actions(demo_copy, AGENT, start, end)


def test_csv_streams_the_whole_selection_in_the_store_columns(demo_client: TestClient, demo_copy: Home,
                                                              demo_keys: dict[str, str],
                                                              window: tuple[datetime, datetime]) -> None:
    start, end = window
    answer = demo_client.get("/v1/actions", params={"agent_id": AGENT, "since": rfc3339(start),
                                                    "until": rfc3339(end)},
                             headers=bearer(demo_keys["read"], "text/csv"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    expected = expected_actions(demo_copy, AGENT, start, end)
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in expected]
    for row, event in zip(rows, expected, strict=True):
        assert (row["ts"], row["agent_id"], row["action"], row["resource_id"], row["status"]) == (
            event["ts"], event["agent_id"], event["action"], event["resource"]["id"], event["status"])
        assert (json.loads(row["inputs"]) if row["inputs"] else None) == event["inputs"]


def test_filters_and_relative_times(demo_client: TestClient, demo_copy: Home, demo_keys: dict[str, str],
                                    window: tuple[datetime, datetime]) -> None:
    start, end = window
    expected = [e for e in expected_actions(demo_copy, AGENT, start, end) if e["action"] == "lead.assign_owner"]
    one = expected[len(expected) // 2]
    found, _ = pages(demo_client, demo_keys["read"], {"agent_id": AGENT, "action": "lead.*owner",
                                                      "since": rfc3339(start), "until": rfc3339(end), "limit": 1000})
    assert found == expected
    on_record = [e for e in expected_actions(demo_copy, AGENT, start, end)
                 if e["resource"]["id"] == one["resource"]["id"] and e["status"] == "ok"]
    found, _ = pages(demo_client, demo_keys["read"], {"agent_id": AGENT, "resource_id": one["resource"]["id"],
                                                      "status": "ok", "since": rfc3339(start),
                                                      "until": rfc3339(end)})
    assert found == on_record and one in found
    # a duration counts back from now: days enough to reach before the store's first action, so the wall clock
    # moving on between the two calls cannot change what matches
    first = expected_actions(demo_copy, AGENT, datetime(2000, 1, 1, tzinfo=UTC), end)
    days = (datetime.now(UTC) - datetime.fromisoformat(first[-1]["ts"])).days + 2
    found, _ = pages(demo_client, demo_keys["read"], {"agent_id": AGENT, "since": f"{days}d", "limit": 1000,
                                                      "until": rfc3339(end), "status": "error"})
    assert found == [e for e in first if e["status"] == "error"] and found


def test_bad_parameters_are_named(demo_client: TestClient, demo_keys: dict[str, str]) -> None:
    token = demo_keys["read"]

    def get(params: dict[str, Any], accept: str | None = None) -> httpx.Response:
        return demo_client.get("/v1/actions", params=params, headers=bearer(token, accept))

    assert_error(get({"since": "yesterday"}), 400, "invalid_parameter", "since")
    assert_error(get({"until": "2026-10-01T09:30:00"}), 400, "invalid_parameter", "until")
    assert_error(get({"status": "done"}), 400, "invalid_parameter", "status")
    assert_error(get({"limit": 0}), 400, "invalid_parameter", "limit")
    assert_error(get({"limit": 1001}), 400, "invalid_parameter", "limit")
    assert_error(get({"cursor": "not-a-cursor"}), 400, "invalid_parameter", "cursor")
    assert_error(get({"agent_id": "x" * 300}), 400, "invalid_parameter", "agent_id")
    error = assert_error(get({"since": "2026-10-02T00:00:00Z", "until": "2026-10-01T00:00:00Z"}), 400,
                         "invalid_parameter")
    assert "swap them" in error["message"]
    first = get({"agent_id": AGENT, "limit": 5}).json()
    assert_error(get({"agent_id": "enrichment-agent", "cursor": first["next_cursor"]}), 400, "invalid_parameter",
                 "cursor")
    assert_error(get({"cursor": first["next_cursor"]}, "text/csv"), 400, "invalid_parameter", "cursor")
    # A misspelt filter must not return the unfiltered selection as if it were the one asked for.
    misspelt = assert_error(get({"agent": AGENT}), 400, "unknown_parameter")
    assert "'agent'" in misspelt["message"] and "agent_id" in misspelt["message"]
    listed = demo_client.get("/v1/incidents", params={"severity": "critical"}, headers=bearer(token))
    assert_error(listed, 400, "unknown_parameter")


def test_scopes(demo_client: TestClient, demo_keys: dict[str, str]) -> None:
    assert_error(demo_client.get("/v1/actions"), 401, "missing_api_key")
    assert_error(demo_client.get("/v1/actions", headers=bearer(demo_keys["ingest"])), 403, "insufficient_scope")
    assert demo_client.get("/v1/actions", headers=bearer(demo_keys["admin"]), params={"limit": 1}).status_code == 200


# -- small stores a test writes -------------------------------------------------------------------------------------


def ingest(home: Home, events: list[dict[str, Any]], path: Path) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    report = ingest_files(home, ACTIONS, [path])
    assert report.rejected == 0 and report.accepted == len(events)


def action(event_id: str, ts: datetime, **more: Any) -> dict[str, Any]:
    return {"event_id": event_id, "ts": rfc3339(ts), "agent_id": "writer", "action": "lead.update",
            "resource": {"type": "lead", "id": f"L-{event_id}"}, "status": "ok", **more}


@pytest.fixture
def small(tmp_path: Path) -> tuple[Home, str, Path]:
    home = Home.resolve(tmp_path / "home")
    _, token = KeyStore(home).create("read", name="reader")
    return home, token, tmp_path


def test_cursor_is_stable_while_actions_arrive(small: tuple[Home, str, Path]) -> None:
    home, token, work = small
    t0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    # 40 actions, in pairs sharing a time: the order within a time is by event_id
    first = [action(f"a-{n:03d}", t0 + timedelta(minutes=n // 2)) for n in range(40)]
    ingest(home, first, work / "first.jsonl")
    arrivals = iter(range(100))
    late_older: list[str] = []

    def arrive() -> None:
        """After each page: one action newer than everything (past `until`: never listed) and one late one older
        than everything (its turn has not come: listed, at the end)."""
        n = next(arrivals)
        late_older.append(f"b-{n:03d}")
        ingest(home, [action(f"z-{n:03d}", t0 + timedelta(days=1, minutes=n)),
                      action(f"b-{n:03d}", t0 - timedelta(minutes=n + 1))], work / f"arrive-{n}.jsonl")

    client_iter = make_client(home)
    client = next(client_iter)
    try:
        found, count = pages(client, token, {"until": rfc3339(t0 + timedelta(hours=1)), "limit": 7}, arrive)
    finally:
        client_iter.close()
    ids = [a["event_id"] for a in found]
    assert len(ids) == len(set(ids)), "an action was listed twice"
    assert count > 5 and len(ids) == len(first) + len(late_older)
    assert [i for i in ids if i.startswith("a-")] == [a["event_id"] for a in reversed(first)]  # none skipped
    assert not [i for i in ids if i.startswith("z-")]  # beyond `until`: never
    assert [i for i in ids if i.startswith("b-")] == late_older  # each older than the one before
    assert ids[:len(first)] == [a["event_id"] for a in reversed(first)]


def test_actions_keep_every_key_and_csv_cells_cannot_run(small: tuple[Home, str, Path]) -> None:
    home, token, work = small
    at = datetime(2026, 10, 1, 9, 0, 0, 250_000, tzinfo=UTC)
    events = [
        action("full", at, agent_version="=HYPERLINK(\"http://x\")", inputs={"stage": None, "n": 3},
               before={"OwnerId": "rep-1"}, after={"OwnerId": "rep-2"}, decision={"route_to": "rep-2"},
               confidence=0.5, rationale="+cmd|' /C calc'!A0", authorized_by="@ana",
               approval={"approved_by": "ana", "approved_at": "2026-10-01T11:00:00+02:00"}, external=False,
               records_affected=3, latency_ms=412, trace_id="t1", span_id="s1", custom_flag=None, tenant="-acme"),
        action("failed", at + timedelta(seconds=1), status="error",
               error={"code": "timeout", "message": "no answer in 30 s"}),
    ]
    ingest(home, events, work / "events.jsonl")
    client_iter = make_client(home)
    client = next(client_iter)
    try:
        page = client.get("/v1/actions", headers=bearer(token)).json()
        stream = client.get("/v1/actions", headers=bearer(token, "application/x-ndjson")).text
        table = client.get("/v1/actions", headers=bearer(token, "text/csv")).text
    finally:
        client_iter.close()
    dumped = [ActionEvent.model_validate(e).model_dump(mode="json") for e in reversed(events)]
    assert page == {"actions": dumped, "next_cursor": None}
    assert list(page["actions"][1]) == list(dumped[1])  # the key order too: the unknown keys last
    assert page["actions"][1]["ts"] == "2026-10-01T09:00:00.250000Z"
    assert [json.loads(line) for line in stream.splitlines()] == dumped
    cells = {row["event_id"]: row for row in csv.DictReader(io.StringIO(table))}["full"]
    assert cells["agent_version"] == "'=HYPERLINK(\"http://x\")"
    assert cells["rationale"] == "'+cmd|' /C calc'!A0"
    assert cells["authorized_by"] == "'@ana"
    assert json.loads(cells["extra"]) == {"custom_flag": None, "tenant": "-acme"}  # JSON text, not a formula start
    assert cells["approved_at"] == "2026-10-01T09:00:00Z"


def test_an_empty_selection(small: tuple[Home, str, Path]) -> None:
    home, token, _ = small
    client_iter = make_client(home)
    client = next(client_iter)
    try:
        assert client.get("/v1/actions", headers=bearer(token)).json() == {"actions": [], "next_cursor": None}
        assert client.get("/v1/actions", headers=bearer(token, "application/x-ndjson")).text == ""
        header = client.get("/v1/actions", headers=bearer(token, "text/csv")).text
    finally:
        client_iter.close()
    assert header.startswith('"event_id","ts","agent_id"') and header.count("\n") == 1


# -- incidents ------------------------------------------------------------------------------------------------------


def test_incidents_list_and_get_match_the_store(demo_client: TestClient, demo_copy: Home,
                                                demo_keys: dict[str, str]) -> None:
    token = demo_keys["read"]
    stored = [json.loads(i.model_dump_json()) for i in incident_store(demo_copy).list()]
    assert stored, "the demo opens incidents"
    listed = demo_client.get("/v1/incidents", params={"limit": 1000}, headers=bearer(token))
    assert listed.status_code == 200 and listed.json() == stored
    for status in ("open", "resolved"):
        assert demo_client.get("/v1/incidents", params={"status": status, "limit": 1000},
                               headers=bearer(token)).json() == [i for i in stored if i["status"] == status]
    check = stored[-1]["check"]
    assert demo_client.get("/v1/incidents", params={"check": check, "limit": 1000},
                           headers=bearer(token)).json() == [i for i in stored if i["check"] == check]
    by_agent = [i for i in incident_store(demo_copy).list() if AGENT in agents_named(i)]
    assert by_agent
    assert demo_client.get("/v1/incidents", params={"agent_id": AGENT, "limit": 1000}, headers=bearer(token)).json() \
        == [json.loads(i.model_dump_json()) for i in by_agent]
    assert demo_client.get("/v1/incidents", params={"limit": 2}, headers=bearer(token)).json() == stored[:2]
    for incident in stored[:5]:
        assert demo_client.get(f"/v1/incidents/{incident['id']}", headers=bearer(token)).json() == incident
    assert_error(demo_client.get("/v1/incidents/INC-999999", headers=bearer(token)), 404, "incident_not_found")
    assert_error(demo_client.get("/v1/incidents", params={"status": "closed"}, headers=bearer(token)), 400,
                 "invalid_parameter", "status")


def test_ack_and_resolve_record_the_key_name(demo_client: TestClient, demo_copy: Home,
                                             demo_keys: dict[str, str]) -> None:
    store = incident_store(demo_copy)
    target = next(i for i in store.list(["open"]))
    admin_id = next(k.id for k in KeyStore(demo_copy).list() if k.name == "admin-bot")
    url = f"/v1/incidents/{target.id}"
    assert_error(demo_client.post(f"{url}/ack", headers=bearer(demo_keys["read"])), 403, "insufficient_scope")
    assert store.get(target.id).status == "open"

    acked = demo_client.post(f"{url}/ack", json={"note": "on it"}, headers=bearer(demo_keys["admin"]))
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "acknowledged"
    now = store.get(target.id)
    assert (now.status, now.acknowledged_by, now.operator_note) == ("acknowledged", f"admin-bot (API key {admin_id})",
                                                                     "on it")
    assert now.acknowledged_at is not None

    resolved = demo_client.post(f"{url}/resolve", headers=bearer(demo_keys["admin"]))  # no body: the note is optional
    assert resolved.status_code == 200, resolved.text
    now = store.get(target.id)
    assert (now.status, now.resolved_by) == ("resolved", f"admin-bot (API key {admin_id})")
    assert now.status_note == f"resolved by admin-bot (API key {admin_id})"
    assert acked.json()["acknowledged_by"] == now.acknowledged_by  # the ack is kept

    assert_error(demo_client.post(f"{url}/ack", headers=bearer(demo_keys["admin"])), 409, "conflict")
    again = demo_client.post(f"{url}/resolve", json={"note": "root cause: the Lead layout"},
                             headers=bearer(demo_keys["admin"]))
    assert again.status_code == 200 and store.get(target.id).operator_note == "root cause: the Lead layout"
    assert store.get(target.id).resolved_at == now.resolved_at  # who and when stay the first; the note is kept
    assert_error(demo_client.post("/v1/incidents/INC-999999/resolve", headers=bearer(demo_keys["admin"])), 404,
                 "incident_not_found")
    assert_error(demo_client.post(f"{url}/resolve", json={"note": "x" * 1001}, headers=bearer(demo_keys["admin"])),
                 400, "invalid_parameter")


def test_the_routes_are_in_the_openapi_document_with_examples(demo_client: TestClient) -> None:
    paths = demo_client.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/actions", "get"), ("/v1/incidents", "get"), ("/v1/incidents/{incident_id}", "get"),
                         ("/v1/incidents/{incident_id}/ack", "post"), ("/v1/incidents/{incident_id}/resolve", "post")):
        ok = paths[path][method]["responses"]["200"]["content"]["application/json"]
        assert "example" in ok, (path, method)
    content = paths["/v1/actions"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "application/x-ndjson", "text/csv"} <= set(content)


# -- a real server streams -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_server_streams_the_selection(demo_home: Home, window: tuple[datetime, datetime], tmp_path: Path,
                                             processes: list) -> None:
    shutil.copytree(demo_home.root, tmp_path / "home")  # a copy of its own: one server per home
    home = Home.resolve(tmp_path / "home")
    _, token = KeyStore(home).create("read", name="auditor")
    server = Server(home, free_port(), token, tmp_path / "server.log")
    server.start()
    assert server.process is not None
    processes.append(server.process)
    start, end = window
    params = {"agent_id": AGENT, "since": rfc3339(start), "until": rfc3339(end)}
    with httpx.stream("GET", f"{server.url}/v1/actions", params=params, timeout=STREAM_TIMEOUT_S,
                      headers=bearer(token, "application/x-ndjson")) as answer:
        assert answer.status_code == 200
        lines = list(answer.iter_lines())
    expected = expected_actions(home, AGENT, start, end)
    assert [json.loads(line) for line in lines if line] == expected
    with httpx.stream("GET", f"{server.url}/v1/actions", params=params, timeout=STREAM_TIMEOUT_S,
                      headers=bearer(token, "text/csv")) as answer:
        assert answer.status_code == 200
        text = answer.read().decode()
    assert [r["event_id"] for r in csv.DictReader(io.StringIO(text))] == [e["event_id"] for e in expected]
    assert token not in server.log.read_text()


def test_a_run_saving_meanwhile_keeps_who_acknowledged(tmp_path: Path) -> None:
    """A check run that loaded the incident before the ack saves its copy after it: the ack, who made it and the
    note stand."""
    at = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    store = IncidentStore(tmp_path / "incidents.sqlite3")
    run_copy = Incident(id="INC-1", check="quality.null_spike", severity="warning", status="open", opened_at=at,
                        started_at=at, last_fired_at=at, subject={"field": "deal_stage"}, summary="nulls", affected=3)
    store.save([run_copy], first_number=1)
    store.set_status("INC-1", "acknowledged", by="oncall-bot (API key 0123abcd)", note="on it")
    store.save([run_copy.model_copy(update={"affected": 5})], first_number=2)
    kept = store.get("INC-1")
    assert (kept.status, kept.acknowledged_by, kept.operator_note, kept.affected) == (
        "acknowledged", "oncall-bot (API key 0123abcd)", "on it", 5)
