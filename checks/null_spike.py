"""quality.null_spike: the share of null or missing values of an input key jumps against its own baseline.

Per agent x action reading the key, the baseline value share q0 comes from the week before the
recent window (frozen at the incident's start while one is open). Each recent 5-minute bucket adds
the log-likelihood ratio of "values now appear at a tenth of their usual share" against "as usual";
summed over every agent reading the key, a CUSUM over the recent hours fires once the evidence is
strong. A field that nearly always has a value fires within a few null reads; a field that is
usually null anyway needs many more, and a field that is rarely filled is not judged at all.
When it fires, the incident measures the impact: how many reads came back null, how many of those
were on records that should have had a value (a companion key that, in the baseline, always came
with one), and which decisions the agents took on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from pydantic import Field

from agentwatch.checks.activity import Activity
from agentwatch.checks.aggregates import SCOPES, key_counts
from agentwatch.checks.base import Check, CheckOptions, Finding, Step, register
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import BUCKET, EvalData
from agentwatch.checks.rollup_sql import json_path
from agentwatch.checks.schema_diff import fields_by_object
from agentwatch.checks.stats import bernoulli_llr, cusum_end
from agentwatch.core.severity import Severity
from agentwatch.core.sql import sql_string

BUCKET_S = int(BUCKET.total_seconds())
HOURLY_PRIOR_READS = 30  # an hour of day with fewer baseline reads than this leans on the overall share


class NullSpikeOptions(CheckOptions):
    baseline_days: float = Field(7, gt=0, description="Baseline length: a week holds every weekday's mix of leads.")
    recent_hours: float = Field(
        24, gt=0, description="How far back the CUSUM looks for the start of a change: a day, so a key that is "
        "usually null (weak evidence per read) still gathers enough reads, and the start is found."
    )
    value_share_drop: float = Field(
        0.1, gt=0, lt=1, description="The alternative the evidence is weighed for: values appear at this fraction "
        "of their baseline share (0.1 = nine in ten values vanished). Ordinary swings of a few tens of percent "
        "weigh against it."
    )
    threshold: float = Field(
        10, gt=0, description="CUSUM log-likelihood ratio to fire (10 = odds of about 22,000 to 1)."
    )
    always_sent_share: float = Field(
        0.9, gt=0, le=1, description="A key carried by at least this share of an agent x action's baseline events "
        "is always sent: its absence counts as a null. Sparser keys are judged only where present, since their "
        "absence is normal."
    )
    min_missing_values: float = Field(
        10, gt=0, description="Fire only once this many values that the baseline share predicts are missing (for "
        "one agent x action, not summed over agents reading the same records): a field filled 98% of the time "
        "fires after ~10 null reads, a field filled 20% of the time needs ~50, so a quiet night of ordinary nulls "
        "does not page."
    )
    max_value_share: float = Field(
        0.25, gt=0, lt=1, description="Open only when values appear at no more than this fraction of their usual "
        "count since the change began: a field null 90% of the time that reads null 96% for a day is a mix shift, "
        "a rename drops values to none."
    )
    min_null_reads: int = Field(10, ge=1, description="Never fire on fewer null reads than this in the run.")
    min_baseline_reads: int = Field(100, ge=1, description="Judge a key only with this many baseline reads.")
    min_baseline_value_share: float = Field(
        0.05, gt=0, le=1, description="Skip keys that had a value in fewer than 5% of baseline reads: their "
        "nulls are normal."
    )
    impact_every_minutes: float = Field(
        60, gt=0, description="Recount the impact (null reads, decisions taken on them) at most this often; it "
        "reads rows, not aggregates."
    )


@dataclass
class _Series:
    """One agent x action's reads of one key, per bucket, with running sums."""

    agent_id: str
    action: str
    t: np.ndarray  # bucket start, epoch seconds, sorted
    events: np.ndarray
    present: np.ndarray
    nonnull: np.ndarray

    def __post_init__(self) -> None:
        self.cum = np.cumsum(np.stack([self.events, self.present, self.nonnull]), axis=1)
        self.hour = ((self.t // 3600) % 24).astype(int)
        self._hourly_key: tuple[int, bool, float] | None = None
        self._hourly = np.zeros(24)

    def hourly_share(self, start: float, end: float, always_sent: bool, overall: float) -> np.ndarray:
        """The baseline value share per hour of day (UTC), shrunk toward the overall share where an hour has
        few reads: nights and mornings may differ in their mix of records. Cached per 6 hours of baseline end:
        a week's hourly shares barely move in that time, and backtests ask at every step."""
        cache_key = (int(end // 21600), always_sent, overall)
        if self._hourly_key == cache_key:
            return self._hourly
        lo, hi = np.searchsorted(self.t, [start, end], side="left")
        reads = np.bincount(self.hour[lo:hi], weights=(self.events if always_sent else self.present)[lo:hi],
                            minlength=24)
        values = np.bincount(self.hour[lo:hi], weights=self.nonnull[lo:hi], minlength=24)
        self._hourly_key = cache_key
        self._hourly = (values + HOURLY_PRIOR_READS * overall) / (reads + HOURLY_PRIOR_READS)
        return self._hourly

    def sums(self, start: float, end: float) -> tuple[int, int, int]:
        """Events, reads carrying the key, and non-null reads in buckets starting in [start, end)."""
        lo, hi = np.searchsorted(self.t, [start, end], side="left")
        if hi <= lo:
            return 0, 0, 0
        total = self.cum[:, hi - 1] - (self.cum[:, lo - 1] if lo else 0)
        return int(total[0]), int(total[1]), int(total[2])


@register
class NullSpike(Check[NullSpikeOptions]):
    """The share of nulls or missing keys in agents' inputs (or before/after) jumps against its baseline."""

    clears_when = (
        "Resolves when the agents that read the field act again, at least `clear_min_events` actions since it "
        "last fired, and their reads no longer fire it: values came back, or they stopped sending the key. No "
        "actions (an agent paused by the guard, a night) keep it open."
    )

    name = "quality.null_spike"
    family = "quality"
    Options = NullSpikeOptions
    history = timedelta(days=8)

    def __init__(self, options: NullSpikeOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        # Kept across runs when the scheduler reuses this object: the impact is recounted hourly in `serve` too.
        self.impacts: dict[str, tuple[datetime, dict[str, Any]]] = {}

    def prepare(self, data: EvalData) -> None:
        self.data = data
        counts = key_counts(data).with_columns(pl.col("bucket").dt.epoch("s").alias("t"))
        self.series: dict[tuple[str, str], list[_Series]] = {}
        for (agent, action, scope, key), group in counts.group_by("agent_id", "action", "scope", "key"):
            group = group.sort("t")
            self.series.setdefault((scope, key), []).append(_Series(
                agent, action, group["t"].to_numpy(), group["events"].to_numpy(), group["present"].to_numpy(),
                group["nonnull"].to_numpy()))
        self.objects = fields_by_object(data)

    def evaluate(self, step: Step) -> list[Finding]:
        options = self.options
        at = step.at.timestamp()
        end = at - at % BUCKET_S  # only whole buckets: [end - 5 min, end) is the last one
        findings = []
        recent_start = end - options.recent_hours * 3600
        slots = np.arange(recent_start, end, BUCKET_S)
        for (scope, key), series in self.series.items():
            subject = {"field": key if scope == "inputs" else f"{scope}.{key}"}
            frozen = step.started(self.name, subject)
            baseline_end = min(frozen.timestamp(), recent_start) if frozen else recent_start
            baseline_start = baseline_end - options.baseline_days * 86400
            llr = np.zeros(slots.size)
            contributions = []
            for s in series:
                base_events, base_present, base_values = s.sums(baseline_start, baseline_end)
                # A key the agent always sends: a missing key counts as a null. A key sent with some events
                # only (e.g. the one field an update touches): judge the events that carry it.
                always_sent = base_present >= options.always_sent_share * base_events
                base_reads = base_events if always_sent else base_present
                if base_reads < options.min_baseline_reads:
                    continue
                q0 = base_values / base_reads
                if q0 < options.min_baseline_value_share:
                    continue
                lo, hi = np.searchsorted(s.t, [recent_start, end], side="left")
                if hi <= lo:
                    continue
                index = ((s.t[lo:hi] - recent_start) // BUCKET_S).astype(int)
                trials = s.events[lo:hi] if always_sent else s.present[lo:hi]
                usual = s.hourly_share(baseline_start, baseline_end, always_sent, q0)[s.hour[lo:hi]]
                own = np.zeros(slots.size)
                np.add.at(own, index, bernoulli_llr(s.nonnull[lo:hi], trials, usual, usual * options.value_share_drop))
                if cusum_end(own)[0] <= 0:
                    continue  # this agent still reads values as usual: its reads are no evidence either way
                llr += own
                contributions.append((s, q0, index, trials, s.nonnull[lo:hi], usual))
            # Pooled over the agents that lost values (two agents reading the renamed field count together), and
            # not diluted by an agent that still reads values (one agent's own bug is still found).
            statistic, begin = cusum_end(llr)
            if statistic <= 0 or (statistic < options.threshold and not frozen):
                continue
            # Values that should have appeared since the start and did not, for the agent x action that lost
            # the most (not summed: one record read by two agents is one missing value, not two).
            missing, run_reads, run_values = 0.0, 0, 0
            for _, _, index, trials, nonnull, usual in contributions:
                in_run = index >= begin
                run_reads += int(trials[in_run].sum())
                run_values += int(nonnull[in_run].sum())
                missing = max(missing, float((trials[in_run] * usual[in_run]).sum() - nonnull[in_run].sum()))
            readers = [(c[0], c[1]) for c in contributions]
            if frozen:
                # Open already: it stays open while values stay scarce, however slow the traffic.
                usual = sum(c[1] for c in contributions) / len(contributions)
                if not run_reads or run_values >= 0.5 * usual * run_reads:
                    continue
            elif run_reads - run_values < options.min_null_reads or missing < options.min_missing_values \
                    or run_values > options.max_value_share * sum(
                        (c[3][c[2] >= begin] * c[5][c[2] >= begin]).sum() for c in contributions):
                continue
            started = datetime.fromtimestamp(float(slots[begin]), tz=step.at.tzinfo)
            if frozen:
                started = min(started, frozen)
            findings.append(self._finding(step, scope, key, subject, started, statistic, readers,
                                          run_reads, run_values))
        return findings

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """The actions of the agents that read the field: reading values again, or acting without the key at
        all, ends the null reads; no actions at all (a paused agent) shows nothing."""
        field = subject["field"]
        scope, _, key = field.partition(".") if field.split(".")[0] in SCOPES[1:] else ("inputs", "", field)
        series = self.series.get((scope, key), [])
        at = step.at.timestamp()
        end = at - at % BUCKET_S
        count = sum(s.sums(since.timestamp(), end)[0] for s in series)
        agents = ", ".join(sorted({s.agent_id for s in series})) or "its readers"
        return count, f"actions by {agents} (the readers of {field})"

    def _finding(self, step: Step, scope: str, key: str, subject: dict[str, str], started: datetime,
                 statistic: float, readers: list[tuple[_Series, float]], run_reads: int, run_values: int) -> Finding:
        options = self.options
        start_s = started.timestamp()
        # `readers` are the agent x actions whose own reads lost values (the others were left out of the evidence).
        per_agent: list[dict[str, Any]] = []
        for s, q0 in readers:
            events, present, values = s.sums(start_s, step.at.timestamp())
            reads = events if present >= options.always_sent_share * events else present
            per_agent.append({"agent_id": s.agent_id, "action": s.action, "reads": reads,
                              "null_share": round(1 - values / reads, 4) if reads else None,
                              "baseline_null_share": round(1 - q0, 4)})
        agents = sorted({row["agent_id"] for row in per_agent})
        current_null = 1 - run_values / run_reads
        baseline_null = 1 - sum(q0 for _, q0 in readers) / len(readers)
        crm = self._crm_fields(key)
        impact = self._impact(step, subject, scope, key, started, per_agent)
        usual_value_share = 1 - baseline_null
        # Nine in ten of the usual values gone: agents are effectively reading nothing.
        severity = Severity.critical if run_values <= 0.1 * usual_value_share * run_reads else Severity.warning
        where = "" if scope == "inputs" else f" (in {scope})"
        null_reads = impact.get("null_reads", run_reads - run_values)
        summary = (f"{', '.join(agents)} read {key}{where} as null {null_reads:,} times since "
                   f"{started:%Y-%m-%d %H:%M} UTC ({current_null:.0%} of recent reads, usually {baseline_null:.0%})")
        if impact.get("should_have_value"):
            summary += (f"; {impact['should_have_value']:,} were on records with {impact['companion']} set, "
                        "so had a value")
        if impact.get("decisions"):
            top = ", ".join(f"{d['decision']} {d['count']:,}" for d in impact["decisions"][:4])
            summary += f"; decisions on those: {top}"
        return Finding(
            check=self.name, subject=subject, severity=severity, summary=summary, started_at=started,
            affected=impact.get("should_have_value") or null_reads,
            evidence={"agents": agents, "readers": per_agent, "scope": scope, "key": key, "crm_fields": crm["fields"],
                      "objects": crm["objects"], "baseline_null_share": baseline_null, "current_null_share":
                      round(current_null, 4), "reads_in_run": run_reads, "cusum": round(statistic, 2),
                      "threshold": options.threshold, **{k: v for k, v in impact.items() if k != "samples"}},
            sample_event_ids=impact.get("samples", []),
        )

    def _crm_fields(self, key: str) -> dict[str, list[str]]:
        """The CRM field(s) a key names, and the objects that have (or had) such a field."""
        mapped = self.config.fields.get(key)
        if mapped:
            object_name, field_name = mapped.split(".")
            return {"fields": [field_name], "objects": [object_name]}
        objects = sorted(o for o, names in self.objects.items() if key.lower() in names)
        return {"fields": [key], "objects": objects}

    def _impact(self, step: Step, subject: dict[str, str], scope: str, key: str, started: datetime,
                per_agent: list[dict[str, Any]]) -> dict[str, Any]:
        """Rows read: null reads since the start, those that should have had a value, decisions taken."""
        options = self.options
        cache_key = f"{subject}"
        cached = self.impacts.get(cache_key)
        fresh = cached and step.at - cached[0] < timedelta(minutes=options.impact_every_minutes) \
            and step.at != self.data.last
        if cached and fresh:
            return cached[1]
        impact = _measure_impact(self.data, scope, key, started, step.at, per_agent,
                                 baseline_days=options.baseline_days)
        self.impacts[cache_key] = (step.at, impact)
        return impact


def _measure_impact(data: EvalData, scope: str, key: str, started: datetime, at: datetime,
                    per_agent: list[dict[str, Any]], baseline_days: float) -> dict[str, Any]:
    if not per_agent:
        return {}
    pairs = sorted({(r["agent_id"], r["action"]) for r in per_agent})
    who = " OR ".join(f"(agent_id = {sql_string(a)} AND action = {sql_string(b)})" for a, b in pairs)
    path = json_path(key)
    is_null = f"coalesce(json_type({scope}, {path}), 'NULL') = 'NULL'"
    since = f"ts >= TIMESTAMPTZ '{started.isoformat()}' AND ts <= TIMESTAMPTZ '{at.isoformat()}'"
    baseline = (f"ts >= TIMESTAMPTZ '{(started - timedelta(days=baseline_days)).isoformat()}' "
                f"AND ts < TIMESTAMPTZ '{started.isoformat()}'")
    (null_reads,) = data.con.execute(
        f"SELECT count(*) FROM actions WHERE ({who}) AND {since} AND {is_null}").fetchall()[0]
    impact: dict[str, Any] = {"null_reads": int(null_reads)}
    companion = _companion_key(data, scope, key, who, baseline)
    rows_filter = is_null
    if companion:
        companion_path = json_path(companion)
        rows_filter += f" AND coalesce(json_type({scope}, {companion_path}), 'NULL') <> 'NULL'"
    # The samples are bad input: null reads at or after the start that had a value to read (the companion set).
    # The first null reads after the start are often ordinary nulls: the CUSUM run begins before the values vanish.
    count, samples = data.con.execute(
        f"SELECT count(*), list(event_id ORDER BY ts, event_id)[1:10] FROM actions "
        f"WHERE ({who}) AND {since} AND {rows_filter}").fetchall()[0]
    impact["samples"] = list(samples or [])
    if companion:
        impact.update(companion=companion, should_have_value=int(count))
    decisions = data.con.execute(
        f"SELECT e.key || '=' || (e.value ->> '$'), count(*) AS n FROM actions, json_each(decision) AS e "
        f"WHERE ({who}) AND {since} AND {rows_filter} AND e.type = 'VARCHAR' GROUP BY ALL ORDER BY n DESC, 1 LIMIT 8"
    ).fetchall()
    impact["decisions"] = [{"decision": d, "count": int(n)} for d, n in decisions]
    return impact


def _companion_key(data: EvalData, scope: str, key: str, who: str, baseline: str) -> str | None:
    """Another key whose value, in the baseline, always came with a value of `key` (e.g. an opportunity id
    with its stage): where the companion has a value and `key` reads null, a value went missing."""
    keys = data.con.execute(
        f"SELECT DISTINCT unnest(json_keys({scope})) FROM (SELECT {scope} FROM actions WHERE ({who}) AND {baseline} "
        f"AND {scope} IS NOT NULL USING SAMPLE 2000 ROWS)"
    ).fetchall()
    candidates = [k for (k,) in keys if k != key]
    if not candidates:
        return None
    target = json_path(key)
    has_target = f"coalesce(json_type({scope}, {target}), 'NULL') <> 'NULL'"
    parts = []
    for i, candidate in enumerate(candidates):
        path = json_path(candidate)
        has = f"coalesce(json_type({scope}, {path}), 'NULL') <> 'NULL'"
        parts.append(f"count(*) FILTER (WHERE {has}) AS c{i}, "
                     f"count(*) FILTER (WHERE {has} AND {has_target}) AS b{i}")
    row = data.con.execute(
        f"SELECT count(*), {', '.join(parts)} FROM actions WHERE ({who}) AND {baseline}").fetchall()[0]
    total = row[0]
    best, best_support = None, 0
    for i, candidate in enumerate(candidates):
        with_companion, with_both = row[1 + 2 * i], row[2 + 2 * i]
        # Always together (>= 98%), and present in a real share of rows but not all of them (else it says nothing).
        if with_companion >= 20 and with_both >= 0.98 * with_companion and with_companion < 0.95 * total \
                and with_companion > best_support:
            best, best_support = candidate, with_companion
    return best
