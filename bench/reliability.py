"""Reliability under hostile and broken conditions: the probe of issue 12, rerun against real processes.

    python bench/reliability.py                   # every scenario (about 5 minutes on 2 cores)
    python bench/reliability.py --only kills,load # some of them

Scenarios (each prints one row of the final table; docs/reliability.md holds the figures):

1. ``kills``: 4 clients send unique events while ``serve`` is SIGKILLed 10 times at random moments and
   restarted; every acknowledged event must be stored exactly once.
2. ``load``: 8 clients for 30 s against one server: every answer must be 2xx.
3. ``hostile_batch``: one 10 MiB body ``[{},{},...]``: the server's peak RSS and the error body's size.
4. ``bad_files``: the bad-input corpus through ``agentwatch ingest``: a 100,000-deep line beside valid ones,
   a gzip bomb without newlines, a gzip bomb of ``{}`` lines, a truncated ``.gz``, NaN/Infinity, an empty
   file, JSONL read as CSV: each ends with a clear error, keeps the valid events, and stays within bounds.
5. ``damaged_part``: a truncated Parquet part: ``status`` and ``check`` carry on, the part is quarantined.
6. ``disk_full``: (root only) a home on a small tmpfs: the API refuses what it cannot store (507), loses
   nothing acknowledged, says failing, and recovers when space returns.
7. ``outage``: a receiver down while an incident is triggered, acknowledged and resolved; after it comes
   back each destination's last notification is the resolve, and none is delivered twice.
8. ``schemathesis``: the API fuzzed from its own OpenAPI document: no 5xx.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_http import free_port, make_bodies

from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from agentwatch.store.reader import open_reader

AGENTWATCH = str(Path(sys.executable).parent / "agentwatch")
MIB = 1 << 20


@dataclass
class Row:
    scenario: str
    target: str
    measured: str
    ok: bool


# -- a real server ---------------------------------------------------------------------------------


class Server:
    """``agentwatch serve`` on a free loopback port, restartable; its peak RSS read from /proc."""

    def __init__(self, home: Home, log: Path, *args: str) -> None:
        self.home, self.log, self.args = home, log, args
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> None:
        env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [AGENTWATCH, "serve", "--home", str(self.home.root), "--port", str(self.port), "--check-every", "0",
                 *self.args], stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=5).json().get("status") in ("ok", "degraded"):
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.1)
        raise SystemExit(f"server not ready within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def peak_rss_mib(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill()

    def drain(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while httpx.get(f"{self.base}/healthz", timeout=10).json()["wal_pending"] > 0:
            if time.monotonic() > deadline:
                raise SystemExit("the WAL did not drain")
            time.sleep(0.05)


def new_home(root: Path, name: str, config: str = "") -> tuple[Home, str]:
    home = Home.resolve(root / name)
    home.root.mkdir(parents=True, exist_ok=True)
    if config:
        home.config_file.write_text(config)
    return home, KeyStore(home).create("admin", name="bench")[1]


def stored_event_ids(home: Home) -> set[str]:
    con = open_reader(home)
    try:
        return {row[0] for row in con.execute("SELECT event_id FROM actions").fetchall()}
    finally:
        con.close()


def stored_ids(home: Home) -> tuple[int, int]:
    """(rows, distinct event ids) of the actions dataset."""
    con = open_reader(home)
    try:
        return con.execute("SELECT count(*), count(DISTINCT event_id) FROM actions").fetchall()[0]
    finally:
        con.close()


# -- 1 and 2: kills and load -----------------------------------------------------------------------


def _client(base: Callable[[], str], token: str, bodies: list[bytes], ids: list[list[str]], acked: set[str],
            lock: threading.Lock, stop: threading.Event, statuses: dict[int, int], latencies: list[float]) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(headers=headers, timeout=60) as client:
        index = 0
        while not stop.is_set() and index < len(bodies):
            started = time.perf_counter()
            try:
                response = client.post(f"{base()}/v1/actions", content=bodies[index])
            except httpx.TransportError:
                time.sleep(0.05)  # the server is down: retry the same batch (it may have been stored)
                continue
            with lock:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                latencies.append(time.perf_counter() - started)
                if response.status_code == 200:
                    acked.update(ids[index])
            if response.status_code == 200:
                index += 1
            else:
                time.sleep(0.05)


def _batches(clients: int, batches: int, size: int) -> list[tuple[list[bytes], list[list[str]]]]:
    work = []
    for seed in range(clients):
        bodies = make_bodies(batches * size, size, seed=1000 + seed)
        work.append((bodies, [[event["event_id"] for event in json.loads(body)] for body in bodies]))
    return work


def scenario_kills(root: Path, kills: int = 10, clients: int = 4) -> list[Row]:
    home, token = new_home(root, "kills")
    server = Server(home, root / "kills.log")
    server.start()
    work = _batches(clients, 400, 500)
    acked: set[str] = set()
    lock, stop = threading.Lock(), threading.Event()
    statuses: dict[int, int] = {}
    threads = [threading.Thread(target=_client, args=(lambda: server.base, token, bodies, ids, acked, lock, stop,
                                                      statuses, []), daemon=True) for bodies, ids in work]
    for thread in threads:
        thread.start()
    rng = random.Random(12)
    for _ in range(kills):
        time.sleep(rng.uniform(0.5, 3.0))
        server.kill()
        server.start()
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    server.drain()
    server.stop()
    rows, distinct = stored_ids(home)
    sent = {event_id for _, ids in work for batch in ids for event_id in batch}
    stored = stored_event_ids(home)
    lost = len(acked - stored)
    doubled = rows - distinct
    strays = len(stored - sent)
    return [Row("kills", f"{kills} SIGKILLs under {clients} clients: 0 acknowledged events lost or doubled",
                f"{len(acked):,} acknowledged, {rows:,} stored, {lost} lost, {doubled} doubled, {strays} unknown",
                lost == 0 and doubled == 0 and strays == 0)]


def scenario_load(root: Path, clients: int = 8, seconds: float = 30.0) -> list[Row]:
    home, token = new_home(root, "load")
    server = Server(home, root / "load.log")
    server.start()
    work = _batches(clients, 200, 500)  # more than 30 s can take at the rates measured
    acked: set[str] = set()
    lock, stop = threading.Lock(), threading.Event()
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    threads = [threading.Thread(target=_client, args=(lambda: server.base, token, bodies, ids, acked, lock, stop,
                                                      statuses, latencies), daemon=True) for bodies, ids in work]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.perf_counter() - started
    server.drain()
    server.stop()
    bad = sum(count for status, count in statuses.items() if not 200 <= status < 300)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
    return [Row("load", f"{clients} clients x {seconds:.0f} s: 0 non-2xx",
                f"{sum(statuses.values()):,} requests, {bad} non-2xx, {len(acked) / elapsed:,.0f} events/s, "
                f"p99 {p99:,.0f} ms", bad == 0 and bool(latencies))]


# -- 3: the hostile batch --------------------------------------------------------------------------


def scenario_hostile_batch(root: Path) -> list[Row]:
    home, token = new_home(root, "hostile")
    server = Server(home, root / "hostile.log")
    server.start()
    body = b"[" + b",".join([b"{}"] * (10 * MIB // 3)) + b"]"
    before = server.peak_rss_mib()
    started = time.perf_counter()
    response = httpx.post(f"{server.base}/v1/actions", content=body, timeout=600,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    seconds = time.perf_counter() - started
    peak = server.peak_rss_mib()
    healthy = httpx.get(f"{server.base}/healthz", timeout=30).status_code == 200
    server.stop()
    return [Row("hostile_batch", "10 MiB of [{},...]: RSS < 1 GB, error body < 1 MB, clear error",
                f"{len(body) / MIB:.1f} MiB body -> {response.status_code} {response.json()['error']['code']}, "
                f"{len(response.content):,} B body in {seconds:.1f} s; RSS {before:.0f} -> {peak:.0f} MiB",
                peak < 1024 and len(response.content) < MIB and response.status_code in (413, 422) and healthy)]


# -- 4: bad files ----------------------------------------------------------------------------------


def _ingest(home: Home, path: Path, *args: str) -> tuple[int, str, float]:
    """Exit code, output, and peak RSS (MiB, by GNU time) of one ``agentwatch ingest actions`` process."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"} | {"COLUMNS": "200", "NO_COLOR": "1"}
    rss_file = path.with_suffix(".rss")
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), AGENTWATCH, "ingest", "actions",
                           str(path), *args, "--home", str(home.root)], capture_output=True, text=True, timeout=900,
                          env=env)
    rss_kib = rss_file.read_text().strip().splitlines()[-1]
    return done.returncode, done.stdout + done.stderr, int(rss_kib) / 1024 if rss_kib.isdigit() else float("nan")


