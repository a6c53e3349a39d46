"""drift.distribution: decision outputs drifting after a model change fire; volume changes and harmless version
bumps stay quiet."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agentwatch.app.config import Config
from agentwatch.checks.drift import Column, Score, _evidently, _statistic
from agentwatch.checks.engine import backtest_steps, enabled_checks, evaluate
from agentwatch.checks.incidents import IncidentStore
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from agentwatch.store.rollups import floor_to
from tests.checks_support import T0, iso, opened, run, store_events

CHECK = "drift.distribution"
AGENT, ACTION = "qualifier-agent", "lead.qualify"
SEGMENTS, SEGMENT_P = ["smb", "mid", "ent"], [0.6, 0.3, 0.1]
REGIONS, REGION_P = ["NA", "EMEA", "APAC", "LATAM"], [0.5, 0.3, 0.15, 0.05]
HOURLY = np.array([1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 10, 10, 9, 10, 10, 9, 8, 6, 4, 3, 2, 2, 1, 1], dtype=float)
# Small windows keep the tests fast: a 3-day reference, 1,000-row samples.
OPTIONS = {"checks": {CHECK: {"reference_days": 3, "max_rows": 1000}}}


def _traffic(days: int, per_day: float, seed: int, shift_at: datetime | None = None, shift: float = 0.0,
             bump_at: datetime | None = None, growth: float = 0.0, mix_at: datetime | None = None) -> list[dict]:
    """Qualifier decisions from T0 for `days` days: hour-of-day and weekday rhythm, volume growing by `growth`
    per day; scores move up by `shift` from `shift_at`; the agent version goes 2.3.0 -> 2.4.0 at `bump_at`;
    from `mix_at` the leads' segment and region mix turns around (inputs only: scores do not change)."""
    rng = np.random.default_rng(seed)
    events = []
    for hour in range(days * 24):
        start = T0 + timedelta(hours=hour)
        weekend = start.weekday() >= 5
        rate = per_day * HOURLY[start.hour] / HOURLY.sum() * (0.3 if weekend else 1.0) * (1 + growth) ** (hour / 24)
        for _ in range(rng.poisson(rate)):
            at = start + timedelta(seconds=float(rng.uniform(0, 3600)))
            score = float(np.clip(rng.normal(0.5, 0.15), 0, 1))
            if shift_at is not None and at >= shift_at:
                score = float(np.clip(score + shift, 0, 1))
            version = "2.4.0" if bump_at is not None and at >= bump_at else "2.3.0"
            lead = f"L-{len(events):06d}"
            mixed = mix_at is not None and at >= mix_at
            segment_p, region_p = (SEGMENT_P[::-1], REGION_P[::-1]) if mixed else (SEGMENT_P, REGION_P)
            events.append({
                "event_id": f"q-{seed}-{len(events):06d}", "ts": iso(at), "agent_id": AGENT, "agent_version": version,
                "action": ACTION, "resource": {"type": "lead", "id": lead}, "status": "ok",
                "inputs": {"lead_id": lead, "email": f"{lead.lower()}@example.com",
                           "segment": str(rng.choice(SEGMENTS, p=segment_p)),
                           "region": str(rng.choice(REGIONS, p=region_p)),
                           "employees": int(rng.lognormal(4, 1))},
                "decision": {"qualified": score >= 0.55, "score": round(score, 3),
                             "intent": "high" if score >= 0.72 else "medium" if score >= 0.5 else "low"},
                "confidence": round(float(np.clip(0.55 + 0.9 * abs(score - 0.55) + rng.normal(0, 0.03), 0.5, 0.99)),
                                    3),
            })
    return events


