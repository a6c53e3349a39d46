"""The checks' aggregates as plain SQL, in one place: what ``agentwatch.store.rollups`` keeps per day.

Each query reads the datasets it names (``src["actions"]``: a view or ``read_parquet`` of the Parquet layout) and
returns rows stamped with a cell (a 5-minute ``bucket``, an ``hour``, an event time) for the events of a
:class:`Span`; a row's values depend only on the events of its cell and, for the case queries, on events up to a
fixed `reach` after it (the follow-up it waits for) or a `look_back` before it. So the rows of a day can be
computed once, an hour at a time, in any engine that speaks this SQL (docs/architecture.md, "Aggregates").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.store.rollups import Rollup, Span, rollup_name

BUCKET = timedelta(minutes=5)
KEY_SCOPES = ("inputs", "before", "after")
HASH_RANGE = 1_000_000  # event-id hashes are reduced to [0, HASH_RANGE) to sample reproducibly
ERROR_SAMPLES = 3  # error ids kept per bucket x code: enough for 20 samples, bounded memory

Sources = Mapping[str, str]


def _bucket(column: str = "ts") -> str:
    return f"time_bucket(INTERVAL '5 minutes', {column})"


def _ts(at: object) -> str:
    return f"TIMESTAMPTZ '{at}'"


def _list(values: list[str]) -> str:
    return "[" + ", ".join(sql_string(v) for v in values) + "]::VARCHAR[]"


def action_counts_sql(src: Sources, span: Span) -> str:
    """agent_id, action, bucket, events, errors."""
    return (f"SELECT agent_id, action, {_bucket()} AS bucket, count(*)::BIGINT AS events, "
            f"count(*) FILTER (WHERE status = 'error')::BIGINT AS errors FROM {src['actions']} "
            f"WHERE {span.condition()} GROUP BY ALL")


def key_counts_sql(src: Sources, span: Span) -> str:
    """agent_id, action, bucket, scope, key, present, nonnull: per top-level key of inputs, before and after, how
    many events carried it and how many with a value other than JSON null; plus one row per agent x action x bucket
    with scope and key NULL whose ``present`` counts the events (the share's denominator, over the same range)."""
    where = span.condition()
    # One JSONPath member per key, quoted so dots and spaces stay inside it.
    path = "'$.\"' || replace(replace(k, '\\', '\\\\'), '\"', '\\\"') || '\"'"
    scopes = [
        f"SELECT agent_id, action, {_bucket()} AS bucket, '{scope}' AS scope, k AS key, count(*)::BIGINT AS present, "
        f"count(*) FILTER (WHERE json_type({scope}, {path}) <> 'NULL')::BIGINT AS nonnull "
        f"FROM (SELECT agent_id, action, ts, {scope}, unnest(list_distinct(json_keys({scope}))) AS k "
        f"FROM {src['actions']} WHERE {where} AND json_type({scope}) = 'OBJECT') GROUP BY ALL"
        for scope in KEY_SCOPES
    ]
    events = (f"SELECT agent_id, action, {_bucket()} AS bucket, NULL::VARCHAR AS scope, NULL::VARCHAR AS key, "
              f"count(*)::BIGINT AS present, 0::BIGINT AS nonnull FROM {src['actions']} WHERE {where} GROUP BY ALL")
    return " UNION ALL ".join([*scopes, events])


def error_details_sql(src: Sources, span: Span) -> str:
    """agent_id, action, bucket, error_code, n, first_ts, ids: the errors per bucket and code, with the first ids."""
    return (f"SELECT agent_id, action, {_bucket()} AS bucket, coalesce(error_code, '(no code)') AS error_code, "
            f"count(*)::BIGINT AS n, min(ts) AS first_ts, "
            f"list(event_id ORDER BY ts, event_id)[1:{ERROR_SAMPLES}] AS ids "
            f"FROM {src['actions']} WHERE status = 'error' AND {span.condition()} GROUP BY ALL")


ACTION_COUNTS = Rollup("action_counts-v1", "actions", BUCKET, "bucket", action_counts_sql)
KEY_COUNTS = Rollup("key_counts-v1", "actions", BUCKET, "bucket", key_counts_sql)
ERROR_DETAILS = Rollup("error_details-v1", "actions", BUCKET, "bucket", error_details_sql)


def drift_sample(per_hour: int) -> Rollup:
    """The drift check's sample: per agent x action x hour, the `per_hour` successful actions with the smallest
    hash of their event id (a uniform sample that stays the same when more hours are added), with the columns the
    check compares."""

    def select(src: Sources, span: Span) -> str:
        return f"""
            WITH picked AS (  -- choose by hash on the narrow columns: the JSON columns are read for the sample only
                SELECT event_id, hash(event_id) % {HASH_RANGE} AS h, time_bucket(INTERVAL '1 hour', ts) AS hour
                FROM {src['actions']} WHERE {span.condition()} AND status = 'ok'
                QUALIFY row_number() OVER (PARTITION BY agent_id, action, hour ORDER BY h, event_id) <= {per_hour})
            SELECT s.event_id, s.ts, s.agent_id, s.action, s.agent_version, s.confidence, s.decision, s.inputs,
                   picked.h, picked.hour
            FROM {src['actions']} s JOIN picked USING (event_id) WHERE {span.condition('s.ts')} AND s.status = 'ok'"""

    return Rollup(rollup_name("drift_sample-v1", per_hour=per_hour), "actions", timedelta(hours=1), "hour", select)


def repeated_actions(window: timedelta) -> Rollup:
    """quality.duplicate's pairs: each successful action that repeats the previous successful one of the same agent,
    action and record within `window`: agent_id, action, resource_type, resource_id, first_event_id, event_id, ts,
    external (either of the two reached outside)."""
    seconds = window.total_seconds()

    def select(src: Sources, span: Span) -> str:
        return f"""
            WITH ok AS (
                SELECT agent_id, action, resource_type, resource_id, event_id, ts, coalesce(external, false) AS external
                FROM {src['actions']} WHERE {span.wide_condition(look_back=window)} AND status = 'ok'),
            repeated AS (
                SELECT agent_id, action, resource_type, resource_id FROM ok GROUP BY ALL HAVING count(*) > 1),
            ordered AS (
                SELECT *, lag(event_id) OVER w AS first_event_id, lag(ts) OVER w AS first_ts,
                       lag(external) OVER w AS first_external
                FROM (SELECT * FROM ok SEMI JOIN repeated USING (agent_id, action, resource_type, resource_id))
                WINDOW w AS (PARTITION BY agent_id, action, resource_type, resource_id ORDER BY ts, event_id))
            SELECT agent_id, action, resource_type, resource_id, first_event_id, event_id, ts,
                   external OR first_external AS external
            FROM ordered
            WHERE {span.condition()} AND first_ts IS NOT NULL AND epoch(ts) - epoch(first_ts) <= {seconds}"""

    return Rollup(rollup_name("repeated_actions-v1", window=seconds), "actions", timedelta(microseconds=1), "ts",
                  select, look_back=window)


def follow_up_cases(pairs: list[tuple[str, str]], allowance: timedelta) -> Rollup:
    """workflow.partial_failure's cases: each successful external action (email.send) with its deadline and
    whether a successful write it should be followed by (crm.log_activity, same record) came by then: event_id,
    began, due, agent_id, action, failed, write_errors, error_agents. A case reads the writes up to its deadline."""
    externals = sorted({p[0] for p in pairs})
    writes = sorted({p[1] for p in pairs})

    def select(src: Sources, span: Span) -> str:
        return f"""
            WITH pairs AS (SELECT unnest({_list([p[0] for p in pairs])}) AS ext_action,
                                  unnest({_list([p[1] for p in pairs])}) AS write_action),
            ext AS (SELECT event_id, ts, agent_id, action, resource_type, resource_id FROM {src['actions']}
                    WHERE {span.condition()} AND status = 'ok' AND list_contains({_list(externals)}, action)),
            writes AS (SELECT ts, agent_id, action, resource_type, resource_id, status FROM {src['actions']}
                       WHERE {span.wide_condition(reach=allowance)} AND status IN ('ok', 'error')
                       AND list_contains({_list(writes)}, action))
            SELECT e.event_id, e.ts AS began, e.ts + INTERVAL '{allowance.total_seconds()} seconds' AS due,
                   e.agent_id, e.action,
                   count(w.ts) FILTER (WHERE w.status = 'ok') = 0 AS failed,
                   count(w.ts) FILTER (WHERE w.status = 'error') AS write_errors,
                   list(DISTINCT w.agent_id) FILTER (WHERE w.status = 'error') AS error_agents
            FROM ext e JOIN pairs p ON p.ext_action = e.action
            LEFT JOIN writes w ON w.resource_id = e.resource_id AND w.resource_type = e.resource_type
              AND w.action = p.write_action AND w.ts >= e.ts
              AND w.ts <= e.ts + INTERVAL '{allowance.total_seconds()} seconds'
            GROUP BY e.event_id, e.ts, e.agent_id, e.action"""

    return Rollup(rollup_name("follow_up_cases-v1", pairs=sorted(pairs), allowance=allowance.total_seconds()),
                  "actions", BUCKET, "began", select, reach=allowance)


def new_record_cases(record: str, creation_actions: list[str], sla: timedelta, quiet: timedelta) -> Rollup:
    """workflow.sla_breach's cases: the events at which a record of type `record` counts as new, with whether
    another agent acted on it successfully within `sla`. A record is new at a creation action no other creation
    action of it preceded within `quiet` (kind 'created'), or at any event no event of it preceded within `quiet`
    (kind 'first': the check keeps these only for intake actions when the data holds no creation action). Also one
    row per action and bucket (kind 'touch') counting the records the action touched, for telling intake actions.
    Columns: began, due, creator, event_id, kind, action, failed, touched."""

    def select(src: Sources, span: Span) -> str:
        of_type = f"lower(resource_type) = lower({sql_string(record)})"
        seconds = f"INTERVAL '{sla.total_seconds()} seconds'"
        return f"""
            WITH span_ev AS (SELECT resource_id, ts, agent_id, action, status, event_id FROM {src['actions']}
                             WHERE {of_type} AND {span.wide_condition(reach=sla)}),
            leads AS (SELECT DISTINCT resource_id FROM span_ev WHERE {span.condition()}),
            -- A prior event's id orders nothing (it is before every own event): not read, a week of ids is costly.
            prior AS (SELECT resource_id, ts, action, NULL::VARCHAR AS event_id FROM {src['actions']}
                      WHERE {of_type} AND {span.wide_condition(look_back=quiet)}
                      AND ts < {_ts(span.lo.isoformat())} AND resource_id IN (SELECT resource_id FROM leads)),
            history AS (SELECT resource_id, ts, action, event_id, agent_id, TRUE AS own FROM span_ev
                        WHERE {span.condition()}
                        UNION ALL SELECT resource_id, ts, action, event_id, NULL, FALSE FROM prior),
            marked AS (
                SELECT *, lag(ts) OVER (PARTITION BY resource_id ORDER BY ts, event_id) AS prev_ts,
                       max(ts) FILTER (WHERE list_contains({_list(creation_actions)}, action)) OVER (
                           PARTITION BY resource_id ORDER BY ts, event_id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_created
                FROM history),
            cases AS (
                SELECT resource_id, ts AS began, agent_id AS creator, event_id, action,
                       CASE WHEN list_contains({_list(creation_actions)}, action)
                            AND (prev_created IS NULL OR prev_created < ts - INTERVAL '{quiet.total_seconds()} seconds')
                            THEN 'created' ELSE 'first' END AS kind
                FROM marked WHERE own AND (
                    (list_contains({_list(creation_actions)}, action)
                     AND (prev_created IS NULL OR prev_created < ts - INTERVAL '{quiet.total_seconds()} seconds'))
                    OR prev_ts IS NULL OR prev_ts < ts - INTERVAL '{quiet.total_seconds()} seconds')),
            handled AS (
                SELECT c.event_id, min(e.ts) AS first_action FROM cases c JOIN span_ev e
                  ON e.resource_id = c.resource_id AND e.ts > c.began AND e.ts <= c.began + {seconds}
                  AND e.agent_id <> c.creator AND e.status = 'ok'
                GROUP BY c.event_id)
            SELECT c.began, c.began + {seconds} AS due, c.creator, c.event_id, c.kind, c.action,
                   coalesce(h.first_action > c.began + {seconds}, true) AS failed, NULL::BIGINT AS touched
            FROM cases c LEFT JOIN handled h USING (event_id)
            UNION ALL
            SELECT {_bucket()} AS began, NULL, NULL, NULL, 'touch', action, NULL, count(DISTINCT resource_id)
            FROM span_ev WHERE {span.condition()} GROUP BY ALL"""

    name = rollup_name("new_record_cases-v1", record=record.lower(), creation=sorted(creation_actions),
                       sla=sla.total_seconds(), quiet=quiet.total_seconds())
    return Rollup(name, "actions", BUCKET, "began", select, reach=sla, look_back=quiet)


def mapped_actions(actions: list[str]) -> Rollup:
    """The successful actions the outcome checks judge: agent_id, action, ts, confidence, event_id and the record.
    Their corrections are joined at read time (:func:`correction_lags_sql`): outcomes are few, actions many."""
    listed = sorted(actions)

    def select(src: Sources, span: Span) -> str:
        return (f"SELECT agent_id, action, ts, confidence, event_id, resource_type, resource_id "
                f"FROM {src['actions']} WHERE {span.condition()} AND status = 'ok' "
                f"AND list_contains({_list(listed)}, action)")

    return Rollup(rollup_name("mapped_actions-v1", actions=listed), "actions", timedelta(microseconds=1), "ts", select)


def correction_lags_sql(acts: str, outcomes: str, mapping: Mapping[str, list[str]], cap: timedelta,
                        corrected_only: bool = False) -> str:
    """`acts` (the rows of :func:`mapped_actions`) with, per outcome kind ``lag_<i>``, the seconds to the first
    outcome of that kind in `outcomes` correcting it, if within `cap` (else null). An outcome corrects the action it
    names (corrects_event_id), or else the latest mapped action on its record before it. `corrected_only`: only
    event_id and the lags of the actions some outcome corrects (the caller joins them to the actions it holds)."""
    kinds = list(mapping)
    values = ", ".join(f"({sql_string(k)}, {sql_string(a)})" for k, actions in mapping.items() for a in actions)
    lags = ", ".join(f"CASE WHEN epoch(f.c{i}) - epoch(a.ts) <= {cap.total_seconds()} "
                     f"THEN epoch(f.c{i}) - epoch(a.ts) END AS lag_{i}" for i in range(len(kinds)))
    firsts = ", ".join(f"min(ts) FILTER (WHERE kind = {sql_string(k)}) AS c{i}" for i, k in enumerate(kinds))
    return f"""
        WITH acts AS NOT MATERIALIZED ({acts}),  -- read again where used: two million rows are not held twice
        kind_actions AS (SELECT * FROM (VALUES {values}) AS m(kind, action)),
        outs AS (SELECT kind, resource_type, resource_id, ts, corrects_event_id FROM ({outcomes})
                 WHERE kind IN (SELECT kind FROM kind_actions)),
        named AS (
            SELECT a.event_id, o.kind, o.ts FROM outs o
            JOIN acts a ON a.event_id = o.corrects_event_id AND a.ts <= o.ts
            JOIN kind_actions m ON m.kind = o.kind AND m.action = a.action),
        unnamed AS (SELECT * FROM outs WHERE corrects_event_id IS NULL),
        inferred AS (  -- only the actions on records an unnamed outcome touched take part in the as-of join
            SELECT c.event_id, o.kind, o.ts FROM unnamed o
            ASOF JOIN (SELECT m.kind, a.* FROM acts a JOIN kind_actions m USING (action)
                       SEMI JOIN unnamed u ON u.resource_type = a.resource_type AND u.resource_id = a.resource_id) c
            ON o.kind = c.kind AND o.resource_type = c.resource_type AND o.resource_id = c.resource_id
            AND o.ts >= c.ts),
        first_correction AS (
            SELECT event_id, {firsts} FROM (SELECT * FROM named UNION ALL SELECT * FROM inferred) GROUP BY event_id)
        SELECT {'a.event_id' if corrected_only else 'a.agent_id, a.action, a.ts, a.confidence, a.event_id'}, {lags}
        FROM acts a {'' if corrected_only else 'LEFT '}JOIN first_correction f USING (event_id)"""


LAG_BINS = 48  # resolution of an outcome check's lag curve over its max_lag


def correction_histogram(mapping: Mapping[str, list[str]], max_lag: timedelta, high_confidence: float | None,
                         attribution: Mapping[str, list[str]] | None = None) -> Rollup:
    """An outcome check's baseline, without its rows: per agent x action x hour of the successful actions `mapping`
    judges (outcome kind -> the actions it corrects), how many had their first correction within each lag bin
    (``max_lag / LAG_BINS`` wide; ``bin`` NULL: not corrected within `max_lag`), split by ``high`` (confidence at
    least `high_confidence`; NULL without a confidence, or without a threshold). Columns: agent_id, action, hour,
    high, bin, n. A row reads the outcomes, and the later actions on the same records, up to `max_lag` after it.
    An outcome that names no action corrects the latest action on its record among those `attribution` maps to its
    kind (default: `mapping`): the outcome checks attribute over the union of their mappings, as their recent
    windows do (:func:`correction_lags_sql`), so a check watching fewer actions does not blame an older one."""
    own = {kind: sorted(actions) for kind, actions in sorted(mapping.items())}
    kinds = {kind: sorted(actions) for kind, actions in sorted((attribution or mapping).items())}
    for kind, actions in own.items():  # attribution covers what the check judges
        kinds[kind] = sorted(set(kinds.get(kind, [])) | set(actions))
    kinds = dict(sorted(kinds.items()))
    read = sorted({a for listed in kinds.values() for a in listed})
    judged = sorted({a for listed in own.values() for a in listed})
    width = max_lag.total_seconds() / LAG_BINS
    high = "NULL::BOOLEAN" if high_confidence is None else f"confidence >= {float(high_confidence)!r}"
    # The check's lag: its own kinds only, each for the actions it maps to that kind.
    terms = [f"CASE WHEN list_contains({_list(own[kind])}, action) THEN lag_{i} END"
             for i, kind in enumerate(kinds) if kind in own]

    def select(src: Sources, span: Span) -> str:
        # Actions up to max_lag after the span take part in the as-of join: a later action on the record is the one
        # an unnamed outcome corrects.
        acts = (f"SELECT agent_id, action, ts, confidence, event_id, resource_type, resource_id "
                f"FROM {src['actions']} WHERE {span.wide_condition(reach=max_lag)} AND status = 'ok' "
                f"AND list_contains({_list(read)}, action)")
        outcomes = f"SELECT * FROM {src['outcomes']} WHERE {span.wide_condition(reach=max_lag)}"
        lags = correction_lags_sql(acts, outcomes, kinds, max_lag)
        lag = f"least({', '.join(terms)})"  # NULLs ignored: the first of its kinds to come
        # (least() ignores NULLs, so the bin of an uncorrected action is kept NULL by the CASE.)
        return f"""
            SELECT agent_id, action, time_bucket(INTERVAL '1 hour', ts) AS hour, {high} AS high,
                   CASE WHEN {lag} IS NOT NULL THEN least(floor({lag} / {width!r}), {LAG_BINS - 1}) END::INTEGER
                   AS bin, count(*)::BIGINT AS n
            FROM ({lags}) WHERE {span.condition()} AND list_contains({_list(judged)}, action) GROUP BY ALL"""

    name = rollup_name("correction_histogram-v2", kinds=own, attribution=kinds, max_lag=max_lag.total_seconds(),
                       high=high_confidence)
    return Rollup(name, "actions", timedelta(hours=1), "hour", select, reach=max_lag, reads=("outcomes",))


# (agent_id or None for the "*" policy, allowed or None, forbidden, requiring approval, max records or None)
PolicyRow = tuple[str | None, list[str] | None, list[str], list[str], int | None]
# (agent_id or None for the "*" policy, action pattern, minimum confidence (None: none, only a confidence is
# required), the pattern's specificity, whether a missing confidence counts as below it): one row per key of an
# agent's effective `min_confidence`, and a catch-all one when it requires a confidence of every action.
ConfidenceRule = tuple[str | None, str, float | None, int, bool]
# Per policy check, the condition over the columns of `action_policy` (see `policy_violations`) marking a violation.
POLICY_CONDITIONS = {
    "policy.forbidden_action": "list_contains(forbidden, action)",
    "policy.not_allowed": "allowed IS NOT NULL AND NOT list_contains(allowed, action) "
                          "AND NOT list_contains(requires, action) AND NOT list_contains(forbidden, action)",
    "policy.unapproved_action": "list_contains(requires, action) AND approved_by IS NULL",
    "policy.bulk_limit": "max_records IS NOT NULL AND records_affected > max_records",
    "policy.low_confidence_autonomy": "approved_by IS NULL AND (confidence < min_confidence "
                                      "OR (confidence IS NULL AND require_confidence))",
}


def policy_violations(policies: list[PolicyRow], statuses: list[str],
                      confidence_rules: list[ConfidenceRule] | None = None) -> Rollup:
    """The policy checks' events: each action with a status in `statuses` that breaks its agent's policy (the
    agent's own row of `policies`, else the one with agent_id None), with one boolean column per check of
    POLICY_CONDITIONS: event_id, ts, agent_id, action, records_affected, external, confidence, min_confidence (the
    threshold of the most specific of the policy's `confidence_rules` matching the action, else NULL), then the
    flags."""
    rules = sorted(confidence_rules or [], key=lambda r: (r[0] or "", r[1]))

    def text(value: str | None) -> str:
        return "NULL::VARCHAR" if value is None else f"{sql_string(value)}::VARCHAR"

    def listed(values: list[str] | None) -> str:
        return "NULL::VARCHAR[]" if values is None else _list(values)

    values = ", ".join(
        f"({text(agent)}, {listed(allowed)}, {listed(forbidden)}, {listed(requires)}, "
        f"{'NULL' if most is None else int(most)}::BIGINT)"
        for agent, allowed, forbidden, requires, most in policies)
    thresholds = " UNION ALL ".join(
        f"SELECT {text(agent)} AS agent_id, {text(pattern)} AS pattern, "
        f"{'NULL' if least is None else repr(float(least))}::DOUBLE AS threshold, "
        f"{int(specificity)} AS specificity, {bool(required)} AS required"
        for agent, pattern, least, specificity, required in rules) or (
        "SELECT NULL::VARCHAR AS agent_id, NULL::VARCHAR AS pattern, NULL::DOUBLE AS threshold, "
        "NULL::INTEGER AS specificity, NULL::BOOLEAN AS required WHERE false")
    flags = ", ".join(f"coalesce({condition}, false) AS {quote_identifier(name)}"
                      for name, condition in POLICY_CONDITIONS.items())
    violated = " OR ".join(quote_identifier(name) for name in POLICY_CONDITIONS)

    def select(src: Sources, span: Span) -> str:
        return f"""
            WITH policy AS (SELECT * FROM (VALUES {values}) AS p(agent_id, allowed, forbidden, requires, max_records)),
            thresholds AS ({thresholds}),
            -- Each agent x action's policy, worked out once per distinct pair (two narrow columns read) rather than
            -- per event: the agent's own row, else the "*" one; of its confidence keys matching the action the most
            -- specific, and of two as specific the higher threshold.
            pairs AS (SELECT DISTINCT agent_id, action FROM {src['actions']} WHERE {span.condition()}),
            gates AS (
                SELECT pa.agent_id, pa.action, t.threshold AS min_confidence, t.required AS require_confidence
                FROM pairs pa LEFT JOIN policy p ON p.agent_id = pa.agent_id
                JOIN thresholds t ON t.agent_id IS NOT DISTINCT FROM p.agent_id AND pa.action GLOB t.pattern
                QUALIFY row_number() OVER (PARTITION BY pa.agent_id, pa.action
                                           ORDER BY t.specificity DESC, t.threshold DESC) = 1),
            pair_policy AS (
                SELECT pa.agent_id, pa.action,
                       CASE WHEN p.agent_id IS NULL THEN d.allowed ELSE p.allowed END AS allowed,
                       CASE WHEN p.agent_id IS NULL THEN d.forbidden ELSE p.forbidden END AS forbidden,
                       CASE WHEN p.agent_id IS NULL THEN d.requires ELSE p.requires END AS requires,
                       CASE WHEN p.agent_id IS NULL THEN d.max_records ELSE p.max_records END AS max_records,
                       g.min_confidence, g.require_confidence
                FROM pairs pa LEFT JOIN policy p ON p.agent_id = pa.agent_id
                CROSS JOIN (SELECT * FROM policy WHERE agent_id IS NULL) d
                LEFT JOIN gates g ON g.agent_id = pa.agent_id AND g.action = pa.action),
            action_policy AS (
                SELECT a.event_id, a.ts, a.agent_id, a.action, a.records_affected, a.approved_by, a.confidence,
                       coalesce(a.external, false) AS external, pp.allowed, pp.forbidden, pp.requires,
                       pp.max_records, pp.min_confidence, pp.require_confidence
                FROM {src['actions']} a JOIN pair_policy pp ON pp.agent_id = a.agent_id AND pp.action = a.action
                WHERE {span.condition('a.ts')} AND list_contains({_list(sorted(statuses))}, a.status))
            SELECT * FROM (SELECT event_id, ts, agent_id, action, records_affected, external, confidence,
                                  min_confidence, {flags}
                           FROM action_policy) WHERE {violated}"""

    return Rollup(rollup_name("policy_violations-v2", policies=policies, statuses=sorted(statuses),
                              confidence=rules), "actions", timedelta(microseconds=1), "ts", select)


def invalid_transitions(record: str, state_path: str, statuses: list[str], states: list[str],
                        pairs: list[tuple[str, str]]) -> Rollup:
    """workflow.invalid_transition's events: each action on a record of type `record` with a status in `statuses`
    that moved its state (the JSONPath `state_path` of before and after, lower-cased) from one of the `states` the
    workflow names (lower case; a state may allow no move at all) to another not among the allowed `pairs` (from,
    to; lower case): event_id, ts, agent_id, action, from_state, to_state."""
    sources = sorted(states)

    def select(src: Sources, span: Span) -> str:
        return f"""
            WITH moves AS (
                SELECT event_id, ts, agent_id, action,
                       lower(json_extract_string(before, {sql_string(state_path)})) AS from_state,
                       lower(json_extract_string(after, {sql_string(state_path)})) AS to_state
                FROM {src['actions']}
                WHERE {span.condition()} AND lower(resource_type) = lower({sql_string(record)})
                AND list_contains({_list(sorted(statuses))}, status) AND before IS NOT NULL AND after IS NOT NULL),
            allowed AS (SELECT unnest({_list([p[0] for p in pairs])}) AS from_state,
                               unnest({_list([p[1] for p in pairs])}) AS to_state)
            SELECT m.* FROM moves m ANTI JOIN allowed a ON a.from_state = m.from_state AND a.to_state = m.to_state
            WHERE m.to_state IS NOT NULL AND m.from_state <> m.to_state
            AND list_contains({_list(sources)}, m.from_state)"""

    return Rollup(rollup_name("invalid_transitions-v1", record=record.lower(), path=state_path,
                              statuses=sorted(statuses), states=sources, pairs=sorted(pairs)),
                  "actions", timedelta(microseconds=1), "ts", select)


REVERT_KIND = "field_changed"  # the outcome that says a person changed one field of a record


def field_writes_select(actions: str, condition: str, listed: list[str]) -> str:
    """One row per field a successful action of `actions` (a relation) meeting `condition` wrote: each top-level key
    of its `after` object. Columns: agent_id, action, ts, confidence, event_id, resource_type, resource_id, field
    (the key, lower case), written and prior (the value in after and in before, as comparable text: a string's
    content, other JSON as its text, trimmed and lower case; NULL when null or absent). `listed`: only these
    actions (empty: every action)."""
    # One JSONPath member per key, quoted so dots and spaces stay inside it.
    path = "'$.\"' || replace(replace(k, '\\', '\\\\'), '\"', '\\\"') || '\"'"
    return f"""
        SELECT agent_id, action, ts, confidence, event_id, resource_type, resource_id, lower(k) AS field,
               lower(trim(json_extract_string(after, {path}))) AS written,
               lower(trim(json_extract_string(before, {path}))) AS prior
        FROM (SELECT agent_id, action, ts, confidence, event_id, resource_type, resource_id, after, before,
                     unnest(json_keys(after)) AS k
              FROM {actions} WHERE {condition} AND {_is_write(listed)})"""


def _is_write(listed: list[str]) -> str:
    """The condition that an action wrote a field: successful, with a non-empty `after` object (stored minified), of
    the `listed` actions (empty: any)."""
    only = f" AND list_contains({_list(listed)}, action)" if listed else ""
    return f"status = 'ok' AND after IS NOT NULL AND after::VARCHAR <> '{{}}'{only}"


def field_writes(actions: list[str]) -> Rollup:
    """outcome.write_reverted's writes, one row per field written (:func:`field_writes_select`), stamped with the
    action's time. Their reverts are joined at read time (:func:`write_reverts_sql`): outcomes are few, writes many."""
    listed = sorted(actions)

    def select(src: Sources, span: Span) -> str:
        return field_writes_select(src["actions"], span.condition(), listed)

    return Rollup(rollup_name("field_writes-v1", actions=listed), "actions", timedelta(microseconds=1), "ts", select)


def write_reverts_sql(writes: str, outcomes: str, fields: Mapping[str, str], cap: timedelta) -> str:
    """The writes of `writes` (rows of :func:`field_writes`) a person set back, per write event: event_id, lag (seconds
    from the write to the first revert of any of its fields) and fields (those reverted), counting reverts within
    `cap` of the write only. A ``field_changed`` outcome of `outcomes` changes the field it names (`fields` maps an
    outcome's field name, lower case, to the action key it is; else the name itself, case-insensitively) of its
    record. It reverts the write it names (corrects_event_id) if that wrote the field of that record; else the latest
    write of the field on its record at or before it, if it changed the field from the value written (`from`) or back
    to the value before the write (`to` = ``before.<field>``). A change by the writing agent itself (actor = its
    agent_id) is not a revert."""
    names = ", ".join(f"({sql_string(name.lower())}, {sql_string(key.lower())})"
                      for name, key in sorted(fields.items()))
    field_names = (f"SELECT * FROM (VALUES {names}) AS m(name, field)" if names
                   else "SELECT NULL::VARCHAR AS name, NULL::VARCHAR AS field WHERE false")
    return f"""
        WITH writes AS NOT MATERIALIZED ({writes}),
        field_names AS ({field_names}),
        outs AS (
            SELECT o.ts, o.resource_type, o.resource_id, o.actor, o.corrects_event_id,
                   coalesce(m.field, lower(o.field)) AS field,
                   lower(trim(json_extract_string(o.from_value, '$'))) AS was,
                   lower(trim(json_extract_string(o.to_value, '$'))) AS now
            FROM ({outcomes}) o LEFT JOIN field_names m ON m.name = lower(o.field)
            WHERE o.kind = {sql_string(REVERT_KIND)}),
        named AS (
            SELECT w.event_id, w.agent_id, w.ts AS written_at, w.field, o.ts, o.actor FROM outs o
            JOIN writes w ON w.event_id = o.corrects_event_id AND w.resource_type = o.resource_type
            AND w.resource_id = o.resource_id AND w.field = o.field AND w.ts <= o.ts),
        unnamed AS (SELECT * FROM outs WHERE corrects_event_id IS NULL),
        inferred AS (  -- only the writes of fields an unnamed outcome changed take part in the as-of join
            SELECT w.event_id, w.agent_id, w.ts AS written_at, w.field, o.ts, o.actor FROM unnamed o
            ASOF JOIN (SELECT * FROM writes w SEMI JOIN unnamed u ON u.resource_type = w.resource_type
                       AND u.resource_id = w.resource_id AND u.field = w.field) w
            ON o.resource_type = w.resource_type AND o.resource_id = w.resource_id AND o.field = w.field
            AND o.ts >= w.ts
            WHERE o.was = w.written OR o.now = w.prior)
        SELECT event_id, min(epoch(ts) - epoch(written_at)) AS lag, list(DISTINCT field ORDER BY field) AS fields
        FROM (SELECT * FROM named UNION ALL SELECT * FROM inferred)
        WHERE actor IS DISTINCT FROM agent_id AND epoch(ts) - epoch(written_at) <= {cap.total_seconds()}
        GROUP BY event_id"""


def revert_histogram(actions: list[str], fields: Mapping[str, str], max_lag: timedelta) -> Rollup:
    """outcome.write_reverted's baseline, without its rows: per agent x action x hour of writes (successful actions
    with an `after` object; `actions`: only these, empty: all), how many had their first revert within each lag bin
    (``max_lag / LAG_BINS`` wide; ``bin`` NULL: not reverted within `max_lag`). Columns: agent_id, action, hour, bin,
    n. A row reads the outcomes, and the later writes of the same fields, up to `max_lag` after it."""
    listed = sorted(actions)
    width = max_lag.total_seconds() / LAG_BINS

    def select(src: Sources, span: Span) -> str:
        wide = span.wide_condition(reach=max_lag)
        # Writes up to max_lag after the span take part in the as-of join: a later write of the field is the one an
        # outcome that names none sets back. Only the fields of the records an outcome touched are read out of the
        # JSON (a day of every write's fields costs a second; the few touched ones nothing).
        touched = (f"(SELECT * FROM {src['actions']} a SEMI JOIN outs o ON o.resource_type = a.resource_type "
                   f"AND o.resource_id = a.resource_id WHERE {span.wide_condition('a.ts', reach=max_lag)})")
        return f"""
            WITH outs AS (SELECT * FROM {src['outcomes']} WHERE {wide} AND kind = {sql_string(REVERT_KIND)}),
            writes AS ({field_writes_select(touched, "true", listed)}),
            reverted AS ({write_reverts_sql("SELECT * FROM writes", "SELECT * FROM outs", fields, max_lag)}),
            written AS (SELECT agent_id, action, ts, event_id FROM {src['actions']}
                        WHERE {span.condition()} AND {_is_write(listed)})
            SELECT agent_id, action, time_bucket(INTERVAL '1 hour', ts) AS hour,
                   CASE WHEN r.lag IS NOT NULL THEN least(floor(r.lag / {width!r}), {LAG_BINS - 1}) END::INTEGER
                   AS bin, count(*)::BIGINT AS n
            FROM written LEFT JOIN reverted r USING (event_id) GROUP BY ALL"""

    name = rollup_name("revert_histogram-v1", actions=listed, fields=dict(sorted(fields.items())),
                       max_lag=max_lag.total_seconds())
    return Rollup(name, "actions", timedelta(hours=1), "hour", select, reach=max_lag, reads=("outcomes",))


# --- the approval checks -----------------------------------------------------------------------------------

# The record an answer must match: agent, action and resource, as one 64-bit number (part of an MD5, the same in any
# engine and version) so the answers kept for three weeks stay small.
APPROVAL_RECORD = "(md5_number(concat_ws(chr(31), agent_id, action, resource_type, resource_id)) >> 64)::UBIGINT"


def _requests_select(src: Sources, span: Span) -> str:
    """The approval checks' requests: event_id, ts, agent_id, action, record, external: every ``pending_approval``
    event."""
    return (f"SELECT event_id, ts, agent_id, action, {APPROVAL_RECORD} AS record, "
            f"coalesce(external, false) AS external "
            f"FROM {src['actions']} WHERE {span.condition()} AND status = 'pending_approval'")


def _answers_select(src: Sources, span: Span) -> str:
    """The approval checks' answers: ts, record, approved_by, approved_at, external: every event that may answer a
    request (approved or skipped)."""
    return (f"SELECT ts, {APPROVAL_RECORD} AS record, approved_by, approved_at, coalesce(external, false) AS external "
            f"FROM {src['actions']} WHERE {span.condition()} "
            f"AND (status = 'skipped' OR (approved_by IS NOT NULL AND status <> 'pending_approval'))")


# Kept in the home per day like the other checks' aggregates: read from the events, the pairing query cost 5.7 s over
# the 14 days of a 10M-event store like the benchmark's (the string columns of every row group), where serve has one
# second a minute; from the kept rows, 0.05 s.
APPROVAL_REQUESTS = Rollup("approval_requests-v1", "actions", timedelta(microseconds=1), "ts", _requests_select)
APPROVAL_ANSWERS = Rollup("approval_answers-v1", "actions", timedelta(microseconds=1), "ts", _answers_select)


# --- quality.identity_collision ------------------------------------------------------------------------------

def json_path(key: str) -> str:
    """A JSONPath naming one top-level key, as a SQL literal, quoted so dots and spaces stay inside it."""
    return sql_string('$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"')


def _first_value(keys: list[str], scopes: tuple[str, ...] = ("inputs", "after")) -> str:
    """The first of the keys with a value, each looked up in the scopes in turn (NULL if none)."""
    found = [f"json_extract_string({scope}, {json_path(key)})" for key in keys for scope in scopes]
    return f"coalesce({', '.join(found)})" if found else "NULL::VARCHAR"


def _normal(text: str) -> str:
    return f"nullif(regexp_replace(lower(trim({text})), '\\s+', ' ', 'g'), '')"


def _hashed(*parts: str) -> str:
    """A 63-bit md5 of the SQL expressions `parts`, apart: the same in any engine or version, and grouped by DuckDB
    five times as fast as the strings."""
    return f"(md5_number_upper(concat_ws(chr(31), {', '.join(parts)})) >> 1)::BIGINT"


def person_rows(handling_actions: list[str], email_keys: list[str], name_keys: list[list[str]],
                domain_keys: list[str], public_email_domains: list[str]) -> Rollup:
    """quality.identity_collision's same-person rows: each successful action of `handling_actions` carrying a person
    identity (the first of `email_keys`, else the `name_keys` groups at a domain of the email or of `domain_keys`,
    looked up in inputs then after), with the record and the keys hashed (no email is kept in the aggregates): ts,
    event_id, agent_id, action, resource_type, resource_id, external, record, email_key (the type and the lower-cased
    email), name_key (the type, the domain and the name; NULL at free mail)."""
    names = [f"CASE WHEN {' AND '.join(f'{_first_value([k])} IS NOT NULL' for k in group)} THEN concat_ws(' ', "
             f"{', '.join(_first_value([k]) for k in group)}) END" for group in name_keys if group]
    name = _normal(f"coalesce({', '.join(names)})") if names else "NULL::VARCHAR"
    public = sorted(d.lower() for d in public_email_domains)
    named = f"name IS NOT NULL AND domain IS NOT NULL AND NOT list_contains({_list(public)}, domain)"

    def select(src: Mapping[str, str], span: Span) -> str:
        return f"""
            WITH handled AS (
                SELECT ts, event_id, agent_id, action, resource_type, resource_id,
                       coalesce(external, false) AS external, {_normal(_first_value(email_keys))} AS email,
                       {name} AS name, {_normal(_first_value(domain_keys))} AS given_domain
                FROM {src['actions']}
                WHERE {span.condition()} AND status = 'ok'
                AND list_contains({_list(handling_actions)}, action)),
            people AS (
                SELECT *, coalesce(nullif(regexp_extract(address, '@([^@]+)$', 1), ''),
                                   regexp_replace(given_domain, '^www\\.', '')) AS domain
                FROM (SELECT *, CASE WHEN email LIKE '_%@_%' THEN email END AS address FROM handled))
            SELECT ts, event_id, agent_id, action, resource_type, resource_id, external,
                   {_hashed("resource_type", "resource_id")} AS record,
                   {_hashed("'email'", "resource_type", "address")} AS email_key,
                   CASE WHEN {named} THEN {_hashed("'name'", "resource_type", "domain", "name")} END AS name_key
            FROM people WHERE address IS NOT NULL OR ({named})"""

    name_of = rollup_name("person_rows-v2", actions=sorted(handling_actions), email=email_keys, names=name_keys,
                          domain=domain_keys, public=public)
    return Rollup(name_of, "actions", timedelta(microseconds=1), "ts", select)


def owner_writes(owner_keys: list[str]) -> Rollup:
    """quality.identity_collision's owner-conflict rows: each successful action whose `after` gives the record an
    owner its `before` did not already hold: ts, event_id, agent_id, action, resource_type, resource_id, owner."""
    after, before = _first_value(owner_keys, ("after",)), _first_value(owner_keys, ("before",))

    def select(src: Mapping[str, str], span: Span) -> str:
        return f"""
            SELECT * EXCLUDE (was) FROM (
                SELECT ts, event_id, agent_id, action, resource_type, resource_id,
                       nullif(trim({after}), '') AS owner, nullif(trim({before}), '') AS was
                FROM {src['actions']} WHERE {span.condition()} AND status = 'ok' AND after IS NOT NULL)
            WHERE owner IS NOT NULL AND owner IS DISTINCT FROM was"""

    return Rollup(rollup_name("owner_writes-v1", keys=owner_keys), "actions", timedelta(microseconds=1), "ts", select)
