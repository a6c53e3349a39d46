"""policy.human_threshold on events at known times: autonomous actions above the configured threshold open incidents."""

from __future__ import annotations

import inspect
import re
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

import agentwatch.checks.human_threshold as module
from agentwatch.alerts.properties import incident_properties
from agentwatch.app.config import Config, load_config
from agentwatch.checks.base import Step
from agentwatch.checks.data import EvalData
from agentwatch.checks.engine import enabled_checks
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home
from tests.checks_support import T0, iso, opened, run, store_events

NAME = "policy.human_threshold"
START, END = T0 + timedelta(hours=6), T0 + timedelta(hours=20)
FAULT_AT = T0 + timedelta(hours=10, minutes=7)
APPROVAL = {"approved_by": "mgr-3", "approved_at": iso(T0)}


def _config(**options: object) -> dict:
    return {"checks": {NAME: options}}


def _action(at: datetime, agent: str, action: str, n: int, **extra: object) -> dict:
    return {"event_id": f"a-{n:06d}", "ts": iso(at), "agent_id": agent, "action": action,
            "resource": {"type": "lead", "id": f"L-{n % 400}"}, "status": "ok", **extra}


def _routine() -> list[dict]:
    """A day of work below every threshold: small internal writes, approved bulk and outreach, held-back sends."""
    events, at, n = [], T0, 0
    while at < T0 + timedelta(days=1):
        n += 1
        kind = n % 5
        if kind == 0:
            events.append(_action(at, "lead-router", "record.update", n, records_affected=50))  # at the threshold
        elif kind == 1:
            events.append(_action(at, "lead-router", "lead.route", n, records_affected=None))  # null means 1
        elif kind == 2:
            events.append(_action(at, "importer", "record.update", n, records_affected=900, approval=APPROVAL))
        elif kind == 3:
            events.append(_action(at, "followup-writer", "email.send", n, external=True, approval=APPROVAL))
        else:
            events.append(_action(at, "followup-writer", "email.send", n, external=True, status="pending_approval"))
        at += timedelta(minutes=3)
    return events


def _incident(report, action: str):
    """The one incident the run opened on `action`, as it stood at the end of the run."""
    found = [i for i in report.incidents if i.check == NAME and i.subject["action"] == action]
    assert len(found) == 1, report.incidents
    return found[0]


def test_bulk_action_over_max_records_fires(home: Home) -> None:
    """One unapproved update of 250 records with max_records 50 opens one warning on the agent x action."""
    store_events(home, actions=[*_routine(), _action(FAULT_AT, "lead-router", "record.update", 900001,
                                                     records_affected=250)])
    report = run(home, START, END, config=_config(max_records=50))
    assert report.failures == {}
    assert len(opened(report, NAME)) == 1
    incident = _incident(report, "record.update")
    assert incident.subject == {"agent_id": "lead-router", "action": "record.update"}
    assert incident.severity == "warning"
    assert incident.summary == "lead-router ran record.update on 250 records without approval (threshold 50)."
    assert incident.affected == 250 and incident.sample_event_ids == ["a-900001"]
    assert incident.evidence["thresholds_crossed"] == ["max_records"]
    assert incident.evidence["largest_records_affected"] == 250 and incident.evidence["max_records"] == 50
    assert incident.evidence["agents"] == ["lead-router"]
    assert abs(incident.started_at - FAULT_AT) < timedelta(seconds=1)


def test_several_bulk_actions_are_counted_in_one_incident(home: Home) -> None:
    """Three oversized updates in the window, one of them errored, make one incident counting all their records."""
    errored = {"status": "error", "error": {"code": "timeout"}}
    faults = [_action(FAULT_AT + timedelta(minutes=i), "lead-router", "record.update", 900001 + i,
                      records_affected=100 * (i + 1), **(errored if i else {})) for i in range(3)]
    store_events(home, actions=faults)
    report = run(home, START, END, config=_config(max_records=50))
    incident = _incident(report, "record.update")
    assert incident.evidence["events"] == 3 and incident.affected == 600
    assert incident.summary.startswith("lead-router ran record.update 3 times on more than 50 records without approval")
    assert "up to 300 at once" in incident.summary


