"""The approval-gate checks on seeded synthetic approval traffic: office-hours approvers, nights and weekends.

Agents ask for approval around the clock, most of it in office hours; approvers (8:00 to 18:00 UTC, Monday to
Friday, which the checks learn from the answers) answer within minutes in office hours and clear the night's and the
weekend's queue in the first half hour of the morning. Each fault starts at an exact time; subject B (lead-router x
lead.reassign, approver mgr-3) carries the benign look-alikes in the same stream, and a gate served by managers in
three regions (UTC-5, +2 and +8, each answering its own region's requests within three hours in its office hours,
else the next local morning) the overnight waits at nearly every hour of the day.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from agentwatch.app.config import Config
from agentwatch.checks.engine import backtest_steps, enabled_checks, evaluate
from agentwatch.checks.incidents import IncidentStore
from agentwatch.core.home import Home
from agentwatch.store.kept_rows import KeptRows
from tests.checks_support import T0, iso, opened, run, store_events

CHECKS = ["approval.queue_backlog", "approval.latency", "approval.rubber_stamp"]
A = {"agent_id": "follow-up", "action": "email.send"}  # the subject the faults hit
B = {"agent_id": "lead-router", "action": "lead.reassign"}  # the look-alikes' subject
DAYS = 18  # Monday T0 to Thursday of the third week
FAULT = T0 + timedelta(days=15, hours=10, minutes=7)  # Tuesday of the third week, mid-morning
START, END = T0 + timedelta(days=14), T0 + timedelta(days=17, hours=18)
MAX_WAIT = timedelta(hours=4)  # approval.queue_backlog's default max_wait_minutes: the limit of a request whose
#                                 like is answered within minutes
OPEN, CLOSE = 8, 18


@dataclass(frozen=True)
class Answer:
    approver: str
    approved_at: datetime
    status: str = "ok"  # or "skipped": rejected


Answering = Callable[[random.Random, datetime, int], Answer | None]  # (rng, request time, request number)


def in_office(at: datetime) -> bool:
    return at.weekday() < 5 and OPEN <= at.hour < CLOSE


def next_office(at: datetime) -> datetime:
    """When approvers first see a request made at `at`: at once in office hours, else the next opening."""
    if in_office(at):
        return at
    day = at.replace(hour=OPEN, minute=0, second=0, microsecond=0)
    if at.hour >= OPEN:
        day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def after_office_time(at: datetime, spent: timedelta) -> datetime:
    """The time `spent` of office time after `at`."""
    start = next_office(at)
    while True:
        closing = start.replace(hour=CLOSE, minute=0, second=0, microsecond=0)
        if start + spent <= closing:
            return start + spent
        spent -= closing - start
        start = next_office(closing)


def usual(approvers: tuple[str, ...], sometimes_fast: str | None = None) -> Answering:
    """Approvers who read: seen at once in office hours (else within 30 minutes of the opening), approved after a
    median 8 minutes; 10% rejected. One in ten of `sometimes_fast`'s answers come within 5 seconds (watching the
    queue as a request arrives)."""

    def answer(rng: random.Random, at: datetime, n: int) -> Answer:
        seen = next_office(at)
        if seen != at:
            seen += timedelta(minutes=rng.uniform(0, 30))
        review = timedelta(seconds=rng.lognormvariate(math.log(480), 0.7))
        approver = rng.choice(approvers)
        if approver == sometimes_fast and rng.random() < 0.1:
            review = timedelta(seconds=rng.uniform(1, 5))
        return Answer(approver, seen + review, "skipped" if rng.random() < 0.1 else "ok")

    return answer


def gate(subject: dict[str, str], answering: Answering, seed: int, days: int = DAYS, prefix: str = "") -> list[dict]:
    """`days` of requests (every 10-30 min in office hours, every 1-3 h otherwise) and their answers."""
    rng = random.Random(seed)
    events, at, n = [], T0 + timedelta(minutes=rng.uniform(0, 30)), 0
    prefix = prefix or subject["action"]
    while at < T0 + timedelta(days=days):
        n += 1
        record = {"agent_id": subject["agent_id"], "action": subject["action"],
                  "resource": {"type": "lead", "id": f"L-{prefix}-{n}"}}
        events.append({**record, "event_id": f"{prefix}-{n}-req", "ts": iso(at), "status": "pending_approval"})
        answer = answering(rng, at, n)
        if answer is not None:
            if answer.status == "skipped":
                events.append({**record, "event_id": f"{prefix}-{n}-ans", "ts": iso(answer.approved_at),
                               "status": "skipped"})
            else:
                events.append({**record, "event_id": f"{prefix}-{n}-ans", "status": "ok", "external": True,
                               "ts": iso(answer.approved_at + timedelta(seconds=rng.uniform(5, 60))),
                               "approval": {"approved_by": answer.approver, "approved_at": iso(answer.approved_at)}})
        gap = (10, 30) if in_office(at) else (60, 180)
        at += timedelta(minutes=rng.uniform(*gap))
    return events


def look_alikes() -> Answering:
    """Subject B: one request answered two working days late (Monday of the third week), three answered after four
    office hours (Wednesday), everything else as usual."""
    normal = usual(("mgr-3",))
    slow_day = T0 + timedelta(days=14, hours=9)
    few_slow = T0 + timedelta(days=16, hours=9)
    chosen: dict[str, list[datetime]] = {"one": [], "few": []}

    def answer(rng: random.Random, at: datetime, n: int) -> Answer:
        if at >= slow_day and in_office(at) and not chosen["one"]:
            chosen["one"].append(at)
            return Answer("mgr-3", after_office_time(at, timedelta(hours=20)))
        if at >= few_slow and in_office(at) and len(chosen["few"]) < 3 and n % 2 == 0:
            chosen["few"].append(at)
            return Answer("mgr-3", after_office_time(at, timedelta(hours=4)))
        return normal(rng, at, n)

    return answer


def stream(fault: Answering) -> list[dict]:
    return gate(A, fault, seed=1) + gate(B, look_alikes(), seed=2)


def requests_of(events: list[dict], subject: dict[str, str]) -> list[tuple[datetime, datetime | None]]:
    """(request time, answer event time or None) of a subject's requests."""
    answers = {e["event_id"].removesuffix("-ans"): parse(e["ts"]) for e in events if e["event_id"].endswith("-ans")}
    return [(parse(e["ts"]), answers.get(e["event_id"].removesuffix("-req")))
            for e in events if e["status"] == "pending_approval" and e["action"] == subject["action"]]


