"""The HTTP API in-process: ingest, idempotence, partial acceptance, auth, limits, the error shape, OpenAPI."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentwatch.app.api.app import (
    ACTION_ERROR_EXAMPLE,
    ACTION_EXAMPLE,
    OUTCOME_EXAMPLE,
    OUTCOME_WON_EXAMPLE,
    SNAPSHOT_EXAMPLE,
    ApiSettings,
    create_app,
)
from agentwatch.collector.ingest.screen import NON_FINITE_MESSAGE
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.schemas import ActionEvent, OutcomeEvent, SchemaSnapshot
from agentwatch.store.reader import open_reader

with warnings.catch_warnings():  # starlette's TestClient warns that it prefers httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

FIXTURES = Path(__file__).parent / "fixtures"
DEADLINE_S = 60.0


def action(n: int, **changes: Any) -> dict[str, Any]:
    event = {
        "event_id": f"act-{n:06d}",
        "ts": "2026-10-01T09:30:00+02:00",
        "agent_id": "lead-router",
        "action": "lead.assign_owner",
        "resource": {"type": "lead", "id": f"L-{n}"},
        "status": "ok",
        "confidence": 0.5,
    }
    event.update(changes)
    return event


def outcome(n: int, **changes: Any) -> dict[str, Any]:
    event = {
        "event_id": f"out-{n:06d}",
        "ts": "2026-10-02T10:00:00Z",
        "kind": "owner_changed",
        "resource": {"type": "lead", "id": f"L-{n}"},
        "from": "rep-1",
        "to": "rep-2",
    }
    event.update(changes)
    return event


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def query(home: Home, sql: str) -> list[tuple]:
    con = open_reader(home)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def keys(home: Home) -> dict[str, Any]:
    store = KeyStore(home)
    tokens = {scope: store.create(scope, name=f"test {scope}") for scope in ("ingest", "read", "admin")}
    return {scope: token for scope, (_, token) in tokens.items()} | {"records": {s: k for s, (k, _) in tokens.items()}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(home: Home) -> Iterator[TestClient]:
    app = create_app(home, ApiSettings(flush_interval_s=0.05, max_body_bytes=256 * 1024))
    with TestClient(app) as test_client:
        wait_ready(test_client)
        yield test_client


def wait_ready(client: TestClient) -> None:
    """Wait until the app has replayed its WAL and takes events (it answers `starting` until then)."""
    wait_for(lambda: client.get("/healthz").json()["status"] != "starting", "the app to finish starting")


def flushed(client: TestClient) -> None:
    """Wait until the WAL is empty, i.e. every acknowledged event is in the store."""
    wait_for(lambda: client.get("/healthz").json()["wal_pending"] == 0, "the WAL to flush")


def assert_error_shape(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) - {"accepted", "duplicates"} == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    if code:
        assert body["error"]["code"] == code
    return body


# -- ingest --------------------------------------------------------------------------------------


def test_single_event_and_batch_are_stored(client: TestClient, keys: dict, home: Home) -> None:
    """One action object and a batch of actions are accepted (200) and visible in the store after a flush."""
    response = client.post("/v1/actions", json=action(1), headers=bearer(keys["ingest"]))
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    batch = [action(n) for n in range(2, 52)]
    response = client.post("/v1/actions", json=batch, headers=bearer(keys["admin"]))
    assert response.json() == {"accepted": 50, "duplicates": 0}
    flushed(client)
    rows = query(home, "SELECT event_id, resource_id, confidence FROM actions ORDER BY event_id")
    assert [r[0] for r in rows] == [f"act-{n:06d}" for n in range(1, 52)]
    assert rows[0][1:] == ("L-1", 0.5)


def test_outcomes_are_stored(client: TestClient, keys: dict, home: Home) -> None:
    """Outcome events, including the aliased `from` key, are stored in the outcomes dataset."""
    response = client.post("/v1/outcomes", json=[outcome(1), outcome(2, kind="closed_won", amount=10.5)],
                           headers=bearer(keys["ingest"]))
    assert response.json() == {"accepted": 2, "duplicates": 0}
    flushed(client)
    rows = query(home, "SELECT event_id, kind, from_value, to_value, amount FROM outcomes ORDER BY event_id")
    assert rows == [("out-000001", "owner_changed", '"rep-1"', '"rep-2"', None),
                    ("out-000002", "closed_won", '"rep-1"', '"rep-2"', 10.5)]


def test_resending_is_idempotent(client: TestClient, keys: dict, home: Home) -> None:
    """Ids repeated in a batch, still pending in the WAL, or already stored count as duplicates and are stored once."""
    headers = bearer(keys["ingest"])
    batch = [action(n) for n in range(10)]
    first = client.post("/v1/actions", json=[*batch, action(3)], headers=headers).json()
    assert first == {"accepted": 10, "duplicates": 1}
    assert client.post("/v1/actions", json=batch, headers=headers).json() == {"accepted": 0, "duplicates": 10}
    flushed(client)
    again = client.post("/v1/actions", json=[*batch, action(10)], headers=headers).json()
    assert again == {"accepted": 1, "duplicates": 10}
    flushed(client)
    rows = query(home, "SELECT count(*), count(DISTINCT event_id) FROM actions")
    assert rows == [(11, 11)]


def test_concurrent_overlapping_batches_store_each_id_once(client: TestClient, keys: dict, home: Home) -> None:
    """Threads sending overlapping batches at once: accepted counts add up to the distinct ids, each stored once."""
    headers = bearer(keys["ingest"])
    results: list[dict] = []
    errors: list[BaseException] = []

    def send(worker: int) -> None:
        try:
            for round_ in range(5):
                start = (worker * 37 + round_ * 53) % 300
                batch = [action(n % 300) for n in range(start, start + 100)]
                response = client.post("/v1/actions", json=batch, headers=headers)
                assert response.status_code == 200, response.text
                results.append(response.json())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_S)
    assert not errors, errors
    flushed(client)
    (total, distinct), = query(home, "SELECT count(*), count(DISTINCT event_id) FROM actions")
    assert total == distinct
    assert sum(r["accepted"] for r in results) == distinct
    assert sum(r["accepted"] + r["duplicates"] for r in results) == 6 * 5 * 100


def test_invalid_event_is_named_and_the_others_are_stored(client: TestClient, keys: dict, home: Home) -> None:
    """A batch with one invalid event gets 422 naming its index, event_id and field; the valid ones are stored."""
    bad = action(2, resource={"type": "lead"})
    response = client.post("/v1/actions", json=[action(1), bad, action(3)], headers=bearer(keys["ingest"]))
    body = assert_error_shape(response, 422, "invalid_events")
    assert body["accepted"] == 2 and body["duplicates"] == 0
    assert body["error"]["details"] == [
        {"index": 1, "event_id": "act-000002", "errors": [{"field": "resource.id", "message": "Field required"}]}
    ]
    assert "1 of 3" in body["error"]["message"]
    flushed(client)
    assert query(home, "SELECT event_id FROM actions ORDER BY 1") == [("act-000001",), ("act-000003",)]


def test_non_object_items_and_bad_values_are_refused_per_event(client: TestClient, keys: dict) -> None:
    """Non-object items and items that break the model are refused one by one (event_id null when unreadable)."""
    items = [42, action(1, ts="yesterday"), action(2, confidence=1.5), action(3)]
    body = client.post("/v1/actions", json=items, headers=bearer(keys["ingest"])).json()
    assert body["accepted"] == 1
    by_index = {d["index"]: d for d in body["error"]["details"]}
    assert set(by_index) == {0, 1, 2}
    assert by_index[0]["event_id"] is None
    assert by_index[1]["errors"][0]["field"] == "ts"
    assert by_index[2]["errors"][0]["field"] == "confidence"


def test_non_finite_numbers_are_refused_per_event(client: TestClient, keys: dict, home: Home) -> None:
    """A number out of double range (1e999) refuses its event; 'NaN' and 'Infinity' inside strings are fine."""
    body = (b'[{"event_id": "e1", "ts": "2026-10-01T09:30:00Z", "agent_id": "a", "action": "lead.route", '
            b'"resource": {"type": "lead", "id": "L"}, "status": "ok", "inputs": {"size": 1e999}},'
            + json.dumps(action(2, rationale="NaN Infinity -Infinity")).encode() + b"]")
    response = client.post("/v1/actions", content=body, headers=bearer(keys["ingest"]))
    result = assert_error_shape(response, 422, "invalid_events")
    assert result["accepted"] == 1
    assert [(d["index"], d["event_id"]) for d in result["error"]["details"]] == [(0, "e1")]
    assert result["error"]["details"][0]["errors"] == [{"field": "inputs.size", "message": NON_FINITE_MESSAGE}]
    flushed(client)
    assert query(home, "SELECT rationale FROM actions") == [("NaN Infinity -Infinity",)]


def test_utf8_text_and_a_byte_order_mark_are_kept(client: TestClient, keys: dict, home: Home) -> None:
    """Non-ASCII text survives the WAL unchanged, and a UTF-8 byte order mark before the body is ignored."""
    event = action(1, rationale="Grüße, 東京 \u2028 ✓", tenant="Zürich")
    body = b"\xef\xbb\xbf" + json.dumps(event, ensure_ascii=False).encode("utf-8")
    assert client.post("/v1/actions", content=body, headers=bearer(keys["ingest"])).status_code == 200
    flushed(client)
    assert query(home, "SELECT rationale, extra FROM actions") == [("Grüße, 東京 \u2028 ✓", '{"tenant":"Zürich"}')]


def test_unknown_keys_are_kept_in_extra(client: TestClient, keys: dict, home: Home) -> None:
    """Top-level keys the format does not know are stored as sent in the `extra` column."""
    event = action(1, tenant="acme", experiment={"arm": "b", "weight": 2})
    assert client.post("/v1/actions", json=event, headers=bearer(keys["ingest"])).status_code == 200
    flushed(client)
    (extra,), = query(home, "SELECT extra FROM actions")
    assert json.loads(extra) == {"tenant": "acme", "experiment": {"arm": "b", "weight": 2}}


# -- auth ------------------------------------------------------------------------------------------


def test_missing_key_is_401_with_challenge(client: TestClient) -> None:
    """A request without a key gets 401, WWW-Authenticate: Bearer, and a message saying how to create a key."""
    response = client.post("/v1/actions", json=action(1))
    body = assert_error_shape(response, 401, "missing_api_key")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in body["error"]["message"]
    assert "agentwatch keys create --scope ingest" in body["error"]["message"]


def test_malformed_unknown_and_revoked_keys_are_401(client: TestClient, keys: dict, home: Home) -> None:
    """Malformed, unknown and (while the server runs) revoked keys get 401, and the token is never echoed."""
    token = keys["ingest"]
    key_id = keys["records"]["ingest"].id
    unknown = f"aw_{'f' * 8 if key_id != 'f' * 8 else 'e' * 8}_{token[12:]}"
    cases = {"Basic dXNlcjpwYXNz": "malformed_api_key", "Bearer not-a-key": "malformed_api_key",
             f"Bearer {unknown}": "invalid_api_key"}
    for header, code in cases.items():
        response = client.post("/v1/actions", json=action(1), headers={"Authorization": header})
        assert_error_shape(response, 401, code)
        assert response.headers["www-authenticate"] == "Bearer"
        assert token[12:] not in response.text
    assert client.post("/v1/actions", json=action(1), headers=bearer(token)).status_code == 200
    KeyStore(home).revoke(key_id)  # as `agentwatch keys revoke` does, from another process
    response = client.post("/v1/actions", json=action(2), headers=bearer(token))
    body = assert_error_shape(response, 401, "invalid_api_key")
    assert token not in response.text and token[12:] not in body["error"]["message"]


def test_read_key_cannot_post(client: TestClient, keys: dict) -> None:
    """A read-scoped key POSTing events gets 403 naming the scope it needs."""
    response = client.post("/v1/actions", json=action(1), headers=bearer(keys["read"]))
    body = assert_error_shape(response, 403, "insufficient_scope")
    assert "'ingest'" in body["error"]["message"]


def test_status_needs_read_scope(client: TestClient, keys: dict) -> None:
    """GET /v1/status is 403 for an ingest key and 200 for read and admin keys."""
    assert_error_shape(client.get("/v1/status", headers=bearer(keys["ingest"])), 403, "insufficient_scope")
    for scope in ("read", "admin"):
        response = client.get("/v1/status", headers=bearer(keys[scope]))
        assert response.status_code == 200, response.text
        assert isinstance(response.json(), dict)


def test_healthz_needs_no_key(client: TestClient) -> None:
    """GET /healthz answers without a key: a status, its reasons, and counts (no paths, no error texts)."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "reasons": [], "wal_pending": 0, "alerts_pending": 0,
                               "alerts_failed": 0, "quarantined_parts": 0,
                               "checks": {"last_run": None, "lag_s": None}}  # no check has run on this home


