"""Notifications end to end: incidents in a real home -> planning -> the SQLite outbox -> a real receiver."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.destinations import verify_signature
from agentwatch.alerts.outbox import Outbox
from agentwatch.alerts.silences import Silences
from agentwatch.app.alerting import alert_pass
from agentwatch.app.api.app import create_app
from agentwatch.app.cli import app as cli_app
from agentwatch.checks.engine import evaluate, incident_store
from agentwatch.checks.incidents import IncidentStore
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from tests.receiver import Receiver
from tests.test_api import bearer, wait_ready
from tests.test_cli import run_cli

SECRET = "s3cret-signing-key"
FAST_RETRIES = "delivery: {max_attempts: 8, first_retry: 50ms, max_retry: 200ms}"
SLOW_RETRIES = "delivery: {max_attempts: 8, first_retry: 10m, max_retry: 10m}"


def write_config(home: Home, receiver: Receiver, extra: str = "", retries: str = FAST_RETRIES) -> None:
    (home.root / "agentwatch.yaml").write_text(f"""
alerts:
  destinations:
    hook: {{type: webhook, url: "{receiver.url('/hook')}", secret: {SECRET}}}
    pd: {{type: pagerduty, routing_key: R0UTINGKEY, url: "{receiver.url('/v2/enqueue')}"}}
  routes:
    - match: {{severity: critical}}
      destinations: [pd, hook]
  default: [hook]
  group_wait: 0s
  {retries}
{extra}
""")


def incident(number: int, check: str = "quality.null_spike", severity: str = "critical",
             caused_by: tuple[str, ...] = (), **subject: str) -> Incident:
    now = datetime.now(UTC)
    return Incident(id=f"INC-{number}", check=check, severity=severity, status="open", opened_at=now - timedelta(
        minutes=5), started_at=now - timedelta(minutes=15), last_fired_at=now, subject=subject or {"field": "x"},
        summary=f"incident {number}", affected=3, caused_by=list(caused_by))


def save(home: Home, *incidents: Incident) -> IncidentStore:
    store = incident_store(home)
    store.save(list(incidents), 1)
    return store


DEADLINE_S = 120.0  # generous: the machine is shared and may be busy; a pass normally takes milliseconds


def pass_until(home: Home, done, timeout: float = DEADLINE_S) -> None:
    """Run alert passes (as the server does every second) until `done()`; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not done within {timeout} s"
        alert_pass(home)
        time.sleep(0.05)


def test_a_receiver_failing_five_times_then_succeeding_gets_exactly_one_delivery(home, receiver) -> None:
    """Five 503s, then 200: the webhook notification is retried and delivered once, with one delivery id."""
    write_config(home, receiver)
    save(home, incident(1, severity="warning"))
    receiver.fail_next(5, 503)
    pass_until(home, lambda: receiver.delivered())
    for _ in range(5):  # later passes send nothing more
        alert_pass(home)
    assert len(receiver.requests) == 6
    assert len(receiver.delivered()) == 1
    assert len({r.headers["x-agentwatch-delivery"] for r in receiver.requests}) == 1
    (row,) = Outbox(alerts_db(home)).rows()
    assert (row.state, row.attempts, row.last_error) == ("delivered", 6, None)


def test_retry_after_is_honoured(home, receiver) -> None:
    """A 429 with Retry-After: 1 holds the next attempt back for that second."""
    write_config(home, receiver)
    save(home, incident(1, severity="warning"))
    receiver.fail_next(1, 429, {"Retry-After": "1"})
    began = time.monotonic()
    alert_pass(home)
    (row,) = Outbox(alerts_db(home)).rows()
    assert row.state == "pending" and row.last_status == 429
    assert row.next_attempt_at - row.created_at >= timedelta(seconds=0.9)
    pass_until(home, lambda: receiver.delivered())
    assert time.monotonic() - began >= 0.9
    assert len(receiver.requests) == 2


def test_webhook_signature_verifies(home, receiver) -> None:
    """The webhook body is the notification JSON and its HMAC-SHA256 header verifies with the shared secret."""
    write_config(home, receiver)
    save(home, incident(1, severity="warning"))
    alert_pass(home)
    (received,) = receiver.delivered("/hook")
    assert verify_signature(SECRET, received.body, received.headers["x-agentwatch-signature"])
    assert not verify_signature("wrong-secret", received.body, received.headers["x-agentwatch-signature"])
    assert received.json()["incidents"][0]["id"] == "INC-1"


