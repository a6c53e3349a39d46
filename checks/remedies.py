"""What to do about an incident: a suggested fix per check, written from the incident's subject and evidence, for the
dashboard's incident page and ``agentwatch incident show`` (the API can serve it later).

Plain text: the names in it come from events (agents, fields, actions), so whoever shows it as Markdown escapes it.
Each fix names the thing to change (a field, an agent, a key of ``agentwatch.yaml``) and how the incident then
resolves (its check's rule, docs/checks.md). Every registered check has one (tests/test_checks_contract.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agentwatch.schemas.incidents import Incident


@dataclass(frozen=True)
class Remedy:
    """A suggested fix: the text, and a snippet of ``agentwatch.yaml`` when the fix is a config change."""

    text: str
    config: str | None = None


def remedy(incident: Incident) -> Remedy:
    """The suggested fix of this incident (its check's, else its family's, else a general one)."""
    write = FIXES.get(incident.check) or FIXES.get(incident.check.split(".")[0] + ".*") or _general
    return write(_Facts(incident))


class _Facts:
    """The incident's subject and evidence as the fixes quote them, with a readable stand-in where one is absent."""

    def __init__(self, incident: Incident) -> None:
        self.incident = incident
        self.subject = incident.subject
        self.evidence = incident.evidence

    def get(self, key: str, default: str) -> str:
        value = self.subject.get(key, self.evidence.get(key))
        return str(value) if isinstance(value, str | int | float) and str(value) else default

    @property
    def agent(self) -> str:
        return self.get("agent_id", self.agents or "the agent")

    @property
    def action(self) -> str:
        return self.get("action", "its action")

    @property
    def agents(self) -> str:
        return ", ".join(str(a) for a in self.evidence.get("agents", []) if isinstance(a, str))

    def listed(self, key: str) -> str:
        values = self.evidence.get(key)
        return ", ".join(str(v) for v in values) if isinstance(values, list) else ""


def _schema_names(facts: _Facts) -> tuple[str, str, str, list[str]]:
    """(object, old field, new field, the input keys agents read it by)."""
    evidence = facts.evidence
    label = facts.subject.get("field", "")
    old = evidence.get("old_field") or label.split("->")[0].strip() or "the field"
    new = evidence.get("new_field") or (label.split("->")[1].strip() if "->" in label else old)
    keys = [k for k in evidence.get("input_keys", []) if isinstance(k, str)] or [str(old)]
    return facts.get("object", "the object"), str(old), str(new), keys


def _resolve_on_reads(facts: _Facts) -> str:
    return ("then resolve: the guard lifts the pause on evidence, once reads carry values again" if facts.agents
            else "then resolve it")


def _renamed(facts: _Facts) -> Remedy:
    obj, old, new, keys = _schema_names(facts)
    mapping = ", ".join(f"{key}: {obj}.{new}" for key in keys)
    if not facts.agents:
        return Remedy(f"No agent reads {obj}.{old}: nothing breaks now. Point any integration that read {old} at "
                      f"{new}; it resolves by itself once reported (`report_hours`).")
    return Remedy(f"Map the old key to the new field in agentwatch.yaml, `fields: {{{mapping}}}`, or update the "
                  f"agents ({facts.agents}) to read {new}; {_resolve_on_reads(facts)}.",
                  "fields:\n" + "".join(f"  {key}: {obj}.{new}\n" for key in keys))


def _removed(facts: _Facts) -> Remedy:
    obj, old, _, keys = _schema_names(facts)
    if not facts.agents:
        return Remedy(f"No agent reads {obj}.{old}: nothing breaks now; it resolves by itself once reported.")
    return Remedy(f"Restore {obj}.{old} in the CRM (the next snapshot shows it back), or map {', '.join(keys)} to the "
                  f"field that replaces it in agentwatch.yaml (`fields: {{{keys[0]}: {obj}.<Field>}}`), or change the "
                  f"agents ({facts.agents}) to stop reading it; {_resolve_on_reads(facts)}.")


