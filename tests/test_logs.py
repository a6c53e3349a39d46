"""The log of a real ``agentwatch serve``: each refused request leaves exactly one line with its fields and never a
secret or an event's value; ``--log-format json`` makes every line of the stream (uvicorn's too) a JSON object."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from tests.live_support import Server, free_port

CANARY = "canary-body-value-7f3e"  # a value inside a refused event: it must never reach the log
LINE_TIMEOUT_S = 30.0


def start(root: Path, *args: str) -> tuple[Server, dict[str, str]]:
    home = Home.resolve(root / "home")
    store = KeyStore(home)
    keys = {scope: store.create(scope, name=f"logs {scope}")[1] for scope in ("ingest", "read")}
    return Server(home, free_port(), keys["ingest"], root / "server.log", args=args).start(), keys


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_id(token: str) -> str:
    return token.split("_")[1]


def secret(token: str) -> str:
    return token.split("_", 2)[2]


def action(event_id: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "ts": "2026-10-01T09:30:00Z", "agent_id": "log-agent", "action": "lead.route",
            "resource": {"type": "lead", "id": "L-1"}, "status": "ok", **extra}


def send_refused(server: Server, keys: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Five refused requests; what each one's log line must say, by error code."""
    url, ingest = server.url, bearer(keys["ingest"])
    bad_event = action("log-bad", resource={"type": "lead"}, inputs={"note": CANARY})
    assert httpx.post(f"{url}/v1/actions", json=[action("log-ok"), bad_event], headers=ingest,
                      timeout=30).status_code == 422
    wrong_secret = f"aw_{key_id(keys['read'])}_{'A' * 43}"
    assert httpx.get(f"{url}/v1/status", headers=bearer(wrong_secret), timeout=30).status_code == 401
    assert httpx.get(f"{url}/v1/status", headers=ingest, timeout=30).status_code == 403
    assert httpx.post(f"{url}/v1/outcomes", content=b'{"event_id": "x", ' + CANARY.encode(), headers={
        **ingest, "Content-Type": "application/json"}, timeout=30).status_code == 400
    assert httpx.get(f"{url}/v1/agents/log-agent/controls?limit=0", headers=bearer(keys["read"]),
                     timeout=30).status_code == 400
    return {
        "invalid_events": {"method": "POST", "endpoint": "/v1/actions", "status": 422,
                           "key_id": key_id(keys["ingest"]), "field": "resource.id"},
        "invalid_api_key": {"method": "GET", "endpoint": "/v1/status", "status": 401, "key_id": key_id(keys["read"]),
                            "field": None},
        "insufficient_scope": {"method": "GET", "endpoint": "/v1/status", "status": 403,
                               "key_id": key_id(keys["ingest"]), "field": None},
        "invalid_json": {"method": "POST", "endpoint": "/v1/outcomes", "status": 400, "key_id": key_id(keys["ingest"]),
                         "field": None},
        "invalid_parameter": {"method": "GET", "endpoint": "/v1/agents/{agent_id}/controls", "status": 400,
                              "key_id": key_id(keys["read"]), "field": "query.limit"},
    }


def wait_for_lines(log: Path, wanted: Callable[[list[str]], bool]) -> list[str]:
    deadline = time.monotonic() + LINE_TIMEOUT_S
    while True:
        lines = log.read_text(encoding="utf-8").splitlines()
        if wanted(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def assert_no_secret(text: str, keys: dict[str, str]) -> None:
    for token in keys.values():
        assert secret(token) not in text
    assert "A" * 43 not in text
    assert CANARY not in text


def test_json_log_has_one_line_per_refused_request_and_every_line_parses(tmp_path: Path) -> None:
    """With --log-format json: each refused request is exactly one agentwatch.api.refused object with its method,
    endpoint, status, error code, key id and first field; no line holds a key's secret or an event's value; after a
    graceful stop every line of the log (uvicorn's startup and shutdown lines too) is a JSON object with time,
    level, logger and message."""
    server, keys = start(tmp_path, "--log-format", "json")
    expected = send_refused(server, keys)

    def refused_lines(lines: list[str]) -> list[dict[str, Any]]:
        return [entry for line in lines if line.strip() and (entry := json.loads(line))["logger"] ==
                "agentwatch.api.refused"]

    lines = wait_for_lines(server.log, lambda lines: len(refused_lines(lines)) >= len(expected))
    found = refused_lines(lines)
    assert sorted(entry["error_code"] for entry in found) == sorted(expected)
    for entry in found:
        want = expected[entry["error_code"]]
        assert {name: entry[name] for name in want} == want, entry
        assert entry["level"] == "WARNING"

    server.kill(signal.SIGINT)
    text = server.log.read_text(encoding="utf-8")
    assert_no_secret(text, keys)
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    loggers = {entry["logger"] for entry in entries}
    assert {"uvicorn.error", "agentwatch.app.api.server", "agentwatch.api.refused"} <= loggers
    assert any(entry["message"] == "Application startup complete." for entry in entries)


def test_text_log_names_the_refused_request_in_one_line(tmp_path: Path) -> None:
    """The default text format: one line per refused request naming method, endpoint, status, code, key id and
    field, in a fixed order; no secret and no event value anywhere in the log."""
    server, keys = start(tmp_path)
    try:
        expected = send_refused(server, keys)
        lines = wait_for_lines(server.log, lambda lines: sum("agentwatch.api.refused" in line for line in lines)
                               >= len(expected))
    finally:
        server.kill(signal.SIGINT)
    refused = [line for line in lines if "agentwatch.api.refused" in line]
    assert len(refused) == len(expected)
    ingest_id = key_id(keys["ingest"])
    assert sum(line.endswith(f"WARNING agentwatch.api.refused: refused POST /v1/actions: 422 invalid_events "
                             f"(key {ingest_id}, field resource.id)") for line in refused) == 1
    assert sum(line.endswith(f"refused GET /v1/status: 401 invalid_api_key (key {key_id(keys['read'])})")
               for line in refused) == 1
    assert_no_secret(server.log.read_text(encoding="utf-8"), keys)
