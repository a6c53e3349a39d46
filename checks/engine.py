"""Run the checks: once at one time (``agentwatch check``) or at every step of a range (backtest).

Both paths are the same loop: prepare every enabled check once over the data range, then evaluate
each step in time order, feeding findings into the incident book and linking causes to effects.
A check that fails is reported and skipped; it never stops the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import duckdb

from agentwatch.checks.activity import Activity
from agentwatch.checks.base import REGISTRY, Check, Clearance, Finding, Step
from agentwatch.checks.book import IncidentBook
from agentwatch.checks.catalog import load_all
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import EvalData
from agentwatch.checks.incidents import IncidentStore, incident_number
from agentwatch.checks.lanes import prepare_in_lanes
from agentwatch.checks.linking import link_incidents
from agentwatch.checks.options import options_for
from agentwatch.checks.phases import spread_phases
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home
from agentwatch.core.locks import WriteLock
from agentwatch.schemas.incidents import Incident
from agentwatch.store.kept_rows import KeptRows
from agentwatch.store.reader import open_reader
from agentwatch.store.rollups import SMALL_RANGE_BYTES, RollupStore

RUN_LOCK_TIMEOUT_S = 600.0  # a backtest may hold the store this long before a scheduled run gives up
# How far back an open incident may pull a run's reads: an incident left open for months must not make every
# run read months. Within it, a live run reads what a backtest running since before the incident reads.
ANCHOR_LIMIT = timedelta(days=30)


@dataclass
class RunReport:
    """What a run of the checks did."""

    steps: int
    opened: list[tuple[datetime, Incident]] = field(default_factory=list)  # (step time, incident as opened)
    failures: dict[str, str] = field(default_factory=dict)  # check name -> error
    prepare_seconds: dict[str, float] = field(default_factory=dict)  # check name -> time spent in prepare
    resting: list[str] = field(default_factory=list)  # checks not due in this one-step run: not prepared
    seconds: float = 0.0
    incidents: list[Incident] = field(default_factory=list)  # every incident the run touched, final state


def incident_store(home: Home) -> IncidentStore:
    return IncidentStore(home.incidents_file)


def enabled_checks(config: ChecksConfig, only: list[str] | None = None) -> list[Check]:
    load_all()
    unknown = sorted(set(only or []) - set(REGISTRY))
    if unknown:
        raise ConfigError(f"unknown check {', '.join(unknown)}; known checks: {', '.join(sorted(REGISTRY))}")
    checks = []
    for name, cls in sorted(REGISTRY.items()):
        options = options_for(config, name)
        if options.enabled:
            checks.append(cls(options, config))
    spread_phases(checks)  # over every enabled check, so `--only` keeps the phases a full run has
    return [c for c in checks if not only or c.name in only]


StepHook = Callable[[datetime, list[Incident]], None]


def evaluate(home: Home, config: ChecksConfig, steps: list[datetime], store: IncidentStore,
             only: list[str] | None = None, checks: list[Check] | None = None,
             on_step: StepHook | None = None, recompute: bool = False, now: datetime | None = None,
             small_range_bytes: int = SMALL_RANGE_BYTES, kept: KeptRows | None = None) -> RunReport:
    """Evaluate every enabled check at each step and save the incidents into `store`.

    `checks` are check objects built by an earlier call of :func:`enabled_checks` with the same config, kept
    by a caller that evaluates again and again (the scheduler), so what a check remembers between steps
    (when it last ran Evidently or a suite) holds across runs. `on_step(at, incidents)` is called after each
    step with every incident the run knows (a replay of notifications plans at each step with it).

    The checks read their aggregates from the home (``agentwatch.store.rollups``), brought up to date with the
    events arrived since the last run, as of the wall clock (`now` stands in for it); `recompute` computes every
    aggregate from the events instead, storing nothing (the reference the stored ones are tested against), as a run
    does anyway over less than `small_range_bytes` of parts. `kept` holds the stored files' rows in memory for a
    caller that runs again and again (the scheduler), so the next run does not read them again."""
    started = time.perf_counter()
    checks = checks if checks is not None else enabled_checks(config, only)
    report = RunReport(steps=len(steps))
    if not steps:
        return report
    # One run at a time per incident store (serve's scheduler and a manual `check` may overlap): two runs
    # would both open an incident for the same new finding.
    run_lock = WriteLock(store.path.with_name(store.path.name + ".run-lock"), timeout_s=RUN_LOCK_TIMEOUT_S)
    with run_lock:
        rollups = None if recompute else RollupStore(home, open_reader(home), now, small_range_bytes, kept)
        _evaluate_locked(home, config, steps, store, checks, report, on_step, rollups)
    report.seconds = time.perf_counter() - started
    return report


def _evaluate_locked(home: Home, config: ChecksConfig, steps: list[datetime], store: IncidentStore, checks: list[Check],
                     report: RunReport, on_step: StepHook | None, rollups: RollupStore | None) -> None:
    con = rollups.con if rollups is not None else open_reader(home)
    lanes: list[duckdb.DuckDBPyConnection] = []  # the second lane's connection, once opened
    try:
        data, book = _run_data(home, config, steps, store, checks, con, rollups)
        cadences = store.cadences()
        for check in checks:  # a fresh process (`check`) keeps the cadence the last run left
            check.restore_cadence(cadences.get(check.name))
        open_checks = {i.check for i in book.open_incidents().values()}
        # A one-step run (serve's minute) does not prepare a check that is not due: its last findings stand. One with
        # an open incident is prepared all the same (not evaluated): the incident's clearance reads what it prepared.
        resting = [c for c in checks if len(steps) == 1 and not c.due(steps[0]) and c.name not in open_checks]
        report.resting = [c.name for c in resting]
        preparing = sorted((c for c in checks if c not in resting), key=lambda c: not c.prepares_in_background)

        def second_lane() -> EvalData:  # the cadenced checks' (agentwatch.checks.lanes): a connection of its own
            lane_con = open_reader(home)
            lanes.append(lane_con)
            lane_rollups = (RollupStore(home, lane_con, rollups.now, rollups.small_bytes, rollups.kept)
                            if rollups is not None else None)
            return replace(data, con=lane_con, rollups=lane_rollups, _shared={})

        ready = [*resting, *prepare_in_lanes(preparing, data, second_lane, report.failures, report.prepare_seconds)]
        resolve_after = {c.name: timedelta(minutes=c.options.resolve_after_minutes) for c in ready}
        evaluated = {c.name for c in ready}
        by_name = {c.name: c for c in ready}
        activity = Activity(data)
        for at in steps:
            step = Step(at=at, open_incidents=book.open_incidents())
            findings: list[Finding] = []
            for check in ready:
                if check.name in report.failures:
                    continue
                try:
                    if check.due(at):
                        check.last_findings, check.evaluated_at = check.evaluate(step), at
                    findings.extend(check.last_findings)
                except Exception as exc:
                    report.failures[check.name] = f"{type(exc).__name__} at {at.isoformat()}: {exc}"

            def clearance(incident: Incident, step: Step = step) -> Clearance:
                try:
                    return by_name[incident.check].clearance(step, incident, activity)
                except Exception as exc:  # a failing check keeps its incidents open and is reported
                    report.failures[incident.check] = f"{type(exc).__name__} clearing {incident.id}: {exc}"
                    return Clearance(False, f"{incident.check} failed while judging whether this cleared")

            for incident in book.apply(findings, at, resolve_after, evaluated - set(report.failures), clearance):
                report.opened.append((at, incident))
            link_incidents(book)
            if on_step:
                on_step(at, list(book.by_id.values()))
        report.incidents = [book.by_id[i] for i in sorted(book.touched, key=incident_number)]
        store.save(report.incidents, book.first_number)
        store.save_cadences({c.name: state for c in ready if (state := c.cadence_state()) is not None})
    finally:
        for lane_con in lanes:
            lane_con.close()
        con.close()


def _run_data(home: Home, config: ChecksConfig, steps: list[datetime], store: IncidentStore, checks: list[Check],
              con: duckdb.DuckDBPyConnection, rollups: RollupStore | None) -> tuple[EvalData, IncidentBook]:
    """What the run's checks read (as far back as the one needing most history), and the incident book as the run
    begins."""
    history = max((c.history for c in checks), default=timedelta(days=1))
    unresolved, number = store.load_book()
    # Open incidents freeze their checks' baselines at their start: read back from there too, so a live run
    # sees what a backtest running since before the incident sees.
    anchor = max(min([steps[0], *(i.started_at for i in unresolved)]), steps[0] - ANCHOR_LIMIT)
    book = IncidentBook(unresolved, number)
    open_since = {key: incident.started_at for key, incident in book.open_incidents().items()}
    data = EvalData(con=con, config=config, first=steps[0], last=steps[-1], load_from=anchor - history,
                    anchor=anchor, rollups=rollups, open_since=open_since, home=home)
    return data, book


def prepare_ahead(home: Home, config: ChecksConfig, at: datetime, store: IncidentStore, checks: list[Check],
                  kept: KeptRows, names: list[str], small_range_bytes: int = SMALL_RANGE_BYTES,
                  lock_timeout_s: float = RUN_LOCK_TIMEOUT_S) -> dict[str, str]:
    """serve, after a minute's run in which an hour settled: prepare the checks `names` (those that rested), nothing
    evaluated and no incident touched, so the aggregates their next run reads are stored and held by then. A check
    with a cadence prepared in the first minute it fell due after each hour: that minute stored the hour for its
    rollups (0.3 to 0.4 s on the store of ``bench/check_speed.py``), here it is done outside any run's minute.
    Returns the failures (check name -> error); a failure here is retried when the check falls due. Raises
    StoreError when another run holds the store past `lock_timeout_s`."""
    # Not a check preparing in another process (the expectation suites): its work is collected when it evaluates.
    chosen = [c for c in checks if c.name in names and not c.prepares_in_background]
    failures: dict[str, str] = {}
    if not chosen:
        return failures
    run_lock = WriteLock(store.path.with_name(store.path.name + ".run-lock"), timeout_s=lock_timeout_s)
    with run_lock:
        rollups = RollupStore(home, open_reader(home), at, small_range_bytes, kept)
        try:
            data, _ = _run_data(home, config, [at], store, checks, rollups.con, rollups)
            for check in chosen:
                try:
                    check.prepare(data)
                except Exception as exc:  # reported, never raised: the check prepares again when due
                    failures[check.name] = f"{type(exc).__name__}: {exc}"
        finally:
            rollups.con.close()
    return failures


def backtest_steps(start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    """Evaluation times from `start` to `end` inclusive, `every` apart."""
    if every <= timedelta(0):
        raise ConfigError("--every must be a positive duration such as 15m")
    if end < start:
        raise ConfigError("--end is before --start")
    steps, at = [], start
    while at <= end:
        steps.append(at)
        at += every
    return steps
