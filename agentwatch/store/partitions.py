"""Which part files a reader sees: the one listing of the store that every reader, writer and the WAL goes through.

A plain glob cannot stay consistent while parts are merged (a compaction adds one file and removes many, and no
single rename flips them all), so visibility follows three rules:

1. A rewritten file (a compaction's or an erasure's, ``part-c-<uuid>.parquet``) has a sidecar
   ``part-c-<uuid>.replaces``: a JSON list of the part names whose rows it holds. The sidecar is written and
   fsynced BEFORE the file is renamed into the partition, so once the file is there, the parts it replaces are
   hidden. A sidecar whose file is absent (a rewrite killed before its rename) hides nothing. Sidecars of
   rewritten files that are themselves replaced still count: their rows live on in the newer file.
2. A partition folder holding the marker ``_expired`` (retention) lists as nothing.
3. Nothing hidden is deleted at once: a later compaction pass deletes it after a grace period longer than any
   query (``store.compaction.grace_minutes``), so a reader that listed the old parts can still read them.

``store_version`` is the cheap token a long-lived connection compares to know when to list again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import date
from pathlib import Path

from agentwatch.core.errors import StoreError
from agentwatch.core.home import Home
from agentwatch.core.sql import sql_string
from agentwatch.store.datasets import DATASETS

log = logging.getLogger(__name__)

PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
REWRITTEN_PREFIX = "part-c-"  # a compaction's or an erasure's output
SIDECAR_SUFFIX = ".replaces"
EXPIRED_MARKER = "_expired"
PARTITION_PREFIX = "day="
# A folder changed this recently may change again within the file system's timestamp granularity without its
# mtime moving: the version then counts as unsettled, and a reader lists again at its next query.
SETTLE_NS = 100_000_000
LIST_ATTEMPTS = 20


def partition_folders(home: Home, dataset: str) -> dict[str, Path]:
    """The partition folders of a dataset by name (``day=2026-10-01``; ``""`` for an unpartitioned dataset)."""
    directory = home.dataset_dir(dataset)
    if not DATASETS[dataset].partitioned_by_day:
        return {"": directory}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return {}
    return {e.name: Path(e.path) for e in sorted(entries, key=lambda e: e.name)
            if e.name.startswith(PARTITION_PREFIX) and e.is_dir()}


def partition_day(name: str) -> date | None:
    """The day of a partition folder name (``day=2026-10-01``), None when it is not one."""
    if not name.startswith(PARTITION_PREFIX):
        return None
    try:
        return date.fromisoformat(name[len(PARTITION_PREFIX):])
    except ValueError:
        return None


def is_part(name: str) -> bool:
    return name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX)


def sidecar_of(part: Path) -> Path:
    """Where the sidecar of a rewritten file lives."""
    return part.with_name(part.name[: -len(PART_SUFFIX)] + SIDECAR_SUFFIX)


def read_sidecar(sidecar: Path) -> list[str] | None:
    """The part names a sidecar lists; None when it is gone. A damaged one is logged and hides nothing."""
    try:
        names = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("the sidecar %s cannot be read (%s): the parts it replaced may show twice", sidecar, exc)
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        log.error("the sidecar %s is not a list of part names: the parts it replaced may show twice", sidecar)
        return []
    return names


_replaced: dict[Path, list[str]] = {}  # sidecars read before: written once, never changed (their names are unique)
MAX_CACHED_SIDECARS = 100_000


def _replaced_by(rewritten: Path) -> list[str] | None:
    """What a present rewritten file replaces (cached), None when its sidecar is gone."""
    sidecar = sidecar_of(rewritten)
    if (names := _replaced.get(sidecar)) is not None:
        return names
    names = read_sidecar(sidecar)
    if names:  # neither gone nor damaged: keep it
        if len(_replaced) >= MAX_CACHED_SIDECARS:
            _replaced.clear()
        _replaced[sidecar] = names
    return names


# folder -> (its mtime when listed, its visible parts): a folder's mtime moves with every part, sidecar, marker or
# deletion in it, so a folder unchanged for LISTING_SETTLE_NS with the same mtime lists the same. serve's runs list
# each day of a week for every rollup, every minute; only today's changes. The writer's duplicate check, compaction
# and erasure list through it too: 2 s, not SETTLE_NS, so whole-second (and FAT's 2-second) timestamps hold.
_listed: dict[Path, tuple[int, tuple[Path, ...]]] = {}
LISTING_SETTLE_NS = 2_000_000_000
MAX_CACHED_LISTINGS = 100_000


def list_partition(folder: Path) -> tuple[Path, ...]:
    """The visible parts of one partition folder, sorted (see the module's rules)."""
    began = time.time_ns()
    try:
        mtime = folder.stat().st_mtime_ns
    except FileNotFoundError:  # a partition dropped meanwhile
        return ()
    known = _listed.get(folder)
    if known is not None and known[0] == mtime:
        return known[1]
    parts = _list_partition(folder)
    # A change after the stat moves the mtime, unless it falls in the same tick of the file system's clock as the
    # last one: a folder changed within LISTING_SETTLE_NS before the stat is left uncached.
    if abs(began - mtime) >= LISTING_SETTLE_NS:
        if len(_listed) >= MAX_CACHED_LISTINGS:
            _listed.clear()
        _listed[folder] = (mtime, parts)
    return parts


def _list_partition(folder: Path) -> tuple[Path, ...]:
    for _ in range(LIST_ATTEMPTS):
        try:
            names = os.listdir(folder)
        except FileNotFoundError:  # a partition dropped meanwhile
            return ()
        if EXPIRED_MARKER in names:
            return ()
        parts = {n for n in names if is_part(n)}
        hidden: set[str] = set()
        for name in parts:
            if name.startswith(REWRITTEN_PREFIX):
                replaced = _replaced_by(folder / name)
                if replaced is None:  # its file was deleted after we listed it: list again
                    break
                hidden.update(replaced)
        else:
            return tuple(folder / n for n in sorted(parts - hidden))
    raise StoreError(f"{folder} kept changing while it was listed ({LIST_ATTEMPTS} attempts); retry")


def visible_parts(home: Home, dataset: str) -> dict[str, tuple[Path, ...]]:
    """Partition folder name -> its visible part files, sorted; partitions with none are left out. The zero-row
    schema part is in its partition (``day=1970-01-01``, or ``""``), so views over these files get their types."""
    found = {}
    for name, folder in partition_folders(home, dataset).items():
        if parts := list_partition(folder):
            found[name] = parts
    return found


def visible_files(home: Home, dataset: str) -> list[Path]:
    """Every visible part file of a dataset, in one list."""
    return [p for parts in visible_parts(home, dataset).values() for p in parts]


def parts_sql(paths: list[Path] | tuple[Path, ...]) -> str:
    """The SQL list literal of part files, for ``read_parquet([...])``."""
    return "[" + ", ".join(sql_string(str(p)) for p in paths) + "]"


def store_version(home: Home) -> tuple:
    """A cheap token that changes whenever any dataset's visible parts may have changed: the modification times
    of each dataset's folder and partition folders (a part renamed in, a sidecar, a marker, a deletion all change
    their folder's). A folder changed in the last SETTLE_NS makes the token unique (it may change again unseen)."""
    marks: list[tuple[str, str, int]] = []
    newest = 0
    for dataset in sorted(DATASETS):
        directory = home.dataset_dir(dataset)
        try:
            mtime = directory.stat().st_mtime_ns
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        marks.append((dataset, "", mtime))
        newest = max(newest, mtime)
        for entry in entries:
            if entry.name.startswith(PARTITION_PREFIX):
                try:
                    mtime = entry.stat().st_mtime_ns
                except FileNotFoundError:
                    continue
                marks.append((dataset, entry.name, mtime))
                newest = max(newest, mtime)
    marks.sort()
    if abs(time.time_ns() - newest) < SETTLE_NS:
        marks.append(("", "unsettled", time.monotonic_ns()))
    return tuple(marks)