def test_fires_on_score_shift(home: Home) -> None:
    """Scores 0.3 higher after a version bump open one incident within 24 h of it, critical, naming decision.score."""
    shift_at = T0 + timedelta(days=4, hours=10)
    store_events(home, actions=_traffic(6, 800, seed=1, shift_at=shift_at, shift=0.3, bump_at=shift_at))
    report = run(home, T0 + timedelta(days=4), T0 + timedelta(days=5, hours=12), config=OPTIONS, only=[CHECK])
    assert not report.failures
    fired = opened(report, CHECK)
    assert len(fired) == 1
    at, first = fired[0]
    assert first.subject == {"agent_id": AGENT, "action": ACTION}
    assert at - shift_at <= timedelta(hours=24)
    assert abs(first.started_at - shift_at) <= timedelta(hours=2)
    incident = next(i for i in report.incidents if i.id == first.id)  # its state at the end of the run
    assert incident.severity == "critical" and incident.status == "open"
    assert "decision.score" in incident.evidence["drifted_columns"]
    assert incident.evidence["agents"] == [AGENT]
    assert incident.evidence["versions"] == {"reference": ["2.3.0"], "current": ["2.4.0"]}
    score = incident.evidence["columns"]["decision.score"]
    assert score["method"] == "Wasserstein distance (normed)" and score["score"] > 0.5
    reported = {m["column"]: m for m in incident.evidence["report"] if m["column"]}
    assert reported["decision.score"]["method"] == "wasserstein" and reported["decision.score"]["value"] > 0.5
    assert incident.evidence["report_at"] is not None
    assert "inputs.email" not in incident.evidence["scores"]  # free text and ids are never compared
    assert "inputs.lead_id" not in incident.evidence["scores"]
    assert "decision.score" in incident.summary and len(incident.sample_event_ids) == 20


def test_quiet_on_growth_seasonality_and_harmless_version_bump(home: Home) -> None:
    """Volume growing 15 % a day through a weekend, and a version bump that changes no output, open nothing."""
    bump_at = T0 + timedelta(days=4, hours=10)
    store_events(home, actions=_traffic(7, 600, seed=2, bump_at=bump_at, growth=0.15))
    report = run(home, T0 + timedelta(days=4), T0 + timedelta(days=7), config=OPTIONS, only=[CHECK])
    assert not report.failures
    assert opened(report, CHECK) == []


def test_input_mix_change_alone_is_info(home: Home) -> None:
    """Leads' segment and region mix turning around while decisions stay put opens an info incident, not a page."""
    mix_at = T0 + timedelta(days=4, hours=10)
    store_events(home, actions=_traffic(6, 800, seed=4, mix_at=mix_at))
    report = run(home, T0 + timedelta(days=4), T0 + timedelta(days=5), config=OPTIONS, only=[CHECK])
    assert not report.failures
    fired = opened(report, CHECK)
    assert len(fired) == 1
    incident = fired[0][1]
    assert incident.severity == "info"
    assert {"inputs.segment", "inputs.region"} <= set(incident.evidence["drifted_columns"])
    assert not any(name.startswith("decision.") for name in incident.evidence["drifted_columns"])


def test_numpy_screen_matches_evidently() -> None:
    """The numpy statistics the check screens with equal Evidently's own values on the same samples."""
    rng = np.random.default_rng(3)
    numbers = np.concatenate([rng.normal(0.5, 0.15, 1500), rng.normal(0.6, 0.15, 800)])
    codes = np.concatenate([rng.choice(3, 1500, p=[0.6, 0.3, 0.1]), rng.choice(3, 800, p=[0.4, 0.4, 0.2])])
    scores = [
        Score(Column("decision.score", "decision", True, numbers), 0.0, 0.0, numbers[:1500], numbers[1500:], 0.1, 3.0),
        Score(Column("decision.intent", "decision", False, codes, ["high", "low", "medium"]), 0.0, 0.0,
              codes[:1500], codes[1500:], 0.1, 3.0),
    ]
    values, report = _evidently(scores, 0.1)
    for score in scores:
        assert abs(values[score.column.name] - _statistic(score.column.numeric, score.reference, score.current)) < 1e-9
    assert {m["method"] for m in report if m["column"]} == {"wasserstein", "jensenshannon"}