def reviews(events: list[dict], approver: str) -> list[tuple[datetime, timedelta]]:
    """(answer event time, approved_at minus the request's time) of an approver's approvals, in answer order."""
    requested = {e["event_id"].removesuffix("-req"): parse(e["ts"]) for e in events
                 if e["status"] == "pending_approval"}
    return sorted((parse(e["ts"]), parse(e["approval"]["approved_at"]) - requested[e["event_id"].removesuffix("-ans")])
                  for e in events if e.get("approval", {}).get("approved_by") == approver)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def quiet_on_b(report, check: str) -> None:
    assert [i.subject for _, i in opened(report, check) if i.subject.get("agent_id") == B["agent_id"]] == []


# --- clean traffic ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_events() -> list[dict]:
    return gate(A, usual(("mgr-1", "mgr-2"), sometimes_fast="mgr-2"), seed=1) + gate(B, look_alikes(), seed=2)


def test_clean_traffic_with_weekends_and_slow_answers_stays_quiet(home: Home, clean_events) -> None:
    """Twelve days with two weekends (the first while the checks are still learning the queue's weekly rhythm),
    the night's and the weekend's queues answered in the morning, one answer two days late, a few after half a day
    and an approver who answers 10% within seconds: no check fires."""
    store_events(home, actions=clean_events)
    report = run(home, T0 + timedelta(days=5), END, every=timedelta(minutes=15), only=CHECKS)
    assert report.failures == {}
    assert report.opened == []
    # The look-alikes were there to be ignored: Monday's opening saw the weekend's queue, each request of it far
    # older than the limit in wall-clock time ...
    monday = T0 + timedelta(days=14, hours=OPEN)
    weekend = [r for r, answered in requests_of(clean_events, A)
               if r <= monday and (answered is None or answered > monday)]
    assert len(weekend) >= 20 and monday - min(weekend) > timedelta(days=2)
    # ... one request waited two working days, and mgr-2 answered some within 10 seconds.
    b_waits = [answered - r for r, answered in requests_of(clean_events, B) if answered]
    assert max(b_waits) > timedelta(days=1)
    assert sum(review < timedelta(seconds=10) for _, review in reviews(clean_events, "mgr-2")) >= 10