def test_repeated_check_runs_send_the_rename_cascade_once(home, receiver) -> None:
    """Real checks run five times over a recent rename: one notification per destination for the group (the
    rename with the null spike it caused), however often the checks run."""
    from tests.test_serve_checks import only_these_checks, store_recent_rename

    now = datetime.now(UTC).replace(microsecond=0)
    store_recent_rename(home, now)
    only_these_checks(home)
    config_text = (home.root / "agentwatch.yaml").read_text()
    write_config(home, receiver, extra=config_text)
    from agentwatch.app.config import config_for

    config = config_for(home)
    for minutes in range(5):
        evaluate(home, config, [now + timedelta(minutes=minutes)], incident_store(home))
        alert_pass(home)
    pages = receiver.delivered("/v2/enqueue")
    hooks = receiver.delivered("/hook")
    assert len(pages) == 1 and len(hooks) == 1
    body = hooks[0].json()
    assert [i["check"] for i in body["incidents"]] == ["schema.field_renamed", "quality.null_spike"]
    assert pages[0].json()["event_action"] == "trigger"


def test_resolve_is_sent_with_the_same_dedup_key(home, receiver) -> None:
    """When every incident of a paged group resolves, PagerDuty gets a resolve with the trigger's dedup_key."""
    write_config(home, receiver)
    store = save(home, incident(1, "schema.field_renamed", object="Lead", field="a -> b"),
                 incident(2, caused_by=("INC-1",)))
    alert_pass(home)
    store.set_status("INC-1", "resolved")
    alert_pass(home)
    assert [r.json()["event_action"] for r in receiver.delivered("/v2/enqueue")] == ["trigger"]
    store.set_status("INC-2", "resolved")
    alert_pass(home)
    pages = [r.json() for r in receiver.delivered("/v2/enqueue")]
    assert [p["event_action"] for p in pages] == ["trigger", "resolve"]
    assert pages[0]["dedup_key"] == pages[1]["dedup_key"]
    assert [r.json()["event"] for r in receiver.delivered("/hook")] == ["trigger", "resolve"]


def test_acknowledge_reaches_pagerduty(home, receiver) -> None:
    """`agentwatch incident ack` sends PagerDuty an acknowledge for the group at once."""
    write_config(home, receiver)
    save(home, incident(1))
    alert_pass(home)
    result = CliRunner().invoke(cli_app, ["incident", "ack", "INC-1", "--home", str(home.root)])
    assert result.exit_code == 0, result.output
    assert [r.json()["event_action"] for r in receiver.delivered("/v2/enqueue")] == ["trigger", "acknowledge"]


def test_silences_are_honoured_and_the_incident_goes_out_when_one_is_expired(home, receiver) -> None:
    """A silenced incident is not sent (it stays recorded); expiring the silence sends it."""
    write_config(home, receiver)
    save(home, incident(1, "volume.action_spike", severity="warning", agent_id="lead-router", action="email.send"))
    silences = Silences(alerts_db(home))
    silence = silences.add([("check", "volume.*"), ("agent_id", "lead-router")], timedelta(hours=2), "webinar",
                           "test")
    for _ in range(3):
        alert_pass(home)
    assert receiver.requests == []
    assert [i.id for i in incident_store(home).list()] == ["INC-1"]
    silences.expire(silence.id)
    alert_pass(home)
    assert [r.json()["incidents"][0]["id"] for r in receiver.delivered("/hook")] == ["INC-1"]


def test_a_final_failure_is_visible_in_the_cli_and_health_and_can_be_retried(home, receiver) -> None:
    """After its last attempt a notification is marked failed: the outbox command and /healthz show it, and
    `alerts retry --all-failed` sends it once the receiver is back."""
    write_config(home, receiver, retries="delivery: {max_attempts: 3, first_retry: 50ms, max_retry: 50ms}")
    save(home, incident(1, severity="warning"))
    receiver.fail_next(3, 500)
    box = Outbox(alerts_db(home))
    pass_until(home, lambda: box.counts()["failed"] == 1)
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["alerts", "outbox", "--state", "failed", "--json", "--home", str(home.root)])
    (row,) = json.loads(listed.stdout)
    assert row["attempts"] == 3 and "500" in row["last_error"] and row["incidents"] == ["INC-1"]
    read_key = KeyStore(home).create("read", name="health")[1]
    with TestClient(create_app(home)) as client:
        wait_ready(client)
        health = client.get("/healthz").json()  # no key: a status, its reasons as codes, counts
        detail = client.get("/v1/health", headers=bearer(read_key)).json()  # the error text needs scope read
    assert health["status"] == "degraded" and health["alerts_failed"] == 1
    assert [r["code"] for r in health["reasons"]] == ["delivery_failed"] and "last_alert_error" not in health
    assert "500" in detail["last_alert_error"]
    retried = runner.invoke(cli_app, ["alerts", "retry", "--all-failed", "--home", str(home.root)])
    assert retried.exit_code == 0
    pass_until(home, lambda: receiver.delivered())
    assert len(receiver.delivered()) == 1
    assert box.counts() == {"pending": 0, "delivered": 1, "failed": 0, "superseded": 0}


