"""``agentwatch alerts test|outbox|deliver|retry``."""

from __future__ import annotations

import typer

alerts_app = typer.Typer(help="Send test notifications; inspect and flush the notification outbox.",
                         no_args_is_help=True)
