"""Small files and compaction (issue 13): a store fed one event per request, before and after compaction.

    python bench/small_files.py                      # until 5,000 parts exist, flush every 0.05 s (~10 min here)
    python bench/small_files.py --events 20000 --flush-interval 0.05 --dir /tmp/small-files

Three stores of the same events (spread over two closed days and today, UTC), each timed with
``agentwatch check`` and ``agentwatch status`` (each a fresh process, median of --repeats runs, serve stopped):

1. before: a real ``agentwatch serve`` with compaction off, fed steady single-event POSTs until at least
   --min-parts parts exist. The API writes one part per flush per day partition; a flush every second would
   need about 1.4 hours for 5,000 parts, so the WAL is flushed every --flush-interval seconds instead.
2. after: the same events against a serve with compaction on (``store.compaction.quiet_minutes: 0``, so closed
   days merge at the next background pass; the other settings are the defaults), then waiting until its
   background passes have merged the closed days.
3. baseline: the same events written to a JSON Lines file and ingested once with ``agentwatch ingest actions``.

Targets: each closed day partition of the compacted store holds at most 4 parts; its check and status times are
within 1.2x of the baseline's; every store holds each event sent exactly once (count == distinct == sent).
Prints a table and a JSON line; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_http import ACTIONS
from reliability import AGENTWATCH, Server, new_home, stored_ids

from agentwatch.core.home import Home
from agentwatch.store.layout import EMPTY_PARTITION, SCHEMA_PART
from agentwatch.store.partitions import visible_parts
from agentwatch.store.settings import CompactionSettings

# Compaction off: no pass merges anything (a closed day is never quiet long enough, the open one never has
# enough parts) and the background pass runs once a day.
CONFIG_OFF = "store:\n  compaction:\n    quiet_minutes: 1000000000\n    max_open_parts: 1000000000\n" \
             "    every_seconds: 86400\n"
CONFIG_ON = "store:\n  compaction:\n    quiet_minutes: 0\n"
MAX_CLOSED_PARTS = 4
MAX_RATIO = 1.2
COMPACTION_DEADLINE_S = 900.0


@dataclass
class Result:
    name: str
    parts: dict[str, int]
    check_s: float
    status_s: float
    rows: int
    distinct: int
    notes: list[str] = field(default_factory=list)


def event_days(today: date) -> list[date]:
    return [today - timedelta(days=2), today - timedelta(days=1), today]


def make_event(i: int, days: list[date], now: datetime) -> dict[str, Any]:
    """Event `i` of the stream: round-robin over the days, spread over each day (today's before `now`)."""
    day = days[i % len(days)]
    span = 86_400 if day < now.date() else max(60, int((now - datetime.combine(day, datetime.min.time(), UTC))
                                                       .total_seconds()) - 60)
    ts = datetime.combine(day, datetime.min.time(), UTC) + timedelta(seconds=(i * 7919) % span)
    event: dict[str, Any] = {
        "event_id": f"sf-{i:09d}",
        "ts": ts.isoformat().replace("+00:00", "Z"),
        "agent_id": f"agent-{i % 4}",
        "agent_version": "2.4.0",
        "action": ACTIONS[i % len(ACTIONS)],
        "resource": {"type": "lead", "id": f"L-{(i * 31) % 50_000:06d}"},
        "status": "error" if i % 50 == 0 else "ok",
        "inputs": {"region": ["NA", "EMEA", "APAC"][i % 3], "employees": (i * 13) % 5000,
                   "email": f"person{i}@example.com"},
        "decision": {"route_to": f"ae-{i % 20}", "score": round((i * 0.618) % 1, 4)},
        "confidence": round((i * 0.377) % 1, 3),
        "latency_ms": 40 + (i * 17) % 860,
    }
    if i % 50 == 0:
        event["error"] = {"code": "timeout", "message": "CRM write timed out after 30 s"}
    return event


def data_parts(home: Home) -> dict[str, int]:
    """Visible data parts of the actions dataset per day partition (the zero-row schema part left out)."""
    return {name.removeprefix("day="): sum(1 for p in parts if p.name != SCHEMA_PART)
            for name, parts in visible_parts(home, "actions").items() if name != EMPTY_PARTITION}


class Traffic:
    """Steady single-event POSTs to one server: event i leaves at start + i / rate, over `connections` keep-alive
    connections; a 429 waits its Retry-After and sends the same event again, as a well-behaved client does.
    With `follow`, event i is sent only once `follow` has sent it, and none past where `follow` stopped: the same
    events at the same pace."""

    def __init__(self, server: Server, token: str, events: list[bytes], rate: float, connections: int,
                 follow: Traffic | None = None) -> None:
        self.server, self.token, self.events, self.rate, self.follow = server, token, events, rate, follow
        self.lock = threading.Lock()
        self.issued = 0  # events handed to a connection; each is acknowledged before its connection goes on
        self.acked = 0
        self.retried = 0  # 429s waited out
        self.failures: list[str] = []
        self.stop = threading.Event()  # send no further event
        self.done = threading.Event()  # every connection has finished
        self.seconds = 0.0
        self._started = 0.0
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(connections)]

    def start(self) -> None:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._join, daemon=True).start()

    def wait(self) -> None:
        self.done.wait()
        if self.failures:
            raise SystemExit(f"a POST to {self.server.base} failed: {self.failures[0]}; see {self.server.log}")

    def _join(self) -> None:
        for thread in self._threads:
            thread.join()
        self.seconds = time.monotonic() - self._started
        self.done.set()

    def _next(self) -> int | None:
        """The next event to send; None when this traffic is over."""
        while True:
            with self.lock:
                index = self.issued
                if self.stop.is_set() or self.failures or index >= len(self.events):
                    return None
                if self.follow is None or index < self.follow.issued:
                    self.issued += 1
                    return index
            if self.follow.done.is_set():  # it stopped before this event
                return None
            time.sleep(0.01)

    def _worker(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=self.server.base, headers=headers, timeout=60) as client:
            while (index := self._next()) is not None:
                time.sleep(max(0.0, self._started + index / self.rate - time.monotonic()))
                while (response := client.post("/v1/actions", content=self.events[index])).status_code == 429:
                    with self.lock:
                        self.retried += 1
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                if response.status_code != 200 or response.json().get("accepted") != 1:
                    with self.lock:
                        self.failures.append(f"event {index}: {response.status_code} {response.text[:300]}")
                    return
                with self.lock:
                    self.acked += 1


