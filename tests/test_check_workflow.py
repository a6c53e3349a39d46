"""Workflow checks on seeded synthetic traffic: each fires on its injected fault, none on benign look-alikes."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta

import pytest

from agentwatch.core.home import Home
from tests.checks_support import T0, iso, opened, run, store_events

WORKFLOW = {
    "object": "lead",
    "state_field": "status",
    "transitions": {"new": ["enriched", "disqualified"], "enriched": ["qualified", "disqualified"],
                    "qualified": ["routed", "escalated"]},
    "sla_first_action_minutes": 15,
}
CONFIG = {"workflow": WORKFLOW}
_ids = itertools.count(1)


def _action(at: datetime, agent: str, action: str, lead: str, resource_type: str = "lead", **extra: object) -> dict:
    return {"event_id": f"a-{next(_ids):07d}", "ts": iso(at), "agent_id": agent, "action": action,
            "resource": {"type": resource_type, "id": lead}, "status": "ok", **extra}


def _move(at: datetime, agent: str, action: str, lead: str, src: str | None, dst: str, **extra: object) -> dict:
    before = {"status": src} if src is not None else {"email": "x@example.com"}
    return _action(at, agent, action, lead, before=before, after={"status": dst}, **extra)


# --- workflow.invalid_transition ------------------------------------------------------------------------

TRANSITION_FAULT = T0 + timedelta(hours=11, minutes=4)


def _pipeline(seed: int = 3) -> list[dict]:
    """A day of leads walking the state machine, with moves the machine does not judge mixed in."""
    rng = random.Random(seed)
    events, at = [], T0 + timedelta(hours=6)
    for n in range(150):
        lead = f"L-{n}"
        at += timedelta(minutes=rng.randint(2, 6))
        step, state = at, "new"
        verdict = rng.choice(["qualified"] * 4 + ["disqualified"])
        for agent, action, dst in (("enricher", "lead.enrich", "enriched"), ("qualifier", "lead.qualify", verdict),
                                   ("lead-router", "lead.route", "routed")):
            if state == "disqualified":
                break
            events.append(_move(step, agent, action, lead, state, dst))
            step += timedelta(minutes=rng.randint(1, 3))
            state = dst
        kind = rng.random()
        if kind < 0.2:  # same state, written in another case: not a move
            events.append(_move(step, "lead-router", "crm.update_field", lead, "routed", "Routed"))
        elif kind < 0.3:  # from a state the config does not name: not judged
            events.append(_move(step, "lead-router", "crm.update_field", lead, "routed", "new"))
        elif kind < 0.4:  # no state before the write: not a move
            events.append(_move(step, "enricher", "crm.update_field", lead, None, "new"))
        elif kind < 0.5:  # another object's state
            events.append(_action(step, "qualifier", "contact.update", f"C-{n}", resource_type="contact",
                                  before={"status": "qualified"}, after={"status": "new"}))
    return events


def _bad_moves() -> list[dict]:
    """qualifier sends three qualified leads back to new, and one enriched lead straight to routed."""
    return [
        *(_move(TRANSITION_FAULT + timedelta(minutes=i), "qualifier", "lead.requalify", f"L-{i}", "qualified", "new")
          for i in range(3)),
        _move(TRANSITION_FAULT + timedelta(minutes=5), "qualifier", "lead.requalify", "L-9", "Enriched", "routed",
              status="error", error={"code": "validation"}),
    ]


def test_invalid_transition_fires_on_forbidden_moves(home: Home) -> None:
    """Moves the machine forbids open one warning on the agent x action, counting each transition."""
    store_events(home, actions=_pipeline() + _bad_moves())
    report = run(home, T0 + timedelta(hours=8), T0 + timedelta(hours=20), config=CONFIG,
                 only=["workflow.invalid_transition"])
    assert report.failures == {}
    (at, incident), = opened(report, "workflow.invalid_transition")
    assert incident.subject == {"agent_id": "qualifier", "action": "lead.requalify"}
    assert incident.severity == "warning"
    assert incident.evidence["transitions"] == {"qualified -> new": 3, "enriched -> routed": 1}
    assert incident.started_at == TRANSITION_FAULT
    assert at - TRANSITION_FAULT <= timedelta(minutes=30)
    assert incident.affected == 4


def test_invalid_transition_quiet_on_valid_and_unjudged_moves(home: Home) -> None:
    """Valid moves, unchanged states, unnamed from-states, other objects and a missing config open nothing."""
    store_events(home, actions=_pipeline())
    report = run(home, T0 + timedelta(hours=8), T0 + timedelta(hours=20), config=CONFIG,
                 only=["workflow.invalid_transition"])
    assert report.failures == {}
    assert report.opened == []


def test_invalid_transition_judges_a_state_that_allows_no_move(home: Home) -> None:
    """A state listed with no allowed targets (`routed: []`) is a dead end: any move out of it is invalid, while
    states the config does not list at all stay unjudged."""
    config = {"workflow": {**WORKFLOW, "transitions": {**WORKFLOW["transitions"], "routed": []}}}
    store_events(home, actions=_pipeline())  # routed -> new moves are mixed in (unjudged by CONFIG)
    report = run(home, T0 + timedelta(hours=8), T0 + timedelta(hours=20), config=config,
                 only=["workflow.invalid_transition"])
    (_, incident), = opened(report, "workflow.invalid_transition")
    assert set(incident.evidence["transitions"]) == {"routed -> new"}


def test_invalid_transition_needs_a_workflow(home: Home) -> None:
    """Without a `workflow:` section there is no state machine to break."""
    store_events(home, actions=_pipeline() + _bad_moves())
    report = run(home, T0 + timedelta(hours=8), T0 + timedelta(hours=20), config={},
                 only=["workflow.invalid_transition"])
    assert report.failures == {}
    assert report.opened == []


# --- workflow.sla_breach ----------------------------------------------------------------------------------

SLA_FAULT = T0 + timedelta(days=3, hours=10)
SLA_RANGE = (T0 + timedelta(days=2), T0 + timedelta(days=3, hours=16))


def _leads(outage: bool, intake: str = "lead.create", seed: int = 11) -> list[dict]:
    """Four days of new leads: the router acts within minutes by day (5% slow), at 07:00 for night leads,
    and a nurture burst at 09:00 emails older leads no agent acts on after. With `outage`, the router
    does nothing for leads created in the three hours from SLA_FAULT and works that backlog at 13:30."""
    rng = random.Random(seed)
    events, at, n = [], T0, 0
    while at < T0 + timedelta(days=4):
        n += 1
        lead = f"L-{n}"
        events.append(_action(at, "intake", intake, lead, after={"status": "new"}))
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        if outage and SLA_FAULT <= at < SLA_FAULT + timedelta(hours=3):
            acted = SLA_FAULT + timedelta(hours=3, minutes=30 + rng.randint(0, 20))
        elif at.hour < 7:
            acted = day + timedelta(hours=7, minutes=rng.randint(1, 10))
        elif at.hour >= 21:
            acted = day + timedelta(days=1, hours=7, minutes=rng.randint(1, 10))
        else:
            acted = at + timedelta(minutes=rng.randint(20, 40) if rng.random() < 0.05 else rng.randint(1, 8))
        if rng.random() < 0.1:  # a failed first try does not count; the retry does
            events.append(_action(acted - timedelta(minutes=1), "lead-router", "lead.route", lead,
                                  status="error", error={"code": "timeout"}))
        events.append(_action(acted, "lead-router", "lead.route", lead))
        events.append(_action(acted + timedelta(minutes=5), "follow-up", "email.send", lead, external=True))
        busy = 8 <= at.hour < 20
        at += timedelta(minutes=rng.randint(2, 6) if busy else rng.randint(15, 25))
    for day in range(4):  # older leads, first seen in the data through outreach: not new
        burst = T0 + timedelta(days=day, hours=9)
        events.extend(_action(burst + timedelta(seconds=k), "follow-up", "email.send", f"OLD-{day}-{k}", external=True)
                      for k in range(30))
    return events


@pytest.mark.parametrize("intake", ["lead.create", "lead.dedupe"])
def test_sla_breach_fires_when_the_router_stops_picking_up_leads(home: Home, intake: str) -> None:
    """Leads left waiting from 10:00 open one warning on the lead object, started at the first waiting lead,
    whether leads are created by a creation action or found by their intake step."""
    store_events(home, actions=_leads(outage=True, intake=intake))
    report = run(home, *SLA_RANGE, config=CONFIG, only=["workflow.sla_breach"])
    assert report.failures == {}
    (at, incident), = opened(report, "workflow.sla_breach")
    assert incident.subject == {"object": "lead"}
    assert incident.severity == "warning"
    assert timedelta(0) <= incident.started_at - SLA_FAULT <= timedelta(minutes=10)
    assert timedelta(minutes=15) <= at - SLA_FAULT <= timedelta(minutes=30)  # no step sees a deadline to come
    assert incident.evidence["baseline_share"] < 0.15
    assert incident.evidence["agents"] == ["intake"]


@pytest.mark.parametrize("intake", ["lead.create", "lead.dedupe"])
def test_sla_breach_quiet_on_slow_leads_nights_and_old_leads(home: Home, intake: str) -> None:
    """Occasional slow leads, night leads that always wait for the morning and a morning burst of emails to
    older leads open nothing."""
    store_events(home, actions=_leads(outage=False, intake=intake))
    report = run(home, *SLA_RANGE, config=CONFIG, only=["workflow.sla_breach"])
    assert report.failures == {}
    assert report.opened == []


def test_sla_breach_needs_an_sla(home: Home) -> None:
    """Without `sla_first_action_minutes` the check has no deadline to judge."""
    store_events(home, actions=_leads(outage=True))
    config = {"workflow": {**WORKFLOW, "sla_first_action_minutes": None}}
    report = run(home, *SLA_RANGE, config=config, only=["workflow.sla_breach"])
    assert report.failures == {}
    assert report.opened == []


# --- workflow.partial_failure -----------------------------------------------------------------------------

WRITE_FAULT = T0 + timedelta(days=2, hours=14)
WRITE_RANGE = (T0 + timedelta(days=1), T0 + timedelta(days=2, hours=17))


def _outreach(fault: bool, seed: int = 5) -> list[dict]:
    """Three working days of emails each followed by a CRM write: most within minutes, some late but
    in time, some failing once and retried; with `fault`, the write times out from WRITE_FAULT on."""
    rng = random.Random(seed)
    events = []
    for day in range(3):
        at = T0 + timedelta(days=day, hours=8)
        while at < T0 + timedelta(days=day, hours=18):
            at += timedelta(minutes=rng.randint(2, 5))
            lead = f"L-{day}-{at:%H%M%S}"
            events.append(_action(at, "follow-up", "email.send", lead, external=True))
            if fault and WRITE_FAULT <= at < WRITE_FAULT + timedelta(hours=2):
                events.append(_action(at + timedelta(minutes=1), "follow-up", "crm.log_activity", lead,
                                      status="error", error={"code": "timeout"}))
                continue
            kind = rng.random()
            if kind < 0.02:  # the rare email whose write never comes
                continue
            if kind < 0.1:  # failed once, retried in time
                events.append(_action(at + timedelta(minutes=1), "follow-up", "crm.log_activity", lead,
                                      status="error", error={"code": "timeout"}))
                events.append(_action(at + timedelta(minutes=rng.randint(3, 6)), "follow-up", "crm.log_activity", lead))
            elif kind < 0.25:  # late, within the allowance
                events.append(_action(at + timedelta(minutes=rng.uniform(8, 9.8)), "follow-up", "crm.update_field",
                                      lead))
            else:
                events.append(_action(at + timedelta(minutes=rng.uniform(0.2, 4)), "follow-up", "crm.log_activity",
                                      lead))
    return events


def test_partial_failure_fires_when_follow_up_writes_fail(home: Home) -> None:
    """Emails sent while their CRM write fails open one critical incident on the sender, with no workflow set."""
    store_events(home, actions=_outreach(fault=True))
    report = run(home, *WRITE_RANGE, config={}, only=["workflow.partial_failure"])
    assert report.failures == {}
    (at, incident), = opened(report, "workflow.partial_failure")
    assert incident.subject == {"agent_id": "follow-up", "action": "email.send"}
    assert incident.severity == "critical"
    assert timedelta(0) <= incident.started_at - WRITE_FAULT <= timedelta(minutes=6)
    assert timedelta(minutes=10) <= at - WRITE_FAULT <= timedelta(minutes=30)  # no step sees an allowance to come
    assert incident.evidence["write_errored"] == incident.evidence["failed"] >= 3
    assert incident.evidence["baseline_share"] < 0.1


def test_partial_failure_quiet_on_late_and_retried_writes(home: Home) -> None:
    """Writes landing late but in time, writes retried after an error and a rare lost write open nothing."""
    store_events(home, actions=_outreach(fault=False))
    report = run(home, *WRITE_RANGE, config=CONFIG, only=["workflow.partial_failure"])
    assert report.failures == {}
    assert report.opened == []
