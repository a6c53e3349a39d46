"""Erasure: every event of one resource (or matching an inputs/before/after key) leaves the store, on request.

``erase`` finds the visible parts holding matching events (one DuckDB query per dataset), rewrites each
partition's holding parts without them (``rewrite.rewrite_parts``: sidecar and rename, so readers never see a row
twice or miss one), under the dataset's rewrite lock and the write lock for the swap, then looks again, for parts
that landed meanwhile, up to ``MAX_ROUNDS`` times. The rewritten parts become invisible at once and are deleted by
the first compaction pass after the grace (``store.compaction.grace_minutes``). Each erasure is recorded in
``erasures.jsonl`` in the home (appended and fsynced): who, when, the selectors' kinds and key paths, the counts
and partitions per dataset, never the values. Several selectors erase the events any of them matches.

The write-ahead log of a running server may hold acknowledged events of the resource that a flush would bring
back: the command (``agentwatch erase``) refuses while a server runs or the log holds events, and holds the
serve lock meanwhile (``agentwatch.app.store_commands``).
"""

from __future__ import annotations

import getpass
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentwatch.core.durable import fsync_dir
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home
from agentwatch.store import duck
from agentwatch.store.datasets import DATASETS, Dataset
from agentwatch.store.layout import SCHEMA_PART
from agentwatch.store.partitions import partition_day, parts_sql, visible_files
from agentwatch.store.quarantine import quarantined_parts
from agentwatch.store.rewrite import DEFAULT_ROW_GROUP_ROWS, rewrite_lock, rewrite_parts
from agentwatch.store.rollups import forget

MAX_ROUNDS = 5  # looks for parts that landed during a rewrite
KEY_PATH = re.compile(r"^(inputs|before|after)((?:\.[A-Za-z0-9_-]+)+)$")
ERASABLE = ("actions", "outcomes")


@dataclass(frozen=True)
class Selector:
    """Which events to erase: by resource id, or by the value of a key inside inputs, before or after."""

    path: str  # "resource_id" or a key path such as "inputs.email"
    value: str

    def condition(self, dataset: Dataset) -> tuple[str, list[Any]] | None:
        """The SQL condition and its parameters; None when the dataset has no such column."""
        columns = {name for name, _ in dataset.stored_columns()}
        if self.path == "resource_id":
            return ("resource_id = ?", [self.value]) if "resource_id" in columns else None
        column, _, rest = self.path.partition(".")
        if column not in columns:
            return None
        json_path = "$" + "".join(f'."{key}"' for key in rest.split("."))
        return f"json_extract_string({column}, ?) = ?", [json_path, self.value]

    def mentioned_in(self, text: str) -> bool:
        """Whether a text of a rejected event holds the value as a whole token, in any case: a rejected event was
        refused for its shape, so where the value sits in it cannot be relied on. A token ends where no letter,
        digit, ``_ @ + -`` or ``.`` plus one of those follows (``ana@example.com.`` holds ``ana@example.com``;
        ``L-10``, ``L-1.5`` and ``xana@example.com`` do not hold ``L-1`` or ``ana@example.com``). A short value
        matches more: erasing rejects errs toward removing a record."""
        pattern = rf"(?<![\w.@+-]){re.escape(self.value)}(?![\w@+-])(?!\.[\w@+-])"
        return re.search(pattern, text, re.IGNORECASE) is not None


def parse_where(text: str) -> Selector:
    """``inputs.email=ana@example.com`` -> a Selector; a ConfigError names what is wrong."""
    path, sep, value = text.partition("=")
    if not sep or not value:
        raise ConfigError(f"--where {text!r}: write it as KEY=VALUE, e.g. --where inputs.email=ana@example.com")
    if not KEY_PATH.match(path):
        raise ConfigError(f"--where {path}=...: the key must be inside inputs, before or after, e.g. inputs.email "
                          "(letters, digits, _ and - between the dots)")
    return Selector(path, value)


@dataclass
class DatasetErasure:
    """What an erasure removed from one dataset."""

    events: int = 0
    partitions: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)  # kept in memory for the incidents; never recorded
    still_arriving: bool = False  # matching events kept landing through every round


