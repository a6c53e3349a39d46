"""The injected failures: what each one does to the traffic, when, and which incident should name it.

A fault either turns a knob of the generator (a lead-level change: the router reads null, the qualifier
scores differently) or rewrites the finished action frames (an event-level change: a loop, a silent
stop, timeouts, policy violations). Every fault names the checks that should catch it and the subject
keys the incident must carry; a scenario is one or more faults that do not hide each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from scenarios.outcomes import uniform
from scenarios.timeline import EVAL_START, SECOND

Frames = dict[str, pl.DataFrame]
Rewrite = Callable[[Frames, datetime], Frames]
TUESDAY = EVAL_START + timedelta(days=1)


@dataclass(frozen=True)
class Fault:
    """One injected failure."""

    name: str  # what a RevOps person would call it
    family: str  # the row of the results table
    checks: tuple[str, ...]  # any of these checks opening an incident on the subject detects it
    subject: dict[str, str]  # subject keys the incident must match (``field`` by substring)
    at: datetime  # injected, by event time
    knobs: dict[str, Any] = field(default_factory=dict)  # arguments of traffic.Knobs
    rewrite: Rewrite | None = None
    renames_deal_stage: bool = False  # the CRM schema changes too


@dataclass(frozen=True)
class Scenario:
    """Faults injected together into one run: they touch different checks and subjects, so each stays
    attributable. The run evaluates from Tuesday 00:00 (Monday is history too) for `days` days."""

    name: str
    faults: tuple[Fault, ...]
    days: int = 1

    @property
    def start(self) -> datetime:
        return TUESDAY

    @property
    def end(self) -> datetime:
        return TUESDAY + timedelta(days=self.days)


def _during(at: datetime, until: datetime | None = None) -> pl.Expr:
    """Events at or after `at` (and before `until`)."""
    cond = pl.col("ts") >= at
    return cond & (pl.col("ts") < until) if until else cond


def _lead_share(frame: pl.DataFrame, salt: int, share: float) -> pl.Series:
    """True for about `share` of the rows, chosen by a hash of the lead (the same lead always agrees)."""
    return pl.Series(uniform(frame["_lead"].to_numpy(), salt) < share)


def _shift(frame: pl.DataFrame, prefix: str, seconds: np.ndarray) -> pl.DataFrame:
    return frame.with_columns(
        pl.concat_str(pl.lit(prefix), pl.col("event_id")).alias("event_id"),
        (pl.col("ts") + pl.Series((seconds * SECOND).astype(np.int64)).cast(pl.Duration("us"))).alias("ts"))


def email_loop(frames: Frames, at: datetime) -> Frames:
    """followup-agent re-sends each email nine more times, 20-60 s apart, for 90 minutes."""
    email = frames["email"]
    looping = email.filter(_during(at, at + timedelta(minutes=90)))
    copies = []
    for k in range(1, 10):
        gaps = 20 + 40 * uniform(looping["_lead"].to_numpy(), 100 + k)
        copies.append(_shift(looping, f"loop{k}-", gaps * k))
    return {**frames, "email": pl.concat([email, *copies])}


def agent_stops(agent: str) -> Rewrite:
    def rewrite(frames: Frames, at: datetime) -> Frames:
        return {key: f.filter(~((pl.col("agent_id") == agent) & (pl.col("ts") >= at))) for key, f in frames.items()}
    rewrite.__doc__ = f"{agent} stops without a word: no event from it after the time."
    return rewrite


def update_timeouts(frames: Frames, at: datetime) -> Frames:
    """40% of enrichment-agent's crm.update_field calls time out for two hours."""
    out = dict(frames)
    for k, key in enumerate(("update_industry", "update_region", "update_segment")):
        f = frames[key]
        hit = pl.Series(uniform(f["_lead"].to_numpy(), 200 + k) < 0.4) & f.select(
            _during(at, at + timedelta(hours=2))).to_series()
        out[key] = f.with_columns(
            pl.when(hit).then(pl.lit("error")).otherwise(pl.col("status")).alias("status"),
            pl.when(hit).then(pl.lit("timeout")).otherwise(pl.col("error.code")).alias("error.code"),
            pl.when(hit).then(pl.lit("CRM API request timed out after 30 s")).otherwise(pl.col("error.message"))
            .alias("error.message"))
    return out


