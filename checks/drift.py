"""drift.distribution: an agent x action's decisions (and key inputs) drift against a reference window.

The columns come from the data: every top-level key of ``decision`` and of ``inputs`` that holds JSON
numbers (numeric) or strings / booleans with few distinct values (categorical), plus the ``confidence``
column. Ids, timestamps and free text are left out (by name, or because their values rarely repeat).

``prepare`` draws one bounded, reproducible sample per agent x action x hour (a hash of the event id
decides, so an event is in or out whatever the window) and extracts those columns once. Every
``every_minutes`` of step time the check compares the last ``current_hours`` with the ``reference_days``
before them (frozen at the incident's start while one is open), each capped at ``max_rows`` sampled rows.
The statistics are Evidently's (the methods its DataDriftPreset picks above 1,000 reference rows, forced
at every size): normed Wasserstein distance for numbers, Jensen-Shannon distance for categories, threshold
0.1. numpy computes them for the hourly screen (the same formulas; a test holds them equal); Evidently's
``ValueDrift`` recomputes the drifted columns when the check fires, and its values decide and are kept as
the report in the evidence (refreshed every ``report_every_minutes`` while the drift lasts).

A small sample looks drifted by chance, so a column counts as drifted only when its score exceeds the
threshold plus ``noise_margin`` times the score the reference gets against itself at the same sample sizes.
A drifted decision output fires; inputs alone fire (as info) when ``input_share`` of them drifted. Between
evaluations the last verdict is re-reported, so an incident does not flap.

A decision that moved only because the mix of inputs moved is not the agent behaving differently: a regional
holiday makes one region's routes rarer for a day while every lead is routed as before. When categorical inputs
drifted too, the reference rows are reweighted to the current mix of those inputs (importance weights
p_current(x) / p_reference(x)); a decision whose reweighted reference no longer differs from the current window
(threshold plus the noise margin, at the reweighted sample's effective size) counts as explained by its inputs
and only makes the finding an info.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from agentwatch.checks.aggregates import action_counts
from agentwatch.checks.base import SAMPLE_IDS, Check, CheckOptions, Finding, Step, register, subject_key
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import BUCKET, MICROSECOND, EvalData, from_micros, to_micros
from agentwatch.checks.rollup_sql import HASH_RANGE, drift_sample
from agentwatch.checks.stats import cusum_end
from agentwatch.core.severity import Severity
from agentwatch.core.sql import sql_string
from agentwatch.store import duck

BUCKET_US = BUCKET // MICROSECOND
NONE = "(none)"  # a decision output left empty is a category of its own: "no route" is a decision too
NOISE_SPLITS = 5  # reference-against-itself comparisons averaged into the noise level
NUMERIC_METHOD = "Wasserstein distance (normed)"  # Evidently's display names of the two methods
CATEGORICAL_METHOD = "Jensen-Shannon distance"
DISCOVERY_ROWS = 3000  # sampled rows per agent x action that decide which keys are numbers, categories or ids
MIX_INPUTS = 2  # drifted inputs reweighted jointly at most: more would split the reference into too few rows
UNSEEN_MIX_SHARE = 0.01  # current rows whose input mix the reference never saw: above this, no explanation holds
KEEP_VERDICT_WHEN_THIN = timedelta(days=3)  # too few rows to judge (a weekend, a holiday): the last verdict stands


class DriftOptions(CheckOptions):
    resolve_after_minutes: float = Field(
        360, gt=0,
        description="Resolve once no drift was found for this long. Six hours: drift verdicts come from day-long "
                    "windows and are refreshed hourly, so a shorter wait would close and reopen an incident "
                    "whenever a score wavers around the threshold.",
    )
    current_hours: float = Field(
        24, gt=0,
        description="The current window: the last this many hours. A whole day, so every hour of the day "
                    "weighs the same in both windows and the daily rhythm of leads is not read as drift.",
    )
    reference_days: float = Field(
        7, gt=0,
        description="The reference window: this many days before the current one (before the incident's start "
                    "while one is open). A week holds every weekday once.",
    )
    every_minutes: float = Field(
        60, gt=0,
        description="Recompute once per this many minutes (slots of the clock), re-reporting the last "
                    "verdicts in between. Drift builds over hours (its delay target is 24 h); an hourly refresh "
                    "costs little and keeps a 14-day backtest fast.",
    )
    max_rows: int = Field(
        2000, ge=100,
        description="Sampled rows per window at most (Evidently's cost grows with rows). 2,000 rows put the "
                    "sampling noise of either statistic well below the threshold.",
    )
    min_rows: int = Field(
        200, ge=20,
        description="Rows a column needs in both windows to be compared. Fewer rows make the noise margin so "
                    "wide that only gross drift could show; 200 still lets a weekend day of a mid-sized agent count.",
    )
    max_categories: int = Field(
        50, ge=2,
        description="A string key with more distinct values is an id or free text, not a category to compare.",
    )
    threshold: float = Field(
        0.1, gt=0,
        description="Per-column drift score above which a column drifted (on top of the sampling noise). "
                    "0.1 is Evidently's default for both normed Wasserstein and Jensen-Shannon distance.",
    )
    noise_margin: float = Field(
        3.0, ge=0,
        description="A column drifted when its score reaches the threshold plus this many times its noise level "
                    "(the score the reference gets against itself at the same sample sizes: what chance alone "
                    "gives). Chance exceeds 3x its typical level about once in 10,000 comparisons; with hourly "
                    "comparisons of dozens of columns, a smaller margin opens false incidents every week.",
    )
    input_share: float = Field(
        0.5, gt=0, le=1,
        description="Share of input columns that must drift for an input-only finding (info). Inputs follow the "
                    "business (campaigns, seasons), so one moving input is not news; half of them moving is. "
                    "Any drifted decision output fires (warning): that is the agent behaving differently.",
    )
    critical_score: float = Field(
        0.5, gt=0,
        description="A decision output drifting at least this much is critical: half a standard deviation of "
                    "shift for numbers, a large change in shares for categories.",
    )
    report_every_minutes: float = Field(
        360, gt=0,
        description="While an incident stays open, rerun Evidently for its report at most this often (it costs "
                    "about half a second); the numpy scores, identical to Evidently's, refresh the verdict hourly.",
    )
    ignore_keys: list[str] = Field(
        default_factory=lambda: ["id", "*_id", "*Id", "*ID", "*_at", "*_ts", "*timestamp*", "*date*"],
        description="Key name patterns (fnmatch, case-sensitive) never compared: ids and times grow with time, "
                    "so their distribution always 'drifts'.",
    )


@dataclass
class Column:
    """One compared column of one agent x action, aligned with its stream's rows."""

    name: str  # as shown: decision.score, inputs.region, confidence
    role: str  # decision | input
    numeric: bool
    values: np.ndarray  # float64 with NaN for missing, or int32 category codes with -1 for missing
    categories: list[str] = field(default_factory=list)


