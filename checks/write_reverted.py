"""outcome.write_reverted: people setting back the fields an agent wrote.

An agent writes fields of CRM records (each key of a successful action's ``after``: ``crm.update_field`` with
``after.industry``); a person who sets such a field back within hours (a ``field_changed`` outcome) says the write was
wrong more plainly than any other signal. Reverts are matched to writes in DuckDB
(:func:`~agentwatch.checks.rollup_sql.write_reverts_sql`) and judged as the other outcome checks judge corrections
(:mod:`agentwatch.checks.outcome`): the share of an agent's writes set back, at the same age, against its own
baseline, by a CUSUM.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from agentwatch.checks.activity import Activity
from agentwatch.checks.base import CheckOptions, Finding, Step, register
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import EvalData
from agentwatch.checks.outcome import (
    HOUR,
    Cohorts,
    CorrectionOptions,
    CorrectionRateCheck,
    baseline_rows,
    cohorts_by_subject,
)
from agentwatch.checks.rollup_sql import REVERT_KIND, field_writes, revert_histogram, write_reverts_sql
from agentwatch.core.sql import sql_string

WEEK_HOURS = 7 * 24
SAME_TIME_HOURS = 1  # the hours either side of a write's hour of the week that are the same time of the week
# The whole baseline's lag curve weighs as much as this many writes made at the same time of the week: with few of
# those (a small agent, a short history) the expectation is the whole baseline's, with many it is their own.
PRIOR_WRITES = 100.0


class WriteRevertedOptions(CorrectionOptions):
    actions: list[str] = Field(
        default_factory=list, description="Judge only the writes of these actions; empty: every successful action "
        "with a non-empty `after` object, since any field an agent writes can be wrong and set back."
    )
    fields: dict[str, str] = Field(
        default_factory=dict, description="Outcome field name -> the key of `after` it is, for a CRM whose field names "
        "differ from the agent's keys (`Industry__c: industry`). Without an entry names match case-insensitively, "
        "which already pairs Salesforce's `Industry` with an agent's `industry`."
    )
    max_lag_hours: float = Field(
        24, gt=0, le=24 * 7, description="The revert window: a change within this many hours of the write sets it "
        "back. A day covers a rep reviewing a lead the next working morning; a later edit is the record's ordinary "
        "upkeep, not a verdict on the write. Must not exceed recent_hours so the baseline's lag curve is complete."
    )

    def kinds_to_actions(self) -> dict[str, list[str]]:
        return {REVERT_KIND: list(self.actions)}


@register
class WriteReverted(CorrectionRateCheck[WriteRevertedOptions]):
    """People set back the fields an agent wrote more often than usual: its writes became wrong.

    A write is a successful action with a non-empty `after` object; each key of `after` is a field it wrote
    (`crm.update_field` with `after.industry`). A `field_changed` outcome sets a write back when it changes a field
    the write wrote, on the same record (resource type and id), within `max_lag_hours` after it, by anyone but the
    writing agent, and either names the write (`corrects_event_id`), or the write is the latest of that field on the
    record before the change and the change is from the value written (`from`) or back to the value before it (`to` =
    `before.<field>`).
    Field names match case-insensitively, or through `fields`; values compare as text, trimmed, case-insensitively.

    For each agent x action, the share of its writes with any field set back is compared, at the same age, against
    the agent's own baseline of the days before, by a CUSUM of the recent writes, as the other outcome checks judge
    corrections. Reverts arrive over hours, and in office hours: a recent write is expected to have been set back by
    now as often as the baseline's writes made at the same time of the week (a week earlier, +-1 h) were within the
    same age, blended with the whole baseline's rate for agents with few such writes. The evidence counts the fields
    set back.

    Ignored look-alikes: a person editing the field to a third value after the window, or changing a field the agent
    did not write; the agent (or a feed echoing its own writes with it as `actor`) writing the field again; a steady
    small share of reverts, which is the baseline.
    """

    name: ClassVar[str] = "outcome.write_reverted"
    Options: ClassVar[type[CheckOptions]] = WriteRevertedOptions
    clears_when = (
        "Resolves when at least `clear_min_events` of the agent's actions of this kind made since it last fired have "
        "passed their revert window (`max_lag_hours`) and it no longer fires: a write is judged only once people had "
        "the time to set it back, so the writes of a night, before the reps are in, show nothing. No writes old "
        "enough keep it open."
    )
    verb = "set back"
    noun = "writes"

    def __init__(self, options: WriteRevertedOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        self.reverted_fields: dict[str, list[str]] = {}  # event id of a recent write set back -> the fields

    def prepare(self, data: EvalData) -> None:
        opts = self.options
        histogram = revert_histogram(opts.actions, opts.fields, timedelta(hours=opts.max_lag_hours))
        self.subjects = cohorts_by_subject(baseline_rows(data, opts, histogram), self._recent_writes(data),
                                           opts.max_lag_hours)

    def _recent_writes(self, data: EvalData) -> pl.DataFrame:
        """Each write of the recent windows (agent_id, action, t, confidence, event_id) with lag: seconds to its first
        revert within max_lag_hours, else +inf; sorted by t. Keeps the fields set back of each reverted one."""
        opts = self.options
        since = max(data.load_from, data.look_back_from - timedelta(hours=opts.recent_hours))
        # The writes as a frame (serve holds the settled ones between runs); DuckDB finds the few set back.
        writes = data.rollup(field_writes(opts.actions), since=since)
        table = f"field_writes_{uuid.uuid4().hex[:8]}"
        data.con.register(table, writes.to_arrow())
        try:
            outcomes = (f"SELECT * FROM {data.view('outcomes', since)} WHERE {data.time_filter(since=since)} "
                        f"AND kind = {sql_string(REVERT_KIND)}")
            reverts = data.frame(write_reverts_sql(f"SELECT * FROM {table}", outcomes, opts.fields,
                                                   timedelta(hours=opts.max_lag_hours)))
        finally:
            data.con.unregister(table)
        self.reverted_fields = dict(zip(reverts["event_id"].to_list(), reverts["fields"].to_list(), strict=True))
        events = writes.unique("event_id", keep="first", maintain_order=True).select(
            "agent_id", "action", (pl.col("ts").dt.epoch("us") / 1_000_000).alias("t"),
            pl.col("confidence").cast(pl.Float64), "event_id",
        )
        lags = reverts.select("event_id", pl.col("lag").cast(pl.Float64))
        return (events.join(lags, on="event_id", how="left")
                .with_columns(pl.col("lag").fill_null(float("inf")))
                .sort("t", "event_id"))  # ties in a fixed order: every run reads them alike

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """The subject's actions made after `since` whose revert window has passed by ``step.at``."""
        agent, action = subject["agent_id"], subject["action"]
        window = timedelta(hours=self.options.max_lag_hours)
        count = activity.actions(agent, action, since, step.at - window) if step.at - window > since else 0
        return count, f"{action} actions by {agent} past their {self.options.max_lag_hours:g} h revert window"

    def expected_at_age(self, cohorts: Cohorts, t: np.ndarray, age: np.ndarray, curve: np.ndarray, usual: float,
                        baseline: tuple[float, float]) -> np.ndarray:
        """The share of the baseline's writes made at the same time of the week (the same hour, +-1 h, a week
        earlier, and every further week the baseline holds) set back within the same age, blended with the whole
        baseline's expectation (worth PRIOR_WRITES writes). Reps set writes back in office hours: a morning's writes
        are set back within hours, a night's next morning, a Friday evening's after the weekend, so the whole
        baseline's lag curve expects too few reverts of a weekday's writes, and at thousands of writes a day that
        alone would fire."""
        prior = super().expected_at_age(cohorts, t, age, curve, usual, baseline)
        if curve[-1] <= 0:  # nothing set back in the baseline: the floor (min_baseline_share) is all there is
            return prior
        first, end = int(baseline[0] // HOUR), int(baseline[1] // HOUR)
        hour = (t // HOUR).astype(np.int64)
        writes, reverted = np.zeros(len(t)), np.zeros(len(t))
        for weeks in range(1, int(np.ceil(self.options.baseline_days / 7)) + 1):
            earlier = hour - weeks * WEEK_HOURS
            n, within = cohorts.corrected_by_age(np.clip(earlier - SAME_TIME_HOURS, first, end),
                                                 np.clip(earlier + SAME_TIME_HOURS + 1, first, end), age)
            writes += n
            reverted += within
        floor = usual / float(curve[-1])  # the usual share taken as at least min_baseline_share, here too
        return (reverted * floor + PRIOR_WRITES * prior) / (writes + PRIOR_WRITES)

    def _evaluate(self, step: Step, agent: str, action: str, cohorts: Cohorts) -> Finding | None:
        finding = super()._evaluate(step, agent, action, cohorts)
        if finding is None:
            return None
        counted = ", ".join(f"{field} ({n})" for field, n in list(finding.evidence["reverted_fields"].items())[:3])
        return replace(finding, summary=f"{finding.summary} Fields set back most: {counted}.")

    def extra_evidence(self, corrected_ids: np.ndarray) -> dict[str, Any]:
        """How many of the writes set back had each field set back, most first."""
        counts = Counter(field for i in corrected_ids for field in self.reverted_fields.get(str(i), []))
        return {"reverted_fields": dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))}
