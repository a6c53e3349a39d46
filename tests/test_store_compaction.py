"""Compaction (agentwatch.store.compaction): small parts become one sorted file while readers read and writers
write, a SIGKILL at any step leaves the store whole, and a served home no longer piles up a part per flush."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.store.compaction import run_pass
from agentwatch.store.datasets import ACTIONS
from agentwatch.store.layout import SCHEMA_PART
from agentwatch.store.partitions import list_partition, visible_parts
from agentwatch.store.reader import open_reader
from agentwatch.store.rewrite import staging_root
from agentwatch.store.settings import StoreSettings
from tests.live_support import agentwatch
from tests.test_api_durability import free_port, wait_healthy

DEADLINE_S = 180.0  # waits on a busy 2-core machine; none is a timing assertion
CLOSED_DAY = "day=2026-10-01"
MERGE_NOW = StoreSettings.model_validate({"compaction": {"quiet_minutes": 0}})


def commit(home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], events: list[dict[str, Any]]) -> None:
    path = write_jsonl(tmp_path / f"batch-{events[0]['event_id']}.jsonl", events)
    assert ingest_files(home, ACTIONS, [path]).rejected == 0


def data_parts(home: Home, partition: str) -> list[Path]:
    return [p for p in visible_parts(home, "actions").get(partition, ()) if p.name != SCHEMA_PART]


def stored_ids(home: Home) -> list[tuple[str, int]]:
    con = open_reader(home)
    try:
        return sorted(con.execute("SELECT event_id, count(*) FROM actions GROUP BY event_id").fetchall())
    finally:
        con.close()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {DEADLINE_S:.0f} s: {what}")


# -- the finding: a served home piled up one part per flush ------------------------------------------------


@pytest.mark.slow
def test_one_event_posts_a_second_apart_end_in_few_parts(home: Home, tmp_path: Path,
                                                         processes: list[subprocess.Popen]) -> None:
    """20 one-event POSTs a second apart to a real serve (half today, half on a closed day): a background pass
    keeps today's partition at most max_open_parts + 1 data parts and merges the closed day into one file."""
    home.config_file.write_text("store:\n  compaction:\n    quiet_minutes: 0\n    max_open_parts: 4\n"
                                "    every_seconds: 1\n")
    token = KeyStore(home).create("ingest", name="compaction test")[1]
    port, log = free_port(), tmp_path / "server.log"
    code = ("from agentwatch.app.api.app import ApiSettings; from agentwatch.app.api.server import serve; "
            f"from agentwatch.core.home import Home; serve(Home.resolve({str(home.root)!r}), port={port}, "
            "settings=ApiSettings(flush_interval_s=0.2), check_every_s=None)")
    with open(log, "ab") as out:
        server = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
    processes.append(server)
    wait_healthy(server, port, log)
    today = datetime.now(UTC).date()
    sent = []
    with httpx.Client(timeout=30.0) as client:
        for i in range(20):
            day = today.isoformat() if i % 2 else "2026-10-01"
            event = {"event_id": f"post-{i:02d}", "ts": f"{day}T00:00:{i:02d}Z", "agent_id": "lead-router",
                     "action": "lead.route", "resource": {"type": "lead", "id": f"L-{i}"}, "status": "ok"}
            response = client.post(f"http://127.0.0.1:{port}/v1/actions", json=event,
                                   headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
            sent.append(event["event_id"])
            time.sleep(1)
    open_day = f"day={today.isoformat()}"
    wait_for(lambda: [i for i, _ in stored_ids(home)] == sorted(sent) and len(data_parts(home, CLOSED_DAY)) == 1
             and len(data_parts(home, open_day)) <= 5,
             f"every event stored, {CLOSED_DAY} in one file and {open_day} in at most 5 parts "
             f"(now {len(data_parts(home, CLOSED_DAY))} and {len(data_parts(home, open_day))}); log:\n"
             f"{log.read_text()[-3000:]}")
    assert stored_ids(home) == [(i, 1) for i in sorted(sent)]
    (merged,) = data_parts(home, CLOSED_DAY)
    assert merged.name.startswith("part-c-")


# -- merging while others read and write -----------------------------------------------------------------------------


WRITER = """
import json, sys, tempfile
from pathlib import Path
from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.core.home import Home
from agentwatch.store.datasets import ACTIONS
home, batches = Home.resolve(sys.argv[1]), int(sys.argv[2])
folder = Path(tempfile.mkdtemp())
for b in range(batches):
    path = folder / f"w{b}.jsonl"
    path.write_text("".join(json.dumps({"event_id": f"w-{b:03d}-{j}", "ts": f"2026-10-01T10:{b % 60:02d}:0{j}Z",
        "agent_id": "a", "action": "lead.route", "resource": {"type": "lead", "id": f"L{j}"}, "status": "ok"}) + "\\n"
        for j in range(3)))
    assert ingest_files(home, ACTIONS, [path]).rejected == 0
"""

COMPACTOR = """
import sys, time
from pathlib import Path
from agentwatch.core.home import Home
from agentwatch.store.compaction import run_pass
from agentwatch.store.settings import StoreSettings
home, stop = Home.resolve(sys.argv[1]), Path(sys.argv[2])
settings = StoreSettings.model_validate({"compaction": {"quiet_minutes": 0, "max_open_parts": 2}})
passes = 0
while not stop.exists():
    report = run_pass(home, settings)
    assert not report.failures, report.failures
    passes += len(report.merged)
print(passes, flush=True)
"""


@pytest.mark.slow
def test_readers_see_every_row_once_while_a_compactor_merges_and_a_writer_writes(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict]) -> None:
    """At every scan of a reader looping in this process, every id is there once, and nothing seen before is
    missing, while another process commits batches and a third merges the partition they land in."""
    seeded = []
    for _ in range(10):
        batch = [make_action(), make_action()]
        seeded += [e["event_id"] for e in batch]
        commit(home, tmp_path, write_jsonl, batch)
    stop_file = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(home.root), "60"])
    compactor = subprocess.Popen([sys.executable, "-c", COMPACTOR, str(home.root), str(stop_file)],
                                 stdout=subprocess.PIPE, text=True)
    problems: list[str] = []
    scans = 0
    reader = open_reader(home)
    try:
        seen: set[str] = set(seeded)
        while writer.poll() is None or scans < 5:
            rows = reader.execute("SELECT event_id, count(*) FROM actions GROUP BY event_id").fetchall()
            scans += 1
            now = {event_id for event_id, _ in rows}
            if doubled := [event_id for event_id, n in rows if n != 1]:
                problems.append(f"scan {scans}: read twice: {doubled[:5]}")
            if missing := seen - now:
                problems.append(f"scan {scans}: lost: {sorted(missing)[:5]}")
            seen |= now
    finally:
        stop_file.write_text("")
        reader.close()
        assert writer.wait(timeout=DEADLINE_S) == 0
        merges = int(compactor.communicate(timeout=DEADLINE_S)[0].strip() or 0)
        assert compactor.returncode == 0
    assert not problems, problems[:10]
    expected = seeded + [f"w-{b:03d}-{j}" for b in range(60) for j in range(3)]
    assert stored_ids(home) == [(i, 1) for i in sorted(expected)]
    assert merges >= 1, "the compactor never merged while the writer wrote"


