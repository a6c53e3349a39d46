"""``errors.error_burst``: an agent x action's share of failed actions jumps against its own baseline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from agentwatch.checks.base import Check, CheckOptions, Finding, Step, register, subject_key
from agentwatch.checks.data import BUCKET, EvalData, floor_to_bucket
from agentwatch.checks.rollup_sql import ERROR_DETAILS
from agentwatch.checks.seasonal import SLOTS_PER_DAY, action_series, prefix_sums, suffix_max
from agentwatch.checks.stats import bernoulli_llr, cusum_end
from agentwatch.core.severity import Severity

PRIOR_EVENTS = 50.0  # the baseline share starts from 2% over 50 pretend events, so a new action's first
PRIOR_SHARE = 0.02  # error is not "infinitely" surprising and a long clean history still wins
MIN_BASE_SHARE = 0.001  # a perfectly clean history still leaves room for one error in a thousand
RECENT_BUCKETS = 6  # a burst still goes on while its last 30 minutes favour the raised share
TOP_CODES = 5


class ErrorBurstOptions(CheckOptions):
    threshold: float = Field(
        10, gt=0,
        description="CUSUM statistic (log-likelihood ratio) needed to fire. 10 means the outcomes are e^10 "
                    "times likelier under the raised error share than under the baseline: a false alarm per "
                    "series every few months, while a timeout storm fires within a few failed calls.",
    )
    window_hours: float = Field(
        6, gt=0, le=24,
        description="How far back the CUSUM looks for the start of the burst: 6 h lets a slow action build "
                    "evidence and keeps each step a cheap slice.",
    )
    baseline_days: float = Field(
        7, gt=0, le=7,
        description="Days before the window whose error share is the baseline (frozen at the start of an open "
                    "incident). 7 days cover every weekday and forget last month's outage.",
    )
    share_multiple: float = Field(
        5, gt=1,
        description="The CUSUM tests for an error share of max(share_multiple x baseline, baseline + "
                    "share_step): 5x catches a jump on an action that fails often, the step one on a clean action.",
    )
    share_step: float = Field(
        0.15, gt=0, lt=1, description="See share_multiple: 0.15 is a clear jump from a near-zero baseline.",
    )
    min_errors: int = Field(
        5, ge=1, description="Errors the burst must contain before it fires: two or three scattered errors are noise.",
    )
    min_share: float = Field(
        0.2, gt=0, le=1,
        description="Error share within the burst needed to fire: below one call in five failing, retries usually "
                    "cope and it is not worth a page.",
    )
    critical_share: float = Field(
        0.5, gt=0, le=1, description="A burst where at least this share of calls fail is critical, else a warning.",
    )


@dataclass
class ErrorDetail:
    """Error events of one agent x action: per bucket x error code, the count, first time and sample ids."""

    columns: np.ndarray
    codes: list[str]
    counts: np.ndarray
    first_ts: list[datetime]
    ids: list[list[str]]


@register
class ErrorBurst(Check[ErrorBurstOptions]):
    """An agent x action fails far more often than usual (e.g. CRM write timeouts).

    A Bernoulli CUSUM tests each recent 5-minute bucket's errors / events against the action's own
    error share over the previous `baseline_days` (frozen while an incident is open): more traffic with
    the same share of errors stays quiet. It fires when the evidence reaches `threshold` and the burst
    holds at least `min_errors` errors and a `min_share` error share; the evidence names the error codes.
    """

    clears_when = (
        "Resolves when the agent's actions of this kind succeed at their usual share again: at least "
        "`clear_min_events` actions since it last fired, none firing it. No actions keep it open."
    )

    name: ClassVar[str] = "errors.error_burst"
    family: ClassVar[str] = "errors"
    Options: ClassVar[type[CheckOptions]] = ErrorBurstOptions
    history: timedelta = timedelta(days=8)  # 7 baseline days + the window
    options: ErrorBurstOptions

    def prepare(self, data: EvalData) -> None:
        self.series = action_series(data)
        self.events_prefix = prefix_sums(self.series.events)
        self.errors_prefix = prefix_sums(self.series.errors)
        self.subjects = [{"agent_id": a, "action": b}
                         for a, b in zip(self.series.agents, self.series.actions, strict=True)]
        self.keys = [subject_key(self.name, s) for s in self.subjects]
        # Read now (the run's connection closes after it), decoded per subject only when a finding names its codes:
        # splitting a week of error rows by subject every minute cost serve 0.1 s for nothing.
        self.error_rows = data.rollup(ERROR_DETAILS)

    def _error_detail(self, row: int) -> ErrorDetail | None:
        """The error rows of the series' `row`th agent x action, by bucket column in time order."""
        subject = self.subjects[row]
        part = self.error_rows.filter((pl.col("agent_id") == subject["agent_id"])
                                      & (pl.col("action") == subject["action"]))
        if part.is_empty():
            return None
        origin = int(self.series.origin.timestamp())
        part = part.with_columns(
            ((pl.col("bucket").dt.epoch("s") - origin) // int(BUCKET.total_seconds())).alias("column")
        ).sort("column", "error_code")  # codes in a fixed order: the sampled ids do not vary from run to run
        return ErrorDetail(part["column"].to_numpy(), part["error_code"].to_list(), part["n"].to_numpy(),
                           part["first_ts"].to_list(), part["ids"].to_list())

    def evaluate(self, step: Step) -> list[Finding]:
        series, opts = self.series, self.options
        end = series.column_of(step.at)  # the bucket holding step.at is incomplete: left out
        start = max(0, end - int(opts.window_hours * 60 / 5))
        if series.size == 0 or end <= start:
            return []
        rows = np.arange(series.size)
        base_end = np.full(series.size, start)
        for row, key in enumerate(self.keys if step.open_since else ()):
            if key in step.open_since:  # freeze the baseline where the open incident began
                base_end[row] = min(start, max(0, series.column_of(step.open_since[key])))
        base_start = np.maximum(0, base_end - int(opts.baseline_days * SLOTS_PER_DAY))
        base_events = self.events_prefix[rows, base_end] - self.events_prefix[rows, base_start]
        base_errors = self.errors_prefix[rows, base_end] - self.errors_prefix[rows, base_start]
        p0 = np.maximum((base_errors + PRIOR_SHARE * PRIOR_EVENTS) / (base_events + PRIOR_EVENTS), MIN_BASE_SHARE)
        p1 = np.minimum(np.maximum(opts.share_multiple * p0, p0 + opts.share_step), (1 + p0) / 2)
        errors, events = series.errors[:, start:end], series.events[:, start:end]
        llr = bernoulli_llr(errors, events, p0[:, None], p1[:, None])
        findings = []
        for row in np.flatnonzero(suffix_max(llr) >= opts.threshold).tolist():  # all rows at once, then the helper
            stat, offset = cusum_end(llr[row])
            failed, total = float(errors[row, offset:].sum()), float(events[row, offset:].sum())
            if stat < opts.threshold or failed < opts.min_errors or failed < opts.min_share * total:
                continue
            if llr[row, max(offset, llr.shape[1] - RECENT_BUCKETS):].sum() < 0:
                continue  # the burst is over: a high CUSUM takes hours to fall back, the incident should not
            findings.append(self._finding(step, int(row), start + offset, end, stat, failed, total,
                                          float(p0[row]), float(p1[row]), float(base_events[row])))
        return findings

    def _finding(self, step: Step, row: int, run_start: int, end: int, stat: float, failed: float, total: float,
                 p0: float, p1: float, base_events: float) -> Finding:
        opts, subject = self.options, self.subjects[row]
        codes, first, samples = self._run_errors(row, run_start, end)
        started = first or self.series.time_of(run_start)
        share = failed / total
        top = next(iter(codes.items()), None)
        minutes = (end - run_start) * 5
        mostly = f"; mostly {top[0]} ({top[1]})" if top else ""
        return Finding(
            check=self.name, subject=subject,
            severity=Severity.critical if share >= opts.critical_share else Severity.warning,
            summary=(f"{subject['agent_id']}'s {subject['action']} failed {failed:.0f} of {total:.0f} times "
                     f"({share:.0%}) in the {minutes} minutes since {floor_to_bucket(started):%H:%M} UTC, "
                     f"against {p0:.1%} usually{mostly}."),
            started_at=started, affected=int(failed),
            evidence={
                "agents": [subject["agent_id"]], "baseline_share": round(p0, 4), "current_share": round(share, 4),
                "errors": int(failed), "events": int(total), "baseline_events": int(base_events),
                "run_started_at": started.isoformat(), "cusum": round(stat, 2), "threshold": opts.threshold,
                "alternative_share": round(p1, 4), "min_errors": opts.min_errors, "min_share": opts.min_share,
                "error_codes": codes,
            },
            sample_event_ids=samples,
        )

    def _run_errors(self, row: int, run_start: int, end: int) -> tuple[dict[str, int], datetime | None, list[str]]:
        """Top error codes, first error time and up to 20 error event ids in buckets [run_start, end)."""
        detail = self._error_detail(row)
        if detail is None:
            return {}, None, []
        picked = np.flatnonzero((detail.columns >= run_start) & (detail.columns < end))
        counts: dict[str, int] = {}
        samples: list[str] = []
        for i in picked:
            counts[detail.codes[i]] = counts.get(detail.codes[i], 0) + int(detail.counts[i])
            samples.extend(detail.ids[i][: max(0, 20 - len(samples))])
        top = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CODES])
        first = min((detail.first_ts[i] for i in picked), default=None)
        return top, first, samples
