"""Who may ask how often, and what an unauthenticated caller may see: rate limits and the two health routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch.app.api.app import ApiSettings, create_app
from agentwatch.app.api.ratelimit import TokenBuckets
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.core.limits import Limits
from tests.test_api import TestClient, action, assert_error_shape, bearer, wait_ready


@pytest.fixture
def keys(home: Home) -> dict[str, str]:
    store = KeyStore(home)
    return {scope: store.create(scope, name=f"test {scope}")[1] for scope in ("ingest", "read")}


def make_client(home: Home, **limits: Any) -> TestClient:
    return TestClient(create_app(home, ApiSettings(flush_interval_s=0.05, limits=Limits(**limits))))


@pytest.fixture
def client(home: Home) -> Iterator[TestClient]:
    with make_client(home, auth_failures_per_minute=5, requests_per_second=1) as test_client:
        wait_ready(test_client)
        yield test_client


# -- the buckets, on a clock of our own ---------------------------------------------------------------


def test_a_bucket_lets_a_burst_through_then_paces_and_says_when() -> None:
    """Capacity 2 at 1 per second: two at once, then a wait of about a second; refilled after two idle seconds."""
    now = [100.0]
    buckets = TokenBuckets(rate_per_s=1.0, capacity=2, max_entries=10, clock=lambda: now[0])
    assert buckets.take("k") == 0 and buckets.take("k") == 0
    assert buckets.take("k") == pytest.approx(1.0)
    now[0] += 0.5
    assert buckets.take("k") == pytest.approx(0.5)
    now[0] += 2.0
    assert buckets.take("k") == 0 and buckets.take("k") == 0 and buckets.take("k") > 0


def test_buckets_are_bounded_in_number() -> None:
    """A flood of distinct clients keeps at most max_entries buckets: the least recently used go first."""
    buckets = TokenBuckets(rate_per_s=1.0, capacity=1, max_entries=100, clock=lambda: 0.0)
    for n in range(10_000):
        buckets.take(f"10.0.{n // 256}.{n % 256}")
    assert len(buckets) == 100
    assert buckets.take("10.0.39.15") > 0  # the last one seen is still tracked (and empty)


# -- through the API ---------------------------------------------------------------------------------------


def test_too_many_failed_authentications_from_one_address_get_429(client: TestClient, keys: dict) -> None:
    """Past 5 failed authentications a minute, the address gets 429 with Retry-After, even with a good key."""
    wrong = "aw_ffffffff_" + "x" * 43
    for _ in range(5):
        assert_error_shape(client.post("/v1/actions", json=action(1), headers=bearer(wrong)), 401)
    response = client.post("/v1/actions", json=action(1), headers=bearer(wrong))
    body = assert_error_shape(response, 429, "too_many_failed_authentications")
    assert int(response.headers["retry-after"]) >= 1
    assert "limits.auth_failures_per_minute" in body["error"]["message"]
    assert client.get("/v1/status", headers=bearer(keys["read"])).status_code == 429
    assert client.post("/v1/actions", headers={}).status_code == 429  # a missing key is a failure too


def test_one_key_past_its_rate_gets_429(client: TestClient, keys: dict) -> None:
    """requests_per_second=1 allows a burst of 2: of 20 quick requests, some get 429 with Retry-After, naming
    the setting; another key is not affected."""
    answers = [client.post("/v1/actions", json=action(n), headers=bearer(keys["ingest"])) for n in range(20)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited and all(r.status_code in (200, 429) for r in answers)
    body = assert_error_shape(limited[0], 429, "rate_limited")
    assert int(limited[0].headers["retry-after"]) >= 1 and "limits.requests_per_second" in body["error"]["message"]
    assert client.get("/v1/status", headers=bearer(keys["read"])).status_code == 200


def test_the_default_rate_lets_a_busy_agent_through(home: Home, keys: dict) -> None:
    """With the default limits, 300 requests back to back from one key (a bench's pace and more) all get 200."""
    with make_client(home) as test_client:
        wait_ready(test_client)
        statuses = {test_client.get("/v1/agents/lead-router/guard", headers=bearer(keys["ingest"])).status_code
                    for _ in range(300)}
    assert statuses == {200}


# -- health -----------------------------------------------------------------------------------------------


def test_healthz_shows_no_paths_or_error_texts(client: TestClient, keys: dict, home: Home) -> None:
    """The unauthenticated /healthz gives a status, reasons as codes, and counts; /v1/health (read) has the rest."""
    public = client.get("/healthz")
    assert public.status_code == 200
    body = public.json()
    assert set(body) == {"status", "reasons", "wal_pending", "alerts_pending", "alerts_failed", "checks",
                         "quarantined_parts"}
    assert body["status"] == "ok" and body["reasons"] == []
    assert str(home.root) not in public.text
    assert_error_shape(client.get("/v1/health"), 401)
    assert_error_shape(client.get("/v1/health", headers=bearer(keys["ingest"])), 403)
    full = client.get("/v1/health", headers=bearer(keys["read"])).json()
    assert full["home"] == str(home.root)
    assert {"last_flush_error", "last_alert_error", "reasons", "status", "wal_pending"} <= set(full)
