"""policy.low_confidence_autonomy on seeded synthetic traffic: it fires when an agent acts alone below its confidence
threshold (or with no confidence where one is required), within a bounded delay, and stays quiet on the look-alikes:
approved, skipped and pending low-confidence actions, agents and actions no threshold covers, a confidence exactly at
the threshold."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agentwatch.app.config import Config
from agentwatch.checks.engine import backtest_steps, evaluate
from agentwatch.checks.incidents import IncidentStore
from agentwatch.core.home import Home
from agentwatch.core.severity import Severity
from tests.checks_support import T0, iso, opened, run, store_events

CHECK = "policy.low_confidence_autonomy"
CONFIG = {
    "agents": {
        "*": {"forbidden_actions": ["record.delete"]},  # no threshold: agents without an entry are not judged
        "lead-router": {"min_confidence": {"email.*": 0.8, "lead.assign_owner": 0.6}, "require_confidence": True},
    },
}
START, END = T0 + timedelta(hours=6), T0 + timedelta(hours=20)
EVERY = timedelta(minutes=15)
LOW_AT = T0 + timedelta(hours=10, minutes=7)  # version 1.5 starts emailing below 0.8 without approval
MISSING_AT = T0 + timedelta(hours=14, minutes=3)  # assignments start arriving with no confidence
MAX_DELAY = EVERY + timedelta(minutes=5)  # the first step after the fault opens it; steps are 15 minutes apart
APPROVAL = {"approved_by": "mgr-3", "approved_at": iso(T0)}


def _action(at: datetime, agent: str, action: str, n: int, confidence: float | None, **extra: object) -> dict:
    event = {"event_id": f"a-{n:06d}", "ts": iso(at), "agent_id": agent, "action": action,
             "agent_version": "1.4", "resource": {"type": "lead", "id": f"L-{n % 400}"}, "status": "ok", **extra}
    if confidence is not None:
        event["confidence"] = confidence
    return event


def _traffic(seed: int = 11) -> list[dict]:
    """A day of lead-router and follow-up work, every benign look-alike mixed in."""
    rng = random.Random(seed)
    events, at, n = [], T0, 0
    while at < T0 + timedelta(days=1):
        n += 1
        kind = rng.random()
        if kind < 0.25:  # no threshold covers routing: any confidence is the agent's call (require_confidence asks
            # for one on every action of lead-router)
            events.append(_action(at, "lead-router", "lead.route", n, round(rng.uniform(0.1, 1.0), 3)))
        elif kind < 0.4:  # assignments at or above 0.6, some exactly at it
            events.append(_action(at, "lead-router", "lead.assign_owner", n, rng.choice([0.6, 0.72, 0.9])))
        elif kind < 0.55:  # outreach at or above 0.8, some exactly at it
            events.append(_action(at, "lead-router", "email.send", n, rng.choice([0.8, 0.85, 0.97]), external=True))
        elif kind < 0.65:  # low-confidence outreach a human approved
            events.append(_action(at, "lead-router", "email.send", n, round(rng.uniform(0.2, 0.79), 3),
                                  external=True, approval=APPROVAL))
        elif kind < 0.72:  # low-confidence outreach sent for approval, or held back
            status = rng.choice(["pending_approval", "skipped"])
            events.append(_action(at, "lead-router", "email.send", n, round(rng.uniform(0.2, 0.79), 3),
                                  status=status))
        elif kind < 0.76:  # an unapproved assignment without confidence, held back: not an act
            events.append(_action(at, "lead-router", "lead.assign_owner", n, None, status="pending_approval"))
        else:  # an agent with no threshold emailing at low confidence, sometimes with none
            confidence = None if rng.random() < 0.2 else round(rng.uniform(0.05, 0.5), 3)
            events.append(_action(at, "follow-up", "email.send", n, confidence, external=True))
        at += timedelta(seconds=rng.randint(60, 180))
    return events


def _faults(seed: int = 5) -> list[dict]:
    """From LOW_AT version 1.5 emails below 0.8 without approval; from MISSING_AT assignments carry no confidence."""
    rng = random.Random(seed)
    low = [_action(LOW_AT + timedelta(minutes=9 * i), "lead-router", "email.send", 900000 + i,
                   round(rng.uniform(0.55, 0.79), 3), external=True, agent_version="1.5") for i in range(12)]
    missing = [_action(MISSING_AT + timedelta(minutes=11 * i), "lead-router", "lead.assign_owner", 910000 + i, None,
                       agent_version="1.5") for i in range(8)]
    return low + missing


@pytest.fixture
def faulty(home: Home):
    store_events(home, actions=_traffic() + _faults())
    return run(home, START, END, every=EVERY, config=CONFIG, only=[CHECK])


def test_fires_on_unapproved_outreach_below_the_threshold(faulty) -> None:
    """Emails below 0.8 without approval open one critical incident (they reached prospects), started at the first
    of them, within one step of it; the evidence gives the threshold and the confidences seen."""
    assert faulty.failures == {}
    [(at, incident)] = [o for o in opened(faulty, CHECK) if o[1].subject["action"] == "email.send"]
    assert incident.subject == {"agent_id": "lead-router", "action": "email.send"}
    assert incident.severity == Severity.critical.value
    assert incident.started_at == LOW_AT
    assert timedelta(0) <= at - LOW_AT <= MAX_DELAY
    evidence = incident.evidence
    assert evidence["min_confidence"] == 0.8
    assert 0.55 <= evidence["lowest_confidence"] <= evidence["median_confidence"] < 0.8
    assert evidence["without_confidence"] == 0
    assert all(i.startswith("a-9000") for i in incident.sample_event_ids)
    assert "below its threshold of 0.80" in incident.summary


def test_fires_on_missing_confidence_where_it_is_required(faulty) -> None:
    """Assignments with no confidence under require_confidence open a warning (internal writes), within one step."""
    [(at, incident)] = [o for o in opened(faulty, CHECK) if o[1].subject["action"] == "lead.assign_owner"]
    assert incident.subject == {"agent_id": "lead-router", "action": "lead.assign_owner"}
    assert incident.severity == Severity.warning.value
    assert incident.started_at == MISSING_AT
    assert timedelta(0) <= at - MISSING_AT <= MAX_DELAY
    assert incident.evidence["min_confidence"] == 0.6
    assert incident.evidence["lowest_confidence"] is None and incident.evidence["without_confidence"] >= 1
    assert "with no confidence" in incident.summary


def test_nothing_else_opens(faulty) -> None:
    """The two faults are the only incidents: no look-alike among the day's traffic opens one."""
    assert sorted(i.subject["action"] for _, i in opened(faulty, CHECK)) == ["email.send", "lead.assign_owner"]


