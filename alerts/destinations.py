"""Render a notification for Slack, PagerDuty Events API v2 or a signed webhook, and send it once.

`render` builds the request (url, headers, body) and `send` makes one attempt and says whether it was
delivered and, if not, whether trying again can help. Retries, backoff and bookkeeping belong to the outbox.
No message this module produces contains a webhook URL, a routing key or a signing secret: every secret a
request uses is replaced by ``***`` in errors, exception texts and echoed response bodies.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from pydantic import SecretStr

from agentwatch.alerts.config import PagerDutyDestination, SlackDestination, WebhookDestination
from agentwatch.core.errors import ConfigError
from agentwatch.schemas.incidents import Incident, agents_named
from agentwatch.schemas.notifications import Notification

AnyDestination = SlackDestination | PagerDutyDestination | WebhookDestination

EVENT_WORDS = {"trigger": "opened", "update": "updated", "repeat": "still open", "acknowledge": "acknowledged",
               "resolve": "resolved", "test": "test"}
PAGERDUTY_ACTIONS = {"trigger": "trigger", "update": "trigger", "repeat": "trigger", "test": "trigger",
                     "acknowledge": "acknowledge", "resolve": "resolve"}
PAGERDUTY_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}
SIGNATURE_HEADER = "X-Agentwatch-Signature"
SLACK_SECTION_CHARS = 3000
SLACK_MAX_BLOCKS = 50
SUMMARY_CHARS = 200
BODY_CHARS = 300
FIX_HINTS = {
    "slack": "check the webhook URL (url / url_env); Slack answers 403 or 404 for a revoked or mistyped webhook",
    "pagerduty": "check the routing key (routing_key / routing_key_env) is an Events API v2 integration key",
    "webhook": "check the endpoint URL (url / url_env), the signing secret and what the receiver expects",
}


@dataclass(frozen=True)
class OutgoingRequest:
    """One HTTP POST ready to send, with the secret strings it contains (for scrubbing messages)."""

    url: str
    headers: dict[str, str]
    body: bytes
    secrets: tuple[str, ...]

    def scrub(self, text: str) -> str:
        """`text` with every secret of this request replaced by ``***``."""
        return scrub(text, self.secrets)


@dataclass(frozen=True)
class SendOutcome:
    """What one attempt gave: delivered, or why not and whether trying again can help."""

    delivered: bool
    retryable: bool
    status: int | None
    retry_after_s: float | None
    error: str | None
    elapsed_s: float


@cache
def user_agent() -> str:
    """``agentwatch/<installed version>`` (``dev`` when running from a source tree that is not installed)."""
    try:
        return f"agentwatch/{version('agentwatch')}"
    except PackageNotFoundError:
        return "agentwatch/dev"


def sign(secret: str, body: bytes) -> str:
    """The X-Agentwatch-Signature value: ``sha256=`` and the hex HMAC-SHA256 of the body with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """True when `header` is the signature of exactly this body with this secret (constant-time compare)."""
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with each secret (and its URL-encoded and JSON-escaped forms) replaced by ``***``."""
    forms = {form for s in secrets if s for form in (s, quote(s), quote(s, safe=""), s.replace("/", "\\/"))}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def url_secrets(url: str) -> tuple[str, ...]:
    """The parts of a URL that may carry a token, as written and as httpx sends it (percent-encoded): the whole
    URL, path with query, query, query values, password, path and its long segments."""
    written = [url]
    with contextlib.suppress(httpx.InvalidURL, TypeError, ValueError):
        written.append(str(httpx.URL(url)))
    found = list(written)
    for parts in map(urlsplit, written):
        found += [f"{parts.path}?{parts.query}", parts.query, parts.password or ""]
        found += [value for pair in parts.query.split("&") for value in pair.split("=")[1:] if len(value) >= 8]
        found += [parts.path] if len(parts.path) >= 8 else []
        found += [segment for segment in parts.path.split("/") if len(segment) >= 16]
    found += [unquote(s) for s in found]
    return tuple(s for s in dict.fromkeys(found) if s and s != "?")


def render(notification: Notification, name: str, destination: AnyDestination) -> OutgoingRequest:
    """The request that delivers `notification` to the destination called `name`.

    Raises ConfigError (naming the environment variable) when a secret's variable is not set."""
    if isinstance(destination, SlackDestination):
        return _slack(notification, destination.endpoint(name))
    if isinstance(destination, PagerDutyDestination):
        return _pagerduty(notification, destination.endpoint(name), destination.key(name))
    return _webhook(notification, destination.endpoint(name), destination.signing_secret(name))


