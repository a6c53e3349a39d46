"""Speed of the checks: one ``check`` over a 10-million-event store, a 14-day backtest over 1 million events.

Run: ``.venv/bin/python bench/check_speed.py [--events 10000000] [--dir PATH] [--skip-build]``.

1. Builds two stores (unless ``--skip-build`` reuses the ones in ``--dir``): action events are generated
   by DuckDB straight into Parquet files in the flat layout (``range()`` with hash-derived columns: four
   agents, eight actions, inputs with nulls, decisions, errors, approvals), plus owner_changed outcomes and
   daily CRM snapshots, then ingested with ``ingest_files`` like any export. The big store spreads
   ``--events`` over ``--days`` days (default 14, so the checks' baselines read nearly all of it); the
   backtest store spreads ``--backtest-events`` over the checks' warm-up plus 14 days. Both are then compacted
   as ``serve``'s compactor leaves closed days (one merged file per day; reported, not part of any target).
2. Times, each in a fresh child process that reports its own peak RSS, with the wall clock set to one minute
   after the big store's last event (``now``: what the kept aggregates treat as settled):
   * the first ``check`` after the ingest, which also builds the aggregates of every settled hour (no target:
     ``serve`` builds them as events arrive, hour by hour);
   * ``check`` again in a fresh process with an incident store of its own, so every check is due (cold),
     reading the aggregates plus the last hour's events (target < 5 s, < 1 GB peak RSS);
   * ``check`` as cron runs it: a fresh process two minutes later, a minute of new events in, on the incident
     store the cold run left, so the checks whose cadence (``every_minutes``) is not due rest;
   * what a running ``serve`` does over the next hour: the same check objects, holding the aggregates' files
     and last answers, evaluate once a minute, each time after a minute of new events (about the store's average
     rate) arrived; every run is timed, the slowest being those where a 5-, 15- or 60-minute check falls due
     (each at its own minute: ``agentwatch.checks.phases``) (target < 1 s); after a run in which an hour settled,
     the checks that rested prepare ahead, as serve's scheduler has them (``prepare_ahead``: timed apart);
   * a 14-day backtest at 15-minute steps over the small store (target < 5 min).

The benchmark's config (``bench/scenarios/config.py``) is used, so policy, workflow and expectation
checks have something to check. Ingest time is reported separately: it is not part of either target.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scenarios.config import bench_config
from scenarios.crm_schema import lead_fields

from agentwatch.checks.engine import backtest_steps, enabled_checks, evaluate, prepare_ahead
from agentwatch.checks.incidents import IncidentStore
from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.collector.ingest.snapshots import ingest_snapshot_items
from agentwatch.core.home import Home
from agentwatch.store import duck
from agentwatch.store.compaction import run_pass
from agentwatch.store.datasets import ACTIONS, OUTCOMES
from agentwatch.store.kept_rows import KeptRows
from agentwatch.store.rollups import HOUR, SETTLE, floor_to
from agentwatch.store.settings import StoreSettings

END = datetime(2026, 10, 19, tzinfo=UTC)  # a Monday, 00:00 UTC: the last event time of both stores
NOW = END + timedelta(minutes=1)  # the wall clock the kept aggregates see: serve running a minute after the data
FILE_ROWS = 1_000_000
BACKTEST_DAYS = 14
CHECK_TARGET_S, CHECK_TARGET_MB, SERVE_TARGET_S, BACKTEST_TARGET_S = 5.0, 1024, 1.0, 300.0
SERVE_MINUTES = 60  # serve's runs timed: every cadence (5, 15 and 60 minutes) falls due in them, at its phase
# Each minute's events land as this many parts (the API writes one per flush, every second under steady traffic;
# fewer here keeps the ingest quick), so the open day piles up parts until the compactor merges them.
PARTS_PER_MINUTE = 10

# Action mix (percent ranges of a hash) and the agent that takes each action.
_MIX = (("enrichment-agent", "lead.enrich", 10), ("enrichment-agent", "crm.update_field", 40),
        ("qualifier-agent", "lead.qualify", 50), ("lead-router", "lead.route", 60),
        ("lead-router", "lead.assign_owner", 70), ("lead-router", "sequence.enroll", 80),
        ("followup-agent", "email.send", 90), ("followup-agent", "crm.log_activity", 100))


def _case(column: int) -> str:
    """SQL choosing agent (column 0) or action (column 1) from the hash bucket `a`."""
    whens = " ".join(f"WHEN a < {row[2]} THEN '{row[column]}'" for row in _MIX)
    return f"CASE {whens} END"


def _u(i: str, salt: int) -> str:
    """A uniform number in [0, 1) from a hash of the row number and a salt."""
    return f"(hash({i} * 64 + {salt}) % 1000000) / 1000000.0"


def actions_sql(first: int, last: int, total: int, start: datetime, span: timedelta) -> str:
    """Action events first..last-1 in the flat Parquet layout; times spread over `span` with a working-day peak."""
    leads = max(total // 8, 1)
    return f"""
    WITH base AS (
        SELECT i, CAST(hash(i * 64 + 1) % 100 AS INTEGER) AS a,
               floor({_u('i', 2)} * {span.days}) AS day,
               ({_u('i', 3)} + {_u('i', 4)} + {_u('i', 5)}) / 3.0 AS in_day,  -- peaks mid-day
               'L' || CAST(hash(i * 64 + 6) % {leads} AS VARCHAR) AS lead
        FROM range({first}, {last}) t(i))
    SELECT 'e' || i AS event_id,
           TIMESTAMPTZ '{start.isoformat()}' + to_microseconds(CAST((day + in_day) * 86400e6 AS BIGINT)) AS ts,
           {_case(0)} AS agent_id, {_case(1)} AS action, '1.0.' || CAST(a % 3 AS VARCHAR) AS agent_version,
           'lead' AS resource_type, lead AS resource_id,
           CASE WHEN hash(i * 64 + 7) % 1000 < 5 THEN 'error' ELSE 'ok' END AS status,
           CASE WHEN hash(i * 64 + 7) % 1000 < 5 THEN 'timeout' END AS error_code,
           {{'region': CASE WHEN hash(i * 64 + 8) % 100 < 2 THEN NULL
                            ELSE ['NA', 'EMEA', 'APAC'][1 + CAST(hash(i * 64 + 9) % 3 AS INTEGER)] END,
             'segment': ['smb', 'mid-market', 'enterprise'][1 + CAST(hash(i * 64 + 10) % 3 AS INTEGER)],
             'employees': CAST(hash(i * 64 + 11) % 5000 AS BIGINT),
             'deal_stage': CASE WHEN hash(i * 64 + 12) % 10 = 0 THEN 'proposal' END}} AS inputs,
           CASE WHEN a >= 40 AND a < 50 THEN {{'status': 'enriched'}}
                WHEN a >= 60 AND a < 70 THEN {{'status': 'qualified'}} END AS before,
           CASE WHEN a >= 40 AND a < 50 THEN {{'status': 'qualified'}}
                WHEN a >= 60 AND a < 70 THEN {{'status': 'routed'}} END AS after,
           CASE WHEN a >= 40 AND a < 60 THEN
                {{'route_to': 'sdr:' || ['na', 'emea', 'apac'][1 + CAST(hash(i * 64 + 9) % 3 AS INTEGER)] || '-smb',
                  'score': round({_u('i', 13)}, 3)}} END AS decision,
           CASE WHEN a >= 40 AND a < 60 THEN round(0.5 + {_u('i', 14)} / 2, 3) END AS confidence,
           CASE WHEN a >= 80 AND a < 90 THEN true END AS external,
           CASE WHEN a >= 80 AND a < 90 THEN 'sdr-' || CAST(hash(i * 64 + 15) % 40 AS VARCHAR) END AS approved_by,
           CASE WHEN a >= 80 AND a < 90 THEN strftime(TIMESTAMPTZ '{start.isoformat()}'
                + to_microseconds(CAST((day + in_day) * 86400e6 AS BIGINT) - 60000000), '%Y-%m-%dT%H:%M:%SZ')
                END AS approved_at,
           round(100 + {_u('i', 16)} * 900, 1) AS latency_ms,
           't' || lead AS trace_id
    FROM base"""


def outcomes_sql(total: int, start: datetime, span: timedelta) -> str:
    """owner_changed outcomes for 3% of lead.assign_owner events, 1-25 hours after them."""
    return f"""
    WITH base AS (
        SELECT i, CAST(hash(i * 64 + 1) % 100 AS INTEGER) AS a,
               floor({_u('i', 2)} * {span.days}) AS day,
               ({_u('i', 3)} + {_u('i', 4)} + {_u('i', 5)}) / 3.0 AS in_day,
               'L' || CAST(hash(i * 64 + 6) % {max(total // 8, 1)} AS VARCHAR) AS lead
        FROM range(0, {total}) t(i))
    SELECT 'o' || i AS event_id,
           TIMESTAMPTZ '{start.isoformat()}' + to_microseconds(CAST((day + in_day) * 86400e6 AS BIGINT)
                + CAST((1 + 24 * {_u('i', 17)}) * 3600e6 AS BIGINT)) AS ts,
           'owner_changed' AS kind, 'lead' AS resource_type, lead AS resource_id, 'rep-1' AS actor,
           'OwnerId' AS field, 'e' || i AS corrects_event_id
    FROM base WHERE a >= 60 AND a < 70 AND hash(i * 64 + 18) % 100 < 3"""


def build(root: Path, events: int, days: int) -> float:
    """A home at `root` with `events` actions over `days` days ending at END; returns the ingest seconds."""
    start, span = END - timedelta(days=days), timedelta(days=days)
    home = Home.resolve(root)
    parquet = root.parent / f"{root.name}-input"
    parquet.mkdir(parents=True, exist_ok=True)
    con = duck.connect(memory_limit="2GB")
    t0 = time.perf_counter()
    files = []
    for n, first in enumerate(range(0, events, FILE_ROWS)):
        path = parquet / f"actions-{n:03d}.parquet"
        duck.run(con, f"COPY ({actions_sql(first, min(first + FILE_ROWS, events), events, start, span)}) "
                      f"TO '{path}' (FORMAT parquet)")
        files.append(path)
    out_path = parquet / "outcomes.parquet"
    duck.run(con, f"COPY ({outcomes_sql(events, start, span)} AND ts <= TIMESTAMPTZ '{END.isoformat()}') "
                  f"TO '{out_path}' (FORMAT parquet)")
    con.close()
    print(f"  generated {events:,} actions as Parquet in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    t0 = time.perf_counter()
    report = ingest_files(home, ACTIONS, files, "parquet")
    outcomes = ingest_files(home, OUTCOMES, [out_path], "parquet")
    snapshots = [{"taken_at": (start + timedelta(days=d, minutes=5)).isoformat(), "source": "salesforce",
                  "object": "Lead", "fields": lead_fields(False, False)} for d in range(days)]
    ingest_snapshot_items(home, snapshots, source="bench")
    seconds = time.perf_counter() - t0
    if report.rejected or outcomes.rejected:
        raise RuntimeError(f"rejected: {[r.describe() for r in (report.sample + outcomes.sample)[:3]]}")
    print(f"  ingested {report.accepted:,} actions and {outcomes.accepted:,} outcomes in {seconds:.1f} s "
          f"({report.accepted / seconds:,.0f} events/s)", file=sys.stderr)
    return seconds


def measure(home_dir: Path, steps: list[datetime], now: datetime | None = None,
            incidents: Path | None = None) -> dict:
    """Evaluate every check at `steps` into the incident store at `incidents` (default: a throwaway one); runs in a
    child process."""
    config = bench_config()
    checks = enabled_checks(config)
    with tempfile.TemporaryDirectory() as tmp:
        store = IncidentStore(incidents or Path(tmp) / "incidents.sqlite3")
        started = time.perf_counter()
        report = evaluate(Home.resolve(home_dir), config, steps, store, checks=checks, now=now)
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "steps": len(steps), "incidents": len(report.incidents),
            "failures": report.failures, "not_due": report.resting, "peak_rss_mb": _peak_mb(),
            "gx_worker_peak_rss_mb": _worker_peak_mb(checks)}


def _worker_peak_mb(checks: list) -> int | None:
    """The peak RSS of the Great Expectations process, if the run started one (it runs beside this one)."""
    for check in checks:
        worker = getattr(check, "worker", None)
        if worker is not None and worker.running:
            return _peak_mb(Path(f"/proc/{worker.process.pid}/status"))
    return None


def warm_check(home_dir: Path, incidents: Path, per_minute: int) -> dict:
    """`check` run by cron: a fresh process two minutes after the cold run that wrote `incidents`, a minute of
    new events later; the checks whose cadence is not due rest, as they would in serve."""
    with tempfile.TemporaryDirectory() as tmp:
        _add_minute(Home.resolve(home_dir), Path(tmp), per_minute)
    return measure(home_dir, [END + timedelta(minutes=2)], now=NOW + timedelta(minutes=2), incidents=incidents)


def _peak_mb(status_file: Path = Path("/proc/self/status")) -> int:
    """A process's peak RSS (default: this one's). Linux's VmHWM, not getrusage's ru_maxrss: that one survives fork
    and exec, so a child of the process that built the stores (1.4 GB) would report the builder's peak as its own."""
    try:
        status = status_file.read_text(encoding="ascii")
        return round(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024)
    except (OSError, StopIteration):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux reports KiB


def serve_minutes(home_dir: Path, per_minute: int, minutes: int = SERVE_MINUTES) -> dict:
    """What serve's scheduler does: the same check objects (and the aggregates' files it holds in memory) evaluate at
    NOW, then once a minute after each minute of new events landed (its own part, as one API flush or a few would
    write). Times each of those runs; a check evaluates at its cadence (`every_minutes`), so the runs where the
    5- and 15-minute checks are due cost more than the others."""
    config, home = bench_config(), Home.resolve(home_dir)
    checks, kept = enabled_checks(config), KeptRows()
    runs, merges, ahead = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        incidents = IncidentStore(Path(tmp) / "incidents.sqlite3")
        evaluate(home, config, [NOW], incidents, checks=checks, now=NOW, kept=kept)
        for minute in range(1, minutes + 1):
            _add_minute(home, Path(tmp), per_minute, NOW + timedelta(minutes=minute - 1), parts=PARTS_PER_MINUTE)
            at = NOW + timedelta(minutes=minute)
            # serve's compactor runs between the minute runs (in its own thread): merges the open day's parts.
            began = time.perf_counter()
            if run_pass(home, config.store, now=at).merged:
                merges.append({"minute": minute, "seconds": round(time.perf_counter() - began, 2)})
            started = time.perf_counter()
            report = evaluate(home, config, [at], incidents, checks=checks, now=at, kept=kept)
            seconds = round(time.perf_counter() - started, 2)
            every_minute = {c.name for c in checks if not c.options.every_minutes}
            heavy = {k: round(v, 2) for k, v in report.prepare_seconds.items() if k not in every_minute}
            failures = dict(report.failures)
            # As serve's scheduler does after a run in which an hour settled (not part of the minute's time).
            if floor_to(at - SETTLE, HOUR) != floor_to(at - timedelta(minutes=1) - SETTLE, HOUR):
                began = time.perf_counter()
                failures |= prepare_ahead(home, config, at, incidents, checks, kept, report.resting)
                ahead.append({"minute": minute, "seconds": round(time.perf_counter() - began, 2)})
            runs.append({"minute": minute, "seconds": seconds, "cadenced": heavy, "failures": failures})
    seconds = sorted(r["seconds"] for r in runs)
    return {"next_minute": runs[0]["seconds"], "median": seconds[len(seconds) // 2], "max": seconds[-1],
            "over_target": sum(s >= SERVE_TARGET_S for s in seconds),
            "runs": runs, "merges": merges, "ahead": ahead, "new_events": per_minute,
            "kept_mb": round(kept.nbytes / 2**20),
            "peak_rss_mb": _peak_mb(),
            "failures": {k: v for r in runs for k, v in r["failures"].items()}}


def _add_minute(home: Home, work: Path, count: int, start: datetime = NOW, parts: int = 1) -> None:
    """`count` action events in the minute after `start`, ingested like any export, as `parts` new parts (the API
    writes one per flush)."""
    con = duck.connect(memory_limit="1GB")
    sql = actions_sql(0, count, count, start, timedelta(days=1))
    # Squeeze the generated day into the minute after start, and give the events ids of their own.
    tag = f"m{time.time_ns()}-"  # ids of their own, also when the benchmark runs again on the same store
    at = start.isoformat()
    paths = [work / f"minute-{k}.parquet" for k in range(parts)]
    for k, path in enumerate(paths):  # the k-th stretch of the minute
        duck.run(con, f"COPY (SELECT * FROM (SELECT * REPLACE ('{tag}' || event_id AS event_id, TIMESTAMPTZ '{at}' + "
                      f"(ts - TIMESTAMPTZ '{at}') / 1440 AS ts) FROM ({sql})) WHERE floor(epoch(ts - TIMESTAMPTZ "
                      f"'{at}') * {parts} / 60) = {k}) TO '{path}' (FORMAT parquet)")
    con.close()
    accepted = sum(ingest_files(home, ACTIONS, [path], "parquet").accepted for path in paths)
    if accepted != count:
        raise RuntimeError(f"the minute's events: {accepted} of {count} stored")


def per_check(home_dir: Path) -> dict:
    """Seconds of each check alone at the last step (shared aggregates are rebuilt for each, so the
    figures overlap: they show which checks are heavy, not a breakdown of the total)."""
    config, home, seconds = bench_config(), Home.resolve(home_dir), {}
    for check in enabled_checks(config):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            evaluate(home, config, [END], IncidentStore(Path(tmp) / "incidents.sqlite3"), only=[check.name], now=NOW)
            seconds[check.name] = round(time.perf_counter() - started, 2)
    return seconds


def in_child(mode: str, home_dir: Path, *extra: str) -> dict:
    """Run one measurement in a fresh process, so its time and peak RSS are its own."""
    command = [sys.executable, __file__, "--child", mode, "--dir", str(home_dir), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{mode} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def warmup(config_days: float) -> int:
    return max(7, math.ceil(config_days) + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="actions in the big store")
    parser.add_argument("--days", type=int, default=14, help="days the big store's events span")
    parser.add_argument("--backtest-events", type=int, default=1_000_000, help="actions in the backtest store")
    parser.add_argument("--dir", type=Path, help="where the stores are built (default: a temporary folder)")
    parser.add_argument("--skip-build", action="store_true", help="reuse the stores already in --dir")
    parser.add_argument("--per-check", action="store_true", help="also time each check alone on the big store")
    parser.add_argument("--child", choices=("check", "check-warm", "serve", "backtest", "per-check"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--events-per-minute", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--incidents", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "check":
        print(json.dumps(measure(args.dir, [END], now=NOW, incidents=args.incidents)))
        return 0
    if args.child == "check-warm":
        print(json.dumps(warm_check(args.dir, args.incidents, args.events_per_minute)))
        return 0
    if args.child == "serve":
        print(json.dumps(serve_minutes(args.dir, args.events_per_minute)))
        return 0
    if args.child == "per-check":
        print(json.dumps(per_check(args.dir)))
        return 0
    if args.child == "backtest":
        print(json.dumps(measure(args.dir, backtest_steps(END - timedelta(days=BACKTEST_DAYS), END,
                                                           timedelta(minutes=15)))))
        return 0
    if args.skip_build and not args.dir:
        parser.error("--skip-build needs --dir")
    history = max((c.history for c in enabled_checks(bench_config())), default=timedelta(days=1))
    warmup_days = warmup(history / timedelta(days=1))
    with tempfile.TemporaryDirectory(prefix="agentwatch-speed-") as tmp:
        work = args.dir or Path(tmp)
        big, small = work / "store-big", work / "store-backtest"
        ingest_s = {}
        if not args.skip_build:
            print(f"building {args.events:,} actions over {args.days} days", file=sys.stderr)
            ingest_s["big"] = build(big, args.events, args.days)
            print(f"building {args.backtest_events:,} actions over {warmup_days + BACKTEST_DAYS} days",
                  file=sys.stderr)
            ingest_s["backtest"] = build(small, args.backtest_events, warmup_days + BACKTEST_DAYS)
        for store in (big, small):  # the minutes an earlier run added: every run starts from the same events
            for dataset in (ACTIONS, OUTCOMES):
                shutil.rmtree(Home.resolve(store).dataset_dir(dataset.name) / f"day={NOW.date().isoformat()}",
                              ignore_errors=True)
            # As serve's compactor leaves the closed days (the ingest wrote a part per file and day); a no-op after.
            began = time.perf_counter()
            if run_pass(Home.resolve(store), StoreSettings.model_validate({"compaction": {"quiet_minutes": 0}}),
                        now=NOW).merged:
                ingest_s[f"compaction of the {store.name}"] = time.perf_counter() - began
        shutil.rmtree(big / "aggregates", ignore_errors=True)  # the first check after the ingest builds them
        first = in_child("check", big)
        per_minute = round(args.events / (args.days * 1440))
        incidents = work / "incidents-cron.sqlite3"
        incidents.unlink(missing_ok=True)
        check = in_child("check", big, "--incidents", str(incidents))  # cold: no earlier run's cadence
        warm = in_child("check-warm", big, "--incidents", str(incidents), "--events-per-minute", str(per_minute))
        serve = in_child("serve", big, "--events-per-minute", str(per_minute))
        backtest = in_child("backtest", small)
        alone = in_child("per-check", big) if args.per_check else {}
    check_ok = check["seconds"] < CHECK_TARGET_S and check["peak_rss_mb"] < CHECK_TARGET_MB
    serve_ok = serve["max"] < SERVE_TARGET_S
    backtest_ok = backtest["seconds"] < BACKTEST_TARGET_S
    print(f"\nOver {args.events:,} action events ({args.days} days; checks read back "
          f"{history / timedelta(days=1):.1f} days of history), the wall clock a minute after the last event:")
    print(f"  first check after the ingest (builds the aggregates of every settled hour): {first['seconds']:.1f} s, "
          f"peak RSS {first['peak_rss_mb']:,} MB")
    print(f"  check in a fresh process, cold (every check due): {check['seconds']:.1f} s, peak RSS "
          f"{check['peak_rss_mb']:,} MB (Great Expectations' process beside it: {check['gx_worker_peak_rss_mb']} MB), "
          f"{check['incidents']} incidents (target < {CHECK_TARGET_S:.0f} s and "
          f"< {CHECK_TARGET_MB:,} MB: {'met' if check_ok else 'NOT met'})")
    print(f"  check in a fresh process two minutes later (cron; {len(warm['not_due'])} checks not due): "
          f"{warm['seconds']:.1f} s, peak RSS {warm['peak_rss_mb']:,} MB")
    print(f"  serve's next {len(serve['runs'])} runs, one a minute, {serve['new_events']:,} new events each: next "
          f"minute {serve['next_minute']:.2f} s, median {serve['median']:.2f} s, slowest {serve['max']:.2f} s, "
          f"{serve['over_target']} of {len(serve['runs'])} at {SERVE_TARGET_S:.0f} s or more "
          f"(target < {SERVE_TARGET_S:.0f} s: {'met' if serve_ok else 'NOT met'}); peak RSS "
          f"{serve['peak_rss_mb']:,} MB, {serve['kept_mb']} MB of aggregates held")
    print(f"    the compactor merged the open day's parts between {len(serve['merges'])} of the runs "
          f"({', '.join(str(m['seconds']) + ' s' for m in serve['merges'])}; not part of the minute's time)")
    ahead = ", ".join(f"minute {a['minute']}: {a['seconds']} s" for a in serve["ahead"])
    print(f"    after the runs in which an hour settled, the resting checks prepared ahead ({ahead}; not part of "
          f"the minute's time)")
    for run in serve["runs"]:
        cadenced = ", ".join(f"{name} {s:.2f} s" for name, s in sorted(run["cadenced"].items(), key=lambda i: -i[1]))
        print(f"    minute {run['minute']:2d}: {run['seconds']:.2f} s{'; due: ' + cadenced if cadenced else ''}")
    print(f"{BACKTEST_DAYS}-day backtest at 15-minute steps over {args.backtest_events:,} action events "
          f"({backtest['steps']} steps):")
    print(f"  {backtest['seconds']:.1f} s, peak RSS {backtest['peak_rss_mb']:,} MB, {backtest['incidents']} incidents "
          f"(target < {BACKTEST_TARGET_S:.0f} s: {'met' if backtest_ok else 'NOT met'})")
    for name, result in (("first check", first), ("check", check), ("warm check", warm), ("serve", serve),
                         ("backtest", backtest)):
        for check_name, error in result["failures"].items():
            print(f"  {name}: check {check_name} failed: {error}")
    if alone:
        print(f"Each check alone over the {args.events:,}-event store (overlapping: shared aggregates are rebuilt):")
        for name, seconds in sorted(alone.items(), key=lambda item: -item[1]):
            print(f"  {name:32s} {seconds:6.1f} s")
    for name, seconds in ingest_s.items():
        print(f"{name if name.startswith('compaction') else 'ingest of the ' + name} store (not part of the "
              f"targets): {seconds:.1f} s")
    return 0 if check_ok and serve_ok and backtest_ok else 1


if __name__ == "__main__":
    sys.exit(main())
