"""outcome.routing_accuracy_drop, outcome.requalification_spike, outcome.calibration on seeded synthetic traffic."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from tests.checks_support import T0, iso, opened, run, store_events

DAY = timedelta(days=1)
FAULT = T0 + 4 * DAY + timedelta(hours=9)  # Friday 09:00
END = T0 + 5 * DAY + timedelta(hours=12)


def traffic(seed: int, agent: str, action: str, kind: str, wrong: float, wrong_after_fault: float | None = None,
            per_hour: float = 12.0, growth_after_fault: float = 1.0, high_share: float = 0.5,
            wrong_low: float | None = None, wrong_low_after_fault: float | None = None) -> tuple[list, list]:
    """Five and a half days of `action` by `agent`, each decision corrected by a `kind` outcome with a
    lognormal lag (median 3 h) with probability `wrong` (high confidence) / `wrong_low` (low confidence),
    switching to the `*_after_fault` probabilities at FAULT; half the outcomes name the action they correct."""
    rng = np.random.default_rng(seed)
    actions, outcomes = [], []
    hours = int((END - T0).total_seconds() // 3600)
    for hour in range(hours):
        start = T0 + timedelta(hours=hour)
        after = start >= FAULT
        for _ in range(rng.poisson(per_hour * (growth_after_fault if after else 1.0))):
            at = start + timedelta(seconds=float(rng.uniform(0, 3600)))
            event_id = f"{agent}-{len(actions):05d}"
            high = rng.random() < high_share
            confidence = float(rng.uniform(0.9, 0.99) if high else rng.uniform(0.5, 0.75))
            actions.append({"event_id": event_id, "ts": iso(at), "agent_id": agent, "action": action,
                            "resource": {"type": "lead", "id": f"L-{event_id}"}, "status": "ok",
                            "confidence": confidence})
            p = wrong if high or wrong_low is None else wrong_low
            if after:
                if high or wrong_low_after_fault is None:
                    p = wrong_after_fault if wrong_after_fault is not None else p
                else:
                    p = wrong_low_after_fault
            if rng.random() < p:
                lag = timedelta(hours=float(min(rng.lognormal(np.log(3.0), 1.0), 40)))
                outcome = {"event_id": f"o-{event_id}", "ts": iso(at + lag), "kind": kind,
                           "resource": {"type": "lead", "id": f"L-{event_id}"}, "actor": "rep-1"}
                if rng.random() < 0.5:
                    outcome["corrects_event_id"] = event_id
                outcomes.append(outcome)
    return actions, outcomes


def backtest(home, check: str, config: dict | None = None):
    return run(home, T0 + 3 * DAY, END, every=timedelta(minutes=30), config=config, only=[check])


def test_routing_accuracy_drop_fires_when_reps_reassign_many_more_routed_leads(home):
    """A router whose leads reps reassign 35% of the time instead of 5% opens one incident within hours."""
    actions, outcomes = traffic(1, "lead-router", "lead.route", "owner_changed", 0.05, 0.35)
    store_events(home, actions=actions, outcomes=outcomes)
    report = backtest(home, "outcome.routing_accuracy_drop")
    found = opened(report, "outcome.routing_accuracy_drop")
    assert len(found) == 1, found
    at, incident = found[0]
    assert incident.subject == {"agent_id": "lead-router", "action": "lead.route"}
    assert incident.severity in ("warning", "critical")
    assert FAULT - timedelta(hours=3) <= incident.started_at <= FAULT + timedelta(hours=3)
    assert at - FAULT < timedelta(hours=24)  # the outcome family's delay target
    assert incident.evidence["ratio"] > 2 and incident.evidence["baseline_share_within_lag"] < 0.1
    assert set(incident.sample_event_ids) <= {a["event_id"] for a in actions}


def test_routing_accuracy_drop_quiet_on_growth_and_late_cleanup(home):
    """Three times more routing with the same 5% corrections, plus a cleanup of old leads days later, stays quiet."""
    actions, outcomes = traffic(2, "lead-router", "lead.route", "owner_changed", 0.05, growth_after_fault=3.0)
    old = [a for a in actions if a["ts"] < iso(T0 + 2 * DAY)][:60]
    cleanup = [{"event_id": f"cleanup-{i}", "ts": iso(FAULT + timedelta(hours=3, minutes=i)), "kind": "owner_changed",
                "resource": a["resource"], "actor": "rep-9"} for i, a in enumerate(old)]
    store_events(home, actions=actions, outcomes=outcomes + cleanup)
    report = backtest(home, "outcome.routing_accuracy_drop")
    assert not report.failures
    assert opened(report, "outcome.routing_accuracy_drop") == []


def test_requalification_spike_fires_when_reps_overturn_the_qualifier(home):
    """A qualifier whose decisions reps requalify 30% of the time instead of 4% opens one incident."""
    actions, outcomes = traffic(3, "qualifier", "lead.qualify", "requalified", 0.04, 0.30, per_hour=8)
    store_events(home, actions=actions, outcomes=outcomes)
    report = backtest(home, "outcome.requalification_spike")
    found = opened(report, "outcome.requalification_spike")
    assert len(found) == 1, found
    at, incident = found[0]
    assert incident.subject == {"agent_id": "qualifier", "action": "lead.qualify"}
    # Corrections lag by hours, so the start is known to within hours: chance corrections just before blur it.
    assert FAULT - timedelta(hours=6) <= incident.started_at <= FAULT + timedelta(hours=4)
    assert at - FAULT < timedelta(hours=24)


def test_requalification_spike_quiet_on_a_normal_low_rate(home):
    """A steady 4% requalification rate, twice the volume on the last day, opens nothing."""
    actions, outcomes = traffic(4, "qualifier", "lead.qualify", "requalified", 0.04, per_hour=8, growth_after_fault=2)
    store_events(home, actions=actions, outcomes=outcomes)
    report = backtest(home, "outcome.requalification_spike")
    assert not report.failures
    assert opened(report, "outcome.requalification_spike") == []


def test_calibration_fires_on_false_precision(home):
    """Decisions made with >= 0.9 confidence that become wrong 40% of the time open a calibration incident."""
    actions, outcomes = traffic(5, "lead-router", "lead.route", "owner_changed", 0.04, 0.40, wrong_low=0.3,
                                wrong_low_after_fault=0.3)
    store_events(home, actions=actions, outcomes=outcomes)
    report = backtest(home, "outcome.calibration")
    found = opened(report, "outcome.calibration")
    assert len(found) == 1, found
    at, incident = found[0]
    assert incident.subject == {"agent_id": "lead-router", "action": "lead.route"}
    assert FAULT - timedelta(hours=3) <= incident.started_at <= FAULT + timedelta(hours=4)
    assert at - FAULT < timedelta(hours=24)
    bins = {tuple(b["confidence"]): b for b in incident.evidence["confidence_bins"]}
    confident = bins[(0.9, 0.95)]
    assert confident["accuracy"] < confident["mean_confidence"] - 0.05
    assert incident.evidence["wrong_share_estimate"] > incident.evidence["claimed_error"] + 0.1


def test_calibration_quiet_when_only_low_confidence_decisions_are_wrong(home):
    """More corrections of low-confidence decisions (which claim little) while confident ones stay right is quiet."""
    actions, outcomes = traffic(6, "lead-router", "lead.route", "owner_changed", 0.04, 0.04, wrong_low=0.2,
                                wrong_low_after_fault=0.45)
    store_events(home, actions=actions, outcomes=outcomes)
    report = backtest(home, "outcome.calibration")
    assert not report.failures
    assert opened(report, "outcome.calibration") == []