def _type_changed(facts: _Facts) -> Remedy:
    obj, old, _, _ = _schema_names(facts)
    was, now = facts.get("from", "its old type"), facts.get("to", "the new type")
    readers = facts.agents or "none read it"
    return Remedy(f"Change {obj}.{old} back to {was} in the CRM, or update the agents ({readers}) to read it as "
                  f"{now}; it resolves on a snapshot with the old type, or once reads carry values "
                  "again.")


def _added(facts: _Facts) -> Remedy:
    obj, old, _, _ = _schema_names(facts)
    return Remedy(f"Nothing to repair: no agent can rely on the new field {obj}.{old}. If an agent should use it, add "
                  "it to the agent's inputs (and to `fields:` in agentwatch.yaml if its key differs); it resolves by "
                  "itself once reported (`report_hours`).")


def _picklist(facts: _Facts) -> Remedy:
    obj, old, _, _ = _schema_names(facts)
    added, removed = facts.listed("values_added") or "none", facts.listed("values_removed") or "none"
    return Remedy(f"Check that the agents ({facts.agents or 'none read it'}) handle the values of {obj}.{old} now "
                  f"(added: {added}; removed: {removed}): update the prompts, rules or mappings that name them; a "
                  "removed value an agent routes on sends records down its fallback path. It resolves by itself once "
                  "reported (`report_hours`).")


def _watcher_blind(facts: _Facts) -> Remedy:
    source, obj = facts.get("source", "the CRM"), facts.get("object", "the object")
    return Remedy(f"Fix the {source} {obj} schema poller (last error: {facts.get('last_error', 'see the evidence')}): "
                  f"its credentials, network access or API limits; `agentwatch schema poll` tries it now. Until it "
                  f"polls, renames in {obj} go unseen. It resolves on the next successful poll.")


def _null_spike(facts: _Facts) -> Remedy:
    key, agents = facts.get("key", facts.get("field", "the key")), facts.agents or "the agents"
    objects = facts.listed("objects")
    target = f"{objects.split(',')[0]}.<Field>" if objects else "Object.<Field>"
    redo = ""
    if facts.evidence.get("should_have_value"):
        redo = (f" Re-process the {int(facts.evidence['should_have_value']):,} reads on records with "
                f"{facts.get('companion', 'a value')} set: the audit trail lists their records and rollback plan.")
    return Remedy(f"Find why {agents} read {key} as null: a CRM field renamed or removed (a schema incident names it), "
                  f"a mapping gone, or a change in the agent's query. Map the key in agentwatch.yaml (`fields: "
                  f"{{{key}: {target}}}`) or fix the agent's read.{redo} It resolves once reads carry values again "
                  "(the guard then lifts its pause).")


def _spike(facts: _Facts) -> Remedy:
    return Remedy(f"Look for a loop or a retry storm in {facts.agent}'s {facts.action}: pause it (`agentwatch "
                  f"agent pause {facts.agent} --reason ...`), fix what triggers it, and review the extra records in "
                  "the audit trail (its rollback plan undoes their writes). It resolves once the rate is back in its "
                  "band.")


def _drop(facts: _Facts) -> Remedy:
    return Remedy(f"Check that {facts.agent} runs and gets work for {facts.action}: its process or schedule, its "
                  f"queue, its credentials (`agentwatch agent status {facts.agent}` shows a pause). If the stop is "
                  "planned, silence the incident. It resolves once the action runs at its usual rate.")


def _errors(facts: _Facts) -> Remedy:
    codes = facts.evidence.get("error_codes")
    named = ", ".join(str(c) for c in codes) if isinstance(codes, dict | list) and codes else "in the evidence"
    return Remedy(f"Fix what makes {facts.agent}'s {facts.action} fail (error codes {named}): a CRM API limit, an "
                  "expired credential, a changed endpoint or payload. Then retry the failed actions (the audit trail "
                  "lists them, status error). It resolves once the action succeeds at its usual share.")


def _policy(setting: str, change: str) -> Callable[[_Facts], Remedy]:
    def write(facts: _Facts) -> Remedy:
        return Remedy(f"{change.format(agent=facts.agent, action=facts.action)} Review the records it touched in the "
                      f"audit trail (its rollback plan undoes the writes). It resolves once {facts.agent} works "
                      f"within `{setting}` again.")
    return write