# -- SIGKILL at every step -------------------------------------------------------------------------------------------


KILLED = """
import sys, time
import agentwatch.store.compaction as compaction
import agentwatch.store.rewrite as rewrite
from agentwatch.core.home import Home
from agentwatch.store.settings import StoreSettings

def pause(where, original, before):
    def paused(*args, **kwargs):
        if before:
            print(where, flush=True); time.sleep(3600)
        result = original(*args, **kwargs)
        print(where, flush=True); time.sleep(3600)
        return result
    return paused

point = sys.argv[2]
if point == "before_sidecar":
    rewrite._write_sidecar = pause(point, rewrite._write_sidecar, True)
elif point == "before_rename":
    rewrite._swap = pause(point, rewrite._swap, True)
elif point == "after_rename":
    compaction.delete_invisible = pause(point, compaction.delete_invisible, True)
settings = StoreSettings.model_validate({"compaction": {"quiet_minutes": 0, "grace_minutes": 0}})
compaction.run_pass(Home.resolve(sys.argv[1]), settings)
"""


@pytest.mark.parametrize("point", ["before_sidecar", "before_rename", "after_rename"])
def test_a_compaction_killed_at_any_step_leaves_the_store_whole(
        point: str, home: Home, tmp_path: Path, write_jsonl: Callable[..., Path],
        make_action: Callable[..., dict]) -> None:
    ids = []
    for _ in range(6):
        batch = [make_action(), make_action(ts="2026-10-01T11:00:00Z")]
        ids += [e["event_id"] for e in batch]
        commit(home, tmp_path, write_jsonl, batch)
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(home.root), point], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == point, f"the child never reached {point}"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=DEADLINE_S)
    assert stored_ids(home) == [(i, 1) for i in sorted(ids)], f"killed {point}: the store is not whole"
    expected_parts = 1 if point == "after_rename" else 6
    assert len(data_parts(home, CLOSED_DAY)) == expected_parts

    report = run_pass(home, StoreSettings.model_validate({"compaction": {"quiet_minutes": 0, "grace_minutes": 0}}))
    assert not report.failures
    report = run_pass(home, StoreSettings.model_validate({"compaction": {"quiet_minutes": 0, "grace_minutes": 0}}))
    assert stored_ids(home) == [(i, 1) for i in sorted(ids)]
    folder = home.dataset_dir("actions") / CLOSED_DAY
    (merged,) = list_partition(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted([merged.name, merged.name[:-8] + ".replaces"]), (
        "the next passes leave the merged file and its sidecar only")
    assert not staging_root(home, "actions").exists()


# -- which partitions, and the grace ---------------------------------------------------------------------------------


def test_the_open_partition_is_merged_past_max_open_parts_and_a_busy_closed_one_waits(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict]) -> None:
    today = datetime.now(UTC).date().isoformat()
    for i in range(12):  # 12 parts today, 6 on a closed day (fewer than max_open_parts)
        commit(home, tmp_path, write_jsonl, [make_action(ts=f"{today}T00:00:{i:02d}Z")] + [make_action()] * (i < 6))
    settings = StoreSettings.model_validate({"compaction": {"max_open_parts": 8, "quiet_minutes": 60}})
    dry = run_pass(home, settings, dry_run=True)
    assert [(c.partition, len(c.parts)) for c in dry.planned] == [(f"day={today}", 12)]
    assert len(data_parts(home, f"day={today}")) == 12, "a dry run changes nothing"

    report = run_pass(home, settings)
    assert [(c.partition, m.parts_in, m.rows_out) for c, m in report.merged] == [(f"day={today}", 12, 12)]
    assert len(data_parts(home, f"day={today}")) == 1
    assert len(data_parts(home, CLOSED_DAY)) == 6, "the closed day has not been quiet for 60 minutes yet"

    later = datetime.now(UTC) + timedelta(minutes=61)
    report = run_pass(home, settings, now=later)
    assert [c.partition for c, _ in report.merged] == [CLOSED_DAY]
    (merged,) = data_parts(home, CLOSED_DAY)
    metadata = pq.read_metadata(merged)
    times = pq.read_table(merged, columns=["ts"]).column("ts").to_pylist()
    assert metadata.num_rows == 6 and times == sorted(times), "merged rows are sorted by time"
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_merged_away_parts_are_deleted_only_after_the_grace(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict]) -> None:
    for _ in range(3):
        commit(home, tmp_path, write_jsonl, [make_action()])
    originals = data_parts(home, CLOSED_DAY)
    run_pass(home, MERGE_NOW)
    now = datetime.now(UTC)
    report = run_pass(home, MERGE_NOW, now=now + timedelta(minutes=14))
    assert not report.deleted and all(p.exists() for p in originals), "still within the 15 min grace"
    report = run_pass(home, MERGE_NOW, now=now + timedelta(minutes=16))
    assert [(name, d.files) for name, d in report.deleted] == [("actions", 3)]
    assert not any(p.exists() for p in originals)
    assert len(data_parts(home, CLOSED_DAY)) == 1 and len(stored_ids(home)) == 3


