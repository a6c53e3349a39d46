"""outcome.routing_accuracy_drop, outcome.requalification_spike, outcome.calibration.

Reps correct agents after the fact: they reassign a lead the router routed (``owner_changed``), overturn
the qualifier (``requalified``), recipients mark an email as spam (``marked_spam``). An outcome corrects
the action its ``corrects_event_id`` names, else the latest matching action on the same record before it.

Corrections arrive hours or days after the action, so a cohort of recent actions always looks better than
an old one. Every comparison is therefore made at the same age: an action routed ``a`` hours before the
evaluation time is expected to have been corrected by now with the share of baseline actions corrected
within ``a`` hours (the baseline's lag curve), and only corrections with event time up to the evaluation
time count. A one-sided CUSUM over the recent actions, in routing order, tests that expectation against a
higher rate, so a small agent fires once enough corrections came in and a large one fires fast.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, ClassVar, TypeVar

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from agentwatch.checks.base import SAMPLE_IDS, Check, CheckOptions, Finding, Step, register
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import MICROSECOND, EvalData
from agentwatch.checks.options import options_for
from agentwatch.checks.rollup_sql import LAG_BINS, correction_histogram, correction_lags_sql, mapped_actions
from agentwatch.checks.stats import bernoulli_llr, cusum_end
from agentwatch.core.severity import Severity
from agentwatch.store.rollups import Rollup, floor_to

HOUR = 3600.0
CONFIDENCE_BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


OUTCOME_CHECKS = ("outcome.routing_accuracy_drop", "outcome.requalification_spike", "outcome.calibration")


def _all_mappings(config: ChecksConfig) -> tuple[dict[str, list[str]], float, float]:
    """The union of the outcome checks' kind -> actions mappings, their longest recent window and their longest
    max_lag_hours, in hours."""

    union: dict[str, set[str]] = {}
    recent = max_lag = 0.0
    for name in OUTCOME_CHECKS:
        options = options_for(config, name)
        if not isinstance(options, CorrectionOptions):
            raise TypeError(f"{name} is not an outcome check")
        for kind, actions in options.kinds_to_actions().items():
            union.setdefault(kind, set()).update(actions)
        recent = max(recent, options.recent_hours)
        max_lag = max(max_lag, options.max_lag_hours)
    return {kind: sorted(actions) for kind, actions in sorted(union.items())}, recent, max_lag


def corrected_actions(data: EvalData) -> tuple[pl.DataFrame, list[str]]:
    """Every ok action any outcome check tests in the evaluated windows (after the first step's recent window
    begins): agent_id, action, t (epoch s), confidence, event_id, and per outcome kind ``lag_<i>``: seconds to
    the first outcome of that kind correcting it (null if none). The older actions count only in the baselines,
    which come as hourly histograms (:func:`lag_histogram`). Built once for the three checks."""

    def build() -> tuple[pl.DataFrame, list[str]]:
        mapping, recent_hours, max_lag_hours = _all_mappings(data.config)
        kinds = list(mapping)
        pairs = [(kind, action) for kind, actions in mapping.items() for action in actions]
        if not pairs:  # every outcome check configured to watch nothing
            empty = {"agent_id": pl.String, "action": pl.String, "t": pl.Float64, "confidence": pl.Float64,
                     "event_id": pl.String}
            return pl.DataFrame(schema=empty), []
        # Exact for these actions: an outcome corrects the latest action on its record before it, never an older
        # one when a newer one is in the range.
        since = max(data.load_from, data.look_back_from - timedelta(hours=recent_hours))
        # The actions as a frame (serve holds the settled ones between runs); DuckDB finds the few an outcome corrects.
        acts = data.rollup(mapped_actions(sorted({a for _, a in pairs})), since=since)
        table = f"outcome_actions_{uuid.uuid4().hex[:8]}"
        data.con.register(table, acts.to_arrow())
        try:
            outcomes = f"SELECT * FROM {data.view('outcomes', since)} WHERE {data.time_filter(since=since)}"
            lags = data.frame(correction_lags_sql(f"SELECT * FROM {table}", outcomes, mapping,
                                                  timedelta(hours=max_lag_hours), corrected_only=True))
        finally:
            data.con.unregister(table)
        lag_columns = [f"lag_{i}" for i in range(len(kinds))]
        frame = acts.select(
            "agent_id", "action", (pl.col("ts").dt.epoch("us") / 1_000_000).alias("t"),
            pl.col("confidence").cast(pl.Float64), "event_id",
        ).join(lags.select("event_id", *(pl.col(c).cast(pl.Float64) for c in lag_columns)), on="event_id", how="left")
        return frame.sort("t", "event_id"), kinds  # ties in a fixed order: every run reads them alike

    return data.shared("outcome.corrected_actions", build)


def lag_histogram(data: EvalData, options: CorrectionOptions, high_confidence: float | None) -> pl.DataFrame:
    """agent_id, action, hour (epoch s), high, bin, n: a check's baselines as hourly lag histograms
    (:func:`correction_histogram`, kept in the home; see :func:`baseline_rows`)."""
    rollup = correction_histogram(options.kinds_to_actions(), timedelta(hours=options.max_lag_hours), high_confidence,
                                  attribution=_all_mappings(data.config)[0])
    return baseline_rows(data, options, rollup)


def baseline_rows(data: EvalData, options: CorrectionOptions, histogram: Rollup) -> pl.DataFrame:
    """A lag-histogram rollup's rows (hour as epoch s) over the whole hours a check's baselines can reach: from the
    one holding the first step's baseline start to the last before the last step's recent window (whose corrections
    are all in by then). Whole hours, so a run reads only stored rows once they are settled."""
    since = floor_to(data.look_back_from - timedelta(days=options.baseline_days, hours=options.recent_hours),
                     timedelta(hours=1))  # a rollup answers whole cells from the one holding `since`
    until = floor_to(data.last - timedelta(hours=options.recent_hours), timedelta(hours=1)) - MICROSECOND
    return data.rollup(histogram, since=since, until=until).with_columns(pl.col("hour").dt.epoch("s").alias("hour"))


def subject_lags(data: EvalData, mapping: dict[str, list[str]], max_lag_hours: float) -> pl.DataFrame:
    """corrected_actions narrowed to one check's mapping: lag = seconds to the first correction of a kind that
    proves that action wrong, within max_lag_hours, else +inf; sorted by t."""
    frame, kinds = corrected_actions(data)
    actions = sorted({a for acts in mapping.values() for a in acts})
    terms = [pl.when(pl.col("action").is_in(mapping[k])).then(pl.col(f"lag_{i}"))
             for i, k in enumerate(kinds) if k in mapping]
    lag = pl.min_horizontal(terms) if terms else pl.lit(None, dtype=pl.Float64)
    max_lag = max_lag_hours * HOUR
    return frame.filter(pl.col("action").is_in(actions)).select(
        "agent_id", "action", "t", "confidence", "event_id",
        pl.when(lag.is_not_null() & (lag <= max_lag)).then(lag).otherwise(float("inf")).alias("lag"),
    )


class Cohorts:
    """One subject's recent actions (time, correction lag, confidence) and its hourly cohort histograms of lags,
    so the baseline's lag curve over any span of whole hours costs one subtraction."""

    def __init__(self, histogram: pl.DataFrame, recent: pl.DataFrame, max_lag: float) -> None:
        self.t = recent["t"].to_numpy()
        self.lag = recent["lag"].to_numpy()
        self.confidence = recent["confidence"].fill_null(float("nan")).to_numpy()
        self.event_ids = recent["event_id"].to_numpy()
        self.max_lag = max_lag
        self.width = max_lag / LAG_BINS
        hours = histogram["hour"].to_numpy() // int(HOUR)
        self.hour0 = int(hours.min()) if len(hours) else 0
        cohort = hours - self.hour0
        n_cohorts = int(cohort.max()) + 1 if len(cohort) else 0
        counts = histogram["n"].to_numpy().astype(float)
        bins = histogram["bin"].fill_null(-1).to_numpy()
        corrected = bins >= 0
        hist = np.zeros((n_cohorts + 1, LAG_BINS + 1))
        np.add.at(hist, (cohort[corrected] + 1, bins[corrected]), counts[corrected])
        hist[:, LAG_BINS] = np.bincount(cohort + 1, weights=counts, minlength=n_cohorts + 1)  # actions per cohort
        self.cum = np.cumsum(hist, axis=0)

    def baseline(self, start: float, end: float) -> tuple[float, np.ndarray]:
        """(actions, share corrected within each lag-bin edge) of actions in the whole hours [start, end)."""
        hi = int(np.clip(end // HOUR - self.hour0, 0, len(self.cum) - 1))
        lo = int(np.clip(start // HOUR - self.hour0, 0, hi))
        counts = self.cum[hi] - self.cum[lo]
        n = counts[LAG_BINS]
        curve = np.concatenate(([0.0], np.cumsum(counts[:LAG_BINS]))) / max(n, 1.0)
        return float(n), curve

    def corrected_by_age(self, start_hours: np.ndarray, end_hours: np.ndarray,
                         age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the actions of the whole hours [start, end) (hours since the epoch), and how many of them were
        corrected within `age` seconds (interpolated within a lag bin)."""
        hi = np.clip(end_hours - self.hour0, 0, len(self.cum) - 1)
        lo = np.clip(start_hours - self.hour0, 0, hi)
        counts = self.cum[hi] - self.cum[lo]
        edges = np.concatenate((np.zeros((len(counts), 1)), np.cumsum(counts[:, :LAG_BINS], axis=1)), axis=1)
        position = np.minimum(age, self.max_lag) / self.width
        bin_ = np.minimum(position.astype(int), LAG_BINS - 1)
        rows = np.arange(len(counts))
        corrected = edges[rows, bin_] + (edges[rows, bin_ + 1] - edges[rows, bin_]) * (position - bin_)
        return counts[:, LAG_BINS], corrected

    def at_age(self, curve: np.ndarray, age: np.ndarray) -> np.ndarray:
        """The baseline's share corrected within `age` seconds, interpolated on the lag curve."""
        return np.interp(np.minimum(age, self.max_lag), np.arange(LAG_BINS + 1) * self.width, curve)

    def window(self, start: float, end: float) -> slice:
        """The actions with start < t <= end."""
        return slice(int(np.searchsorted(self.t, start, "right")), int(np.searchsorted(self.t, end, "right")))


@dataclass
class CorrectionCusum:
    """One CUSUM test of the recent actions' corrections against what the baseline predicts."""

    hits: np.ndarray  # 1 where corrected by the evaluation time
    expected: np.ndarray  # baseline probability of that at the action's age
    alternative: np.ndarray
    begin: int = -1  # index where the CUSUM run began
    statistic: float = 0.0

    def run(self) -> None:
        trials = np.ones_like(self.hits)
        self.statistic, self.begin = cusum_end(bernoulli_llr(self.hits, trials, self.expected, self.alternative))
        if self.begin < 0:
            return
        # Re-estimate where the change began under the rate actually seen since then: a larger change
        # penalises the quiet actions before it more, so the start is not dragged back by chance hits.
        seen = self.hits[self.begin:].sum() / max(self.expected[self.begin:].sum(), 1e-9)
        alternative = np.maximum(self.alternative, np.minimum(self.expected * seen, 0.999))
        _, begin = cusum_end(bernoulli_llr(self.hits, trials, self.expected, alternative))
        self.begin = max(begin, 0)


class CorrectionOptions(CheckOptions):
    every_minutes: float | None = Field(
        15, gt=0, description="Evaluate once per this many minutes (slots of the clock), the last findings "
        "standing in between: corrections trickle in over hours (the delay target is a day), so `serve` reads a day "
        "of actions four times an hour, not sixty."
    )
    resolve_after_minutes: float = Field(
        360, gt=0, description="Resolve once the correction rate has been normal this long; corrections trickle "
        "in over hours, so a shorter time would resolve and reopen the same problem."
    )
    recent_hours: float = Field(
        24, gt=0, description="Test the actions of this many recent hours (with the corrections known so far): a "
        "day is long enough to collect corrections from a lag of hours, short enough to answer within a day."
    )
    baseline_days: float = Field(
        7, gt=0, description="The baseline is the actions of this many days before the recent window: a week "
        "averages over weekdays and the weekend."
    )
    max_lag_hours: float = Field(
        24, gt=0, le=24 * 7, description="Count a correction only if it came within this many hours of the action; "
        "later ones (a rep's cleanup of old leads) say little about how the agent works now. Must not exceed "
        "recent_hours so the baseline's lag curve is complete."
    )
    ratio: float = Field(
        2.0, gt=1, description="The CUSUM tests the baseline rate against this multiple of it: twice the usual "
        "correction rate is a change a RevOps team acts on."
    )
    threshold: float = Field(
        16.0, gt=0, description="Fire when the CUSUM's log-likelihood ratio reaches this (about 9 million to 1 "
        "odds). Reps work office hours, so daytime routes are corrected faster than the all-week lag curve says; "
        "at 8 the detection benchmark paged about once a clean week, at 16 not once in six clean weeks, and the "
        "injected regressions were still caught within 9 h."
    )
    min_corrections: int = Field(
        8, ge=1, description="Fire only with at least this many corrections since the change began, so a few "
        "reassignments on a quiet agent are not an incident."
    )
    min_baseline_actions: int = Field(
        100, ge=1, description="Need this many baseline actions to know the usual correction rate and its lag."
    )
    min_baseline_share: float = Field(
        0.02, ge=0, le=1, description="Take the usual correction rate as at least this share: an agent reps almost "
        "never correct would otherwise fire on a handful of corrections."
    )
    critical_ratio: float = Field(
        4.0, gt=1, description="Critical when corrections are at least this multiple of the expected count."
    )

    def kinds_to_actions(self) -> dict[str, list[str]]:
        """Outcome kind -> the actions it corrects."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _lag_fits_recent_window(self) -> CorrectionOptions:
        if self.max_lag_hours > self.recent_hours:
            raise ValueError("max_lag_hours must not exceed recent_hours (the baseline must have aged that long)")
        return self


CorrectionOptionsT = TypeVar("CorrectionOptionsT", bound=CorrectionOptions)


def _routing_actions() -> list[str]:
    return ["lead.route", "lead.assign_owner"]


class RoutingOptions(CorrectionOptions):
    actions: list[str] = Field(
        default_factory=_routing_actions, description="The routing actions whose owner reps may change: "
        "lead.route and lead.assign_owner are the ones agents send when they route a lead."
    )
    outcome_kinds: list[str] = Field(
        default_factory=lambda: ["owner_changed"], description="Outcomes that mean a routing was wrong: a rep "
        "changing the owner of a routed lead."
    )

    def kinds_to_actions(self) -> dict[str, list[str]]:
        return {kind: list(self.actions) for kind in self.outcome_kinds}


class RequalificationOptions(CorrectionOptions):
    actions: list[str] = Field(
        default_factory=lambda: ["lead.qualify", "lead.disqualify"], description="The qualifier's actions reps may "
        "overturn: lead.qualify and lead.disqualify are the ones agents send."
    )
    outcome_kinds: list[str] = Field(
        default_factory=lambda: ["requalified"], description="Outcomes that mean a qualification was wrong: a rep "
        "requalifying the lead."
    )

    def kinds_to_actions(self) -> dict[str, list[str]]:
        return {kind: list(self.actions) for kind in self.outcome_kinds}


class CorrectionRateCheck(Check[CorrectionOptionsT]):
    """The shared logic of a correction rate that jumps against its own baseline at the same age."""

    clears_when = (
        "Resolves when the agent's newer decisions of this kind, at least `clear_min_events` since it last "
        "fired, are corrected at the usual rate (corrections take hours, so this lags). No new decisions keep "
        "it open."
    )

    family: ClassVar[str] = "outcome"
    history: timedelta = timedelta(days=8)
    verb: ClassVar[str]  # what reps did, for the summary
    noun: ClassVar[str]  # what the actions were

    def __init__(self, options: CorrectionOptionsT, config: ChecksConfig) -> None:
        super().__init__(options, config)
        # Only as much history as the baseline needs (instance attribute: the engine reads check.history).
        self.history = timedelta(days=options.baseline_days, hours=options.recent_hours)
        self.subjects: dict[tuple[str, str], Cohorts] = {}

    def kinds_to_actions(self) -> dict[str, list[str]]:
        return self.options.kinds_to_actions()

    def prepare(self, data: EvalData) -> None:
        self.subjects = {}  # afresh: the object may be reused by the scheduler for the next run
        if not any(self.kinds_to_actions().values()):
            return
        self.subjects = cohorts_by_subject(lag_histogram(data, self.options, None),
                                           subject_lags(data, self.kinds_to_actions(), self.options.max_lag_hours),
                                           self.options.max_lag_hours)

    def evaluate(self, step: Step) -> list[Finding]:
        findings = []
        for (agent, action), cohorts in self.subjects.items():
            finding = self._evaluate(step, agent, action, cohorts)
            if finding:
                findings.append(finding)
        return findings

    def _evaluate(self, step: Step, agent: str, action: str, cohorts: Cohorts) -> Finding | None:
        opts = self.options
        at = step.at.timestamp()
        recent = opts.recent_hours * HOUR
        subject = {"agent_id": agent, "action": action}
        started = step.started(self.name, subject)
        base_end = min(at, started.timestamp() if started else at) - recent  # frozen while an incident is open
        n_base, curve = cohorts.baseline(base_end - opts.baseline_days * 24 * HOUR, base_end)
        window = cohorts.window(at - recent, at)
        t = cohorts.t[window]
        if n_base < opts.min_baseline_actions or len(t) == 0:
            return None
        age = at - t
        lag = cohorts.lag[window]
        hits = (lag <= np.minimum(age, cohorts.max_lag)).astype(float)
        if hits.sum() < opts.min_corrections:
            return None
        usual = max(float(curve[-1]), opts.min_baseline_share)
        baseline = (base_end - opts.baseline_days * 24 * HOUR, base_end)
        expected = self.expected_at_age(cohorts, t, age, curve, usual, baseline)
        test = CorrectionCusum(hits, expected, np.minimum(expected * opts.ratio, 0.999))
        test.run()
        if test.statistic < opts.threshold:
            return None
        seg = slice(test.begin, None)
        corrections, predicted = int(hits[seg].sum()), float(expected[seg].sum())
        if corrections < opts.min_corrections:
            return None
        ratio = corrections / max(predicted, 1e-9)
        corrected_ids = cohorts.event_ids[window][seg][hits[seg] > 0]
        begin_at = datetime.fromtimestamp(float(t[test.begin]), tz=UTC)
        severity = Severity.critical if ratio >= opts.critical_ratio else Severity.warning
        actions = len(t) - test.begin
        summary = (
            f"Reps {self.verb} {corrections} of {actions} {self.noun} {agent} handled with {action} since "
            f"{begin_at:%a %H:%M} UTC, {ratio:.1f}x the {predicted:.1f} expected at the same age from the usual "
            f"{usual:.1%} within {opts.max_lag_hours:g} h."
        )
        return Finding(
            check=self.name, subject=subject, severity=severity, summary=summary, started_at=begin_at,
            affected=corrections,
            evidence={
                "agents": [agent], "actions": actions, "corrections": corrections,
                "expected_corrections": round(predicted, 2), "ratio": round(ratio, 2),
                "observed_share": round(corrections / actions, 4),
                "baseline_share_within_lag": round(float(curve[-1]), 4), "baseline_actions": int(n_base),
                "baseline_window": [_iso(base_end - opts.baseline_days * 24 * HOUR), _iso(base_end)],
                "max_lag_hours": opts.max_lag_hours, "cusum": round(test.statistic, 2),
                "threshold": opts.threshold, "outcome_kinds": sorted(self.kinds_to_actions()),
                **self.extra_evidence(corrected_ids),
            },
            sample_event_ids=[str(i) for i in corrected_ids if i is not None][:SAMPLE_IDS],
        )

    def expected_at_age(self, cohorts: Cohorts, t: np.ndarray, age: np.ndarray, curve: np.ndarray, usual: float,
                        baseline: tuple[float, float]) -> np.ndarray:
        """The baseline's probability that each recent action (made at `t`, now `age` seconds old) is corrected by
        now: the `usual` share times the share of the baseline's corrections (`curve`, over the `baseline` span)
        that came within that age."""
        shape = cohorts.at_age(curve, age) / curve[-1] if curve[-1] > 0 else np.minimum(age / cohorts.max_lag, 1.0)
        return usual * shape

    def extra_evidence(self, corrected_ids: np.ndarray) -> dict[str, Any]:
        """What a kind of check adds to a finding's evidence about the corrected actions it counted (none here)."""
        return {}


_EMPTY_HISTOGRAM = pl.DataFrame(schema={"hour": pl.Int64, "bin": pl.Int32, "n": pl.Int64})
_EMPTY_RECENT = pl.DataFrame(schema={"t": pl.Float64, "lag": pl.Float64, "confidence": pl.Float64,
                                     "event_id": pl.String})


def cohorts_by_subject(histogram: pl.DataFrame, recent: pl.DataFrame,
                       max_lag_hours: float) -> dict[tuple[str, str], Cohorts]:
    """The Cohorts of each agent x action found in a baseline histogram (:func:`baseline_rows`) or among the recent
    actions with their lags (agent_id, action, t, lag, confidence, event_id; sorted by t)."""
    histograms, recents = _by_subject(histogram), _by_subject(recent)
    return {subject: Cohorts(histograms.get(subject, _EMPTY_HISTOGRAM), recents.get(subject, _EMPTY_RECENT),
                             max_lag_hours * HOUR)
            for subject in sorted(set(histograms) | set(recents))}


def _by_subject(frame: pl.DataFrame) -> dict[tuple[str, str], pl.DataFrame]:
    """The frame's rows per (agent_id, action), in their order."""
    return {(str(agent), str(action)): rows for (agent, action), rows in
            frame.partition_by("agent_id", "action", as_dict=True, maintain_order=True).items()}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


@register
class RoutingAccuracyDrop(CorrectionRateCheck[RoutingOptions]):
    """Reps change the owner of routed leads more often than usual: the router's accuracy dropped.

    For each agent x routing action, the share of routed leads whose owner a rep changed within
    ``max_lag_hours`` is compared, at the same age, against the agent's own baseline (see the module).
    """

    name: ClassVar[str] = "outcome.routing_accuracy_drop"
    Options: ClassVar[type[CheckOptions]] = RoutingOptions
    verb = "reassigned"
    noun = "leads"


@register
class RequalificationSpike(CorrectionRateCheck[RequalificationOptions]):
    """Reps overturn the qualifier's decisions more often than usual.

    For each agent x qualifying action, the share of decisions a rep requalified within ``max_lag_hours``
    is compared, at the same age, against the agent's own baseline (see the module).
    """

    name: ClassVar[str] = "outcome.requalification_spike"
    Options: ClassVar[type[CheckOptions]] = RequalificationOptions
    verb = "requalified"
    noun = "leads"


def _proven_wrong_by() -> dict[str, list[str]]:
    return {
        "owner_changed": _routing_actions(),
        "requalified": ["lead.qualify", "lead.disqualify"],
        "marked_spam": ["email.send"],
    }


class CalibrationOptions(CorrectionOptions):
    proven_wrong_by: dict[str, list[str]] = Field(
        default_factory=_proven_wrong_by, description="Outcome kind -> the decisions it proves wrong: an owner "
        "change proves a routing wrong, a requalification a qualification, a spam report an email."
    )
    high_confidence: float = Field(
        0.9, ge=0, le=1, description="Decisions at or above this confidence are tested: a 0.9 claim is one reps "
        "and automations trust without looking."
    )
    margin: float = Field(
        0.1, gt=0, le=1, description="Fire when the wrong share exceeds what the confidence claims (1 - confidence) "
        "and the baseline by this much: ten points is false precision, not noise."
    )

    def kinds_to_actions(self) -> dict[str, list[str]]:
        return {kind: list(actions) for kind, actions in self.proven_wrong_by.items()}


@register
class Calibration(CorrectionRateCheck[CalibrationOptions]):
    """High-confidence decisions that outcomes prove wrong far more often than their confidence claims.

    Among an agent x action's decisions with confidence >= ``high_confidence``, the share that outcomes
    prove wrong (owner changed, requalified, marked as spam) is tested, at the same age, against the larger
    of the claimed error (1 - confidence) and the baseline's wrong share, versus that plus ``margin``. The
    evidence holds the accuracy per confidence bin.
    """

    name: ClassVar[str] = "outcome.calibration"
    Options: ClassVar[type[CheckOptions]] = CalibrationOptions
    verb = "proved wrong"
    noun = "high-confidence decisions"

    def __init__(self, options: CalibrationOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        self.everything: dict[tuple[str, str], Cohorts] = {}

    def prepare(self, data: EvalData) -> None:
        self.subjects, self.everything = {}, {}  # afresh: the object may be reused by the scheduler
        if not any(self.kinds_to_actions().values()):
            return
        threshold = self.options.high_confidence
        histogram = lag_histogram(data, self.options, threshold).filter(pl.col("high").is_not_null())
        recent = subject_lags(data, self.kinds_to_actions(), self.options.max_lag_hours)
        recent = recent.filter(pl.col("confidence").is_not_null())
        every, every_recent = _by_subject(histogram), _by_subject(recent)
        high, high_recent = _by_subject(histogram.filter("high")), _by_subject(
            recent.filter(pl.col("confidence") >= threshold))
        max_lag = self.options.max_lag_hours * HOUR
        for subject in sorted(set(high) | set(high_recent)):  # decisions made with high confidence in the range
            self.subjects[subject] = Cohorts(high.get(subject, _EMPTY_HISTOGRAM),
                                             high_recent.get(subject, _EMPTY_RECENT), max_lag)
            self.everything[subject] = Cohorts(every.get(subject, _EMPTY_HISTOGRAM),
                                               every_recent.get(subject, _EMPTY_RECENT), max_lag)

    def _evaluate(self, step: Step, agent: str, action: str, cohorts: Cohorts) -> Finding | None:
        opts = self.options
        at = step.at.timestamp()
        recent = opts.recent_hours * HOUR
        subject = {"agent_id": agent, "action": action}
        started = step.started(self.name, subject)
        base_end = min(at, started.timestamp() if started else at) - recent
        n_base, curve = cohorts.baseline(base_end - opts.baseline_days * 24 * HOUR, base_end)
        window = cohorts.window(at - recent, at)
        t = cohorts.t[window]
        if n_base < opts.min_baseline_actions or len(t) == 0:
            return None
        age = at - t
        hits = (cohorts.lag[window] <= np.minimum(age, cohorts.max_lag)).astype(float)
        if hits.sum() < opts.min_corrections:
            return None
        # The lag shape (share of within-lag corrections that arrive by each age) from every decision's baseline.
        _, all_curve = self.everything[(agent, action)].baseline(base_end - opts.baseline_days * 24 * HOUR, base_end)
        total = float(all_curve[-1])
        shape = cohorts.at_age(all_curve, age) / total if total > 0 else np.minimum(age / cohorts.max_lag, 1.0)
        claimed = 1.0 - cohorts.confidence[window]
        usual = np.maximum(claimed, max(float(curve[-1]), opts.min_baseline_share))
        test = CorrectionCusum(hits, usual * shape, np.minimum((usual + opts.margin) * shape, 0.999))
        test.run()
        if test.statistic < opts.threshold:
            return None
        seg = slice(test.begin, None)
        wrong, exposure = int(hits[seg].sum()), float(shape[seg].sum())
        wrong_share = wrong / max(exposure, 1e-9)  # extrapolated to the full lag
        claimed_share = float(claimed[seg].mean())
        if wrong < opts.min_corrections or wrong_share < max(claimed_share, float(curve[-1])) + opts.margin / 2:
            return None
        begin_at = datetime.fromtimestamp(float(t[test.begin]), tz=UTC)
        decisions = len(t) - test.begin
        severity = Severity.critical if wrong_share >= claimed_share * opts.critical_ratio + opts.margin \
            else Severity.warning
        summary = (
            f"{agent}'s {action} decisions made with confidence >= {opts.high_confidence:g} since "
            f"{begin_at:%a %H:%M} UTC are proven wrong about {wrong_share:.0%} of the time ({wrong} of {decisions} "
            f"so far), though their confidence claims {claimed_share:.0%} and the usual rate is {curve[-1]:.0%}."
        )
        ids = cohorts.event_ids[window][seg][hits[seg] > 0]
        return Finding(
            check=self.name, subject=subject, severity=severity, summary=summary, started_at=begin_at,
            affected=wrong,
            evidence={
                "agents": [agent], "high_confidence": opts.high_confidence, "decisions": decisions,
                "proven_wrong": wrong, "wrong_share_estimate": round(wrong_share, 4),
                "claimed_error": round(claimed_share, 4), "baseline_wrong_share": round(float(curve[-1]), 4),
                "baseline_decisions": int(n_base), "margin": opts.margin, "max_lag_hours": opts.max_lag_hours,
                "cusum": round(test.statistic, 2), "threshold": opts.threshold,
                "confidence_bins": self._bins(agent, action, at, all_curve),
                "proven_wrong_by": self.kinds_to_actions(),
            },
            sample_event_ids=[str(i) for i in ids if i is not None][:SAMPLE_IDS],
        )

    def _bins(self, agent: str, action: str, at: float, curve: np.ndarray) -> list[dict]:
        """Accuracy per confidence bin over the recent window (every confidence), adjusted for exposure."""
        cohorts = self.everything[(agent, action)]
        window = cohorts.window(at - self.options.recent_hours * HOUR, at)
        age = at - cohorts.t[window]
        confidence = cohorts.confidence[window]
        hits = cohorts.lag[window] <= np.minimum(age, cohorts.max_lag)
        shape = cohorts.at_age(curve, age) / curve[-1] if curve[-1] > 0 else np.minimum(age / cohorts.max_lag, 1.0)
        bins = []
        for low, high in pairwise(CONFIDENCE_BINS):
            inside = (confidence >= low) & ((confidence < high) | (high == 1.0))
            n = int(inside.sum())
            if n == 0:
                continue
            exposure = float(shape[inside].sum())
            wrong = int(hits[inside].sum())
            accuracy = 1.0 - min(wrong / exposure, 1.0) if exposure > 0 else None
            bins.append({"confidence": [low, high], "decisions": n, "proven_wrong": wrong,
                         "mean_confidence": round(float(confidence[inside].mean()), 3),
                         "accuracy": None if accuracy is None else round(accuracy, 3)})
        return bins
