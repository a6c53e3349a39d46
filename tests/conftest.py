"""Shared fixtures: a fresh home per test, event factories, file writers and a SQL reader of the store."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The CLI's rich consoles take their width when agentwatch.app is first imported: wide tables whatever test
# imports it first, in whichever pytest worker (cells cut at 80 columns failed tests that read them).
os.environ["COLUMNS"] = "250"

from agentwatch.core.home import Home
from agentwatch.store.reader import open_reader
from tests.live_support import stop

_ids = itertools.count(1)


def _apply(event: dict[str, Any], drop: Iterable[str], overrides: dict[str, Any]) -> dict[str, Any]:
    event.update(overrides)
    for key in drop:
        del event[key]
    return event


def _make_action(drop: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    """A valid action event (the required keys only) with `overrides` set and the keys in `drop` left out."""
    event = {
        "event_id": f"act-{next(_ids):06d}",
        "ts": "2026-10-01T09:30:00Z",
        "agent_id": "lead-router",
        "action": "lead.route",
        "resource": {"type": "lead", "id": "L-1"},
        "status": "ok",
    }
    return _apply(event, drop, overrides)


def _make_outcome(drop: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    """A valid outcome event (the required keys only) with `overrides` set and the keys in `drop` left out."""
    event = {
        "event_id": f"out-{next(_ids):06d}",
        "ts": "2026-10-02T10:00:00Z",
        "kind": "owner_changed",
        "resource": {"type": "lead", "id": "L-1"},
    }
    return _apply(event, drop, overrides)


def _make_snapshot(drop: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    """A valid native schema snapshot of a small Lead object with `overrides` set and `drop` left out."""
    snapshot = {
        "taken_at": "2026-10-01T00:00:00Z",
        "source": "custom",
        "object": "Lead",
        "fields": [
            {"name": "Id", "type": "id", "nullable": False, "label": "Lead ID"},
            {"name": "deal_stage", "type": "picklist", "picklist_values": ["open", "negotiation", "won"]},
            {"name": "email", "type": "email"},
        ],
    }
    return _apply(snapshot, drop, overrides)


def _write_jsonl(path: Path, lines: Iterable[dict[str, Any] | str], trailing_newline: bool = True) -> Path:
    """Write events (dicts, dumped as JSON) and raw lines (str, written as is) one per line."""
    texts = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(texts) + ("\n" if trailing_newline else ""), encoding="utf-8")
    return path


@pytest.fixture
def make_action() -> Callable[..., dict[str, Any]]:
    """The action factory: ``make_action(status="error", drop=["agent_id"])``."""
    return _make_action


@pytest.fixture
def make_outcome() -> Callable[..., dict[str, Any]]:
    """The outcome factory: ``make_outcome(kind="closed_won", amount=1200.0)``."""
    return _make_outcome


@pytest.fixture
def make_snapshot() -> Callable[..., dict[str, Any]]:
    """The native snapshot factory: ``make_snapshot(object="Opportunity", taken_at=...)``."""
    return _make_snapshot


@pytest.fixture
def write_jsonl() -> Callable[..., Path]:
    """Write dicts (as JSON) and raw strings one per line: ``write_jsonl(path, [event, "not json"])``."""
    return _write_jsonl


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """An empty agentwatch home under the test's temporary folder."""
    return Home.resolve(tmp_path / "home")


Query = Callable[..., list[tuple]]


@pytest.fixture
def query(home: Home) -> Query:
    """Run SQL against the store's views (actions, outcomes, schema_snapshots) and fetch every row."""

    def run(sql: str, params: list[Any] | None = None) -> list[tuple]:
        con = open_reader(home)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    return run


@pytest.fixture
def receiver():
    """A real HTTP receiver on 127.0.0.1 (tests/receiver.py), stopped after the test."""
    from tests.receiver import Receiver

    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """The 7-day demo, ingested and with its checks replayed, shared by the dashboard tests (read it, do not
    change it; copy it with `shutil.copytree` to change it)."""
    import io

    from rich.console import Console

    from agentwatch.app.demo.run import run_demo

    home = Home.resolve(tmp_path_factory.mktemp("dashboard-demo") / "home")
    run_demo(home, days=7, console=Console(file=io.StringIO()))
    return home


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding slow tests first (a stable sort: each file's order is kept). `make test` runs the files on two
    workers (`--dist loadfile`); a slow file collected late became the suite's tail, one worker busy minutes after
    the other was done."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts (servers): killed when it ends, whatever happened."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        stop(process)
