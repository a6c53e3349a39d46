"""Aggregate rows held in memory between runs of one process (`serve`'s minute runs).

A stored day file of ``agentwatch.store.rollups`` never changes once written (an update writes a new file under a
new name), so its rows can be held by path and handed to the next run as an Arrow table instead of being read and
decoded again from Parquet: `serve` reads the same week of files every minute. Bounded by bytes, least recently
used first out; a process that runs once (`check`) holds nothing.

Also held: each rollup's settled cells after its stored ones (a :class:`HeldTail`, at most about an hour of rows),
which files store only per whole hour; `serve` extends them minute by minute instead of reading the hour again.
And each rollup's last answer over its settled cells (a :class:`HeldAnswer`: a week of rows as the checks read
them), so the next minute's run reads only the cells settled since; dropped when rows under it change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from threading import Lock

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class HeldTail:
    """A rollup's rows of the cells [lo, hi), summarised from exactly the parts named in `parts`."""

    lo: datetime
    hi: datetime
    parts: Mapping[str, int]  # part key (dataset/partition/name) -> its rows
    table: pa.Table


@dataclass(frozen=True)
class HeldAnswer:
    """A rollup's rows of the settled cells [lo, hi), as a run answered them from stored and held rows."""

    lo: datetime
    hi: datetime
    stored_until: datetime  # its rows before this came from stored days, the rest from the held tail
    lineages: Mapping[date, str]  # the lineage of each stored day it read (see rollups.DayState)
    frame: pl.DataFrame


class KeptRows:
    """Arrow tables of stored aggregate files, by path, and held tails and answers, by rollup: at most `max_bytes`
    of them."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._bytes = 0
        self._tails: OrderedDict[str, HeldTail] = OrderedDict()  # rollup name -> its held tail, least recent first
        self._answers: OrderedDict[str, HeldAnswer] = OrderedDict()  # rollup name -> its last answer
        self._generations: dict[str, int] = {}  # rollup name -> answers forgotten (see `generation`)
        self._lock = Lock()  # serve's scheduler thread holds it; the lock keeps a second user safe

    def table(self, path: Path) -> pa.Table:
        """The rows of the file at `path`, read once."""
        key = str(path)
        with self._lock:
            found = self._tables.get(key)
            if found is not None:
                self._tables.move_to_end(key)
                return found
        table = pq.read_table(path)
        with self._lock:
            if key not in self._tables and table.nbytes <= self.max_bytes:
                self._tables[key] = table
                self._bytes += table.nbytes
                self._evict()
        return table

    def _evict(self) -> None:
        """Drop the least recently used files, then answers, then tails, until within the bound (under the lock)."""
        while self._bytes > self.max_bytes and self._tables:
            _, evicted = self._tables.popitem(last=False)
            self._bytes -= evicted.nbytes
        while self._bytes > self.max_bytes and self._answers:
            _, answer = self._answers.popitem(last=False)
            self._bytes -= int(answer.frame.estimated_size())
        while self._bytes > self.max_bytes and self._tails:
            name, dropped = self._tails.popitem(last=False)
            self._bytes -= dropped.table.nbytes
            # Its answer may hold rows of the tail, whose validity can no longer be told: not answered from again.
            self._drop_answer(name)

    def tail(self, rollup: str) -> HeldTail | None:
        """The rollup's held tail, if any."""
        with self._lock:
            found = self._tails.get(rollup)
            if found is not None:
                self._tails.move_to_end(rollup)
            return found

    def hold_tail(self, rollup: str, tail: HeldTail) -> None:
        """Hold the rollup's tail (replacing the one before)."""
        with self._lock:
            old = self._tails.pop(rollup, None)
            if old is not None:
                self._bytes -= old.table.nbytes
            if tail.table.nbytes > self.max_bytes:
                self._drop_answer(rollup)  # as when a tail is evicted (see `_evict`)
                return  # over the whole bound: not held (the run reads those minutes raw)
            self._tails[rollup] = tail
            self._bytes += tail.table.nbytes
            self._evict()

    def answer(self, rollup: str) -> HeldAnswer | None:
        """The rollup's last answer over its settled cells, if still held."""
        with self._lock:
            found = self._answers.get(rollup)
            if found is not None:
                self._answers.move_to_end(rollup)
            return found

    def generation(self, rollup: str) -> int:
        """How many times the rollup's answers were forgotten: a run that read this before computing its answer
        holds it only if nobody forgot one since (`hold_answer`)."""
        with self._lock:
            return self._generations.get(rollup, 0)

    def hold_answer(self, rollup: str, answer: HeldAnswer, generation: int | None = None) -> None:
        """Hold the rollup's answer over its settled cells (replacing the one before); with `generation`, only if
        no answer of the rollup was forgotten since the caller read it: a run beside it (serve's second lane) found
        rows under the answers changed meanwhile, so this one may have been computed from stale rows."""
        with self._lock:
            if generation is not None and self._generations.get(rollup, 0) != generation:
                return
            self._drop_answer(rollup)
            size = int(answer.frame.estimated_size())
            if size > self.max_bytes:
                return
            self._answers[rollup] = answer
            self._bytes += size
            self._evict()

    def forget_answer(self, rollup: str) -> int:
        """Drop the rollup's answer: rows under it were summarised again (a late event, a merge, an erasure).
        Returns the rollup's new generation."""
        with self._lock:
            self._drop_answer(rollup)
            self._generations[rollup] = self._generations.get(rollup, 0) + 1
            return self._generations[rollup]

    def _drop_answer(self, rollup: str) -> None:
        old = self._answers.pop(rollup, None)
        if old is not None:
            self._bytes -= int(old.frame.estimated_size())

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._bytes

    @property
    def tables(self) -> int:
        """Files held."""
        return len(self._tables)