def test_serves_minute_runs_read_the_sample_only_when_an_assessment_is_due(home: Home, tmp_path: Path) -> None:
    """`serve` keeps the check object and runs it every few minutes: between two hourly assessments it re-reports
    the verdicts without reading the store, and opens what a backtest at the same times opens."""
    shift_at = T0 + timedelta(days=4, hours=10)
    store_events(home, actions=_traffic(6, 800, seed=1, shift_at=shift_at, shift=0.3, bump_at=shift_at))
    config = Config.model_validate(OPTIONS)
    times = backtest_steps(T0 + timedelta(days=4, hours=9), T0 + timedelta(days=4, hours=20), timedelta(minutes=10))
    [check] = enabled_checks(config, only=[CHECK])
    live = IncidentStore(tmp_path / "live.sqlite3")
    loads, opened_live = [], []
    for at in times:
        report = evaluate(home, config, [at], live, checks=[check])
        assert not report.failures
        if CHECK in report.prepare_seconds:
            loads.append(at)
        else:
            assert report.resting == [CHECK]
        opened_live += [(at, incident.started_at, incident.severity) for at, incident in report.opened]
    replay = evaluate(home, config, times, IncidentStore(tmp_path / "replay.sqlite3"), only=[CHECK])
    assert opened_live and opened_live == [(at, i.started_at, i.severity) for at, i in replay.opened]
    # One read an hour (the first run, then the first of each hourly slot, which starts `phase` past the hour) until
    # the drift opened an incident; from then on every run reads (its clearance may).
    first_open = opened_live[0][0]
    slot = [floor_to(at - check.phase, timedelta(hours=1)) for at in times]
    hourly = [times[0], *(at for at, s, before in zip(times[1:], slot[1:], slot[:-1], strict=True) if s > before)]
    assert [at for at in loads if at <= first_open] == [at for at in hourly if at <= first_open]
    assert len([at for at in loads if at <= first_open]) >= 3


def test_a_one_step_run_extracts_only_its_windows_rows_and_finds_what_the_whole_sample_finds(
        home: Home, tmp_path: Path) -> None:
    """`check` and serve's minute (one evaluation time) extract only the sampled rows the current and reference
    windows can pick, the reference frozen at an open incident's start; the findings are those of a backtest,
    which extracts the whole sample, at the same times: before the drift, as it opens, and a day into it."""
    shift_at = T0 + timedelta(days=4, hours=10)
    store_events(home, actions=_traffic(6, 800, seed=1, shift_at=shift_at, shift=0.3, bump_at=shift_at))
    config = Config.model_validate(OPTIONS)
    times = [T0 + timedelta(days=4, hours=9), T0 + timedelta(days=4, hours=20), T0 + timedelta(days=5, hours=12)]
    live = IncidentStore(tmp_path / "live.sqlite3")
    extracted = []
    for at in times:  # fresh check objects each time, as successive `check` processes
        [check] = enabled_checks(config, only=[CHECK])
        assert not evaluate(home, config, [at], live, checks=[check]).failures
        extracted.append(check.streams[(AGENT, ACTION)].ts.size)
    [whole] = enabled_checks(config, only=[CHECK])
    replay = evaluate(home, config, times, IncidentStore(tmp_path / "replay.sqlite3"), checks=[whole])
    max_rows = OPTIONS["checks"][CHECK]["max_rows"]
    assert max(extracted) <= 2 * max_rows < whole.streams[(AGENT, ACTION)].ts.size

    def seen(incident: Incident) -> tuple:
        keys = ("drifted_columns", "scores", "columns", "current_window", "reference_window", "versions")
        return (incident.subject, incident.severity, incident.started_at, incident.sample_event_ids,
                {k: incident.evidence[k] for k in keys})

    live_incidents = [seen(i) for i in live.list()]
    assert live_incidents and live_incidents == [seen(i) for i in replay.incidents]


