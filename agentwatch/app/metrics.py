"""The counters of one agentwatch process, incremented where things happen (docs/operations.md lists them).

Counters live for the process, as Prometheus expects: an API app's registry (``agentwatch.app.api.metrics``)
exposes them next to the gauges it reads at scrape time. This module imports prometheus-client only, so any part
of the roof can count (the CRM pollers call :func:`record_poll`) without pulling in the web server.
"""

from __future__ import annotations

from prometheus_client import Counter, disable_created_metrics

# The *_created series (each counter's creation time) double the exposition and are not in docs/operations.md.
disable_created_metrics()

# Not registered anywhere by themselves (registry=None): each app's registry adds them (tests build several apps).
EVENTS = Counter(
    "agentwatch_events", "Events received by the API, by endpoint, kind (actions, outcomes, spans, snapshots) and "
    "outcome: accepted (new, durably logged), duplicate (an event_id already held), rejected (refused on its own, "
    "named in the answer).", ["endpoint", "kind", "outcome"], registry=None)
REFUSED_REQUESTS = Counter(
    "agentwatch_http_refused_requests", "Requests answered with a client error or 507, by endpoint (the route "
    "template, or `unmatched`), status and error code; each is also one log line.",
    ["endpoint", "status", "code"], registry=None)
GUARD_DECISIONS = Counter(
    "agentwatch_guard_decisions", "Answers of the agent guard (GET /v1/agents/{agent_id}/guard): allowed or refused.",
    ["decision"], registry=None)
CRM_POLLS = Counter(
    "agentwatch_crm_polls", "Polls of a CRM object's schema by the CRM pollers, by source, object and outcome "
    "(success or failure).", ["source", "object", "outcome"], registry=None)

PROCESS_METRICS = (EVENTS, REFUSED_REQUESTS, GUARD_DECISIONS, CRM_POLLS)


def count_events(endpoint: str, kind: str, accepted: int, duplicates: int, rejected: int) -> None:
    """Count what one request did with its events (zero counts still create the series, so rates start at 0)."""
    for outcome, number in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
        EVENTS.labels(endpoint, kind, outcome).inc(number)


def count_refused(endpoint: str, status: int, code: str) -> None:
    REFUSED_REQUESTS.labels(endpoint, str(status), code).inc()


def count_guard_decision(allowed: bool) -> None:
    GUARD_DECISIONS.labels("allowed" if allowed else "refused").inc()


def record_poll(source: str, object_name: str, ok: bool) -> None:
    """The CRM pollers' hook: call once per poll of one object, `ok` when its fields were read (stored or not).
    (Their last success, failure and next run are gauges read from the pollers' state file at scrape time.)"""
    CRM_POLLS.labels(source, object_name, "success" if ok else "failure").inc()