def _extra(frames: Frames, key: str, source: str, at: datetime, count: int, spacing_s: float,
           **columns: pl.Expr) -> Frames:
    """`count` new events made from the first leads of `source` after `at`, `spacing_s` apart."""
    base = frames[source].filter(pl.col("ts") >= at).sort("ts").head(count)
    times = [at + timedelta(seconds=spacing_s * i + 7) for i in range(base.height)]
    keep = ["event_id", "agent_version", "resource.type", "resource.id", "trace_id", "_lead", "_offset_h", "_lead_id"]
    made = base.select(keep).with_columns(
        pl.concat_str(pl.lit(key + "-"), pl.col("event_id")).alias("event_id"),
        pl.Series("ts", times).cast(pl.Datetime("us", "UTC")), pl.lit("ok").alias("status"),
        *[expr.alias(name) for name, expr in columns.items()])
    return {**frames, key: made}


def record_delete(frames: Frames, at: datetime) -> Frames:
    """enrichment-agent deletes three lead records it judged duplicates."""
    return _extra(frames, "delete", "enrich", at, 3, 40, agent_id=pl.lit("enrichment-agent"),
                  action=pl.lit("record.delete"), **{"decision.reason": pl.lit("duplicate")})


def unapproved_emails(frames: Frames, at: datetime) -> Frames:
    """After a deploy, a fifth of followup-agent's emails go out without the approval the policy requires."""
    f = frames["email"]
    hit = _lead_share(f, 300, 0.2) & f.select(_during(at)).to_series()
    approval = ("approval.approved_by", "approval.approved_at")
    unset = [pl.when(hit).then(None).otherwise(pl.col(c)).alias(c) for c in approval]
    return {**frames, "email": f.with_columns(unset)}


def bulk_reassign(frames: Frames, at: datetime) -> Frames:
    """lead-router reassigns 240 leads in one call (the limit is 5)."""
    return _extra(frames, "bulk", "assign", at, 1, 0, agent_id=pl.lit("lead-router"),
                  action=pl.lit("lead.assign_owner"), records_affected=pl.lit(240),
                  **{"inputs.filter": pl.lit("Region__c = 'EMEA' AND Status = 'routed'"),
                     "decision.owner": pl.lit("sdr-emea-smb-1")})


def outside_allowed(frames: Frames, at: datetime) -> Frames:
    """lead-router starts updating opportunity stages, which its allowed actions do not include."""
    return _extra(frames, "opp_update", "route", at, 5, 300, agent_id=pl.lit("lead-router"),
                  action=pl.lit("opportunity.update_stage"),
                  **{"after.stage": pl.lit("proposal"), "decision.stage": pl.lit("proposal")})


def invalid_transitions(frames: Frames, at: datetime) -> Frames:
    """lead-router 2.0 routes a fifth of leads before the qualifier ran: status new -> routed."""
    f = frames["assign"]
    hit = _lead_share(f, 400, 0.2) & f.select(_during(at)).to_series()
    return {**frames, "assign": f.with_columns(
        pl.when(hit).then(pl.lit("new")).otherwise(pl.col("before.status")).alias("before.status"))}


def missing_activity_logs(frames: Frames, at: datetime) -> Frames:
    """30% of emails sent after the time never get their crm.log_activity (the write is silently dropped)."""
    email = frames["email"]
    lost = email.filter(_during(at) & _lead_share(email, 500, 0.3))["_lead"]
    return {**frames, "log": frames["log"].filter(~pl.col("_lead").is_in(lost.implode()))}


def duplicate_assignments(frames: Frames, at: datetime) -> Frames:
    """15% of leads are assigned twice: a retry after a slow CRM response that had in fact succeeded."""
    f = frames["assign"]
    again = f.filter(_during(at) & _lead_share(f, 600, 0.15))
    again = _shift(again, "again-", 1 + 19 * uniform(again["_lead"].to_numpy(), 601))
    return {**frames, "assign": pl.concat([f, again])}


