"""Retention (agentwatch.store.retention): partitions past store.retention_days leave the store, exactly those."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.collector.ingest.snapshots import ingest_snapshot_files
from agentwatch.core.home import Home
from agentwatch.store.compaction import run_pass
from agentwatch.store.datasets import ACTIONS, OUTCOMES
from agentwatch.store.settings import StoreSettings
from tests.live_support import agentwatch

NOW = datetime.now(UTC)  # the grace is measured against the files' real times
DAYS = [NOW.date() - timedelta(days=10 - n) for n in range(11)]  # ten days ago .. today
KEEP_5 = StoreSettings.model_validate({"retention_days": {"actions": 5}, "compaction": {"quiet_minutes": 600}})
NO_RETENTION = StoreSettings.model_validate({"compaction": {"quiet_minutes": 600}})


def seed(home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict],
         make_outcome: Callable[..., dict], days: list[date]) -> None:
    actions = [make_action(event_id=f"a-{d}", ts=f"{d}T08:00:00Z") for d in days]
    outcomes = [make_outcome(event_id=f"o-{d}", ts=f"{d}T09:00:00Z") for d in days]
    assert ingest_files(home, ACTIONS, [write_jsonl(tmp_path / "a.jsonl", actions)]).rejected == 0
    assert ingest_files(home, OUTCOMES, [write_jsonl(tmp_path / "o.jsonl", outcomes)]).rejected == 0


def ids(query: Callable[..., list[tuple]], view: str) -> list[str]:
    return [row[0] for row in query(f"SELECT event_id FROM {view} ORDER BY event_id")]


def test_retention_drops_exactly_the_partitions_past_the_limit(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict],
        make_outcome: Callable[..., dict], query: Callable[..., list[tuple]]) -> None:
    seed(home, tmp_path, write_jsonl, make_action, make_outcome, DAYS)
    dry = run_pass(home, KEEP_5, now=NOW, dry_run=True)
    assert [(e.dataset, e.partition, e.events) for e in dry.expired] == [
        ("actions", f"day={d}", 1) for d in DAYS[:5]]
    assert len(ids(query, "actions")) == 11, "a dry run drops nothing"

    report = run_pass(home, KEEP_5, now=NOW)
    assert [e.partition for e in report.expired] == [f"day={d}" for d in DAYS[:5]]
    # DAYS[5], five days before today, is the boundary: kept
    assert ids(query, "actions") == [f"a-{d}" for d in DAYS[5:]]
    assert ids(query, "outcomes") == [f"o-{d}" for d in DAYS], "outcomes keep everything (retention null)"
    actions_dir = home.dataset_dir("actions")
    assert all((actions_dir / f"day={d}").is_dir() for d in DAYS[:5]), "the files wait for the grace"
    assert not run_pass(home, KEEP_5, now=NOW).expired, "a dropped partition is not dropped twice"

    # The grace runs from the marker. Without retention here: 16 minutes on may be tomorrow, a day more to expire.
    run_pass(home, NO_RETENTION, now=datetime.now(UTC) + timedelta(minutes=16))
    assert sorted(p.name for p in actions_dir.iterdir()) == ["day=1970-01-01"] + [f"day={d}" for d in DAYS[5:]]
    assert ids(query, "actions") == [f"a-{d}" for d in DAYS[5:]]


def test_snapshots_past_retention_are_rewritten_away(home: Home, tmp_path: Path,
                                                      make_snapshot: Callable[..., dict[str, Any]],
                                                      query: Callable[..., list[tuple]]) -> None:
    old, recent = NOW.date() - timedelta(days=19), NOW.date() - timedelta(days=1)
    for n, taken in enumerate([f"{old}T00:00:00Z", f"{recent}T00:00:00Z"]):
        path = tmp_path / f"snapshot-{n}.json"
        path.write_text(json.dumps(make_snapshot(taken_at=taken)))
        assert ingest_snapshot_files(home, [path]).rejected == 0
    settings = StoreSettings.model_validate({"retention_days": {"schema_snapshots": 5}})
    report = run_pass(home, settings, now=NOW)
    assert [(e.dataset, e.events) for e in report.expired] == [("schema_snapshots", 1)]
    taken = query("SELECT taken_at FROM schema_snapshots")
    assert [t.date() for (t,) in taken] == [recent]
    assert not run_pass(home, settings, now=NOW).expired


def test_compact_command_reports_retention(home: Home, tmp_path: Path, write_jsonl: Callable[..., Path],
                                           make_action: Callable[..., dict], make_outcome: Callable[..., dict],
                                           query: Callable[..., list[tuple]]) -> None:
    today = datetime.now(UTC).date()
    seed(home, tmp_path, write_jsonl, make_action, make_outcome, [today - timedelta(days=3), today])
    home.config_file.write_text("store:\n  retention_days:\n    outcomes: 2\n")
    dry = agentwatch(home, "compact", "--dry-run")
    assert "retention: outcomes 2 days" in dry
    assert f"would drop outcomes day={today - timedelta(days=3)}: 1 parts, 1 events" in dry
    assert len(ids(query, "outcomes")) == 2
    done = agentwatch(home, "compact")
    assert f"drop outcomes day={today - timedelta(days=3)}" in done
    assert ids(query, "outcomes") == [f"o-{today}"]
    assert len(ids(query, "actions")) == 2