@dataclass
class Stream:
    """The sampled rows of one agent x action, in time order."""

    agent_id: str
    action: str
    ts: np.ndarray  # int64 microseconds since the epoch
    u: np.ndarray  # the row's hash in [0, 1): smallest first is a uniform, reproducible subsample
    event_ids: np.ndarray
    versions: np.ndarray
    columns: list[Column]
    bucket_us: np.ndarray  # every event (not only sampled ones) per 5-minute bucket, for `affected`
    bucket_events: np.ndarray


@dataclass
class Score:
    column: Column
    score: float
    noise: float
    reference: np.ndarray
    current: np.ndarray
    threshold: float
    margin: float
    explained_by: list[str] = field(default_factory=list)  # the drifted inputs whose new mix accounts for it

    @property
    def pages(self) -> bool:
        """A drifted decision its inputs' mix does not explain: the agent decides differently."""
        return self.drifted and self.column.role == "decision" and not self.explained_by

    @property
    def drifted(self) -> bool:
        return self.score >= self.threshold + self.margin * self.noise

    @property
    def method(self) -> str:
        return NUMERIC_METHOD if self.column.numeric else CATEGORICAL_METHOD


@dataclass
class Memory:
    """What the check remembers of one agent x action between evaluations."""

    assessed_at: datetime | None = None  # the last evaluation with enough rows to judge
    finding: Finding | None = None
    report_at: datetime | None = None
    report: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Windows:
    current_start: datetime
    current_end: datetime
    reference_start: datetime
    reference_end: datetime


