"""quality.duplicate: the same record handled twice by the same step within a short window."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from agentwatch.checks.aggregates import action_counts
from agentwatch.checks.base import SAMPLE_IDS, Check, CheckOptions, Finding, Step, register
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import BUCKET, EvalData
from agentwatch.checks.rollup_sql import repeated_actions
from agentwatch.core.severity import Severity


class DuplicateOptions(CheckOptions):
    window_minutes: float = Field(
        60, gt=0, description="Two successful runs of the same agent and action on the same record this close "
        "together are a duplicate: an hour catches loops and double sends, while the same lead handled again "
        "the next day is normal work."
    )
    recent_minutes: float = Field(
        60, gt=0, description="Count duplicates over this many recent minutes; an hour collects a few even on a "
        "quiet agent and forgets them once the loop stops."
    )
    min_count: int = Field(
        3, ge=1, description="Fire at this many duplicates in the recent window: one can be a rep asking for a "
        "re-run, three within an hour is a pattern."
    )
    baseline_hours: float = Field(
        24, gt=0, description="Learn the usual duplicates per action over this many hours before the recent "
        "window, so an agent that legitimately re-runs a few records only fires when that rate jumps."
    )
    ratio: float = Field(
        3.0, gt=1, description="Fire only when duplicates are at least this multiple of the usual rate applied to "
        "the recent volume: a loop multiplies duplicates, a busier hour only adds a few."
    )
    max_p_value: float = Field(
        1e-5, gt=0, lt=1, description="And only when that many duplicates would come by chance, at the usual rate, "
        "less often than this (Poisson): with ~10 agent x actions at 15-minute steps, about one chance alarm in "
        "ten years of evaluations."
    )


@register
class Duplicate(Check[DuplicateOptions]):
    """The same record handled twice by the same step: assigned twice, created twice, emailed twice.

    Pairs of successful actions with the same agent, action and record within ``window_minutes`` (different
    event ids; a retry after an error is not a pair, since only ``ok`` events count) are counted per agent x
    action over the recent window and compared with the usual rate of such pairs per action.
    """

    clears_when = (
        "Resolves when the agent's further actions of this kind, at least `clear_min_events` since it last "
        "fired, hit no record twice. No further actions keep it open."
    )

    name: ClassVar[str] = "quality.duplicate"
    family: ClassVar[str] = "quality"
    Options: ClassVar[type[CheckOptions]] = DuplicateOptions
    history: timedelta = timedelta(days=1, hours=2)

    def __init__(self, options: DuplicateOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        self.history = timedelta(hours=options.baseline_hours, minutes=options.recent_minutes)
        self.pairs: dict[tuple[str, str], pl.DataFrame] = {}
        self.pair_times: dict[tuple[str, str], np.ndarray] = {}
        self.volume: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # bucket times, cumulative ok events

    def prepare(self, data: EvalData) -> None:
        self.pairs, self.pair_times, self.volume = {}, {}, {}  # afresh: the scheduler may reuse this object
        # Through `rollup`, not its SQL: serve answers the settled pairs from its last answer, not a day of rows again.
        pairs = data.rollup(repeated_actions(timedelta(minutes=self.options.window_minutes)),
                            since=data.look_back_from - self.history)
        frame = (pairs.with_columns((pl.col("ts").dt.epoch("us") / 1e6).alias("t")).drop("ts")
                 .sort("t", "event_id"))
        for (agent, action), group in frame.group_by("agent_id", "action"):
            self.pairs[(agent, action)] = group
            self.pair_times[(agent, action)] = group["t"].to_numpy()
        counts = action_counts(data).with_columns(
            pl.col("bucket").dt.epoch("s").cast(pl.Float64).alias("t"),
            (pl.col("events") - pl.col("errors")).alias("ok"),
        )
        subjects = frame.select("agent_id", "action").unique()
        for (agent, action), group in counts.join(subjects, on=["agent_id", "action"]).group_by("agent_id", "action"):
            group = group.sort("t")
            self.volume[(agent, action)] = (group["t"].to_numpy(), np.cumsum(group["ok"].to_numpy()))

    def _ok_events(self, key: tuple[str, str], start: float, end: float) -> float:
        """Successful events of a subject in the buckets that end in (start, end] (none read past `end`)."""
        times, cumulative = self.volume.get(key, (np.empty(0), np.empty(0)))
        start, end = start - BUCKET.total_seconds(), end - BUCKET.total_seconds()
        hi, lo = np.searchsorted(times, end, "right"), np.searchsorted(times, start, "right")
        return float((cumulative[hi - 1] if hi else 0) - (cumulative[lo - 1] if lo else 0))

    def evaluate(self, step: Step) -> list[Finding]:
        opts = self.options
        at = step.at.timestamp()
        recent = opts.recent_minutes * 60
        findings = []
        for key, times in self.pair_times.items():
            lo, hi = np.searchsorted(times, at - recent, "right"), np.searchsorted(times, at, "right")
            count = int(hi - lo)
            if count < opts.min_count:
                continue
            agent, action = key
            subject = {"agent_id": agent, "action": action}
            started = step.started(self.name, subject)
            base_end = min(at, started.timestamp() if started else at) - recent  # frozen while an incident is open
            base_start = base_end - opts.baseline_hours * 3600
            usual = np.searchsorted(times, base_end, "right") - np.searchsorted(times, base_start, "right")
            base_events = self._ok_events(key, base_start, base_end)
            # Half a duplicate of prior: a clean baseline does not make every chance repeat a surprise.
            rate = (usual + 0.5) / base_events if base_events > 0 else 0.0
            expected = rate * self._ok_events(key, at - recent, at)
            if not far_above_usual(count, expected, opts.ratio, opts.max_p_value):
                continue
            findings.append(self._finding(subject, self.pairs[key][int(lo):int(hi)], expected, rate))
        return findings

    def _finding(self, subject: dict[str, str], pairs: pl.DataFrame, expected: float, rate: float) -> Finding:
        opts = self.options
        count = len(pairs)
        records = pairs.select("resource_type", "resource_id").unique(maintain_order=True)
        external = bool(pairs["external"].any())
        sample = [i for pair in zip(pairs["first_event_id"], pairs["event_id"], strict=True) for i in pair]
        summary = (
            f"{subject['agent_id']} ran {subject['action']} twice on the same record within "
            f"{opts.window_minutes:g} min {count} times in the last {opts.recent_minutes:g} min "
            f"({len(records)} records; about {expected:.1f} expected)"
            + (", reaching people outside the company twice." if external else ".")
        )
        return Finding(
            check=self.name, subject=subject,
            severity=Severity.critical if external else Severity.warning,
            summary=summary, started_at=datetime.fromtimestamp(float(pairs["t"][0]), tz=UTC), affected=count,
            evidence={
                "agents": [subject["agent_id"]], "duplicates": count, "records": len(records),
                "resource_ids": records["resource_id"].head(20).to_list(),
                "resource_type": records["resource_type"].head(1).to_list(),
                "expected": round(expected, 2), "usual_duplicates_per_action": round(rate, 5),
                "window_minutes": opts.window_minutes, "recent_minutes": opts.recent_minutes,
                "min_count": opts.min_count, "external": external,
            },
            sample_event_ids=sample[:SAMPLE_IDS],
        )


def far_above_usual(count: int, expected: float, ratio: float, max_p_value: float) -> bool:
    """The repeats rule: `count` is at least `ratio` times what the usual rate `expected`, and that many would come
    by chance (Poisson) less often than `max_p_value`."""
    return count >= ratio * expected and poisson_tail(expected, count) <= max_p_value


def poisson_tail(expected: float, count: int) -> float:
    """P(X >= count) for X ~ Poisson(expected), summed in log space so large rates do not underflow."""
    if expected <= 0:
        return 0.0 if count > 0 else 1.0
    below = math.fsum(math.exp(-expected + j * math.log(expected) - math.lgamma(j + 1)) for j in range(count))
    return max(0.0, 1.0 - below)
