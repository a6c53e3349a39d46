"""The field_changed outcome and outcome.write_reverted on seeded synthetic streams.

An enrichment agent writes industry and region on leads around the clock (20 writes an hour); reps set back about
3% of its writes within hours, in office hours (weekdays 09:00-18:00 UTC). The fault: a new agent version at FAULT
whose writes reps set back 30% of the time. The look-alikes mixed in: a cleanup editing old leads' fields days
after the writes, reps changing fields the agent never wrote, the agent re-writing fields (echoed back by the CRM
feed with the agent as actor), and a second agent at its own steady share of reverts.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import jsonschema
import numpy as np
import polars as pl

from agentwatch.checks.rollup_sql import field_writes, field_writes_select, revert_histogram, write_reverts_sql
from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.schemas.jsonschema import JSON_DIR
from agentwatch.store import duck
from agentwatch.store.datasets import OUTCOMES
from agentwatch.store.reader import open_reader
from agentwatch.store.rollups import RollupStore, requested_span
from tests.checks_support import T0, iso, opened, run, store_events

CHECK = "outcome.write_reverted"
DAY = timedelta(days=1)
START = T0 - 8 * DAY  # Sunday 00:00: more than a week of baseline before the fault
FAULT = T0 + 3 * DAY + timedelta(hours=9)  # Thursday 09:00
END = T0 + 4 * DAY + timedelta(hours=12)  # Friday 12:00
INDUSTRIES = ["software", "retail", "healthcare", "finance", "manufacturing", "education"]
REGIONS = ["emea", "amer", "apac"]
DELAY_BOUND = timedelta(hours=24)  # the outcome family's target: reverts come in office hours, hours late


def office_time(at: datetime, rng: np.random.Generator) -> datetime:
    """When a rep gets to a write made at `at`: an hour or so later if that is in office hours (weekdays 09:00-18:00
    UTC), else in the first hours of the next office day."""
    seen = at + timedelta(hours=float(rng.uniform(0.25, 3.0)))
    while seen.weekday() >= 5 or not 9 <= seen.hour < 18:
        seen = (seen + DAY).replace(hour=9, minute=0, second=0) if seen.hour >= 18 or seen.weekday() >= 5 \
            else seen.replace(hour=9, minute=0, second=0)
        seen += timedelta(hours=float(rng.uniform(0, 2.0)))
    return seen


def revert(rng: np.random.Generator, write: dict, field: str, event_id: str, at: datetime) -> dict:
    """A rep's field_changed setting back `field` of `write`: named by id, or told by from (the value written), or
    by to (the value before the write) alone; the field named as the CRM spells it."""
    key = field.lower()
    outcome = {"event_id": event_id, "ts": iso(at), "kind": "field_changed", "resource": write["resource"],
               "actor": f"rep-{rng.integers(1, 9)}", "field": field}
    how = rng.random()
    if how < 0.2:
        outcome |= {"corrects_event_id": write["event_id"], "from": write["after"][key], "to": "other"}
    elif how < 0.7 or key not in write["before"]:
        outcome |= {"from": write["after"][key].title(), "to": rng.choice(INDUSTRIES + REGIONS)}
    else:
        outcome |= {"to": write["before"][key]}
    return outcome


def stream(seed: int, agent: str = "enricher", share: float = 0.03, share_after_fault: float | None = None,
           per_hour: float = 20.0, growth_after_fault: float = 1.0) -> tuple[list[dict], list[dict]]:
    """`agent`'s crm.update_field writes of industry and region on new leads from START to END, each set back by a
    rep with probability `share` (`share_after_fault` from FAULT on, when a new version ships); plus, for every
    stream, late edits of 10% of the leads two to four days on (past the window) and rep edits of phone numbers."""
    rng = np.random.default_rng(seed)
    actions: list[dict] = []
    outcomes: list[dict] = []
    for hour in range(int((END - START) / timedelta(hours=1))):
        begin = START + timedelta(hours=hour)
        after_fault = begin >= FAULT
        for _ in range(rng.poisson(per_hour * (growth_after_fault if after_fault else 1.0))):
            at = begin + timedelta(seconds=float(rng.uniform(0, 3600)))
            event_id = f"{agent}-{len(actions):05d}"
            before = {"industry": str(rng.choice(INDUSTRIES))} if rng.random() < 0.6 else {}
            write = {"event_id": event_id, "ts": iso(at), "agent_id": agent, "action": "crm.update_field",
                     "agent_version": "2.0" if after_fault and share_after_fault is not None else "1.4",
                     "resource": {"type": "lead", "id": f"L-{event_id}"}, "status": "ok",
                     "after": {"industry": str(rng.choice(INDUSTRIES)), "region": str(rng.choice(REGIONS))},
                     "before": before}
            actions.append(write)
            p = share_after_fault if after_fault and share_after_fault is not None else share
            if rng.random() < p:
                field = "Industry" if rng.random() < 0.7 else "Region"
                outcomes.append(revert(rng, write, field, f"o-{event_id}", office_time(at, rng)))
            if rng.random() < 0.1:  # look-alike: a rep tidies the record days later, past the window
                later = at + timedelta(days=float(rng.uniform(2, 4)))
                outcomes.append({"event_id": f"late-{event_id}", "ts": iso(later), "kind": "field_changed",
                                 "resource": write["resource"], "actor": "rep-3", "field": "Industry",
                                 "from": write["after"]["industry"], "to": "other"})
            if rng.random() < 0.05:  # look-alike: a rep changes a field the agent did not write
                outcomes.append({"event_id": f"phone-{event_id}", "ts": iso(office_time(at, rng)),
                                 "kind": "field_changed", "resource": write["resource"], "actor": "rep-4",
                                 "field": "Phone", "from": None, "to": "+44 20 7946 0000"})
    return [a for a in actions if a["ts"] <= iso(END)], [o for o in outcomes if o["ts"] <= iso(END)]


def look_alikes_after_fault(actions: list[dict], outcomes: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """From FAULT on: a cleanup setting 300 old leads' industry to a third value (written days before: past the
    window), and on the leads written in the twelve hours after FAULT that reps leave alone, reps changing the lead
    source (a field the agent did not write) and the agent re-writing the industry, each re-write echoed by the CRM
    feed with the agent as actor."""
    rng = np.random.default_rng(seed)
    old = [a for a in actions if a["ts"] < iso(FAULT - 2 * DAY)][:300]
    set_back = {o["resource"]["id"] for o in outcomes if o["event_id"].startswith("o-")}
    fresh = [a for a in actions if iso(FAULT) <= a["ts"] < iso(FAULT + timedelta(hours=12))
             and a["resource"]["id"] not in set_back]
    more_actions, more_outcomes = [], []
    for i, write in enumerate(old):
        more_outcomes.append({"event_id": f"cleanup-{i}", "ts": iso(FAULT + timedelta(hours=1, seconds=30 * i)),
                              "kind": "field_changed", "resource": write["resource"], "actor": "ops-1",
                              "field": "Industry", "from": write["after"]["industry"], "to": "unknown"})
    for i, write in enumerate(fresh):
        at = datetime.fromisoformat(write["ts"])
        more_outcomes.append({"event_id": f"source-{i}", "ts": iso(at + timedelta(hours=1)), "kind": "field_changed",
                              "resource": write["resource"], "actor": "rep-5", "field": "LeadSource",
                              "from": "web", "to": "event"})
        again = at + timedelta(minutes=float(rng.uniform(5, 60)))
        value = str(rng.choice(INDUSTRIES))
        more_actions.append({**write, "event_id": f"rewrite-{i}", "ts": iso(again),
                             "after": {"industry": value}, "before": {"industry": write["after"]["industry"]}})
        # The feed's clock may be a little behind: an echo just before the re-write reads as a change of the
        # first write's value, and only its actor tells it from a rep's revert.
        echoed = again + timedelta(seconds=2 if i % 2 else -2)
        more_outcomes.append({"event_id": f"echo-{i}", "ts": iso(echoed),
                              "kind": "field_changed", "resource": write["resource"], "actor": write["agent_id"],
                              "field": "Industry", "from": write["after"]["industry"], "to": value})
    return more_actions, more_outcomes


def backtest(home):
    return run(home, FAULT - DAY, END, every=timedelta(minutes=30), only=[CHECK])


def test_write_reverted_fires_when_reps_set_back_a_new_versions_writes(home):
    """A new enricher version whose writes reps set back 30% of the time instead of 3% opens one incident, on the
    enricher only, within a day (5 to 7 h over ten seeds at this volume: the reps' working day); the look-alikes and
    a second agent at its steady share add nothing."""
    actions, outcomes = stream(1, share_after_fault=0.30)
    other_actions, other_outcomes = stream(2, agent="region-fixer", per_hour=6)
    more_actions, more_outcomes = look_alikes_after_fault(actions, outcomes, 3)
    store_events(home, actions=actions + other_actions + more_actions,
                 outcomes=outcomes + other_outcomes + more_outcomes)
    report = backtest(home)
    assert not report.failures
    found = opened(report, CHECK)
    assert len(found) == 1, found
    at, incident = found[0]
    assert incident.subject == {"agent_id": "enricher", "action": "crm.update_field"}
    # Reverts lag by hours, so the start is known to within hours: the night's writes before it, set back in the
    # morning with the new version's, blur it.
    assert FAULT - timedelta(hours=6) <= incident.started_at <= FAULT + timedelta(hours=4)
    assert timedelta(0) < at - FAULT < DELAY_BOUND
    assert incident.evidence["ratio"] > 2 and incident.evidence["baseline_share_within_lag"] < 0.06
    assert set(incident.evidence["reverted_fields"]) == {"industry", "region"}
    assert "industry" in incident.summary
    assert set(incident.sample_event_ids) <= {a["event_id"] for a in actions}


def test_write_reverted_quiet_on_look_alikes(home):
    """Steady 3% reverts, plus from FAULT on a cleanup of old leads past the window, changes to a field the agent did
    not write and the agent's own re-writes echoed back by the CRM, open nothing."""
    actions, outcomes = stream(4)
    more_actions, more_outcomes = look_alikes_after_fault(actions, outcomes, 5)
    store_events(home, actions=actions + more_actions, outcomes=outcomes + more_outcomes)
    report = backtest(home)
    assert not report.failures
    assert opened(report, CHECK) == []


def test_write_reverted_quiet_on_clean_traffic_that_grows(home):
    """Twice the writes from FAULT on, set back at the same 3%, open nothing."""
    actions, outcomes = stream(6, growth_after_fault=2.0)
    store_events(home, actions=actions, outcomes=outcomes)
    report = backtest(home)
    assert not report.failures
    assert opened(report, CHECK) == []


def test_write_reverted_quiet_on_busy_clean_traffic(home):
    """100 writes an hour set back at the steady 3% in office hours open nothing: against the whole week's lag curve
    a weekday's writes look set back too often (reps work in the day, not at night or at the weekend), which at
    this volume fired; against the same time of the week they do not."""
    actions, outcomes = stream(7, per_hour=100)
    store_events(home, actions=actions, outcomes=outcomes)
    report = backtest(home)
    assert not report.failures
    assert opened(report, CHECK) == []


def test_reverts_are_matched_to_writes_by_record_field_value_and_window(home):
    """The matching rule, on a handful of events through the real store: which outcomes set back which writes."""
    at = T0 + timedelta(hours=10)

    def write(event_id: str, lead: str, minutes: int, after: dict, before: dict | None = None) -> dict:
        return {"event_id": event_id, "ts": iso(at + timedelta(minutes=minutes)), "agent_id": "enricher",
                "action": "crm.update_field", "resource": {"type": "lead", "id": lead}, "status": "ok",
                "after": after, **({"before": before} if before is not None else {})}

    def change(event_id: str, lead: str, hours: float, field: str, **keys: object) -> dict:
        return {"event_id": event_id, "ts": iso(at + timedelta(hours=hours)), "kind": "field_changed",
                "resource": {"type": "lead", "id": lead}, "actor": keys.pop("actor", "rep-1"), "field": field,
                **{("from" if k == "was" else k): v for k, v in keys.items()}}

    actions = [
        write("w-from", "L1", 0, {"industry": "Retail"}),
        write("w-to", "L2", 0, {"industry": "Retail"}, {"industry": "Software"}),
        write("w-named", "L3", 0, {"Region": "EMEA"}),
        write("w-third", "L4", 0, {"industry": "Retail"}, {"industry": "Software"}),
        write("w-late", "L5", 0, {"industry": "Retail"}),
        write("w-other-field", "L6", 0, {"industry": "Retail"}),
        write("w-own", "L7", 0, {"industry": "Retail"}),
        write("w-first", "L8", 0, {"industry": "Retail"}),
        write("w-again", "L8", 60, {"industry": "Retail"}),
        write("w-mapped", "L9", 0, {"industry": "Retail"}),
        {**write("w-failed", "L10", 0, {"industry": "Retail"}), "status": "error", "error": {"code": "timeout"}},
    ]
    outcomes = [
        change("o-from", "L1", 2, "Industry", was=" retail ", to="Software"),  # from the value written
        change("o-to", "L2", 3, "industry", to="software"),  # back to the value before
        change("o-named", "L3", 4, "region", corrects_event_id="w-named", to="APAC"),  # names the write
        change("o-third", "L4", 2, "Industry", to="Finance"),  # a third value, from unknown: not a revert
        change("o-late", "L5", 30, "Industry", was="Retail", to="Finance"),  # past the day's window
        change("o-other-field", "L6", 2, "Phone", was=None, to="+1 555"),  # a field the agent did not write
        change("o-own", "L7", 2, "Industry", was="Retail", to="Finance", actor="enricher"),  # the agent itself
        change("o-again", "L8", 2, "Industry", was="Retail", to="Finance"),  # the latest write of the field
        change("o-mapped", "L9", 2, "Industry__c", was="Retail", to="Finance"),  # through the `fields` option
        change("o-failed", "L10", 2, "Industry", was="Retail", to="Finance"),  # the write failed: no write
    ]
    store_events(home, actions=actions, outcomes=outcomes)
    con = open_reader(home)
    try:
        reverts = write_reverts_sql(field_writes_select("actions", "true", []), "SELECT * FROM outcomes",
                                    {"Industry__c": "industry"}, timedelta(hours=24))
        rows = duck.run(con, f"SELECT event_id, lag, fields FROM ({reverts}) ORDER BY event_id")
    finally:
        con.close()
    assert rows == [("w-again", 3600.0, ["industry"]), ("w-from", 7200.0, ["industry"]),
                    ("w-mapped", 7200.0, ["industry"]), ("w-named", 14400.0, ["region"]),
                    ("w-to", 10800.0, ["industry"])]


def test_kept_rows_answer_what_a_full_recompute_answers(home):
    """The writes and the baseline histogram kept in the home per day give the rows a recompute over every event
    gives, for a ragged range (the as-of join reads writes and outcomes up to a day past each row)."""
    actions, outcomes = stream(8, per_hour=4, share=0.2)
    store_events(home, actions=actions, outcomes=outcomes)
    since, last = FAULT - 3 * DAY + timedelta(minutes=7), FAULT + timedelta(hours=5, minutes=3)
    for rollup in (field_writes([]), revert_histogram([], {"Industry__c": "industry"}, timedelta(hours=24))):
        con = open_reader(home)
        try:
            kept = RollupStore(home, con, now=END, small_bytes=0).frame(rollup, since, last)
            full = pl.DataFrame(duck.run_arrow(con, rollup.select(rollup.views(),
                                                                  requested_span(rollup, since, last))))
        finally:
            con.close()
        assert kept.height > 0 and list((home.root / "aggregates" / rollup.name).glob("day=*.parquet"))
        assert kept.select(full.columns).sort(full.columns, nulls_last=True).equals(
            full.sort(full.columns, nulls_last=True))
    assert full["bin"].drop_nulls().len() > 0  # the histogram holds reverts, not only writes


def test_a_field_changed_outcome_ingests_and_one_without_its_field_is_refused(home, tmp_path):
    """field_changed is an outcome kind the store keeps with its field and values; without `field` (or with an empty
    one) it is refused, the error naming the key; the published JSON Schema says both."""
    good = {"event_id": "o-1", "ts": iso(T0), "kind": "field_changed", "resource": {"type": "lead", "id": "L-1"},
            "actor": "rep-9", "field": "Industry", "from": "Retail", "to": "Software", "corrects_event_id": "act-1"}
    store_events(home, outcomes=[good])
    con = open_reader(home)
    try:
        row = duck.run(con, "SELECT kind, field, from_value, to_value, corrects_event_id FROM outcomes")
    finally:
        con.close()
    assert [(r[0], r[1], json.loads(r[2]), json.loads(r[3]), r[4]) for r in row] == [
        ("field_changed", "Industry", "Retail", "Software", "act-1")]

    path = tmp_path / "bad.jsonl"
    bad = [{**good, "event_id": "o-2"}, {**good, "event_id": "o-3", "field": ""}]
    del bad[0]["field"]
    path.write_text("".join(json.dumps(e) + "\n" for e in bad))
    report = ingest_files(home, OUTCOMES, [path], None, None)
    assert report.rejected == 2
    assert all("field: a field_changed outcome must name the CRM field that changed" in r.describe()
               for r in report.sample)

    schema = json.loads((JSON_DIR / "outcome_event.v1.schema.json").read_text())
    assert "field_changed" in schema["properties"]["kind"]["enum"]
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(good)
    assert not any(validator.is_valid(event) for event in bad)
    assert validator.is_valid({k: v for k, v in good.items() if k != "field"} | {"kind": "owner_changed"})
