"""The audit trail of an incident: exactly the actions it is about, as one :class:`Selection` that the dashboard's
audit page (``/audit?incident=INC-n``) and ``agentwatch audit --incident INC-n`` both use, so the rollback plan
and the downloads cover those actions and nothing else done to the same records.

* An incident (with its effects) that measures damage (:mod:`agentwatch.checks.damage`): its actions on bad input,
  each on its own range (the reads that came back null where the companion had a value), with the writes that
  carried out their decisions (``damage.carried_out``: same agent, record and trace), or its failed actions.
* Else, when its subject names an agent: that agent's actions (of the subject's action when it names one) over the
  incident's range, [started_at, resolved_at or last_fired_at]; an approval backlog selects the waiting ones
  (status ``pending_approval``).
* Else none: the incident is about no agent's actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentwatch.checks import damage
from agentwatch.schemas.actions import ACTION_STATUSES
from agentwatch.schemas.incidents import Incident
from agentwatch.store.audit import Query, Selection

WAITING = "pending_approval"  # an approval backlog's actions: those still waiting
WAITING_CHECKS = ("approval.queue_backlog",)


@dataclass(frozen=True)
class AuditScope:
    """The actions of an incident in the audit trail: a predicate over ``actions`` on a range, and in words."""

    incident_id: str
    start: datetime
    end: datetime
    predicate: str  # SQL over actions with ? placeholders
    params: tuple[Any, ...]
    what: str  # the actions, after a count: "lead.enrich and lead.route actions that read deal_stage as null"
    records_with: str  # after the records' count: "with opportunity_id set" ("" when nothing)
    damage: bool  # selected by the damage measure (else the subject's actions over the incident's range)
    failed: bool  # every selected action failed: nothing to roll back
    failed_words: str = ""  # what the failures left undone: "not routed"
    carried: bool = False  # with the writes that carried out the decisions taken on bad input

    def selection(self, **filters: Any) -> Selection:
        """The audit trail's selection of these actions, narrowed by the other `filters` of :class:`Selection`
        (agents, statuses, ...; a ``start`` or ``end`` inside the range narrows it too)."""
        start = max(self.start, filters.pop("start", self.start))
        end = min(self.end, filters.pop("end", self.end))
        filters.setdefault("label", f"the actions of {self.incident_id}")
        return Selection(start, end, predicate=self.predicate, predicate_params=self.params,
                         incident=self.incident_id, **filters)


def audit_scope(incident: Incident, tree: list[Incident]) -> AuditScope | None:
    """The actions `incident` is about, with `tree` the incident and its effects (:func:`damage.family`); None when
    it is about no agent's actions."""
    found = damage.sources(tree)
    if found:
        where, params = damage.bad_actions(found)
        writes, write_params = damage.carried_out(found)
        if writes != "false":
            where, params = f"({where}) OR ({writes})", [*params, *write_params]
        start, end = min(s.start for s in found), max(s.end for s in found)
        kinds = {(s.actions_text, s.did) for s in found}
        what = " and ".join(f"{acts} that {did}" for acts, did in sorted(kinds))

        with_ = {s.records_with for s in found}
        failed = all(s.failed for s in found)
        undone = {damage.failed_words(s.action) for s in found if s.failed and s.action}
        return AuditScope(incident.id, start, end, where, tuple(params), what,
                          with_.pop() if len(with_) == 1 else "", True, failed,
                          undone.pop() if failed and len(undone) == 1 else "", carried=writes != "false")
    agent, action = incident.subject.get("agent_id"), incident.subject.get("action")
    if not isinstance(agent, str) or not agent:
        return None
    start, end = damage.span(incident)
    predicate, params = "agent_id = ?", [agent]
    if isinstance(action, str) and action:
        predicate += " AND action = ?"
        params.append(action)
    what = f"actions of {agent}" + (f" {action}" if isinstance(action, str) and action else "")
    if incident.check in WAITING_CHECKS and WAITING in ACTION_STATUSES:
        predicate += " AND status = ?"
        params.append(WAITING)
        what = f"{WAITING} {what}"
    return AuditScope(incident.id, start, end, predicate, tuple(params), what, "", False, False)


def incident_scope(incident_id: str, get: Callable[[str], Incident],
                   get_many: Callable[[list[str]], list[Incident]]) -> tuple[Incident, AuditScope | None]:
    """The incident of that id and its scope (`get` raises for an unknown id)."""
    incident = get(incident_id)
    return incident, audit_scope(incident, damage.family(incident, get_many))


def counts_sql(selection: Selection) -> Query:
    """Per resource type: the ``records`` the selection's actions touched and the ``actions``, the most first."""
    where, params = selection.where()
    return (f"SELECT resource_type, count(DISTINCT resource_id) AS records, count(*) AS actions FROM actions "
            f"WHERE {where} GROUP BY resource_type ORDER BY records DESC, resource_type", params)


def sentence(scope: AuditScope, counts: list[tuple[str, int, int]], when: Callable[[datetime], str]) -> str:
    """The selection in words, from `counts` (resource type, records, actions) and times as `when` writes them:
    ``the 1,890 lead.enrich and lead.route actions that read deal_stage as null on 715 leads with opportunity_id
    set, with the writes that carried out their decisions (...)``; ``the 64 actions of lead-router
    lead.assign_owner from ... to ...``. The count is of every selected action, the writes included."""
    actions = sum(n for _, _, n in counts)
    on = " and ".join(damage.plural(kind, records) for kind, records, _ in counts) or "no record"
    text = f"the {actions:,} {scope.what} on {on}"
    if scope.records_with:
        text += f" {scope.records_with}"
    if scope.failed_words:
        text += f" ({scope.failed_words})"
    if scope.carried:
        text += (", with the writes that carried out their decisions (the same agent's, on the same record, in the "
                 "same trace)")
    if not scope.damage:
        text += f", from {when(scope.start)} to {when(scope.end)}"
    return text