def test_compact_command_says_what_it_would_do_and_what_it_did(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict]) -> None:
    home.config_file.write_text("store:\n  compaction:\n    quiet_minutes: 0\n")
    for _ in range(3):
        commit(home, tmp_path, write_jsonl, [make_action()])
    dry = agentwatch(home, "compact", "--dry-run")
    assert f"would merge actions {CLOSED_DAY}: 3 parts, 3 rows" in dry
    assert "retention: off" in dry
    assert len(data_parts(home, CLOSED_DAY)) == 3
    done = agentwatch(home, "compact")
    assert f"merged actions {CLOSED_DAY}: 3 parts -> 1 file, 3 rows" in done
    assert len(data_parts(home, CLOSED_DAY)) == 1
    status = json.loads(agentwatch(home, "status", "--json"))
    assert status["part_files"]["actions"] == 1


def test_every_store_setting_is_documented_with_its_default() -> None:
    """docs/store.md's settings table has a row `store.<section>.<name>` per setting, giving its default."""
    from tests.test_docs import DOCS, table_rows

    rows = {row[0]: row for row in table_rows((DOCS / "store.md").read_text(encoding="utf-8"))}
    problems = []
    for section, info in StoreSettings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type)
        for name, field in model.model_fields.items():
            row = rows.get(f"`store.{section}.{name}`")
            default = "null" if field.default is None else str(field.default).removesuffix(".0")
            if row is None:
                problems.append(f"store.{section}.{name} has no row")
            elif default not in " ".join(row[1:]).replace(",", ""):
                problems.append(f"store.{section}.{name}: its row does not give the default {default}")
    assert not problems, "docs/store.md: " + "; ".join(problems)


