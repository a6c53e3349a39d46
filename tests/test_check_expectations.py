"""quality.expectation_failed: Great Expectations suites from the config over recent actions and outcomes."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from agentwatch.app.config import Config
from agentwatch.checks.engine import enabled_checks, evaluate, incident_store
from agentwatch.core.errors import ConfigError
from tests.checks_support import T0, iso, opened, run, store_events

START = T0 + timedelta(hours=8)
FAULT = T0 + timedelta(hours=10, minutes=20)
END = T0 + timedelta(hours=13)
OWNERS = ["rep-1", "rep-2", "queue"]

SUITE = {
    "actions": [
        {"expectation": "expect_column_values_to_not_be_null", "column": "inputs.employees",
         "name": "employees known"},
        {"expectation": "expect_column_values_to_be_in_set", "column": "decision.route_to",
         "kwargs": {"value_set": OWNERS}, "severity": "critical"},
        {"expectation": "expect_column_values_to_be_between", "column": "confidence",
         "kwargs": {"min_value": 0.5, "max_value": 1}},
    ],
    "outcomes": [
        {"expectation": "expect_column_values_to_be_in_set", "column": "kind",
         "kwargs": {"value_set": ["owner_changed"]}},
    ],
}


def traffic(seed: int, broken: bool) -> tuple[list[dict], list[dict]]:
    """Five hours of lead.route (about 2 a minute) and a few owner changes; `broken` injects, after FAULT,
    5 routes with a null `employees` input and 3 routes to an owner outside the set."""
    rng = np.random.default_rng(seed)
    actions, outcomes = [], []
    at = T0 + timedelta(hours=7)
    while at < END:
        at += timedelta(seconds=float(rng.exponential(30)))
        i = len(actions)
        actions.append({"event_id": f"a-{i:05d}", "ts": iso(at), "agent_id": "lead-router", "action": "lead.route",
                        "resource": {"type": "lead", "id": f"L-{i}"}, "status": "ok",
                        "inputs": {"employees": int(rng.integers(5, 5000)), "country": "DE"},
                        "decision": {"route_to": OWNERS[int(rng.integers(0, 3))]},
                        "confidence": float(rng.uniform(0.6, 0.99))})
        if rng.random() < 0.05:
            outcomes.append({"event_id": f"o-{i}", "ts": iso(at + timedelta(minutes=20)), "kind": "owner_changed",
                             "resource": {"type": "lead", "id": f"L-{i}"}})
    if broken:
        late = [a for a in actions if a["ts"] > iso(FAULT)]
        for a in late[:5]:
            a["inputs"]["employees"] = None
            a["event_id"] = "null-" + a["event_id"]
        for a in late[10:13]:
            a["decision"]["route_to"] = "nobody"
            a["event_id"] = "bad-" + a["event_id"]
    return actions, outcomes


def test_expectation_failed_fires_on_injected_nulls_and_out_of_set_values(home):
    """Nulls in inputs.employees and an unknown owner in decision.route_to each open an incident with GX's counts."""
    actions, outcomes = traffic(1, broken=True)
    store_events(home, actions=actions, outcomes=outcomes)
    report = run(home, START, END, config={"expectations": SUITE}, only=["quality.expectation_failed"])
    assert not report.failures
    found = {i.subject["expectation"]: (at, i) for at, i in opened(report, "quality.expectation_failed")}
    assert set(found) == {"employees known", "expect_column_values_to_be_in_set(decision.route_to)"}
    at, nulls = found["employees known"]
    assert nulls.subject == {"dataset": "actions", "expectation": "employees known"}
    assert nulls.severity == "warning" and nulls.evidence["unexpected_count"] == 5
    assert set(nulls.sample_event_ids) == {a["event_id"] for a in actions if a["event_id"].startswith("null-")}
    assert FAULT <= nulls.started_at <= FAULT + timedelta(minutes=15) and at - FAULT <= timedelta(hours=1)
    _, owners = found["expect_column_values_to_be_in_set(decision.route_to)"]
    assert owners.severity == "critical"
    assert owners.evidence["unexpected_count"] == 3 and owners.evidence["partial_unexpected_list"] == ["nobody"] * 3
    assert all(i.startswith("bad-") for i in owners.sample_event_ids)


def test_expectation_failed_quiet_on_clean_data(home):
    """The same suite over clean actions and outcomes passes: no incident."""
    actions, outcomes = traffic(2, broken=False)
    store_events(home, actions=actions, outcomes=outcomes)
    report = run(home, START, END, config={"expectations": SUITE}, only=["quality.expectation_failed"])
    assert not report.failures
    assert opened(report, "quality.expectation_failed") == []


def test_expectation_failed_runs_once_per_hour_and_resolves_after_the_fault(home):
    """Between hourly runs the verdict stands; two clean runs after the bad rows resolve the incident."""
    actions, outcomes = traffic(3, broken=True)
    store_events(home, actions=actions, outcomes=outcomes)
    report = run(home, START, END + timedelta(hours=3), config={"expectations": SUITE},
                 only=["quality.expectation_failed"])
    incidents = [i for i in report.incidents if i.subject["expectation"] == "employees known"]
    assert len(incidents) == 1 and incidents[0].status == "resolved"


