"""quality.null_spike: a key's null share jumps against its own baseline; impact counted; linked to renames."""

from __future__ import annotations

import random
from datetime import timedelta

from tests.checks_support import T0, iso, opened, run, store_events
from tests.test_check_schema import lead_fields, snapshot

ONLY = ["quality.null_spike", "schema.field_renamed"]


def traffic(days: float, inputs, agent: str = "lead-router", action: str = "lead.route", every_min: int = 4,
            seed: int = 1) -> list[dict]:
    """One event every `every_min` minutes; `inputs(rng, at)` makes each event's inputs."""
    rng = random.Random(seed)
    events = []
    for i in range(int(days * 24 * 60 / every_min)):
        at = T0 + timedelta(minutes=every_min * i)
        events.append({"event_id": f"{agent}-{action}-{i}", "ts": iso(at), "agent_id": agent, "action": action,
                       "resource": {"type": "lead", "id": f"L-{i}"}, "status": "ok", "inputs": inputs(rng, at),
                       "decision": {"sequence": "nurture" if inputs(rng, at).get("deal_stage") is None else "ae"}})
    return events


def test_fires_when_a_filled_key_turns_null(home):
    """region, filled 98% of the time, reads null from T on: fires within 30 minutes, naming field and agent."""
    fault = T0 + timedelta(days=8, hours=10, minutes=7)

    def inputs(rng, at):
        return {"region": None if at >= fault or rng.random() < 0.02 else "EMEA", "email": "x@y.co"}

    store_events(home, actions=traffic(8.7, inputs, every_min=1))
    report = run(home, T0 + timedelta(days=8), T0 + timedelta(days=8, hours=16), only=ONLY)
    (at, incident), = opened(report, "quality.null_spike")
    assert incident.subject == {"field": "region"}
    assert incident.evidence["agents"] == ["lead-router"]
    assert incident.severity == "critical"
    assert at - fault <= timedelta(minutes=30)
    assert abs(incident.started_at - fault) <= timedelta(minutes=10)


def test_quiet_on_ordinary_noise_of_a_mostly_null_key(home):
    """A key null 80% of the time, with runs of nulls at night, stays quiet for a week."""

    def inputs(rng, at):
        night = at.hour < 7
        return {"deal_stage": None if rng.random() < (0.95 if night else 0.8) else "open", "email": "x@y.co"}

    store_events(home, actions=traffic(15, inputs))
    report = run(home, T0 + timedelta(days=8), T0 + timedelta(days=15), every=timedelta(hours=1), only=ONLY)
    assert opened(report, "quality.null_spike") == []


def test_a_mostly_null_key_needs_its_values_gone_not_halved(home):
    """deal_stage has a value for the 10% of leads with an open deal (the benchmark's field). A day of new-logo
    campaign leads halves that share (10% -> 4%): a mix shift, which pages nobody; the rename a day later takes the
    values to none and fires within 3 hours (one read a minute: `min_missing_values` 10 at about 6 values an hour).
    """
    campaign, rename = T0 + timedelta(days=8, hours=6), T0 + timedelta(days=9, hours=10)

    def inputs(rng, at):
        share = 0.0 if at >= rename else 0.04 if at >= campaign else 0.10
        return {"deal_stage": "proposal" if rng.random() < share else None, "email": "x@y.co"}

    store_events(home, actions=traffic(9.8, inputs, every_min=1))
    report = run(home, T0 + timedelta(days=8), T0 + timedelta(days=9, hours=18), only=ONLY)
    (at, incident), = opened(report, "quality.null_spike")
    assert incident.subject == {"field": "deal_stage"}
    assert rename < at <= rename + timedelta(hours=3)


def test_quiet_on_a_key_sent_with_some_events_only(home):
    """A key present in a quarter of the events (the field an update touches) is judged where present only."""

    def inputs(rng, at):
        return {"employees": 10 if rng.random() < 0.6 else None} if rng.random() < 0.25 else {"industry": "x"}

    store_events(home, actions=traffic(10, inputs))
    report = run(home, T0 + timedelta(days=8), T0 + timedelta(days=10), every=timedelta(hours=1), only=ONLY)
    assert opened(report, "quality.null_spike") == []


def test_rename_explains_the_null_spike_and_impact_is_counted(home, query):
    """After deal_stage is renamed, the null spike is linked as the rename's effect, and reads of records with an
    opportunity (which had a stage to read) are counted with the decisions taken on them; its sample events are such
    reads (deal_stage null, opportunity_id set), at or after the start, not the ordinary nulls before the rename."""
    rename = T0 + timedelta(days=8, hours=9, minutes=2)

    def inputs(rng, at):
        has_deal = rng.random() < 0.5
        stage = "negotiation" if has_deal and at < rename else None
        return {"deal_stage": stage, "opportunity_id": "OPP-1" if has_deal else None, "email": "x@y.co"}

    store_events(home, actions=traffic(8.6, inputs), snapshots=[
        snapshot(T0, lead_fields()), snapshot(rename + timedelta(minutes=5), lead_fields("opportunity_stage"))])
    report = run(home, T0 + timedelta(days=8), T0 + timedelta(days=8, hours=14), only=ONLY)
    final = {i.id: i for i in report.incidents}
    (_, spike), = opened(report, "quality.null_spike")
    (_, renamed), = opened(report, "schema.field_renamed")
    spike, renamed = final[spike.id], final[renamed.id]
    assert spike.caused_by == [renamed.id] and renamed.effects == [spike.id]
    assert spike.evidence["companion"] == "opportunity_id"
    with_deal = spike.evidence["should_have_value"]
    assert 0 < with_deal < spike.evidence["null_reads"]
    assert spike.evidence["decisions"][0] == {"decision": "sequence=nurture", "count": with_deal}
    samples = query("SELECT event_id, ts, inputs ->> '$.deal_stage', inputs ->> '$.opportunity_id' FROM actions "
                    "WHERE list_contains(?, event_id)", [spike.sample_event_ids])
    assert len(samples) == len(spike.sample_event_ids) == 10
    assert all(ts >= spike.started_at and stage is None and opportunity is not None
               for _, ts, stage, opportunity in samples)
    assert min(ts for _, ts, _, _ in samples) >= rename  # the first bad reads came with the rename


def test_one_agents_own_bug_is_found_while_another_agent_reads_values(home):
    """The router reads region as null (its bug) while the qualifier still reads values: the qualifier's healthy
    reads do not hide the router's nulls, and only the router is named."""
    fault = T0 + timedelta(days=8, hours=10, minutes=7)

    def router_inputs(rng, at):
        return {"region": None if at >= fault else "EMEA"}

    def qualifier_inputs(rng, at):
        return {"region": "EMEA"}

    store_events(home, actions=traffic(8.7, router_inputs, every_min=2)
                 + traffic(8.7, qualifier_inputs, agent="qualifier-agent", action="lead.qualify", every_min=1))
    report = run(home, T0 + timedelta(days=8), T0 + timedelta(days=8, hours=14), only=ONLY)
    (at, incident), = opened(report, "quality.null_spike")
    assert incident.evidence["agents"] == ["lead-router"]
    assert at - fault <= timedelta(minutes=30)
