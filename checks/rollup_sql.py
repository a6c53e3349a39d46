"""The checks' aggregates as plain SQL, in one place: what ``agentwatch.store.rollups`` keeps per day.

Each query reads one dataset's columns (``source``: a view or ``read_parquet`` of the Parquet layout) under a
condition on the event time ``ts`` and returns rows stamped with a cell (a 5-minute ``bucket``, an ``hour``) whose
values depend only on the events of that cell: so the rows of a day can be computed once, a day or an hour at a
time, in any engine that speaks this SQL (docs/architecture.md, "Aggregates", says how to run them elsewhere).
"""

from __future__ import annotations

from datetime import timedelta

from agentwatch.store.rollups import Rollup, Span

BUCKET = timedelta(minutes=5)
KEY_SCOPES = ("inputs", "before", "after")
HASH_RANGE = 1_000_000  # event-id hashes are reduced to [0, HASH_RANGE) to sample reproducibly


def _bucket(column: str = "ts") -> str:
    return f"time_bucket(INTERVAL '5 minutes', {column})"


def action_counts_sql(source: str, span: Span) -> str:
    """agent_id, action, bucket, events, errors."""
    where = span.condition()
    return (f"SELECT agent_id, action, {_bucket()} AS bucket, count(*)::BIGINT AS events, "
            f"count(*) FILTER (WHERE status = 'error')::BIGINT AS errors FROM {source} WHERE {where} GROUP BY ALL")


def key_counts_sql(source: str, span: Span) -> str:
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
        f"FROM {source} WHERE {where} AND json_type({scope}) = 'OBJECT') GROUP BY ALL"
        for scope in KEY_SCOPES
    ]
    events = (f"SELECT agent_id, action, {_bucket()} AS bucket, NULL::VARCHAR AS scope, NULL::VARCHAR AS key, "
              f"count(*)::BIGINT AS present, 0::BIGINT AS nonnull FROM {source} WHERE {where} GROUP BY ALL")
    return " UNION ALL ".join([*scopes, events])


def drift_sample_sql(per_hour: int) -> str:
    """The drift check's sample: per agent x action x hour, the `per_hour` successful actions with the smallest
    hash of their event id (a uniform sample that stays the same when more hours are added), with the columns the
    check compares. A template: ``{source}`` and ``{where}`` are filled per query."""
    return f"""
        WITH picked AS (  -- choose by hash on the narrow columns: the JSON columns are read for the sample only
            SELECT event_id, hash(event_id) % {HASH_RANGE} AS h, time_bucket(INTERVAL '1 hour', ts) AS hour
            FROM {{source}} WHERE {{where}} AND status = 'ok'
            QUALIFY row_number() OVER (PARTITION BY agent_id, action, hour ORDER BY h, event_id) <= {per_hour})
        SELECT s.event_id, s.ts, s.agent_id, s.action, s.agent_version, s.confidence, s.decision, s.inputs,
               picked.h, picked.hour
        FROM {{source}} s JOIN picked USING (event_id) WHERE {{where_s}} AND s.status = 'ok'"""


ACTION_COUNTS = Rollup("action_counts-v1", "actions", BUCKET, "bucket", action_counts_sql)
KEY_COUNTS = Rollup("key_counts-v1", "actions", BUCKET, "bucket", key_counts_sql)


def drift_sample(per_hour: int) -> Rollup:
    template = drift_sample_sql(per_hour)

    def select(source: str, span: Span) -> str:
        return template.format(source=source, where=span.condition(), where_s=span.condition("s.ts"))

    return Rollup(f"drift_sample-{per_hour}-v1", "actions", timedelta(hours=1), "hour", select)
