"""A damaged Parquet part is moved aside with a note, and every reader and writer carries on with the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.core.home import Home
from agentwatch.store.datasets import ACTIONS
from agentwatch.store.keyindex import EventKeyIndex, list_parts
from agentwatch.store.quarantine import quarantined_parts
from agentwatch.store.reader import SCHEMA_PART, open_reader
from agentwatch.store.writer import DatasetWriter

CLI_TIMEOUT_S = 600  # a fresh process on a busy 2-core machine: generous
EVENTS_PER_DAY = 50


def _events(make_action: Callable[..., dict[str, Any]], day: str, prefix: str) -> list[dict[str, Any]]:
    return [make_action(event_id=f"{prefix}-{i:03d}", ts=f"{day}T09:{i % 60:02d}:00Z") for i in range(EVENTS_PER_DAY)]


@pytest.fixture
def stored(home: Home, tmp_path: Path, make_action: Callable[..., dict[str, Any]],
           write_jsonl: Callable[..., Path]) -> Path:
    """Two days of actions, one part each; returns the second day's part (the one the tests damage)."""
    for day, prefix in (("2026-10-01", "one"), ("2026-10-02", "two")):
        ingest_files(home, ACTIONS, [write_jsonl(tmp_path / f"{prefix}.jsonl", _events(make_action, day, prefix))])
    (part,) = home.dataset_dir("actions").glob("day=2026-10-02/part-*.parquet")
    return part


def truncate(part: Path) -> None:
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])


def empty(part: Path) -> None:
    part.write_bytes(b"")


def bad_footer(part: Path) -> None:
    data = part.read_bytes()
    part.write_bytes(data[:-200] + data[-8:])  # the footer's length and magic survive, its content does not


def wrong_schema(part: Path) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"COPY (SELECT 'not a key' AS event_key, 42 AS event_id, 'x' AS ts) TO '{part}' (FORMAT parquet)")
    con.close()


DAMAGES = {"truncated": truncate, "empty": empty, "bad footer": bad_footer, "wrong schema": wrong_schema}


def _event_ids(home: Home) -> set[str]:
    con = open_reader(home)
    try:
        return {row[0] for row in con.execute("SELECT event_id FROM actions").fetchall()}
    finally:
        con.close()


def _assert_quarantined(home: Home, part: Path) -> None:
    assert not part.exists()
    (entry,) = quarantined_parts(home)
    assert entry.dataset == "actions"
    assert entry.original == part
    assert entry.path.exists() and entry.path.is_relative_to(home.root / "quarantine")
    note = json.loads(entry.path.with_name(entry.path.name + ".json").read_text())
    assert note["original"] == str(part) and note["reason"] and note["quarantined_at"]
    assert "lost from queries" in note["effect"]


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_reader_quarantines_a_damaged_part_and_reads_the_rest(home: Home, stored: Path,
                                                                damage: Callable[[Path], None]) -> None:
    damage(stored)
    assert _event_ids(home) == {f"one-{i:03d}" for i in range(EVENTS_PER_DAY)}
    _assert_quarantined(home, stored)
    assert _event_ids(home) == {f"one-{i:03d}" for i in range(EVENTS_PER_DAY)}  # nothing more to do the next time


def test_a_damaged_schema_part_is_quarantined_and_rewritten(home: Home, stored: Path) -> None:
    _event_ids(home)  # the first reader writes the zero-row part
    (schema_part,) = home.dataset_dir("actions").glob(f"**/{SCHEMA_PART}")
    empty(schema_part)
    assert len(_event_ids(home)) == 2 * EVENTS_PER_DAY
    assert [p.original for p in quarantined_parts(home)] == [schema_part]
    assert schema_part.stat().st_size > 0


def test_a_cursor_and_a_relation_of_the_reader_survive_a_damaged_part(home: Home, stored: Path) -> None:
    """The dashboard queries through cursors and relations: they carry on too."""
    con = open_reader(home)
    try:
        truncate(stored)
        cursor = con.cursor()
        assert cursor.sql("SELECT count(*) AS n FROM actions").fetchall() == [(EVENTS_PER_DAY,)]
        cursor.close()
    finally:
        con.close()
    _assert_quarantined(home, stored)


def test_the_key_index_skips_a_damaged_part(home: Home, stored: Path) -> None:
    empty(stored)
    index = EventKeyIndex(home, "actions")
    index.refresh()
    assert len(index) == EVENTS_PER_DAY
    _assert_quarantined(home, stored)


