"""Links between incidents with one root: which incident explains which.

Each rule says: an incident of check E is explained by an incident of check C when their subjects
match and C began no later than E was opened. A rule is a plain function ``(cause, effect) -> bool``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from agentwatch.checks.book import IncidentBook
from agentwatch.schemas.incidents import Incident, agents_named

SCHEMA_BREAKS = ("schema.field_renamed", "schema.field_removed", "schema.type_changed", "schema.picklist_changed")
BEHAVIOUR = ("quality.null_spike", "drift.distribution")
OUTCOMES = ("outcome.routing_accuracy_drop", "outcome.requalification_spike", "outcome.calibration")


def _agents(incident: Incident) -> set[str]:
    return set(agents_named(incident))


def schema_explains_nulls(cause: Incident, effect: Incident) -> bool:
    """A removed or renamed field explains nulls in the input key that named it."""
    old = cause.evidence.get("old_field", cause.subject.get("field", "")).lower()
    read_as = {k.lower() for k in effect.evidence.get("crm_fields", [])} | {effect.subject.get("field", "").lower()}
    same_object = "object" not in effect.subject or effect.subject["object"] == cause.subject.get("object")
    return bool(old) and old in read_as and same_object


def same_agent(cause: Incident, effect: Incident) -> bool:
    """Both incidents concern at least one common agent, and the effect began within a day of the cause."""
    began_after = effect.started_at - cause.started_at
    return bool(_agents(cause) & _agents(effect)) and timedelta(hours=-1) <= began_after <= timedelta(days=1)


def same_agent_soon(cause: Incident, effect: Incident) -> bool:
    """Errors explain a drop or a half-done workflow of the same agent that began within two hours."""
    began_after = effect.started_at - cause.started_at
    return bool(_agents(cause) & _agents(effect)) and timedelta(hours=-1) <= began_after <= timedelta(hours=2)


def output_feeds_input(cause: Incident, effect: Incident) -> bool:
    """One agent's drifted decision output is another's drifted input (``decision.qualified`` ->
    ``inputs.qualified``): the drift downstream is the upstream drift travelling, not a second problem."""
    if cause.subject.get("agent_id") == effect.subject.get("agent_id"):
        return False
    outputs = {c.split(".", 1)[1] for c in cause.evidence.get("drifted_columns", []) if c.startswith("decision.")}
    inputs = {c.split(".", 1)[1] for c in effect.evidence.get("drifted_columns", []) if c.startswith("inputs.")}
    began_after = effect.started_at - cause.started_at
    return bool(outputs & inputs) and timedelta(hours=-2) <= began_after <= timedelta(days=1)


Rule = tuple[tuple[str, ...], tuple[str, ...], Callable[[Incident, Incident], bool]]
RULES: list[Rule] = [
    (SCHEMA_BREAKS, ("quality.null_spike",), schema_explains_nulls),
    (("quality.null_spike",), ("drift.distribution", *OUTCOMES), same_agent),
    (("drift.distribution",), OUTCOMES, same_agent),
    (("drift.distribution",), ("drift.distribution",), output_feeds_input),
    (("errors.error_burst",), ("workflow.partial_failure", "volume.action_drop"), same_agent_soon),
]


def link_incidents(book: IncidentBook) -> None:
    """Add every link the rules find among the run's open incidents (and the causes they had)."""
    candidates = list(book.by_id.values())
    for causes, effects, rule in RULES:
        for effect in candidates:
            if effect.check not in effects or effect.status == "resolved":
                continue
            for cause in candidates:
                if cause.check in causes and cause.id != effect.id and cause.started_at <= effect.opened_at \
                        and rule(cause, effect):
                    book.link(cause.id, effect.id)
