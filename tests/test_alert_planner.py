"""Notification planning: grouping by cause and by burst, routing, timing (wait, update, repeat), ack and resolve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.alerts.config import AlertsConfig
from agentwatch.alerts.grouping import assign_groups
from agentwatch.alerts.planner import PlanState, plan
from agentwatch.schemas.incidents import Incident

AT = datetime(2026, 10, 5, 10, 45, tzinfo=UTC)
WAIT = timedelta(minutes=2)


def incident(number: int, check: str = "quality.null_spike", severity: str = "critical", opened: datetime = AT,
             caused_by: tuple[str, ...] = (), status: str = "open", **subject: str) -> Incident:
    return Incident(id=f"INC-{number}", check=check, severity=severity, status=status, opened_at=opened,
                    started_at=opened - timedelta(minutes=10), last_fired_at=opened,
                    subject=subject or {"field": f"f{number}"}, summary=f"incident {number}",
                    affected=5, caused_by=list(caused_by))


def rename(number: int = 1, opened: datetime = AT) -> Incident:
    return incident(number, "schema.field_renamed", opened=opened, object="Lead",
                    field="deal_stage -> opportunity_stage")


def config(**overrides: Any) -> AlertsConfig:
    raw: dict[str, Any] = {"destinations": {"slack": {"type": "slack", "url": "http://127.0.0.1:9/s"},
                                            "pd": {"type": "pagerduty", "routing_key": "k"}},
                           "default": ["slack"], "group_wait": "2m", "group_interval": "30m",
                           "repeat_interval": "4h"}
    raw.update(overrides)
    return AlertsConfig.model_validate(raw)


class Planner:
    """Runs passes over one evolving set of incidents, as the server does every second."""

    def __init__(self, alerts: AlertsConfig | None = None) -> None:
        self.alerts = alerts or config()
        self.state = PlanState()
        self.sent: list[tuple[str, str, str, list[str]]] = []  # (destination, event, group, member ids)

    def at(self, now: datetime, *incidents: Incident, silences: tuple = ()) -> list[tuple[str, str, str, list[str]]]:
        out = plan(incidents, self.state, self.alerts, list(silences), now, "test")
        made = [(n.destination, n.event, n.group_key, [i.id for i in n.incidents]) for n in out]
        self.sent += made
        return made


def test_nothing_is_sent_before_group_wait_then_one_trigger() -> None:
    """A new incident waits group_wait, then goes out once as a trigger."""
    planner = Planner()
    spike = incident(2)
    assert planner.at(AT, spike) == []
    assert planner.at(AT + WAIT, spike) == [("slack", "trigger", "INC-2", ["INC-2"])]


def test_repeated_passes_send_nothing_twice() -> None:
    """Passes over an unchanged open incident send nothing more until the repeat interval."""
    planner = Planner()
    spike = incident(2)
    for minutes in range(2, 230, 7):
        planner.at(AT + timedelta(minutes=minutes), spike)
    assert [s[1] for s in planner.sent] == ["trigger"]


def test_repeat_after_the_repeat_interval_and_a_route_may_shorten_it() -> None:
    """A group still open is sent again after repeat_interval; a route's own repeat_interval wins for it;
    PagerDuty gets no repeats (it re-notifies by its own escalation policy)."""
    planner = Planner(config(
        destinations={"slack": {"type": "slack", "url": "http://127.0.0.1:9/s"},
                      "ops": {"type": "webhook", "url": "http://127.0.0.1:9/w"},
                      "pd": {"type": "pagerduty", "routing_key": "k"}},
        routes=[{"match": {"check": "volume.*"}, "destinations": ["ops", "pd"], "repeat_interval": "1h"}]))
    spike, burst = incident(2), incident(3, "volume.action_spike", agent_id="lead-router", action="email.send")
    planner.at(AT + WAIT, spike, burst)
    assert planner.at(AT + WAIT + timedelta(hours=1), spike, burst) == [("ops", "repeat", "INC-3", ["INC-3"])]
    assert planner.at(AT + WAIT + timedelta(hours=4), spike, burst) == [
        ("ops", "repeat", "INC-3", ["INC-3"]), ("slack", "repeat", "INC-2", ["INC-2"])]


def test_a_cause_and_its_effects_opened_together_go_out_as_one_notification() -> None:
    """A rename and the null spike and drift it caused, opened in one group_wait, make one trigger listing all
    three, root first."""
    planner = Planner()
    root = rename(1)
    spike = incident(2, caused_by=("INC-1",))
    drift = incident(3, "drift.distribution", severity="warning", caused_by=("INC-2",), agent_id="lead-router")
    assert planner.at(AT + WAIT, drift, spike, root) == [("slack", "trigger", "INC-1", ["INC-1", "INC-2", "INC-3"])]


def test_an_effect_found_later_joins_the_group_as_one_update_after_group_interval() -> None:
    """An effect linked after the root was sent is no page of its own: it goes out as an update of the root's
    group once group_interval has passed since the last message."""
    planner = Planner()
    root = rename(1)
    planner.at(AT + WAIT, root)
    later = AT + timedelta(minutes=10)
    spike = incident(2, caused_by=("INC-1",), opened=later)
    assert planner.at(later + WAIT, root, spike) == []
    assert planner.at(AT + WAIT + timedelta(minutes=30), root, spike) == [
        ("slack", "update", "INC-1", ["INC-1", "INC-2"])]
    assert all(group == "INC-1" for _, _, group, _ in planner.sent)


def test_a_rise_in_severity_is_sent_at_once() -> None:
    """When a warning group gains a critical incident, the update goes out without waiting for group_interval."""
    planner = Planner()
    drift = incident(1, "drift.distribution", severity="warning", agent_id="lead-router")
    planner.at(AT + WAIT, drift)
    worse = incident(2, caused_by=("INC-1",), opened=AT + timedelta(minutes=5))
    sent = planner.at(AT + timedelta(minutes=5), drift, worse)
    assert sent == [("slack", "update", "INC-1", ["INC-1", "INC-2"])]


def test_a_burst_of_one_check_is_one_group() -> None:
    """Roots of one check opened within group_wait of each other form one group; a later one its own."""
    planner = Planner()
    spikes = [incident(n, "volume.action_spike", severity="warning", agent_id=f"agent-{n}", action="lead.route")
              for n in (7, 8, 9)]
    late = incident(10, "volume.action_spike", severity="warning", opened=AT + timedelta(hours=2), agent_id="x",
                    action="lead.route")
    assert planner.at(AT + WAIT, *spikes) == [("slack", "trigger", "INC-7", ["INC-7", "INC-8", "INC-9"])]
    assert planner.at(AT + timedelta(hours=2) + WAIT, *spikes, late) == [("slack", "trigger", "INC-10", ["INC-10"])]


def test_acknowledge_then_resolve() -> None:
    """When every open incident of a sent group is acknowledged an acknowledge goes out; when all resolve, a
    resolve; after that nothing more."""
    planner = Planner()
    root, spike = rename(1), incident(2, caused_by=("INC-1",))
    planner.at(AT + WAIT, root, spike)
    acked = [i.model_copy(update={"status": "acknowledged"}) for i in (root, spike)]
    assert planner.at(AT + timedelta(minutes=5), *acked) == [
        ("slack", "acknowledge", "INC-1", ["INC-1", "INC-2"])]
    resolved = [i.model_copy(update={"status": "resolved"}) for i in (root, spike)]
    assert planner.at(AT + timedelta(minutes=9), *resolved) == [("slack", "resolve", "INC-1", ["INC-1", "INC-2"])]
    assert planner.at(AT + timedelta(hours=9), *resolved) == []


def test_the_group_resolves_only_when_all_its_incidents_have() -> None:
    """A group with one incident resolved and one open stays open: no resolve is sent."""
    planner = Planner()
    root, spike = rename(1), incident(2, caused_by=("INC-1",))
    planner.at(AT + WAIT, root, spike)
    assert planner.at(AT + timedelta(minutes=9), root.model_copy(update={"status": "resolved"}), spike) == []


def test_an_incident_resolved_before_it_was_ever_sent_is_not_sent() -> None:
    """An incident that opened and resolved within group_wait produces no message at all."""
    planner = Planner()
    gone = incident(2, status="resolved")
    assert planner.at(AT + timedelta(hours=1), gone) == []


def test_routes_match_in_order_continue_and_default() -> None:
    """The first matching route wins; `continue` also tries the next; unmatched incidents take the default."""
    alerts = config(routes=[
        {"match": {"check": "schema.*", "severity": "critical"}, "destinations": ["pd"], "continue": True},
        {"match": {"agent_id": "lead-router"}, "destinations": ["slack"]},
    ])
    assert [d for d, _ in alerts.routes_for({"check": ["schema.field_renamed"], "severity": ["critical"],
                                             "agent_id": ["lead-router"]})] == ["pd", "slack"]
    assert [d for d, _ in alerts.routes_for({"check": ["schema.field_renamed"], "severity": ["warning"]})] == ["slack"]
    assert [d for d, _ in alerts.routes_for({"check": ["volume.action_spike"], "agent_id": ["router-2"]})] == [
        "slack"]
    no_default = config(default=[], routes=[{"match": {"check": "schema.*"}, "destinations": ["pd"]}])
    assert no_default.routes_for({"check": ["quality.null_spike"]}) == []


def test_each_destination_gets_its_own_share_of_a_group() -> None:
    """Routing comes before grouping: PagerDuty gets the critical rename group, Slack everything."""
    planner = Planner(config(routes=[{"match": {"severity": "critical"}, "destinations": ["pd", "slack"]}]))
    root = rename(1)
    drift = incident(2, "drift.distribution", severity="warning", caused_by=("INC-1",), agent_id="lead-router")
    sent = planner.at(AT + WAIT, root, drift)
    assert sorted(sent) == [("pd", "trigger", "INC-1", ["INC-1"]), ("slack", "trigger", "INC-1", ["INC-1", "INC-2"])]


def test_min_severity_keeps_info_incidents_out() -> None:
    """Info incidents are below the default min_severity (warning): recorded, never sent."""
    planner = Planner()
    added = incident(3, "schema.field_added", severity="info", object="Lead", field="Twitter_Handle__c")
    assert planner.at(AT + timedelta(hours=1), added) == []


class FieldSilence:
    """Silences anything about one field (the planner only needs `matches`)."""

    def matches(self, properties: dict[str, list[str]]) -> bool:
        return "deal_stage" in properties.get("field", [])


def test_a_silenced_incident_is_not_sent_and_goes_out_when_the_silence_ends() -> None:
    """While a silence matches it nothing is sent; once the silence is gone the still-open incident is."""
    planner = Planner()
    spike = incident(2, field="deal_stage")
    assert planner.at(AT + WAIT, spike, silences=(FieldSilence(),)) == []
    assert planner.at(AT + timedelta(hours=2), spike) == [("slack", "trigger", "INC-2", ["INC-2"])]


def test_notification_ids_and_dedup_keys_are_stable() -> None:
    """Each message has a unique id; every message of one group carries the same dedup_key."""
    alerts = config()
    state = PlanState()
    root = rename(1)
    first = plan([root], state, alerts, [], AT + WAIT, "abcd")
    second = plan([root.model_copy(update={"status": "resolved"})], state, alerts, [], AT + timedelta(hours=1), "abcd")
    assert first[0].id != second[0].id
    assert first[0].dedup_key == second[0].dedup_key == "agentwatch-abcd-INC-1"
    assert first[0].dashboard_url.endswith("?incident=INC-1")
    assert "deal_stage -> opportunity_stage" in first[0].title


@pytest.mark.parametrize("late_link", [True, False])
def test_an_incident_linked_after_first_seen_moves_to_its_cause_only_if_never_sent(late_link: bool) -> None:
    """An incident first seen alone joins its cause's group when the link appears later, unless it was already
    sent as a group of its own."""
    spike = incident(2)
    groups: dict[str, str] = {}
    assign_groups({"INC-2": spike}, groups, set(), WAIT)
    linked = spike.model_copy(update={"caused_by": ["INC-1"]})
    sent_keys = set() if late_link else {"INC-2"}
    assign_groups({"INC-1": rename(1), "INC-2": linked}, groups, sent_keys, WAIT)
    assert groups["INC-2"] == ("INC-1" if late_link else "INC-2")


def test_a_silence_added_after_a_group_was_sent_stops_its_repeats_but_not_its_resolve() -> None:
    """Silencing an incident already sent stops its repeats; when it resolves the resolve is still sent."""
    planner = Planner()
    spike = incident(2, field="deal_stage")
    planner.at(AT + WAIT, spike)
    for hours in (4, 8, 12):
        assert planner.at(AT + WAIT + timedelta(hours=hours), spike, silences=(FieldSilence(),)) == []
    resolved = spike.model_copy(update={"status": "resolved"})
    assert planner.at(AT + timedelta(hours=13), resolved, silences=(FieldSilence(),)) == [
        ("slack", "resolve", "INC-2", ["INC-2"])]