# --- approval.queue_backlog ------------------------------------------------------------------------------


def stops_answering(normal: Answering, at: datetime = FAULT) -> Answering:
    """Approvers answer as usual, except that nothing is answered from `at` on."""
    stop = at

    def answer(rng: random.Random, at: datetime, n: int) -> Answer | None:
        given = normal(rng, at, n)
        return given if given.approved_at < stop else None

    return answer


def test_backlog_fires_on_the_growing_queue_before_requests_are_overdue(home: Home) -> None:
    """Approvers of A stop answering at FAULT: the queue passes its usual size at this hour of the week (at most 1
    or 2) by ten within a few hours, before the third request passes its 4-hour limit (its like, made on a Tuesday
    morning, is answered within minutes); once requests have waited a day past their limit the incident is critical
    (email.send reaches outside). B's single late answer stays quiet."""
    events = stream(stops_answering(usual(("mgr-1", "mgr-2"))))
    store_events(home, actions=events)
    report = run(home, START, END, only=["approval.queue_backlog"])
    assert report.failures == {}
    quiet_on_b(report, "approval.queue_backlog")
    (at, incident), = opened(report, "approval.queue_backlog")
    assert incident.subject == A
    stuck = sorted(r for r, answered in requests_of(events, A) if answered is None)
    assert FAULT < at <= stuck[2] + MAX_WAIT + timedelta(minutes=15), at
    usual_queue = incident.evidence["usual_waiting_same_hour"]
    assert usual_queue <= 2 and incident.evidence["waiting"] >= usual_queue + 10
    assert incident.severity == "warning" and incident.started_at == stuck[0]
    [final] = [i for i in report.incidents if i.id == incident.id]
    assert final.status == "open" and final.severity == "critical" and final.evidence["expired"] >= 1


def test_backlog_fires_within_minutes_of_the_third_request_passing_the_limit(home: Home) -> None:
    """The same fault with the growth test off (min_queue_excess 1000): fires within one evaluation (15 minutes) of
    the third stuck request passing its limit (min_overdue 3), so within 75 minutes of the first. The limit is the
    4-hour floor: Tuesday morning's requests of the two weeks before were answered within minutes."""
    events = stream(stops_answering(usual(("mgr-1", "mgr-2"))))
    store_events(home, actions=events)
    config = {"checks": {"approval.queue_backlog": {"min_queue_excess": 1000}}}
    report = run(home, START, END, config=config, only=["approval.queue_backlog"])
    assert report.failures == {}
    quiet_on_b(report, "approval.queue_backlog")
    (at, incident), = opened(report, "approval.queue_backlog")
    stuck = sorted(r for r, answered in requests_of(events, A) if answered is None)
    first_overdue, third_overdue = (r + MAX_WAIT for r in (stuck[0], stuck[2]))
    assert third_overdue < at <= third_overdue + timedelta(minutes=15), (at, third_overdue)
    assert at - first_overdue <= timedelta(minutes=75)
    assert incident.evidence["overdue"] == 3 and incident.started_at == stuck[0]
    assert incident.evidence["oldest_limit_hours"] == MAX_WAIT / timedelta(hours=1)


def shifted(events: list[dict], by: timedelta) -> list[dict]:
    """The same traffic `by` later: approvers whose office hours are 8:00 to 18:00 in another time zone."""
    moved = []
    for event in events:
        event = {**event, "ts": iso(parse(event["ts"]) + by)}
        if "approval" in event:
            event["approval"] = {**event["approval"], "approved_at": iso(parse(event["approval"]["approved_at"]) + by)}
        moved.append(event)
    return moved


