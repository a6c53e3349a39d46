"""Ingest events: validate chunks in DuckDB, explain the refused ones with pydantic, commit the rest."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from agentwatch.collector.ingest.rejects import FieldError, Rejection, RejectLog, explain, guess_event_id
from agentwatch.collector.ingest.sources import FORMATS, RawChunk, read_source
from agentwatch.collector.ingest.sql import validation_query
from agentwatch.core.errors import InputFileError
from agentwatch.core.home import Home
from agentwatch.store import duck
from agentwatch.store.datasets import Dataset
from agentwatch.store.writer import DatasetWriter

SAMPLE_REJECTIONS = 20  # how many rejections a report keeps for display
ARROW_BATCH_ROWS = 16_384
COMMIT_ROWS = 1_000_000  # file ingest commits at most this many rows at once (fewer, larger Parquet files)


@dataclass
class IngestReport:
    """What an ingest run did."""

    dataset: str
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    sample: list[Rejection] = field(default_factory=list)
    rejects_file: Path | None = None
    seconds: float = 0.0

    def add(self, accepted: int, duplicates: int, rejections: list[Rejection]) -> None:
        self.accepted += accepted
        self.duplicates += duplicates
        self.rejected += len(rejections)
        room = SAMPLE_REJECTIONS - len(self.sample)
        self.sample.extend(rejections[:room])

    def closing_line(self) -> str:
        return (f"{self.dataset}: {self.accepted:,} accepted, {self.duplicates:,} duplicates skipped, "
                f"{self.rejected:,} rejected")


class Ingestor:
    """Validates and commits chunks of one dataset; keep one per process and dataset."""

    def __init__(self, home: Home, dataset: Dataset) -> None:
        self.dataset = dataset
        self.con = duck.connect(memory_limit="1GB")
        self.writer = DatasetWriter(home, dataset)
        self.rejects = RejectLog(home.rejects, dataset.name)
        self._query = validation_query(dataset)
        self._held: list[str] = []  # validated chunk tables not yet committed
        self._held_rows = 0
        self._batches = 0

    def close(self) -> None:
        self.con.close()

    def ingest_chunk(self, chunk: RawChunk, commit: bool = True) -> tuple[int, int, list[Rejection]]:
        """Validate one chunk; commit it (and any held back) unless `commit` is False.

        Returns (accepted, duplicates, rejections); with ``commit=False`` the first two count
        only what a commit triggered by size did, and ``flush`` commits the rest.
        """
        table = f"batch_{self._batches}"
        self._batches += 1
        self._validate_into(table, chunk.numbers, chunk.texts, create=True)
        refused = self.con.execute(f"SELECT line_no FROM {table} WHERE NOT valid").fetchnumpy()["line_no"]
        rejections = [
            Rejection(chunk.source, chunk.unit, number, None, (FieldError("", problem),),
                      head.decode("utf-8", "replace"))
            for number, problem, head in chunk.refused
        ]
        if len(refused):
            rejections += self._recheck_refused(table, chunk, np.asarray(refused))
        self.rejects.write(rejections)
        self._held.append(table)
        self._held_rows += len(chunk)
        accepted = duplicates = 0
        if commit or self._held_rows >= COMMIT_ROWS:
            accepted, duplicates = self.flush()
        return accepted, duplicates, rejections

    def flush(self) -> tuple[int, int]:
        """Commit every validated row held back; returns (accepted, duplicates)."""
        if not self._held:
            return 0, 0
        union = " UNION ALL ".join(f"SELECT * FROM {t} WHERE valid" for t in self._held)
        duck.run(self.con, f"CREATE OR REPLACE TEMP VIEW held_valid AS {union}")
        result = self.writer.commit(self.con, "held_valid")
        duck.run(self.con, "DROP VIEW held_valid")
        for table in self._held:
            duck.run(self.con, f"DROP TABLE {table}")
        self._held, self._held_rows = [], 0
        return result.accepted, result.duplicates

    def _validate_into(self, table: str, numbers: np.ndarray, texts: pa.Array, create: bool) -> None:
        arrow = pa.table({"line_no": numbers, "raw": texts})
        # DuckDB scans an Arrow table one record batch per thread: small batches use both cores.
        batches = arrow.to_batches(max_chunksize=ARROW_BATCH_ROWS)
        self.con.register("chunk", pa.Table.from_batches(batches, schema=arrow.schema))
        try:
            verb = f"CREATE TEMP TABLE {table} AS" if create else f"INSERT INTO {table}"
            duck.run(self.con, f"{verb} {self._query}")
        finally:
            self.con.unregister("chunk")

    def _recheck_refused(self, table: str, chunk: RawChunk, refused: np.ndarray) -> list[Rejection]:
        """pydantic names what is wrong with each refused text; any it accepts is kept, not lost."""
        positions = np.searchsorted(chunk.numbers, refused)
        texts = chunk.texts.take(pa.array(positions)).to_pylist()
        rejections, rescued_numbers, rescued_texts = [], [], []
        for number, text in zip(refused.tolist(), texts, strict=True):
            errors = explain(self.dataset.model, text)
            if errors:
                rejections.append(Rejection(chunk.source, chunk.unit, number, guess_event_id(text), errors, text))
            else:  # the SQL validator was stricter than the model: keep the model's normal form
                event = self.dataset.model.model_validate_json(text)
                rescued_numbers.append(number)
                rescued_texts.append(event.model_dump_json(by_alias=True, exclude_unset=True))
        if rescued_texts:
            duck.run(self.con, f"DELETE FROM {table} WHERE line_no IN (SELECT unnest($1))", [rescued_numbers])
            self._validate_into(table, np.array(rescued_numbers, dtype=np.int64),
                                pa.array(rescued_texts, pa.large_string()), create=False)
            still = duck.run(self.con, f"SELECT line_no FROM {table} WHERE NOT valid AND line_no IN "
                                       "(SELECT unnest($1))", [rescued_numbers])
            for (number,) in still:
                text = rescued_texts[rescued_numbers.index(number)]
                problem = FieldError("", "accepted by the format model but refused by the storage validator; "
                                         "please report this event to the agentwatch maintainers")
                rejections.append(Rejection(chunk.source, chunk.unit, number, guess_event_id(text),
                                            (problem,), text))
        return rejections


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files named, and the event files inside folders named (sorted, recursively)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _looks_like_events(p))
            if not found:
                raise InputFileError(path, "folder holds no .jsonl, .json, .csv or .parquet files")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise InputFileError(path, "no such file or folder")
    return files


def _looks_like_events(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return any(name.endswith("." + fmt) for fmt in (*FORMATS, "ndjson"))


def prefetch(chunks: Iterator[RawChunk], depth: int = 2) -> Iterator[RawChunk]:
    """Read the next chunks in a thread while the current one is validated (I/O and numpy free the GIL)."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                buffer.put(chunk)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(exc)
        buffer.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := buffer.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


ProgressCallback = Callable[[Path, int], None]


def ingest_files(
    home: Home,
    dataset: Dataset,
    paths: Iterable[Path],
    fmt: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> IngestReport:
    """Ingest files and folders of one dataset; valid events are kept whatever else is in the file."""
    started = time.perf_counter()
    files = expand_paths(paths)
    report = IngestReport(dataset.name)
    ingestor = Ingestor(home, dataset)
    try:
        for path in files:
            for chunk in prefetch(read_source(path, dataset, fmt)):
                report.add(*ingestor.ingest_chunk(chunk, commit=False))
                if on_progress:
                    on_progress(path, chunk.bytes_done)
            report.add(*ingestor.flush(), [])  # line numbers restart with the next file
    finally:
        ingestor.close()
    report.rejects_file = ingestor.rejects.written
    report.seconds = time.perf_counter() - started
    return report
