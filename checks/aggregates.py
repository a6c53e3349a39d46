"""Bucketed aggregates several checks share, each built once per run from the rollups kept in the home.

* :func:`action_counts`: events and errors per agent x action x 5-minute bucket.
* :func:`key_counts`: per agent x action x scope (inputs, before, after) x top-level key x bucket,
  how many events carried the key and how many carried a non-null value.

Both come from ``agentwatch.checks.rollup_sql`` through ``EvalData.rollup``: the stored days plus the events
not summarised yet, so a run reads a week of small aggregates and the last hour of events.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from agentwatch.checks.data import EvalData
from agentwatch.checks.rollup_sql import ACTION_COUNTS, KEY_COUNTS, KEY_SCOPES

SCOPES = KEY_SCOPES
KEY_HISTORY = timedelta(days=8)  # = the history of quality.null_spike and the schema checks


def bucket_sql(column: str = "ts") -> str:
    return f"time_bucket(INTERVAL '5 minutes', {column})"


def action_counts(data: EvalData) -> pl.DataFrame:
    """agent_id, action, bucket, events, errors (sorted by bucket)."""
    return data.shared("action_counts", lambda: data.rollup(ACTION_COUNTS).sort("bucket", "agent_id", "action"))


def key_history_start(data: EvalData) -> datetime:
    """How far back the per-key counts go: the week of baseline plus the day of recent reads that the null
    spike and the schema checks (their `history`) look at, not the whole range other checks need."""
    return max(data.load_from, data.look_back_from - KEY_HISTORY)


def discovered_keys(data: EvalData) -> pl.DataFrame:
    """scope, key: the top-level keys agents put in inputs, before and after."""
    return data.shared("discovered_keys", lambda: key_counts(data).select("scope", "key").unique().sort("scope", "key"))


def key_counts(data: EvalData) -> pl.DataFrame:
    """agent_id, action, scope, key, bucket, events, present, nonnull: a row for every bucket in which the agent x
    action had events, for every key it carried at least once in the range (present 0 where it did not carry it
    in that bucket); events is the agent x action's count in the bucket."""

    def build() -> pl.DataFrame:
        rows = data.rollup(KEY_COUNTS, since=key_history_start(data))
        events = rows.filter(pl.col("scope").is_null()).select(
            "agent_id", "action", "bucket", pl.col("present").alias("events"))
        keys = rows.filter(pl.col("scope").is_not_null())
        if keys.height == 0:
            return _empty_key_counts()
        carried = keys.group_by("agent_id", "action", "scope", "key").agg(pl.col("present").sum().alias("total"))
        carried = carried.filter(pl.col("total") > 0).drop("total")
        grid = events.join(carried, on=["agent_id", "action"])
        long = grid.join(keys.select("agent_id", "action", "bucket", "scope", "key", "present", "nonnull"),
                         on=["agent_id", "action", "bucket", "scope", "key"], how="left")
        long = long.with_columns(pl.col("present").fill_null(0), pl.col("nonnull").fill_null(0))
        return long.select("agent_id", "action", "bucket", "events", "scope", "key", "present", "nonnull").sort(
            "bucket", "agent_id", "action", "scope", "key")

    return data.shared("key_counts", build)


def _empty_key_counts() -> pl.DataFrame:
    return pl.DataFrame(schema={"agent_id": pl.String, "action": pl.String, "bucket": pl.Datetime("us", "UTC"),
                                "events": pl.Int64, "scope": pl.String, "key": pl.String, "present": pl.Int64,
                                "nonnull": pl.Int64})
