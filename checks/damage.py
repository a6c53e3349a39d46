"""The damage an incident did: the records its agents acted on with bad input, and the decisions they took on them,
over a root incident and its effects. Pure builders of SQL (with parameters) over the ``actions`` view: the dashboard's
incident page and ``agentwatch incident show`` run them, :mod:`agentwatch.checks.incident_audit` selects their
actions for the audit trail. Each incident's part is bounded by its own range, [started_at,
resolved_at or last_fired_at], on ``ts`` and on the ``day`` partitions, so no query scans the whole store.

Bad input, per check (the others measure no record-level damage: their evidence and sample events say what they did):

* ``quality.null_spike``: a read by the agent x actions that lost values (evidence ``readers``) whose key came back
  null or missing and, when the check found one, whose companion key had a value (a lead with an opportunity id had
  a stage to read): exactly the records that should have had a value.
* ``schema.field_renamed``, ``field_removed``, ``type_changed``: a read of the old key (``input_keys``) by its
  readers (``agents``) that came back null. An upper bound (a record with no value to read is counted too), so a null
  spike among the incidents on the same key, whose companion makes it exact, takes its place.
* ``errors.error_burst``: the agent x action's actions that failed.

A record is counted once however many incidents, agents or reads name it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentwatch.schemas.incidents import Incident

Query = tuple[str, list[Any]]
SCOPES = ("inputs", "before", "after")  # the JSON columns a key can be read from (interpolated: checked)
READS_SCHEMA = ("schema.field_renamed", "schema.field_removed", "schema.type_changed")
MAX_TREE = 200  # incidents followed from a root: effects of effects stop here (a link cycle cannot loop)
DECISION_TYPES = ("VARCHAR", "BOOLEAN")  # decision values a person reads as a choice (not scores)
# How a decision key reads in a sentence: "routed to nurture"; other keys read "<key> set to <value>".
DECISION_WORDS = {
    "route_to": "routed to {}",
    "owner": "assigned to {}",
    "sequence": "enrolled in {}",
    "qualified": "qualified: {}",
    "intent": "rated {} intent",
    "status": "set to status {}",
}

# What a failed action left undone: "5 leads not routed"; other actions read "without their <action>".
FAILED_WORDS = {"route": "routed", "enrich": "enriched", "assign_owner": "assigned an owner", "qualify": "qualified",
                "score": "scored", "send": "sent", "update_field": "updated", "create": "created"}


@dataclass(frozen=True)
class Source:
    """One incident's part of the damage: its actions on bad input (or its failed actions), as a predicate over
    ``actions``."""

    incident_id: str
    check: str
    start: datetime
    end: datetime
    predicate: str  # SQL over actions, with ? placeholders
    params: list[Any]
    bad_input: str  # in words: "deal_stage read as null where opportunity_id was set"
    records_with: str  # what the records had, for sentences: "with opportunity_id set" ("" when nothing)
    exact: bool  # False: an upper bound (some records had no value to read anyway)
    actions_text: str = "actions"  # which actions, for sentences: "lead.enrich and lead.route actions"
    did: str = ""  # what they did, after "that": "read deal_stage as null"; "failed"
    failed: bool = False  # the actions failed: nothing was done on bad input, nothing to roll back
    action: str = ""  # the one action the source is about, when it is about one (its failures: "not routed")


def span(incident: Incident) -> tuple[datetime, datetime]:
    """The incident's range: from its start to its resolution, else its last firing."""
    end = incident.resolved_at or incident.last_fired_at
    return incident.started_at, max(end, incident.started_at)


def root_of(incident: Incident, get_many: Callable[[list[str]], list[Incident]]) -> Incident:
    """The incident at the top of its causes (the first cause each time; a link cycle stops where it closes)."""
    seen = {incident.id}
    while incident.caused_by:
        found = [i for i in get_many(incident.caused_by[:1]) if i.id not in seen]
        if not found:
            break
        incident = found[0]
        seen.add(incident.id)
    return incident


def family(root: Incident, get_many: Callable[[list[str]], list[Incident]]) -> list[Incident]:
    """The root, then its effects and theirs, breadth first, each once (at most ``MAX_TREE``)."""
    found, frontier = [root], list(root.effects)
    seen = {root.id}
    while frontier and len(found) < MAX_TREE:
        wanted = [i for i in dict.fromkeys(frontier) if i not in seen][:MAX_TREE - len(found)]
        frontier = []
        for incident in get_many(wanted):
            if incident.id in seen:
                continue
            seen.add(incident.id)
            found.append(incident)
            frontier += incident.effects
    return found


