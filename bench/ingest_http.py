"""HTTP ingest speed, end to end: a real server in a subprocess, this process as the client.

    python bench/ingest_http.py                              # 200k events, batches of 500, 3 connections
    python bench/ingest_http.py --events 1000000 --connections 4

Starts ``serve`` on a fresh AGENTWATCH_HOME (flush interval 1 s) on a free loopback port, creates
an ingest key, builds the request bodies (not timed), then sends them over 2-4 keep-alive
connections. Measures the time until every event is acknowledged (200: fsynced in the WAL), then
until every event is in the store. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import httpx

from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.store.reader import open_reader

ACTIONS = ["lead.enrich", "lead.qualify", "lead.route", "lead.assign_owner", "crm.update_field", "email.send"]


def make_bodies(events: int, batch: int, seed: int = 1) -> list[bytes]:
    """Realistic action events (about 600 bytes each) as JSON array bodies of `batch` events."""
    rng = random.Random(seed)
    bodies, current = [], []
    for i in range(events):
        event = {
            "event_id": f"act-{seed}-{i:09d}",
            "ts": f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}{rng.choice(['Z', '+02:00'])}",
            "agent_id": f"agent-{i % 6}",
            "agent_version": "2.4.0",
            "action": ACTIONS[i % len(ACTIONS)],
            "resource": {"type": "lead", "id": f"L-{rng.randrange(10**6):06d}"},
            "status": "error" if i % 60 == 0 else "ok",
            "inputs": {"deal_stage": rng.choice([None, "proposal", "negotiation"]),
                       "region": rng.choice(["NA", "EMEA"]), "employees": rng.randrange(5000),
                       "email": f"person{i}@example.com"},
            "decision": {"route_to": f"ae-{rng.randrange(20)}", "score": round(rng.random(), 4)},
            "confidence": round(rng.random(), 3),
            "latency_ms": rng.randrange(40, 900),
            "trace_id": f"{rng.getrandbits(128):032x}",
            "span_id": f"{rng.getrandbits(64):016x}",
        }
        if i % 60 == 0:
            event["error"] = {"code": "timeout", "message": "CRM write timed out after 30 s"}
        current.append(event)
        if len(current) == batch:
            bodies.append(json.dumps(current, separators=(",", ":")).encode())
            current = []
    if current:
        bodies.append(json.dumps(current, separators=(",", ":")).encode())
    return bodies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Home, port: int, flush_interval_s: float, log: Path,
                 check_every_s: float | None = 60.0) -> subprocess.Popen:
    """``serve`` in a subprocess; `check_every_s` None turns the checks off (``--check-every 0``)."""
    code = (
        "from agentwatch.app.api.app import ApiSettings; from agentwatch.app.api.server import serve; "
        "from agentwatch.core.home import Home; "
        f"serve(Home.resolve({str(home.root)!r}), port={port}, "
        f"settings=ApiSettings(flush_interval_s={flush_interval_s}), check_every_s={check_every_s!r})"
    )
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(base: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"server did not answer within {timeout} s:\n{log.read_text()}")


def json_counts(response: httpx.Response) -> tuple[int, int]:
    """(accepted, duplicates) of a ``/v1/actions`` answer."""
    answer = response.json()
    return answer["accepted"], answer["duplicates"]


def send_all(base: str, token: str, bodies: list[bytes], connections: int, path: str = "/v1/actions",
             headers: dict[str, str] | None = None,
             counts: Callable[[httpx.Response], tuple[int, int]] = json_counts) -> tuple[int, int]:
    """POST every body to `path` over `connections` keep-alive connections; returns (accepted, duplicates).

    `headers` replace the JSON Content-Type; `counts` reads (accepted, duplicates) from a 200 answer."""
    lock = threading.Lock()
    next_body = iter(range(len(bodies)))
    totals = [0, 0]
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {token}", **(headers or {"Content-Type": "application/json"})}

    def worker() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while True:
                with lock:
                    index = next(next_body, None)
                if index is None or failures:
                    return
                response = client.post(path, content=bodies[index])
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:500]}")
                    return
                accepted, duplicates = counts(response)
                with lock:
                    totals[0] += accepted
                    totals[1] += duplicates

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"request failed: {failures[0]}")
    return totals[0], totals[1]


def wait_drained(base: str, timeout: float = 600.0) -> None:
    """Return once the server's WAL holds nothing unflushed: every acknowledged event is in the store."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{base}/healthz", timeout=10).json()["wal_pending"] > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"the WAL did not drain within {timeout:.0f} s")
        time.sleep(0.02)


def stored_count(home: Home) -> int:
    con = open_reader(home)
    try:
        return con.execute("SELECT count(*) FROM actions").fetchall()[0][0]
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--connections", type=int, default=3, help="concurrent keep-alive connections (2-4)")
    parser.add_argument("--flush-interval", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and the server log")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="agentwatch-bench-http-"))
    home = Home.resolve(root / "home")
    log = root / "server.log"
    token = KeyStore(home).create("ingest", name="bench")[1]
    bodies = make_bodies(args.events, args.batch)
    body_bytes = sum(len(b) for b in bodies)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(home, port, args.flush_interval, log)
    try:
        wait_healthy(base, server, log)
        started = time.perf_counter()
        accepted, duplicates = send_all(base, token, bodies, args.connections)
        acked = time.perf_counter() - started
        wait_drained(base)
        stored_at = time.perf_counter() - started
        stored = stored_count(home)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    if accepted != args.events or stored != args.events:
        raise SystemExit(f"expected {args.events} events, got {accepted} accepted and {stored} stored; see {log}")
    result = {
        "bench": "ingest_http",
        "events": args.events,
        "batch": args.batch,
        "connections": args.connections,
        "bytes_per_event": round(body_bytes / args.events),
        "ack_seconds": round(acked, 3),
        "ack_events_per_s": round(args.events / acked),
        "stored_seconds": round(stored_at, 3),
        "stored_events_per_s": round(args.events / stored_at),
        "duplicates": duplicates,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "platform": platform.platform(),
    }
    print(json.dumps(result))
    if args.keep:
        print(f"kept {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
