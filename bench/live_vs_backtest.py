"""Live path against backtest on the detection benchmark's scenarios: does a backtest predict what `serve` does?

Run: ``.venv/bin/python bench/live_vs_backtest.py [--seed 7] [--family F] [--every 1h] [--leads-per-day 2000]``.

For each scenario of ``bench/detection.py`` (its faults, on its history), the same events are evaluated twice:

1. live, as `serve` and successive `agentwatch check` runs do: the evaluation days arrive in chunks, one per
   step, and each step is a fresh evaluation (new check objects, the incident book read back from the store,
   no memory but the store's);
2. as one backtest over the same steps, with every event already stored.

The incidents must agree: check, subject, severity, start (within one 5-minute bucket), final status and the
agents they name. Prints a Markdown table for docs/benchmarks.md; exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import detection
from scenarios import crm_schema, store
from scenarios.config import bench_config
from scenarios.faults import SCENARIOS, Scenario
from scenarios.timeline import Timeline

from agentwatch.app.config import Config
from agentwatch.checks.engine import backtest_steps, evaluate, incident_store
from agentwatch.core.durations import parse_duration_text
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident

BUCKET_S = 300
JUST_AFTER = timedelta(microseconds=1)  # chunks are [start, end): an event at a step time belongs to that step

Key = tuple[str, str]
Seen = tuple[str, int, str, tuple[str, ...]]


def comparable(incidents: list[Incident]) -> dict[Key, Seen]:
    """(check, subject) -> (severity, start bucket, status, agents named) of the latest incident of a subject."""
    found = {}
    for incident in sorted(incidents, key=lambda i: int(i.id.split("-")[1])):
        found[(incident.check, json.dumps(incident.subject, sort_keys=True))] = (
            incident.severity, int(incident.started_at.timestamp() // BUCKET_S), incident.status,
            tuple(sorted(incident.evidence.get("agents", []))))
    return found


def live(home: Home, data: detection.Traffic, snapshots: list[dict], config: Config, steps: list[datetime],
         work: Path, since: datetime) -> list[Incident]:
    """Feed the events step by step and evaluate each step afresh, as successive `check --as-of` runs do."""
    fed = since
    for number, at in enumerate(steps):
        due = [s for s in snapshots if fed <= datetime.fromisoformat(s["taken_at"]) < at + JUST_AFTER]
        store.ingest(home, work / f"chunk-{number}", data.actions, data.outcomes, due, fed, at + JUST_AFTER)
        fed = at + JUST_AFTER
        evaluate(home, config, [at], incident_store(home))
    return incident_store(home).list()


def compare(work: Path, template: Path, seed: int, timeline: Timeline, config: Config, scenario: Scenario,
            every: timedelta) -> tuple[dict[Key, Seen], dict[Key, Seen], float]:
    started = time.perf_counter()
    data = detection.generate(seed, timeline, scenario)
    rename_at = next((f.at for f in scenario.faults if f.renames_deal_stage), None)
    snapshots = crm_schema.snapshots(timeline, timeline.eval_start, scenario.end, rename_at=rename_at)
    steps = backtest_steps(scenario.start, scenario.end, every)

    replay = store.copy_home(template, work / f"{scenario.name}-backtest")
    store.ingest(replay, work / f"input-{scenario.name}", data.actions, data.outcomes, snapshots,
                 timeline.eval_start, scenario.end + JUST_AFTER)
    backtest = evaluate(replay, config, steps, incident_store(replay)).incidents

    home = store.copy_home(template, work / f"{scenario.name}-live")
    live_incidents = live(home, data, snapshots, config, steps, work / f"live-{scenario.name}", timeline.eval_start)
    return comparable(live_incidents), comparable(backtest), time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--leads-per-day", type=int, default=2000, help="leads on a weekday when evaluation starts")
    parser.add_argument("--family", help="only the scenarios with a fault of this family (or this scenario)")
    parser.add_argument("--every", default="1h", help="time between live runs (and backtest steps), e.g. 30m")
    args = parser.parse_args(argv)
    every = parse_duration_text(args.every)
    config = bench_config()
    timeline = Timeline(detection.warmup_days(config), 1, args.leads_per_day)
    chosen = [s for s in SCENARIOS if args.family in (None, s.name) or any(f.family == args.family for f in s.faults)]
    if not chosen:
        parser.error(f"no scenario has the family {args.family!r}")
    rows, differences = [], 0
    with tempfile.TemporaryDirectory(prefix="agentwatch-live-vs-backtest-") as tmp:
        work = Path(tmp)
        template = detection.build_template(work, timeline, detection.generate(args.seed, timeline))
        for scenario in chosen:
            scenario = replace(scenario, faults=tuple(f for f in scenario.faults
                                                      if args.family in (None, scenario.name, f.family)))
            live_seen, backtest_seen, seconds = compare(work, template, args.seed, timeline, config, scenario, every)
            differ = sorted(k for k in live_seen.keys() | backtest_seen.keys()
                            if live_seen.get(k) != backtest_seen.get(k))
            differences += len(differ)
            for key in differ:
                print(f"  {scenario.name}: {key}: live {live_seen.get(key)} backtest {backtest_seen.get(key)}",
                      file=sys.stderr)
            open_live = sum(seen[2] != "resolved" for seen in live_seen.values())
            rows.append(f"| {scenario.name} | {len(backtest_seen)} | {len(live_seen)} | {open_live} | {len(differ)} "
                        f"| {seconds:.0f} s |")
    print(f"\nSeed {args.seed}, {args.leads_per_day:,} leads per weekday, a live run every {args.every}.\n")
    print("| scenario | incidents (backtest) | incidents (live) | still open (live) | differences | time |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nLive and backtest agree." if not differences else f"\n{differences} differences.")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
