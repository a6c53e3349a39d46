"""Policy checks on seeded synthetic traffic: each fires on its injected violation, none on benign look-alikes."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from agentwatch.core.home import Home
from agentwatch.core.severity import Severity
from tests.checks_support import T0, iso, opened, run, store_events

CONFIG = {
    "agents": {
        "*": {"forbidden_actions": ["record.delete", "record.merge"]},
        "lead-router": {
            "allowed_actions": ["lead.route", "lead.assign_owner", "crm.update_field", "task.create"],
            "requires_approval": ["email.send"],
            "max_records_per_action": 5,
        },
    },
}
CHECKS = ["policy.forbidden_action", "policy.not_allowed", "policy.unapproved_action", "policy.bulk_limit"]
START, END = T0 + timedelta(hours=6), T0 + timedelta(hours=20)
FAULT_AT = T0 + timedelta(hours=10, minutes=7)


def _action(at: datetime, agent: str, action: str, n: int, **extra: object) -> dict:
    return {"event_id": f"a-{n:06d}", "ts": iso(at), "agent_id": agent, "action": action,
            "resource": {"type": "lead", "id": f"L-{n % 400}"}, "status": "ok", **extra}


def _traffic(seed: int = 7) -> list[dict]:
    """A day of in-policy work, with the benign look-alikes of every policy check mixed in."""
    rng = random.Random(seed)
    events, at, n = [], T0, 0
    approval = {"approved_by": "mgr-3", "approved_at": iso(T0)}
    while at < T0 + timedelta(days=1):
        n += 1
        kind = rng.random()
        if kind < 0.5:
            events.append(_action(at, "lead-router", rng.choice(["lead.route", "lead.assign_owner", "task.create"]), n))
        elif kind < 0.6:  # at the bulk limit, never above it
            events.append(_action(at, "lead-router", "crm.update_field", n, records_affected=5))
        elif kind < 0.7:  # approved outreach, and outreach waiting for approval
            events.append(_action(at, "lead-router", "email.send", n, external=True, approval=approval))
        elif kind < 0.75:
            events.append(_action(at, "lead-router", "email.send", n, status="pending_approval"))
        elif kind < 0.8:  # a not-allowed action the agent held back from
            events.append(_action(at, "lead-router", "contact.update", n, status="skipped"))
        elif kind < 0.9:  # an agent with no entry of its own: bulk writes and outreach without approval are fine
            events.append(_action(at, "importer", "crm.update_field", n, records_affected=rng.randint(50, 500)))
        else:
            events.append(_action(at, "follow-up", "email.send", n, external=True))
        at += timedelta(seconds=rng.randint(60, 240))
    return events


def _faults() -> list[dict]:
    """One violation of each policy at FAULT_AT (by lead-router)."""
    return [
        _action(FAULT_AT, "lead-router", "record.delete", 900001),
        _action(FAULT_AT + timedelta(minutes=1), "lead-router", "contact.update", 900002),
        _action(FAULT_AT + timedelta(minutes=2), "lead-router", "email.send", 900003, external=True),
        _action(FAULT_AT + timedelta(minutes=3), "lead-router", "crm.update_field", 900004, records_affected=40),
        _action(FAULT_AT + timedelta(minutes=4), "lead-router", "crm.update_field", 900005, records_affected=6,
                status="error", error={"code": "timeout"}),
    ]


@pytest.fixture
def faulty(home: Home):
    store_events(home, actions=_traffic() + _faults())
    return run(home, START, END, config=CONFIG, only=CHECKS)


EXPECTED = [
    ("policy.forbidden_action", "record.delete", Severity.critical, 1),
    ("policy.not_allowed", "contact.update", Severity.critical, 1),
    ("policy.unapproved_action", "email.send", Severity.critical, 1),
    ("policy.bulk_limit", "crm.update_field", Severity.critical, 2),
]


@pytest.mark.parametrize(("check", "action", "severity", "events"), EXPECTED)
def test_each_policy_check_fires_once_on_its_violation(faulty, check, action, severity, events) -> None:
    """Each check opens one incident on lead-router x the violating action, started at the violation."""
    incidents = opened(faulty, check)
    assert faulty.failures == {}
    assert len(incidents) == 1, incidents
    at, incident = incidents[0]
    assert incident.subject == {"agent_id": "lead-router", "action": action}
    assert incident.severity == severity.value
    assert abs(incident.started_at - FAULT_AT) <= timedelta(minutes=5)
    assert at - FAULT_AT <= timedelta(minutes=30)
    assert incident.evidence["events"] == events
    assert all(i.startswith("a-9000") for i in incident.sample_event_ids)


def test_bulk_limit_counts_records_and_an_errored_attempt(faulty) -> None:
    """The bulk incident counts the records of both oversized attempts, the errored one included."""
    (_, incident), = opened(faulty, "policy.bulk_limit")
    assert incident.affected == 46
    assert incident.evidence["largest_records_affected"] == 40
    assert incident.evidence["max_records_per_action"] == 5
    assert "above its limit of 5" in incident.summary


def test_incidents_resolve_after_the_violations_stop(faulty) -> None:
    """A one-off violation resolves once the window and the resolve delay have passed."""
    assert {i.status for i in faulty.incidents} == {"resolved"}


def test_unapproved_internal_action_is_a_warning(home: Home) -> None:
    """An unapproved action that reached no one outside is a warning, not a page."""
    store_events(home, actions=[*_traffic(), _action(FAULT_AT, "lead-router", "email.send", 900001, external=False)])
    (_, incident), = opened(run(home, START, END, config=CONFIG, only=CHECKS), "policy.unapproved_action")
    assert incident.severity == "warning"


def test_quiet_on_benign_look_alikes(home: Home) -> None:
    """Allowed, approved, pending, skipped, at-the-limit actions and agents without an entry open nothing."""
    store_events(home, actions=_traffic())
    report = run(home, START, END, config=CONFIG, only=CHECKS)
    assert report.failures == {}
    assert report.opened == []


def test_quiet_without_policies(home: Home) -> None:
    """With no `agents:` section nothing is a violation, not even a delete."""
    store_events(home, actions=_traffic() + _faults())
    report = run(home, START, END, config={}, only=CHECKS)
    assert report.failures == {}
    assert report.opened == []
