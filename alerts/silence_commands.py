"""``agentwatch silence add|list|expire`` (filled in by the silences work)."""

from __future__ import annotations

import typer

silence_app = typer.Typer(help="Silence notifications for matching incidents (they are still recorded).",
                          no_args_is_help=True)