def test_health_details_need_read_scope(client: TestClient, keys: dict, home: Home) -> None:
    """GET /v1/health adds the home and the error texts, for read and admin keys only."""
    assert_error_shape(client.get("/v1/health"), 401, "missing_api_key")
    assert_error_shape(client.get("/v1/health", headers=bearer(keys["ingest"])), 403, "insufficient_scope")
    for scope in ("read", "admin"):
        response = client.get("/v1/health", headers=bearer(keys[scope]))
        assert response.status_code == 200, response.text
        assert response.json() | {"home": None} == {
            "status": "ok", "reasons": [], "wal_pending": 0, "alerts_pending": 0, "alerts_failed": 0,
            "quarantined_parts": 0, "checks": {"last_run": None, "lag_s": None}, "home": None, "startup_error": None,
            "wal_failure": None, "last_flush_error": None, "last_alert_error": None}
        assert response.json()["home"] == str(home.root)


# -- limits and malformed bodies ----------------------------------------------------------------


def test_oversized_body_is_413(client: TestClient, keys: dict) -> None:
    """A body over max_body_bytes gets 413, by Content-Length and when streamed without one."""
    big = json.dumps([action(n, rationale="x" * 1000) for n in range(300)]).encode()
    assert len(big) > 256 * 1024
    response = client.post("/v1/actions", content=big, headers=bearer(keys["ingest"]))
    body = assert_error_shape(response, 413, "body_too_large")
    assert "262,144" in body["error"]["message"]

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 16384):
            yield big[start:start + 16384]

    response = client.post("/v1/actions", content=chunks(), headers=bearer(keys["ingest"]))
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error_shape(response, 413, "body_too_large")


