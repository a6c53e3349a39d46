"""``agentwatch demo``: simulate the demo month, ingest it, and say what is in the store."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from rich.console import Console

from agentwatch.alerts.guard import pausing_incidents
from agentwatch.app.alerting import alert_pass
from agentwatch.app.check_commands import describe
from agentwatch.app.config import config_for
from agentwatch.app.demo.simulate import SimulationConfig, SimulationFiles, simulate
from agentwatch.checks.engine import backtest_steps, evaluate, incident_store
from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.collector.ingest.snapshots import ingest_snapshot_files
from agentwatch.core.home import Home
from agentwatch.core.severity import Severity
from agentwatch.store.datasets import ACTIONS, OUTCOMES
from agentwatch.store.reader import open_reader


def run_demo(home: Home, days: int = 30, seed: int = 7, console: Console | None = None,
             checks: bool = True) -> SimulationFiles:
    """Write the simulated month under ``<home>/demo-data``, ingest it (idempotent on re-runs) and, with
    `checks`, replay the checks over it so the incidents they would have opened are in the store."""
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
    if checks:
        replay_checks(home, config.start + timedelta(days=1), config.start + timedelta(days=days), console)
    return files


def replay_checks(home: Home, start: datetime, end: datetime, console: Console) -> None:
    """Backtest every check over the month at 15-minute steps into a fresh incident store, then show the
    root incidents (those nothing else explains) with what they caused."""

    config_path = home.config_file
    if not config_path.exists():
        config_path.write_text(DEMO_CONFIG)
    for stale in [*home.root.glob(home.incidents_file.name + "*"), *home.root.glob(home.alerts_file.name + "*")]:
        stale.unlink()  # the demo's incidents (and the alert state about them) are the replay's own: start afresh
    steps = backtest_steps(start, end, timedelta(minutes=15))
    console.print(f"replaying the checks over {len(steps):,} 15-minute steps ...", highlight=False)
    store = incident_store(home)
    report = evaluate(home, config_for(home), steps, store)
    for name, problem in report.failures.items():
        console.print(f"  check {name} failed: {problem}", highlight=False)
    found = store.list()
    console.print(f"  {len(found)} incidents in {report.seconds:.0f} s; root incidents of warning or worse, "
                  "open and critical first:", highlight=False)
    # Open and critical first: what a RevOps person reads at the end of the replay is what still hurts.
    roots = sorted((i for i in found if not i.caused_by and i.severity != "info"),
                   key=lambda i: (i.status == "resolved", -Severity(i.severity).rank, i.opened_at))
    for incident in roots:
        console.print(_headline(describe(incident, store)), highlight=False, markup=False, soft_wrap=True)
    # Two commands to copy: one line each, never broken inside a command.
    console.print("list them: .venv/bin/agentwatch incidents", highlight=False, soft_wrap=True)
    console.print("one in full: .venv/bin/agentwatch incident show ID", highlight=False, soft_wrap=True)
    _print_guard(home, console)


def _print_guard(home: Home, console: Console) -> None:
    """Which agents the agent guard now refuses, and why (recording agentwatch's automatic pauses)."""

    alert_pass(home, deliver=False)
    config = config_for(home)
    paused = pausing_incidents(incident_store(home).list(["open", "acknowledged"]), config.guard)
    for agent_id, incidents in sorted(paused.items()):
        console.print(f"agent guard: {agent_id} is paused by {incidents[0].id} {incidents[0].check}; its "
                      f"GET /v1/agents/{agent_id}/guard answers allowed: false until that resolves "
                      f"(or `agentwatch agent resume {agent_id} --reason ...`)", highlight=False, soft_wrap=True)


def _headline(description: str) -> str:
    """An incident's description without its evidence lines: the summary and its causes and effects."""
    keep: list[str] = []
    for line in description.splitlines():
        if line.startswith("  ") and not line.startswith(("  caused by", "  effects", "  began")) and keep[1:]:
            break
        keep.append(line)
    return "\n".join(keep)


DEMO_CONFIG = """\
# agentwatch checks config of the demo (see docs/checks.md for every option).
agents:
  "*":            {forbidden_actions: [record.delete, record.merge]}
  lead-router:    {allowed_actions: [lead.route, lead.assign_owner, sequence.enroll, crm.update_field, task.create],
                   requires_approval: [email.send], max_records_per_action: 5}
workflow:
  object: lead
  state_field: status
  transitions: {new: [enriched, qualified, disqualified], enriched: [qualified, disqualified],
                qualified: [routed, escalated], disqualified: [nurturing, routed]}
  sla_first_action_minutes: 15
fields:
  region: Lead.Region__c
  segment: Lead.Segment__c
  employees: Lead.NumberOfEmployees
checks: {}
guard:            # critical incidents of these checks pause the agents they name (GET /v1/agents/ID/guard)
  pause_on: [schema.field_renamed, schema.field_removed, quality.null_spike]
# alerts:         # where notifications go: see docs/alerts.md
#   destinations: {revops-slack: {type: slack, url_env: SLACK_WEBHOOK_URL}}
#   default: [revops-slack]
"""


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
