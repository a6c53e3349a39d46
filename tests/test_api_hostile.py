"""Hostile batches against the API: too many events, too many refusals, events nested too deep.

One bad event costs only itself; a batch too large to look at is refused whole before any event is read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentwatch.app.api.app import ApiSettings, create_app
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.core.limits import Limits
from tests.live_support import stop
from tests.test_api import TestClient, action, assert_error_shape, bearer, flushed, query, wait_ready
from tests.test_api_durability import free_port, wait_healthy

ITEMS = 3_495_000


def nested(depth: int, leaf: Any = 1) -> Any:
    """A value `depth` levels deep (a dict holding a dict ...), built without recursion."""
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


def nested_text(depth: int) -> bytes:
    """The JSON text of a `depth`-deep object, for depths Python's json module cannot write."""
    return b'{"k":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.fixture
def token(home: Home) -> str:
    return KeyStore(home).create("ingest", name="hostile test")[1]


@pytest.fixture
def client(home: Home) -> Iterator[TestClient]:
    limits = Limits(max_batch_items=1000, max_error_details=20, max_depth=8)
    with TestClient(create_app(home, ApiSettings(flush_interval_s=0.05, limits=limits))) as test_client:
        wait_ready(test_client)
        yield test_client


# -- batch size and error details -----------------------------------------------------------------------


def test_a_batch_over_max_batch_items_is_refused_whole(client: TestClient, token: str, home: Home) -> None:
    """1,001 events against a bound of 1,000: 413 too_many_events naming the count, the bound and the setting;
    nothing of the batch is stored."""
    response = client.post("/v1/actions", json=[action(n) for n in range(1001)], headers=bearer(token))
    body = assert_error_shape(response, 413, "too_many_events")
    message = body["error"]["message"]
    assert "1,001" in message and "1,000" in message and "limits.max_batch_items" in message
    assert client.post("/v1/actions", json=[action(n) for n in range(1000)], headers=bearer(token)).json() == {
        "accepted": 1000, "duplicates": 0}
    flushed(client)
    assert query(home, "SELECT count(*) FROM actions") == [(1000,)]


def test_refusals_are_itemised_up_to_max_error_details(client: TestClient, token: str, home: Home) -> None:
    """500 refused events: all are counted, the first 20 itemised, and the message says so; the valid one is kept."""
    response = client.post("/v1/actions", json=[*([{}] * 500), action(1)], headers=bearer(token))
    body = assert_error_shape(response, 422, "invalid_events")
    assert body["accepted"] == 1
    assert [d["index"] for d in body["error"]["details"]] == list(range(20))
    message = body["error"]["message"]
    assert "500 of 501" in message and "first 20" in message and "limits.max_error_details" in message


def test_brackets_inside_strings_do_not_count_as_events(client: TestClient, token: str) -> None:
    """Commas, brackets and escaped quotes inside strings are not items: a 3-event batch full of them is 3 events."""
    tricky = 'a,b,[{"x": 1}], \\"quoted, still text\\" \\\\'
    events = [action(n, rationale=tricky * 200) for n in range(3)]
    response = client.post("/v1/actions", json=events, headers=bearer(token))
    assert response.json() == {"accepted": 3, "duplicates": 0}, response.text


# -- depth -------------------------------------------------------------------------------------------


def test_an_event_deeper_than_max_depth_is_refused_alone(client: TestClient, token: str, home: Home) -> None:
    """One event 9 levels deep (bound 8) is refused naming its index, event_id and the bound; the others are kept."""
    deep = action(2, inputs=nested(8))  # the event object, then 8 more levels
    response = client.post("/v1/actions", json=[action(1), deep, action(3, inputs=nested(7))],
                           headers=bearer(token))
    body = assert_error_shape(response, 422, "invalid_events")
    assert body["accepted"] == 2
    (detail,) = body["error"]["details"]
    assert detail["index"] == 1 and detail["event_id"] == "act-000002"
    assert "limits.max_depth" in detail["errors"][0]["message"] and "8" in detail["errors"][0]["message"]
    flushed(client)
    assert query(home, "SELECT event_id FROM actions ORDER BY 1") == [("act-000001",), ("act-000003",)]


