"""``agentwatch demo``: simulate the demo month, ingest it, and say what is in the store."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from collector.datasets import ACTIONS, OUTCOMES
from collector.demo.simulate import SimulationConfig, SimulationFiles, simulate
from collector.home import Home
from collector.ingest.pipeline import ingest_files
from collector.ingest.snapshots import ingest_snapshot_files
from collector.store.reader import open_reader


def run_demo(home: Home, days: int = 30, seed: int = 7, console: Console | None = None) -> SimulationFiles:
    """Write the simulated month under ``<home>/demo-data`` and ingest it (idempotent on re-runs)."""
    console = console or Console()
    config = SimulationConfig(days=days, seed=seed)
    config = replace(config, rename_day=min(config.rename_day, max(days - 3, 0)))
    console.print(f"simulating {days} days of inbound-lead agent traffic (seed {seed}) ...", highlight=False)
    files = simulate(home.root / "demo-data", config)
    for report in (
        ingest_snapshot_files(home, files.schema_snapshots),
        ingest_files(home, ACTIONS, [files.actions]),
        ingest_files(home, OUTCOMES, [files.outcomes]),
    ):
        console.print(f"  {report.closing_line()} in {report.seconds:.1f} s", highlight=False)
    _print_summary(home, files, console)
    return files


def _print_summary(home: Home, files: SimulationFiles, console: Console) -> None:
    con = open_reader(home)
    try:
        actions, agents, first, last = con.execute(
            "SELECT count(*), count(DISTINCT agent_id), min(ts), max(ts) FROM actions").fetchall()[0]
        null_reads = con.execute(
            "SELECT count(*) FROM actions WHERE agent_id = 'lead-router' AND ts >= $1 "
            "AND json_exists(inputs, '$.deal_stage') AND inputs ->> 'deal_stage' IS NULL",
            [files.rename_at]).fetchall()[0][0]
    finally:
        con.close()
    console.print(f"store {home.root}: {actions:,} actions from {agents} agents, {first:%Y-%m-%d} .. {last:%Y-%m-%d}",
                  highlight=False)
    console.print(
        f"the fault: Lead.deal_stage renamed opportunity_stage at {files.rename_at:%Y-%m-%d %H:%M} UTC; since then "
        f"the router read deal_stage as null {null_reads:,} times and enrolled "
        f"{files.summary['nurture_enrolments_of_open_deals_after_rename']:,} open-deal leads into cold nurture",
        highlight=False)
