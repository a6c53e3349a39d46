"""Policy checks: actions an agent took outside the policy written in the config's ``agents:`` section.

Each check selects its violating events over the whole range in ``prepare``, through one rollup of
``agentwatch.checks.rollup_sql`` the four checks share (the per-agent policy is in its SQL as escaped
literals), and keeps them as a small Polars frame; ``evaluate`` reports the violations of the last window
per agent x action.

Only actions the agent actually carried out or tried count: status ``ok`` and ``error`` by default (an
error still means the agent attempted it). ``skipped`` and ``pending_approval`` events are the agent
holding back or asking a human, which is what a policy wants.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import ClassVar

import polars as pl
from pydantic import Field

from agentwatch.checks.activity import Activity
from agentwatch.checks.base import SAMPLE_IDS, Check, CheckOptions, Finding, Step, register
from agentwatch.checks.config import AgentPolicy, ChecksConfig
from agentwatch.checks.data import EvalData, rows_in_window
from agentwatch.checks.rollup_sql import POLICY_CONDITIONS, PolicyRow, policy_violations
from agentwatch.core.severity import Severity


class ViolationOptions(CheckOptions):
    """What the checks that report individual violations (policy, invalid transitions) share."""

    resolve_after_minutes: float = Field(
        360, gt=0,
        description="Resolve once no violation has been seen this long. Six hours, not the usual hour: a violation "
                    "that recurs within a working morning is the same problem, not a new page each time.",
    )


class PolicyOptions(ViolationOptions):
    window_minutes: float = Field(
        60, gt=0,
        description="Report violations with event time in this last stretch before each evaluation, counted per "
                    "agent x action. One hour keeps a single violation visible for a few evaluations and groups a "
                    "burst into one finding.",
    )
    statuses: list[str] = Field(
        ["ok", "error"],
        description="Action statuses that count as the agent acting. `error` is included because the agent still "
                    "tried; `skipped` and `pending_approval` are left out because holding back or asking a human is "
                    "what a policy wants.",
    )


class PolicyCheck(Check[PolicyOptions]):
    """The shared machinery of the policy checks; subclasses give the violation condition and wording."""

    clears_when = (
        "Resolves when the agent goes on working within policy: at least `clear_min_events` further actions of any "
        "kind since the last violation, none violating (or the policy changed so that none would). No further "
        "actions (an agent paused by the guard) keep it open."
    )

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """Any action of the agent: a violation is an act, so acting within policy afterwards is the evidence
        (the forbidden action itself should never come again)."""
        agent_id = subject["agent_id"]
        return activity.actions(agent_id, None, since, step.at), f"actions by {agent_id}"

    family: ClassVar[str] = "policy"
    Options: ClassVar[type[CheckOptions]] = PolicyOptions
    history: timedelta = timedelta(hours=1)
    breaks: ClassVar[str]  # what the policy says, for the summary: "an action the policy forbids"

    def prepare(self, data: EvalData) -> None:
        options = self.options
        self.window = timedelta(minutes=options.window_minutes)
        since = data.look_back_from - self.window
        # The four checks share one scan when their options agree (the usual case).
        every = data.shared(f"policy.violations {since.isoformat()} {sorted(options.statuses)}",
                            lambda: _violations(data, since, options.statuses))
        self.violations = every.filter(pl.col(self.name)).drop(*CHECKS)
        self.ts = self.violations["ts"].dt.epoch("us").to_numpy()

    def evaluate(self, step: Step) -> list[Finding]:
        recent = rows_in_window(self.violations, self.ts, self.window, step.at)
        if recent.is_empty():
            return []
        groups = recent.group_by("agent_id", "action").agg(
            pl.len().alias("events"),
            pl.col("ts").min().alias("started_at"),
            pl.col("records_affected").sum().alias("records"),
            pl.col("records_affected").max().alias("largest"),
            pl.col("external").any().alias("external"),
            pl.col("event_id").head(SAMPLE_IDS).alias("sample"),
        )
        return [self._finding(row) for row in groups.sort("agent_id", "action").iter_rows(named=True)]

    def severity(self, row: dict) -> Severity:
        return Severity.critical

    def summary(self, row: dict, minutes: int) -> str:
        times = "once" if row["events"] == 1 else f"{row['events']} times"
        return (f"{row['agent_id']} ran {row['action']} {times} in the last {minutes} minutes "
                f"({int(row['records'])} records), {self.breaks}.")

    def _finding(self, row: dict) -> Finding:
        minutes = round(self.window.total_seconds() / 60)
        evidence = {
            "events": row["events"], "records_affected": int(row["records"]),
            "largest_records_affected": int(row["largest"]), "window_minutes": minutes, "agents": [row["agent_id"]],
            **self.policy_evidence(row["agent_id"]),
        }
        return Finding(
            check=self.name, subject={"agent_id": row["agent_id"], "action": row["action"]},
            severity=self.severity(row),
            summary=self.summary(row, minutes),
            started_at=row["started_at"], affected=int(row["records"]), evidence=evidence,
            sample_event_ids=list(row["sample"]),
        )

    def policy_evidence(self, agent_id: str) -> dict:
        return {}


@register
class ForbiddenAction(PolicyCheck):
    """An agent ran an action its policy forbids (``forbidden_actions``).

    Any attempt counts, succeeded or errored; the policy of an agent is the ``"*"`` entry extended by its
    own, so a forbidden action under ``"*"`` is forbidden for every agent, named in the config or not.
    """

    name: ClassVar[str] = "policy.forbidden_action"
    breaks: ClassVar[str] = "an action the policy forbids"


@register
class NotAllowed(PolicyCheck):
    """An agent ran an action outside its ``allowed_actions`` list.

    Only agents whose policy has an allow-list are checked. An action listed under ``requires_approval``
    is allowed (with an approval, which ``policy.unapproved_action`` checks), and one that is forbidden is
    reported by ``policy.forbidden_action`` alone, so one event never opens two incidents.
    """

    name: ClassVar[str] = "policy.not_allowed"
    breaks: ClassVar[str] = "an action outside its allowed list"

    def policy_evidence(self, agent_id: str) -> dict:
        return {"allowed_actions": self.config.policy_for(agent_id).allowed_actions or []}


@register
class UnapprovedAction(PolicyCheck):
    """An agent ran an action that needs a human's approval (``requires_approval``) without one.

    An event counts when its action is in the agent's ``requires_approval`` list and it carries no
    ``approval.approved_by``. Critical when the action reached someone outside (``external: true``, e.g.
    an email sent to a prospect), a warning otherwise.
    """

    name: ClassVar[str] = "policy.unapproved_action"
    breaks: ClassVar[str] = "an action that needs a human's approval, without one"

    def severity(self, row: dict) -> Severity:
        return Severity.critical if row["external"] else Severity.warning


@register
class BulkLimit(PolicyCheck):
    """An agent touched more records in one action than its ``max_records_per_action`` allows.

    An action at the limit is fine; one above it is a violation, whatever the action.
    """

    name: ClassVar[str] = "policy.bulk_limit"
    breaks: ClassVar[str] = "above its limit of records per action"

    def policy_evidence(self, agent_id: str) -> dict:
        return {"max_records_per_action": self.config.policy_for(agent_id).max_records_per_action}

    def summary(self, row: dict, minutes: int) -> str:
        limit = self.config.policy_for(row["agent_id"]).max_records_per_action
        times = "once" if row["events"] == 1 else f"{row['events']} times"
        return (f"{row['agent_id']} ran {row['action']} on more than {limit} records at once {times} in the last "
                f"{minutes} minutes (up to {int(row['largest'])} records), above its limit of {limit}.")


CHECKS = tuple(POLICY_CONDITIONS)


def _violations(data: EvalData, since: datetime, statuses: list[str]) -> pl.DataFrame:
    """Every event since `since` that breaks a policy, with one boolean column per check (sorted by ts)."""
    if not data.config.agents:
        return _empty_violations()
    # A rollup: serve holds the settled violations between its minute runs and reads only the last minutes.
    found = data.rollup(policy_violations(_policy_rows(data.config), statuses), since=since)
    return found.select(_empty_violations().columns).sort("ts", "event_id")


def _policy_rows(config: ChecksConfig) -> list[PolicyRow]:
    """One row per named agent (its effective policy) and one with agent_id NULL: the ``"*"`` policy."""
    rows = []
    for name in [None, *sorted(a for a in config.agents if a != "*")]:
        policy = config.policy_for(name) if name else config.agents.get("*", AgentPolicy())
        rows.append((name, policy.allowed_actions, policy.forbidden_actions, policy.requires_approval,
                     policy.max_records_per_action))
    return rows


def _empty_violations() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "event_id": pl.String, "ts": pl.Datetime("us", "UTC"), "agent_id": pl.String, "action": pl.String,
        "records_affected": pl.Int64, "external": pl.Boolean, **dict.fromkeys(CHECKS, pl.Boolean),
    })