@register
class DriftDistribution(Check[DriftOptions]):
    """An agent x action's decision outputs (score, route_to, intent, confidence...) or inputs drift.

    Each hour it compares the last day of sampled events with the week before it, column by column, with
    Evidently's statistics (normed Wasserstein for numbers, Jensen-Shannon for categories). A drifted decision
    output fires a warning (critical when far off); inputs alone fire an info when half of them moved.
    """

    clears_when = (
        "Resolves when new decisions of this agent and action, at least `clear_min_events` since it last "
        "fired, no longer drift from the reference. No new decisions keep it open."
    )

    name: ClassVar[str] = "drift.distribution"
    family: ClassVar[str] = "drift"
    Options: ClassVar[type[CheckOptions]] = DriftOptions
    history: timedelta = timedelta(days=8)

    def __init__(self, options: DriftOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        # Kept across runs when the scheduler reuses this object: verdicts and reports carry over.
        self.memory: dict[tuple[str, str], Memory] = {}

    def prepare(self, data: EvalData) -> None:
        o = self.options
        self.current = timedelta(hours=o.current_hours)
        self.reference = timedelta(days=o.reference_days)
        self.streams = _load_streams(data, o)

    def evaluate(self, step: Step) -> list[Finding]:
        o = self.options
        findings = []
        for key, stream in self.streams.items():  # at most every `every_minutes`: the engine re-reports between
            memory = self.memory.setdefault(key, Memory())
            memory.finding = self._assess(stream, step, memory, o)
            if memory.finding is not None:
                findings.append(memory.finding)
        return findings

    def _assess(self, stream: Stream, step: Step, memory: Memory, o: DriftOptions) -> Finding | None:
        subject = {"agent_id": stream.agent_id, "action": stream.action}
        current_start = step.at - self.current
        reference_end = current_start
        started = step.started(self.name, subject)
        if started is not None:  # freeze the reference before the drift while its incident is open
            reference_end = min(reference_end, started)
        windows = Windows(current_start, step.at, reference_end - self.reference, reference_end)
        current = _window(stream, windows.current_start, windows.current_end, o.max_rows)
        reference = _window(stream, windows.reference_start, windows.reference_end, o.max_rows)
        if current.size < o.min_rows or reference.size < o.min_rows:  # a quiet weekend: keep the last verdict
            recent = memory.assessed_at is not None and step.at - memory.assessed_at <= KEEP_VERDICT_WHEN_THIN
            return memory.finding if recent else None
        memory.assessed_at = step.at
        scores = _scores(stream, reference, current, o)
        _explain_by_mix(stream, reference, current, scores, o)
        if not _fires(scores, o):
            memory.report_at, memory.report = None, []
            return None
        reported = {m["column"] for m in memory.report}
        stale = memory.report_at is None or step.at - memory.report_at >= timedelta(minutes=o.report_every_minutes)
        if stale or any(s.drifted and s.column.name not in reported for s in scores):
            values, memory.report = _evidently([s for s in scores if s.drifted], o.threshold)
            memory.report_at = step.at
            for score in scores:  # Evidently's values are the verdict (numpy computes the same formulas)
                score.score = values.get(score.column.name, score.score)
            if not _fires(scores, o):
                return None
        return self._finding(stream, step, scores, windows, current, reference, memory, o)

    def _finding(self, stream: Stream, step: Step, scores: list[Score], windows: Windows, current: np.ndarray,
                 reference: np.ndarray, memory: Memory, o: DriftOptions) -> Finding:
        # Decision outputs first (they set the severity), then inputs; each by how far past its bar it is.
        drifted = sorted((s for s in scores if s.drifted),
                         key=lambda s: (not s.pages, s.column.role == "decision", s.margin * s.noise - s.score))
        outputs = [s for s in drifted if s.pages]
        if outputs:
            critical = any(s.score >= o.critical_score for s in outputs)
            severity = Severity.critical if critical else Severity.warning
        else:
            severity = Severity.info
        started_at, sample = _change_start((outputs or drifted)[0], stream, current)
        since = stream.bucket_us > to_micros(started_at) - BUCKET_US  # the 5-minute bucket holding the start
        affected = int(stream.bucket_events[since & (stream.bucket_us <= to_micros(step.at))].sum())
        names = {s.column.name for s in drifted}
        report = [m for m in memory.report if m["column"] in names]
        evidence = {
            "agents": [stream.agent_id],
            "drifted_columns": [s.column.name for s in drifted],
            "columns": {s.column.name: _describe(s) for s in drifted},
            "scores": {s.column.name: round(s.score, 4) for s in scores},
            "current_window": _window_evidence(stream, current, windows.current_start, windows.current_end),
            "reference_window": _window_evidence(stream, reference, windows.reference_start, windows.reference_end),
            "versions": {"reference": _versions(stream, reference), "current": _versions(stream, current)},
            "report": report,
            "report_at": memory.report_at.isoformat() if memory.report_at else None,
        }
        explained = {s.column.name: s.explained_by for s in drifted if s.explained_by}
        if explained:
            evidence["explained_by_inputs"] = explained
        return Finding(
            check=self.name, subject={"agent_id": stream.agent_id, "action": stream.action}, severity=severity,
            summary=_summary(stream, drifted, len(scores), o), started_at=started_at, affected=affected,
            evidence=evidence, sample_event_ids=sample,
        )


# --- loading -------------------------------------------------------------------------------------------------

def _load_streams(data: EvalData, o: DriftOptions) -> dict[tuple[str, str], Stream]:
    """Sample the range once (about max_rows per current window per agent x action) and extract the columns."""
    per_hour = max(1, int(np.ceil(o.max_rows / o.current_hours)))
    # Only the windows this check compares: the run's range may reach further back for other checks.
    since = max(data.load_from, data.look_back_from - timedelta(days=o.reference_days, hours=o.current_hours))
    table = f"drift_sample_{id(data)}"
    duck.run(data.con, f"CREATE OR REPLACE TEMP TABLE {table} AS {data.rollup_sql(drift_sample(per_hour), since)}")
    try:
        columns = _discover(data, table, o)
        counted = duck.run(data.con, f"SELECT agent_id, action, count(*) FROM {table} GROUP BY ALL")
        sizes = {(agent_id, action): n for agent_id, action, n in counted}  # the whole sample's, as without windows
        # One evaluation time (`check`, serve's minute): only the rows its two windows can pick are extracted, a
        # seventh of the sample (the reference week holds 7 times what the check compares).
        rows_of = _window_rows(data, table, list(sizes), o) if data.first == data.last else table
        frame = _extract(data, rows_of, columns)
    finally:
        duck.run(data.con, f"DROP TABLE IF EXISTS {table}")
    counts = action_counts(data)
    streams = {}
    for (agent_id, action), rows in frame.partition_by("agent_id", "action", as_dict=True).items():
        if sizes.get((agent_id, action), 0) < 2 * o.min_rows:
            continue
        mine = columns.filter((pl.col("agent_id") == agent_id) & (pl.col("action") == action))
        built = [_column(rows, c["name"], c["alias"], c["role"], c["numeric"]) for c in mine.iter_rows(named=True)]
        if rows["confidence"].null_count() < rows.height:
            built.append(_column(rows, "confidence", "confidence", "decision", True))
        pair = counts.filter((pl.col("agent_id") == agent_id) & (pl.col("action") == action))
        streams[(agent_id, action)] = Stream(
            agent_id=agent_id, action=action, ts=rows["ts_us"].to_numpy(), u=rows["h"].to_numpy() / HASH_RANGE,
            event_ids=rows["event_id"].to_numpy(), versions=rows["agent_version"].fill_null("").to_numpy(),
            columns=[c for c in built if c is not None],
            bucket_us=pair["bucket"].dt.epoch("us").to_numpy(), bucket_events=pair["events"].to_numpy(),
        )
    return streams


def _window_rows(data: EvalData, table: str, pairs: list[tuple[str, str]], o: DriftOptions) -> str:
    """The sampled rows the windows of a one-step run can pick (see `_window`): per agent x action of `pairs`, the
    `max_rows` smallest hashes (ties kept) in the current window and in the reference window, which ends at the start
    of the subject's open incident when one is open (frozen, as `DriftDistribution._assess` freezes it)."""
    at = data.last
    current_start = at - timedelta(hours=o.current_hours)
    reference_end = f"TIMESTAMPTZ '{current_start.isoformat()}'"
    frozen = []
    for agent_id, action in pairs:
        started = data.open_since.get(subject_key(DriftDistribution.name, {"agent_id": agent_id, "action": action}))
        if started is not None and started < current_start:
            frozen.append(f"WHEN agent_id = {sql_string(agent_id)} AND action = {sql_string(action)} "
                          f"THEN TIMESTAMPTZ '{started.isoformat()}'")
    if frozen:
        reference_end = f"CASE {' '.join(frozen)} ELSE {reference_end} END"
    reference = timedelta(days=o.reference_days).total_seconds()
    return f"""(
        SELECT * EXCLUDE (in_current, reference_end) FROM (
            SELECT *, ts > TIMESTAMPTZ '{current_start.isoformat()}' AND ts <= TIMESTAMPTZ '{at.isoformat()}'
                      AS in_current, {reference_end} AS reference_end
            FROM {table})
        WHERE in_current OR (ts > reference_end - INTERVAL '{reference} seconds' AND ts <= reference_end)
        QUALIFY rank() OVER (PARTITION BY agent_id, action, in_current ORDER BY h) <= {o.max_rows})"""


def _discover(data: EvalData, table: str, o: DriftOptions) -> pl.DataFrame:
    """agent_id, action, name, alias, role, numeric, scope, key: the keys worth comparing, per agent x action
    (judged on up to DISCOVERY_ROWS sampled rows of each)."""
    # A JSON path that does not start with '$' is one key, taken literally (dots and quotes included).
    parts = [
        f"SELECT agent_id, action, '{scope}' AS scope, key, json_type({scope}, key) AS type, "
        f"json_extract_string({scope}, key) AS v FROM (SELECT agent_id, action, {scope}, "
        f"unnest(json_keys({scope})) AS key FROM rows WHERE json_type({scope}) = 'OBJECT')"
        for scope in ("decision", "inputs")
    ]
    keys = data.frame(f"""
        WITH rows AS (SELECT * FROM {table}
                      QUALIFY row_number() OVER (PARTITION BY agent_id, action ORDER BY h) <= {DISCOVERY_ROWS})
        SELECT agent_id, action, scope, key,
               count(*) FILTER (WHERE type IN ('BIGINT', 'UBIGINT', 'DOUBLE')) AS numbers,
               count(*) FILTER (WHERE type IN ('VARCHAR', 'BOOLEAN')) AS labels,
               count(*) FILTER (WHERE type <> 'NULL') AS present,
               count(DISTINCT v) FILTER (WHERE type IN ('VARCHAR', 'BOOLEAN')) AS distinct_labels
        FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL ORDER BY agent_id, action, scope, key""")
    numeric = pl.col("numbers") >= 0.95 * pl.col("present")
    categorical = (
        (pl.col("labels") >= 0.95 * pl.col("present"))
        & (pl.col("distinct_labels") <= o.max_categories)
        & (pl.col("distinct_labels") * 4 <= pl.col("present"))  # values repeat: not ids or free text
    )
    ignored = pl.col("key").map_elements(lambda k: any(fnmatchcase(k, p) for p in o.ignore_keys),
                                         return_dtype=pl.Boolean)
    keys = keys.filter((pl.col("present") > 0) & (numeric | categorical) & ~ignored)
    return keys.with_row_index("i").select(
        "agent_id", "action",
        (pl.col("scope") + "." + pl.col("key")).alias("name"),
        ("c" + pl.col("i").cast(pl.String)).alias("alias"),
        pl.when(pl.col("scope") == "decision").then(pl.lit("decision")).otherwise(pl.lit("input")).alias("role"),
        numeric.alias("numeric"), "scope", "key",
    )


def _extract(data: EvalData, rows: str, columns: pl.DataFrame) -> pl.DataFrame:
    """The sampled rows (a table or a parenthesised SELECT) with one column per discovered key (named by its alias),
    in time order."""
    lists, selects = [], []
    for scope in ("decision", "inputs"):
        mine = columns.filter(pl.col("scope") == scope)
        if mine.height == 0:
            continue
        keys = mine.select("key").unique(maintain_order=True)["key"].to_list()
        # One parse per document: extract every key of the scope at once, as a list of strings.
        lists.append(f", json_extract_string({scope}, [{', '.join(sql_string(k) for k in keys)}]) AS {scope}_values")
        for c in mine.iter_rows(named=True):
            value = f"{scope}_values[{keys.index(c['key']) + 1}]"
            selects.append(f", TRY_CAST({value} AS DOUBLE) AS {c['alias']}" if c["numeric"] else
                           f", {value} AS {c['alias']}")
    return data.frame(f"""
        SELECT event_id, ts_us, agent_id, action, agent_version, h, confidence{''.join(selects)}
        FROM (SELECT event_id, epoch_us(ts) AS ts_us, agent_id, action, agent_version, h,
                     confidence::DOUBLE AS confidence{''.join(lists)} FROM {rows})
        ORDER BY agent_id, action, ts_us, event_id""")


def _column(rows: pl.DataFrame, name: str, alias: str, role: str, numeric: bool) -> Column | None:
    series = rows[alias]
    if numeric:
        values = series.cast(pl.Float64).fill_nan(None).fill_null(float("nan")).to_numpy()
        return Column(name, role, True, values)
    if role == "decision":
        series = series.fill_null(NONE)
    categories = sorted(series.drop_nulls().unique().to_list())
    if len(categories) < 1:
        return None
    codes = series.cast(pl.Enum(categories)).to_physical().cast(pl.Int32).fill_null(-1).to_numpy()
    return Column(name, role, False, codes, categories)


# --- statistics ----------------------------------------------------------------------------------------------

def _window(stream: Stream, start: datetime, end: datetime, max_rows: int) -> np.ndarray:
    """Row indices in (start, end], at most max_rows of them (the smallest hashes), in time order."""
    lo = int(np.searchsorted(stream.ts, to_micros(start), side="right"))
    hi = int(np.searchsorted(stream.ts, to_micros(end), side="right"))
    rows = np.arange(lo, hi)
    if rows.size > max_rows:
        rows = np.sort(rows[np.argpartition(stream.u[lo:hi], max_rows)[:max_rows]])
    return rows


def _scores(stream: Stream, reference: np.ndarray, current: np.ndarray, o: DriftOptions) -> list[Score]:
    scores = []
    for column in stream.columns:
        ref, cur = column.values[reference], column.values[current]
        if column.numeric:
            ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
        else:
            ref, cur = ref[ref >= 0], cur[cur >= 0]
        if ref.size < o.min_rows or cur.size < o.min_rows:
            continue
        score = _statistic(column.numeric, ref, cur)
        noise = _noise(column.numeric, ref, cur.size) if score >= o.threshold else 0.0
        scores.append(Score(column, score, noise, ref, cur, o.threshold, o.noise_margin))
    return scores


def _statistic(numeric: bool, ref: np.ndarray, cur: np.ndarray) -> float:
    """Evidently's statistic: Wasserstein distance normed by the reference's std, or Jensen-Shannon distance
    (natural log). The formulas of scipy's ``wasserstein_distance`` and ``jensenshannon``, which Evidently calls."""
    return _weighted_statistic(numeric, ref, np.ones(ref.size), cur)


def _wasserstein(a: np.ndarray, b: np.ndarray, a_weights: np.ndarray | None = None) -> float:
    """The first Wasserstein distance of two samples (the first weighted by `a_weights` if given): the area between
    their empirical distribution functions."""
    order = np.argsort(a, kind="stable")
    a, b = a[order], np.sort(b)
    weights = np.ones(a.size) if a_weights is None else a_weights[order]
    points = np.sort(np.concatenate([a, b]))
    widths = np.diff(points)
    cumulative = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
    cdf_a = cumulative[np.searchsorted(a, points[:-1], side="right")]
    cdf_b = np.searchsorted(b, points[:-1], side="right") / b.size
    return float(np.sum(np.abs(cdf_a - cdf_b) * widths))


def _weighted_statistic(numeric: bool, ref: np.ndarray, weights: np.ndarray, cur: np.ndarray) -> float:
    """:func:`_statistic` with the reference rows weighted (equal weights: the plain statistic)."""
    if numeric:
        mean = np.average(ref, weights=weights)
        std = float(np.sqrt(np.average((ref - mean) ** 2, weights=weights)))
        return _wasserstein(ref, cur, weights) / max(std, 0.001)
    size = int(max(ref.max(), cur.max())) + 1
    p = np.bincount(ref, weights=weights, minlength=size) / weights.sum()
    q = np.bincount(cur, minlength=size) / cur.size
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        divergence = np.where(p > 0, p * np.log(p / m), 0.0).sum() + np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(np.sqrt(max(divergence / 2, 0.0)))


def _explain_by_mix(stream: Stream, reference: np.ndarray, current: np.ndarray, scores: list[Score],
                    o: DriftOptions) -> None:
    """Mark each drifted decision that the drifted categorical inputs explain (see the module's docstring): weighted
    to the current window's mix of those inputs (jointly, up to MIX_INPUTS of them, a missing value a category of its
    own), the reference decides as the current window does."""
    inputs = sorted((s for s in scores if s.drifted and s.column.role == "input" and not s.column.numeric),
                    key=lambda s: -s.score)[:MIX_INPUTS]
    if not inputs:
        return

    def mix(rows: np.ndarray) -> np.ndarray:
        code = np.zeros(rows.size, dtype=np.int64)
        for s in inputs:
            code = code * (len(s.column.categories) + 1) + s.column.values[rows] + 1
        return code

    for score in scores:
        column = score.column
        if not (score.drifted and column.role == "decision"):
            continue
        valid = ~np.isnan(column.values) if column.numeric else column.values >= 0
        ref_rows, cur_rows = reference[valid[reference]], current[valid[current]]
        ref_mix, cur_mix = mix(ref_rows), mix(cur_rows)
        size = int(max(ref_mix.max(), cur_mix.max())) + 1
        p_ref = np.bincount(ref_mix, minlength=size) / ref_mix.size
        p_cur = np.bincount(cur_mix, minlength=size) / cur_mix.size
        if p_cur[p_ref == 0].sum() > UNSEEN_MIX_SHARE:  # inputs the reference never had cannot explain anything
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            weights = np.where(p_ref[ref_mix] > 0, p_cur[ref_mix] / p_ref[ref_mix], 0.0)
        effective = weights.sum() ** 2 / (weights ** 2).sum()
        reweighted = _weighted_statistic(column.numeric, column.values[ref_rows], weights, column.values[cur_rows])
        # The noise at the reweighted reference's effective size (statistics shrink as 1/sqrt(rows)).
        noise = score.noise * np.sqrt((1 / cur_rows.size + 1 / effective) / (1 / cur_rows.size + 1 / ref_rows.size))
        if reweighted < o.threshold + o.noise_margin * noise:
            score.explained_by = [s.column.name for s in inputs]


def _noise(numeric: bool, ref: np.ndarray, current_rows: int) -> float:
    """The score two samples of the same distribution get at these sizes: the reference split against itself,
    rescaled from the split's sizes to (current_rows, len(ref)); both statistics shrink as 1/sqrt(rows)."""
    rng = np.random.default_rng(0)
    part = min(current_rows, ref.size // 2)
    scale = np.sqrt((1 / current_rows + 1 / ref.size) / (1 / part + 1 / (ref.size - part)))
    values = []
    for _ in range(NOISE_SPLITS):
        order = rng.permutation(ref.size)
        values.append(_statistic(numeric, ref[order[part:]], ref[order[:part]]))
    return float(np.mean(values) * scale)


def _fires(scores: list[Score], o: DriftOptions) -> bool:
    """Any decision output drifted (explained by its inputs or not), or at least `input_share` of the input columns
    did."""
    if any(s.drifted for s in scores if s.column.role == "decision"):
        return True
    inputs = [s for s in scores if s.column.role == "input"]
    return bool(inputs) and sum(s.drifted for s in inputs) >= o.input_share * len(inputs)


def _evidently(scores: list[Score], threshold: float) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Evidently's ValueDrift (the metric its DataDriftPreset runs per column) over the same samples, with the
    preset's methods: per-column values and its metric list (JSON-safe). The preset itself also renders
    dataset-level widgets, which doubles the cost and adds nothing here."""
    import pandas as pd  # Evidently takes pandas frames; imported here, with Evidently (about 4 s), only when needed
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    def frame(which: str) -> pd.DataFrame:
        series = {}
        for s in scores:
            values = getattr(s, which)
            if not s.column.numeric:
                values = np.asarray(s.column.categories, dtype=object)[values]
            series[s.column.name] = pd.Series(values)
        return pd.DataFrame(series)  # columns of unequal length are padded with NaN, which Evidently drops

    definition = DataDefinition(
        numerical_columns=[s.column.name for s in scores if s.column.numeric],
        categorical_columns=[s.column.name for s in scores if not s.column.numeric],
    )
    metrics = [ValueDrift(column=s.column.name, method="wasserstein" if s.column.numeric else "jensenshannon",
                          threshold=threshold) for s in scores]
    snapshot = Report(metrics).run(
        Dataset.from_pandas(frame("current"), data_definition=definition),
        Dataset.from_pandas(frame("reference"), data_definition=definition),
    )
    values, report = {}, []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        values[config["column"]] = float(metric["value"])
        report.append({"column": config["column"], "metric": metric.get("metric_name"), "method": config.get("method"),
                       "threshold": config.get("threshold"), "value": _json_safe(metric.get("value"))})
    return values, report


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value if value is None or isinstance(value, str | int | bool) else str(value)


def _change_start(score: Score, stream: Stream, current: np.ndarray) -> tuple[datetime, list[str]]:
    """When the drift most likely began within the current window (CUSUM over the rows' log-likelihood ratio of
    "current distribution" against "reference distribution", binned), and the rows that show it most."""
    column = score.column
    values = column.values[current]
    keep = ~np.isnan(values) if column.numeric else values >= 0
    rows, values = current[keep], values[keep]
    if column.numeric:
        edges = np.unique(np.quantile(score.reference, np.linspace(0.1, 0.9, 9)))
        ref_bins, cur_bins = np.digitize(score.reference, edges), np.digitize(values, edges)
        size = edges.size + 1
    else:  # the categories seen in either window: not those of the whole sample, which varies with the run's range
        present = np.unique(np.concatenate([score.reference, values]))
        ref_bins, cur_bins = np.searchsorted(present, score.reference), np.searchsorted(present, values)
        size = present.size
    p_ref = (np.bincount(ref_bins, minlength=size) + 0.5) / (ref_bins.size + 0.5 * size)
    p_cur = (np.bincount(cur_bins, minlength=size) + 0.5) / (cur_bins.size + 0.5 * size)
    llr = np.log(p_cur / p_ref)[cur_bins]
    _, start = cusum_end(llr)
    start = max(start, 0)
    after = np.arange(start, rows.size)
    strongest = after[np.argsort(-llr[after], kind="stable")[:SAMPLE_IDS]]
    return from_micros(stream.ts[rows[start]]), [str(stream.event_ids[rows[i]]) for i in sorted(strongest)]


# --- evidence and summary ------------------------------------------------------------------------------------

def _describe(score: Score) -> dict[str, Any]:
    described: dict[str, Any] = {
        "role": score.column.role, "score": round(score.score, 4), "method": score.method,
        "threshold": score.threshold, "noise": round(score.noise, 4), "noise_margin": score.margin,
        "rows": {"reference": int(score.reference.size), "current": int(score.current.size)},
    }
    if score.column.numeric:
        for name, values in (("reference", score.reference), ("current", score.current)):
            q = np.quantile(values, [0.1, 0.5, 0.9])
            described[name] = {"mean": round(float(values.mean()), 4), "p10": round(float(q[0]), 4),
                               "p50": round(float(q[1]), 4), "p90": round(float(q[2]), 4)}
    else:
        described["shares"] = _share_changes(score)[:10]
    return described


def _share_changes(score: Score) -> list[dict[str, Any]]:
    """Categories by how much their share moved, largest first."""
    size = len(score.column.categories)
    ref = np.bincount(score.reference, minlength=size) / score.reference.size
    cur = np.bincount(score.current, minlength=size) / score.current.size
    order = np.argsort(-np.abs(cur - ref), kind="stable")
    return [{"value": score.column.categories[i], "reference": round(float(ref[i]), 4),
             "current": round(float(cur[i]), 4)} for i in order if ref[i] > 0 or cur[i] > 0]


def _window_evidence(stream: Stream, rows: np.ndarray, start: datetime, end: datetime) -> dict[str, Any]:
    inside = (stream.bucket_us > to_micros(start) - BUCKET_US) & (stream.bucket_us <= to_micros(end))
    return {"start": start.isoformat(), "end": end.isoformat(), "sampled_rows": int(rows.size),
            "events": int(stream.bucket_events[inside].sum())}


def _versions(stream: Stream, rows: np.ndarray) -> list[str]:
    return sorted({str(v) for v in stream.versions[rows] if v})


def _summary(stream: Stream, drifted: list[Score], compared: int, o: DriftOptions) -> str:
    lead = drifted[0]
    if lead.column.numeric:
        change = f"mean {lead.reference.mean():.3g} -> {lead.current.mean():.3g}"
    else:
        top = _share_changes(lead)[0]
        change = f"'{top['value']}' {top['reference']:.0%} -> {top['current']:.0%} of events"
    others = f", {len(drifted) - 1} more of {compared} columns too" if len(drifted) > 1 else f" ({compared} compared)"
    return (f"{stream.agent_id} {stream.action}: {lead.column.name} drifted in the last {o.current_hours:g} h "
            f"against the {o.reference_days:g} days before ({change}; {lead.method} {lead.score:.2f}, "
            f"threshold {o.threshold:g}){others}.")