def test_approvers_far_from_utc_are_judged_like_those_in_it(home: Home) -> None:
    """Approvers working 8:00 to 18:00 eight hours behind UTC (16:00 to 02:00 UTC), nothing configured: the same
    twelve days stay quiet on A and B, and C's approvers stopping at FAULT still fire the backlog in time."""
    pacific = timedelta(hours=8)
    stalled = {"agent_id": "qualifier", "action": "lead.disqualify"}
    c_events = gate(stalled, stops_answering(usual(("mgr-6",))), seed=5)
    store_events(home, actions=shifted(gate(A, usual(("mgr-1", "mgr-2"), sometimes_fast="mgr-2"), seed=1)
                                       + gate(B, look_alikes(), seed=2) + c_events, pacific))
    report = run(home, T0 + timedelta(days=5) + pacific, END + pacific, only=CHECKS)
    assert report.failures == {}
    (at, incident), = report.opened
    assert incident.check == "approval.queue_backlog" and incident.subject == stalled
    stuck = sorted(r for r, answered in requests_of(c_events, stalled) if answered is None)
    assert FAULT + pacific < at <= stuck[2] + pacific + MAX_WAIT + timedelta(minutes=15), at


# --- a gate served from three regions --------------------------------------------------------------------

M = {"agent_id": "sequencer", "action": "email.first_touch"}
REGIONS = {"na": -5, "emea": 2, "apac": 8}  # the managers' UTC offsets, hours
M_DAYS = 22  # a week learnt, two judged
FAULT_M = T0 + timedelta(days=15, hours=15, minutes=7)  # Tuesday 10:07 in North America, 17:07 in Europe, 23:07 in Asia


def within_three_hours(approvers: tuple[str, ...]) -> Answering:
    """A region's managers, as the demo's: a request is approved 10 minutes to 3 hours after it is made when that
    falls in their office hours, else within an hour of their next opening (a request made late in the afternoon
    waits for the next morning)."""

    def answer(rng: random.Random, at: datetime, n: int) -> Answer:
        approved_at = at + timedelta(minutes=rng.uniform(10, 180))
        if not in_office(approved_at):
            approved_at = next_office(approved_at) + timedelta(minutes=rng.uniform(0, 60))
        return Answer(rng.choice(approvers), approved_at)

    return answer


def regional_gate(stop_at: datetime | None = None) -> list[dict]:
    """M's requests from the three regions, each made (every 10-30 minutes in its office hours, every 1-3 hours
    otherwise) and answered by its own managers in its own local time; every manager stops answering at `stop_at`."""
    events = []
    for seed, (region, offset) in enumerate(REGIONS.items(), start=20):
        answering = within_three_hours((f"mgr-{region}-1", f"mgr-{region}-2"))
        if stop_at is not None:
            answering = stops_answering(answering, stop_at + timedelta(hours=offset))
        local = gate(M, answering, seed, days=M_DAYS, prefix=f"{M['action']}-{region}")
        events += shifted(local, timedelta(hours=-offset))
    return events


def test_a_gate_served_from_three_regions_stays_quiet(home: Home) -> None:
    """Managers in UTC-5, +2 and +8 each answer their region's requests: answers come at nearly every hour of the
    day (UTC), and at most hours some requests wait for their managers' next morning. Two weeks judged after a week
    learnt: no check fires."""
    events = regional_gate()
    store_events(home, actions=events)
    report = run(home, T0 + timedelta(days=7), T0 + timedelta(days=M_DAYS - 1), only=CHECKS)
    assert report.failures == {}
    assert report.opened == []
    # The look-alike was there: answers at nearly every hour, and overnight waits of requests made at most hours.
    requests = [(made, answered) for made, answered in requests_of(events, M) if answered]
    assert len({answered.hour for _, answered in requests}) >= 22
    assert len({made.hour for made, answered in requests if answered - made > timedelta(hours=8)}) >= 20


