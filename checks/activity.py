"""How many events arrived for an incident's subject since a time: the evidence a check needs before it resolves
an incident, and whose absence (an agent paused by the guard, a quiet night) keeps the incident open.

Counted from 5-minute aggregates built once per run (the actions one is shared with the rate checks), in whole
buckets only: a bucket counts when it starts at or after `since` and ends by the evaluation time, so a live run
and a backtest, which hold different amounts of data past that time, count the same.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import polars as pl

from agentwatch.checks.aggregates import action_counts, bucket_sql
from agentwatch.checks.data import BUCKET, EvalData

BUCKET_S = int(BUCKET.total_seconds())
Series = tuple[np.ndarray, np.ndarray]  # bucket starts (epoch s, sorted), running sum of the counts


class Activity:
    """Counts of actions per agent (and action), per resource type, and of outcomes, over time."""

    def __init__(self, data: EvalData) -> None:
        self.data = data
        self._series: dict[str, dict[tuple[str, ...], Series]] = {}

    def actions(self, agent_id: str, action: str | None, since: datetime, until: datetime) -> int:
        """Actions of `agent_id` (of `action`, when given) in whole buckets from `since` to `until`."""
        by_action = self._built("actions", lambda: action_counts(self.data), ("agent_id", "action"), "events")
        if action is not None:
            return _count(by_action.get((agent_id, action)), since, until)
        return sum(_count(series, since, until) for (agent, _), series in by_action.items() if agent == agent_id)

    def on_resource_type(self, resource_type: str, since: datetime, until: datetime) -> int:
        """Actions on records of `resource_type` (any agent) in whole buckets from `since` to `until`."""
        series = self._built("resources", self._resource_counts, ("resource_type",), "events")
        return _count(series.get((resource_type,)), since, until)

    def rows(self, dataset: str, since: datetime, until: datetime) -> int:
        """Events of a dataset (actions or outcomes) in whole buckets from `since` to `until`."""
        if dataset == "actions":
            series = self._built("all_actions", lambda: action_counts(self.data), (), "events")
        else:
            series = self._built("outcomes", self._outcome_counts, (), "events")
        return _count(series.get(()), since, until)

    def _built(self, name: str, frame: Callable[[], pl.DataFrame], keys: tuple[str, ...],
               column: str) -> dict[tuple[str, ...], Series]:
        if name not in self._series:
            counts = frame().with_columns(pl.col("bucket").dt.epoch("s").alias("t"))
            built: dict[tuple[str, ...], Series] = {}
            for key, group in (counts.group_by(list(keys)) if keys else [((), counts)]):
                group = group.group_by("t").agg(pl.col(column).sum()).sort("t")
                built[tuple(key)] = (group["t"].to_numpy(), np.cumsum(group[column].to_numpy()))
            self._series[name] = built
        return self._series[name]

    def _resource_counts(self) -> pl.DataFrame:
        return self.data.shared("resource_counts", lambda: self.data.frame(
            f"SELECT resource_type, {bucket_sql()} AS bucket, "
            f"count(*)::BIGINT AS events FROM actions WHERE {self.data.time_filter()} GROUP BY ALL"))

    def _outcome_counts(self) -> pl.DataFrame:
        return self.data.shared("outcome_counts", lambda: self.data.frame(
            f"SELECT {bucket_sql()} AS bucket, count(*)::BIGINT AS events "
            f"FROM outcomes WHERE {self.data.time_filter()} GROUP BY ALL"))


def _count(series: Series | None, since: datetime, until: datetime) -> int:
    if series is None:
        return 0
    starts, running = series
    end = until.timestamp() - BUCKET_S  # the last bucket counted ends by `until`
    lo = int(np.searchsorted(starts, since.timestamp(), side="left"))
    hi = int(np.searchsorted(starts, end, side="right"))
    if hi <= lo:
        return 0
    return int(running[hi - 1] - (running[lo - 1] if lo else 0))
