"""Damaged parts are moved aside, so that one bad file never takes a dataset down.

A part that cannot be read (0 bytes, truncated, a bad footer, a column of the wrong type) would make every query
over its dataset fail: DuckDB reads every part's footer to bind a view. Damage is detected cheaply, on failure:
a query over the store that fails calls ``repair``, which looks for the culprit (the part DuckDB's message names,
then every part's footer and column types read with pyarrow, skipping parts this process found sound before),
moves it to ``quarantine/<dataset>/`` with a JSON note beside it, and the query is retried once
(``survive_damage``). The events in a quarantined part are lost from queries, nothing else is: re-sending them
stores them again, or the file can be repaired and moved back to where its note says it was.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from agentwatch.core.durable import fsync_dir
from agentwatch.core.home import Home
from agentwatch.store.datasets import DATASETS, Dataset
from agentwatch.store.layout import SCHEMA_PART, ensure_schema_part, list_parts, schema_part_path

log = logging.getLogger(__name__)

T = TypeVar("T")

NOTE_SUFFIX = ".json"
EFFECT = ("its events are lost from queries (nothing else is); re-send them to store them again, or repair the file "
          "and move it back to its original path")
# Errors that say something about the query, never about a file: they do not start a search for damage.
NOT_DAMAGE = (duckdb.ParserException, duckdb.CatalogException, duckdb.InterruptException,
              duckdb.OutOfMemoryException, duckdb.ConstraintException, duckdb.TransactionException)
# A file this process cannot open for these reasons is not damaged.
NOT_DAMAGE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EMFILE, errno.ENFILE, errno.ENOMEM})
PART_IN_MESSAGE = re.compile(r"""["'](/[^"']+?\.parquet)["']""")
KEY_COLUMNS = ("event_id", "event_key")  # de-duplication needs them in every part


class SuspectedDamage(Exception):
    """A read of the store that did not fail but shows signs of a damaged part (a view bound to other types)."""


@dataclass(frozen=True)
class QuarantinedPart:
    """A part moved out of the store, and why."""

    dataset: str
    path: Path  # where it is now
    original: Path  # where it was
    size: int  # bytes
    reason: str
    quarantined_at: str  # ISO 8601, UTC


def quarantined_parts(home: Home) -> list[QuarantinedPart]:
    """Every part in quarantine under `home`, oldest first (for status and health reports)."""
    if not home.quarantine.is_dir():
        return []
    found = []
    for path in home.quarantine.glob("*/*"):
        if path.name.endswith(NOTE_SUFFIX) or path.name.startswith("."):
            continue
        try:
            note = json.loads(path.with_name(path.name + NOTE_SUFFIX).read_text(encoding="utf-8"))
            found.append(QuarantinedPart(path.parent.name, path, Path(note["original"]), int(note["size"]),
                                         str(note["reason"]), str(note["quarantined_at"])))
        except (OSError, ValueError, KeyError, TypeError):  # a note lost or damaged: the part is still listed
            stat = path.stat()
            when = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()
            found.append(QuarantinedPart(path.parent.name, path, path, stat.st_size, "(no readable note)", when))
    return sorted(found, key=lambda q: (q.quarantined_at, str(q.path)))


# -- finding damage ---------------------------------------------------------------------------------------------

_sound: dict[Path, tuple[int, int]] = {}  # parts this process found sound: (size, mtime_ns) when it looked
_repair_lock = threading.Lock()  # one search at a time in a process (the dashboard queries from many threads)


def part_problem(path: Path, expected: pa.Schema | None) -> str | None:
    """What is wrong with a part's footer or column types (read with pyarrow), or None when it looks sound."""
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        return None  # moved meanwhile (by another process's repair)
    except OSError as exc:
        if exc.errno in NOT_DAMAGE_ERRNOS:
            return None  # this process may not read it: a sound file must not be moved for that
        return f"not a readable Parquet file: {exc}"
    except pa.ArrowException as exc:
        return f"not a readable Parquet file: {exc}"
    if path.name != SCHEMA_PART and (missing := [c for c in KEY_COLUMNS if c not in schema.names]):
        return f"no {' or '.join(missing)} column"
    if expected is not None:
        for column in schema:
            if column.name in expected.names and column.type != expected.field(column.name).type:
                return f"column {column.name} is {column.type}, the dataset stores {expected.field(column.name).type}"
    return None


