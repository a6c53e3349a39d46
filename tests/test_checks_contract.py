"""Every check, through one shared test: named as the issue names it, documented, quiet on an empty store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentwatch.checks.activity import Activity
from agentwatch.checks.base import REGISTRY, Check, CheckOptions, Finding, Step, subject_key
from agentwatch.checks.catalog import load_all
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import EvalData
from agentwatch.checks.docs import DOCS_PATH, render
from agentwatch.checks.engine import enabled_checks, evaluate
from agentwatch.checks.incidents import IncidentStore
from agentwatch.checks.phases import spread_phases
from agentwatch.core.severity import Severity
from agentwatch.schemas.incidents import Incident
from agentwatch.store.reader import open_reader
from tests.checks_support import T0, run

load_all()

ISSUE_CHECK_NAMES = {
    "schema.field_renamed", "schema.field_removed", "schema.field_added", "schema.type_changed",
    "schema.picklist_changed", "quality.null_spike", "quality.expectation_failed", "quality.duplicate",
    "volume.action_spike", "volume.action_drop", "errors.error_burst", "drift.distribution",
    "policy.forbidden_action", "policy.not_allowed", "policy.unapproved_action", "policy.bulk_limit",
    "workflow.invalid_transition", "workflow.sla_breach", "workflow.partial_failure",
    "outcome.routing_accuracy_drop", "outcome.requalification_spike", "outcome.calibration",
    "outcome.write_reverted",  # issue 14's reverted CRM writes
    "policy.human_threshold",  # issue 4's human notification threshold
    "quality.identity_collision",  # issue 14's same person twice, owners in conflict
    "policy.low_confidence_autonomy",  # issue 14's confidence thresholds
    "approval.queue_backlog", "approval.latency", "approval.rubber_stamp",  # issue 14's approval gate
    "schema.watcher_blind",  # issue 16's CRM schema pollers failing
}


def test_every_check_the_issue_names_is_registered():
    """The check names are part of the interface: each one the issues name exists, and no other."""
    assert set(REGISTRY) == ISSUE_CHECK_NAMES


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_check_is_named_for_its_family_and_explains_itself(name):
    """A check's name starts with its family, it has a docstring, and every option has a default and a reason."""
    check = REGISTRY[name]
    assert name.split(".")[0] == check.family
    assert (check.__doc__ or "").strip()
    assert issubclass(check.Options, CheckOptions)
    check.Options()  # every option has a valid default
    for option, info in check.Options.model_fields.items():
        assert info.description and len(info.description) > 15, f"{name}.{option} needs a description with a reason"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_check_refuses_unknown_options(name):
    """A misspelt option is an error, not silently ignored."""
    with pytest.raises(ValueError, match="extra"):
        REGISTRY[name].Options.model_validate({"treshold": 3})


def test_every_check_runs_quietly_on_an_empty_store(home):
    """With no events at all, no check fails and none fires."""
    report = run(home, T0, T0 + timedelta(hours=1))
    assert report.failures == {}
    assert report.opened == []


def test_docs_checks_md_is_current():
    """docs/checks.md lists every check and option as the code has them (run `python -m agentwatch.checks.docs`)."""
    assert DOCS_PATH.read_text(encoding="utf-8") == render()


def _open_incident(check: type, at: datetime) -> Incident:
    """An open incident of `check` that last fired a day before `at`, on a subject of the check's kind."""
    subjects = {"quality.null_spike": {"field": "deal_stage"},
                "quality.expectation_failed": {"dataset": "actions", "expectation": "not_null(agent_id)"},
                "workflow.sla_breach": {"object": "lead"},
                "quality.identity_collision": {"kind": "same_person", "object": "lead"},
                "approval.rubber_stamp": {"approver": "mgr-3"}}
    subject = subjects.get(check.name, {"agent_id": "lead-router", "action": "lead.route"})
    evidence: dict[str, object] = {"agents": ["lead-router"]}
    if check.family == "schema":
        subject = {"object": "Lead", "field": "deal_stage -> opportunity_stage"}
        evidence |= {"object": "Lead", "old_field": "deal_stage", "new_field": "opportunity_stage",
                     "snapshot_at": (at - timedelta(days=2)).isoformat(), "input_keys": ["deal_stage"],
                     "usual_value_share": 0.2}
    fired = at - timedelta(days=1)
    return Incident(id="INC-1", check=check.name, severity=Severity.critical, status="open", opened_at=fired,
                    started_at=fired, last_fired_at=fired, subject=subject, summary="test", evidence=evidence,
                    affected=1)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_no_data_never_resolves_and_the_incident_says_what_it_waits_for(name, home):
    """Each check's no-data rule (docs/checks.md, "Resolution"): with no events since the incident last fired,
    it stays open with a note saying so; only a change that breaks nothing resolves once it has been reported."""
    check_class = REGISTRY[name]
    assert len(check_class.clears_when) > 40, f"{name} must say what resolves its incidents"
    at = T0 + timedelta(days=3)
    check = check_class(check_class.Options(), ChecksConfig())
    con = open_reader(home)
    try:
        data = EvalData(con=con, config=ChecksConfig(), first=at, last=at, load_from=at - check.history)
        check.prepare(data)
        incident = _open_incident(check_class, at)
        step = Step(at=at, open_incidents={subject_key(incident.check, incident.subject): incident})
        seen = check.clearance(step, incident, Activity(data))
    finally:
        con.close()
    if getattr(check_class, "breaks_readers", True):
        assert not seen.cleared, seen
        assert seen.note.startswith("no "), seen.note
    else:  # an added field or a picklist change needs no repair: reported for report_hours, then resolved
        assert seen.cleared and "breaks no reader" in seen.note, seen


