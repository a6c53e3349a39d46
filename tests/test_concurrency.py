"""Several processes share one store: writers take turns, readers never wait and never fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from agentwatch.core.home import Home
from agentwatch.store.reader import open_reader

FILES = 12
EVENTS_PER_FILE = 4_000


def _write_files(folder: Path, prefix: str, files: int = FILES) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(files):
        path = folder / f"{prefix}-{f:02d}.jsonl"
        with open(path, "w") as out:
            for i in range(EVENTS_PER_FILE):
                out.write(json.dumps({
                    "event_id": f"{prefix}-{f:02d}-{i:05d}",
                    "ts": f"2026-10-{1 + i % 20:02d}T{i % 24:02d}:00:00Z",
                    "agent_id": f"agent-{i % 3}", "action": "lead.route",
                    "resource": {"type": "lead", "id": f"L-{i}"}, "status": "ok",
                    "inputs": {"deal_stage": None if i % 2 else "proposal"},
                }) + "\n")
        paths.append(path)
    return paths


def _ingest_process(home: Path, paths: list[Path]) -> subprocess.Popen:
    """`agentwatch ingest actions` in its own process, one file per call so it commits many times."""
    script = "; ".join(
        f"subprocess.run([sys.executable, '-m', 'agentwatch.app.cli', 'ingest', 'actions', {str(p)!r}, "
        f"'--home', {str(home)!r}], check=True, capture_output=True)"
        for p in paths
    )
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
    return subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; {script}"], env=env)


def _count(home: Home) -> tuple[int, int]:
    con = open_reader(home)
    try:
        return con.execute("SELECT count(*), count(DISTINCT event_id) FROM actions").fetchall()[0]
    finally:
        con.close()


def test_reader_sees_growing_store_while_another_process_writes(tmp_path: Path) -> None:
    """A reader queries throughout another process's ingest: no error, counts only grow, all rows arrive."""
    home = Home.resolve(tmp_path / "home")
    writer = _ingest_process(home.root, _write_files(tmp_path / "in", "a"))
    seen: list[int] = []
    deadline = time.monotonic() + 120
    while writer.poll() is None and time.monotonic() < deadline:
        total, distinct = _count(home)  # raises on any lock or partial-file error
        assert total == distinct, "a reader never sees a row twice"
        seen.append(total)
        time.sleep(0.02)
    assert writer.wait(timeout=120) == 0
    assert seen == sorted(seen), "the row count a reader sees never goes down"
    assert len(set(seen)) > 2, f"the reader should have watched the store grow, saw {sorted(set(seen))}"
    assert _count(home) == (FILES * EVENTS_PER_FILE, FILES * EVENTS_PER_FILE)


def test_two_writers_with_overlapping_files_store_each_event_once(tmp_path: Path) -> None:
    """Two processes ingesting the same files at once store every event exactly once."""
    home = Home.resolve(tmp_path / "home")
    paths = _write_files(tmp_path / "in", "b", files=8)
    first = _ingest_process(home.root, paths)
    second = _ingest_process(home.root, list(reversed(paths)))
    assert first.wait(timeout=120) == 0
    assert second.wait(timeout=120) == 0
    assert _count(home) == (8 * EVENTS_PER_FILE, 8 * EVENTS_PER_FILE)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_api_file_ingest_and_reader_run_side_by_side(tmp_path: Path) -> None:
    """A live API server, a file ingest and a reader share one store: nothing blocks, fails or doubles."""
    import httpx

    from agentwatch.core.api_keys import KeyStore

    home = Home.resolve(tmp_path / "home")
    _, token = KeyStore(home).create("ingest")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
    server = subprocess.Popen(
        [sys.executable, "-m", "agentwatch.app.cli", "serve", "--home", str(home.root), "--port", str(port),
         "--flush-interval", "0.2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
            writer = _ingest_process(home.root, _write_files(tmp_path / "in", "file", files=6))
            acknowledged = 0
            for batch in range(20):
                events = [{"event_id": f"api-{batch:02d}-{i:03d}", "ts": "2026-10-05T12:00:00Z",
                           "agent_id": "lead-router", "action": "lead.route",
                           "resource": {"type": "lead", "id": f"L-{i}"}, "status": "ok"} for i in range(200)]
                response = client.post("/v1/actions", json=events)
                assert response.status_code == 200, response.text
                acknowledged += response.json()["accepted"]
                total, distinct = _count(home)  # the reader works while both write
                assert total == distinct
            assert writer.wait(timeout=120) == 0
        expected = acknowledged + 6 * EVENTS_PER_FILE
        deadline = time.monotonic() + 30
        while _count(home)[0] < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _count(home) == (expected, expected)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_connection_opened_on_an_empty_store_sees_later_events(tmp_path: Path) -> None:
    """A reader connection opened before any event exists sees events ingested later, with typed columns."""
    home = Home.resolve(tmp_path / "home")
    con = open_reader(home)
    try:
        assert con.execute("SELECT count(*) FROM actions").fetchall() == [(0,)]
        column_types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE actions)").fetchall())
        assert column_types["ts"] == "TIMESTAMP WITH TIME ZONE" and column_types["day"] == "DATE"
        writer = _ingest_process(home.root, _write_files(tmp_path / "in", "late", files=1))
        assert writer.wait(timeout=120) == 0
        assert con.execute("SELECT count(*), min(day) FROM actions").fetchall()[0][0] == EVENTS_PER_FILE
    finally:
        con.close()


def test_only_a_statement_naming_a_store_view_lists_the_parts_again(tmp_path: Path) -> None:
    """After the store changed, a statement that names none of the views (a check's query of its own temporary
    tables) does not rebuild them; the next one naming a view does, and sees the new events."""
    home = Home.resolve(tmp_path / "home")
    con = open_reader(home)
    try:
        views = con._views  # the reader's views, to count their builds
        assert con.execute("SELECT count(*) FROM actions").fetchall() == [(0,)]
        built = views.builds
        writer = _ingest_process(home.root, _write_files(tmp_path / "in", "late", files=1))
        assert writer.wait(timeout=120) == 0
        con.execute("CREATE TEMP TABLE kind_actions AS SELECT 1 AS n")
        assert con.sql("SELECT count(*) FROM kind_actions").fetchall() == [(1,)]
        assert views.builds == built
        assert con.sql("SELECT count(*) FROM Actions").fetchall() == [(EVENTS_PER_FILE,)]
        assert views.builds == built + 1
    finally:
        con.close()
