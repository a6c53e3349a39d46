"""Slack, PagerDuty and webhook rendering and single sends against real loopback HTTP servers; secrets never leak."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
import pytest

import agentwatch.alerts.destinations as destinations
from agentwatch.alerts.config import PagerDutyDestination, SlackDestination, WebhookDestination
from agentwatch.alerts.destinations import (
    SendOutcome,
    render,
    retry_after_seconds,
    send,
    send_test,
    sign,
    verify_signature,
)
from agentwatch.schemas.incidents import Incident
from agentwatch.schemas.notifications import Notification
from tests.receiver import Receiver

AT = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
DASHBOARD = "http://127.0.0.1:8501/?incident=INC-1"
TOKEN = "XoXbT0kenInThePath0123456789abcdef"
QUERY_TOKEN = "qs-Secret 4f8a|9c2e71d0"  # httpx percent-encodes the space and the bar
ROUTING_KEY = "R0ut1ngKeyR0ut1ngKeyR0ut1ngKey32"
SIGNING_SECRET = "whsec-Sign1ngSecret-9a8b7c"
SECRETS = (TOKEN, QUERY_TOKEN, ROUTING_KEY, SIGNING_SECRET)
TIMEOUT = timedelta(seconds=30)  # the most allowed: a loopback answer on a busy machine can take seconds


def incident(id: str, check: str, severity: str, summary: str, status: str = "open", **fields: Any) -> Incident:
    return Incident(id=id, check=check, severity=severity, status=status, opened_at=AT, started_at=AT - timedelta(
        minutes=40), last_fired_at=AT, summary=summary, **({"subject": {}, "affected": 1} | fields))


ROOT = incident("INC-1", "schema.field_renamed", "critical", "Lead.deal_stage was renamed to opportunity_stage",
                subject={"object": "Lead", "field": "deal_stage -> opportunity_stage"}, affected=1,
                evidence={"object": "Lead", "old_field": "deal_stage", "new_field": "opportunity_stage",
                          "agents": ["lead-router"], "share": 0.4375}, effects=["INC-2", "INC-3"])
EFFECTS = [incident("INC-2", "quality.null_spike", "warning", "deal_stage reads null on 92% of lead-router's updates",
                    subject={"field": "deal_stage"}, affected=412, caused_by=["INC-1"]),
           incident("INC-3", "workflow.transition_drop", "warning", "Leads stopped reaching negotiation " + "x" * 400,
                    subject={"agent_id": "lead-router"}, affected=57, caused_by=["INC-1"])]


def note(event: str = "trigger", severity: str = "critical", status: str = "open",
         incidents: list[Incident] | None = None, **fields: Any) -> Notification:
    """A notification about the rename and the two incidents it explains."""
    return Notification(**({
        "id": f"n-{event}-1", "event": event, "destination": "dest", "group_key": "INC-1",
        "dedup_key": "agentwatch-INC-1",
        "status": status, "severity": severity, "title": "schema.field_renamed Lead deal_stage -> opportunity_stage "
        "(+2 related)", "incidents": incidents or [ROOT, *EFFECTS], "dashboard_url": DASHBOARD, "created_at": AT,
    } | fields))


def slack(url: str) -> SlackDestination:
    return SlackDestination(type="slack", url=url, timeout=TIMEOUT)


def pagerduty(url: str) -> PagerDutyDestination:
    return PagerDutyDestination(type="pagerduty", routing_key=ROUTING_KEY, url=url, timeout=TIMEOUT)


def webhook(url: str, secret: str | None = SIGNING_SECRET) -> WebhookDestination:
    return WebhookDestination(type="webhook", url=url, secret=secret, timeout=TIMEOUT)


def token_path(base: str) -> str:
    """A URL on `base` whose path and query carry tokens, like a Slack webhook or a webhook with ?token=."""
    return f"{base}/services/T0001/B0002/{TOKEN}?token={QUERY_TOKEN}"


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[Receiver]:
    """One real receiver (tests/receiver.py) for the whole module: stopping one takes half a second."""
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def receiver(shared_receiver: Receiver) -> Receiver:
    """The module's receiver with no requests recorded yet (every test uses up the failures it scripts)."""
    shared_receiver.requests.clear()
    return shared_receiver


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A real httpx client."""
    with httpx.Client() as made:
        yield made


@pytest.fixture
def echo() -> Iterator[str]:
    """A loopback server that answers 400 quoting the request back (path and query as sent, body, decoded query
    values, last path segment), as careless receivers do; /slow answers after 0.5 s, /garbled answers 200 with a
    body that is not the gzip it claims to be; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/slow"):
                time.sleep(0.5)
            path, _, query = self.path.partition("?")
            tokens = "; ".join(f"unknown {k} {v[0]}" for k, v in parse_qs(query).items())
            hook = path.rsplit("/", 1)[-1]
            answer = f"no hook {hook}; {tokens}; bad request to {self.path}: {body.decode()}".encode()
            try:
                if self.path.startswith("/garbled"):
                    self.send_response(200)
                    self.send_header("Content-Encoding", "gzip")
                else:
                    self.send_response(400)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:
                pass  # the client gave up (the timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    """A loopback URL on a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_no_secret(outcome: SendOutcome, *extra: str) -> None:
    """Neither a secret, nor an encoded form of it, nor any 8+ character run of letters and digits from it."""
    text = repr(outcome)
    for secret in (*SECRETS, *extra):
        pieces = [piece for piece in re.split(r"[^A-Za-z0-9]+", secret) if len(piece) >= 8]
        for form in {secret, quote(secret), quote(secret, safe=""), *pieces}:
            assert form not in text, f"{form!r} leaked into {text}"


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    texts = [b["text"]["text"] for b in blocks if "text" in b]
    texts += [f["text"] for b in blocks for f in b.get("fields", [])]
    texts += [e["text"] for b in blocks for e in b.get("elements", [])]
    return texts