@pytest.mark.parametrize("depth", [300, 100_000])
def test_an_event_too_deep_for_the_parser_costs_only_itself(client: TestClient, token: str, home: Home,
                                                           depth: int) -> None:
    """An event nested past the JSON parser's own limit does not take its batch down: it alone is refused."""
    deep = json.dumps(action(2, inputs="PLACEHOLDER")).encode().replace(b'"PLACEHOLDER"', nested_text(depth))
    body = b"[" + json.dumps(action(1)).encode() + b", " + deep + b", " + json.dumps(action(3)).encode() + b"]"
    response = client.post("/v1/actions", content=body, headers=bearer(token))
    result = assert_error_shape(response, 422, "invalid_events")
    assert result["accepted"] == 2
    (detail,) = result["error"]["details"]
    assert detail["index"] == 1 and detail["event_id"] == "act-000002"
    assert "limits.max_depth" in detail["errors"][0]["message"]
    flushed(client)
    assert query(home, "SELECT event_id FROM actions ORDER BY 1") == [("act-000001",), ("act-000003",)]


def test_a_single_event_too_deep_for_the_parser_is_a_422(client: TestClient, token: str) -> None:
    """A lone object 100,000 levels deep is one refused event, not a 400 or a 500."""
    response = client.post("/v1/outcomes", content=nested_text(100_000), headers=bearer(token))
    body = assert_error_shape(response, 422, "invalid_events")
    assert body["accepted"] == 0 and body["error"]["details"][0]["index"] == 0


def test_a_broken_body_behind_a_deep_event_is_still_a_400(client: TestClient, token: str) -> None:
    """The deep-body path still refuses a body that is not JSON with 400 invalid_json."""
    body = b"[" + nested_text(1000) + b", {oops}]"
    assert_error_shape(client.post("/v1/actions", content=body, headers=bearer(token)), 400, "invalid_json")


# -- a real server, the probe's 10 MiB batch -----------------------------------------------------------


def test_the_10_mib_batch_of_empty_objects_gets_a_small_413(home: Home, token: str, tmp_path: Path) -> None:
    """The probe's body (3.5M `{}` items, just under 10 MiB) sent to a real `agentwatch serve`: 413
    too_many_events naming the count and the bound, with an answer under 1 MB (it was a 1.13 GB 422)."""
    log = tmp_path / "server.log"
    port = free_port()
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "agentwatch.app.cli", "serve", "--home", str(home.root),
                                   "--port", str(port), "--check-every", "0"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(server, port, log)
        body = b"[" + b"{}," * (ITEMS - 1) + b"{}]"
        assert len(body) <= 10 << 20  # just under the default body limit
        response = httpx.post(f"http://127.0.0.1:{port}/v1/actions", content=body, headers=bearer(token),
                              timeout=120)
        assert response.status_code == 413, response.text[:2000]
        assert len(response.content) < 1_000_000
        error = response.json()["error"]
        assert error["code"] == "too_many_events"
        assert "3,495,000" in error["message"] and "10,000" in error["message"]
    finally:
        stop(server)


# -- the structure scan, against the parser's own reading ----------------------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_the_structure_scan_agrees_with_the_parser(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item counts, item texts and depths from the byte scan equal the parser's, with strings full of brackets,
    commas and escapes, whatever the chunk boundaries."""
    from agentwatch.core import json_structure as structure

    monkeypatch.setattr(structure, "CHUNK", chunk)
    values: list[Any] = [
        [], {}, [1], [{}, []], [[[]]], {"a": [1, {"b": "]},["}]},
        ["\\", "\\\\\"", "a\\\"b,[{", {"x\\": ["\\\\"]}], [" , ", "}", "{", [["\\\\\\\""]], 3.5, None, True],
        [{"event_id": "e1", "inputs": nested(5)}, "s", 7, [1, [2, [3]]]],
    ]
    for value in values:
        text = json.dumps(value).encode()
        assert structure.max_depth(text) == _depth(value), text
        expected = len(value) if isinstance(value, list) else 1
        assert structure.top_level_items(text) == expected, text
        items = structure.split_top_level(b"  " + text + b"\n")
        if isinstance(value, list):
            assert items is not None and [json.loads(i) for i in items] == value, text
        else:
            assert items is None
    assert structure.split_top_level(b"[1, [2]") is None and structure.split_top_level(b"[1]]") is None