def send(client: httpx.Client, name: str, destination: AnyDestination, notification: Notification) -> SendOutcome:
    """Make one attempt to deliver `notification`; never raises for a failure, it says what happened."""
    started = time.monotonic()
    label = f"{destination.type} destination {name!r}"
    try:
        request = render(notification, name, destination)
    except ConfigError as error:
        return SendOutcome(False, False, None, None, str(error), time.monotonic() - started)
    except (ValueError, UnicodeError) as error:  # a URL that cannot be parsed, a header that is not ASCII
        message = (f"{label}: the URL is not valid or the request cannot be built ({type(error).__name__}: "
                   f"{error}); {FIX_HINTS[destination.type]}")
        return SendOutcome(False, False, None, None, scrub(message, _inline_secrets(destination)),
                           time.monotonic() - started)
    try:
        response = client.post(request.url, content=request.body, headers=request.headers,
                               timeout=destination.timeout.total_seconds())
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
        return SendOutcome(False, False, None, None, request.scrub(
            f"{label}: the URL is not valid ({error}); {FIX_HINTS[destination.type]}"), time.monotonic() - started)
    except httpx.TimeoutException as error:
        message = (f"{label} did not answer within {destination.timeout.total_seconds():g}s "
                   f"({type(error).__name__}); it may be slow or unreachable, the send can be retried")
        return SendOutcome(False, True, None, None, request.scrub(message), time.monotonic() - started)
    except httpx.TransportError as error:
        message = (f"could not reach {label}: {type(error).__name__}: {str(error) or 'no detail'}; check the host "
                   f"is up and reachable from agentwatch, the send can be retried")
        return SendOutcome(False, True, None, None, request.scrub(message), time.monotonic() - started)
    except httpx.RequestError as error:  # e.g. an unreadable (badly compressed) answer
        message = f"{label}: the request failed: {type(error).__name__}: {error}; the send can be retried"
        return SendOutcome(False, True, None, None, request.scrub(message), time.monotonic() - started)
    except (ValueError, UnicodeError) as error:  # a URL httpx cannot even parse (`http://[::1/`, `a..b`)
        return SendOutcome(False, False, None, None, request.scrub(
            f"{label}: the URL is not valid ({type(error).__name__}: {error}); {FIX_HINTS[destination.type]}"),
            time.monotonic() - started)
    return _outcome(response, label, destination.type, request, time.monotonic() - started)


def _inline_secrets(destination: AnyDestination) -> tuple[str, ...]:
    """The secrets written in the config itself, and the parts of those that are URLs (when they parse)."""
    values = [getattr(destination, key).get_secret_value() for key in ("url", "routing_key", "secret")
              if isinstance(getattr(destination, key, None), SecretStr)]
    found = list(values)
    for value in values:
        with contextlib.suppress(ValueError):
            found += url_secrets(value)
    return tuple(v for v in found if v)


def send_test(client: httpx.Client, name: str, destination: AnyDestination, dashboard_url: str,
              now: datetime) -> list[SendOutcome]:
    """Send a test notification; to PagerDuty a trigger and, once delivered, a resolve with the same dedup_key
    so the test leaves no open PagerDuty incident."""
    notification = test_notification(name, destination.type, dashboard_url, now)
    outcomes = [send(client, name, destination, notification)]
    if isinstance(destination, PagerDutyDestination) and outcomes[0].delivered:
        resolved = notification.model_copy(update={"event": "resolve", "status": "resolved",
                                                   "id": f"{notification.id}-resolve"})
        outcomes.append(send(client, name, destination, resolved))
    return outcomes