def test_backlog_fires_on_a_gate_served_from_three_regions(home: Home) -> None:
    """Every manager of M stops answering at FAULT_M: the backlog fires within 18 hours, by the queue's growth to
    three times its usual size, before the stuck requests pass their limits. Both are slower than on a one-region
    gate, and must be: at any hour two regions' overnight requests wait (a usual queue of about 20), and requests
    made at most hours wait up to 16 hours for their managers' morning (limits of about a day)."""
    events = regional_gate(stop_at=FAULT_M)
    store_events(home, actions=events)
    report = run(home, T0 + timedelta(days=14), T0 + timedelta(days=17), only=["approval.queue_backlog"])
    assert report.failures == {}
    (at, incident), = report.opened
    assert incident.subject == M
    assert FAULT_M < at <= FAULT_M + timedelta(hours=18), at
    stuck = sorted(made for made, answered in requests_of(events, M) if answered is None)
    assert incident.started_at == stuck[0]
    usual_queue = incident.evidence["usual_waiting_same_hour"]
    assert usual_queue >= 15 and incident.evidence["waiting"] >= 3 * usual_queue


# --- approval.latency ------------------------------------------------------------------------------------


def slows_down(normal: Answering) -> Answering:
    """Requests made from FAULT on are approved after 2.5 to 4 office hours."""

    def answer(rng: random.Random, at: datetime, n: int) -> Answer:
        given = normal(rng, at, n)
        if at < FAULT:
            return given
        return Answer(given.approver, after_office_time(at, timedelta(hours=rng.uniform(2.5, 4))))

    return answer


def test_latency_fires_within_hours_of_approvals_slowing_and_not_on_a_few_slow_answers(home: Home) -> None:
    """A's approvals go from minutes to hours at FAULT: fires within 8 hours, started at a request made after FAULT.
    B's three slow answers and the weekend's morning queue stay quiet."""
    store_events(home, actions=stream(slows_down(usual(("mgr-1", "mgr-2")))))
    report = run(home, START, END, only=["approval.latency"])
    assert report.failures == {}
    quiet_on_b(report, "approval.latency")
    (at, incident), = opened(report, "approval.latency")
    assert incident.subject == A
    assert FAULT < at <= FAULT + timedelta(hours=8), at
    assert FAULT <= incident.started_at <= FAULT + timedelta(hours=1)
    usual_minutes = incident.evidence["usual_median_minutes"]
    assert usual_minutes <= 20 and incident.evidence["median_minutes"] >= 3 * usual_minutes
    assert 2 * incident.evidence["slow_approvals"] >= incident.evidence["recent_approvals"] >= 6


# --- approval.rubber_stamp -------------------------------------------------------------------------------


def stamps_from_fault(normal: Answering) -> Answering:
    """mgr-1 approves within 1-3 seconds of seeing a request from FAULT on (mgr-2 reads, and answers 10% fast)."""

    def answer(rng: random.Random, at: datetime, n: int) -> Answer:
        given = normal(rng, at, n)
        if given.approver != "mgr-1" or at < FAULT:
            return given
        seen = next_office(at)
        seen += timedelta(minutes=rng.uniform(0, 30)) if seen != at else timedelta(0)
        return Answer("mgr-1", seen + timedelta(seconds=rng.uniform(1, 3)))

    return answer


def test_rubber_stamp_fires_on_the_approver_who_stamps_and_not_on_one_sometimes_fast(home: Home) -> None:
    """mgr-1 approves in seconds from FAULT: fires on mgr-1 within 30 minutes of their tenth such approval (half of
    the last twenty), started at FAULT's first stamp; mgr-2, fast one time in ten, and mgr-3 stay quiet."""
    events = stream(stamps_from_fault(usual(("mgr-1", "mgr-2"), sometimes_fast="mgr-2")))
    store_events(home, actions=events)
    report = run(home, START, END, only=["approval.rubber_stamp"])
    assert report.failures == {}
    (at, incident), = opened(report, "approval.rubber_stamp")
    assert incident.subject == {"approver": "mgr-1"}
    fast = [answered for answered, review in reviews(events, "mgr-1") if review < timedelta(seconds=10)]
    assert len(fast) >= 10 and fast[0] >= FAULT
    assert fast[9] <= at <= fast[9] + timedelta(minutes=30), (at, fast[9])
    assert abs(incident.started_at - fast[0]) <= timedelta(minutes=1)
    assert incident.evidence["fast_share"] >= 0.5 and incident.evidence["agents"] == ["follow-up"]


