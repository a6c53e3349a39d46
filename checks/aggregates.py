"""Bucketed aggregates several checks share, each built once per run in DuckDB.

* :func:`action_counts`: events and errors per agent x action x 5-minute bucket.
* :func:`key_counts`: per agent x action x scope (inputs, before, after) x top-level key x bucket,
  how many events carried the key and how many carried a non-null value.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from checks.data import EvalData
from collector.ingest.sql import sql_string

SCOPES = ("inputs", "before", "after")
KEY_SAMPLE_ROWS = 50_000  # rows sampled over the whole range to discover keys
RECENT_KEY_WINDOW = timedelta(days=1)  # plus every key seen in this last stretch


def _bucket(column: str = "ts") -> str:
    return f"time_bucket(INTERVAL '5 minutes', {column})"


def action_counts(data: EvalData) -> pl.DataFrame:
    """agent_id, action, bucket, events, errors (sorted by bucket)."""

    def build() -> pl.DataFrame:
        return data.frame(
            f"SELECT agent_id, action, {_bucket()} AS bucket, count(*)::BIGINT AS events, "
            f"count(*) FILTER (WHERE status = 'error')::BIGINT AS errors "
            f"FROM actions WHERE {data.time_filter()} GROUP BY ALL ORDER BY bucket"
        )

    return data.shared("action_counts", build)


def discovered_keys(data: EvalData) -> pl.DataFrame:
    """scope, key: the top-level keys agents put in inputs, before and after."""

    def build() -> pl.DataFrame:
        recent = data.time_filter(since=data.last - RECENT_KEY_WINDOW)
        parts = []
        for scope in SCOPES:
            for where, sample in ((data.time_filter(), f"USING SAMPLE {KEY_SAMPLE_ROWS} ROWS"), (recent, "")):
                parts.append(
                    f"SELECT DISTINCT '{scope}' AS scope, unnest(json_keys({scope})) AS key "
                    f"FROM (SELECT {scope} FROM actions WHERE {where} AND {scope} IS NOT NULL {sample})"
                )
        return data.frame(" UNION ".join(parts) + " ORDER BY scope, key")

    return data.shared("discovered_keys", build)


def key_counts(data: EvalData) -> pl.DataFrame:
    """agent_id, action, scope, key, bucket, events, present, nonnull (rows only where present > 0
    at some point for that agent x action x key; events is the agent x action's count in the bucket)."""

    def build() -> pl.DataFrame:
        keys = discovered_keys(data)
        frames = []
        for scope in SCOPES:
            names = keys.filter(pl.col("scope") == scope)["key"].to_list()
            if not names:
                continue
            paths = "[" + ", ".join(sql_string("$." + _json_path_key(k)) for k in names) + "]"
            counts = []
            for i in range(len(names)):
                counts.append(f"count(v[{i + 1}])::BIGINT AS p{i}")
                counts.append(f"count(*) FILTER (WHERE json_type(v[{i + 1}]) <> 'NULL')::BIGINT AS n{i}")
            wide = data.frame(
                f"SELECT agent_id, action, bucket, count(*)::BIGINT AS events, {', '.join(counts)} FROM ("
                f"SELECT agent_id, action, {_bucket()} AS bucket, json_extract({scope}, {paths}) AS v "
                f"FROM actions WHERE {data.time_filter()}) GROUP BY ALL"
            )
            for i, name in enumerate(names):
                frames.append(
                    wide.select(
                        "agent_id", "action", "bucket", "events",
                        pl.lit(scope).alias("scope"), pl.lit(name).alias("key"),
                        pl.col(f"p{i}").alias("present"), pl.col(f"n{i}").alias("nonnull"),
                    )
                )
        if not frames:
            return pl.DataFrame(schema={"agent_id": pl.String, "action": pl.String, "bucket": pl.Datetime("us", "UTC"),
                                        "events": pl.Int64, "scope": pl.String, "key": pl.String,
                                        "present": pl.Int64, "nonnull": pl.Int64})
        long = pl.concat(frames)
        # Keep only agent x action x key combinations that carried the key at least once.
        carried = long.group_by("agent_id", "action", "scope", "key").agg(pl.col("present").sum().alias("total"))
        carried = carried.filter(pl.col("total") > 0).drop("total")
        return long.join(carried, on=["agent_id", "action", "scope", "key"]).sort("bucket")

    return data.shared("key_counts", build)


def _json_path_key(key: str) -> str:
    """A key as one JSONPath member, quoted so dots and spaces stay inside it."""
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
