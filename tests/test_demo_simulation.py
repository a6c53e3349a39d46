"""The demo simulator: valid native formats, deterministic output, and the month's story as designed."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from agentwatch.app.demo import SimulationConfig, SimulationFiles, simulate
from agentwatch.app.demo.crm import BENIGN_DAY, BENIGN_FIELD
from agentwatch.app.demo.simulate import BAD_RELEASE, MANAGER_OFFSITE
from agentwatch.app.demo.traffic import REGION_UTC_OFFSET_MIN
from agentwatch.schemas import ActionEvent, OutcomeEvent, SchemaSnapshot, parse_rfc3339

SMALL = SimulationConfig(days=24, leads_per_weekday=120, rename_day=14)  # holds the offsite of days 20 and 21


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SimulationFiles:
    return simulate(tmp_path_factory.mktemp("demo"), SMALL)


@pytest.fixture(scope="module")
def actions(run: SimulationFiles) -> list[dict]:
    return [json.loads(line) for line in run.actions.read_text().splitlines()]


@pytest.fixture(scope="module")
def outcomes(run: SimulationFiles) -> list[dict]:
    return [json.loads(line) for line in run.outcomes.read_text().splitlines()]


@pytest.fixture(scope="module")
def lead_snapshots(run: SimulationFiles) -> list[SchemaSnapshot]:
    snapshots = [SchemaSnapshot.model_validate_json(path.read_text()) for path in run.schema_snapshots]
    return [snapshot for snapshot in snapshots if snapshot.object == "Lead"]


def _routes(actions: list[dict]) -> list[dict]:
    return [a for a in actions if a["action"] == "lead.route" and a["status"] != "error"]


def test_every_line_validates(run: SimulationFiles) -> None:
    """Every action, outcome and snapshot the simulator writes parses as its native pydantic model."""
    parsed_actions = [ActionEvent.model_validate_json(line) for line in run.actions.read_text().splitlines()]
    parsed_outcomes = [
        OutcomeEvent.model_validate_json(line) for line in run.outcomes.read_text().splitlines()
    ]
    snapshots = [SchemaSnapshot.model_validate_json(path.read_text()) for path in run.schema_snapshots]
    assert len(parsed_actions) == run.summary["actions"] > 10_000
    assert len(parsed_outcomes) == run.summary["outcomes"] > 500
    assert len(snapshots) == run.summary["snapshots"] == 2 * SMALL.days + 2
    for events in (parsed_actions, parsed_outcomes):
        assert [e.ts for e in events] == sorted(e.ts for e in events)
        assert len({e.event_id for e in events}) == len(events)
    start, end = SMALL.start, SMALL.start + timedelta(days=SMALL.days)
    assert all(start <= e.ts < end for e in [*parsed_actions, *parsed_outcomes])


def test_timestamps_mix_offsets_and_corrections_point_at_actions(
    actions: list[dict], outcomes: list[dict]
) -> None:
    """Timestamps use several UTC offsets, and every corrects_event_id names an action in the file."""
    suffixes = Counter("Z" if a["ts"].endswith("Z") else a["ts"][-6:] for a in actions)
    assert {"Z", "+02:00", "-05:00"} <= set(suffixes)
    action_ids = {a["event_id"] for a in actions}
    corrections = [o for o in outcomes if o.get("corrects_event_id")]
    assert corrections
    assert all(o["corrects_event_id"] in action_ids for o in corrections)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    """Two runs with one seed write identical files, and another seed writes different ones."""
    config = SimulationConfig(days=7, leads_per_weekday=40, rename_day=3)
    first = simulate(tmp_path / "a", config)
    second = simulate(tmp_path / "b", config)
    other = simulate(tmp_path / "c", SimulationConfig(days=7, leads_per_weekday=40, rename_day=3, seed=8))
    assert first.actions.read_bytes() == second.actions.read_bytes()
    assert first.outcomes.read_bytes() == second.outcomes.read_bytes()
    assert [p.read_bytes() for p in first.schema_snapshots] == [
        p.read_bytes() for p in second.schema_snapshots
    ]
    assert first.summary == second.summary
    assert first.actions.read_bytes() != other.actions.read_bytes()
    assert first.outcomes.read_bytes() != other.outcomes.read_bytes()


def test_snapshots_show_the_rename_from_rename_at(
    run: SimulationFiles, lead_snapshots: list[SchemaSnapshot]
) -> None:
    """Lead snapshots from rename_at on have opportunity_stage, not deal_stage, and nothing else changed."""
    assert run.rename_at == SMALL.start + timedelta(days=SMALL.rename_day, hours=10, minutes=40)
    assert any(s.taken_at == run.rename_at for s in lead_snapshots)
    before = [s for s in lead_snapshots if s.taken_at < run.rename_at]
    after = [s for s in lead_snapshots if s.taken_at >= run.rename_at]
    assert before and after
    for snapshot in before:
        names = {f.name for f in snapshot.fields}
        assert "deal_stage" in names and "opportunity_stage" not in names
    for snapshot in after:
        names = {f.name for f in snapshot.fields}
        assert "opportunity_stage" in names and "deal_stage" not in names
    old = next(f for f in before[-1].fields if f.name == "deal_stage")
    new = next(f for f in after[0].fields if f.name == "opportunity_stage")
    assert old.model_dump(exclude={"name"}) == new.model_dump(exclude={"name"})


def test_router_reads_null_deal_stage_after_rename(run: SimulationFiles, actions: list[dict]) -> None:
    """After rename_at the router reads deal_stage as null for every lead; before it, some have a value."""
    routes = _routes(actions)
    before = [a for a in routes if parse_rfc3339(a["ts"]) < run.rename_at]
    after = [a for a in routes if parse_rfc3339(a["ts"]) >= run.rename_at]
    assert before and after
    assert all("deal_stage" in a["inputs"] and a["inputs"]["deal_stage"] is None for a in after)
    assert sum(a["inputs"]["deal_stage"] is not None for a in before) > 0.1 * len(before)


def test_open_deal_leads_go_to_nurture_only_after_rename(
    run: SimulationFiles, actions: list[dict], outcomes: list[dict]
) -> None:
    """Open-deal leads are enrolled in cold nurture only after the rename, as often as the summary says."""
    open_deal = {a["resource"]["id"]: a for a in _routes(actions) if a["inputs"].get("opportunity_id")}
    nurtured = [
        a
        for a in actions
        if a["action"] == "sequence.enroll"
        and a["status"] == "ok"
        and a["decision"]["sequence"] == "cold-nurture"
        and a["resource"]["id"] in open_deal
    ]
    assert nurtured
    assert all(parse_rfc3339(a["ts"]) >= run.rename_at for a in nurtured)
    assert len(nurtured) == run.summary["nurture_enrolments_of_open_deals_after_rename"]
    # Before the rename the same kind of lead went to its account executive.
    early = [a for a in open_deal.values() if parse_rfc3339(a["ts"]) < run.rename_at]
    assert early and all(a["decision"]["route_to"].startswith("ae:") for a in early)
    # Reps catch some of it: they hand misrouted open-deal leads back to the account executive.
    misrouted = {a["resource"]["id"] for a in nurtured}
    handed_back = [o for o in outcomes if o["kind"] == "owner_changed" and o["resource"]["id"] in misrouted]
    assert handed_back and all(o["to"].startswith("ae-") for o in handed_back)


def test_weekdays_and_business_hours_are_busier(actions: list[dict]) -> None:
    """Leads arrive mostly on weekdays and in local business hours, few on weekends and at night."""
    routes = _routes(actions)
    per_day = Counter(parse_rfc3339(a["ts"]).date() for a in routes)
    weekday = [n for day, n in per_day.items() if day.weekday() < 5]
    weekend = [n for day, n in per_day.items() if day.weekday() >= 5]
    assert sum(weekday) / len(weekday) > 3 * sum(weekend) / len(weekend)
    local_hours = Counter(
        (parse_rfc3339(a["ts"]) + timedelta(minutes=REGION_UTC_OFFSET_MIN[a["inputs"]["region"]])).hour
        for a in routes
    )
    night = sum(local_hours[h] for h in range(0, 6)) / 6
    business = sum(local_hours[h] for h in range(9, 17)) / 8
    assert night < business / 4


def test_benign_field_appears_on_its_day(run: SimulationFiles, lead_snapshots: list[SchemaSnapshot]) -> None:
    """The unused Twitter_Handle__c field first shows up on day 5 and stays; no agent reads it."""
    has_field = [any(f.name == BENIGN_FIELD for f in s.fields) for s in lead_snapshots]
    first = has_field.index(True)
    assert lead_snapshots[first].taken_at.date() == (SMALL.start + timedelta(days=BENIGN_DAY)).date()
    assert not any(has_field[:first]) and all(has_field[first:])
    assert BENIGN_FIELD not in run.actions.read_text()


def test_qualifier_upgrade_mid_month(actions: list[dict]) -> None:
    """The qualifier reports 2.3.0 until day 10 and 2.4.0 afterwards."""
    day_10, day_11 = SMALL.start + timedelta(days=10), SMALL.start + timedelta(days=11)
    qualifier = [
        (parse_rfc3339(a["ts"]), a["agent_version"]) for a in actions if a["agent_id"] == "qualifier-agent"
    ]
    assert {version for ts, version in qualifier if ts < day_10} == {"2.3.0"}
    assert {version for ts, version in qualifier if ts >= day_11} == {"2.4.0"}


def _set_back_share(writes: list[dict], reverts: dict[tuple[str, str], dict]) -> float:
    """The share of ``writes`` a field_changed outcome sets back within a day."""
    hits = 0
    for write in writes:
        field = write["inputs"]["field"]
        revert = reverts.get((write["resource"]["id"], field))
        lag = revert and parse_rfc3339(revert["ts"]) - parse_rfc3339(write["ts"])
        hits += bool(lag) and timedelta(0) < lag < timedelta(days=1) and revert["from"] == write["after"][field]
    return hits / len(writes)


def test_reps_set_back_a_few_enriched_fields_and_most_of_the_bad_release(
    actions: list[dict], outcomes: list[dict]
) -> None:
    """Reps set back about 2% of enrichment's industry and segment writes, within a few office hours, from the value
    written; enrichment-agent 1.9.0 (day 12 to 13) writes wrong industries and reps set back ~30% of its writes, back
    to the baseline under 1.9.1."""
    reverts = [o for o in outcomes if o["kind"] == "field_changed"]
    assert reverts and all(o["actor"].startswith("sdr-") and o["from"] != o["to"] for o in reverts)
    by_field = {(o["resource"]["id"], o["field"]): o for o in reverts}
    assert len(by_field) == len(reverts)  # one edit per lead and field: each matches one write
    writes = [a for a in actions if a["action"] == "crm.update_field" and a["status"] == "ok"]
    released = SMALL.start + BAD_RELEASE[0], SMALL.start + BAD_RELEASE[1]
    versions = {(a["agent_version"], parse_rfc3339(a["ts"]) >= released[0]) for a in writes}
    assert versions == {("1.8.2", False), ("1.9.0", True), ("1.9.1", True)}
    assert all(parse_rfc3339(a["ts"]) < released[1] for a in writes if a["agent_version"] == "1.9.0")
    share = {
        (version, field): _set_back_share(
            [a for a in writes if a["agent_version"] == version and a["inputs"]["field"] == field], by_field
        )
        for version in ("1.8.2", "1.9.0", "1.9.1")
        for field in ("industry", "segment")
    }
    for version in ("1.8.2", "1.9.1"):
        assert 0.01 < share[(version, "industry")] < 0.04
        assert 0.005 < share[(version, "segment")] < 0.03
    assert 0.2 < share[("1.9.0", "industry")] < 0.45
    assert share[("1.9.0", "segment")] < 0.04  # the bad release gets only the industry wrong
    # Within office hours of the write: most the same day.
    lags = sorted(
        parse_rfc3339(o["ts"]) - parse_rfc3339(w["ts"])
        for w in writes
        if (o := by_field.get((w["resource"]["id"], w["inputs"]["field"])))
    )
    assert lags[0] > timedelta(minutes=15) and lags[len(lags) // 2] < timedelta(hours=8)


def test_offsite_leaves_approval_requests_unanswered_until_the_managers_are_back(
    run: SimulationFiles, actions: list[dict]
) -> None:
    """Enterprise first touches wait for a manager's approval: usually within hours; requests made during the
    managers' offsite (days 20 and 21) are all answered once they are back on day 22, none before."""
    requests = {a["resource"]["id"]: parse_rfc3339(a["ts"]) for a in actions if a["status"] == "pending_approval"}
    answers = {
        a["resource"]["id"]: (parse_rfc3339(a["ts"]), parse_rfc3339(a["approval"]["approved_at"]))
        for a in actions
        if a["action"] == "email.send" and a["status"] == "ok" and "approval" in a
    }
    away, back = SMALL.start + MANAGER_OFFSITE[0], SMALL.start + MANAGER_OFFSITE[1]
    weekdays = [t for t in requests.values() if t < away and t.weekday() < 5]
    # Enough requests a day for a check to learn the gate's rhythm: over a dozen at the demo's 400 leads a weekday.
    assert len(weekdays) / len({t.date() for t in weekdays}) > 0.03 * SMALL.leads_per_weekday
    usual = [answers[lead][0] - t for lead, t in requests.items() if t < away - timedelta(days=1) and lead in answers]
    assert sum(wait < timedelta(days=1) for wait in usual) > 0.8 * len(usual)
    held = {lead: t for lead, t in requests.items() if away <= t < back}
    assert len(held) > 10
    assert run.summary["approvals_held_by_offsite"] >= len(held)
    for lead in held:
        answered, approved = answers[lead]
        assert back <= approved < answered < back + timedelta(days=1)
