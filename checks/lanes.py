"""Preparing a run's checks in two lanes, so a cadenced check's preparing overlaps the per-minute checks'.

In most of serve's minutes one check with a cadence (``every_minutes``) falls due: SLA, partial failures, an
outcome check, drift. Its preparing (0.2 to 1.0 s on the 10M-event store of ``bench/check_speed.py``) is mostly
one DuckDB query or Polars over a week of rows, which release the GIL; the dozen per-minute checks' (0.6 to 0.9 s)
is mostly Python. One after the other, such a minute took 1 to 2 s; side by side, about the longer of the two.

1. The checks with a cadence go to the second lane, in a thread; the others stay in the calling thread. A run with
   checks of only one kind prepares them all in the calling thread, as before.
2. The second lane reads through its own connection and its own rollup store (a DuckDB connection is used by one
   thread at a time, and a store's temporary views are its own); both share the process's kept rows (locked) and
   the aggregates lock (a ``flock`` per store, so one of them updates a day at a time).
3. Results shared between checks (``EvalData.shared``) are per lane: the cadenced checks share theirs (the outcome
   checks' corrected actions), the per-minute ones theirs. A rollup both lanes read (drift reads the action counts
   too) is answered by each; of two answers racing to be held, one computed before the other run found the rows
   under it changed is not held (``KeptRows.generation``).
4. While both lanes prepare, each connection runs its queries on one thread: two connections of DuckDB's default
   (a thread per core) beside the per-minute checks' Python oversubscribed the two cores of the benchmark's machine.
5. A check whose prepare raises fails alone; so do the cadenced checks when the second lane cannot open the store.
   Both lanes are done before any check evaluates, and the second lane's connection stays open until the run
   ends (the caller closes it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import duckdb

from agentwatch.checks.base import Check
from agentwatch.checks.data import EvalData
from agentwatch.store import duck


def prepare_in_lanes(checks: Sequence[Check], data: EvalData, second_lane: Callable[[], EvalData],
                     failures: dict[str, str], seconds: dict[str, float]) -> list[Check]:
    """Prepare `checks` (the cadenced ones on the data `second_lane` opens, in a thread); returns those prepared,
    in the order given. A check that raised is left out, its error in `failures`; each one's time is in `seconds`."""
    cadenced = [c for c in checks if c.options.every_minutes is not None]
    others = [c for c in checks if c.options.every_minutes is None]
    if not cadenced or not others:
        _prepare_each(checks, data, failures, seconds)
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentwatch-prepare") as pool:
            lane = pool.submit(_second_lane, cadenced, second_lane, failures, seconds)
            try:
                with _one_thread(data.con):
                    _prepare_each(others, data, failures, seconds)
            finally:
                lane.result()  # waits for the lane (also when this one was interrupted) and raises what it raised
    return [c for c in checks if c.name not in failures]


def _second_lane(checks: Sequence[Check], second_lane: Callable[[], EvalData], failures: dict[str, str],
                 seconds: dict[str, float]) -> None:
    began = time.perf_counter()
    try:
        data = second_lane()
    except Exception as exc:  # its checks fail, not the run: the per-minute checks' findings still count
        for check in checks:
            failures[check.name] = f"{type(exc).__name__} opening the store for the checks with a cadence: {exc}"
            seconds[check.name] = time.perf_counter() - began
        return
    with _one_thread(data.con):
        _prepare_each(checks, data, failures, seconds)


@contextmanager
def _one_thread(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The connection's queries on one thread meanwhile (step 4 of the module's docstring)."""
    duck.run(con, "SET threads = 1")
    try:
        yield
    finally:
        duck.run(con, "RESET threads")


def _prepare_each(checks: Sequence[Check], data: EvalData, failures: dict[str, str],
                  seconds: dict[str, float]) -> None:
    for check in checks:
        began = time.perf_counter()
        try:
            check.prepare(data)
        except Exception as exc:  # a broken check must not silence the others
            failures[check.name] = f"{type(exc).__name__}: {exc}"
        seconds[check.name] = time.perf_counter() - began
