"""What a reader sees of a partition: rewritten files hide the parts their sidecar names, an orphan sidecar hides
nothing, an expired partition is empty, and a long-lived connection follows all of it (agentwatch.store.partitions)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.core.home import Home
from agentwatch.store.compaction import run_pass
from agentwatch.store.datasets import ACTIONS
from agentwatch.store.keyindex import EventKeyIndex
from agentwatch.store.layout import SCHEMA_PART
from agentwatch.store.partitions import EXPIRED_MARKER, list_partition, store_version, visible_parts
from agentwatch.store.reader import open_reader
from agentwatch.store.settings import StoreSettings

MERGE_NOW = StoreSettings.model_validate({"compaction": {"quiet_minutes": 0}})


def commit(home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], events: list[dict[str, Any]]) -> None:
    """One ingest of `events`: one part per day partition."""
    path = write_jsonl(tmp_path / f"batch-{events[0]['event_id']}.jsonl", events)
    assert ingest_files(home, ACTIONS, [path]).rejected == 0


def data_parts(home: Home, partition: str) -> list[Path]:
    return [p for p in visible_parts(home, "actions").get(partition, ()) if p.name != SCHEMA_PART]


def test_a_rewritten_file_hides_what_its_sidecar_names_and_an_orphan_sidecar_hides_nothing(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict]) -> None:
    for _ in range(3):
        commit(home, tmp_path, write_jsonl, [make_action()])
    folder = home.dataset_dir("actions") / "day=2026-10-01"
    originals = list_partition(folder)
    assert len(originals) == 3

    # a rewrite killed before its rename: the sidecar is there, its file is not
    (folder / "part-c-orphan.replaces").write_text(json.dumps([p.name for p in originals]))
    assert list_partition(folder) == originals

    report = run_pass(home, MERGE_NOW)
    (merged,) = list_partition(folder)
    assert merged.name.startswith("part-c-") and merged == report.merged[0][1].file
    assert all(p.exists() for p in originals), "merged-away parts stay until the grace has passed"


def test_an_expired_partition_lists_as_nothing(home: Home, tmp_path: Path, write_jsonl: Callable[..., Path],
                                               make_action: Callable[..., dict]) -> None:
    commit(home, tmp_path, write_jsonl, [make_action(ts="2026-10-01T09:00:00Z"),
                                         make_action(ts="2026-10-02T09:00:00Z")])
    (home.dataset_dir("actions") / "day=2026-10-01" / EXPIRED_MARKER).write_text("{}")
    assert set(visible_parts(home, "actions")) - {"day=1970-01-01"} == {"day=2026-10-02"}


def test_a_long_lived_connection_sees_new_parts_and_not_merged_ones(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict]) -> None:
    reader = open_reader(home)
    try:
        ids = []
        for _ in range(4):
            event = make_action()
            ids.append(event["event_id"])
            commit(home, tmp_path, write_jsonl, [event])
            assert sorted(r[0] for r in reader.execute("SELECT event_id FROM actions").fetchall()) == sorted(ids)
        version = store_version(home)
        run_pass(home, MERGE_NOW)
        assert store_version(home) != version
        assert len(data_parts(home, "day=2026-10-01")) == 1
        rows = reader.execute("SELECT event_id, count(*) FROM actions GROUP BY event_id").fetchall()
        assert sorted(rows) == sorted((i, 1) for i in ids)
        cursor = reader.cursor()  # the dashboard's way: a cursor per query
        assert cursor.execute("SELECT count(*) FROM actions").fetchone() == (4,)
    finally:
        reader.close()


def test_the_key_index_does_not_grow_when_parts_it_knows_are_merged(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict]) -> None:
    for _ in range(5):
        commit(home, tmp_path, write_jsonl, [make_action(), make_action()])
    index = EventKeyIndex(home, "actions")
    index.refresh()
    assert len(index) == 10
    run_pass(home, MERGE_NOW, now=datetime.now(UTC))
    index.refresh()
    assert len(index) == 10
    fresh = EventKeyIndex(home, "actions")  # a new process reads the merged file only
    fresh.refresh()
    assert len(fresh) == 10


def test_a_damaged_merged_file_is_quarantined_and_its_parts_show_again_within_the_grace(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict]) -> None:
    ids = []
    for _ in range(3):
        event = make_action()
        ids.append(event["event_id"])
        commit(home, tmp_path, write_jsonl, [event])
    reader = open_reader(home)
    try:
        run_pass(home, MERGE_NOW)
        (merged,) = data_parts(home, "day=2026-10-01")
        merged.write_bytes(merged.read_bytes()[:100])  # a truncated file
        rows = reader.execute("SELECT event_id FROM actions ORDER BY event_id").fetchall()
        assert [r[0] for r in rows] == sorted(ids), "the parts it replaced are still there: their rows show again"
        assert not merged.exists() and (home.quarantine / "actions" / merged.name).exists()
    finally:
        reader.close()
    run_pass(home, MERGE_NOW)  # the orphan sidecar goes, and the parts are merged again
    (again,) = data_parts(home, "day=2026-10-01")
    assert again != merged


def test_a_settled_folder_lists_from_memory_until_its_mtime_moves_and_a_fresh_one_never_does(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict]) -> None:
    """serve lists a week of partitions for every rollup every minute: a folder unchanged since it was listed (same
    mtime, set long enough ago that a change must move it) is not listed again; any part, merge or marker moves the
    mtime and the folder is listed afresh. A folder whose mtime is within 2 s of now (a whole-second file system's
    tick) may change again without moving it, so it is never taken from memory."""
    for _ in range(2):
        commit(home, tmp_path, write_jsonl, [make_action()])
    folder = home.dataset_dir("actions") / "day=2026-10-01"
    hour_ago = folder.stat().st_mtime_ns - 3600 * 10**9
    os.utime(folder, ns=(hour_ago, hour_ago))
    originals = list_partition(folder)
    assert len(originals) == 2

    # A part copied in with the folder's mtime put back: only a listing from memory misses it.
    stray = folder / "part-stray.parquet"
    shutil.copy(originals[0], stray)
    os.utime(folder, ns=(hour_ago, hour_ago))
    assert list_partition(folder) == originals
    os.utime(folder)  # the mtime moves (as the rename of a new part moves it): listed afresh
    assert stray in list_partition(folder)
    stray.unlink()

    run_pass(home, MERGE_NOW)
    (merged,) = list_partition(folder)
    assert merged.name.startswith("part-c-")
    (folder / EXPIRED_MARKER).write_text("{}")
    assert list_partition(folder) == ()

    # A folder changed just now: a second change in the same tick leaves its mtime, and the listing still sees it.
    other = home.dataset_dir("actions") / "day=2026-10-02"
    commit(home, tmp_path, write_jsonl, [make_action(ts="2026-10-02T09:00:00Z")])
    now = time.time_ns()  # "just now" for the 2 s the next line may take on a busy machine
    os.utime(other, ns=(now, now))
    (first,) = list_partition(other)
    shutil.copy(first, other / "part-same-tick.parquet")
    os.utime(other, ns=(now, now))
    assert other / "part-same-tick.parquet" in list_partition(other)


def test_the_store_views_are_made_by_the_first_statement_naming_one_not_by_paths_or_comments(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict]) -> None:
    """Making the views binds every part of the store: a reader makes them when a statement names one, and a part's
    path (``.../actions/...``, in every query of the checks' own day views) or a comment does not name it."""
    commit(home, tmp_path, write_jsonl, [make_action()])
    (part,) = data_parts(home, "day=2026-10-01")
    con = open_reader(home)
    try:
        def made() -> int:
            return con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'actions'").fetchall()[0][0]

        one_part = f"SELECT count(*) FROM read_parquet('{part}') -- the actions of one part"
        assert con.execute(one_part).fetchall() == [(1,)]
        assert made() == 0
        assert con.execute("SELECT count(*) FROM actions").fetchall() == [(1,)]
        assert made() == 1
    finally:
        con.close()
