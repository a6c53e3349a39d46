"""``agentwatch agent pause|resume|status`` (filled in by the agent guard work)."""

from __future__ import annotations

import typer

agent_app = typer.Typer(help="Pause and resume agents; see why an agent is paused.", no_args_is_help=True)
