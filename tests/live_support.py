"""Running agentwatch the way `serve` users do: events arrive in order, and each `check` is a fresh process at a
later time. Shared by the live-path tests."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from agentwatch.app.demo.simulate import SimulationFiles
from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.collector.ingest.snapshots import ingest_snapshot_files
from agentwatch.core.home import Home
from agentwatch.schemas import parse_rfc3339
from agentwatch.store.datasets import ACTIONS, OUTCOMES
from agentwatch.store.reader import open_reader

CLI_TIMEOUT_S = 600  # one check on a busy 2-core machine: seconds, with a generous margin
START_TIMEOUT_S = 90.0  # a busy 2-core machine: a server usually answers in about a second
STORED_TIMEOUT_S = 60.0  # acknowledged events reach the store within a flush: seconds, with a generous margin


def agentwatch(home: Home, *args: str) -> str:
    """Run the real command in a fresh process; its stdout (a failure fails the test with its stderr)."""
    done = subprocess.run([sys.executable, "-c", "from agentwatch.app.cli import main; main()", *args,
                           "--home", str(home.root)], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                          env={"COLUMNS": "250", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, f"agentwatch {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout


def stop(process: subprocess.Popen) -> None:
    """Kill a server a test started, if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A real `agentwatch serve` of one home on one port, checks off, flushing its WAL every 0.2 s."""

    home: Home
    port: int
    key: str
    log: Path
    process: subprocess.Popen | None = None
    args: tuple[str, ...] = ()  # more options of `serve`, e.g. ("--log-format", "json")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        command = [sys.executable, "-c", "from agentwatch.app.cli import main; main()", "serve", "--home",
                   str(self.home.root), "--port", str(self.port), "--check-every", "0", "--flush-interval", "0.2",
                   *self.args]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not answer within {START_TIMEOUT_S} s:\n{self.log.read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=60)


def stored_rows(home: Home, sql: str, expected: int) -> list[tuple[Any, ...]]:
    """The rows of `sql` over the store once there are `expected` of them (the WAL reaches it within a flush)."""
    deadline = time.monotonic() + STORED_TIMEOUT_S
    while True:
        con = open_reader(home)
        try:
            found = con.execute(sql).fetchall()
        finally:
            con.close()
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


class Feed:
    """The simulated files, handed to a home in time order: `until(t)` ingests everything up to `t` not yet in."""

    def __init__(self, home: Home, files: SimulationFiles, work: Path, drop: pl.Expr | None = None) -> None:
        self.home, self.work, self.fed_to = home, work, None
        work.mkdir(parents=True, exist_ok=True)
        self.frames = {name: _with_time(path, drop if name == "actions" else None)
                       for name, path in (("actions", files.actions), ("outcomes", files.outcomes))}
        self.snapshots = sorted(files.schema_snapshots, key=_taken_at)

    def until(self, at: datetime) -> None:
        for name, dataset in (("actions", ACTIONS), ("outcomes", OUTCOMES)):
            frame = self.frames[name]
            chunk = frame.filter((pl.col("at") <= at) & (pl.col("at") > self.fed_to) if self.fed_to else
                                 pl.col("at") <= at)
            if chunk.height:
                path = self.work / f"{name}-{at:%Y%m%dT%H%M}.jsonl"
                path.write_text("\n".join(chunk["line"].to_list()) + "\n")
                report = ingest_files(self.home, dataset, [path])
                assert report.rejected == 0
        due = [p for p in self.snapshots if _taken_at(p) <= at and (self.fed_to is None or _taken_at(p) > self.fed_to)]
        if due:
            ingest_snapshot_files(self.home, due)
        self.fed_to = at


def _with_time(path: Path, drop: pl.Expr | None) -> pl.DataFrame:
    lines = path.read_text().splitlines()
    frame = pl.DataFrame({"line": lines}).with_columns(
        pl.col("line").str.json_path_match("$.ts").str.to_datetime(time_zone="UTC").alias("at"),
        pl.col("line").str.json_path_match("$.agent_id").alias("agent_id"))
    return frame.filter(~drop) if drop is not None else frame


def _taken_at(path: Path) -> datetime:
    body: dict[str, Any] = json.loads(path.read_text())
    return parse_rfc3339(body["taken_at"])
