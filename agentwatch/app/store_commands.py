"""``agentwatch compact`` and ``agentwatch erase``: thin shells over ``agentwatch.store.compaction`` and
``agentwatch.store.erasure``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from agentwatch.app.config import config_for
from agentwatch.app.options import ConfigOption, HomeOption
from agentwatch.checks.engine import incident_store
from agentwatch.collector.ingest.rejects import erase_rejects
from agentwatch.collector.wal import pending_events
from agentwatch.core.errors import ConfigError, StoreError
from agentwatch.core.home import Home
from agentwatch.core.locks import acquire_serve_lock, is_served, release_serve_lock
from agentwatch.store.compaction import PassReport, run_pass
from agentwatch.store.erasure import ERASABLE, Erasure, Selector, parse_where, record
from agentwatch.store.erasure import erase as erase_events
from agentwatch.store.settings import StoreSettings

out = Console()


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def compact(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be merged, dropped and deleted; change "
                                                            "nothing.")] = False,
    config: ConfigOption = None,
    home: HomeOption = None,
) -> None:
    """Merge small store parts into large sorted files, drop partitions past store.retention_days, and delete files
    made invisible more than store.compaction.grace_minutes ago (`serve` does this every minute)."""
    resolved = Home.existing(home)
    settings = config_for(resolved, config).store
    report = run_pass(resolved, settings, dry_run=dry_run)
    _print_pass(report, settings)
    if report.failures:
        raise typer.Exit(1)


def _print_pass(report: PassReport, settings: StoreSettings) -> None:
    would = "would " if report.dry_run else ""
    for c in report.planned:
        out.print(f"would merge {c.dataset} {c.partition}: {len(c.parts):,} parts, {c.rows:,} rows, "
                  f"{_size(c.bytes)} ({c.reason})", highlight=False)
    for c, merged in report.merged:
        out.print(f"merged {c.dataset} {c.partition}: {merged.parts_in:,} parts -> 1 file, {merged.rows_out:,} rows, "
                  f"{_size(merged.bytes_in)} -> {_size(merged.bytes_out)} in {merged.seconds:.1f} s ({c.reason})",
                  highlight=False)
    if not report.planned and not report.merged:
        out.print("nothing to merge", highlight=False)
    kept = settings.retention_days.model_dump()
    if all(days is None for days in kept.values()):
        out.print("retention: off (store.retention_days keeps everything)", highlight=False)
    else:
        out.print("retention: " + ", ".join(f"{name} {days} days" for name, days in kept.items() if days is not None),
                  highlight=False)
    for e in report.expired:
        out.print(f"{would}drop {e.dataset} {e.partition}: {e.parts:,} parts, {e.events:,} events before "
                  f"{e.cutoff}", highlight=False)
    grace = settings.compaction.grace_minutes
    for name, d in report.deleted:
        what = "expired partition" if d.expired else f"files invisible for more than {grace:g} min"
        out.print(f"{would}delete {name} {d.partition}: {d.files:,} {what}, {_size(d.bytes)}", highlight=False)
    for failure in report.failures:
        out.print(f"[red]error:[/] {failure}", highlight=False, soft_wrap=True)
    out.print(f"{'dry run' if report.dry_run else 'pass'} done in {report.seconds:.1f} s", highlight=False)


def erase(
    resource_id: Annotated[str | None, typer.Option("--resource-id", help="Erase every event of this resource.")]
    = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="Also erase events whose key has this value, "
                                                                   "e.g. inputs.email=ana@example.com (repeatable; "
                                                                   "inputs, before or after).")] = None,
    dataset: Annotated[list[str] | None, typer.Option("--dataset", help=f"Only these datasets (default: "
                                                                       f"{', '.join(ERASABLE)}).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be erased; change nothing.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit record (do not quote the erased values).")]
    = None,
    requested_by: Annotated[str | None, typer.Option("--requested-by", help="Who asked, for the audit record.")]
    = None,
    config: ConfigOption = None,
    home: HomeOption = None,
) -> None:
    """Erase every event of a resource (or matching an inputs/before/after key) from the store, and record the
    erasure in erasures.jsonl (who, when, how many, never the values). Refused while `serve` runs on the home."""
    selectors = ([Selector("resource_id", resource_id)] if resource_id else []) + [parse_where(w) for w in where or []]
    resolved = Home.existing(home)
    settings = config_for(resolved, config).store
    if is_served(resolved):
        raise ConfigError(f"agentwatch serve is running on {resolved.root}: its write-ahead log may hold acknowledged "
                          "events that would bring erased ones back; stop it, erase, then start it again")
    acquire_serve_lock(resolved)  # no server starts (and replays its log) while the store is rewritten
    try:
        if pending := pending_events(resolved):
            raise ConfigError(f"the write-ahead log in {resolved.wal} holds {pending:,} acknowledged events not yet "
                              "in the store (a server stopped uncleanly); start and stop `agentwatch serve` once to "
                              "flush them, then erase")
        result = erase_events(resolved, selectors, dataset, dry_run, settings.compaction.target_row_group_rows)
        names = dataset or list(ERASABLE)
        # Rejected events of the resource (refused for their shape, kept for people to fix) go too.
        failed = None
        try:
            result.rejected = erase_rejects(resolved.rejects, lambda text: any(s.mentioned_in(text) for s in selectors),
                                            names, dry_run).records
        except OSError as exc:  # the events are erased already: recorded all the same, then reported
            failed = exc
        changed = 0
        if not dry_run:  # the record first: the events are gone whatever happens to the incidents next
            record(resolved, result, selectors, requested_by, reason)
            changed = incident_store(resolved).forget_events(i for d in result.datasets.values() for i in d.event_ids)
        if failed is not None:
            raise StoreError(f"the events were erased and recorded, but the rejected events in {resolved.rejects} "
                             f"could not be rewritten ({failed}); fix that and run the same erase again")
    finally:
        release_serve_lock(resolved)
    _print_erasure(result, changed, settings)


def _print_erasure(result: Erasure, incidents_changed: int, settings: StoreSettings) -> None:
    verb = "would erase" if result.dry_run else "erased"
    for name, d in result.datasets.items():
        where = f" from {', '.join(d.partitions)}" if d.partitions else ""
        out.print(f"{verb} {d.events:,} {name} events{where}", highlight=False, soft_wrap=True)
        if d.still_arriving:
            out.print(f"[yellow]warning:[/] matching {name} events kept arriving while erasing (an ingest is "
                      "running?); run erase again once it is done", highlight=False)
    if result.rejected:
        out.print(f"{verb} {result.rejected:,} rejected events (in rejects/) holding the value", highlight=False)
    if result.quarantined_unsearched:
        out.print(f"[yellow]warning:[/] {result.quarantined_unsearched:,} quarantined parts (quarantine/: damaged, "
                  "unreadable) were not searched; delete them if they may hold the resource's events",
                  highlight=False, soft_wrap=True)
    if result.events == 0 and result.rejected == 0:
        out.print(f"nothing matched: no event {'would be' if result.dry_run else 'was'} erased", highlight=False)
    if not result.dry_run:
        if incidents_changed:
            out.print(f"dropped erased events from the sample events of {incidents_changed:,} incidents",
                      highlight=False)
        out.print(f"recorded in erasures.jsonl (without the values); the rewritten files are deleted by the first "
                  f"compaction pass after {settings.compaction.grace_minutes:g} min", highlight=False)