def test_notification(name: str, destination_type: str, dashboard_url: str, now: datetime) -> Notification:
    """A clearly labelled test notification (event ``test``, one info incident ``TEST``), a new id each call."""
    unique = uuid.uuid4().hex
    incident = Incident(
        id="TEST", check="agentwatch.test", severity="info", status="open", opened_at=now, started_at=now,
        last_fired_at=now, subject={"destination": name}, affected=0,
        summary=f"This is a test from `agentwatch alerts test {name}`: the {destination_type} destination "
                f"{name!r} receives agentwatch notifications. Nothing is wrong and nothing needs doing.")
    return Notification(
        id=f"test-{unique}", event="test", destination=name, group_key="TEST", dedup_key=f"agentwatch-test-{unique}",
        status="open", severity="info", title=f"agentwatch test notification to {name}", incidents=[incident],
        dashboard_url=dashboard_url, created_at=now)


test_notification.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into one


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay seconds or an HTTP-date); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _outcome(response: httpx.Response, label: str, kind: str, request: OutgoingRequest,
             elapsed: float) -> SendOutcome:
    status = response.status_code
    if 200 <= status < 300:
        return SendOutcome(True, False, status, None, None, elapsed)
    body = " ".join(request.scrub(response.text).split())[:BODY_CHARS] or "(empty body)"
    wait = retry_after_seconds(response.headers.get("Retry-After"))
    if status == 429:
        after = f"; it asks to wait {wait:g}s" if wait is not None else ""
        message = f"HTTP 429 from {label}: rate limited{after}; the send can be retried: {body}"
        return SendOutcome(False, True, status, wait, request.scrub(message), elapsed)
    if status >= 500:
        message = f"HTTP {status} from {label}: the receiver failed on its side; the send can be retried: {body}"
        return SendOutcome(False, True, status, wait, request.scrub(message), elapsed)
    message = f"HTTP {status} from {label}: {body}; {FIX_HINTS[kind]}"
    return SendOutcome(False, False, status, None, request.scrub(message), elapsed)


def _headers(notification: Notification, delivery: bool = True) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": user_agent()}
    if delivery:
        headers["X-Agentwatch-Delivery"] = notification.id
    return headers


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _title(notification: Notification) -> str:
    """The title without a leading severity word (the header adds its own)."""
    title, severity = notification.title.strip(), notification.severity
    for prefix in (f"[{severity}]", f"{severity}:", f"{severity} "):
        if title.lower().startswith(prefix):
            return title[len(prefix):].strip()
    return title


def headline(notification: Notification) -> str:
    """One line: ``[CRITICAL] opened: <title>``; ``[RESOLVED] <title>`` and ``[TEST] <title>``."""
    if notification.event == "resolve":
        return f"[RESOLVED] {_title(notification)}"
    if notification.event == "test":
        return f"[TEST] {_title(notification)}"
    return f"[{notification.severity.upper()}] {EVENT_WORDS[notification.event]}: {_title(notification)}"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _slack_fields(root: Incident, notification: Notification) -> list[dict[str, str]]:
    subject = ", ".join(f"{k}: {v}" for k, v in root.subject.items()) or "-"
    pairs = [("Severity", notification.severity), ("Status", notification.status), ("Subject", subject),
             ("Started", _utc(root.started_at).strftime("%Y-%m-%d %H:%M UTC")), ("Affected", _number(root.affected))]
    agents = agents_named(root)
    if agents:
        pairs.append(("Agents", ", ".join(agents)))
    for key, value in root.evidence.items():
        shown = _number(value)
        if isinstance(value, str | int | float | bool) and len(shown) <= 80 and key not in ("object", "agent_id"):
            pairs.append((key.replace("_", " ").capitalize(), shown))
    return [{"type": "mrkdwn", "text": _cut(f"*{label}*\n{_slack_escape(str(value))}", 2000)}
            for label, value in pairs[:10]]


def _related_lines(incidents: list[Incident]) -> list[str]:
    lines = []
    for incident in incidents:
        state = "" if incident.status == "open" else f" ({incident.status})"
        lines.append(f"• `{incident.id}` {incident.check} ({incident.severity}){state}: "
                     f"{_slack_escape(_cut(incident.summary, SUMMARY_CHARS))}")
    return lines