class _Counting(Check[CheckOptions]):
    """A check that fires on every evaluation, counting prepares and evaluations (the engine's cadence under test)."""

    name = "quality.cadence_probe"
    family = "quality"
    history = timedelta(hours=1)

    def __init__(self, every_minutes: float | None, fires: bool = True) -> None:
        super().__init__(CheckOptions(every_minutes=every_minutes), ChecksConfig())
        self.fires = fires
        self.prepared: list[datetime] = []
        self.evaluated: list[datetime] = []

    def prepare(self, data: EvalData) -> None:
        self.prepared.append(data.last)

    def evaluate(self, step: Step) -> list[Finding]:
        self.evaluated.append(step.at)
        if not self.fires:
            return []
        return [Finding(self.name, {"agent_id": "a"}, Severity.info, f"probe at {step.at:%H:%M}", step.at, 1,
                        evidence={"at": step.at}, sample_event_ids=["e-1"])]


def test_a_check_with_every_minutes_is_evaluated_that_often_and_its_last_findings_stand_between(home, tmp_path):
    """In a backtest and in one-step runs (serve's minutes) alike: evaluated every `every_minutes` of step time,
    the last findings re-reported in between, and a one-step run in between does not prepare the check, unless
    one of its incidents is open (its clearance may read the prepared state) or the run is in the past."""
    times = [T0 + timedelta(minutes=m) for m in range(0, 61, 5)]
    replay = _Counting(every_minutes=15)
    evaluate(home, ChecksConfig(), times, IncidentStore(tmp_path / "replay.sqlite3"), checks=[replay])
    assert replay.evaluated == [T0 + timedelta(minutes=m) for m in (0, 15, 30, 45, 60)]

    live, store = _Counting(every_minutes=15), IncidentStore(tmp_path / "live.sqlite3")
    summaries = []
    for at in times:
        report = evaluate(home, ChecksConfig(), [at], store, checks=[live])
        summaries.append(next(i.summary for i in report.incidents))
    assert live.evaluated == replay.evaluated
    assert summaries[1:3] == ["probe at 00:00"] * 2 and summaries[3] == "probe at 00:15"  # the findings stood
    assert live.prepared == times  # its incident is open: prepared every run

    quiet = _Counting(every_minutes=15)
    for at in times[:4]:
        report = evaluate(home, ChecksConfig(), [at], IncidentStore(tmp_path / f"q{at:%M}.sqlite3"), checks=[quiet])
        assert report.resting == ([] if at in (T0, T0 + timedelta(minutes=15)) else [quiet.name])
    assert quiet.prepared == [T0, T0 + timedelta(minutes=15)]
    evaluate(home, ChecksConfig(), [T0 + timedelta(minutes=5)], IncidentStore(tmp_path / "past.sqlite3"),
             checks=[quiet])
    assert quiet.prepared[-1] == T0 + timedelta(minutes=5)  # a run in the past is always due

    every_step = _Counting(every_minutes=None)
    evaluate(home, ChecksConfig(), times, IncidentStore(tmp_path / "all.sqlite3"), checks=[every_step])
    assert every_step.evaluated == times