def test_non_json_body_is_400_saying_where(client: TestClient, keys: dict) -> None:
    """A body that is not JSON gets 400 invalid_json with the line and column where it breaks."""
    response = client.post("/v1/actions", content=b'[{"event_id": "a",\n  oops}]', headers=bearer(keys["ingest"]))
    body = assert_error_shape(response, 400, "invalid_json")
    assert "line 2 column 3" in body["error"]["message"]
    for content in (b"", b"[NaN]", b"\xff\xfe\x00garbage"):
        assert_error_shape(client.post("/v1/actions", content=content, headers=bearer(keys["ingest"])), 400,
                           "invalid_json")


def test_wrong_top_level_type_is_400(client: TestClient, keys: dict) -> None:
    """A JSON string, number or null instead of an object or array gets 400 invalid_body."""
    for content in (b'"event"', b"3", b"null"):
        response = client.post("/v1/outcomes", content=content, headers=bearer(keys["ingest"]))
        body = assert_error_shape(response, 400, "invalid_body")
        assert "JSON object" in body["error"]["message"]


def test_one_error_shape_everywhere(client: TestClient, keys: dict) -> None:
    """400, 401, 403, 404, 405, 413 and 422 answers all have exactly {error: {code, message, details}}."""
    ingest = bearer(keys["ingest"])
    assert_error_shape(client.post("/v1/actions", content=b"{", headers=ingest), 400)
    assert_error_shape(client.post("/v1/actions", json=action(1)), 401)
    assert_error_shape(client.post("/v1/actions", json=action(1), headers=bearer(keys["read"])), 403)
    assert_error_shape(client.get("/v1/nothing-here", headers=ingest), 404, "not_found")
    assert_error_shape(client.delete("/v1/actions", headers=ingest), 405, "method_not_allowed")
    assert_error_shape(client.post("/v1/actions", content=b"[" + b" " * 300_000 + b"]", headers=ingest), 413)
    assert_error_shape(client.post("/v1/actions", json=[{}], headers=ingest), 422)
    assert_error_shape(client.post("/v1/schema-snapshots?format=excel", json={}, headers=ingest), 400,
                       "invalid_parameter")