def test_quiet_on_benign_look_alikes(home: Home) -> None:
    """Approved, pending, skipped, at-the-threshold, uncovered actions and agents without a threshold open nothing."""
    store_events(home, actions=_traffic())
    report = run(home, START, END, every=EVERY, config=CONFIG, only=[CHECK])
    assert report.failures == {}
    assert report.opened == []


def test_missing_confidence_counts_only_when_required(home: Home) -> None:
    """Without require_confidence the assignments with no confidence are not judged; the low emails still are."""
    store_events(home, actions=_traffic() + _faults())
    relaxed = {"agents": {**CONFIG["agents"], "lead-router": {**CONFIG["agents"]["lead-router"],
                                                              "require_confidence": False}}}
    report = run(home, START, END, every=EVERY, config=relaxed, only=[CHECK])
    assert [i.subject["action"] for _, i in opened(report, CHECK)] == ["email.send"]


# Inheritance and specificity: "*" sets a fallback, a tie of two patterns as long and require_confidence; lead-router
# overrides some patterns and require_confidence; scorer's single number replaces "*"'s thresholds.
LAYERED = {
    "agents": {
        "*": {"min_confidence": {"*": 0.5, "email.*": 0.9, "*l.send": 0.95}, "require_confidence": True},
        "lead-router": {"min_confidence": {"email.*": 0.7, "email.send": 0.85, "lead.*": 0.6},
                        "require_confidence": False},
        "scorer": {"min_confidence": 0.2},
    },
}
# (agent, action, confidence, the threshold expected to apply, or None when the event must not fire)
LAYERED_CASES = [
    ("lead-router", "email.send", 0.84, 0.85),  # the exact name beats email.* and *l.send
    ("lead-router", "email.reply", 0.75, None),  # its own email.* (0.7) overrides "*"'s (0.9)
    ("lead-router", "lead.route", 0.55, 0.6),  # lead.* is longer than *
    ("lead-router", "task.create", 0.45, 0.5),  # "*"'s fallback is inherited
    ("lead-router", "task.complete", None, None),  # its require_confidence: false overrides "*"'s true
    ("intake", "email.send", 0.92, 0.95),  # email.* and *l.send are as long (7 characters): the higher threshold
    ("intake", "email.reply", 0.89, 0.9),
    ("intake", "task.create", None, 0.5),  # "*" requires a confidence
    ("scorer", "email.send", 0.3, None),  # its number replaces "*"'s map
    ("scorer", "lead.score", 0.1, 0.2),
    ("scorer", "task.create", None, 0.2),  # require_confidence is inherited from "*"
]


