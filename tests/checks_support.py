"""Helpers for check tests: store events in a real home, run the real engine, read the incidents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentwatch.app.config import Config
from agentwatch.checks.engine import RunReport, backtest_steps, evaluate, incident_store
from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.collector.ingest.snapshots import ingest_snapshot_items
from agentwatch.core.home import Home
from agentwatch.store.datasets import ACTIONS, OUTCOMES

T0 = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday, 00:00 UTC


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def store_events(home: Home, actions: list[dict] = (), outcomes: list[dict] = (),
                 snapshots: list[dict] = ()) -> None:
    """Ingest events through the real pipeline; fails the test if any is rejected."""
    folder = home.root / "test-input"
    folder.mkdir(exist_ok=True)
    for name, dataset, events in (("actions", ACTIONS, actions), ("outcomes", OUTCOMES, outcomes)):
        if events:
            path = folder / f"{name}-{len(list(folder.iterdir()))}.jsonl"
            path.write_text("".join(json.dumps(e) + "\n" for e in events))
            report = ingest_files(home, dataset, [path], None, None)
            assert report.rejected == 0, [r.describe() for r in report.sample]
    if snapshots:
        report = ingest_snapshot_items(home, list(snapshots), source="test")
        assert report.rejected == 0, [r.describe() for r in report.sample]


def run(home: Home, start: datetime, end: datetime, every: timedelta = timedelta(minutes=15),
        config: Config | dict[str, Any] | None = None, only: list[str] | None = None) -> RunReport:
    """Backtest the checks over [start, end] into the home's incident store."""
    if not isinstance(config, Config):
        config = Config.model_validate(config or {})
    return evaluate(home, config, backtest_steps(start, end, every), incident_store(home), only=only)


def opened(report: RunReport, check: str) -> list[tuple[datetime, Any]]:
    """(step time, incident) of each incident of `check` the run opened."""
    return [(at, incident) for at, incident in report.opened if incident.check == check]


def path_of(home: Home) -> Path:
    return home.root