def _action(i: int, **extra: Any) -> str:
    event = {"event_id": f"bad-{i}", "ts": "2026-10-01T09:30:00Z", "agent_id": "a", "action": "lead.route",
             "resource": {"type": "lead", "id": f"L-{i}"}, "status": "ok", **extra}
    return json.dumps(event)


def _count(home: Home) -> int:
    if not any((home.root).rglob("*.parquet")):
        return 0
    return stored_ids(home)[0]


def scenario_bad_files(root: Path, bound_mib: int = 256) -> list[Row]:
    rows = []
    files = root / "bad-files"
    files.mkdir()
    limits = f"limits:\n  max_decompressed_bytes: {bound_mib * MIB}\n"

    def case(name: str, target: str, make: Callable[[Path], None], suffix: str, expect_stored: int,
             args: tuple[str, ...] = ()) -> None:
        home, _ = new_home(root, f"bad-{name}", limits)
        path = files / f"{name}{suffix}"
        make(path)
        code, output, rss = _ingest(home, path, *args)
        stored = _count(home)
        traceback = "Traceback" in output
        error_lines = [line for line in output.splitlines() if line.startswith("error")]
        shown = (error_lines[0] if error_lines else output.strip().splitlines()[-1] if output.strip() else "")[:110]
        rows.append(Row(f"bad_files/{name}", target, f"exit {code}, {stored} stored, RSS {rss:.0f} MiB: {shown}",
                        code != 0 and not traceback and stored == expect_stored and rss < 1024 and bool(shown)))

    def deep(path: Path) -> None:
        nested = '{"a":' * 100_000 + "1" + "}" * 100_000
        path.write_text("\n".join([_action(1), nested, _action(2, inputs={"x": 1})]) + "\n")

    def bomb_no_newline(path: Path) -> None:
        with gzip.open(path, "wb", compresslevel=9) as out:
            block = b"x" * MIB
            for _ in range(bound_mib * 2):
                out.write(block)

    def bomb_lines(path: Path) -> None:
        with gzip.open(path, "wb", compresslevel=9) as out:
            out.write((_action(1) + "\n").encode())
            block = b"{}\n" * (MIB // 3)
            for _ in range(bound_mib * 2):
                out.write(block)

    def truncated(path: Path) -> None:
        whole = gzip.compress("".join(_action(i) + "\n" for i in range(1000)).encode())
        path.write_bytes(whole[: len(whole) * 9 // 10])

    def non_finite(path: Path) -> None:
        bad = _action(2).replace('"status": "ok"', '"status": "ok", "inputs": {"x": NaN, "y": Infinity, "z": 1e999}')
        path.write_text(_action(1) + "\n" + bad + "\n")

    case("deep", "a 100,000-deep line between two valid ones: both stored, one reject", deep, ".jsonl", 2)
    case("bomb_no_newline", f"gzip inflating to {2 * bound_mib} MiB without a newline: stopped at the bound",
         bomb_no_newline, ".jsonl.gz", 0)
    case("bomb_lines", f"gzip of {2 * bound_mib} MiB of {{}} lines: stopped by a bound (the reject cap comes "
         "first), the valid line kept",
         bomb_lines, ".jsonl.gz", 1)
    case("truncated_gz", "a truncated .gz: its complete events stored, one error", truncated, ".jsonl.gz", -1)
    case("non_finite", "NaN/Infinity/1e999 in inputs: that event refused as the API does", non_finite, ".jsonl", 1)
    case("empty", "an empty file: an error, not 0 accepted", lambda p: p.write_text(""), ".jsonl", 0)
    case("jsonl_as_csv", "JSONL given --format csv: an error naming the likely format",
         lambda p: p.write_text(_action(1) + "\n"), ".jsonl", 0, ("--format", "csv"))
    # The truncated file's complete events: whatever precedes the cut (checked as "some, not none").
    last = rows[3]
    stored = int(last.measured.split(", ")[1].split()[0])
    rows[3] = Row(last.scenario, last.target, last.measured,
                  stored > 0 and "Traceback" not in last.measured and last.measured.startswith("exit 2"))
    return rows


# -- 5: a damaged part -----------------------------------------------------------------------------


def scenario_damaged_part(root: Path) -> list[Row]:
    home, _ = new_home(root, "damaged")
    path = root / "good.jsonl"
    path.write_text("".join(_action(i) + "\n" for i in range(2000)))
    code, output, _ = _ingest(home, path)
    assert code == 0, output
    path.write_text("".join(_action(i) + "\n" for i in range(2000, 3000)))
    _ingest(home, path)
    parts = sorted(home.root.rglob("*.parquet"))
    victim = parts[-1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_HOME"}
    results = []
    for command in (["status"], ["check"]):
        done = subprocess.run([AGENTWATCH, *command, "--home", str(home.root)], capture_output=True, text=True,
                              timeout=600, env=env)
        results.append((command[0], done.returncode, "Traceback" in done.stderr + done.stdout))
    quarantined = list((home.root / "quarantine").rglob("*.parquet")) if (home.root / "quarantine").exists() else []
    readable = stored_ids(home)[0]
    ok = all(code == 0 and not tb for _, code, tb in results) and len(quarantined) == 1 and readable >= 1000
    shown = ", ".join(f"{name} exit {code}{' TRACEBACK' if tb else ''}" for name, code, tb in results)
    return [Row("damaged_part", "a truncated part: commands carry on, part quarantined, rest readable",
                f"{shown}; {len(quarantined)} quarantined; {readable:,} events still readable", ok)]


# -- 6: disk full ----------------------------------------------------------------------------------


def scenario_disk_full(root: Path) -> list[Row]:
    if os.geteuid() != 0:
        return [Row("disk_full", "(needs root to mount a tmpfs)", "skipped", True)]
    mount = root / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        home, token = new_home(mount, "home")
        server = Server(home, root / "disk.log")
        server.start()
        bodies = make_bodies(200_000, 500, seed=77)
        ids = [[event["event_id"] for event in json.loads(body)] for body in bodies]
        acked: set[str] = set()
        statuses: dict[int, int] = {}
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        refused_at = None
        with httpx.Client(base_url=server.base, headers=headers, timeout=60) as client:
            for index, body in enumerate(bodies):
                response = client.post("/v1/actions", content=body)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    acked.update(ids[index])
                elif refused_at is None:
                    refused_at = (response.status_code, response.json()["error"]["code"])
                if sum(count for status, count in statuses.items() if status != 200) >= 20:
                    break
            health = httpx.get(f"{server.base}/healthz", timeout=30)
            subprocess.run(["mount", "-o", "remount,size=512m", str(mount)], check=True)
            deadline = time.monotonic() + 300
            while httpx.get(f"{server.base}/healthz", timeout=30).json()["wal_pending"] > 0:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            after = httpx.get(f"{server.base}/healthz", timeout=30).json()["status"]
        server.stop()
        log = (root / "disk.log").read_text()
        stored = stored_event_ids(home)
        lost = len(acked - stored)
        tracebacks = log.count("Traceback")
        ok = (refused_at is not None and refused_at[0] == 507 and lost == 0 and health.json()["status"] != "ok"
              and after == "ok" and tracebacks == 0)
        return [Row("disk_full", "24 MiB tmpfs: 507 when full, 0 acknowledged lost, not ok, recovers, no tracebacks",
                    f"{len(acked):,} acknowledged, first refusal {refused_at}, health while full "
                    f"{health.status_code} {health.json()['status']}, after space returns {after}, {lost} lost, "
                    f"{tracebacks} tracebacks logged", ok)]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# -- 7: a receiver outage --------------------------------------------------------------------------


def scenario_outage(root: Path) -> list[Row]:
    from agentwatch.app.alerting import alert_pass
    from agentwatch.checks.engine import incident_store
    from agentwatch.schemas.incidents import Incident
    from tests.receiver import Receiver

    receiver = Receiver().start()
    home, _ = new_home(root, "outage")
    home.config_file.write_text(f"""
alerts:
  destinations:
    slack: {{type: slack, url: "{receiver.url('/slack')}"}}
    pd: {{type: pagerduty, routing_key: bench-routing-key-0123, url: "{receiver.url('/v2/enqueue')}"}}
    hook: {{type: webhook, url: "{receiver.url('/hook')}", secret: bench-webhook-secret-0123}}
  default: [slack, pd, hook]
  group_wait: 0s
""")
    now = datetime.now(UTC)
    store = incident_store(home)
    store.save([Incident(id="INC-1", check="volume.action_spike", severity="critical", status="open",
                         opened_at=now - timedelta(minutes=5), started_at=now - timedelta(minutes=10),
                         last_fired_at=now, subject={"agent_id": "a", "action": "email.send"}, summary="spike",
                         evidence={"agents": ["a"]}, affected=10)], first_number=1)
    port = receiver.port
    receiver.stop()  # the outage starts before the first notification: connections are refused
    alert_pass(home)
    store.set_status("INC-1", "acknowledged", by="bench")
    alert_pass(home)
    store.set_status("INC-1", "resolved", by="bench")
    alert_pass(home)
    receiver = Receiver(port).start()
    deadline = time.monotonic() + 600  # real time: the retries' own backoff decides when each is due
    while _pending(home) and time.monotonic() < deadline:
        time.sleep(1)
        alert_pass(home)
    last: dict[str, str] = {}
    seen: dict[str, list[str]] = {}
    for request in receiver.requests:
        kind = _notification_kind(request.path, request.json())
        seen.setdefault(request.path, []).append(kind)
        last[request.path] = kind
    receiver.stop()
    doubled = sum(len(kinds) - len(set(kinds)) for kinds in seen.values())
    ok = len(last) == 3 and all(kind == "resolve" for kind in last.values()) and doubled == 0
    return [Row("outage", "trigger, ack, resolve queued in an outage: each destination's last word is the resolve",
                "; ".join(f"{path}: {' > '.join(kinds)}" for path, kinds in sorted(seen.items())), ok)]


def _pending(home: Home) -> int:
    from agentwatch.alerts.health import delivery_health

    return int(delivery_health(home)["alerts_pending"])


def _notification_kind(path: str, body: Any) -> str:
    """trigger, acknowledge or resolve, as each destination's own payload says it."""
    if "enqueue" in path:
        return str(body["event_action"])  # PagerDuty Events v2
    if "event" in body:
        return str(body["event"])  # our webhook: the notification itself
    context = body["blocks"][-1]["elements"][0]["text"]  # Slack: "agentwatch · resolved · <time>"
    words = {"opened": "trigger", "acknowledged": "acknowledge", "resolved": "resolve"}
    return next((kind for word, kind in words.items() if f" {word} " in context), context)


# -- 8: schemathesis -------------------------------------------------------------------------------


def scenario_schemathesis(root: Path, examples: int = 15) -> list[Row]:
    home, token = new_home(root, "schemathesis",
                           "limits:\n  requests_per_second: 100000\n  auth_failures_per_minute: 100000\n")
    server = Server(home, root / "schemathesis.log")
    server.start()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.base}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", str(examples), "--seed", "20261206", "--workers", "1",
         "--header", f"Authorization: Bearer {token}", "--no-color", "--suppress-health-check", "all",
         "--max-time", "240"], capture_output=True, text=True, timeout=900, cwd=root)
    server.stop()
    errors = (root / "schemathesis.log").read_text().count(" 500 ")
    summary = [line for line in done.stdout.splitlines() if "passed" in line or "failure" in line][-1:]
    return [Row("schemathesis", f"{examples} examples per operation: 0 5xx",
                f"exit {done.returncode}; {summary[0].strip('= ') if summary else done.stdout[-200:]}; "
                f"{errors} 500s in the server log", done.returncode == 0 and errors == 0)]


SCENARIOS: dict[str, Callable[[Path], list[Row]]] = {
    "kills": scenario_kills, "load": scenario_load, "hostile_batch": scenario_hostile_batch,
    "bad_files": scenario_bad_files, "damaged_part": scenario_damaged_part, "disk_full": scenario_disk_full,
    "outage": scenario_outage, "schemathesis": scenario_schemathesis,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios to run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes and server logs")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    root = Path(tempfile.mkdtemp(prefix="agentwatch-bench-reliability-"))
    rows: list[Row] = []
    try:
        for name in chosen:
            started = time.perf_counter()
            try:
                found = SCENARIOS[name](root)
            except (SystemExit, Exception) as exc:  # one broken scenario must not hide the others' figures
                traceback.print_exc()
                found = [Row(name, "", f"failed to run: {exc!r}"[:300], False)]
            for row in found:
                row.measured += f" [{time.perf_counter() - started:.0f} s]"
            rows.extend(found)
            print(f"{name}: done", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            subprocess.run(["umount", "-l", str(root / "tiny")], check=False, capture_output=True)
            shutil.rmtree(root, ignore_errors=True)
    machine = (f"{os.cpu_count()} cores, Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
               f"{platform.platform()}")
    if args.json:
        for row in rows:
            print(json.dumps(row.__dict__))
    else:
        print("| scenario | target | measured | ok |\n|---|---|---|---|")
        for row in rows:
            print(f"| {row.scenario} | {row.target} | {row.measured} | {'yes' if row.ok else 'NO'} |")
        print(f"\n{machine}")
    if not all(row.ok for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
