"""quality.expectation_failed: the config's Great Expectations suites over recent actions and outcomes.

The config lists expectations per dataset::

    expectations:
      actions:
        - expectation: expect_column_values_to_not_be_null
          column: agent_id
        - expectation: expect_column_values_to_be_in_set
          column: decision.route_to          # a key inside a JSON column: column.key[.key...]
          kwargs: {value_set: [rep-1, rep-2, queue]}
          name: routes to a known owner      # the incident's subject; default: expectation(column)
          severity: critical                 # info | warning (default) | critical
      outcomes:
        - expectation: expect_column_values_to_be_between
          column: amount
          kwargs: {min_value: 0}

Every entry is validated by its model at config load, and by GX's own model for the name and kwargs when the
check builds its suites; errors name the entry, e.g.
``expectations.actions[1] (expect_column_values_to_be_in_set): value_set: field required``. GX runs in a child
process (``agentwatch.checks.gx_worker``), so its 3-second import overlaps the other checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentwatch.checks.activity import Activity
from agentwatch.checks.base import SAMPLE_IDS, Check, CheckOptions, Finding, Step, register
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import EvalData
from agentwatch.checks.gx_worker import json_safe, shared_worker
from agentwatch.core.errors import ConfigError
from agentwatch.core.severity import Severity
from agentwatch.core.sql import quote_identifier, sql_string

DATASETS = ("actions", "outcomes")
JSON_COLUMNS = {"actions": ("inputs", "before", "after", "decision", "extra"), "outcomes": ("from_value", "to_value",
                                                                                             "extra")}
COLUMN_KWARGS = ("column", "column_A", "column_B")
COLUMN_LIST_KWARGS = ("column_list",)


class ExpectationSpec(BaseModel):
    """One expectation of the config."""

    model_config = ConfigDict(extra="forbid")
    expectation: str = Field(description="A Great Expectations expectation, snake_case: "
                             "expect_column_values_to_not_be_null, expect_column_values_to_be_in_set, ...")
    column: str | None = Field(None, description="The column it applies to; `inputs.x` reads key x of a JSON column.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="The expectation's other arguments.")
    name: str | None = Field(None, description="How incidents name it; default: expectation(column).")
    severity: Severity = Field(Severity.warning, description="Of the incident it opens.")

    @property
    def label(self) -> str:
        return self.name or (f"{self.expectation}({self.column})" if self.column else self.expectation)

    def arguments(self) -> dict[str, Any]:
        return {**({"column": self.column} if self.column else {}), **self.kwargs}

    def columns(self) -> list[str]:
        """Every column the expectation reads."""
        args = self.arguments()
        names = [args[k] for k in COLUMN_KWARGS if isinstance(args.get(k), str)]
        for key in COLUMN_LIST_KWARGS:
            names.extend(c for c in args.get(key) or [] if isinstance(c, str))
        return names


def parse_expectations(config: ChecksConfig) -> dict[str, list[ExpectationSpec]]:
    """The config's expectations, validated by their model; a ConfigError names the dataset and index of a bad one.
    GX itself checks each name and its arguments when the check builds its suites (in its own process: see
    `agentwatch.checks.gx_worker`)."""
    parsed: dict[str, list[ExpectationSpec]] = {}
    for dataset, entries in config.expectations.items():
        if dataset not in DATASETS:
            raise ConfigError(f"expectations.{dataset}: unknown dataset; expectations apply to actions or outcomes")
        parsed[dataset] = []
        for index, raw in enumerate(entries):
            try:
                spec = ExpectationSpec.model_validate(raw)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ConfigError(f"expectations.{dataset}[{index}] ({'.'.join(map(str, first['loc']))}): "
                                  f"{first['msg']}") from None
            parsed[dataset].append(spec)
    return parsed


class ExpectationOptions(CheckOptions):
    every_minutes: float = Field(
        60, gt=0, description="Run the suites once per this many minutes (slots of the clock); between runs "
        "the last verdict stands. Hourly keeps a two-week backtest fast and still answers within the hour."
    )
    window_minutes: float = Field(
        60, gt=0, description="Each run checks the rows with event time in this many minutes before the evaluation "
        "time; equal to every_minutes, every row is checked once."
    )
    max_rows: int = Field(
        200_000, ge=1, description="Check at most this many rows per dataset and run (a uniform sample above it): "
        "GX's pandas source checks 200k rows in well under a second."
    )
    resolve_after_minutes: float = Field(
        120, gt=0, description="Resolve after this long without a failing run: two clean hourly runs."
    )


@register
class ExpectationFailed(Check[ExpectationOptions]):
    """A user-defined Great Expectations expectation fails on recent actions or outcomes.

    The suites in ``expectations:`` run with GX's pandas source (its SQL source over DuckDB returns empty
    results) on the rows of the last ``window_minutes``, at most once per ``every_minutes``; only the columns
    the expectations read are loaded, JSON keys projected as ``column.key``.
    """

    clears_when = (
        "Resolves when the dataset's new events, at least `clear_min_events` since it last fired, pass the "
        "expectation in the windows after. No new events keep it open."
    )

    name: ClassVar[str] = "quality.expectation_failed"
    family: ClassVar[str] = "quality"
    Options: ClassVar[type[CheckOptions]] = ExpectationOptions
    prepares_in_background: ClassVar[bool] = True
    history: timedelta = timedelta(hours=1)

    def __init__(self, options: ExpectationOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        self.history = timedelta(minutes=options.window_minutes)
        self.specs = parse_expectations(config) if config.expectations else {}
        self.frames: dict[str, pl.DataFrame] = {}
        # GX runs in this process's one child, started by the first `prepare` that needs it and kept (one import).
        self.worker = shared_worker()
        self.suite_keys: dict[str, str] = {}  # dataset -> its suite's key in the child

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """The dataset's new events: the next windows are validated on them."""
        dataset = subject["dataset"]
        return activity.rows(dataset, since, step.at), f"{dataset} events"

    def prepare(self, data: EvalData) -> None:
        self.frames, self.suite_keys = {}, {}
        if not any(self.specs.values()):
            return
        self.worker.start()  # GX imports in the child while this run loads the rows and the other checks prepare
        since = data.look_back_from - timedelta(minutes=self.options.window_minutes)
        for dataset, specs in self.specs.items():
            if not specs:
                continue
            self.frames[dataset] = self._load(data, dataset, specs, since)  # every load before any suite is sent
        for dataset in self.frames:
            self.suite_keys[dataset] = self.worker.send_suite([
                {"expectation": s.expectation, "arguments": s.arguments(), "where": f"expectations.{dataset}[{i}]"}
                for i, s in enumerate(self.specs[dataset])])

    def _load(self, data: EvalData, dataset: str, specs: list[ExpectationSpec], since: datetime) -> pl.DataFrame:
        """event_id, ts and every column the expectations read, over the run's windows."""
        stored = {row[0] for row in data.con.execute(f"DESCRIBE SELECT * FROM {dataset}").fetchall()}
        projections = {}
        for index, spec in enumerate(specs):
            for column in spec.columns():
                top, _, path = column.partition(".")
                if top not in stored:
                    raise ConfigError(f"expectations.{dataset}[{index}]: {dataset} has no column {top!r}; "
                                      f"columns: {', '.join(sorted(stored))}")
                if path and top not in JSON_COLUMNS[dataset]:
                    raise ConfigError(f"expectations.{dataset}[{index}]: {top!r} is not a JSON column, so "
                                      f"{column!r} names no key in it")
                json_path = "$." + ".".join(_json_key(k) for k in path.split(".")) if path else ""
                projections[column] = (f"json_extract_string({top}, {sql_string(json_path)})" if path
                                       else quote_identifier(top))
        selects = ", ".join(f"{sql} AS {quote_identifier(name)}" for name, sql in projections.items())
        frame = data.frame(f"SELECT event_id AS __event_id, ts AS __ts{', ' + selects if selects else ''} "
                           f"FROM {dataset} WHERE {data.time_filter(since=since)} ORDER BY __ts")
        for name in projections:  # JSON keys arrive as text: numbers become numbers when every value is one
            if "." in name and frame[name].dtype == pl.String:
                numbers = frame[name].cast(pl.Float64, strict=False)
                if numbers.null_count() == frame[name].null_count():
                    frame = frame.with_columns(numbers.alias(name))
        return frame

    def evaluate(self, step: Step) -> list[Finding]:  # at most every `every_minutes`: the engine re-reports between
        findings = []
        self.worker.wait(list(self.suite_keys.values()))  # a refused suite fails the check, rows or not
        for dataset in self.frames:
            findings.extend(self._run(dataset, step.at))
        return findings

    def _run(self, dataset: str, at: datetime) -> list[Finding]:
        opts = self.options
        frame = self.frames[dataset]
        start = at - timedelta(minutes=opts.window_minutes)
        times = frame["__ts"]
        lo, hi = times.search_sorted(start, "right"), times.search_sorted(at, "right")
        window = frame.slice(lo, hi - lo)
        if window.is_empty():
            return []
        sampled = len(window) > opts.max_rows
        if sampled:
            window = window.sample(opts.max_rows, seed=0)
        table = window.drop("__ts").rename({"__event_id": "event_id"}) if "event_id" not in window.columns \
            else window.drop("__ts", "__event_id")
        results = self.worker.validate(self.suite_keys[dataset], table.to_arrow(), {
            "result_format": "SUMMARY", "unexpected_index_column_names": ["event_id"], "partial_unexpected_count": 20,
        })
        findings = []
        for outcome in results:
            index = outcome["index"]
            spec = self.specs[dataset][index]
            if outcome["exception"] is not None:
                raise RuntimeError(f"expectations.{dataset}[{index}] ({spec.expectation}) could not run: "
                                   f"{outcome['exception']}")
            if not outcome["success"]:
                findings.append(self._finding(dataset, spec, outcome["result"], window, start, at, sampled))
        return findings

    def _finding(self, dataset: str, spec: ExpectationSpec, result: dict, window: pl.DataFrame, start: datetime,
                 at: datetime, sampled: bool) -> Finding:
        rows = len(window)
        unexpected = result.get("unexpected_count")
        ids = [str(r.get("event_id")) for r in result.get("partial_unexpected_index_list") or [] if r.get("event_id")]
        times = window.filter(pl.col("__event_id").is_in(ids))["__ts"] if ids else None
        started = times.min() if times is not None and len(times) else start
        if unexpected is not None:
            share = result.get("unexpected_percent") or 0.0
            what = f"{unexpected:,} of {result.get('element_count') or rows:,} {dataset} ({share:.1f}%)"
        else:
            what = f"The {rows:,} {dataset} (observed {json_safe(result.get('observed_value'))})"
        detail = f" ({spec.expectation} on {spec.column})" if spec.name and spec.column else ""
        summary = (f"{what} in the {self.options.window_minutes:g} min to {at:%a %H:%M} UTC fail the expectation "
                   f"'{spec.label}'{detail}.")
        evidence = {
            "dataset": dataset, "expectation": spec.expectation, "column": spec.column,
            "kwargs": json_safe(spec.kwargs), "rows_checked": rows, "sampled": sampled,
            "window": [start.isoformat(), at.isoformat()],
            **{k: json_safe(result[k]) for k in ("element_count", "unexpected_count", "unexpected_percent",
                                                   "missing_count", "partial_unexpected_list",
                                                   "partial_unexpected_counts", "observed_value") if k in result},
        }
        return Finding(
            check=self.name, subject={"dataset": dataset, "expectation": spec.label}, severity=spec.severity,
            summary=summary, started_at=started if isinstance(started, datetime) else start,
            affected=int(unexpected if unexpected is not None else rows), evidence=evidence,
            sample_event_ids=ids[:SAMPLE_IDS],
        )


def _json_key(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'

