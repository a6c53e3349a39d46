"""Detection benchmark: inject each failure family into realistic traffic, backtest, score the incidents.

Run: ``.venv/bin/python bench/detection.py [--seeds 7 8 9 10] [--weeks 2] [--leads-per-day 2000] [--family F]
[--json]``.

1. Clean traffic is generated (``bench/scenarios/traffic.py``) over a warm-up history as long as the checks'
   longest baseline plus the evaluation weeks: four agents work every inbound lead (with approvals before
   each email, a trickle of people arriving twice, reps setting a few written fields back), and two scheduled
   jobs run beside them (a nightly sweep and a weekly import, each starting up to 3 h late). The history is
   ingested once into a template home (JSONL through ``ingest_files``, CRM snapshots through
   ``ingest_snapshot_items``).
2. Each scenario copies the template, adds the evaluation week's first days with its faults injected on
   the Tuesday, and backtests every check at 15-minute steps from Tuesday 00:00 with the real engine
   (one day; two for the slow outcome and drift families).
3. A clean run adds whole weeks with only benign changes (a new unused field, a holiday, two regional
   holidays, a Monday-morning burst, quiet weekends, 2 %/day growth, the jobs' jitter, a mostly-null
   field): every warning or critical incident there is a false one.

Prints per seed and family: detected or not, the detection delay (incident ``opened_at`` minus the injection
time, both event time) and the false incidents per clean week, as Markdown for docs/benchmarks.md; with several
seeds, the families and false incidents of all of them together. Exits 1 when a target is missed
(``scenarios/scoring.py``): every family detected; median delay under 30 min for the fast families, under 24 h
for outcome and drift, under 8 h for approval and a missed scheduled run, under 6 h for identity collisions; at
most 0.5 false warning-or-critical incidents per clean week, all seeds together.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import yaml
from scenarios import crm_schema, faults, outcomes, scoring, store, traffic
from scenarios.config import bench_config
from scenarios.faults import SCENARIOS, Scenario
from scenarios.timeline import Timeline

from agentwatch.app.config import Config
from agentwatch.checks.engine import RunReport, backtest_steps, enabled_checks, evaluate, incident_store
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident

STEP = timedelta(minutes=15)
MIN_WARMUP_DAYS = 7


@dataclass
class Traffic:
    actions: dict[str, pl.DataFrame]
    outcomes: dict[str, pl.DataFrame]


def warmup_days(config: Config) -> int:
    """Whole days of history the checks need before the first evaluation, plus one of slack."""
    longest = max((c.history for c in enabled_checks(config)), default=timedelta(days=1))
    return max(MIN_WARMUP_DAYS, math.ceil(longest / timedelta(days=1)) + 1)


def generate(seed: int, timeline: Timeline, scenario: Scenario | None = None) -> Traffic:
    """The traffic of a scenario (None: clean), deterministic for a seed."""
    knobs = traffic.Knobs(**{k: v for f in (scenario.faults if scenario else ()) for k, v in f.knobs.items()})
    lead_frame = traffic.leads(np.random.default_rng(seed), timeline, knobs)
    frames = {**traffic.actions(lead_frame), **traffic.scheduled_jobs(seed, timeline, knobs)}
    if scenario is not None:
        frames = faults.apply(frames, scenario.faults)
    return Traffic(frames, outcomes.outcomes(frames))


def run_checks(home: Home, config: Config, start: datetime, end: datetime) -> RunReport:
    report = evaluate(home, config, backtest_steps(start, end, STEP), incident_store(home))
    for name, error in report.failures.items():
        print(f"  check {name} failed: {error}", file=sys.stderr)
    return report


def build_template(work: Path, timeline: Timeline, clean: Traffic) -> Path:
    """A home holding the clean history before evaluation starts."""
    root = work / "template"
    home = Home.resolve(root)
    snaps = crm_schema.snapshots(timeline, timeline.start, timeline.eval_start)
    stored = store.ingest(home, work / "input-history", clean.actions, clean.outcomes, snaps,
                          timeline.start, timeline.eval_start)
    print(f"history: {timeline.warmup_days} days, {stored:,} events stored", file=sys.stderr)
    return root


def run_scenario(work: Path, template: Path, seed: int, timeline: Timeline, config: Config,
                 scenario: Scenario) -> tuple[list[scoring.Detection], list[dict], float]:
    started = time.perf_counter()
    data = generate(seed, timeline, scenario)
    end = scenario.end
    home = store.copy_home(template, work / scenario.name)
    rename_at = next((f.at for f in scenario.faults if f.renames_deal_stage), None)
    snaps = crm_schema.snapshots(timeline, timeline.eval_start, end, rename_at=rename_at)
    store.ingest(home, work / f"input-{scenario.name}", data.actions, data.outcomes, snaps, timeline.eval_start, end)
    report = run_checks(home, config, scenario.start, end)
    detections = [scoring.detect(f, scenario.name, report.incidents) for f in scenario.faults]
    others = [scoring.describe(i) for i in scoring.unexplained(scenario.faults, report.incidents)]
    seconds = time.perf_counter() - started
    caught = sum(d.incident is not None for d in detections)
    print(f"scenario {scenario.name}: {caught}/{len(detections)} caught, {len(others)} other paging incidents, "
          f"{report.steps} steps, checks {report.seconds:.1f} s, total {seconds:.1f} s", file=sys.stderr)
    return detections, others, seconds


def run_clean(work: Path, template: Path, timeline: Timeline, config: Config,
              clean: Traffic) -> tuple[list[Incident], Counter[str]]:
    """The clean weeks' paging incidents (all false) and the count of info incidents per check."""
    started = time.perf_counter()
    home = store.copy_home(template, work / "clean")
    snaps = crm_schema.snapshots(timeline, timeline.eval_start, timeline.end)
    store.ingest(home, work / "input-clean", clean.actions, clean.outcomes, snaps, timeline.eval_start, timeline.end)
    report = run_checks(home, config, timeline.eval_start, timeline.end)
    false = [i for i in report.incidents if i.severity in scoring.PAGES]
    info = Counter(i.check for i in report.incidents if i.severity not in scoring.PAGES)
    print(f"clean: {len(false)} paging incidents in {timeline.weeks} week(s), {report.steps} steps, "
          f"checks {report.seconds:.1f} s, total {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return false, info


def overrides(settings: list[str], parser: argparse.ArgumentParser) -> dict[str, dict[str, object]]:
    """``--set check.name.option=value`` as the config's ``checks:`` section (values read as YAML)."""
    checks: dict[str, dict[str, object]] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        name, dot, option = key.rpartition(".")
        if not (sep and dot and name and option):
            parser.error(f"--set {setting}: expected CHECK.OPTION=VALUE, e.g. volume.action_drop.peer_floor=0.15")
        checks.setdefault(name, {})[option] = yaml.safe_load(value)
    return checks


def run_seed(seed: int, args: argparse.Namespace, config: Config, timeline: Timeline) -> dict:
    """Every chosen scenario and the clean weeks for one seed: detections, false and info incidents, others."""
    chosen = [s for s in SCENARIOS if args.family in (None, s.name) or any(f.family == args.family for f in s.faults)]
    if args.family == "clean":
        chosen = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agentwatch-detection-") as tmp:
        work = (args.keep / f"seed-{seed}") if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        clean = generate(seed, timeline)
        template = build_template(work, timeline, clean)
        detections, others = [], {}
        for scenario in chosen:
            scenario = replace(scenario, faults=tuple(f for f in scenario.faults
                                                      if args.family in (None, scenario.name, f.family)))
            found, other, _ = run_scenario(work, template, seed, timeline, config, scenario)
            detections += found
            others[scenario.name] = other
        false, info = run_clean(work, template, timeline, config, clean) if args.family in (None, "clean") \
            else (None, Counter())
    return {"seed": seed, "detections": detections, "false": false, "info": info, "others": others,
            "seconds": time.perf_counter() - started}


def print_seed(result: dict, args: argparse.Namespace, timeline: Timeline) -> None:
    false, info, others = result["false"], result["info"], result["others"]
    print(f"\nSeed {result['seed']}, {args.leads_per_day:,} leads per weekday, {timeline.warmup_days} days of history, "
          f"{args.weeks} clean week(s), {result['seconds']:.0f} s."
          + (f" Options: {' '.join(args.set)}." if args.set else "") + "\n")
    print(scoring.markdown(result["detections"], false, args.weeks))
    if false:
        print("\nFalse incidents in the clean run (warning or critical):\n")
        for i in false:
            subject = scoring.subject_text(i.subject)
            print(f"- {i.opened_at:%a %d %H:%M} {i.severity} `{i.check}` {subject}: {i.summary}")
    if info:
        counted = ", ".join(f"`{check}` {n}" for check, n in sorted(info.items()))
        print(f"\nInfo incidents in the clean run (not pages, not counted): {counted}")
    for name, items in others.items():
        if items:
            print(f"\nOther paging incidents in scenario {name} (cascades or noise; not counted):\n")
            for i in items:
                print(f"- {i['opened_at'][:16]} {i['severity']} `{i['check']}` {scoring.subject_text(i['subject'])}: "
                      f"{i['summary']}")


def as_json(result: dict) -> dict:
    detections, false = result["detections"], result["false"]
    return {"seed": result["seed"], "seconds": round(result["seconds"], 1),
            "detections": [d.as_dict() for d in detections],
            "families": [{"family": r.family, "detected": r.detected, "faults": r.faults, "passed": r.passed,
                          "median_delay_minutes": None if r.median_delay is None
                          else round(r.median_delay.total_seconds() / 60, 1)} for r in scoring.by_family(detections)],
            "false_incidents": None if false is None else [scoring.describe(i) for i in false],
            "clean_info_incidents": dict(result["info"]), "other_incidents_in_fault_runs": result["others"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", "--seed", dest="seeds", type=int, nargs="+", default=[7],
                        help="one run per seed; with several, a combined table follows (e.g. --seeds 7 8 9 10)")
    parser.add_argument("--weeks", type=int, default=1, help="clean weeks evaluated for false incidents")
    parser.add_argument("--leads-per-day", type=int, default=2000, help="leads on a weekday when evaluation starts")
    names = sorted({*faults.FAMILIES, *(s.name for s in SCENARIOS), "clean"})
    parser.add_argument("--family", choices=names, help="run only this family (or scenario, or clean)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", type=Path, help="build the homes in this folder and keep them")
    parser.add_argument("--set", action="append", default=[], metavar="CHECK.OPTION=VALUE",
                        help="override a check option, e.g. volume.action_drop.peer_floor=0.15 (repeatable)")
    args = parser.parse_args(argv)

    config = bench_config(overrides(args.set, parser))
    timeline = Timeline(warmup_days(config), args.weeks, args.leads_per_day)
    started = time.perf_counter()
    results = []
    for seed in args.seeds:
        results.append(run_seed(seed, args, config, timeline))
        if not args.json:
            print_seed(results[-1], args, timeline)
    detections = [d for r in results for d in r["detections"]]
    clean_runs = [r["false"] for r in results if r["false"] is not None]
    false = [i for run in clean_runs for i in run] if clean_runs else None
    weeks = args.weeks * max(len(clean_runs), 1)
    ok = scoring.passed(detections, false, weeks)
    if args.json:
        print(json.dumps({"seeds": args.seeds, "weeks": args.weeks, "options": args.set,
                          "leads_per_day": args.leads_per_day, "warmup_days": timeline.warmup_days,
                          "seconds": round(time.perf_counter() - started, 1), "runs": [as_json(r) for r in results],
                          "passed": ok}, indent=2))
        return 0 if ok else 1
    if len(results) > 1:
        print(f"\nAll {len(results)} seeds ({', '.join(map(str, args.seeds))}) together: every fault of every seed, "
              f"{weeks} clean weeks, {time.perf_counter() - started:.0f} s.\n")
        print(scoring.markdown(detections, false, weeks, faults_table=False))
    print("\nAll targets met." if ok else "\nTargets missed.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
