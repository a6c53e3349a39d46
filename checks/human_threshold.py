"""The human notification threshold: autonomous actions big or visible enough that a person should know.

An action is autonomous when it carries no ``approval`` (no human approved it). It crosses the
threshold when it touched more than ``max_records`` records, reached a person outside
(``external: true``) with ``customer_facing`` on, or its name matches one of ``actions``. Each
agent x action that crossed in the last window is one finding, so it opens an incident that routes,
groups, repeats, is silenced and pages like any other. With no threshold set (the default) the check
reads nothing and finds nothing. The class's docstring (also in docs/checks.md) shows a config.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Annotated, ClassVar

import polars as pl
from pydantic import Field

from agentwatch.checks.base import SAMPLE_IDS, Check, CheckOptions, Finding, Step, register
from agentwatch.checks.data import EvalData, rows_in_window
from agentwatch.checks.policy import PolicyOptions
from agentwatch.core.severity import Severity

Pattern = Annotated[str, Field(min_length=1)]


class HumanThresholdOptions(PolicyOptions):
    max_records: int | None = Field(
        None, ge=1,
        description="An autonomous action touching more than this many records (`records_affected`) needs a human. "
                    "Unset by default: how big is too big depends on the team, and a guessed number would either "
                    "page on every routine import or never.",
    )
    customer_facing: bool = Field(
        False,
        description="Any autonomous action with `external: true` (it reached a prospect or customer) needs a human. "
                    "Off by default because many teams let agents send routine outreach on their own.",
    )
    actions: list[Pattern] = Field(
        [],
        description="Shell patterns of action names that always need a human when autonomous, e.g. `record.delete`, "
                    "`sequence.*`. Empty by default: which actions are sensitive is the team's call.",
    )
    severity: Severity = Field(
        Severity.warning,
        description="Severity of the incident. A warning by default: the action is not known to be wrong, a person "
                    "should look at it; route it to a pager with `critical` if it must wake someone.",
    )


@register
class HumanThreshold(Check[HumanThresholdOptions]):
    """An agent acted without a human's approval above the team's human notification threshold.

    An action counts when it carries no `approval` and touched more than `max_records` records, reached a
    person outside (`external: true`) with `customer_facing` on, or its name matches one of `actions`
    (shell patterns). Statuses as the other policy checks: `ok` and `error` count. One incident per agent x
    action; its evidence says which thresholds were crossed. Nothing is set by default, so the check is
    quiet until the config names a threshold, for example:

    ```yaml
    checks:
      policy.human_threshold: {max_records: 50, customer_facing: true}
    alerts:
      destinations:
        revops-slack: {type: slack, url_env: REVOPS_SLACK_WEBHOOK}
      routes:
        - match: {check: policy.human_threshold}
          destinations: [revops-slack]
    ```
    """

    clears_when = (
        "Resolves when the agent's further actions of this kind, at least `clear_min_events` since it last "
        "fired, stay under the threshold or carry an approval. No further actions keep it open."
    )

    name: ClassVar[str] = "policy.human_threshold"
    family: ClassVar[str] = "policy"
    Options: ClassVar[type[CheckOptions]] = HumanThresholdOptions
    history: timedelta = timedelta(hours=1)

    def prepare(self, data: EvalData) -> None:
        options = self.options
        self.window = timedelta(minutes=options.window_minutes)
        if options.max_records is None and not options.customer_facing and not options.actions:
            self.crossed = _empty()
        else:
            self.crossed = _crossing_events(data, data.look_back_from - self.window, options)
        self.ts = self.crossed["ts"].dt.epoch("us").to_numpy()

    def evaluate(self, step: Step) -> list[Finding]:
        recent = rows_in_window(self.crossed, self.ts, self.window, step.at)
        if recent.is_empty():
            return []
        groups = recent.group_by("agent_id", "action").agg(
            pl.len().alias("events"),
            pl.col("ts").min().alias("started_at"),
            pl.col("records").sum().alias("records"),
            pl.col("records").max().alias("largest"),
            pl.col("over_records").sum().alias("over_records"),
            pl.col("customer_facing").sum().alias("customer_facing"),
            pl.col("listed").sum().alias("listed"),
            pl.col("event_id").head(SAMPLE_IDS).alias("sample"),
        )
        return [self._finding(row) for row in groups.sort("agent_id", "action").iter_rows(named=True)]

    def _finding(self, row: dict) -> Finding:
        options = self.options
        minutes = round(self.window.total_seconds() / 60)
        patterns = [p for p in options.actions if fnmatchcase(row["action"], p)]
        crossed = [name for name, count in (("max_records", row["over_records"]),
                                            ("customer_facing", row["customer_facing"]),
                                            ("actions", row["listed"])) if count]
        evidence = {
            "events": row["events"], "records_affected": int(row["records"]),
            "largest_records_affected": int(row["largest"]), "window_minutes": minutes,
            "agents": [row["agent_id"]], "thresholds_crossed": crossed,
            "over_max_records": row["over_records"], "max_records": options.max_records,
            "customer_facing_events": row["customer_facing"], "listed_events": row["listed"],
            "matched_patterns": patterns,
        }
        return Finding(
            check=self.name, subject={"agent_id": row["agent_id"], "action": row["action"]},
            severity=options.severity, summary=_summary(row, options.max_records, patterns, minutes),
            started_at=row["started_at"], affected=int(row["records"]), evidence=evidence,
            sample_event_ids=list(row["sample"]),
        )


def _summary(row: dict, max_records: int | None, patterns: list[str], minutes: int) -> str:
    """One sentence per threshold crossed, in the words a RevOps lead would use."""
    agent, action = row["agent_id"], row["action"]
    sentences = []
    if row["over_records"] == 1:
        sentences.append(f"{agent} ran {action} on {int(row['largest'])} records without approval "
                         f"(threshold {max_records}).")
    elif row["over_records"]:
        sentences.append(f"{agent} ran {action} {row['over_records']} times on more than {max_records} records "
                         f"without approval in the last {minutes} minutes (up to {int(row['largest'])} at once; "
                         f"threshold {max_records}).")
    if row["customer_facing"]:
        count = row["customer_facing"]
        sentences.append(f"{agent} sent {count} customer-facing {action} action{'s' if count != 1 else ''} "
                         f"without approval in the last {minutes} minutes.")
    if row["listed"]:
        times = "once" if row["listed"] == 1 else f"{row['listed']} times"
        sentences.append(f"{agent} ran {action} {times} without approval in the last {minutes} minutes; "
                         f"it always needs a human ({', '.join(patterns)}).")
    return " ".join(sentences)


def _crossing_events(data: EvalData, since: datetime, options: HumanThresholdOptions) -> pl.DataFrame:
    """Every autonomous event since `since` that crosses a threshold, with one flag per threshold (sorted by ts)."""
    return data.frame(
        "SELECT event_id, ts, agent_id, action, records, over_records, customer_facing, listed FROM ("
        "  SELECT event_id, ts, agent_id, action, coalesce(records_affected, 1) AS records, "
        "  coalesce(?::BIGINT IS NOT NULL AND coalesce(records_affected, 1) > ?::BIGINT, false) AS over_records, "
        "  ?::BOOLEAN AND coalesce(external, false) AS customer_facing, "
        "  coalesce(list_bool_or(list_transform(?::VARCHAR[], lambda p: action GLOB p)), false) AS listed "
        f"  FROM {data.view('actions', since)} WHERE {data.time_filter(since=since)} AND approved_by IS NULL "
        "  AND list_contains(?::VARCHAR[], status)) "
        "WHERE over_records OR customer_facing OR listed ORDER BY ts",
        [options.max_records, options.max_records, options.customer_facing, options.actions, options.statuses],
    )


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "event_id": pl.String, "ts": pl.Datetime("us", "UTC"), "agent_id": pl.String, "action": pl.String,
        "records": pl.Int64, "over_records": pl.Boolean, "customer_facing": pl.Boolean, "listed": pl.Boolean,
    })