def _expected_schema(home: Home, dataset: Dataset) -> pa.Schema | None:
    try:
        return pq.read_schema(schema_part_path(home, dataset))
    except (OSError, pa.ArrowException):
        return None


def find_damaged(home: Home, dataset: Dataset) -> list[tuple[Path, str]]:
    """The damaged parts of a dataset and what is wrong with each; reads only footers not found sound before."""
    schema_path = schema_part_path(home, dataset)
    damaged = []
    if schema_path.exists() and (problem := part_problem(schema_path, None)):
        damaged.append((schema_path, problem))
    expected = None if damaged else _expected_schema(home, dataset)
    for path in list_parts(home.dataset_dir(dataset.name)):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        mark = (stat.st_size, stat.st_mtime_ns)
        if path == schema_path or _sound.get(path) == mark:
            continue
        if problem := part_problem(path, expected):
            damaged.append((path, problem))
        else:
            _sound[path] = mark
    return damaged


def may_be_damage(exc: BaseException) -> bool:
    """Whether an error could come from a damaged part (worth a search)."""
    return isinstance(exc, SuspectedDamage) or (isinstance(exc, duckdb.Error) and not isinstance(exc, NOT_DAMAGE))


def repair(home: Home, exc: BaseException) -> bool:
    """After a failed read of the store: quarantine every damaged part. True when the store changed (a part was
    moved, by us or by another process meanwhile), so the failed read is worth one more try."""
    if not may_be_damage(exc):
        return False
    with _repair_lock:
        changed = False
        named = {Path(p) for p in PART_IN_MESSAGE.findall(str(exc))}
        named = {p for p in named if p.is_relative_to(home.store)}
        for dataset in DATASETS.values():
            damaged = dict(find_damaged(home, dataset))
            for path in named:  # DuckDB could not decode it, though its footer is sound: the data behind it is bad
                if (path.is_relative_to(home.dataset_dir(dataset.name)) and path.exists() and path not in damaged
                        and _bad_content(exc)):
                    damaged[path] = f"DuckDB cannot read it: {_first_line(exc)}"
            for path, reason in damaged.items():
                changed |= quarantine_part(home, dataset, path, reason) is not None
            ensure_schema_part(home, dataset)  # it may have been the damaged one
        changed |= any(not path.exists() for path in named)
    return changed


def survive_damage(home: Home, attempt: Callable[[], T], before_retry: Callable[[], None] | None = None) -> T:
    """Run a read of the store; when it fails on a damaged part, quarantine the part and run it once more."""
    try:
        return attempt()
    except (duckdb.Error, SuspectedDamage) as exc:
        if not repair(home, exc):
            raise
    if before_retry is not None:
        before_retry()
    return attempt()


def _bad_content(exc: BaseException) -> bool:
    """DuckDB's Invalid Input errors are about a file's content; its IO errors (cannot open: too many open files,
    permissions) say nothing against the file."""
    return isinstance(exc, duckdb.InvalidInputException)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# -- moving a part aside ----------------------------------------------------------------------------------------


def quarantine_part(home: Home, dataset: Dataset, path: Path, reason: str) -> QuarantinedPart | None:
    """Move a damaged part to ``quarantine/<dataset>/`` with a note; None when it is gone already."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    folder = home.quarantine / dataset.name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    for n in range(1, 1000):  # a name seen before (the schema part): keep both
        if not target.exists():
            break
        target = folder / f"{path.stem}.{n}{path.suffix}"
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None  # another process moved it first
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(path, target)  # the quarantine is on another file system than the store
    fsync_dir(path.parent)
    entry = QuarantinedPart(dataset.name, target, path, size, reason, datetime.now(UTC).isoformat())
    note = {**{k: str(v) for k, v in asdict(entry).items()}, "size": size, "effect": EFFECT}
    try:
        target.with_name(target.name + NOTE_SUFFIX).write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:  # a full disk: the part is out of the way all the same, and is listed without a note
        log.warning("cannot write the note of quarantined part %s: %s", target, exc)
    log.error("quarantined a damaged part of %s: %s (%s, %d bytes) moved to %s; %s", dataset.name, path, reason,
              size, target, EFFECT)
    return entry
