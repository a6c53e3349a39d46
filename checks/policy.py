"""Policy checks: actions an agent took outside the policy written in the config's ``agents:`` section.

Each check selects its violating events over the whole range in ``prepare``, through one rollup of
``agentwatch.checks.rollup_sql`` the five checks share (the per-agent policy is in its SQL as escaped
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
from agentwatch.checks.config import AgentPolicy, ChecksConfig, pattern_specificity
from agentwatch.checks.data import EvalData, rows_in_window
from agentwatch.checks.rollup_sql import POLICY_CONDITIONS, ConfidenceRule, PolicyRow, policy_violations
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
        # The five checks share one scan when their options agree (the usual case).
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
            *self.aggregates(),
        )
        return [self._finding(row) for row in groups.sort("agent_id", "action").iter_rows(named=True)]

    def aggregates(self) -> list[pl.Expr]:
        """What a check's finding needs of its violating events beyond the shared counts (per agent x action)."""
        return []

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
            **self.policy_evidence(row["agent_id"]), **self.row_evidence(row),
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

    def row_evidence(self, row: dict) -> dict:
        """Evidence from the check's own `aggregates`."""
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


@register
class LowConfidenceAutonomy(PolicyCheck):
    """An agent acted on its own below the confidence its policy says needs a human (``min_confidence``).

    RevOps teams gate high-impact actions behind a confidence: below it the agent should ask a human
    (status ``pending_approval``) or act with an ``approval.approved_by``. An event counts when it carries no
    approval and its ``confidence`` is below the agent's threshold for its action, or it has no confidence
    while the policy says ``require_confidence: true`` (then every action of the agent must carry one, whether a
    ``min_confidence`` covers it or not).

    ``min_confidence`` is one number (every action) or a map from action pattern (a shell glob on the dotted
    name: ``email.*``, ``*``) to a number. Of the keys matching an action the most specific applies: an exact
    action name beats any pattern, a longer pattern beats a shorter one, and of two patterns as long the higher
    threshold. An agent's entry extends ``"*"``: its map entries override ``"*"``'s pattern by pattern, its single
    number replaces ``"*"``'s thresholds, its ``require_confidence`` (when set) overrides. The threshold is matched
    in the shared policy rollup's SQL, once per agent x action. For example:

    ```yaml
    agents:
      "*":          {min_confidence: {"*": 0.5}}
      lead-router:  {min_confidence: {"email.*": 0.8, lead.assign_owner: 0.7}, require_confidence: true}
    ```

    A warning; critical when one of the actions reached a person outside (``external: true``, e.g. an email to a
    prospect). Benign look-alikes it ignores: a low-confidence action a human approved, one the agent skipped or
    sent for approval (``skipped``, ``pending_approval``), a confidence exactly at the threshold, and agents and
    actions no threshold covers. The evidence gives the threshold and the lowest and median confidence of the
    violating events (and how many had none).
    """

    name: ClassVar[str] = "policy.low_confidence_autonomy"
    breaks: ClassVar[str] = "below the confidence its policy requires for acting without a human"
    clears_when = (
        "Resolves when the agent's further actions of this kind, at least `clear_min_events` since it last fired, "
        "carry a confidence at or above the threshold, an approval, or went to a human (pending approval, skipped). "
        "No further actions of this kind keep it open."
    )

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """The agent's actions of this kind: a confidence that fell on one action shows it is back on that action,
        not in the agent's other work."""
        return Check.fresh_events(self, step, subject, since, activity)

    def severity(self, row: dict) -> Severity:
        return Severity.critical if row["external"] else Severity.warning

    def aggregates(self) -> list[pl.Expr]:
        return [pl.col("min_confidence").max().alias("threshold"),
                pl.col("confidence").min().alias("lowest"),
                pl.col("confidence").median().alias("median"),
                pl.col("confidence").null_count().alias("missing")]

    def row_evidence(self, row: dict) -> dict:
        return {"min_confidence": row["threshold"], "lowest_confidence": row["lowest"],
                "median_confidence": row["median"], "without_confidence": int(row["missing"])}

    def summary(self, row: dict, minutes: int) -> str:
        times = "once" if row["events"] == 1 else f"{row['events']} times"
        if row["lowest"] is None:
            seen = "with no confidence"
        else:
            seen = f"at confidence down to {row['lowest']:.2f}" + (
                f" ({row['missing']} with none)" if row["missing"] else "")
        rule = ("where its policy requires a confidence (require_confidence)" if row["threshold"] is None
                else f"below its threshold of {row['threshold']:.2f}")
        return (f"{row['agent_id']} ran {row['action']} without approval {times} in the last {minutes} minutes "
                f"{seen}, {rule}.")


CHECKS = tuple(POLICY_CONDITIONS)


def _violations(data: EvalData, since: datetime, statuses: list[str]) -> pl.DataFrame:
    """Every event since `since` that breaks a policy, with one boolean column per check (sorted by ts)."""
    if not data.config.agents:
        return _empty_violations()
    # A rollup: serve holds the settled violations between its minute runs and reads only the last minutes.
    rollup = policy_violations(_policy_rows(data.config), statuses, _confidence_rules(data.config))
    found = data.rollup(rollup, since=since)
    return found.select(_empty_violations().columns).sort("ts", "event_id")


def _policy_rows(config: ChecksConfig) -> list[PolicyRow]:
    """One row per named agent (its effective policy) and one with agent_id NULL: the ``"*"`` policy."""
    rows = []
    for name in [None, *sorted(a for a in config.agents if a != "*")]:
        policy = config.policy_for(name) if name else config.agents.get("*", AgentPolicy())
        rows.append((name, policy.allowed_actions, policy.forbidden_actions, policy.requires_approval,
                     policy.max_records_per_action))
    return rows


def _confidence_rules(config: ChecksConfig) -> list[ConfidenceRule]:
    """One row per key of each effective ``min_confidence``, for the same agents as :func:`_policy_rows`; the SQL
    picks the most specific per agent x action."""
    rules: list[ConfidenceRule] = []
    for name in [None, *sorted(a for a in config.agents if a != "*")]:
        policy = config.policy_for(name) if name else config.agents.get("*", AgentPolicy())
        thresholds = policy.confidence_thresholds()
        rules += [(name, pattern, threshold, pattern_specificity(pattern), bool(policy.require_confidence))
                  for pattern, threshold in sorted(thresholds.items())]
        if policy.require_confidence and "*" not in thresholds:  # every action needs one; any pattern is more specific
            rules.append((name, "*", None, 0, True))
    return rules


def _empty_violations() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "event_id": pl.String, "ts": pl.Datetime("us", "UTC"), "agent_id": pl.String, "action": pl.String,
        "records_affected": pl.Int64, "external": pl.Boolean, "confidence": pl.Float64,
        "min_confidence": pl.Float64, **dict.fromkeys(CHECKS, pl.Boolean),
    })

