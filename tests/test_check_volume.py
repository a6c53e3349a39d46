"""volume.action_spike and volume.action_drop on seeded synthetic traffic with seasonality."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from tests.checks_support import T0, iso, opened, run, store_events

SPIKE, DROP = "volume.action_spike", "volume.action_drop"
# agent, action, events per hour at the midday peak of a weekday
STREAMS = (("lead-router", "lead.route", 60.0), ("enricher", "lead.enrich", 50.0), ("email-agent", "email.send", 30.0))
BUCKET_MINUTES = 5


def hourly_shape(hour: float) -> float:
    """A working day: a trickle at night, a bell from 7:00 to 18:00."""
    return 0.03 + (math.sin(math.pi * (hour - 7) / 11) if 7 <= hour <= 18 else 0.0)


def traffic(days: int, seed: int = 7, growth: float = 0.0, weekend: float = 0.15, monday_burst: float = 2.0,
            holidays: tuple[int, ...] = (), faults: dict[tuple[str, str], tuple[datetime, datetime, float]] | None
            = None) -> list[dict]:
    """Action events from T0 for `days` days: weekday/weekend and hour-of-day seasonality, a Monday-morning
    burst, optional steady growth, holidays (everyone at 35%) and faults (agent, action) -> (from, to, factor)."""
    rng = np.random.default_rng(seed)
    starts = np.arange(days * 24 * 60 // BUCKET_MINUTES) * BUCKET_MINUTES  # minutes since T0
    day = starts // (24 * 60)
    hour = (starts % (24 * 60)) / 60
    shape = np.array([hourly_shape(h) for h in hour])
    season = np.where(day % 7 >= 5, weekend, 1.0) * (1 + growth) ** day
    season *= np.where((day % 7 == 0) & (hour >= 8) & (hour < 11), monday_burst, 1.0)
    season *= np.where(np.isin(day, holidays), 0.35, 1.0)
    events = []
    for agent, action, peak in STREAMS:
        rate = peak * shape * season * BUCKET_MINUTES / 60
        for (f_agent, f_action), (begin, end, factor) in (faults or {}).items():
            if (f_agent, f_action) == (agent, action):
                at = np.array([T0 + timedelta(minutes=int(m)) for m in starts])
                rate = np.where((at >= begin) & (at < end), rate * factor, rate)
        counts = rng.poisson(rate)
        minutes = np.repeat(starts, counts) + rng.uniform(0, BUCKET_MINUTES, counts.sum())
        for i, minute in enumerate(minutes):
            events.append({
                "event_id": f"{agent}-{action}-{seed}-{i}", "ts": iso(T0 + timedelta(minutes=float(minute))),
                "agent_id": agent, "action": action, "resource": {"type": "lead", "id": f"L-{seed}-{i}"},
                "status": "ok",
            })
    return events


def loud(report, check: str) -> list:
    """Incidents of `check` the run opened at warning or critical."""
    return [(at, i) for at, i in opened(report, check) if i.severity in ("warning", "critical")]


def final(report, incident):
    """The incident as the run left it (severity only rises while it stays open)."""
    return next(i for i in report.incidents if i.id == incident.id)


def test_spike_fires_on_an_email_loop(home):
    """An email.send loop (12x the usual rate) opens a critical spike within 30 minutes, started near its start."""
    fault_at = T0 + timedelta(days=3, hours=10, minutes=2)  # a Thursday morning, after 3 weekdays of history
    store_events(home, actions=traffic(4, faults={("email-agent", "email.send"): (fault_at, fault_at + timedelta(
        hours=2), 12.0)}))
    report = run(home, fault_at - timedelta(hours=2), fault_at + timedelta(hours=2), only=[SPIKE, DROP])
    assert not report.failures
    fired = loud(report, SPIKE)
    assert [i.subject for _, i in fired] == [{"agent_id": "email-agent", "action": "email.send"}]
    at, incident = fired[0]
    assert at - fault_at <= timedelta(minutes=30)
    assert incident.severity == "critical"
    assert abs(incident.started_at - fault_at) <= timedelta(minutes=15)
    assert incident.evidence["agents"] == ["email-agent"] and incident.evidence["ratio"] >= 10
    assert incident.sample_event_ids and all(e.startswith("email-agent-email.send") for e in incident.sample_event_ids)
    assert not loud(report, DROP)


def test_drop_fires_when_an_agent_stops_in_working_hours(home):
    """lead-router going silent on a Thursday morning opens a drop within 30 minutes that turns critical,
    and resolves once it is back."""
    fault_at = T0 + timedelta(days=3, hours=10, minutes=2)
    back_at = fault_at + timedelta(minutes=90)
    store_events(home, actions=traffic(4, faults={("lead-router", "lead.route"): (fault_at, back_at, 0.0)}))
    report = run(home, fault_at - timedelta(hours=2), fault_at + timedelta(hours=4), only=[SPIKE, DROP])
    assert not report.failures
    fired = loud(report, DROP)
    assert [i.subject for _, i in fired] == [{"agent_id": "lead-router", "action": "lead.route"}]
    at, incident = fired[0]
    assert at - fault_at <= timedelta(minutes=30)
    assert abs(incident.started_at - fault_at) <= timedelta(minutes=10)
    assert incident.evidence["observed"] <= 3 and "agents" in incident.evidence
    last = final(report, incident)
    assert last.severity == "critical"
    assert last.status == "resolved" and last.last_fired_at <= back_at + timedelta(minutes=30)
    assert not loud(report, SPIKE)


def test_drop_fires_on_a_whole_platform_outage(home):
    """When every agent stops at once the peers' traffic cannot explain it away: each stream opens a drop."""
    fault_at = T0 + timedelta(days=3, hours=10, minutes=2)
    stop = (fault_at, T0 + timedelta(days=4), 0.0)
    store_events(home, actions=traffic(4, faults={(a, b): stop for a, b, _ in STREAMS}))
    report = run(home, fault_at - timedelta(hours=1), fault_at + timedelta(hours=2), only=[DROP])
    fired = loud(report, DROP)
    assert sorted(i.subject["agent_id"] for _, i in fired) == ["email-agent", "enricher", "lead-router"]
    assert all(final(report, i).severity == "critical" for _, i in fired)
    router = next(at for at, i in fired if i.subject["agent_id"] == "lead-router")
    assert router - fault_at <= timedelta(minutes=45)


def test_quiet_on_growth_weekend_monday_burst_and_holiday(home):
    """Steady +3%/day growth, a quiet weekend, the weekly Monday-morning burst and a holiday open nothing loud."""
    holiday = 11  # the second Friday: every agent at 35% all day
    store_events(home, actions=traffic(16, seed=11, growth=0.03, holidays=(holiday,)))
    report = run(home, T0 + timedelta(days=holiday), T0 + timedelta(days=16) - timedelta(minutes=15),
                 only=[SPIKE, DROP])
    assert not report.failures
    assert loud(report, SPIKE) == [] and loud(report, DROP) == []
