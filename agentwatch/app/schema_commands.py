"""The ``schema`` command group: ``agentwatch schema poll`` runs the CRM schema pollers of the ``crm:`` section
(docs/crm.md) from the command line; and the pollers' table of ``agentwatch status``."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from agentwatch.app.crm_polling import CrmPolling
from agentwatch.app.options import ConfigOption, HomeOption
from agentwatch.app.tables import Column, print_table
from agentwatch.collector.crm.poller import PollOutcome
from agentwatch.core.home import Home

out = Console()
err = Console(stderr=True)
schema_app = typer.Typer(help="Watch the CRM's schema: poll Salesforce and HubSpot (the crm: section).",
                         no_args_is_help=True)


@schema_app.command("poll")
def poll(
    once: Annotated[bool, typer.Option("--once", help="Poll every configured object once, print what changed and "
                                                      "exit (1 when a poll failed).")] = False,
    object_name: Annotated[str | None, typer.Option("--object", help="Poll only this object of the crm: section, "
                                                                     "e.g. Lead or contacts.")] = None,
    config: ConfigOption = None,
    home: HomeOption = None,
) -> None:
    """Poll the CRM schemas of the crm: section and store a snapshot when fields changed (or the daily heartbeat is
    due). Without --once, polls every crm.poll_minutes until Ctrl-C (`agentwatch serve` does this by itself)."""
    polling = CrmPolling(Home.resolve(home), config, on_poll=_print_outcome)
    outcomes = polling.poll_once(object_name)  # a mistake in the config ends here, as one error line
    for outcome in outcomes:
        _print_outcome(outcome)
    if once:
        if not all(outcome.ok for outcome in outcomes):
            raise typer.Exit(1)
        return
    out.print(f"polling every crm.poll_minutes; stop: Ctrl-C{' (only ' + object_name + ')' if object_name else ''}",
              highlight=False, markup=False)
    with contextlib.suppress(KeyboardInterrupt):
        polling.run_forever(object_name)


def _print_outcome(outcome: PollOutcome) -> None:
    line = escape(outcome.describe())
    if outcome.ok:
        out.print(line, highlight=False, soft_wrap=True)
    else:
        err.print(f"[red]failed:[/] {line}", highlight=False, soft_wrap=True)


def _short(iso_time: str | None) -> str:
    return iso_time[:16].replace("T", " ") if iso_time else "-"


POLLER_COLUMNS = [Column("poller"), Column("last success (UTC)"), Column("failing since (UTC)"),
                  Column("next run (UTC)"), Column("API usage"), Column("last error", prose=True)]


def print_pollers(pollers: list[dict[str, Any]]) -> None:
    """The pollers of ``agentwatch status``: last success, last error, next run (a line when there are none)."""
    if not pollers:
        out.print("CRM schema pollers: none (the crm: section of agentwatch.yaml, docs/crm.md)", highlight=False)
        return
    rows = []
    for row in pollers:
        failing = _short(row["failing_since"]) + (" (past grace)" if row["failing_past_grace"] else "")
        error = f"{_short(row['last_error_at'])}: {row['last_error']}" if row["last_error"] else "-"
        rows.append([row["poller"], _short(row["last_success_at"]), failing if row["failing_since"] else "-",
                     _short(row["next_run_at"]), row["api_usage"] or "-", error])
    print_table(POLLER_COLUMNS, rows, title="CRM schema pollers")