def _layered_events() -> list[dict]:
    at = T0 + timedelta(hours=8)
    return [_action(at + timedelta(minutes=i), agent, action, 920000 + i, confidence)
            for i, (agent, action, confidence, _) in enumerate(LAYERED_CASES)]


def test_most_specific_threshold_and_inheritance(home: Home) -> None:
    """Each event is judged against the most specific key of its agent's effective map, "*" extended by the agent."""
    store_events(home, actions=_layered_events())
    report = run(home, T0 + timedelta(hours=7), T0 + timedelta(hours=9), every=EVERY, config=LAYERED, only=[CHECK])
    assert report.failures == {}
    found = {(i.subject["agent_id"], i.subject["action"]): i.evidence["min_confidence"]
             for _, i in opened(report, CHECK)}
    expected = {(agent, action): threshold for agent, action, _, threshold in LAYERED_CASES if threshold is not None}
    assert found == expected


def test_stored_aggregates_open_what_a_recompute_opens(home: Home, tmp_path: Path) -> None:
    """The thresholds are matched in the policy rollup's SQL: read from the home's stored rollups, the check opens
    exactly the incidents a full recompute opens."""
    store_events(home, actions=_traffic() + _faults() + _layered_events())
    config = Config.model_validate({"agents": {**LAYERED["agents"], "lead-router": CONFIG["agents"]["lead-router"]}})
    steps = backtest_steps(START, END, EVERY)
    seen = []
    for name, recompute in (("stored", False), ("recomputed", True)):
        report = evaluate(home, config, steps, IncidentStore(tmp_path / f"{name}.sqlite3"), only=[CHECK],
                          recompute=recompute, now=END + timedelta(hours=2), small_range_bytes=0)
        assert report.failures == {}
        seen.append(sorted((at, i.subject["agent_id"], i.subject["action"], i.severity, i.started_at, i.affected,
                            i.evidence["min_confidence"]) for at, i in opened(report, CHECK)))
    assert seen[0] == seen[1] and len(seen[0]) >= 3
    assert any(home.aggregates.glob("policy_violations-v2-*/**/*.parquet")), "the first run read stored rows"


def test_require_confidence_alone_judges_every_action_of_the_agent(home: Home) -> None:
    """An agent whose policy only says `require_confidence: true` (no threshold anywhere): its actions without a
    confidence and without approval fire, whatever their action; a low confidence is no violation (there is no
    threshold), and an approved action without confidence is fine."""
    at = T0 + timedelta(hours=8, minutes=5)
    events = [_action(at + timedelta(minutes=i), "notifier", action, 930000 + i, confidence)
              for i, (action, confidence) in enumerate([("task.create", None), ("task.create", None),
                                                         ("email.send", 0.05), ("note.add", 0.9)])]
    approved = _action(at + timedelta(minutes=9), "notifier", "note.add", 930009, None)
    approved["approval"] = {"approved_by": "mgr-1", "approved_at": iso(at)}
    store_events(home, actions=[*events, approved])
    config = {"agents": {"notifier": {"require_confidence": True}}}
    report = run(home, T0 + timedelta(hours=7), T0 + timedelta(hours=9), every=EVERY, config=config, only=[CHECK])
    assert report.failures == {}
    ((_, first),) = opened(report, CHECK)
    (incident,) = [i for i in report.incidents if i.id == first.id]  # as the last step left it
    assert incident.subject == {"agent_id": "notifier", "action": "task.create"}
    assert incident.evidence["events"] == 2 and incident.evidence["min_confidence"] is None
    assert "requires a confidence" in incident.summary