@pytest.mark.parametrize(("entry", "message"), [
    ({"expectation": "expect_column_values_to_be_in_set", "column": "status"}, "expectations.actions[1] "),
    ({"expectation": "expect_values_to_be_nice", "column": "status"}, "expectations.actions[1]: 'expect_values"),
    ({"expectation": "expect_column_values_to_not_be_null", "colum": "status"}, "expectations.actions[1] (colum)"),
])
def test_expectation_config_errors_name_the_entry(home, entry, message):
    """A bad entry (missing kwargs, unknown expectation, unknown key) is refused, naming its dataset and index:
    at config load for what pydantic sees, else as the check's failure (GX checks arguments when it runs)."""
    suite = {"actions": [SUITE["actions"][0], entry]}
    try:
        report = run(home, START, END, config={"expectations": suite}, only=["quality.expectation_failed"])
    except ConfigError as exc:
        assert message in str(exc)
    else:
        assert message in report.failures["quality.expectation_failed"]


def test_expectation_on_a_missing_column_is_reported(home):
    """An expectation on a column the dataset lacks makes the check fail with the entry named."""
    store_events(home, actions=traffic(4, broken=False)[0])
    suite = {"actions": [{"expectation": "expect_column_values_to_not_be_null", "column": "region"}]}
    report = run(home, START, END, config={"expectations": suite}, only=["quality.expectation_failed"])
    assert "expectations.actions[0]" in report.failures["quality.expectation_failed"]


def _serve_runs(home, checks, times):
    """Evaluations as a running serve makes them: the same check objects, one step each."""
    config = Config.model_validate({"expectations": SUITE})
    return [evaluate(home, config, [at], incident_store(home), checks=checks, only=["quality.expectation_failed"])
            for at in times]


def test_a_running_serve_keeps_one_great_expectations_process_and_replaces_a_dead_one(home):
    """GX validates in a child process started by the first run and kept by the next ones (its import is paid
    once); one that died, between runs or between the steps of one run, is replaced and sent its suites again,
    and the check's verdicts stay right."""
    actions, outcomes = traffic(4, broken=True)
    store_events(home, actions=actions, outcomes=outcomes)
    config = Config.model_validate({"expectations": SUITE})
    checks = [c for c in enabled_checks(config) if c.name == "quality.expectation_failed"]
    worker = checks[0].worker
    first, = _serve_runs(home, checks, [FAULT + timedelta(minutes=30)])
    pid = worker.process.pid
    second, = _serve_runs(home, checks, [FAULT + timedelta(minutes=90)])
    assert not first.failures and not second.failures
    assert worker.process.pid == pid, "the second run used the first run's process"
    assert "employees known" in {i.subject["expectation"] for i in first.incidents}

    worker.process.kill()
    worker.process.wait()
    replaced, = _serve_runs(home, checks, [FAULT + timedelta(minutes=150)])
    assert not replaced.failures and worker.process.pid != pid and worker.running

    pids = []

    def kill(at, incidents):  # the child dies after each step
        pids.append(worker.process.pid)
        worker.process.kill()
        worker.process.wait()

    steps = [FAULT + timedelta(minutes=10), FAULT + timedelta(minutes=70)]  # before the last run: both due
    report = evaluate(home, config, steps, incident_store(home), checks=checks, on_step=kill,
                      only=["quality.expectation_failed"])
    assert not report.failures and len(set(pids)) == 2
    assert "employees known" in {i.subject["expectation"] for _, i in report.opened}


def test_checks_of_two_configs_share_one_process_each_with_its_own_suite(home):
    """One Great Expectations process per agentwatch process: two configs' checks (serve after a reload) use it
    side by side, each validated against its own suite, and one config's bad entry fails only its check."""
    actions, outcomes = traffic(5, broken=True)
    store_events(home, actions=actions, outcomes=outcomes)
    nulls = {"actions": [SUITE["actions"][0]]}
    owners = {"actions": [SUITE["actions"][1]]}
    bad = {"actions": [{"expectation": "expect_values_to_be_nice", "column": "status"}]}
    at = FAULT + timedelta(minutes=45)
    reports = {}
    for name, suite in (("nulls", nulls), ("bad", bad), ("owners", owners)):
        config = Config.model_validate({"expectations": suite})
        checks = [c for c in enabled_checks(config) if c.name == "quality.expectation_failed"]
        reports[name] = evaluate(home, config, [at], incident_store(home), checks=checks,
                                 only=["quality.expectation_failed"])
        pid = checks[0].worker.process.pid
        reports[name + "-pid"] = pid
    assert reports["nulls-pid"] == reports["bad-pid"] == reports["owners-pid"]
    assert {i.subject["expectation"] for i in reports["nulls"].incidents} == {"employees known"}
    refused = reports["bad"].failures["quality.expectation_failed"]
    assert "expectations.actions[0]: 'expect_values_to_be_nice'" in refused
    assert {i.subject["expectation"] for i in reports["owners"].incidents} == {
        "expect_column_values_to_be_in_set(decision.route_to)"}
    assert not reports["nulls"].failures and not reports["owners"].failures
