"""errors.error_burst on seeded synthetic traffic with a steady background of errors."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from tests.checks_support import T0, iso, opened, run, store_events

CHECK = "errors.error_burst"
BUCKET_MINUTES = 5


def events(agent: str, action: str, days: int, peak: float, error_share: float, seed: int,
           changes: tuple[tuple[datetime, datetime, float, float, str], ...] = ()) -> list[dict]:
    """Weekday traffic (a bell from 7:00 to 18:00, `peak` events an hour) with `error_share` of errors coded
    'validation'; each change (from, to, traffic factor, error share, error code) overrides a stretch."""
    rng = np.random.default_rng(seed)
    starts = np.arange(days * 24 * 60 // BUCKET_MINUTES) * BUCKET_MINUTES
    hour = (starts % (24 * 60)) / 60
    rate = peak * np.array([0.03 + (math.sin(math.pi * (h - 7) / 11) if 7 <= h <= 18 else 0) for h in hour])
    rate = rate * np.where((starts // (24 * 60)) % 7 >= 5, 0.15, 1.0) * BUCKET_MINUTES / 60
    share = np.full(starts.size, error_share)
    code = np.full(starts.size, "validation", dtype=object)
    at = np.array([T0 + timedelta(minutes=int(m)) for m in starts])
    for begin, end, factor, changed_share, changed_code in changes:
        inside = (at >= begin) & (at < end)
        rate = np.where(inside, rate * factor, rate)
        share = np.where(inside, changed_share, share)
        code = np.where(inside, changed_code, code)
    counts = rng.poisson(rate)
    bucket = np.repeat(np.arange(starts.size), counts)
    minutes = starts[bucket] + rng.uniform(0, BUCKET_MINUTES, bucket.size)
    failed = rng.random(bucket.size) < share[bucket]
    out = []
    for i, (minute, fail, b) in enumerate(zip(minutes, failed, bucket, strict=True)):
        event = {"event_id": f"{action}-{seed}-{i}", "ts": iso(T0 + timedelta(minutes=float(minute))),
                 "agent_id": agent, "action": action, "resource": {"type": "lead", "id": f"L-{i}"},
                 "status": "error" if fail else "ok"}
        if fail:
            event["error"] = {"code": str(code[b]), "message": f"{code[b]} on {action}"}
        out.append(event)
    return out


def loud(report) -> list:
    return [(at, i) for at, i in opened(report, CHECK) if i.severity in ("warning", "critical")]


def test_error_burst_fires_on_crm_write_timeouts(home, query):
    """CRM writes timing out 60% of the time open a critical burst within 30 minutes, naming the error code."""
    fault_at = T0 + timedelta(days=3, hours=10, minutes=3)  # Thursday morning, 3 days of 1% errors before
    writes = events("lead-router", "crm.update_field", 4, peak=40, error_share=0.01, seed=1,
                    changes=((fault_at, fault_at + timedelta(hours=3), 1.0, 0.6, "CRM_TIMEOUT"),))
    routes = events("lead-router", "lead.route", 4, peak=40, error_share=0.01, seed=2)
    store_events(home, actions=writes + routes)
    report = run(home, fault_at - timedelta(hours=2), fault_at + timedelta(hours=2), only=[CHECK])
    assert not report.failures
    fired = loud(report)
    assert [i.subject for _, i in fired] == [{"agent_id": "lead-router", "action": "crm.update_field"}]
    at, incident = fired[0]
    assert at - fault_at <= timedelta(minutes=30)
    assert incident.severity == "critical"
    assert abs(incident.started_at - fault_at) <= timedelta(minutes=10)
    evidence = incident.evidence
    assert evidence["agents"] == ["lead-router"]
    assert evidence["baseline_share"] < 0.05 and evidence["current_share"] >= 0.4
    assert next(iter(evidence["error_codes"])) == "CRM_TIMEOUT"
    ids = incident.sample_event_ids
    assert ids and query(f"SELECT DISTINCT status FROM actions WHERE event_id IN ({', '.join('?' * len(ids))})",
                         ids) == [("error",)]


def test_error_burst_quiet_on_scattered_errors_and_more_traffic(home):
    """Twice the traffic at the usual error share, and a few scattered errors on a clean action, open nothing."""
    day = T0 + timedelta(days=3)
    busy = events("lead-router", "crm.update_field", 5, peak=40, error_share=0.03, seed=3,
                  changes=((day, day + timedelta(days=1), 2.0, 0.03, "validation"),))
    scattered = events("enricher", "lead.enrich", 5, peak=20, error_share=0.0, seed=4,
                       changes=((day + timedelta(hours=9), day + timedelta(hours=17), 1.0, 0.05, "timeout"),))
    store_events(home, actions=busy + scattered)
    report = run(home, day, day + timedelta(days=2) - timedelta(minutes=15), only=[CHECK])
    assert not report.failures
    assert loud(report) == []
