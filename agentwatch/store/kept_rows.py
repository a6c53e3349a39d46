"""Stored aggregate files held in memory between runs of one process (`serve`'s minute runs).

A stored day file of ``agentwatch.store.rollups`` never changes once written (an update writes a new file under a
new name), so its rows can be held by path and handed to the next run as an Arrow table instead of being read and
decoded again from Parquet: `serve` reads the same week of files every minute. Bounded by bytes, least recently
used first out; a process that runs once (`check`) holds nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from threading import Lock

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class KeptRows:
    """Arrow tables of stored aggregate files, by path, at most `max_bytes` of them."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._bytes = 0
        self._lock = Lock()  # the scheduler's run and a manual evaluation may share one

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
                while self._bytes > self.max_bytes:
                    _, evicted = self._tables.popitem(last=False)
                    self._bytes -= evicted.nbytes
        return table

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._bytes

    @property
    def tables(self) -> int:
        """Files held."""
        return len(self._tables)
