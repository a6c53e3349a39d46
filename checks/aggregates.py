"""Bucketed aggregates several checks share, each built once per run in DuckDB.

* :func:`action_counts`: events and errors per agent x action x 5-minute bucket.
* :func:`key_counts`: per agent x action x scope (inputs, before, after) x top-level key x bucket,
  how many events carried the key and how many carried a non-null value.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import polars as pl

from agentwatch.checks.data import EvalData, floor_to_bucket
from agentwatch.core.sql import sql_string

SCOPES = ("inputs", "before", "after")
KEY_SAMPLE_ROWS = 50_000  # rows sampled over the whole range to discover keys
RECENT_KEY_WINDOW = timedelta(days=1)  # keys seen in this last stretch are sampled on their own, and read in full
KEY_HISTORY = timedelta(days=8)  # = the history of quality.null_spike and the schema checks
BASELINE_ROWS = 1_000_000  # above this many older events, read a 1-in-N subset of them


def bucket_sql(column: str = "ts") -> str:
    return f"time_bucket(INTERVAL '5 minutes', {column})"


def action_counts(data: EvalData) -> pl.DataFrame:
    """agent_id, action, bucket, events, errors (sorted by bucket)."""

    def build() -> pl.DataFrame:
        return data.frame(
            f"SELECT agent_id, action, {bucket_sql()} AS bucket, count(*)::BIGINT AS events, "
            f"count(*) FILTER (WHERE status = 'error')::BIGINT AS errors "
            f"FROM actions WHERE {data.time_filter()} GROUP BY ALL ORDER BY bucket"
        )

    return data.shared("action_counts", build)


def key_history_start(data: EvalData) -> datetime:
    """How far back the per-key counts go: the week of baseline plus the day of recent reads that the null
    spike and the schema checks (their `history`) look at, not the whole range other checks need."""
    return max(data.load_from, data.look_back_from - KEY_HISTORY)


def discovered_keys(data: EvalData) -> pl.DataFrame:
    """scope, key: the top-level keys agents put in inputs, before and after."""

    def build() -> pl.DataFrame:
        since = key_history_start(data)
        recent = data.time_filter(since=max(since, data.last - RECENT_KEY_WINDOW))
        lists = []
        for where in (data.time_filter(since=since), recent):
            (rows,) = data.con.execute(f"SELECT count(*) FROM actions WHERE {where}").fetchall()[0]
            every = max(1, math.ceil(rows / KEY_SAMPLE_ROWS))  # a fixed 1-in-N subset by event key: cheap to skip
            keys = ", ".join(f"list_distinct(flatten(list(json_keys({scope})))) AS {scope}" for scope in SCOPES)
            lists.append(data.con.execute(
                f"SELECT {keys} FROM actions WHERE {where} AND event_key % {every} = 0").fetchall()[0])
        found = sorted({(scope, key) for row in lists for scope, names in zip(SCOPES, row, strict=True)
                        for key in names or []})
        return pl.DataFrame(found, schema={"scope": pl.String, "key": pl.String}, orient="row")

    return data.shared("discovered_keys", build)


def key_counts(data: EvalData) -> pl.DataFrame:
    """agent_id, action, scope, key, bucket, events, present, nonnull (rows only where present > 0
    at some point for that agent x action x key; events is the agent x action's count in the bucket).

    One scan reads all three scopes. Buckets older than a day before the first evaluation are baseline
    only: when there are many events, a fixed 1-in-N subset of them is read (by event key) and the counts
    are scaled back by N, which leaves the shares unbiased and keeps a 10-million-event store fast.
    """

    def build() -> pl.DataFrame:
        keys = discovered_keys(data)
        since = key_history_start(data)
        recent_from = floor_to_bucket(max(since, data.first - RECENT_KEY_WINDOW))  # whole buckets either side
        (older,) = data.con.execute(
            f"SELECT count(*) FROM actions WHERE {data.time_filter(since=since)} "
            f"AND ts <= TIMESTAMPTZ '{recent_from.isoformat()}'").fetchall()[0]
        every = max(1, math.ceil(older / BASELINE_ROWS))
        weight = f"(CASE WHEN ts > TIMESTAMPTZ '{recent_from.isoformat()}' THEN 1 ELSE {every} END)"
        sampled = f"(ts > TIMESTAMPTZ '{recent_from.isoformat()}' OR event_key % {every} = 0)"
        names_by_scope = {scope: keys.filter(pl.col("scope") == scope)["key"].to_list() for scope in SCOPES}
        extracts, counts, columns = [], [], []
        for scope, names in names_by_scope.items():
            if not names:
                continue
            paths = "[" + ", ".join(sql_string("$." + _json_path_key(k)) for k in names) + "]"
            extracts.append(f"json_extract({scope}, {paths}) AS v_{scope}")
            for i, name in enumerate(names):
                value = f"v_{scope}[{i + 1}]"
                counts.append(f"(count({value}) * any_value(w))::BIGINT AS p_{scope}_{i}")
                counts.append(f"(count(*) FILTER (WHERE json_type({value}) <> 'NULL') * any_value(w))::BIGINT "
                              f"AS n_{scope}_{i}")
                columns.append((scope, name, f"p_{scope}_{i}", f"n_{scope}_{i}"))
        if not columns:
            return _empty_key_counts()
        wide = data.frame(
            f"SELECT agent_id, action, bucket, (count(*) * any_value(w))::BIGINT AS events, {', '.join(counts)} "
            f"FROM (SELECT agent_id, action, {bucket_sql()} AS bucket, {weight} AS w, {', '.join(extracts)} "
            f"FROM actions WHERE {data.time_filter(since=since)} AND {sampled}) GROUP BY ALL"
        )
        frames = [
            wide.select("agent_id", "action", "bucket", "events", pl.lit(scope).alias("scope"),
                        pl.lit(name).alias("key"), pl.col(present).alias("present"), pl.col(nonnull).alias("nonnull"))
            for scope, name, present, nonnull in columns
        ]
        long = pl.concat(frames)
        # Keep only agent x action x key combinations that carried the key at least once.
        carried = long.group_by("agent_id", "action", "scope", "key").agg(pl.col("present").sum().alias("total"))
        carried = carried.filter(pl.col("total") > 0).drop("total")
        return long.join(carried, on=["agent_id", "action", "scope", "key"]).sort("bucket")

    return data.shared("key_counts", build)


def _empty_key_counts() -> pl.DataFrame:
    return pl.DataFrame(schema={"agent_id": pl.String, "action": pl.String, "bucket": pl.Datetime("us", "UTC"),
                                "events": pl.Int64, "scope": pl.String, "key": pl.String, "present": pl.Int64,
                                "nonnull": pl.Int64})


def _json_path_key(key: str) -> str:
    """A key as one JSONPath member, quoted so dots and spaces stay inside it."""
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
