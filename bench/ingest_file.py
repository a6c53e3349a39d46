"""Ingest speed and memory from a JSONL file, against DuckDB's own load of the same file.

    python bench/ingest_file.py                      # 1M events: events/s, ratio to DuckDB's read_json
    python bench/ingest_file.py --gigabytes 5        # a 5 GB file: events/s and peak memory (RSS)

Each measured run is a fresh subprocess on a fresh AGENTWATCH_HOME, so its peak RSS is its own.
Prints one JSON line per run and a Markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

BLOCK_EVENTS = 100_000
ACTIONS = ["lead.enrich", "lead.qualify", "lead.route", "lead.assign_owner", "crm.update_field", "email.send",
           "sequence.enroll", "meeting.book"]


def _block(seed: int = 1) -> bytes:
    """100k realistic action events whose ids carry a placeholder the repetitions replace."""
    rng = random.Random(seed)
    lines = []
    for i in range(BLOCK_EVENTS):
        action = ACTIONS[i % len(ACTIONS)]
        event = {
            "event_id": f"act-RRRRRR-{i:06d}",
            "ts": f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}{rng.choice(['Z', '+02:00'])}",
            "agent_id": f"agent-{i % 6}", "agent_version": "2.4.0", "action": action,
            "resource": {"type": "lead", "id": f"L-{rng.randrange(10**6):06d}"},
            "status": "error" if i % 60 == 0 else "ok",
            "inputs": {"deal_stage": rng.choice([None, "proposal", "negotiation"]),
                       "region": rng.choice(["NA", "EMEA"]), "employees": rng.randrange(5000),
                       "segment": rng.choice(["smb", "mid-market", "enterprise"]),
                       "email": f"person{i}@example.com", "lead_source": "web"},
            "decision": {"route_to": f"ae-{rng.randrange(20)}", "score": round(rng.random(), 4),
                         "intent": rng.choice(["high", "medium", "low"])},
            "confidence": round(rng.random(), 3), "latency_ms": rng.randrange(40, 900),
            "trace_id": f"{rng.getrandbits(128):032x}", "span_id": f"{rng.getrandbits(64):016x}",
        }
        if action == "crm.update_field":
            event["before"] = {"status": "new", "owner": None}
            event["after"] = {"status": "routed", "owner": f"ae-{rng.randrange(20)}"}
        if i % 60 == 0:
            event["error"] = {"code": "timeout", "message": "CRM write timed out after 30 s"}
        lines.append(json.dumps(event, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def write_events(path: Path, target_bytes: int | None, events: int | None) -> int:
    """Write repetitions of the block (unique ids) until the size or count is reached; returns events written."""
    block = _block()
    written = 0
    with open(path, "wb") as out:
        repetition = 0
        while True:
            if events is not None and written >= events:
                break
            if target_bytes is not None and out.tell() >= target_bytes:
                break
            out.write(block.replace(b"RRRRRR", f"{repetition:06d}".encode()))
            written += BLOCK_EVENTS
            repetition += 1
    return written


def _measure(code: str, env: dict[str, str]) -> tuple[float, int, str]:
    """Run `code` in a fresh interpreter; returns (seconds, peak RSS bytes, stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    output = process.stdout.read() if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark run failed: {output}")
    return seconds, usage.ru_maxrss * 1024, output.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the file (default 1M)")
    parser.add_argument("--gigabytes", type=float, help="write a file of this size instead (memory run)")
    parser.add_argument("--skip-duckdb", action="store_true", help="do not time DuckDB's own load")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agentwatch-bench-"))
    path = work / "actions.jsonl"
    target = int(args.gigabytes * 1e9) if args.gigabytes else None
    events = write_events(path, target, None if target else args.events)
    size = path.stat().st_size
    os.sync()  # the input's own writeback must not compete with the measured run
    env = {**os.environ, "AGENTWATCH_HOME": str(work / "home")}
    ingest = (
        "from pathlib import Path; from agentwatch.core.home import Home;"
        "from agentwatch.store.datasets import ACTIONS;"
        "from agentwatch.collector.ingest.pipeline import ingest_files;"
        f"r = ingest_files(Home.resolve(), ACTIONS, [Path({str(path)!r})]); print(r.accepted)"
    )
    seconds, rss, accepted = _measure(ingest, env)
    if int(accepted) != events:
        raise SystemExit(f"expected {events} accepted, got {accepted}")
    result = {
        "events": events, "file_bytes": size, "agentwatch_s": round(seconds, 2),
        "agentwatch_events_per_s": round(events / seconds), "agentwatch_peak_rss_mb": round(rss / 2**20),
    }
    if not args.skip_duckdb:
        load = (
            "import duckdb; con = duckdb.connect(" + repr(str(work / "yardstick.duckdb")) + ");"
            f"con.execute(\"CREATE TABLE t AS SELECT * FROM read_json({str(path)!r}, format='newline_delimited')\")"
            ".fetchall()"
        )
        duck_seconds, duck_rss, _ = _measure(load, env)
        result |= {"duckdb_read_json_s": round(duck_seconds, 2), "duckdb_events_per_s": round(events / duck_seconds),
                   "duckdb_peak_rss_mb": round(duck_rss / 2**20),
                   "ratio_agentwatch_to_duckdb": round((events / seconds) / (events / duck_seconds), 2)}
    result |= {"machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
                          f"DuckDB {duckdb.__version__}"}
    print(json.dumps(result))
    print(f"| {events:,} events, {size / 1e9:.2f} GB | {result['agentwatch_events_per_s']:,}/s "
          f"| {result.get('duckdb_events_per_s', 0):,}/s | {result.get('ratio_agentwatch_to_duckdb', '-')} "
          f"| {result['agentwatch_peak_rss_mb']:,} MB |")
    for leftover in sorted(work.rglob("*"), reverse=True):
        leftover.unlink() if leftover.is_file() else leftover.rmdir()
    work.rmdir()


if __name__ == "__main__":
    main()