def sources(incidents: list[Incident]) -> list[Source]:
    """Each incident's part of the damage, for those that measure one; a schema change whose key a null spike
    among `incidents` measures leaves it to the spike."""
    spiked = {(i.evidence.get("scope") or "inputs", i.evidence.get("key")) for i in incidents
              if i.check == "quality.null_spike"}
    found = []
    for incident in incidents:
        if incident.check == "quality.null_spike":
            found.append(_null_reads(incident))
        elif incident.check in READS_SCHEMA:
            keys = [k for k in incident.evidence.get("input_keys", []) if isinstance(k, str)]
            if keys and not all(("inputs", k) in spiked for k in keys):
                found.append(_schema_reads(incident, keys))
        elif incident.check == "errors.error_burst":
            found.append(_failures(incident))
    return [s for s in found if s is not None]


def _null_reads(incident: Incident) -> Source | None:
    evidence = incident.evidence
    scope, key, companion = evidence.get("scope") or "inputs", evidence.get("key"), evidence.get("companion")
    pairs = [(r["agent_id"], r["action"]) for r in evidence.get("readers", [])
             if isinstance(r, dict) and isinstance(r.get("agent_id"), str) and isinstance(r.get("action"), str)]
    if scope not in SCOPES or not isinstance(key, str) or not pairs:
        return None
    who, params = _pairs(pairs)
    predicate = f"({who}) AND {_null(scope)}"
    params.append(json_path(key))
    bad_input = f"{key} read as null" if scope == "inputs" else f"{key} (in {scope}) read as null"
    did = f"read {key} as null" if scope == "inputs" else f"read {key} (in {scope}) as null"
    actions = sorted({action for _, action in pairs})
    records_with = ""
    if isinstance(companion, str):
        predicate += f" AND NOT {_null(scope)}"
        params.append(json_path(companion))
        bad_input += f" where {companion} was set"
        records_with = f"with {companion} set"
    start, end = span(incident)
    return Source(incident.id, incident.check, start, end, predicate, params, bad_input, records_with,
                  exact=isinstance(companion, str), actions_text=f"{_and(actions)} actions", did=did,
                  action=actions[0] if len(actions) == 1 else "")


def _schema_reads(incident: Incident, keys: list[str]) -> Source | None:
    agents = [a for a in incident.evidence.get("agents", []) if isinstance(a, str)]
    if not agents:
        return None
    reads = " OR ".join(f"(json_exists(inputs, ?) AND {_null('inputs')})" for _ in keys)
    params: list[Any] = [*agents, *[p for k in keys for p in (json_path(k), json_path(k))]]
    predicate = f"agent_id IN ({', '.join('?' * len(agents))}) AND ({reads})"
    start, end = span(incident)
    return Source(incident.id, incident.check, start, end, predicate, params,
                  f"{', '.join(keys)} read as null", "", exact=False, actions_text=f"actions of {_and(agents)}",
                  did=f"read {_and(keys, 'or')} as null")


def _failures(incident: Incident) -> Source | None:
    agent, action = incident.subject.get("agent_id"), incident.subject.get("action")
    if agent is None or action is None:
        return None
    start, end = span(incident)
    return Source(incident.id, incident.check, start, end, "agent_id = ? AND action = ? AND status = 'error'",
                  [agent, action], f"{action} by {agent} failed", "", exact=True,
                  actions_text=f"{action} actions of {agent}", did="failed", failed=True, action=str(action))


def _part(source: Source) -> Query:
    """One source's actions: its predicate on its own range (``ts`` and ``day``)."""
    start, end = source.start.astimezone(UTC), source.end.astimezone(UTC)
    return (f"(day BETWEEN ? AND ? AND ts >= ? AND ts <= ? AND {source.predicate})",
            [start.date(), end.date(), source.start, source.end, *source.params])


def bad_actions(found: list[Source]) -> Query:
    """``WHERE`` of the actions on bad input of every source (each on its own range), and its parameters."""
    if not found:
        return "false", []
    first = min(s.start for s in found).astimezone(UTC)
    last = max(s.end for s in found).astimezone(UTC)
    parts = [_part(s) for s in found]
    return (f"day BETWEEN ? AND ? AND ({' OR '.join(sql for sql, _ in parts)})",
            [first.date(), last.date(), *[p for _, params in parts for p in params]])


