"""serve prepares the checks that rested once an hour settled (``agentwatch.checks.engine.prepare_ahead``): the
aggregates they read are stored then, not in the minute each falls due, and nothing they find changes."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agentwatch.app.config import Config
from agentwatch.app.scheduler import CheckScheduler
from agentwatch.checks.engine import enabled_checks, evaluate, prepare_ahead
from agentwatch.checks.incidents import IncidentStore
from agentwatch.core.home import Home
from agentwatch.core.locks import WriteLock
from agentwatch.store.kept_rows import KeptRows
from tests.checks_support import T0, store_events
from tests.test_store_rollups import actions_between

CONFIG = Config.model_validate({"workflow": {"object": "lead", "sla_first_action_minutes": 15,
                                             "follow_ups": {"email.send": ["crm.log_activity"]}}})
NAMES = ["workflow.partial_failure", "workflow.sla_breach"]


def stored_until(home: Home) -> dict[str, datetime]:
    """Per rollup folder, the end of its stored hours."""
    found: dict[str, datetime] = {}
    for state in home.aggregates.glob("*/day=*.json"):
        covered = datetime.fromisoformat(json.loads(state.read_text())["covered_until"])
        found[state.parent.name] = max(covered, found.get(state.parent.name, covered))
    return found


def incidents_of(report_incidents: list) -> set[tuple]:
    return {(i.check, json.dumps(i.subject, sort_keys=True), i.started_at) for i in report_incidents}


def test_the_resting_checks_store_the_settled_hour_ahead_and_their_next_run_finds_it_stored(
        home: Home, tmp_path: Path) -> None:
    # The follow-up writes stop two hours before the first run: the partial-failure check has something to find.
    outage = (T0 + timedelta(days=2, hours=8), T0 + timedelta(days=2, hours=12))
    store_events(home, actions=[a for a in actions_between(T0, 24 * 3, "a") if a["action"] != "crm.log_activity"
                                or not outage[0] <= datetime.fromisoformat(a["ts"]) < outage[1]])
    checks, kept, incidents = enabled_checks(CONFIG, only=NAMES), KeptRows(), IncidentStore(tmp_path / "i.sqlite3")
    first = T0 + timedelta(days=2, hours=10, minutes=2)
    evaluate(home, CONFIG, [first], incidents, checks=checks, now=first, kept=kept, small_range_bytes=0)
    before = stored_until(home)
    assert sorted(name.split("-")[0] for name in before) == ["follow_up_cases", "new_record_cases"]

    later = first + timedelta(hours=1)  # an hour settled since: serve prepares the checks that rested
    assert prepare_ahead(home, CONFIG, later, incidents, checks, kept, NAMES, small_range_bytes=0) == {}
    ahead = stored_until(home)
    assert all(ahead[name] == before[name] + timedelta(hours=1) for name in before), (before, ahead)
    assert all(c.evaluated_at == first for c in checks), "preparing evaluates nothing"

    # The minute they fall due stores nothing more, and finds what a run computing everything afresh finds.
    report = evaluate(home, CONFIG, [later], incidents, checks=checks, now=later, kept=kept, small_range_bytes=0)
    assert report.failures == {} and stored_until(home) == ahead
    # The same two runs computing everything from the events.
    fresh_checks, fresh_store = enabled_checks(CONFIG, only=NAMES), IncidentStore(tmp_path / "afresh.sqlite3")
    evaluate(home, CONFIG, [first], fresh_store, checks=fresh_checks, recompute=True)
    afresh = evaluate(home, CONFIG, [later], fresh_store, checks=fresh_checks, recompute=True)
    assert incidents_of(report.incidents) == incidents_of(afresh.incidents)
    assert {i.check for i in afresh.incidents} == {"workflow.partial_failure"}


def test_a_check_that_prepares_in_another_process_is_left_to_its_own_run(home: Home, tmp_path: Path) -> None:
    """The expectation suites go to the Great Expectations process when prepared and come back when evaluated:
    prepared ahead, their answers would wait unread, so they are left out (they read events, not aggregates)."""
    store_events(home, actions=actions_between(T0, 3, "a"))
    config = Config.model_validate({"expectations": {"actions": [
        {"expectation": "expect_column_values_to_not_be_null", "column": "agent_id"}]}})
    (check,) = enabled_checks(config, only=["quality.expectation_failed"])
    at = T0 + timedelta(hours=3)
    assert prepare_ahead(home, config, at, IncidentStore(tmp_path / "i.sqlite3"), [check], KeptRows(),
                         [check.name], small_range_bytes=0) == {}
    assert check.frames == {} and check.suite_keys == {}, "nothing was loaded or sent to the GX process"


def test_serve_skips_preparing_ahead_while_another_run_holds_the_store(
        home: Home, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Preparing ahead is optional: while a backtest or a cron `check` holds the run lock, serve's scheduler waits
    about a second, logs that it skipped, and goes on (its run was counted and logged before)."""
    store_events(home, actions=actions_between(T0, 3, "a"))
    scheduler, incidents = CheckScheduler(home, every_s=60), IncidentStore(tmp_path / "i.sqlite3")
    checks = enabled_checks(CONFIG, only=NAMES)
    with WriteLock(incidents.path.with_name(incidents.path.name + ".run-lock")), caplog.at_level(logging.INFO):
        began = time.monotonic()
        scheduler._prepare_ahead(CONFIG, T0 + timedelta(hours=3), incidents, checks, KeptRows(), NAMES)
        waited = time.monotonic() - began
    assert waited < 30, "it does not wait out a long run"
    assert "did not prepare ahead" in caplog.text