def test_health_says_degraded_while_compaction_keeps_failing_and_ok_once_it_works(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], processes: list[subprocess.Popen]) -> None:
    """A pass that cannot stage its merge (a file where its staging folder goes) fails every time: after three in
    a row /healthz says degraded with compaction_failing; once the obstacle is gone the next pass merges and the
    reason goes."""
    for i in range(2):  # two parts in a closed day: something to merge
        commit(home, tmp_path, write_jsonl, [{"event_id": f"h-{i}", "ts": "2026-10-01T10:00:00Z", "agent_id": "a",
                                              "action": "lead.route", "resource": {"type": "lead", "id": "L"},
                                              "status": "ok"}])
    blocker = staging_root(home, "actions")
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    home.config_file.write_text("store:\n  compaction:\n    quiet_minutes: 0\n    every_seconds: 0.5\n")
    port, log = free_port(), tmp_path / "server.log"
    code = ("from agentwatch.app.api.server import serve; from agentwatch.core.home import Home; "
            f"serve(Home.resolve({str(home.root)!r}), port={port}, check_every_s=None)")
    with open(log, "ab") as out:
        server = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
    processes.append(server)
    wait_healthy(server, port, log)

    def reasons() -> list[str]:
        return [r["code"] for r in httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()["reasons"]]

    wait_for(lambda: "compaction_failing" in reasons(),
             f"compaction_failing in /healthz; log:\n{log.read_text()[-2000:]}")
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()["status"] == "degraded"
    assert len(data_parts(home, CLOSED_DAY)) == 2
    blocker.unlink()
    wait_for(lambda: "compaction_failing" not in reasons() and len(data_parts(home, CLOSED_DAY)) == 1,
             f"the reason gone and the day merged; log:\n{log.read_text()[-2000:]}")
