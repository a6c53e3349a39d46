"""``agentwatch agent pause|resume|status``: an operator stops or frees an agent, with who and why on record."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.guard import UNRESOLVED, AgentControls, decide
from agentwatch.alerts.silences import operator_name
from agentwatch.app.config import config_for
from agentwatch.app.options import ConfigOption, HomeOption
from agentwatch.app.tables import INDENT, Column, print_paragraph, print_table
from agentwatch.checks.engine import incident_store
from agentwatch.core.home import Home

out = Console()
agent_app = typer.Typer(help="Pause and resume agents; see why an agent is paused.", no_args_is_help=True)

AgentArgument = Annotated[str, typer.Argument(help="The agent_id its events carry, e.g. lead-router.",
                                              show_default=False)]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (required; it is recorded).",
                                                  show_default=False)]
ByOption = Annotated[str | None, typer.Option("--by", help="Who is doing it (default: $USER@hostname).",
                                              show_default=False)]
SHOWN_CONTROLS = 5
CONTROL_COLUMNS = [Column("at (UTC)"), Column("action"), Column("by"), Column("reason", prose=True)]


def _controls(home: Home) -> AgentControls:
    return AgentControls(alerts_db(home))


@agent_app.command("pause")
def pause(agent_id: AgentArgument, reason: ReasonOption = None, by: ByOption = None, home: HomeOption = None) -> None:
    """Pause an agent: its guard answers allowed=false until someone resumes it."""
    control = _controls(Home.resolve(home)).pause(agent_id, by if by is not None else operator_name(), reason or "")
    out.print(f"paused {control.agent_id} (by {control.by}): {control.reason}", highlight=False, markup=False,
              soft_wrap=True)


@agent_app.command("resume")
def resume(agent_id: AgentArgument, reason: ReasonOption = None, by: ByOption = None, home: HomeOption = None) -> None:
    """Resume an agent: ends an operator's pause and overrides the incidents open now that pause it."""
    control = _controls(Home.resolve(home)).resume(agent_id, by if by is not None else operator_name(), reason or "")
    out.print(f"resumed {control.agent_id} (by {control.by}): {control.reason}", highlight=False, markup=False,
              soft_wrap=True)


@agent_app.command("status")
def status(
    agent_id: AgentArgument,
    config: ConfigOption = None,
    home: HomeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision and the controls as JSON.")] = False,
) -> None:
    """Whether the agent may act now (what its guard answers), and its last pauses and resumes."""
    resolved = Home.resolve(home)
    loaded = config_for(resolved, config)
    controls = _controls(resolved)
    decision = decide(agent_id, incident_store(resolved).list(UNRESOLVED), controls, loaded.guard,
                      loaded.policy_for(agent_id))
    recent = controls.history(agent_id, SHOWN_CONTROLS)
    if as_json:
        body = {"agent_id": agent_id, **decision.model_dump(mode="json"),
                "controls": [c.model_dump(mode="json") for c in recent]}
        out.print_json(json.dumps(body))
        return
    verdict = "allowed" if decision.allowed else f"NOT allowed: {decision.reason}"
    print_paragraph(f"{agent_id}: {verdict}", later=INDENT)
    if recent:
        print_table(CONTROL_COLUMNS, ([control.at.strftime("%Y-%m-%d %H:%M:%S"), control.action, control.by,
                                       control.reason] for control in recent),
                    title="last pauses and resumes, newest first")