def test_at_or_under_max_records_is_quiet(home: Home) -> None:
    """Unapproved actions of exactly max_records records, or of null (one) record, open nothing."""
    store_events(home, actions=_routine())
    report = run(home, START, END, config=_config(max_records=50))
    assert report.failures == {}
    assert opened(report, NAME) == []


def test_approved_bulk_action_does_not_fire(home: Home) -> None:
    """An update of 5000 records that a human approved is not autonomous, so it is not reported."""
    store_events(home, actions=[_action(FAULT_AT, "lead-router", "record.update", 900001, records_affected=5000,
                                        approval=APPROVAL)])
    report = run(home, START, END, config=_config(max_records=50))
    assert report.failures == {}
    assert opened(report, NAME) == []


def test_customer_facing_fires_on_unapproved_external_actions_only(home: Home) -> None:
    """With customer_facing on, only the agent sending external email without approval opens an incident."""
    unapproved = [_action(FAULT_AT + timedelta(seconds=5 * i), "followup-writer", "email.send", 900001 + i,
                          external=True) for i in range(12)]
    internal = [_action(FAULT_AT, "note-taker", "email.send", 900100, external=False),
                _action(FAULT_AT, "note-taker", "note.create", 900101)]
    skipped = [_action(FAULT_AT, "followup-writer", "sms.send", 900200, external=True, status="skipped")]
    store_events(home, actions=[*_routine(), *unapproved, *internal, *skipped])
    report = run(home, START, END, config=_config(customer_facing=True))
    assert report.failures == {}
    assert len(opened(report, NAME)) == 1
    incident = _incident(report, "email.send")
    assert incident.subject == {"agent_id": "followup-writer", "action": "email.send"}
    assert incident.summary == ("followup-writer sent 12 customer-facing email.send actions without approval "
                                "in the last 60 minutes.")
    assert incident.evidence["thresholds_crossed"] == ["customer_facing"]
    assert incident.evidence["customer_facing_events"] == 12


def test_action_patterns_always_need_a_human(home: Home) -> None:
    """Patterns record.delete and sequence.* report unapproved matching actions, not approved or other ones."""
    store_events(home, actions=[
        _action(FAULT_AT, "cleaner", "record.delete", 900001),
        _action(FAULT_AT, "nurture", "sequence.enroll", 900002),
        _action(FAULT_AT + timedelta(minutes=1), "nurture", "sequence.enroll", 900003),
        _action(FAULT_AT, "nurture", "sequence.pause", 900004, approval=APPROVAL),
        _action(FAULT_AT, "cleaner", "record.update", 900005),
        _action(FAULT_AT, "cleaner", "record.deleted_flag", 900006),
    ])
    report = run(home, START, END, config=_config(actions=["record.delete", "sequence.*"]))
    assert report.failures == {}
    assert sorted(i.subject["action"] for _, i in opened(report, NAME)) == ["record.delete", "sequence.enroll"]
    enroll = _incident(report, "sequence.enroll")
    assert enroll.evidence["matched_patterns"] == ["sequence.*"] and enroll.evidence["listed_events"] == 2
    assert "it always needs a human (sequence.*)" in enroll.summary


def test_severity_option_sets_the_incident_severity(home: Home) -> None:
    """severity: critical makes the incident critical, so a route on severity can page for it."""
    store_events(home, actions=[_action(FAULT_AT, "cleaner", "record.delete", 900001)])
    report = run(home, START, END, config=_config(actions=["record.delete"], severity="critical"))
    assert _incident(report, "record.delete").severity == "critical"


def test_defaults_find_nothing(home: Home) -> None:
    """With no threshold configured, bulk, customer-facing and deleting actions without approval open nothing."""
    store_events(home, actions=[
        _action(FAULT_AT, "lead-router", "record.update", 900001, records_affected=10_000),
        _action(FAULT_AT, "followup-writer", "email.send", 900002, external=True),
        _action(FAULT_AT, "cleaner", "record.delete", 900003),
    ])
    report = run(home, START, END, config={})
    assert report.failures == {}
    assert opened(report, NAME) == []