@dataclass
class Erasure:
    """What one erasure did (or, in a dry run, would do), per dataset."""

    dry_run: bool
    datasets: dict[str, DatasetErasure] = field(default_factory=dict)
    rejected: int = 0  # set by the command, which erases from the collector's rejects too: records removed
    quarantined_unsearched: int = 0  # quarantined (damaged, unreadable) parts of the datasets: not searched

    @property
    def events(self) -> int:
        return sum(d.events for d in self.datasets.values())


def erase(home: Home, selectors: list[Selector], datasets: list[str] | None = None, dry_run: bool = False,
          row_group_rows: int = DEFAULT_ROW_GROUP_ROWS) -> Erasure:
    """Rewrite the store without the events any selector matches (see the module's docstring)."""
    if not selectors:
        raise ConfigError("say what to erase: --resource-id ID, or --where inputs.KEY=VALUE")
    names = datasets or list(ERASABLE)
    if unknown := [n for n in names if n not in ERASABLE]:
        raise ConfigError(f"--dataset {unknown[0]}: erasable datasets are {', '.join(ERASABLE)}")
    result = Erasure(dry_run)
    result.quarantined_unsearched = sum(1 for q in quarantined_parts(home) if q.dataset in names)
    for name in names:
        dataset = DATASETS[name]
        conditions = [c for s in selectors if (c := s.condition(dataset)) is not None]
        if not conditions:
            continue
        match = "coalesce(" + " OR ".join(f"({sql})" for sql, _ in conditions) + ", false)"
        params = [p for _, ps in conditions for p in ps]
        with rewrite_lock(home, name):
            result.datasets[name] = _erase_dataset(home, dataset, match, params, dry_run, row_group_rows)
        if not dry_run:  # the checks' kept aggregates of those days may hold erased values (the drift sample's)
            forget(home, [d for p in result.datasets[name].partitions if (d := partition_day(p)) is not None])
    return result


def _erase_dataset(home: Home, dataset: Dataset, match: str, params: list[Any], dry_run: bool,
                   row_group_rows: int) -> DatasetErasure:
    done = DatasetErasure()
    for _ in range(MAX_ROUNDS):
        found = _matches(home, dataset, match, params)
        if not found:
            return done
        by_folder: dict[Path, set[Path]] = defaultdict(set)
        for part, _ in found:
            by_folder[part.parent].add(part)
        ids = [event_id for _, event_id in found]
        if dry_run:
            done.events, done.event_ids = len(ids), ids
            done.partitions = sorted({f.name for f in by_folder})
            return done
        for folder, parts in sorted(by_folder.items()):
            rewrite_parts(home, dataset, folder, sorted(parts), keep=f"NOT {match}", params=params,
                          row_group_rows=row_group_rows)
            if folder.name not in done.partitions:
                done.partitions.append(folder.name)
        done.events += len(ids)
        done.event_ids += ids
    done.still_arriving = bool(_matches(home, dataset, match, params))
    return done


def _matches(home: Home, dataset: Dataset, match: str, params: list[Any]) -> list[tuple[Path, str]]:
    """(part, event_id) of every visible matching event."""
    files = [p for p in visible_files(home, dataset.name) if p.name != SCHEMA_PART]
    if not files:
        return []
    con = duck.connect(memory_limit="512MB")
    try:
        rows = duck.run(con, f"SELECT filename, event_id FROM read_parquet({parts_sql(files)}, union_by_name = true, "
                             f"filename = true, hive_partitioning = false) WHERE {match}", params)
    finally:
        con.close()
    return [(Path(name), event_id) for name, event_id in rows]


def record(home: Home, erasure: Erasure, selectors: list[Selector], requested_by: str | None,
           reason: str | None) -> dict[str, Any]:
    """Append the audit record of an erasure to ``erasures.jsonl`` (fsynced); never the erased values or ids."""
    entry = {
        "at": datetime.now(UTC).isoformat(),
        "os_user": _os_user(),
        "requested_by": requested_by,
        "reason": reason,
        "selectors": sorted({s.path for s in selectors}),
        "datasets": {name: {"events": d.events, "partitions": d.partitions}
                     for name, d in erasure.datasets.items()},
        "events": erasure.events,
        "rejected_records": erasure.rejected,
        "quarantined_parts_unsearched": erasure.quarantined_unsearched,
    }
    path = home.erasures_file
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
    return entry


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        return f"uid {os.getuid()}"