def _t(day: int, hour: int, minute: int) -> datetime:
    return EVAL_START + timedelta(days=day, hours=hour, minutes=minute)


RENAME = Fault("deal_stage renamed to opportunity_stage", "schema", ("schema.field_renamed",),
               {"field": "deal_stage"}, _t(1, 10, 37), {"rename_at": _t(1, 10, 37)}, renames_deal_stage=True)
REGION_NULL = Fault("lead-router reads region as null", "null", ("quality.null_spike",),
                    {"field": "region"}, _t(1, 10, 52), {"router_region_null_at": _t(1, 10, 52)})
EMAIL_LOOP = Fault("email.send loop (10x)", "volume", ("volume.action_spike",),
                   {"agent_id": "followup-agent", "action": "email.send"}, _t(1, 14, 5), rewrite=email_loop)
AGENT_STOPS = Fault("followup-agent stops mid-day", "volume", ("volume.action_drop",),
                    {"agent_id": "followup-agent"}, _t(1, 13, 10), rewrite=agent_stops("followup-agent"))
TIMEOUTS = Fault("crm.update_field timeouts (40% for 2 h)", "errors", ("errors.error_burst",),
                 {"agent_id": "enrichment-agent", "action": "crm.update_field"}, _t(1, 11, 20),
                 rewrite=update_timeouts)
DELETE = Fault("record.delete by an agent", "policy", ("policy.forbidden_action",),
               {"agent_id": "enrichment-agent", "action": "record.delete"}, _t(1, 10, 15), rewrite=record_delete)
UNAPPROVED = Fault("email.send without required approval", "policy", ("policy.unapproved_action",),
                   {"agent_id": "followup-agent", "action": "email.send"}, _t(1, 11, 5), rewrite=unapproved_emails)
BULK = Fault("bulk reassignment over the limit", "policy", ("policy.bulk_limit",),
             {"agent_id": "lead-router"}, _t(1, 15, 40), rewrite=bulk_reassign)
NOT_ALLOWED = Fault("action outside allowed_actions", "policy", ("policy.not_allowed",),
                    {"agent_id": "lead-router", "action": "opportunity.update_stage"}, _t(1, 16, 20),
                    rewrite=outside_allowed)
INVALID_TRANSITION = Fault("invalid status transition new -> routed", "workflow", ("workflow.invalid_transition",),
                           {"agent_id": "lead-router"}, _t(1, 10, 30), rewrite=invalid_transitions)
SLA = Fault("qualification SLA breaches rising", "workflow", ("workflow.sla_breach",), {}, _t(1, 9, 30),
            {"qualifier_backlog_at": _t(1, 9, 30)})
PARTIAL = Fault("email sent, activity never logged", "workflow", ("workflow.partial_failure",),
                {"agent_id": "followup-agent"}, _t(1, 13, 40), rewrite=missing_activity_logs)
ROUTING = Fault("routing worse after a rule change (5% -> 30% reassigned)", "outcome",
                ("outcome.routing_accuracy_drop",), {"agent_id": "lead-router"}, _t(1, 9, 0),
                {"owner_changed_at": _t(1, 9, 0)})
REQUALIFIED = Fault("qualifier overturned by reps", "outcome", ("outcome.requalification_spike",),
                    {"agent_id": "qualifier-agent"}, _t(1, 9, 0), {"requalified_at": _t(1, 9, 0)})
CALIBRATION = Fault("high-confidence qualifications wrong", "outcome", ("outcome.calibration",),
                    {"agent_id": "qualifier-agent"}, _t(1, 9, 0), {"calibration_at": _t(1, 9, 0)})
DRIFT = Fault("qualifier 3.3.0 shifts scores", "drift", ("drift.distribution",),
              {"agent_id": "qualifier-agent"}, _t(1, 9, 0), {"qualifier_bump_at": _t(1, 9, 0)})