def test_defaults_do_not_query_the_store() -> None:
    """With no threshold set, prepare returns without touching the store (its connection here is closed)."""
    con = duckdb.connect()
    con.close()
    check, = enabled_checks(Config(), only=[NAME])
    check.prepare(EvalData(con=con, config=Config(), first=START, last=END, load_from=START - timedelta(hours=1)))
    assert check.evaluate(Step(at=END)) == []


def test_a_threshold_on_an_empty_store_is_quiet(home: Home) -> None:
    """Every threshold set over a home with no events runs without failure and finds nothing."""
    report = run(home, START, END, config=_config(max_records=1, customer_facing=True, actions=["*"]))
    assert report.failures == {}
    assert report.opened == []


def test_incident_resolves_on_the_agents_later_actions_under_the_threshold(home: Home) -> None:
    """A one-off crossing stays open through its window; once quiet for resolve_after_minutes it resolves when
    `clear_min_events` later record.update actions of the agent stayed under the threshold, not before."""
    routine = _routine()
    store_events(home, actions=[*routine, _action(FAULT_AT, "lead-router", "record.update", 900001,
                                                  records_affected=250)])
    config = _config(max_records=50, resolve_after_minutes=30)
    first = run(home, START, T0 + timedelta(hours=11, minutes=15), config=config)
    (incident,) = [i for i in first.incidents if i.check == NAME]
    assert incident.status == "open"
    assert incident.last_fired_at == T0 + timedelta(hours=11)  # the last step whose hour still holds 10:07
    later = sorted(datetime.fromisoformat(e["ts"]) for e in routine if e["agent_id"] == "lead-router"
                   and e["action"] == "record.update" and datetime.fromisoformat(e["ts"]) >= incident.last_fired_at)
    tenth = later[9]  # clear_min_events: 10 by default
    evidence_by = tenth - timedelta(minutes=tenth.minute % 5, seconds=tenth.second) + timedelta(minutes=5)
    second = run(home, T0 + timedelta(hours=11, minutes=20), END, every=timedelta(minutes=5), config=config)
    (resolved,) = [i for i in second.incidents if i.check == NAME]
    assert resolved.id == incident.id and resolved.status == "resolved"
    assert resolved.resolved_at == max(T0 + timedelta(hours=11, minutes=30), evidence_by)
    assert resolved.status_note.startswith("10 record.update actions by lead-router since 2026-10-05 11:00 UTC")


def test_the_documented_example_loads_and_routes_the_incident(home: Home, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The yaml in the check's docstring (docs/checks.md) loads (with the webhook variable it names set: an
    unset one is a config error), and its route sends the check's incident to revops-slack."""
    example = re.search(r"```yaml\n(.*?)```", inspect.cleandoc(module.HumanThreshold.__doc__ or ""), re.S)
    assert example
    monkeypatch.setenv("REVOPS_SLACK_WEBHOOK", "https://hooks.slack.com/services/T0/B0/x")
    path = tmp_path / "agentwatch.yaml"
    path.write_text(example.group(1), encoding="utf-8")
    config = load_config(path)
    store_events(home, actions=[_action(FAULT_AT, "followup-writer", "email.send", 900001, external=True)])
    incident = _incident(run(home, START, END, config=config), "email.send")
    destinations = config.alerts.routes_for(incident_properties(incident))
    assert [(name, route.match) for name, route in destinations] == [("revops-slack", {"check": NAME})]


def test_max_records_zero_names_its_line(tmp_path: Path) -> None:
    """max_records: 0 is refused in one line naming the file, the line and the option."""
    path = tmp_path / "agentwatch.yaml"
    path.write_text(f"checks:\n  {NAME}:\n    customer_facing: true\n    max_records: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    assert f" line 4 (checks.{NAME}.max_records):" in message
    assert "greater than or equal to 1" in message