def test_no_secret_reaches_the_outbox_or_its_errors(home, receiver) -> None:
    """The outbox stores notifications without URLs or keys, and failed-attempt errors do not name them."""
    write_config(home, receiver, retries=SLOW_RETRIES)  # the errors stay recorded: no retry within the pass
    save(home, incident(1))
    receiver.fail_next(2, 503)
    alert_pass(home)
    with alerts_db(home).reading() as con:
        stored = " ".join(str(v) for row in con.execute("SELECT * FROM outbox") for v in row)
    assert "R0UTINGKEY" not in stored and SECRET not in stored and str(receiver.port) not in stored
    assert "503" in stored


def test_alerts_test_sends_one_test_message(home, receiver) -> None:
    """`agentwatch alerts test hook` delivers one test notification; an unknown name exits 2 naming the ones
    defined."""
    write_config(home, receiver)
    runner = CliRunner()
    result = runner.invoke(cli_app, ["alerts", "test", "hook", "--home", str(home.root)])
    assert result.exit_code == 0, result.output
    (received,) = receiver.delivered("/hook")
    assert received.json()["event"] == "test"
    unknown = run_cli("alerts", "test", "nope", "--home", home.root, cwd=home.root)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: no destination is named 'nope'; defined: hook, pd"


def test_no_secret_reaches_the_logs_even_at_debug_level(home, receiver, caplog) -> None:
    """With every logger at DEBUG, a failing and then succeeding delivery logs neither the webhook URL's token
    nor the routing key."""
    import logging

    token = "T0KEN-in-the-path"
    (home.root / "agentwatch.yaml").write_text(f"""
alerts:
  destinations:
    hook: {{type: webhook, url: "{receiver.url('/hook/' + token)}"}}
    pd: {{type: pagerduty, routing_key: R0UTINGKEY, url: "{receiver.url('/v2/enqueue')}"}}
  default: [hook, pd]
  group_wait: 0s
  {FAST_RETRIES}
""")
    save(home, incident(1, severity="warning"))
    receiver.fail_next(2, 503)
    caplog.set_level(logging.DEBUG)
    pass_until(home, lambda: len(receiver.delivered()) == 2)
    assert len(receiver.delivered()) == 2
    assert "503" in caplog.text  # the retries were logged
    assert token not in caplog.text and "R0UTINGKEY" not in caplog.text


def test_a_destination_that_cannot_be_sent_to_does_not_block_the_others(home, receiver) -> None:
    """An unparseable URL fails its own notification at once (visible, not retried); the next one is delivered;
    a Retry-After of `inf` is capped rather than crashing the pass."""
    (home.root / "agentwatch.yaml").write_text(f"""
alerts:
  destinations:
    broken: {{type: webhook, url: "http://[::1/x"}}
    hook: {{type: webhook, url: "{receiver.url('/hook')}"}}
  default: [broken, hook]
  group_wait: 0s
""")
    save(home, incident(1, severity="warning"))
    receiver.fail_next(1, 503, {"Retry-After": "inf"})
    alert_pass(home)
    rows = {r.destination: r for r in Outbox(alerts_db(home)).rows()}
    assert rows["broken"].state == "failed" and "not valid" in rows["broken"].last_error
    assert rows["hook"].state == "pending" and rows["hook"].last_status == 503
    assert rows["hook"].next_attempt_at - rows["hook"].created_at <= timedelta(hours=1, seconds=5)


def test_a_notification_for_a_destination_this_config_lacks_stays_queued(home, receiver) -> None:
    """A process whose config lacks a queued notification's destination leaves it pending (no attempt
    counted) with an error saying why, for a process that has it."""
    write_config(home, receiver)
    save(home, incident(1, severity="warning"))
    alert_pass(home, deliver=False)
    (home.root / "agentwatch.yaml").write_text("alerts: {destinations: {other: {type: slack, url: x}}}\n")
    alert_pass(home)
    (row,) = Outbox(alerts_db(home)).rows()
    assert (row.state, row.attempts) == ("pending", 0)
    assert "not in the config this process read" in row.last_error


def test_is_served_sees_the_serve_lock(home) -> None:
    """is_served (which makes CLI commands leave notifications to a running server) follows the serve lock."""
    from agentwatch.core.locks import acquire_serve_lock, is_served, release_serve_lock

    assert not is_served(home)
    acquire_serve_lock(home)
    try:
        assert is_served(home)
    finally:
        release_serve_lock(home)
    assert not is_served(home)