def stop_at_parts(home: Home, traffic: Traffic, min_parts: int) -> None:
    """Stop `traffic` once `home` holds `min_parts` data parts (looked at twice a second)."""
    def watch() -> None:
        while not traffic.done.wait(0.5):
            if sum(data_parts(home).values()) >= min_parts:
                traffic.stop.set()
                return
    threading.Thread(target=watch, daemon=True).start()


def wait_compacted(home: Home, today: str, server: Server, deadline_s: float) -> float:
    """Wait until every closed day partition holds at most MAX_CLOSED_PARTS parts and the open one at most
    max_open_parts (the background passes merged them); returns the seconds waited."""
    started = time.monotonic()
    bound = CompactionSettings().max_open_parts
    while True:
        parts = data_parts(home)
        closed_ok = all(n <= MAX_CLOSED_PARTS for day, n in parts.items() if day != today)
        if closed_ok and parts.get(today, 0) <= bound:
            return time.monotonic() - started
        if time.monotonic() - started > deadline_s:
            raise SystemExit(f"compaction did not bring the parts down within {deadline_s:.0f} s: {parts}; "
                             f"see {server.log}")
        time.sleep(1.0)


def median_seconds(command: str, home: Home, repeats: int) -> float:
    """Median wall time of `agentwatch <command> --home H`, each run a fresh process; a failing run is fatal."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run([AGENTWATCH, command, "--home", str(home.root)], capture_output=True, text=True,
                              env=env, timeout=3600)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"agentwatch {command} on {home.root} exited {done.returncode}:\n"
                             f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return statistics.median(times)


def measure(name: str, home: Home, repeats: int) -> Result:
    rows, distinct = stored_ids(home)
    return Result(name, data_parts(home), median_seconds("check", home, repeats),
                  median_seconds("status", home, repeats), rows, distinct)


def ingest_file(root: Path, events: list[bytes]) -> tuple[Home, float]:
    home, _ = new_home(root, "baseline")
    path = root / "events.jsonl"
    path.write_bytes(b"\n".join(events) + b"\n")
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
    started = time.perf_counter()
    done = subprocess.run([AGENTWATCH, "ingest", "actions", str(path), "--home", str(home.root)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"agentwatch ingest exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return home, time.perf_counter() - started


def parts_text(parts: dict[str, int], today: str) -> str:
    return ", ".join(f"{day}{' (open)' if day == today else ''}: {n:,}" for day, n in sorted(parts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None,
                        help="send exactly this many events (default: until --min-parts parts exist)")
    parser.add_argument("--min-parts", type=int, default=5000, help="parts the uncompacted store must reach")
    parser.add_argument("--max-events", type=int, default=200_000, help="the most events the default run sends")
    parser.add_argument("--flush-interval", type=float, default=0.05, help="seconds between WAL flushes")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="events a second to each server (the API allows 200 requests a second per key)")
    parser.add_argument("--connections", type=int, default=2, help="keep-alive connections to each server")
    parser.add_argument("--repeats", type=int, default=3, help="runs of check and status per store (median)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder, kept (default: a temporary one)")
    args = parser.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="agentwatch-bench-small-"))
    if args.dir and root.exists() and any(root.iterdir()):
        raise SystemExit(f"--dir {root} is not empty: give a new folder")
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    today = now.date().isoformat()
    days = event_days(now.date())
    events = [json.dumps(make_event(i, days, now), separators=(",", ":")).encode()
              for i in range(args.events or args.max_events)]
    print(f"WAL flushed every {args.flush_interval} s (at one flush a second, 5,000 parts would take about 1.4 h); "
          f"one event per POST at {args.rate:g}/s over {args.connections} connections to each server; "
          f"days {', '.join(d.isoformat() for d in days)} (the last one open); work folder {root}", flush=True)

    # 1 and 2: the same traffic, at the same time, to a serve with compaction off and one with it on; the timings
    # come later, with both stopped.
    before_home, before_token = new_home(root, "before", CONFIG_OFF)
    after_home, after_token = new_home(root, "after", CONFIG_ON)
    flush = ("--flush-interval", str(args.flush_interval))
    servers = [Server(before_home, root / "before.log", *flush), Server(after_home, root / "after.log", *flush)]
    try:
        for server in servers:
            server.start()
        before_traffic = Traffic(servers[0], before_token, events, args.rate, args.connections)
        after_traffic = Traffic(servers[1], after_token, events, args.rate, args.connections, follow=before_traffic)
        if args.events is None:
            stop_at_parts(before_home, before_traffic, args.min_parts)
        before_traffic.start()
        after_traffic.start()
        before_traffic.wait()
        after_traffic.wait()
        for server in servers:
            server.drain()
        servers[0].stop()
        parts_at_end = sum(data_parts(after_home).values())
        print(f"traffic: {before_traffic.acked:,} events in {before_traffic.seconds:.0f} s; before: "
              f"{parts_text(data_parts(before_home), today)}; after, when the traffic ended: {parts_at_end:,} parts; "
              f"waiting for its background compaction", flush=True)
        waited = wait_compacted(after_home, today, servers[1], COMPACTION_DEADLINE_S)
    finally:
        for server in servers:
            server.stop()
    sent = before_traffic.acked
    events = events[:sent]

    before = measure("before (compaction off)", before_home, args.repeats)
    before.notes.append(f"{sent:,} events in {before_traffic.seconds:.0f} s ({sent / before_traffic.seconds:,.0f}/s,"
                        f" {before_traffic.retried} 429s waited out)")
    print(f"before: check {before.check_s:.2f} s, status {before.status_s:.2f} s", flush=True)
    after = measure("after (quiet_minutes: 0)", after_home, args.repeats)
    after.notes.append(f"{after_traffic.acked:,} events in {after_traffic.seconds:.0f} s "
                       f"({after_traffic.retried} 429s waited out); {parts_at_end:,} parts when the traffic ended, "
                       f"compacted by the background passes {waited:.0f} s later")
    print(f"after: check {after.check_s:.2f} s, status {after.status_s:.2f} s", flush=True)
    baseline_home, ingest_s = ingest_file(root, events)
    baseline = measure("baseline (one file ingest)", baseline_home, args.repeats)
    baseline.notes.append(f"ingested in {ingest_s:.1f} s")

    results = [before, after, baseline]
    closed = [n for day, n in after.parts.items() if day != today]
    targets = [
        (f"before: at least {args.min_parts:,} parts", sum(before.parts.values()) >= args.min_parts),
        (f"after: each closed day partition <= {MAX_CLOSED_PARTS} parts", bool(closed) and max(closed)
         <= MAX_CLOSED_PARTS),
        (f"after: check within {MAX_RATIO}x of the baseline's", after.check_s <= MAX_RATIO * baseline.check_s),
        (f"after: status within {MAX_RATIO}x of the baseline's", after.status_s <= MAX_RATIO * baseline.status_s),
    ] + [(f"{r.name}: the {sent:,} events sent, each once", r.rows == r.distinct == sent) for r in results]

    print()
    print("| store | parts per day partition | parts | check (median) | status (median) | rows / distinct ids |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.name} | {parts_text(r.parts, today)} | {sum(r.parts.values()):,} | {r.check_s:.2f} s | "
              f"{r.status_s:.2f} s | {r.rows:,} / {r.distinct:,} |")
    print()
    for r in results:
        for note in r.notes:
            print(f"{r.name}: {note}")
    print(f"after / baseline: check {after.check_s / baseline.check_s:.2f}x, status "
          f"{after.status_s / baseline.status_s:.2f}x; before / baseline: check "
          f"{before.check_s / baseline.check_s:.2f}x, status {before.status_s / baseline.status_s:.2f}x")
    for text, ok in targets:
        print(f"{'met' if ok else 'NOT MET'}: {text}")
    print(json.dumps({
        "bench": "small_files", "events": sent, "flush_interval_s": args.flush_interval, "rate": args.rate,
        "results": [{"store": r.name, "parts": r.parts, "check_s": round(r.check_s, 3),
                     "status_s": round(r.status_s, 3), "rows": r.rows, "distinct": r.distinct} for r in results],
        "targets_met": all(ok for _, ok in targets), "nproc": os.cpu_count(), "python": platform.python_version(),
        "duckdb": duckdb.__version__, "load_average": os.getloadavg(),
    }))
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    if not all(ok for _, ok in targets):
        sys.exit(1)


if __name__ == "__main__":
    main()