def test_slack_message_carries_the_summary_fields_related_incidents_and_link(receiver, client) -> None:
    """A Slack trigger is delivered as text plus blocks: severity header, root summary, fields, each effect, link."""
    notification = note()
    outcome = send(client, "team", slack(receiver.url("/slack")), notification)
    assert outcome.delivered and outcome.status == 200 and outcome.error is None
    [request] = receiver.requests
    message = request.json()
    assert message["text"].startswith("[CRITICAL] opened: schema.field_renamed Lead deal_stage -")
    header = message["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "[CRITICAL] opened: schema.field_renamed Lead deal_stage -> opportunity_stage " \
                                     "(+2 related)"
    text = "\n".join(section_texts(message["blocks"]))
    assert "Lead.deal_stage was renamed to opportunity_stage" in text
    assert "*Affected*\n1" in text and "*Agents*\nlead-router" in text and "*Share*\n0.438" in text
    assert "2026-10-05 08:20 UTC" in text
    assert "`INC-2` quality.null_spike (warning): deal_stage reads null on 92% of lead-router's updates" in text
    inc3 = next(line for line in text.splitlines() if "`INC-3`" in line)
    assert "workflow.transition_drop" in inc3 and len(inc3) < 300 and inc3.endswith("…")
    assert f"<{DASHBOARD}|Open INC-1 in the agentwatch dashboard>" in text
    assert request.headers["user-agent"].startswith("agentwatch/")
    assert request.headers["x-agentwatch-delivery"] == notification.id


@pytest.mark.parametrize(("event", "start"), [
    ("update", "[CRITICAL] updated:"), ("repeat", "[CRITICAL] still open:"),
    ("acknowledge", "[CRITICAL] acknowledged:"), ("resolve", "[RESOLVED]"), ("test", "[TEST]")])
def test_slack_headline_names_the_event(event: str, start: str) -> None:
    """Each event has its word in the Slack header and fallback text; a resolve says RESOLVED."""
    request = render(note(event, status="resolved" if event == "resolve" else "open"), "team", slack("http://x.test"))
    message = json.loads(request.body)
    assert message["text"].startswith(start) and message["blocks"][0]["text"]["text"].startswith(start)
    if event == "resolve":
        assert message["blocks"][1]["text"]["text"].startswith("*RESOLVED*: Lead.deal_stage")


def test_slack_stays_within_its_limits_for_a_huge_group() -> None:
    """A thousand long related incidents still give <= 50 blocks, sections <= 3000 chars and a 'more' line."""
    many = [incident(f"INC-{n}", "quality.null_spike", "warning", "y" * 900) for n in range(2, 1002)]
    long_root = ROOT.model_copy(update={"summary": "z" * 5000})
    message = json.loads(render(note(incidents=[long_root, *many], title="t" * 400), "team",
                                slack("http://x.test")).body)
    blocks = message["blocks"]
    assert len(blocks) <= 50
    assert len(blocks[0]["text"]["text"]) <= 150
    assert all(len(text) <= 3000 for text in section_texts(blocks))
    assert all(len(b.get("fields", [])) <= 10 for b in blocks)
    shown = sum(text.count("`INC-") for text in section_texts(blocks))
    assert blocks[-3]["text"]["text"] == f"…and {1000 - shown} more in the dashboard" and shown > 300
    assert DASHBOARD in json.dumps(blocks)


def test_pagerduty_trigger_has_the_events_v2_shape(receiver, client) -> None:
    """A PagerDuty trigger carries routing_key, dedup_key, the payload fields, custom details, links and client."""
    outcome = send(client, "oncall", pagerduty(receiver.url("/v2/enqueue")), note())
    assert outcome.delivered and outcome.status == 202
    [request] = receiver.requests
    body = request.json()
    assert (body["routing_key"], body["event_action"], body["dedup_key"]) == (ROUTING_KEY, "trigger",
                                                                              "agentwatch-INC-1")
    payload = body["payload"]
    assert payload["summary"].startswith("[CRITICAL] opened: schema.field_renamed")
    assert "Lead.deal_stage was renamed" in payload["summary"]
    assert (payload["source"], payload["severity"], payload["class"]) == ("agentwatch", "critical",
                                                                          "schema.field_renamed")
    assert (payload["component"], payload["group"]) == ("lead-router", "Lead")
    assert datetime.fromisoformat(payload["timestamp"]) == AT
    details = payload["custom_details"]
    assert [i["id"] for i in details["incidents"]] == ["INC-1", "INC-2", "INC-3"]
    assert details["counts"] == {"incidents": 3, "critical": 1, "warning": 2, "open": 3}
    assert body["links"] == [{"href": DASHBOARD, "text": "INC-1 in the agentwatch dashboard"}]
    assert (body["client"], body["client_url"]) == ("agentwatch", DASHBOARD)
    assert request.headers["user-agent"].startswith("agentwatch/")


def test_pagerduty_actions_follow_the_event_with_one_dedup_key(receiver, client) -> None:
    """trigger/update/repeat trigger, acknowledge and resolve map to theirs, all with the same dedup_key."""
    destination = pagerduty(receiver.url("/v2/enqueue"))
    events = ["trigger", "update", "repeat", "acknowledge", "resolve"]
    for event in events:
        assert send(client, "oncall", destination, note(event)).delivered
    bodies = [r.json() for r in receiver.requests]
    assert [b["event_action"] for b in bodies] == ["trigger", "trigger", "trigger", "acknowledge", "resolve"]
    assert {b["dedup_key"] for b in bodies} == {"agentwatch-INC-1"}
    for body in bodies[3:]:
        assert body == {"routing_key": ROUTING_KEY, "event_action": body["event_action"],
                        "dedup_key": "agentwatch-INC-1"}


@pytest.mark.parametrize("severity", ["critical", "warning", "info"])
def test_pagerduty_severity_is_mapped(severity: str) -> None:
    """agentwatch's severity becomes the same PagerDuty severity."""
    body = json.loads(render(note(severity=severity), "oncall", pagerduty("http://x.test/v2/enqueue")).body)
    assert body["payload"]["severity"] == severity


def test_pagerduty_summary_is_cut_to_1024_characters() -> None:
    """A root summary longer than PagerDuty allows is cut to 1024 characters."""
    long_root = ROOT.model_copy(update={"summary": "w" * 3000})
    body = json.loads(render(note(incidents=[long_root]), "oncall", pagerduty("http://x.test/v2/enqueue")).body)
    assert len(body["payload"]["summary"]) == 1024 and body["payload"]["summary"].endswith("…")


def test_webhook_body_is_the_notification_and_the_signature_verifies(receiver, client) -> None:
    """The webhook body is the notification JSON as sent, and its signature verifies only for that body and secret."""
    notification = note("update")
    assert send(client, "hook", webhook(receiver.url("/hook")), notification).delivered
    [request] = receiver.requests
    assert request.body == notification.model_dump_json().encode()
    assert Notification.model_validate_json(request.body) == notification
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-agentwatch-delivery"] == notification.id
    assert request.headers["x-agentwatch-event"] == "update"
    signature = request.headers["x-agentwatch-signature"]
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature(SIGNING_SECRET, request.body, signature)
    assert not verify_signature(SIGNING_SECRET, request.body.replace(b"INC-2", b"INC-9"), signature)
    assert not verify_signature("another-secret", request.body, signature)
    assert signature == sign(SIGNING_SECRET, request.body)


def test_webhook_without_a_secret_is_not_signed(receiver, client) -> None:
    """A webhook with no signing secret sends no signature header."""
    assert send(client, "hook", webhook(receiver.url("/hook"), secret=None), note()).delivered
    assert "x-agentwatch-signature" not in receiver.requests[0].headers


def test_503_is_retryable_and_retry_after_seconds_is_read(receiver, client) -> None:
    """A 503 with Retry-After: 7 is a retryable failure asking for 7 seconds."""
    receiver.fail_next(1, 503, {"Retry-After": "7"})
    outcome = send(client, "team", slack(receiver.url("/slack")), note())
    assert (outcome.delivered, outcome.retryable, outcome.status, outcome.retry_after_s) == (False, True, 503, 7.0)
    assert "HTTP 503 from slack destination 'team'" in outcome.error


def test_429_is_retryable_and_an_http_date_retry_after_is_read(receiver, client) -> None:
    """A 429 whose Retry-After is an HTTP date two minutes ahead asks for about 120 seconds."""
    receiver.fail_next(1, 429, {"Retry-After": format_datetime(datetime.now(UTC) + timedelta(minutes=2),
                                                               usegmt=True)})
    outcome = send(client, "oncall", pagerduty(receiver.url("/v2/enqueue")), note())
    assert (outcome.delivered, outcome.retryable, outcome.status) == (False, True, 429)
    assert 110 <= outcome.retry_after_s <= 120
    assert "rate limited" in outcome.error and "pagerduty destination 'oncall'" in outcome.error


def test_retry_after_edge_values() -> None:
    """Retry-After: absent or garbage gives None, a past date gives 0, fractional seconds are kept."""
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds("Mon, 05 Oct 2026 09:01:00 GMT", now=AT) == 60.0


def test_400_is_not_retryable_and_says_what_to_check(receiver, client) -> None:
    """A 400 is a config problem: not retryable, naming the destination, its type and what to check."""
    receiver.fail_next(1, 400)
    outcome = send(client, "oncall", pagerduty(receiver.url("/v2/enqueue")), note())
    assert (outcome.delivered, outcome.retryable, outcome.status, outcome.retry_after_s) == (False, False, 400, None)
    assert outcome.error.startswith("HTTP 400 from pagerduty destination 'oncall': ")
    assert "check the routing key" in outcome.error


def test_a_closed_port_is_retryable_and_names_the_destination(client) -> None:
    """A refused connection is a retryable failure whose error names the destination and what to check."""
    outcome = send(client, "team", slack(token_path(closed_port_url())), note())
    assert (outcome.delivered, outcome.retryable, outcome.status) == (False, True, None)
    assert outcome.error.startswith("could not reach slack destination 'team': ConnectError")
    assert outcome.elapsed_s < 2
    assert_no_secret(outcome)


def test_a_slow_receiver_times_out_as_retryable(echo, client) -> None:
    """A receiver slower than the destination's timeout gives a retryable failure saying how long it waited."""
    destination = webhook(token_path(echo + "/slow")).model_copy(update={"timeout": timedelta(seconds=0.2)})
    outcome = send(client, "hook", destination, note())
    assert (outcome.delivered, outcome.retryable) == (False, True)
    assert "webhook destination 'hook' did not answer within 0.2s" in outcome.error
    assert_no_secret(outcome)


def test_an_unreadable_answer_is_retryable_without_secrets(echo, client) -> None:
    """An answer httpx cannot decode is a retryable failure (delivery is at least once), with no secret in it."""
    outcome = send(client, "hook", webhook(token_path(echo + "/garbled")), note())
    assert (outcome.delivered, outcome.retryable, outcome.status) == (False, True, None)
    assert outcome.error.startswith("webhook destination 'hook': the request failed: DecodingError")
    assert_no_secret(outcome)


@pytest.mark.parametrize("make", [
    lambda base: slack(token_path(base)),
    lambda base: pagerduty(token_path(base)),
    lambda base: webhook(token_path(base)),
])
def test_no_secret_appears_when_the_receiver_echoes_the_request(echo, client, make: Callable[[str], Any]) -> None:
    """A 400 whose body quotes the URL, query and body back yields an error with every secret replaced by ***."""
    destination = make(echo)
    outcome = send(client, "dest", destination, note())
    assert (outcome.delivered, outcome.retryable, outcome.status) == (False, False, 400)
    assert "***" in outcome.error and "bad request to" in outcome.error
    assert_no_secret(outcome, token_path(echo))


@pytest.mark.parametrize("kind", ["slack", "pagerduty", "webhook"])
def test_no_secret_from_environment_variables_leaks(echo, client, monkeypatch, kind: str) -> None:
    """Secrets read from environment variables are scrubbed from 400, refused-connection and bad-URL errors."""
    monkeypatch.setenv("AW_TEST_URL", token_path(echo))
    monkeypatch.setenv("AW_TEST_KEY", ROUTING_KEY)
    monkeypatch.setenv("AW_TEST_SECRET", SIGNING_SECRET)
    env_config = {"slack": {"url_env": "AW_TEST_URL"},
                  "pagerduty": {"routing_key_env": "AW_TEST_KEY", "url": token_path(echo)},
                  "webhook": {"url_env": "AW_TEST_URL", "secret_env": "AW_TEST_SECRET"}}[kind]
    model = {"slack": SlackDestination, "pagerduty": PagerDutyDestination, "webhook": WebhookDestination}[kind]
    destination = model.model_validate({"type": kind, "timeout": "2s", **env_config})
    outcomes = [send(client, "dest", destination, note())]
    closed = token_path(closed_port_url())
    monkeypatch.setenv("AW_TEST_URL", closed)
    outcomes.append(send(client, "dest", destination.model_copy(update={"url": closed}) if kind == "pagerduty"
                         else destination, note()))
    if kind != "pagerduty":
        monkeypatch.setenv("AW_TEST_URL", f"ftp://user:{QUERY_TOKEN}@127.0.0.1/{TOKEN}")
        outcomes.append(send(client, "dest", destination, note()))
        assert not outcomes[-1].retryable and "the URL is not valid" in outcomes[-1].error
    assert [o.retryable for o in outcomes[:2]] == [False, True]
    for outcome in outcomes:
        assert not outcome.delivered and outcome.error
        assert_no_secret(outcome, token_path(echo), closed)


def test_percent_encoded_url_parts_are_scrubbed_decoded_too() -> None:
    """A token written percent-encoded in the URL is also scrubbed in its decoded form, and a short path is kept."""
    secrets = destinations.url_secrets("https://hooks.example/in/abc?key=s%3Dcr%20et99")
    assert destinations.scrub("key s=cr et99 and s%3Dcr%20et99 at /in/abc", secrets) == "key *** and *** at /in/abc"


def test_a_missing_environment_variable_is_not_retryable_and_named(receiver, client, monkeypatch) -> None:
    """An unset secret variable gives a non-retryable outcome naming it, and nothing is sent."""
    monkeypatch.delenv("AW_MISSING_SECRET", raising=False)
    destination = WebhookDestination(type="webhook", url=receiver.url("/hook"), secret_env="AW_MISSING_SECRET")
    outcome = send(client, "hook", destination, note())
    assert (outcome.delivered, outcome.retryable, outcome.status) == (False, False, None)
    assert "AW_MISSING_SECRET" in outcome.error and "'hook'" in outcome.error
    assert receiver.requests == []


def test_test_notifications_are_labelled_and_unique() -> None:
    """A test notification has event test, one info incident TEST saying it is a test, and a fresh id each call."""
    first = destinations.test_notification("team", "slack", DASHBOARD, AT)
    second = destinations.test_notification("team", "slack", DASHBOARD, AT)
    assert first.event == "test" and first.severity == "info" and first.dashboard_url == DASHBOARD
    assert [(i.id, i.severity) for i in first.incidents] == [("TEST", "info")]
    assert "agentwatch alerts test" in first.root.summary
    assert first.id != second.id and first.dedup_key != second.dedup_key


def test_a_pagerduty_test_triggers_then_resolves(receiver, client) -> None:
    """A PagerDuty test sends a trigger then a resolve with the same dedup_key, so no incident stays open."""
    outcomes = send_test(client, "oncall", pagerduty(receiver.url("/v2/enqueue")), DASHBOARD, AT)
    assert [o.delivered for o in outcomes] == [True, True]
    trigger, resolve = (r.json() for r in receiver.requests)
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] and trigger["dedup_key"].startswith("agentwatch-test-")
    assert trigger["payload"]["severity"] == "info" and trigger["payload"]["summary"].startswith("[TEST]")


def test_a_slack_test_sends_one_message(receiver, client) -> None:
    """A Slack test sends one message labelled TEST."""
    outcomes = send_test(client, "team", slack(receiver.url("/slack")), DASHBOARD, AT)
    assert [o.delivered for o in outcomes] == [True]
    [request] = receiver.requests
    assert request.json()["text"].startswith("[TEST]")
    assert "agentwatch alerts test team" in json.dumps(request.json())


def test_a_failed_pagerduty_test_trigger_sends_no_resolve(receiver, client) -> None:
    """When the test trigger is refused, no resolve follows and the one outcome says why."""
    receiver.fail_next(1, 400)
    outcomes = send_test(client, "oncall", pagerduty(receiver.url("/v2/enqueue")), DASHBOARD, AT)
    assert [(o.delivered, o.status) for o in outcomes] == [(False, 400)]
    assert len(receiver.requests) == 1