def test_a_fresh_process_keeps_the_cadence_the_last_run_left(home, tmp_path):
    """`check` run by cron each minute builds new check objects every time: the incident store carries the cadence
    over, so they prepare and evaluate when serve's kept objects would, and re-report the last findings between;
    changed options make the check due at once."""
    times = [T0 + timedelta(minutes=m) for m in range(0, 61, 5)]
    store, prepared, evaluated = IncidentStore(tmp_path / "quiet.sqlite3"), [], []
    for at in times:
        probe = _Counting(every_minutes=15, fires=False)  # a new object per run, as a new process has
        evaluate(home, ChecksConfig(), [at], store, checks=[probe])
        prepared += probe.prepared
        evaluated += probe.evaluated
    assert evaluated == prepared == [T0 + timedelta(minutes=m) for m in (0, 15, 30, 45, 60)]

    store = IncidentStore(tmp_path / "firing.sqlite3")
    summaries = []
    for at in times[:4]:
        report = evaluate(home, ChecksConfig(), [at], store, checks=[_Counting(every_minutes=15)])
        summaries.append(next(i.summary for i in report.incidents))
    assert summaries == ["probe at 00:00"] * 3 + ["probe at 00:15"]
    assert next(iter(store.cadences().values()))["findings"][0]["evidence"] == {"at": (T0 + timedelta(minutes=15))
                                                                                .isoformat(sep=" ")}
    changed = _Counting(every_minutes=20)
    evaluate(home, ChecksConfig(), [times[4]], store, checks=[changed])
    assert changed.evaluated == [times[4]]


def test_cadence_slots_absorb_the_jitter_of_serves_run_times():
    """serve's runs start a few milliseconds early or late: a check every 5 minutes evaluated at 00:00:00.4 is due
    again at 00:05:00.35 (the next slot), not a minute later; within a slot it is not; a rerun at or before its last
    evaluation is."""
    probe = _Counting(every_minutes=5)
    probe.evaluated_at = T0 + timedelta(milliseconds=400)
    assert probe.due(T0 + timedelta(minutes=5, milliseconds=350))
    assert not probe.due(T0 + timedelta(minutes=4, seconds=59, milliseconds=999))
    assert probe.due(T0 + timedelta(milliseconds=400)) and probe.due(T0)


def test_checks_with_a_cadence_fall_due_in_different_minutes(home, tmp_path):
    """Every check with a cadence due in the same minute made that minute of serve cost all of them (2.3 to 2.9 s on
    the 10M-event store, 0.6 s between): `spread_phases` gives them phases of whole minutes, so no minute of an hour
    holds more than one of a config's 5-, 15- and 60-minute checks while minutes are free; the same checks get the
    same phases again, whatever `--only` picks; and a backtest evaluates a phased check once per slot, at the first
    step past its phase."""
    config = ChecksConfig()
    checks = enabled_checks(config)
    cadenced = [c for c in checks if c.options.every_minutes]
    assert len(cadenced) >= 5
    due_at: dict[int, list[str]] = {}
    for check in cadenced:
        every = int(check.options.every_minutes or 0)
        assert timedelta(0) <= check.phase < timedelta(minutes=every)
        for minute in range(int(check.phase / timedelta(minutes=1)), 60, every):
            due_at.setdefault(minute, []).append(check.name)
    assert max(len(names) for names in due_at.values()) == 1, due_at
    again = {c.name: c.phase for c in enabled_checks(config) if c.options.every_minutes}
    assert again == {c.name: c.phase for c in cadenced}
    [alone] = enabled_checks(config, only=[cadenced[-1].name])
    assert alone.phase == cadenced[-1].phase

    probe = _Counting(every_minutes=15)
    spread_phases([_Counting(every_minutes=15), probe])
    assert probe.phase == timedelta(minutes=1)
    times = [T0 + timedelta(minutes=m) for m in range(0, 46)]
    evaluate(home, ChecksConfig(), times, IncidentStore(tmp_path / "phased.sqlite3"), checks=[probe])
    assert probe.evaluated == [T0 + timedelta(minutes=m) for m in (0, 1, 16, 31)]  # the first step is always due


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_check_has_a_suggested_fix_naming_what_to_change(name):
    """Each check in the catalog has its own fix (not the general fallback), and the fix names something concrete
    from the incident: its agent, field, object, dataset, poller or approver."""
    from agentwatch.checks.remedies import FIXES, as_text, remedy

    assert name in FIXES
    subject = {"agent_id": "agent-x7", "action": "act.y9", "object": "Obj7", "field": "fld_z9", "dataset": "ds-q4",
               "expectation": "exp-q5", "source": "src-s2", "approver": "appr-p3"}
    at = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)
    incident = Incident(id="INC-1", check=name, severity="warning", status="open", opened_at=at, started_at=at,
                        last_fired_at=at, subject=subject, summary="s", affected=1)
    text = as_text(remedy(incident))
    assert len(text) > 60 and any(value in text for value in subject.values()), text


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_check_says_what_affected_counts(name: str) -> None:
    """`affected` reads with a unit of the check's own (or its family's), never the generic fallback: the incident
    page and `agentwatch incident show` print it (agentwatch.checks.affected)."""
    from agentwatch.checks.affected import AFFECTED_UNITS

    assert name in AFFECTED_UNITS or name.split(".")[0] + ".*" in AFFECTED_UNITS