def _workflow_transition(facts: _Facts) -> Remedy:
    obj = facts.get("object", "record")
    return Remedy(f"Fix {facts.agent}'s {facts.action} so it moves {obj} records only along `workflow.transitions`, "
                  "or add the transition to agentwatch.yaml if the workflow changed; set the moved records back (the "
                  "audit trail's rollback plan). It resolves once its transitions are allowed again.")


def _sla(facts: _Facts) -> Remedy:
    obj = facts.get("object", "record")
    minutes = facts.get("sla_minutes", "SLA")
    return Remedy(f"New {obj}s wait past the {minutes}-minute first-action SLA: check the agents that act first on "
                  "them (paused, failing, behind?) and the queue they read; raise `workflow.sla_first_action_minutes` "
                  "only if the SLA itself changed. It resolves once new records get their first action in time.")


def _partial(facts: _Facts) -> Remedy:
    return Remedy(f"{facts.agent}'s {facts.action} succeeded but the CRM write that must follow it did not: make the "
                  "missing writes on those records (the sample events name them) and fix why the write fails or is "
                  "skipped (`workflow.follow_ups` lists the writes expected). It resolves once the writes follow "
                  "again.")


def _corrections(what: str) -> Callable[[_Facts], Remedy]:
    def write(facts: _Facts) -> Remedy:
        return Remedy(f"{what.format(agent=facts.agent, action=facts.action)} more often than usual: compare its "
                      "recent decisions with the corrections (a linked schema, null-spike or drift incident often "
                      "explains them), fix the rule, prompt or input that changed, and redo the corrected records. It "
                      "resolves once newer decisions are corrected at the usual rate (hours later).")
    return write


def _calibration(facts: _Facts) -> Remedy:
    return Remedy(f"{facts.agent}'s {facts.action} is wrong far more often than its confidence claims: recalibrate its "
                  "confidence, or raise its `min_confidence` in agentwatch.yaml so such decisions go to a person. It "
                  "resolves once newer high-confidence decisions hold up.")


def _reverted(facts: _Facts) -> Remedy:
    return Remedy(f"People set back the fields {facts.agent}'s {facts.action} writes: stop those writes (pause the "
                  f"agent: `agentwatch agent pause {facts.agent}`), find where the wrong values come from, and do not "
                  "restore the reverted values. It resolves once its newer writes stay.")


def _duplicate(facts: _Facts) -> Remedy:
    return Remedy(f"{facts.agent}'s {facts.action} handled the same record twice: make it idempotent (skip a record it "
                  "handled in the last minutes), and undo or follow up the second actions (the sample events name "
                  "them). It resolves once its actions hit no record twice.")


def _identity(facts: _Facts) -> Remedy:
    obj = facts.get("object", "record")
    if facts.subject.get("kind") == "owner_conflict":
        return Remedy(f"Two agents ({facts.get('agents', facts.agents or 'see the evidence')}) give the same {obj}s "
                      "different owners: decide which one owns assignment and stop the other's owner writes. It "
                      "resolves once the conflicting writes stop.")
    return Remedy(f"The same person is worked through two {obj} records: fix the dedupe step (its match on email and "
                  f"company), merge the duplicate {obj}s, and tell their owners. It resolves once handling goes on "
                  "without the surge.")


def _expectation(facts: _Facts) -> Remedy:
    return Remedy(f"Fix what writes the rows that fail {facts.get('expectation', 'the expectation')} in "
                  f"{facts.get('dataset', 'the dataset')} (the sample events are some), or change the expectation "
                  "under `expectations:` in agentwatch.yaml if the rule changed. It resolves once new rows pass.")


def _drift(facts: _Facts) -> Remedy:
    columns = facts.listed("drifted_columns") or "its outputs"
    return Remedy(f"{facts.agent}'s {facts.action} decides differently ({columns}): if a cause is linked, fix that "
                  "first; else look for a new agent version, prompt or input source. If the new mix is intended, "
                  "resolve the incident. It resolves once new decisions match the reference again.")


