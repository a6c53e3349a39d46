"""Where a dataset's parts live, and the zero-row, fully typed part every dataset holds.

``store/<dataset>/[day=YYYY-MM-DD/]part-*.parquet``. The zero-row part (``part-schema.parquet``, in the
``day=1970-01-01`` partition where there are partitions) makes the views' glob match a file before any event
arrives, and gives every view its column types.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from agentwatch.core.durable import fsync_dir, fsync_file
from agentwatch.core.home import Home
from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.store import duck
from agentwatch.store.datasets import Dataset
from agentwatch.store.space import no_space_is_store_full

SCHEMA_PART = "part-schema.parquet"
EMPTY_PARTITION = "day=1970-01-01"


def list_parts(dataset_dir: Path) -> list[Path]:
    """Every committed part file of a dataset."""
    return sorted(dataset_dir.glob("**/part-*.parquet"))


def parts_glob(home: Home, dataset: str) -> str:
    """The SQL string literal of the glob of every part of a dataset."""
    return sql_string(str(home.dataset_dir(dataset) / "**" / "part-*.parquet"))


def schema_part_path(home: Home, dataset: Dataset) -> Path:
    """Where a dataset's zero-row, fully typed part lives."""
    directory = home.dataset_dir(dataset.name)
    return (directory / EMPTY_PARTITION if dataset.partitioned_by_day else directory) / SCHEMA_PART


def ensure_schema_part(home: Home, dataset: Dataset) -> None:
    """Write the dataset's zero-row part if it is missing (atomically: any process may race here)."""
    path = schema_part_path(home, dataset)
    if path.exists():
        return
    temp = path.with_name(f".{SCHEMA_PART}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    typed_nulls = ", ".join(f"CAST(NULL AS {t}) AS {quote_identifier(n)}" for n, t in dataset.stored_columns())
    con = duck.connect(memory_limit="64MB")
    try:
        with no_space_is_store_full(home, f"writing {path}"):
            path.parent.mkdir(parents=True, exist_ok=True)
            duck.run(con, f"COPY (SELECT {typed_nulls} WHERE FALSE) TO {sql_string(str(temp))} (FORMAT parquet)")
            fsync_file(temp)
            os.replace(temp, path)
            fsync_dir(path.parent)
    finally:
        con.close()
        temp.unlink(missing_ok=True)  # a failed write (a full disk) leaves no temporary file behind