def _sections(lines: list[str], room: int) -> list[dict[str, Any]]:
    """Lines packed into at most `room` mrkdwn sections of <= 3000 characters; a last one counts what is left out."""
    chunks: list[list[str]] = []
    for line in lines:
        if chunks and len("\n".join([*chunks[-1], line])) <= SLACK_SECTION_CHARS:
            chunks[-1].append(line)
        else:
            chunks.append([line])
    texts = ["\n".join(chunk) for chunk in chunks]
    if len(chunks) > room:
        hidden = sum(len(chunk) for chunk in chunks[room - 1:])
        texts = [*texts[:room - 1], f"…and {hidden} more in the dashboard"]
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in texts]


def _slack(notification: Notification, url: str) -> OutgoingRequest:
    root, line = notification.root, headline(notification)
    lead = "*RESOLVED*: " if notification.event == "resolve" else "*TEST*: " if notification.event == "test" else ""
    link = f"<{_slack_escape(notification.dashboard_url)}|Open {root.id} in the agentwatch dashboard>"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(line, 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            f"{lead}{_slack_escape(root.summary)}", SLACK_SECTION_CHARS)}},
        {"type": "section", "fields": _slack_fields(root, notification)},
    ]
    related = notification.incidents[1:]
    if related:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Related incidents ({len(related)})*"}})
        blocks += _sections(_related_lines(related), SLACK_MAX_BLOCKS - len(blocks) - 2)
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": link}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(
        f"agentwatch · {EVENT_WORDS[notification.event]} · {_utc(notification.created_at):%Y-%m-%d %H:%M UTC} · "
        f"delivery {notification.id}", 2000)}]})
    body = {"text": _slack_escape(_cut(line, 1000)), "blocks": blocks}
    return OutgoingRequest(url, _headers(notification), _json(body), url_secrets(url))


def _pagerduty(notification: Notification, url: str, key: str) -> OutgoingRequest:
    action = PAGERDUTY_ACTIONS[notification.event]
    body: dict[str, Any] = {"routing_key": key, "event_action": action, "dedup_key": notification.dedup_key}
    if action == "trigger":
        root = notification.root
        agents, group = agents_named(root), root.subject.get("object") or root.evidence.get("object")
        payload: dict[str, Any] = {
            "summary": _cut(f"{headline(notification)}: {root.summary}", 1024), "source": "agentwatch",
            "severity": PAGERDUTY_SEVERITY[notification.severity], "timestamp": _utc(notification.created_at)
            .isoformat(), "class": root.check, "custom_details": _details(notification)}
        if agents:
            payload["component"] = agents[0]
        if isinstance(group, str) and group:
            payload["group"] = group
        body |= {"payload": payload, "links": [{"href": notification.dashboard_url,
                                                "text": f"{root.id} in the agentwatch dashboard"}],
                 "client": "agentwatch", "client_url": notification.dashboard_url}
    return OutgoingRequest(url, _headers(notification, delivery=False), _json(body), (key, *url_secrets(url)))


def _details(notification: Notification) -> dict[str, Any]:
    incidents = notification.incidents
    counts: dict[str, int] = {"incidents": len(incidents)}
    for incident in incidents:
        counts[incident.severity] = counts.get(incident.severity, 0) + 1
        counts[incident.status] = counts.get(incident.status, 0) + 1
    listed = [{"id": i.id, "check": i.check, "severity": i.severity, "status": i.status, "subject": i.subject,
               "summary": _cut(i.summary, SUMMARY_CHARS), "affected": i.affected,
               "started_at": _utc(i.started_at).isoformat()} for i in incidents[:50]]
    return {"event": notification.event, "incidents": listed, "counts": counts}


def _webhook(notification: Notification, url: str, secret: str | None) -> OutgoingRequest:
    body = notification.model_dump_json().encode()
    headers = _headers(notification) | {"X-Agentwatch-Event": notification.event}
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return OutgoingRequest(url, headers, body, (*url_secrets(url), *((secret,) if secret else ())))