def _backlog(facts: _Facts) -> Remedy:
    waiting = facts.get("waiting", "")
    return Remedy(f"Answer the {waiting + ' ' if waiting else ''}waiting approval requests of {facts.agent}'s "
                  f"{facts.action} (or add approvers for those hours); requests past their limit may need the "
                  "prospect contacted by hand. It resolves once approvers answer again.")


def _latency(facts: _Facts) -> Remedy:
    return Remedy(f"Approvals of {facts.agent}'s {facts.action} take far longer than usual at these hours: add "
                  "approvers or notify them sooner; if the gate slows the work too much, narrow `requires_approval`. "
                  "It resolves once approvals are as fast as usual.")


def _rubber_stamp(facts: _Facts) -> Remedy:
    return Remedy(f"{facts.get('approver', 'The approver')} approves faster than a person can read: review their "
                  "recent approvals (the sample events), and brief them or add a second reviewer. It resolves once "
                  "their approvals take a reading's time again.")


def _general(facts: _Facts) -> Remedy:
    subject = " ".join(f"{k}={v}" for k, v in facts.subject.items()) or facts.incident.check
    return Remedy(f"Look at the evidence and sample events of {subject}, fix the cause, then resolve the incident.")


FIXES: dict[str, Callable[[_Facts], Remedy]] = {
    "schema.field_renamed": _renamed,
    "schema.field_removed": _removed,
    "schema.type_changed": _type_changed,
    "schema.field_added": _added,
    "schema.picklist_changed": _picklist,
    "schema.watcher_blind": _watcher_blind,
    "quality.null_spike": _null_spike,
    "quality.duplicate": _duplicate,
    "quality.identity_collision": _identity,
    "quality.expectation_failed": _expectation,
    "volume.action_spike": _spike,
    "volume.action_drop": _drop,
    "errors.error_burst": _errors,
    "policy.forbidden_action": _policy("forbidden_actions", "Stop {agent} from running {action}: take the tool away "
                                       "from the agent, or, if it is allowed after all, remove it from "
                                       "`forbidden_actions` in agentwatch.yaml."),
    "policy.not_allowed": _policy("allowed_actions", "Add {action} to {agent}'s `allowed_actions` in agentwatch.yaml "
                                  "if it is meant to run it; else take the tool away from the agent."),
    "policy.unapproved_action": _policy("requires_approval", "Send {agent}'s {action} through the approval gate "
                                        "(status `pending_approval`, then act with `approval.approved_by`), or remove "
                                        "it from `requires_approval` if it needs no approval; follow up by hand on "
                                        "what it sent."),
    "policy.bulk_limit": _policy("max_records_per_action", "Make {agent} split {action} into batches within its "
                                 "`max_records_per_action`, or raise the limit in agentwatch.yaml if bulk is "
                                 "intended."),
    "policy.low_confidence_autonomy": _policy("min_confidence", "Make {agent} ask a person (status "
                                              "`pending_approval`) for {action} below its `min_confidence`, or lower "
                                              "that threshold in agentwatch.yaml if it is too strict."),
    "policy.human_threshold": _policy("checks: policy.human_threshold", "Send {agent}'s {action} for approval when "
                                      "it crosses the human notification threshold, or raise the threshold in "
                                      "agentwatch.yaml if such actions are routine."),
    "workflow.invalid_transition": _workflow_transition,
    "workflow.sla_breach": _sla,
    "workflow.partial_failure": _partial,
    "outcome.routing_accuracy_drop": _corrections("Reps reassign the leads {agent}'s {action} routed"),
    "outcome.requalification_spike": _corrections("Reps overturn {agent}'s {action} decisions"),
    "outcome.calibration": _calibration,
    "outcome.write_reverted": _reverted,
    "drift.distribution": _drift,
    "approval.queue_backlog": _backlog,
    "approval.latency": _latency,
    "approval.rubber_stamp": _rubber_stamp,
}


def as_text(fix: Remedy, indent: str = "    ") -> str:
    """The fix as one text, the config snippet on the lines after it (indented), as ``agentwatch incident show``
    prints it."""
    snippet = "".join(f"\n{indent}{line}" for line in (fix.config or "").splitlines())
    return fix.text + snippet
