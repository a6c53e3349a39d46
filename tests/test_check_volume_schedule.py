"""Scheduled jobs (a nightly sweep, a weekly import) judged as cron monitors judge them, not by the seasonal band.

The issue measured about one false page a day on a hygiene agent's sweep whose start moves by an hour or more:
"went silent at 16:00 UTC: no event in 6 h where about 64 were expected". Here both sweeps start up to three
hours late, at random, every run; a missed run and a tenfold run are the faults, at known times.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from tests.checks_support import T0, iso, opened, run, store_events

SPIKE, DROP = "volume.action_spike", "volume.action_drop"
DAYS = 35
EVAL_FROM = T0 + timedelta(days=28)  # four weeks of history: the weekly import has run four times
NIGHTLY = ("hygiene-agent", "crm.hygiene_sweep", timedelta(hours=2), 64)  # agent, action, usual start, events
WEEKLY = ("import-agent", "lead.import", timedelta(days=6, hours=16), 120)  # Sundays 16:00 UTC
JITTER_H = 3.0


def _run(agent: str, action: str, start: datetime, events: int, tag: str, rng: np.random.Generator) -> list[dict]:
    """One run of a job: `events` events over about 40 minutes from `start`."""
    offsets = np.sort(rng.uniform(0, 40 * 60, events))
    return [{"event_id": f"{tag}-{i}", "ts": iso(start + timedelta(seconds=float(s))), "agent_id": agent,
             "action": action, "resource": {"type": "account", "id": f"A-{tag}-{i}"}, "status": "ok"}
            for i, s in enumerate(offsets)]


def jobs(seed: int = 7, skip_nightly_from: int | None = None, loop_night: int | None = None) -> list[dict]:
    """The two jobs, each run starting 0 to 3 h after its usual time; the nightly stops from a day on, or runs
    ten times its size one night."""
    rng = np.random.default_rng(seed)
    events = []
    for day in range(DAYS):
        agent, action, at, size = NIGHTLY
        late = timedelta(hours=float(rng.uniform(0, JITTER_H)))
        if skip_nightly_from is None or day < skip_nightly_from:
            events += _run(agent, action, T0 + timedelta(days=day) + at + late,
                           size * (10 if day == loop_night else 1), f"n{day}", rng)
    for week in range(DAYS // 7):
        agent, action, at, size = WEEKLY
        late = timedelta(hours=float(rng.uniform(0, JITTER_H)))
        events += _run(agent, action, T0 + timedelta(weeks=week) + at + late, size, f"w{week}", rng)
    # A small working-hours stream beside them, so the drop check has peers.
    for day in range(DAYS):
        if day % 7 < 5:
            for hour in range(8, 18):
                for k in range(int(rng.poisson(12))):
                    at = T0 + timedelta(days=day, hours=hour, minutes=float(rng.uniform(0, 60)))
                    events.append({"event_id": f"r{day}-{hour}-{k}", "ts": iso(at), "agent_id": "lead-router",
                                   "action": "lead.route", "resource": {"type": "lead", "id": f"L{day}{hour}{k}"},
                                   "status": "ok"})
    return events


def paging(report, check: str, agent: str | None = None) -> list:
    return [(at, i) for at, i in opened(report, check)
            if i.severity in ("warning", "critical") and agent in (None, i.subject["agent_id"])]


@pytest.fixture(scope="module")
def clean_report(tmp_path_factory):
    from agentwatch.core.home import Home

    home = Home.resolve(tmp_path_factory.mktemp("schedule-clean"))
    store_events(home, jobs())
    return run(home, EVAL_FROM, T0 + timedelta(days=DAYS), only=[SPIKE, DROP])


def test_jittery_jobs_page_nobody_and_are_learnt_as_scheduled(clean_report) -> None:
    """A week of both jobs starting up to three hours late: no volume page at all."""
    assert paging(clean_report, SPIKE) == [] and paging(clean_report, DROP) == []


def test_the_same_jobs_judged_as_streams_page_falsely(home) -> None:
    """The finding the issue quotes, reproduced: forced to be streams (option `kinds`), the same jittery runs page
    on-call; the learnt kind is what keeps them quiet."""
    store_events(home, jobs())
    forced = {"kinds": {"hygiene-agent/*": "stream", "import-agent/lead.import": "stream"}}
    report = run(home, EVAL_FROM, T0 + timedelta(days=DAYS), only=[SPIKE, DROP],
                 config={"checks": {SPIKE: forced, DROP: forced}})
    assert paging(report, SPIKE) + paging(report, DROP)


def test_a_missed_nightly_run_fires_after_its_learnt_grace(home) -> None:
    """The sweep stops from night 30: the drop fires once the run is later than its jitter explains (at most the
    usual start, plus 3 h of jitter, plus a grace of 1.5 x that, plus one step), not before its usual time."""
    store_events(home, jobs(skip_nightly_from=30))
    report = run(home, EVAL_FROM, T0 + timedelta(days=DAYS), only=[SPIKE, DROP])
    (at, incident), *_ = paging(report, DROP, "hygiene-agent")
    usual = T0 + timedelta(days=30) + NIGHTLY[2]
    assert usual < at <= usual + timedelta(hours=JITTER_H * 2.5, minutes=15)
    assert incident.subject == {"agent_id": "hygiene-agent", "action": "crm.hygiene_sweep"}
    assert incident.evidence["kind"] == "scheduled" and incident.evidence["interval_hours"] == pytest.approx(24, abs=2)
    assert "missed its usual run" in incident.summary and incident.severity == "warning"
    assert paging(report, DROP, "import-agent") == [] and paging(report, SPIKE) == []
    assert incident.sample_event_ids and all(i.startswith("n29-") for i in incident.sample_event_ids)


def test_a_run_ten_times_its_usual_size_is_a_spike(home) -> None:
    """Night 30's run is ten times the usual 64 events: the spike fires during that run, within 45 minutes of its
    start, as soon as the run passes `spike_ratio` (5) times the usual run."""
    store_events(home, jobs(loop_night=30))
    report = run(home, EVAL_FROM, T0 + timedelta(days=DAYS), only=[SPIKE, DROP])
    ((at, incident),) = paging(report, SPIKE)
    usual = T0 + timedelta(days=30) + NIGHTLY[2]
    assert usual < at <= usual + timedelta(hours=JITTER_H, minutes=45)
    assert incident.evidence["usual_run_events"] == 64 and incident.evidence["ratio"] >= 5
    assert paging(report, DROP) == []


def _nightly_matrix(days: int, hours: float, seed: int = 3) -> np.ndarray:
    """One row of 5-minute buckets: a job every night at 01:00 plus up to an hour, lasting `hours`."""
    rng = np.random.default_rng(seed)
    events = np.zeros((1, days * 288))
    for day in range(days):
        start = day * 288 + 12 + int(rng.integers(0, 12))
        events[0, start:start + int(hours * 12)] = 3
    return events


def test_a_schedule_is_judged_from_the_look_back_before_its_time_only() -> None:
    """A nightly job busy 10 % of the time, judged on day 31: the same schedule whether 31 or 60 days are loaded (a
    live run or a long backtest), so later events never decide what an earlier step saw."""
    from agentwatch.checks.schedule import RunIndex, ScheduleRules

    rules = ScheduleRules(idle_gap=24, look_back=29 * 288, min_runs=3, regularity=0.35, jitter_multiple=1.5,
                          grace_share=0.1, min_grace=6, max_active_share=0.15)
    end = 30 * 288 + 100
    short, long = (RunIndex(_nightly_matrix(days, 2.4), rules) for days in (31, 60))
    assert short.schedule(0, end) is not None
    assert short.schedule(0, end) == long.schedule(0, end)


def test_kinds_makes_a_busy_job_scheduled_and_refuses_a_malformed_key() -> None:
    """A 5-hour nightly job (21 % busy) is a stream unless the user says otherwise; `kinds` then makes it one. A key
    without agent_id/action is refused with the rule in the message."""
    from pydantic import ValidationError

    from agentwatch.checks.schedule import RunIndex, ScheduleRules
    from agentwatch.checks.volume import DropOptions

    rules = ScheduleRules(idle_gap=24, look_back=29 * 288, min_runs=3, regularity=0.35, jitter_multiple=1.5,
                          grace_share=0.1, min_grace=6, max_active_share=0.15)
    index = RunIndex(_nightly_matrix(31, 5), rules)
    end = 31 * 288
    assert index.schedule(0, end) is None
    forced = index.schedule(0, end, forced=True)
    assert forced is not None and forced.interval == pytest.approx(288, abs=12)
    with pytest.raises(ValidationError, match="agent_id/action"):
        DropOptions.model_validate({"kinds": {"hygiene-agent.crm.sweep": "scheduled"}})