def test_events_of_a_quarantined_part_are_accepted_again(home: Home, stored: Path, tmp_path: Path,
                                                         make_action: Callable[..., dict[str, Any]],
                                                         write_jsonl: Callable[..., Path]) -> None:
    """The writer (already holding the part's keys) does not count re-sent events of a lost part as duplicates."""
    writer = DatasetWriter(home, ACTIONS)
    writer.index.refresh()
    truncate(stored)
    again = write_jsonl(tmp_path / "again.jsonl", _events(make_action, "2026-10-02", "two"))
    report = ingest_files(home, ACTIONS, [again])
    assert (report.accepted, report.duplicates) == (EVENTS_PER_DAY, 0)
    assert len(_event_ids(home)) == 2 * EVENTS_PER_DAY
    _assert_quarantined(home, stored)


# -- the real commands, each in a fresh process --------------------------------------------------------------


def _agentwatch(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from agentwatch.app.cli import main; main()", *args,
                           "--home", str(home.root)], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                          env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"})


COMMANDS = {"status": ("status", "--json"), "check": ("check",), "ingest": ("ingest", "actions")}


@pytest.mark.parametrize("damage", [truncate, empty], ids=["truncated", "empty"])
@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_commands_carry_on_with_a_damaged_part(home: Home, stored: Path, tmp_path: Path, command: tuple[str, ...],
                                               damage: Callable[[Path], None],
                                               make_action: Callable[..., dict[str, Any]],
                                               write_jsonl: Callable[..., Path]) -> None:
    damage(stored)
    args = command
    if command[0] == "ingest":
        args = (*command, str(write_jsonl(tmp_path / "three.jsonl", _events(make_action, "2026-10-03", "three"))))
    done = _agentwatch(home, *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert str(stored) in done.stderr and "quarantine" in done.stderr  # one clear message naming the file
    _assert_quarantined(home, stored)
    if command[0] == "status":
        summary = json.loads(done.stdout)
        assert summary["actions"]["total"] == EVENTS_PER_DAY
        (listed,) = summary["quarantined"]  # and status keeps saying so afterwards
        assert listed["original"] == str(stored) and listed["dataset"] == "actions"
        again = _agentwatch(home, "status")
        assert again.returncode == 0 and "quarantined actions part" in again.stdout, again.stdout
    if command[0] == "ingest":
        assert len(_event_ids(home)) == 2 * EVENTS_PER_DAY
    assert len([p for p in list_parts(home.dataset_dir("actions")) if p.name != SCHEMA_PART]) == (
        2 if command[0] == "ingest" else 1)


# -- a real server flushing its write-ahead log -----------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(what: str, condition: Callable[[], bool], log: Path, deadline_s: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {deadline_s} s:\n{log.read_text()[-5000:]}")


def test_a_serving_wal_flushes_past_a_damaged_part(home: Home, tmp_path: Path,
                                                   make_action: Callable[..., dict[str, Any]]) -> None:
    import httpx

    from agentwatch.collector.wal import pending_events
    from agentwatch.core.api_keys import KeyStore

    token = KeyStore(home).create("ingest", name="quarantine test")[1]
    port, log = _free_port(), tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", "from agentwatch.app.cli import main; main()", "serve", "--port", str(port),
             "--flush-interval", "0.2", "--check-every", "0", "--home", str(home.root)],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        def answers() -> bool:
            assert server.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()["status"] != "starting"
            except httpx.TransportError:
                return False

        _wait_for("the server's start", answers, log)
        headers = {"Authorization": f"Bearer {token}"}

        def send(events: list[dict[str, Any]]) -> None:
            response = httpx.post(f"http://127.0.0.1:{port}/v1/actions", json=events, headers=headers, timeout=60)
            assert response.status_code == 200, response.text

        first = _events(make_action, "2026-10-02", "two")
        send(first)
        _wait_for("the first flush", lambda: pending_events(home) == 0 and bool(
            [p for p in list_parts(home.dataset_dir("actions")) if p.name != SCHEMA_PART]), log)
        (part,) = [p for p in list_parts(home.dataset_dir("actions")) if p.name != SCHEMA_PART]
        truncate(part)
        # Re-sent ids make the server look them up in the store; new ones must be flushed into it.
        send(first[:10] + _events(make_action, "2026-10-03", "three"))
        _wait_for("the second flush", lambda: pending_events(home) == 0 and bool(quarantined_parts(home)), log)
        # Health says so: degraded (200) with the reason's code, and no path to unauthenticated callers.
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60)
        assert health.status_code == 200 and health.json()["status"] == "degraded", health.text
        assert [r["code"] for r in health.json()["reasons"]] == ["parts_quarantined"]
        assert health.json()["quarantined_parts"] == 1 and str(home.root) not in health.text
    finally:
        server.terminate()
        server.wait(timeout=60)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert str(part) in text
    _assert_quarantined(home, part)
    assert _event_ids(home) == {f"three-{i:03d}" for i in range(EVENTS_PER_DAY)} | {f"two-{i:03d}" for i in range(10)}
