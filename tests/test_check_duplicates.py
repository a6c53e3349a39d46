"""quality.duplicate on seeded synthetic traffic: a loop that handles records twice against benign repeats."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from tests.checks_support import T0, iso, opened, run, store_events

DAY = timedelta(days=1)
FAULT = T0 + DAY + timedelta(hours=10, minutes=7)  # Tuesday 10:07
END = T0 + DAY + timedelta(hours=14)


def assignments(seed: int, duplicate_share: float = 0.0) -> list[dict]:
    """A day and 14 h of lead.assign_owner by lead-router (20 an hour); from FAULT, `duplicate_share` of the
    leads are assigned a second time 1 to 10 minutes later."""
    rng = np.random.default_rng(seed)
    events = []
    for hour in range(int((END - T0).total_seconds() // 3600)):
        start = T0 + timedelta(hours=hour)
        for _ in range(rng.poisson(20)):
            at = start + timedelta(seconds=float(rng.uniform(0, 3600)))
            lead = f"L-{len(events):05d}"
            event = {"event_id": f"a-{len(events):05d}", "ts": iso(at), "agent_id": "lead-router",
                     "action": "lead.assign_owner", "resource": {"type": "lead", "id": lead}, "status": "ok"}
            events.append(event)
            if at >= FAULT and rng.random() < duplicate_share:
                again = at + timedelta(minutes=float(rng.uniform(1, 10)))
                events.append({**event, "event_id": f"dup-{len(events):05d}", "ts": iso(again)})
    return events


def test_duplicate_fires_when_leads_are_assigned_twice(home):
    """A router that assigns 30% of leads twice within minutes opens one warning naming the records."""
    events = assignments(1, duplicate_share=0.3)
    store_events(home, actions=events)
    report = run(home, T0 + DAY, END, every=timedelta(minutes=15), only=["quality.duplicate"])
    found = opened(report, "quality.duplicate")
    assert len(found) == 1, found
    at, incident = found[0]
    assert incident.subject == {"agent_id": "lead-router", "action": "lead.assign_owner"}
    assert incident.severity == "warning"
    assert FAULT <= incident.started_at <= FAULT + timedelta(minutes=30)
    assert at - FAULT <= timedelta(minutes=60)  # three duplicates at about six an hour, plus the step
    duplicated = {e["resource"]["id"] for e in events if e["event_id"].startswith("dup-")}
    assert set(incident.evidence["resource_ids"]) <= duplicated
    assert any(i.startswith("dup-") for i in incident.sample_event_ids)


def test_duplicate_emails_are_critical(home):
    """The same prospect emailed twice within the window by the same agent is critical: it reached a person."""
    emails = []
    for i in range(4):
        at = FAULT + timedelta(minutes=5 * i)
        for n, delay in enumerate((0, 3)):
            emails.append({"event_id": f"e-{i}-{n}", "ts": iso(at + timedelta(minutes=delay)), "agent_id": "follow-up",
                           "action": "email.send", "resource": {"type": "contact", "id": f"C-{i}"},
                           "status": "ok", "external": True})
    store_events(home, actions=assignments(2) + emails)
    report = run(home, T0 + DAY, END, every=timedelta(minutes=15), only=["quality.duplicate"])
    found = opened(report, "quality.duplicate")
    assert [(i.subject["agent_id"], i.severity) for _, i in found] == [("follow-up", "critical")]
    assert found[0][1].evidence["records"] == 4


def test_duplicate_quiet_on_benign_repeats(home):
    """Route then assign, a retry after an error, another agent, and the same lead a day later are not duplicates."""
    events = assignments(3)
    extra = []
    for i, event in enumerate([e for e in events if e["ts"] >= iso(FAULT)][:40]):
        at = FAULT + timedelta(minutes=i)
        extra += [
            {**event, "event_id": f"route-{i}", "action": "lead.route", "ts": iso(at + timedelta(minutes=2))},
            {**event, "event_id": f"other-{i}", "agent_id": "enricher", "ts": iso(at + timedelta(minutes=3))},
            {**event, "event_id": f"err-{i}", "status": "error", "error": {"code": "timeout"},
             "ts": iso(at + timedelta(minutes=4))},
        ]
    # A retry after an error: the error and its successful retry on a new lead.
    for i in range(10):
        base = {"agent_id": "lead-router", "action": "lead.assign_owner", "resource": {"type": "lead", "id": f"R-{i}"}}
        extra += [{**base, "event_id": f"fail-{i}", "ts": iso(FAULT + timedelta(minutes=i)), "status": "error",
                   "error": {"code": "timeout"}},
                  {**base, "event_id": f"ok-{i}", "ts": iso(FAULT + timedelta(minutes=i + 1)), "status": "ok"}]
    # The same leads assigned again a day later.
    for i, event in enumerate(e for e in events if e["ts"] < iso(T0 + timedelta(hours=12))):
        if i < 40:
            extra.append({**event, "event_id": f"next-day-{i}", "ts": iso(FAULT + timedelta(minutes=i))})
    store_events(home, actions=events + extra)
    report = run(home, T0 + DAY, END, every=timedelta(minutes=15), only=["quality.duplicate"])
    assert not report.failures
    assert opened(report, "quality.duplicate") == []