# --- the kept aggregates ---------------------------------------------------------------------------------


def test_kept_aggregates_open_the_incidents_that_computing_from_the_events_opens(home: Home, tmp_path) -> None:
    """The requests and answers kept in the home per day (a backtest storing them, and serve's one-step runs holding
    them between runs) give the incidents a recompute from the events gives, for all three faults at once."""
    stamped = {"agent_id": "follow-up", "action": "sequence.enroll"}
    slowed = {"agent_id": "enricher", "action": "crm.update_field"}
    store_events(home, actions=stream(stops_answering(usual(("mgr-4",)))) + gate(
        stamped, stamps_from_fault(usual(("mgr-1", "mgr-2"), sometimes_fast="mgr-2")), seed=3)
        + gate(slowed, slows_down(usual(("mgr-5",))), seed=4))
    steps = backtest_steps(START, END, timedelta(hours=3))
    config = Config()

    def seen(report) -> set[tuple]:
        return {(at, i.check, json.dumps(i.subject, sort_keys=True), i.started_at) for at, i in report.opened}

    afresh = seen(evaluate(home, config, steps, IncidentStore(tmp_path / "afresh.sqlite3"), only=CHECKS,
                           recompute=True))
    assert {check for _, check, _, _ in afresh} == set(CHECKS)
    stored = evaluate(home, config, steps, IncidentStore(tmp_path / "stored.sqlite3"), only=CHECKS, small_range_bytes=0)
    assert stored.failures == {} and seen(stored) == afresh
    assert any(home.aggregates.glob("approval_answers-v1/day=*.parquet"))
    checks, kept, live = enabled_checks(config, only=CHECKS), KeptRows(), IncidentStore(tmp_path / "live.sqlite3")
    opened_live: set[tuple] = set()
    for at in steps:
        report = evaluate(home, config, [at], live, checks=checks, now=at, kept=kept, small_range_bytes=0)
        assert report.failures == {}
        opened_live |= seen(report)
    assert opened_live == afresh


def test_a_request_abandoned_weeks_ago_never_takes_a_new_requests_answer(home: Home) -> None:
    """Record L-1: a request on day 0 is never answered; a new one on day 20 is approved 5 minutes later. The new one
    is paired with that answer (5 minutes), the old one stays unanswered. Record L-2: a request re-sent an hour later
    before its answer is one request, answered at the answer."""
    from agentwatch.checks.approval import approval_requests
    from agentwatch.checks.config import ChecksConfig
    from agentwatch.checks.data import EvalData
    from agentwatch.store.reader import open_reader

    def event(n: int, at: datetime, record: str, status: str, **extra: object) -> dict:
        return {"event_id": f"e-{n}", "ts": iso(at), "agent_id": "followup-agent", "action": "email.send",
                "resource": {"type": "lead", "id": record}, "status": status, **extra}

    old, new = T0, T0 + timedelta(days=20)
    approval = {"approved_by": "mgr-1", "approved_at": iso(new + timedelta(minutes=5))}
    store_events(home, actions=[
        event(1, old, "L-1", "pending_approval"), event(2, new, "L-1", "pending_approval"),
        event(3, new + timedelta(minutes=6), "L-1", "ok", approval=approval),
        event(4, new, "L-2", "pending_approval"), event(5, new + timedelta(hours=1), "L-2", "pending_approval"),
        event(6, new + timedelta(hours=2), "L-2", "ok", approval=approval)])
    at = new + timedelta(days=1)
    con = open_reader(home)
    try:
        data = EvalData(con=con, config=ChecksConfig(), first=at, last=at, load_from=T0 - timedelta(days=1))
        rows = {r["request_id"]: r for r in approval_requests(data).iter_rows(named=True)}
    finally:
        con.close()
    assert set(rows) == {"e-1", "e-2", "e-4"}  # e-5 re-sent e-4
    assert rows["e-1"]["answered_at"] is None
    assert rows["e-2"]["answered_at"] - rows["e-2"]["requested_at"] == timedelta(minutes=6)
    assert rows["e-4"]["answered_at"] - rows["e-4"]["requested_at"] == timedelta(hours=2)
