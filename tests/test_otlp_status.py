"""Spans that are not actions are counted, not dropped: `GET /v1/status`, `agentwatch status` and the Agents page
show each agent's model calls, tokens, errors and unmatched spans, equal to the store read independently."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.app.api.app import ApiSettings, create_app
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from tests.dashboard_support import open_dashboard  # noqa: F401  (autouse: no key asked)
from tests.live_support import agentwatch
from tests.test_api import bearer, flushed, query, wait_ready
from tests.test_dashboard_agents import metric, open_agents

with warnings.catch_warnings():  # starlette's TestClient warns that it prefers httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"


@pytest.fixture
def exported(home: Home) -> Iterator[TestClient]:
    """The OTLP fixtures sent to the app, flushed into the store."""
    key = KeyStore(home).create("admin", name="otlp status")[1]
    with TestClient(create_app(home, ApiSettings(flush_interval_s=0.05))) as client:
        wait_ready(client)
        for path in sorted(FIXTURES.glob("*.otlp.json")):
            answer = client.post("/v1/traces", content=path.read_bytes(),
                                 headers={**bearer(key), "Content-Type": "application/json"})
            assert answer.status_code == 200 and answer.json() == {}, answer.text
        flushed(client)
        client.headers.update(bearer(key))
        yield client


def test_status_counts_spans_per_agent_as_the_store_holds_them(exported: TestClient, home: Home) -> None:
    spans = exported.get("/v1/status").json()["spans"]
    expected = query(home, """
        SELECT agent_id, count(*), count(*) FILTER (WHERE kind = 'model'),
               coalesce(sum(input_tokens) FILTER (WHERE kind = 'model'), 0),
               count(*) FILTER (WHERE kind = 'unmatched')
        FROM spans GROUP BY agent_id ORDER BY agent_id""")
    assert [(a["agent_id"], a["spans"], a["model_calls"], a["input_tokens"], a["unmatched"])
            for a in spans["agents"]] == [tuple(row) for row in expected]
    assert spans["total"] == 2 + 2 + 4 + 3  # every non-tool span of the four exports
    by_agent = {a["agent_id"]: a for a in spans["agents"]}
    assert (by_agent["lead-router"]["input_tokens"], by_agent["lead-router"]["output_tokens"]) == (812, 64)
    assert by_agent["followup-writer"]["unmatched"] == 1  # the HTTP span under the tool call
    assert by_agent["lead-qualifier"]["other"] == 1  # the retriever


def test_the_status_command_shows_the_spans_table(exported: TestClient, home: Home) -> None:
    printed = agentwatch(home, "status")
    assert "OpenTelemetry spans besides actions, by agent" in printed
    (row,) = [line for line in printed.splitlines() if "lead-router" in line and "812" in line]
    assert "64" in row


def test_the_agents_page_shows_model_calls_tokens_and_unmatched_spans(
        exported: TestClient, home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_agents(monkeypatch, home, agent="lead-router")
    assert (metric(at, "Model calls").value, metric(at, "Tokens in / out").value) == ("1", "812 / 64")
    assert metric(at, "Unmatched spans").value == "0"
    models = next(d.value for d in at.dataframe if "tokens" not in d.value.columns and "calls" in d.value.columns)
    assert models[["model", "calls", "input_tokens"]].values.tolist() == [["gpt-4o-mini-2024-07-18", 1, 812]]
    at = open_agents(monkeypatch, home, agent="followup-writer")
    assert metric(at, "Unmatched spans").value == "1"