DUPLICATE = Fault("lead assigned twice", "quality.duplicate", ("quality.duplicate",),
                  {"agent_id": "lead-router", "action": "lead.assign_owner"}, _t(1, 10, 10),
                  rewrite=duplicate_assignments)
EXPECTATION = Fault("route_to outside the allowed set", "quality.expectation_failed",
                    ("quality.expectation_failed",), {}, _t(1, 10, 25), {"route_typo_at": _t(1, 10, 25)})

# Injected when Tuesday's run was due to begin (its usual 02:00; each run starts 0 to 3 h late): a cron monitor can
# know of a missed run only from then on.
SWEEP_MISSED = Fault("nightly hygiene sweep stops running", "volume.scheduled", ("volume.action_drop",),
                     {"agent_id": "hygiene-agent"}, _t(1, 2, 0), {"sweep_stops_at": _t(1, 2, 0)})
APPROVALS_STALL = Fault("marketing-ops stops answering approval requests", "approval",
                        ("approval.queue_backlog",), {"agent_id": "followup-agent", "action": "email.send"},
                        _t(1, 10, 0), {"approvals_stall_at": _t(1, 10, 0)})
APPROVALS_SLOW = Fault("approvals take 2 to 6 hours more", "approval", ("approval.latency",),
                       {"agent_id": "followup-agent", "action": "email.send"}, _t(1, 9, 0),
                       {"approvals_slow_at": _t(1, 9, 0)})
RUBBER_STAMP = Fault("marketing-ops approves within seconds", "approval", ("approval.rubber_stamp",),
                     {"approver": "marketing-ops"}, _t(1, 10, 0), {"rubber_stamp_at": _t(1, 10, 0)})
LOW_CONFIDENCE = Fault("lead-router routes below its confidence floor", "policy",
                       ("policy.low_confidence_autonomy",), {"agent_id": "lead-router", "action": "lead.route"},
                       _t(1, 10, 45), {"low_confidence_at": _t(1, 10, 45)})
REVERTED = Fault("reps set enrichment-agent's industry back", "outcome", ("outcome.write_reverted",),
                 {"agent_id": "enrichment-agent"}, _t(1, 9, 0), {"wrong_industry_at": _t(1, 9, 0)})
DUPLICATE_PEOPLE = Fault("dedup step broken: people arrive as two leads", "quality.identity_collision",
                         ("quality.identity_collision",), {}, _t(1, 10, 0), {"duplicate_people_at": _t(1, 10, 0)})

# Faults that cascade (a rename changes routing, a loop leaves emails unlogged) run alone; the rest share
# runs with faults on other agents and checks. Outcome and drift runs last two days: their evidence is slow.
SCENARIOS = (
    Scenario("schema", (RENAME,)),
    Scenario("null", (REGION_NULL,)),
    Scenario("volume-spike", (EMAIL_LOOP,)),
    Scenario("volume-drop", (AGENT_STOPS,)),
    Scenario("errors-policy", (TIMEOUTS, DELETE, UNAPPROVED, BULK, NOT_ALLOWED)),
    Scenario("workflow", (INVALID_TRANSITION, SLA, PARTIAL)),
    Scenario("quality", (DUPLICATE, EXPECTATION)),
    Scenario("outcome", (ROUTING, REQUALIFIED), days=2),
    Scenario("calibration", (CALIBRATION,), days=2),
    Scenario("drift", (DRIFT,), days=2),
    Scenario("scheduled", (SWEEP_MISSED,)),
    Scenario("approval-backlog", (APPROVALS_STALL, LOW_CONFIDENCE)),
    Scenario("approval-speed", (APPROVALS_SLOW,)),
    Scenario("rubber-stamp", (RUBBER_STAMP, DUPLICATE_PEOPLE)),
    Scenario("reverted", (REVERTED,), days=2),
)
FAMILIES = tuple(dict.fromkeys(f.family for s in SCENARIOS for f in s.faults))


def apply(frames: Frames, faults: tuple[Fault, ...]) -> Frames:
    for fault in faults:
        if fault.rewrite is not None:
            frames = fault.rewrite(frames, fault.at)
    return frames