def carried_out(found: list[Source]) -> Query:
    """``WHERE`` of the writes that carried out the decisions taken on bad input: an action on bad input that wrote
    nothing itself (a decision, such as lead.route's owner and sequence) is carried out by the same agent's writes
    (an ``after`` state) on the same record in the same trace, such as lead.assign_owner and sequence.enroll. Those
    are what a rollback restores. An action that wrote itself is restored by its own before; writes in other traces
    or by other agents (enrichment of the same lead) are left alone: nothing ties them to the bad input."""
    where, params = bad_actions([s for s in found if not s.failed])
    if where == "false":
        return "false", []
    return (f"after IS NOT NULL AND trace_id IS NOT NULL AND (agent_id, resource_type, resource_id, trace_id) IN ("
            f"SELECT agent_id, resource_type, resource_id, trace_id FROM actions WHERE {where} "
            f"AND after IS NULL AND trace_id IS NOT NULL)", params)


def summary_sql(found: list[Source], limit: int) -> Query:
    """The damage in one scan of the actions on bad input (their JSON read once): rows of ``part`` ``total`` (per
    resource type and ``failed``, true for the actions of sources that failed: ``records`` acted on, each once, and
    the ``actions``), up to `limit` rows of ``part`` ``decision``: the decisions of the actions that were done
    (status ``ok``; text and true/false values), by resource type, ``decision`` key and ``value`` (text), with the
    records they were taken on, the most first; and, when more decisions were taken, a row of ``part`` ``more`` per
    resource type: how many more ``decisions`` (key and value pairs) and the ``records`` they were taken on."""
    where, params = bad_actions(found)
    failing = [_part(s) for s in found if s.failed]
    failed = " OR ".join(sql for sql, _ in failing) or "false"
    kinds = ", ".join(f"'{t}'" for t in DECISION_TYPES)
    return (f"""
        WITH bad AS MATERIALIZED (
            SELECT resource_type, resource_id, status, decision, ({failed}) AS failed FROM actions WHERE {where}
        ), totals AS (
            SELECT 'total' AS part, resource_type, failed, NULL::VARCHAR AS decision, NULL::VARCHAR AS value,
                   count(DISTINCT resource_id) AS records, count(*) AS actions, NULL::BIGINT AS decisions
            FROM bad GROUP BY resource_type, failed
        ), taken AS MATERIALIZED (
            SELECT resource_type, resource_id, e.key AS decision, e.value ->> '$' AS value
            FROM bad, json_each(bad.decision) AS e
            WHERE status = 'ok' AND e.type IN ({kinds})
        ), ranked AS MATERIALIZED (
            SELECT resource_type, decision, value, count(DISTINCT resource_id) AS records, count(*) AS actions,
                   row_number() OVER (ORDER BY count(DISTINCT resource_id) DESC, decision, value) AS rank
            FROM taken GROUP BY resource_type, decision, value
        ), more AS (
            SELECT 'more' AS part, t.resource_type, false AS failed, NULL::VARCHAR AS decision,
                   NULL::VARCHAR AS value, count(DISTINCT t.resource_id) AS records, count(*) AS actions,
                   count(DISTINCT (r.decision, r.value)) AS decisions
            FROM taken t JOIN ranked r USING (resource_type, decision, value)
            WHERE r.rank > ? GROUP BY t.resource_type
        )
        SELECT * FROM totals
        UNION ALL SELECT 'decision', resource_type, false, decision, value, records, actions, NULL FROM ranked
            WHERE rank <= ?
        UNION ALL SELECT * FROM more
        ORDER BY part DESC, records DESC, resource_type, decision, value""",
            [*[p for _, failing_params in failing for p in failing_params], *params, limit, limit])


def failed_words(action: str) -> str:
    """What a failed action left undone, as a sales leader reads it: ``not routed``."""
    verb = action.rsplit(".", 1)[-1]
    return f"not {FAILED_WORDS[verb]}" if verb in FAILED_WORDS else f"without their {action}"


def decision_words(key: str, value: str) -> str:
    """A decision as a sales leader reads it: ``routed to nurture``, ``enrolled in cold-nurture``."""
    return DECISION_WORDS.get(key, f"{key} set to {{}}").format(value)


def plural(resource_type: str, count: int) -> str:
    """``1 lead``, ``295 leads``."""
    return f"{count:,} {resource_type}" + ("" if count == 1 or resource_type.endswith("s") else "s")


def json_path(key: str) -> str:
    """A top-level key as a JSONPath member, quoted so dots and spaces stay inside it."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _null(scope: str) -> str:
    """The key (the next parameter's path) is null or missing in `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return f"coalesce(json_type({scope}, ?), 'NULL') = 'NULL'"


def _and(names: list[str], word: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


def _pairs(pairs: list[tuple[str, str]]) -> tuple[str, list[Any]]:
    pairs = sorted(set(pairs))
    return " OR ".join("(agent_id = ? AND action = ?)" for _ in pairs), [v for pair in pairs for v in pair]
