"""An in-memory index of the event keys already stored, for exact de-duplication at commit."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from agentwatch.core.home import Home
from agentwatch.store import duck
from agentwatch.store.layout import list_parts
from agentwatch.store.partitions import REWRITTEN_PREFIX, parts_sql, read_sidecar, sidecar_of, visible_files
from agentwatch.store.quarantine import repair

__all__ = ["MAX_SEGMENTS", "EventKeyIndex", "list_parts"]

# Merge the sorted segments into one when there are more than this many (an LSM-style index).
MAX_SEGMENTS = 12


class EventKeyIndex:
    """The 64-bit keys of every event stored in one dataset, as sorted numpy segments.

    A key is a hash, so a hit only says "maybe stored": the writer confirms hits against the
    stored event ids before it drops anything. Memory: 8 bytes per stored event. A part later
    quarantined, or an event later erased, keeps its key here: its events are then "maybe stored", not
    confirmed, so they are accepted again when re-sent. Only visible parts are read (``partitions``): a file a
    compaction wrote in place of parts already known adds no keys, so compaction never doubles the index.
    """

    def __init__(self, home: Home, dataset: str) -> None:
        self._home = home
        self._dataset = dataset
        self._known_parts: set[Path] = set()
        self._segments: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(s) for s in self._segments)

    def refresh(self) -> None:
        """Load the keys of parts written since the last look (by any process); a damaged one is quarantined."""
        visible = set(visible_files(self._home, self._dataset))
        new_parts = sorted(p for p in visible - self._known_parts if not self._holds_known_rows(p))
        # parts merged away (or erased, expired, quarantined) are forgotten: their keys stay, as "maybe"
        self._known_parts &= visible
        self._known_parts |= visible - set(new_parts)
        if not new_parts:
            return
        try:
            keys = _read_keys(new_parts)
        except duckdb.Error as exc:
            if not repair(self._home, exc):
                raise
            new_parts = [p for p in new_parts if p.exists()]
            keys = _read_keys(new_parts)
        self.add(keys, new_parts)

    def _holds_known_rows(self, part: Path) -> bool:
        """A rewritten file whose replaced parts were all known holds no key the index lacks."""
        if not part.name.startswith(REWRITTEN_PREFIX):
            return False
        replaced = read_sidecar(sidecar_of(part)) or []
        return bool(replaced) and all(part.with_name(name) in self._known_parts for name in replaced)

    def add(self, keys: np.ndarray, parts: list[Path]) -> None:
        """Record keys just written in `parts`, so a later refresh does not read them again."""
        self._known_parts.update(parts)
        if len(keys):
            self._segments.append(np.sort(keys.astype(np.uint64, copy=False)))
        if len(self._segments) > MAX_SEGMENTS:
            self._segments = [np.sort(np.concatenate(self._segments))]

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """A boolean mask: which keys may already be stored."""
        keys = keys.astype(np.uint64, copy=False)
        found = np.zeros(len(keys), dtype=bool)
        for segment in self._segments:
            positions = np.searchsorted(segment, keys)
            in_range = positions < len(segment)
            found[in_range] |= segment[positions[in_range]] == keys[in_range]
        return found


def _read_keys(parts: list[Path]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    con = duck.connect(memory_limit="512MB")
    try:
        keys = con.execute(f"SELECT event_key FROM read_parquet({parts_sql(parts)})").fetchnumpy()["event_key"]
    finally:
        con.close()
    return np.asarray(keys, dtype=np.uint64)