def test_unexpected_error_is_500_in_the_shape(home: Home, keys: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception becomes a 500 internal_error with a generic message, not a traceback."""
    app = create_app(home, ApiSettings(flush_interval_s=0.05))

    def explode(*args: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.state.wal, "submit", explode)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        response = test_client.post("/v1/actions", json=action(1), headers=bearer(keys["ingest"]))
    body = assert_error_shape(response, 500, "internal_error")
    assert "secret internals" not in response.text
    assert "retry" in body["error"]["message"]


# -- OpenAPI -------------------------------------------------------------------------------------------


def test_openapi_lists_routes_with_examples(client: TestClient) -> None:
    """/openapi.json lists every route with descriptions, and its request examples are valid events."""
    spec = client.get("/openapi.json").json()
    assert {"/v1/actions", "/v1/outcomes", "/v1/schema-snapshots", "/v1/status", "/healthz"} <= set(spec["paths"])
    for path in ("/v1/actions", "/v1/outcomes", "/v1/schema-snapshots"):
        operation = spec["paths"][path]["post"]
        assert operation["description"] and operation["requestBody"]["content"]["application/json"]["examples"]
        assert "WERE kept" in operation["responses"]["422"]["description"]
        assert operation["security"] == [{"HTTPBearer": []}]
    assert {"ActionEvent", "OutcomeEvent", "SchemaSnapshot", "ErrorBody"} <= set(spec["components"]["schemas"])
    for example in (ACTION_EXAMPLE, ACTION_ERROR_EXAMPLE):
        ActionEvent.model_validate_json(json.dumps(example))
    for example in (OUTCOME_EXAMPLE, OUTCOME_WON_EXAMPLE):
        OutcomeEvent.model_validate_json(json.dumps(example))
    SchemaSnapshot.model_validate_json(json.dumps(SNAPSHOT_EXAMPLE))
    assert client.get("/docs").status_code == 200


# -- schema snapshots -------------------------------------------------------------------------------


def test_schema_snapshots_native_and_salesforce(client: TestClient, keys: dict, home: Home) -> None:
    """Native snapshots and a Salesforce describe (object and taken_at params) are stored; re-sending is a no-op."""
    headers = bearer(keys["ingest"])
    response = client.post("/v1/schema-snapshots", json=SNAPSHOT_EXAMPLE, headers=headers)
    assert response.json() == {"accepted": 1, "duplicates": 0}, response.text
    assert client.post("/v1/schema-snapshots", json=[SNAPSHOT_EXAMPLE], headers=headers).json() == {
        "accepted": 0, "duplicates": 1}

    describe = json.loads((FIXTURES / "salesforce" / "lead_describe.json").read_text())
    response = client.post(
        "/v1/schema-snapshots",
        params={"format": "salesforce", "object": "Lead", "taken_at": "2026-10-02T08:00:00+02:00"},
        json=describe,
        headers=headers,
    )
    assert response.json() == {"accepted": 1, "duplicates": 0}, response.text
    rows = query(home, "SELECT source, object, taken_at::VARCHAR, field_count FROM schema_snapshots ORDER BY taken_at")
    assert [r[:3] for r in rows] == [("salesforce", "Lead", "2026-10-01 00:00:00+00"),
                                     ("salesforce", "Lead", "2026-10-02 06:00:00+00")]
    assert rows[1][3] > 10


def test_schema_snapshot_errors(client: TestClient, keys: dict) -> None:
    """A bad snapshot gets 422 naming it (the good one is stored); bad parameters get 400."""
    headers = bearer(keys["ingest"])
    bad = {**SNAPSHOT_EXAMPLE, "object": "Contact", "fields": [{"name": "Email"}]}
    response = client.post("/v1/schema-snapshots", json=[SNAPSHOT_EXAMPLE, bad], headers=headers)
    body = assert_error_shape(response, 422, "invalid_snapshots")
    assert body["accepted"] == 1
    assert body["error"]["details"][0]["index"] == 1
    assert body["error"]["details"][0]["errors"][0]["field"] == "fields.0.type"
    for params in ({"taken_at": "yesterday"}, {"format": "hubspot"}, {"format": "csv"}):
        response = client.post("/v1/schema-snapshots", params=params, json=SNAPSHOT_EXAMPLE, headers=headers)
        assert_error_shape(response, 400, "invalid_parameter")


# -- the WAL in-process --------------------------------------------------------------------------------


def test_leftover_wal_segments_are_replayed_at_start(home: Home, keys: dict) -> None:
    """Segments left in the WAL folder (one with a torn last line) are stored before the app answers."""
    lines = [json.dumps(action(n)) for n in range(5)]
    (home.wal / "actions-000000000007.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    (home.wal / "outcomes-000000000002.jsonl").write_text(json.dumps(outcome(1)) + "\n")
    app = create_app(home, ApiSettings(flush_interval_s=3600))
    with TestClient(app) as test_client:
        wait_ready(test_client)  # the replay runs in the background; /healthz says "starting" until it is done
        assert query(home, "SELECT count(*) FROM actions") == [(3,)]
        assert query(home, "SELECT count(*) FROM outcomes") == [(1,)]
        assert list(home.wal.iterdir()) == []
        # the next segment number continues after the leftovers, and ids already replayed are duplicates
        response = test_client.post("/v1/actions", json=[action(2), action(3)], headers=bearer(keys["ingest"]))
        assert response.json() == {"accepted": 1, "duplicates": 1}
        assert [p.name for p in home.wal.iterdir()] == ["actions-000000000008.jsonl"]
    assert query(home, "SELECT count(*) FROM actions") == [(4,)]  # the shutdown flushed the last one
    assert list(home.wal.iterdir()) == []


def test_failed_flush_is_reported_and_retried(home: Home, keys: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush that fails keeps its segment, makes /healthz failing (503, reason flush_failing, no error text),
    shows its error in /v1/health, and succeeds on a later tick."""
    from agentwatch.collector.ingest.pipeline import Ingestor

    original = Ingestor.ingest_chunk
    failures = {"left": 3}

    def flaky(self: Ingestor, chunk: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk hiccup")
        return original(self, chunk)

    monkeypatch.setattr(Ingestor, "ingest_chunk", flaky)
    app = create_app(home, ApiSettings(flush_interval_s=0.05))
    with TestClient(app) as test_client:
        wait_ready(test_client)
        assert test_client.post("/v1/actions", json=action(1), headers=bearer(keys["ingest"])).status_code == 200
        errors: list[str] = []
        public: list[Any] = []

        def seen_error() -> bool:
            health = test_client.get("/v1/health", headers=bearer(keys["read"]))
            if health.json()["last_flush_error"]:
                errors.append(health.json()["last_flush_error"])
                public.append(test_client.get("/healthz"))
            return bool(errors)

        wait_for(seen_error, "the flush error to show")
        assert "disk hiccup" in errors[0]
        assert public[0].status_code in (200, 503)  # the next tick may have succeeded meanwhile
        if public[0].status_code == 503:
            assert public[0].json()["reasons"][0]["code"] == "flush_failing"
            assert "disk hiccup" not in public[0].text
        flushed(test_client)
        health = test_client.get("/v1/health", headers=bearer(keys["read"]))
        assert health.status_code == 200 and health.json()["last_flush_error"] is None
    assert query(home, "SELECT event_id FROM actions") == [("act-000001",)]


def test_second_app_on_the_same_home_is_refused(home: Home) -> None:
    """Starting a second app on a home whose serve lock is held elsewhere fails with a clear message."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from agentwatch.core.home import Home; "
         "from agentwatch.core.locks import acquire_serve_lock; "
         f"acquire_serve_lock(Home.resolve({str(home.root)!r})); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        from agentwatch.core.errors import StoreError

        with pytest.raises(StoreError, match="already serving"), TestClient(create_app(home)):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_two_apps_in_one_process_on_one_home_are_refused(home: Home) -> None:
    """A second app on a home already served by this process fails to start instead of sharing its WAL."""
    from agentwatch.core.errors import StoreError

    with TestClient(create_app(home)) as first:
        with pytest.raises(StoreError, match="already served"), TestClient(create_app(home)):
            pass
        wait_ready(first)
        assert first.get("/healthz").status_code == 200
    with TestClient(create_app(home)) as again:  # released at shutdown
        wait_ready(again)
        assert again.get("/healthz").status_code == 200


def test_timestamp_outside_python_range_is_refused_per_event(client: TestClient, keys: dict, home: Home) -> None:
    """A time that is past year 9999 in UTC is one refused event (422), not a 500 that loses the batch."""
    late = action(2, ts="9999-12-31T23:59:59-01:00")
    response = client.post("/v1/actions", json=[action(1), late], headers=bearer(keys["ingest"]))
    body = assert_error_shape(response, 422, "invalid_events")
    assert body["accepted"] == 1
    assert body["error"]["details"][0]["errors"][0]["field"] == "ts"
    assert "outside years 1 to 9999" in body["error"]["details"][0]["errors"][0]["message"]
    flushed(client)
    assert query(home, "SELECT event_id FROM actions") == [("act-000001",)]