def _router_traffic(days: int, per_day: float, seed: int, holiday: tuple[int, str] | None = None,
                    misroute_at: datetime | None = None) -> list[dict]:
    """lead-router's routes from T0: each lead goes to its region's team (route_to follows inputs.region, with 5 %
    escalated). On the `holiday` day (day index, region) that region's leads fall to a tenth, so the mix of routes
    shifts for a day while every route given a region stays right; from `misroute_at` a rule change sends 60 %
    of NA leads to the EMEA team."""
    rng = np.random.default_rng(seed)
    events = []
    for hour in range(days * 24):
        start = T0 + timedelta(hours=hour)
        weekend = start.weekday() >= 5
        for region, share in zip(REGIONS, REGION_P, strict=True):
            off = holiday is not None and hour // 24 == holiday[0] and region == holiday[1]
            rate = per_day * share * HOURLY[start.hour] / HOURLY.sum() * (0.3 if weekend else 1.0) * (0.1 if off
                                                                                                      else 1.0)
            for _ in range(rng.poisson(rate)):
                at = start + timedelta(seconds=float(rng.uniform(0, 3600)))
                team = region.lower()
                if misroute_at is not None and at >= misroute_at and region == "NA" and rng.random() < 0.6:
                    team = "emea"
                route = "escalation" if rng.random() < 0.05 else f"sdr:{team}"
                lead = f"L-{len(events):06d}"
                events.append({
                    "event_id": f"r-{seed}-{len(events):06d}", "ts": iso(at), "agent_id": "lead-router",
                    "action": "lead.route", "resource": {"type": "lead", "id": lead}, "status": "ok",
                    "inputs": {"region": region, "segment": str(rng.choice(SEGMENTS, p=SEGMENT_P))},
                    "decision": {"route_to": route}})
    return events


def test_a_regional_holiday_shifts_routes_as_the_inputs_explain_it_and_pages_nobody(home: Home) -> None:
    """One region's holiday: its leads fall to a tenth for a day, so lead-router's route shares move with the region
    mix of its inputs, and each lead is still routed as before. Reweighted to the day's region mix, the reference
    routes as the holiday did: an info incident at most (the inputs moved), never a page."""
    store_events(home, actions=_router_traffic(6, 1200, seed=5, holiday=(4, "NA")))
    report = run(home, T0 + timedelta(days=4), T0 + timedelta(days=5, hours=6), config=OPTIONS, only=[CHECK])
    assert not report.failures
    assert opened(report, CHECK), "the region mix moved: an info incident says so"
    # Severity only rises while an incident stays open: its final state shows whether it ever paged.
    assert all(incident.severity == "info" for incident in report.incidents), [i.summary for i in report.incidents]
    explained = [i.evidence.get("explained_by_inputs") for i in report.incidents]
    assert {"decision.route_to": ["inputs.region"]} in explained


def test_routes_that_change_for_the_same_inputs_still_page(home: Home) -> None:
    """A rule change sending 60 % of NA leads to the EMEA team moves the route shares with the region mix
    unchanged: reweighting explains nothing, and it pages within 24 h."""
    misroute_at = T0 + timedelta(days=4, hours=10)
    store_events(home, actions=_router_traffic(6, 1200, seed=6, misroute_at=misroute_at))
    report = run(home, T0 + timedelta(days=4), T0 + timedelta(days=5, hours=12), config=OPTIONS, only=[CHECK])
    assert not report.failures
    (at, incident), *_ = opened(report, CHECK)
    assert incident.severity in ("warning", "critical") and timedelta(0) < at - misroute_at <= timedelta(hours=24)
    assert "decision.route_to" in incident.evidence["drifted_columns"]
    assert "explained_by_inputs" not in incident.evidence


def test_reweighting_with_equal_weights_is_the_plain_statistic_and_weights_move_it() -> None:
    """The reweighted statistics are Evidently's formulas with weights: equal weights give the plain score, and
    weights that make the reference look like the current sample bring the score to zero."""
    from agentwatch.checks.drift import _weighted_statistic

    rng = np.random.default_rng(3)
    ref, cur = rng.normal(0, 1, 800), rng.normal(0.4, 1, 600)
    assert _weighted_statistic(True, ref, np.ones(ref.size), cur) == pytest.approx(_statistic(True, ref, cur))
    codes_ref, codes_cur = rng.integers(0, 3, 900), rng.choice(3, 700, p=[0.6, 0.3, 0.1])
    plain = _statistic(False, codes_ref, codes_cur)
    assert _weighted_statistic(False, codes_ref, np.ones(codes_ref.size), codes_cur) == pytest.approx(plain)
    share_ref = np.bincount(codes_ref, minlength=3) / codes_ref.size
    share_cur = np.bincount(codes_cur, minlength=3) / codes_cur.size
    weights = (share_cur / share_ref)[codes_ref]
    assert plain > 0.2 and _weighted_statistic(False, codes_ref, weights, codes_cur) == pytest.approx(0, abs=1e-6)
