"""The ``agentwatch`` command: a thin shell over the library.

A user mistake ends with one line on stderr saying what is wrong and exit code 2, never a trace.
``ingest`` exits 1 when it rejected events (the valid ones are stored either way), and 2 when a file could not be
read through (its problem is an ``error:`` line; the other files, and the events before the problem, are stored).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from agentwatch.app import audit_commands, check_commands, store_commands
from agentwatch.app.agent_commands import agent_app
from agentwatch.app.alert_commands import alerts_app
from agentwatch.app.config import config_for
from agentwatch.app.dashboard_launch import start_dashboard, wait_for_dashboard
from agentwatch.app.demo.run import run_demo
from agentwatch.app.logs import LogFormat
from agentwatch.app.options import ConfigOption, HomeOption, parse_duration, parse_time
from agentwatch.app.schema_commands import print_pollers, schema_app
from agentwatch.app.silence_commands import silence_app
from agentwatch.app.status import store_status
from agentwatch.app.tables import INDENT, Column, print_paragraph, print_table
from agentwatch.app.version import VersionOption
from agentwatch.collector.ingest.pipeline import FilesNotIngested, IngestReport, expand_paths, ingest_files
from agentwatch.collector.ingest.snapshots import ingest_snapshot_files
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.errors import AgentwatchError, ConfigError
from agentwatch.core.home import Home
from agentwatch.store.datasets import ACTIONS, OUTCOMES

PROGRESS_MIN_BYTES = 20 << 20  # show a progress bar for inputs larger than this

app = typer.Typer(help="agentwatch: observability and drift detection for AI sales agents.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
ingest_app = typer.Typer(help="Ingest events and schema snapshots from files.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
app.add_typer(keys_app, name="keys")
app.command()(check_commands.check)
app.command()(check_commands.backtest)
app.command()(check_commands.incidents)
app.add_typer(check_commands.incident_app, name="incident")
app.add_typer(alerts_app, name="alerts")
app.add_typer(silence_app, name="silence")
app.add_typer(agent_app, name="agent")
app.add_typer(schema_app, name="schema")
app.command()(store_commands.compact)
app.command()(store_commands.erase)
app.command()(audit_commands.audit)

out = Console()
err = Console(stderr=True)


@app.callback()
def _main_options(version: VersionOption = False) -> None:
    pass  # --version acts in its callback; typer needs a function to hang the option on


class EventFormat(StrEnum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    parquet = "parquet"


class SnapshotFormat(StrEnum):
    native = "native"
    salesforce = "salesforce"
    hubspot = "hubspot"


class Scope(StrEnum):
    ingest = "ingest"
    read = "read"
    admin = "admin"


Paths = Annotated[list[Path], typer.Argument(help="Files or folders to ingest.", show_default=False)]


def _print_report(report: IngestReport) -> None:
    for rejection in report.sample:
        err.print(f"[yellow]rejected[/] {rejection.describe()}", highlight=False, soft_wrap=True)
    if report.rejected > len(report.sample):
        err.print(f"... and {report.rejected - len(report.sample):,} more rejected", highlight=False)
    if report.rejects_file:
        err.print(f"rejected events and their errors are in {report.rejects_file}", highlight=False, soft_wrap=True)
    out.print(f"{report.closing_line()} in {report.seconds:.1f} s", highlight=False, soft_wrap=True)


def _ingest_events(home: Path | None, dataset_name: str, paths: list[Path], fmt: EventFormat | None) -> None:
    resolved = Home.resolve(home)
    limits = config_for(resolved, None).limits
    dataset = ACTIONS if dataset_name == "actions" else OUTCOMES
    files = expand_paths(paths)
    total = sum(p.stat().st_size for p in files)
    show = total >= PROGRESS_MIN_BYTES
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), console=err, transient=True, disable=not show)
    finished: dict[Path, int] = {}
    with progress:
        task = progress.add_task(f"ingesting {dataset_name}", total=total)

        def on_progress(path: Path, done_in_file: int) -> None:
            finished[path] = done_in_file
            progress.update(task, completed=sum(finished.values()))

        try:
            report = ingest_files(resolved, dataset, files, fmt.value if fmt else None, on_progress, limits)
        except FilesNotIngested as exc:
            failed: FilesNotIngested | None = exc
            report = exc.report
        else:
            failed = None
    if not failed or report.events_read:
        _print_report(report)
    if failed:  # after the counts: what was stored is said first, then what could not be read
        for failure in failed.failures:
            err.print(f"[red]error:[/] {failure}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    if report.rejected:
        raise typer.Exit(1)


@ingest_app.command("actions")
def ingest_actions(
    paths: Paths,
    fmt: Annotated[EventFormat | None, typer.Option("--format", help="Input format (default: from the name).")] = None,
    home: HomeOption = None,
) -> None:
    """Ingest agent action events (JSONL, JSON, CSV or Parquet; .gz accepted for JSONL)."""
    _ingest_events(home, "actions", paths, fmt)


@ingest_app.command("outcomes")
def ingest_outcomes(
    paths: Paths,
    fmt: Annotated[EventFormat | None, typer.Option("--format", help="Input format (default: from the name).")] = None,
    home: HomeOption = None,
) -> None:
    """Ingest outcome events: rep feedback and business outcomes."""
    _ingest_events(home, "outcomes", paths, fmt)


@ingest_app.command("schema")
def ingest_schema(
    paths: Paths,
    fmt: Annotated[SnapshotFormat, typer.Option("--format", help="Payload format.")] = SnapshotFormat.native,
    taken_at: Annotated[str | None, typer.Option(help="RFC 3339 time of the snapshot if the payload has none.")] = None,
    object_name: Annotated[str | None, typer.Option("--object", help="CRM object, if the payload names none.")] = None,
    home: HomeOption = None,
) -> None:
    """Ingest CRM schema snapshots: native, a Salesforce describe result, or HubSpot properties."""
    when = parse_time(taken_at, "--taken-at") if taken_at else None
    resolved = Home.resolve(home)
    report = ingest_snapshot_files(resolved, paths, fmt.value, when, object_name, config_for(resolved, None).limits)
    _print_report(report)
    if report.rejected:
        raise typer.Exit(1)


def _short(iso_time: str | None) -> str:
    """An ISO time to the minute, UTC, for tables."""
    return iso_time[:16].replace("T", " ") if iso_time else "-"


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    home: HomeOption = None,
) -> None:
    """Show what the store holds: events per agent, first and last event, snapshots, rejects."""
    summary = store_status(Home.resolve(home))
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(f"store: {summary['home']}", highlight=False, soft_wrap=True)
    print_table([Column("agent"), Column("actions"), Column("errors"), Column("first event (UTC)"),
                 Column("last event (UTC)")],
                ([row["agent_id"], f"{row['actions']:,}", f"{row['errors']:,}", _short(row["first_event"]),
                  _short(row["last_event"])] for row in summary["actions"]["agents"]), title="actions by agent")
    _print_spans(summary["spans"])
    outcome = summary["outcomes"]
    out.print(f"outcomes: {outcome['outcomes']:,} ({_short(outcome['first_event'])} .. "
              f"{_short(outcome['last_event'])})", highlight=False)
    print_table([Column("source"), Column("object"), Column("snapshots"), Column("fields now"),
                 Column("last taken (UTC)")],
                ([row["source"], row["object"], str(row["snapshots"]), str(row["fields_now"]),
                  _short(row["last_taken"])] for row in summary["schema_snapshots"]), title="schema snapshots")
    print_pollers(summary["crm_pollers"])
    rejects = summary["rejects"]
    out.print("rejects: " + (", ".join(f"{k} {v:,}" for k, v in rejects.items()) if rejects else "none"),
              highlight=False)
    for part in summary["quarantined"]:
        out.print(f"quarantined {part['dataset']} part (its events are out of every query): {part['path']} "
                  f"({part['reason']}; moved {_short(part['quarantined_at'])}, from {part['original']})",
                  highlight=False, soft_wrap=True)
    if summary["wal_pending"]:
        out.print(f"acknowledged by the API, not yet flushed: {summary['wal_pending']:,}", highlight=False)
    print_paragraph(_checks_line(summary["checks"]), later=INDENT)


def _print_spans(spans: dict) -> None:
    if not spans["total"]:
        out.print("OpenTelemetry spans besides actions: none (POST /v1/traces, docs/otlp.md)", highlight=False)
        return
    columns = [Column(header) for header in ("agent", "model calls", "errors", "tokens in", "tokens out", "agent runs",
                                             "other", "unmatched", "last span (UTC)")]
    print_table(columns, ([row["agent_id"], f"{row['model_calls']:,}", f"{row['model_errors']:,}",
                           f"{row['input_tokens']:,}", f"{row['output_tokens']:,}", f"{row['agent_runs']:,}",
                           f"{row['other']:,}", f"{row['unmatched']:,}", _short(row["last_span"])]
                          for row in spans["agents"]), title="OpenTelemetry spans besides actions, by agent")


def _checks_line(checks: dict) -> str:
    run = checks["last_run"]
    if run is None:
        return "checks: never run live (`agentwatch check`; `agentwatch serve` runs them every minute)"
    failed = f", failed: {', '.join(run['failed_checks'])}" if run["failed_checks"] else ""
    lag = checks["lag_s"]
    behind = "no event after it" if not lag else f"the newest event is {lag / 60:,.0f} min after it"
    return (f"checks: last run finished {_short(run['finished_at'])} UTC in {run['seconds']:.1f} s, evaluated up to "
            f"{_short(run['as_of'])} UTC ({behind}){failed}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted (413 above).")] = 10 << 20,
    flush_interval: Annotated[float, typer.Option(help="Seconds between flushes of the write-ahead log.")] = 1.0,
    check_every: Annotated[str, typer.Option(help="Run the checks this often, e.g. 1m; 0 turns them off.")] = "1m",
    metrics_port: Annotated[int | None, typer.Option(help="Also serve /metrics without a key on this port, bound "
                                                          "to 127.0.0.1 only.")] = None,
    log_format: Annotated[LogFormat, typer.Option(help="text, or json: one JSON object per line.")] = LogFormat.text,
    config: ConfigOption = None,
    home: HomeOption = None,
) -> None:
    """Run the collector HTTP API (OpenAPI at /docs, metrics at /metrics) and the checks on a schedule."""
    # lazy: FastAPI and uvicorn take a third of a second to import; only `serve` needs them
    from agentwatch.app.api.app import ApiSettings
    from agentwatch.app.api.server import serve as run_server

    if max_body_bytes < 1 or flush_interval <= 0:
        raise ConfigError("--max-body-bytes must be at least 1 and --flush-interval more than 0 seconds")
    settings = ApiSettings(max_body_bytes=max_body_bytes, flush_interval_s=flush_interval)
    every = None if check_every.strip() in ("0", "off") else parse_duration(check_every, "--check-every")
    if metrics_port is not None and not 0 < metrics_port < 65536:
        raise ConfigError(f"--metrics-port {metrics_port}: a port is a number from 1 to 65535")
    run_server(Home.resolve(home), host=host, port=port, settings=settings,
               check_every_s=every.total_seconds() if every else None, config_path=config,
               metrics_port=metrics_port, log_format=log_format)


@app.command()
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
    config: ConfigOption = None,
    home: HomeOption = None,
    no_key: Annotated[bool, typer.Option("--no-key", help="Open without an API key; refused unless --host is "
                                                          "loopback (elsewhere a key is always asked).")] = False,
) -> None:
    """Run the dashboard (incidents, agents, schema, routing accuracy, outcomes, pipeline quality, audit trail).
    It asks for an API key of scope read unless it listens on loopback and --no-key or `dashboard: {require_key:
    false}` opts out."""
    process = start_dashboard(Home.resolve(home), host, port, config, no_key=no_key)
    out.print(f"dashboard: http://{host}:{port}    stop: Ctrl-C", highlight=False)
    wait_for_dashboard(process)


@keys_app.command("create")
def keys_create(
    scope: Annotated[Scope, typer.Option(help="What the key may do: ingest, read, or admin (both and more).")],
    name: Annotated[str | None, typer.Option(help="A label, e.g. the agent or team using it.")] = None,
    home: HomeOption = None,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    record, token = KeyStore(Home.resolve(home)).create(scope.value, name)
    err.print(f"created key {record.id} (scope {record.scope}); it is shown once, store it now:", highlight=False)
    out.print(token, highlight=False)


@keys_app.command("list")
def keys_list(home: HomeOption = None) -> None:
    """List API keys (never their secrets)."""
    print_table([Column("id"), Column("name"), Column("scope"), Column("created"), Column("revoked")],
                ([key.id, key.name or "", key.scope, key.created_at.isoformat(),
                  key.revoked_at.isoformat() if key.revoked_at else ""] for key in KeyStore(Home.resolve(home)).list()),
                title="API keys")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id shown by `keys list`.")],
                home: HomeOption = None) -> None:
    """Revoke an API key; a running server refuses it from its next request."""
    record = KeyStore(Home.resolve(home)).revoke(key_id)
    out.print(f"revoked key {record.id}", highlight=False)


@app.command()
def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Ingest the demo month, print a summary, exit.")] = False,
    days: Annotated[int, typer.Option(help="Days of simulated traffic.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed of the simulation.")] = 7,
    no_checks: Annotated[bool, typer.Option("--no-checks", help="Skip replaying the checks over the month.")] = False,
    port: Annotated[int, typer.Option(help="Port of the collector API.")] = 8000,
    dashboard_port: Annotated[int, typer.Option(help="Port of the dashboard (0: no dashboard).")] = 8501,
    home: HomeOption = None,
) -> None:
    """Simulate a month of inbound-lead agent traffic with the deal_stage rename, ingest it, and serve it with the
    dashboard."""
    resolved = Home.resolve(home)
    run_demo(resolved, days=days, seed=seed, console=out, checks=not no_checks)
    if not no_serve:
        # the demo listens on loopback and opens without a key (as --no-key): `make demo` shows it at once
        board = start_dashboard(resolved, port=dashboard_port, quiet=True, no_key=True) if dashboard_port else None
        if board:
            out.print(f"dashboard: http://127.0.0.1:{dashboard_port}  (the rename: open the incident "
                      "schema.field_renamed)", highlight=False)
        try:
            _serve_demo(resolved, port)
        finally:
            if board:
                board.terminate()
                board.wait(timeout=30)


def _serve_demo(resolved: Home, port: int) -> None:
    """The demo's API server, without the scheduled checks."""
    out.print(f"collector API: http://127.0.0.1:{port}  (OpenAPI docs: http://127.0.0.1:{port}/docs)\n"
              "send events with a key from: .venv/bin/agentwatch keys create --scope ingest\n"
              "status: .venv/bin/agentwatch status    stop: Ctrl-C\n"
              "the scheduled checks are off here: the demo month is in the past, so checks at the current time "
              "would find it quiet and resolve its incidents (`agentwatch serve` runs them every minute)",
              highlight=False)
    serve(host="127.0.0.1", port=port, home=resolved.root, check_every="0")


def main() -> None:
    """Entry point: user mistakes become one clear line and exit code 2."""
    try:
        app()
    except AgentwatchError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
