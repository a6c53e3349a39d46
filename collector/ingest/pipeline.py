"""Ingest events: validate chunks in DuckDB, explain the refused ones with pydantic, commit the rest."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agentwatch.collector.ingest.rejects import FieldError, Rejection, RejectLog, explain, guess_event_id
from agentwatch.collector.ingest.screen import screen_chunk
from agentwatch.collector.ingest.sources import FORMATS, RawChunk, read_source
from agentwatch.collector.ingest.sql import validation_query
from agentwatch.core.errors import InputFileError, StoreFullError
from agentwatch.core.home import Home
from agentwatch.core.limits import Limits
from agentwatch.store import duck
from agentwatch.store.datasets import Dataset
from agentwatch.store.space import is_no_space
from agentwatch.store.writer import DatasetWriter

SAMPLE_REJECTIONS = 20  # how many rejections a report keeps for display
RECHECK_BATCH = 10_000  # refused texts explained (and written to the rejects file) at a time
ARROW_BATCH_ROWS = 16_384
ARROW_BATCH_BYTES = 4 << 20
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

    def add(self, accepted: int, duplicates: int, rejections: list[Rejection], rejected: int | None = None) -> None:
        """Count a step's outcome; `rejected` when `rejections` is only a sample of them."""
        self.accepted += accepted
        self.duplicates += duplicates
        self.rejected += len(rejections) if rejected is None else rejected
        self.sample.extend(rejections[:self.room])

    @property
    def room(self) -> int:
        """How many more rejections the sample keeps."""
        return SAMPLE_REJECTIONS - len(self.sample)

    @property
    def events_read(self) -> int:
        return self.accepted + self.duplicates + self.rejected

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
        self._held_through: tuple[str, str, int] | None = None
        self.stored_through: tuple[str, str, int] | None = None  # (source, unit, number) of the last commit
        self.reject_limit: int | None = None  # refusals one file may have (None: no cap)
        self.reject_budget: int | None = None  # of which this many are left for the current file
        self._last_refused: int | None = None  # the line of the current file's last refusal counted

    def close(self) -> None:
        self.con.close()

    def start_file(self) -> None:
        """A new input file: its refusals are counted from zero."""
        self.reject_budget = self.reject_limit
        self._last_refused = None

    def ingest_chunk(self, chunk: RawChunk, commit: bool = True) -> tuple[int, int, list[Rejection]]:
        """Validate one chunk; commit it (and any held back) unless `commit` is False.

        Returns (accepted, duplicates, rejections); with ``commit=False`` the first two count
        only what a commit triggered by size did, and ``flush`` commits the rest.
        """
        accepted, duplicates, _, rejections = self.ingest_counted(chunk, commit, keep=None)
        return accepted, duplicates, rejections

    def ingest_counted(self, chunk: RawChunk, commit: bool, keep: int | None) -> tuple[int, int, int, list[Rejection]]:
        """As ``ingest_chunk``, returning (accepted, duplicates, rejected, the first `keep` rejections): every
        rejection is written to the rejects file as it is found, so memory stays bounded whatever the count."""
        table = f"batch_{self._batches}"
        self._batches += 1
        self._validate_into(table, chunk.numbers, chunk.texts, create=True)
        kept: list[Rejection] = []
        early = [
            Rejection(chunk.source, chunk.unit, number, guess_event_id(head), (FieldError(field, problem),),
                      head.decode("utf-8", "replace"))
            for number, problem, head, field in chunk.refused
        ]
        rejected = 0
        try:
            rejected = self._record(self._within_budget(early, table, chunk), kept, keep)
            # In line order: a file over its reject cap stops at its first `cap` refusals.
            refused = self.con.execute(f"SELECT line_no FROM {table} WHERE NOT valid ORDER BY line_no"
                                       ).fetchnumpy()["line_no"]
            for start in range(0, len(refused), RECHECK_BATCH):
                part = np.asarray(refused[start:start + RECHECK_BATCH])
                rejected += self._record(self._within_budget(self._recheck_refused(table, chunk, part), table,
                                                             chunk), kept, keep)
        except TooManyRejects as exc:  # the file ends here: the report still counts this chunk's refusals
            exc.rejected += rejected
            exc.sample = kept + exc.sample[:max((keep or 0) - len(kept), 0)]
            raise
        self._held.append(table)
        self._held_rows += len(chunk)
        if len(chunk):
            self._held_through = (chunk.source, chunk.unit, int(chunk.numbers[-1]))
        accepted = duplicates = 0
        if commit or self._held_rows >= COMMIT_ROWS:
            accepted, duplicates = self.flush()
        return accepted, duplicates, rejected, kept

    def _within_budget(self, rejections: list[Rejection], table: str, chunk: RawChunk) -> list[Rejection]:
        """The rejections, counted against the file's budget. Over it, those up to the budget are written, the
        chunk's rows after the last of them are dropped, what came before is held for commit, and
        TooManyRejects ends the file."""
        if self.reject_budget is None or not rejections:
            return rejections
        ordered = sorted(rejections, key=lambda r: r.number)
        if len(ordered) <= self.reject_budget:
            self.reject_budget -= len(ordered)
            self._last_refused = max(self._last_refused or 0, ordered[-1].number)
            return rejections
        kept = ordered[:self.reject_budget]
        # The budget may have run out exactly with an earlier batch: the file then stops at its last refusal.
        last = kept[-1].number if kept else self._last_refused or int(chunk.numbers[0]) - 1
        self.rejects.write(kept)
        duck.run(self.con, f"DELETE FROM {table} WHERE line_no > $1", [last])
        self._held.append(table)
        self._held_rows += len(chunk)
        self._held_through = (chunk.source, chunk.unit, last)
        self.reject_budget = 0
        raise TooManyRejects(chunk.source, chunk.unit, last, len(kept), kept, self.reject_limit or 0)

    def _record(self, rejections: list[Rejection], kept: list[Rejection], keep: int | None) -> int:
        self.rejects.write(rejections)
        kept.extend(rejections if keep is None else rejections[:max(keep - len(kept), 0)])
        return len(rejections)

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
        self.stored_through = self._held_through
        return result.accepted, result.duplicates

    def _validate_into(self, table: str, numbers: np.ndarray, texts: pa.Array, create: bool) -> None:
        arrow = pa.table({"line_no": numbers, "raw": texts})
        # DuckDB scans an Arrow table one record batch per thread: small batches use both cores. Batches are
        # also cut by bytes, as DuckDB holds several copies of a batch's texts while validating it: 64 MB of
        # 60 KB events in one batch ran out of its 1 GB.
        batches = [piece for start, length in _byte_slices(texts)
                   for piece in arrow.slice(start, length).to_batches(max_chunksize=ARROW_BATCH_ROWS)]
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


def _byte_slices(texts: pa.Array) -> list[tuple[int, int]]:
    """(start, length) runs of `texts` holding about ARROW_BATCH_BYTES each (at least one text a run)."""
    sizes = pc.fill_null(pc.binary_length(texts), 0).to_numpy(zero_copy_only=False)
    ends = np.cumsum(sizes, dtype=np.int64)
    total = int(ends[-1]) if len(ends) else 0
    cuts = np.searchsorted(ends, np.arange(ARROW_BATCH_BYTES, total, ARROW_BATCH_BYTES), side="right")
    bounds = np.unique(np.concatenate(([0], cuts, [len(texts)])))
    return [(int(start), int(stop - start)) for start, stop in itertools.pairwise(bounds)] or [(0, 0)]


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


class FilesNotIngested(InputFileError):
    """Some input files could not be read (whole or in part); every other event of the command was ingested.

    ``report`` counts what was ingested, ``failures`` says what went wrong with each file.
    """

    def __init__(self, report: IngestReport, failures: list[InputFileError]) -> None:
        super().__init__(failures[0].path, "; ".join(f.problem for f in failures))
        self.args = ("\n".join(str(f) for f in failures),)
        self.report = report
        self.failures = failures

    def __str__(self) -> str:
        return str(self.args[0])


class TooManyRejects(InputFileError):
    """A file refused more events than limits.max_rejects_per_file; reading it stopped there."""

    def __init__(self, source: str, unit: str, number: int, rejected: int, sample: list[Rejection],
                 limit: int) -> None:
        super().__init__(source, f"{limit:,} events refused, the most one file may have "
                                 f"(limits.max_rejects_per_file): reading stopped after {unit} {number:,}, the valid "
                                 "events before it were stored and the refusals written to the rejects folder; "
                                 "is this the right file? Fix what produced it, or raise the setting")
        self.rejected = rejected  # in the chunk where reading stopped (the earlier chunks are counted already)
        self.sample = sample


class DiskFull(StoreFullError):
    """The disk under the home filled up during an ingest; the message says what was stored."""


def screened(chunks: Iterator[RawChunk], limits: Limits) -> Iterator[RawChunk]:
    """The chunks with texts over a bound (size, depth) or holding non-finite numbers refused one by one."""
    for chunk in chunks:
        yield screen_chunk(chunk, limits)


def ingest_files(
    home: Home,
    dataset: Dataset,
    paths: Iterable[Path],
    fmt: str | None = None,
    on_progress: ProgressCallback | None = None,
    limits: Limits | None = None,
) -> IngestReport:
    """Ingest files and folders of one dataset; valid events are kept whatever else is in the file.

    A file that cannot be read through (truncated, over a bound, or holding no events) does not stop the
    others: the events read before the problem are stored, and FilesNotIngested is raised at the end with the
    report and each file's problem. A full disk stops at once with DiskFull.
    """
    started = time.perf_counter()
    limits = limits or Limits()
    files = expand_paths(paths)
    report = IngestReport(dataset.name)
    ingestor = Ingestor(home, dataset)
    ingestor.reject_limit = limits.max_rejects_per_file
    failures: list[InputFileError] = []
    try:
        for path in files:
            read_before = report.events_read
            failure: InputFileError | None = None
            ingestor.start_file()
            try:
                for chunk in prefetch(screened(read_source(path, dataset, fmt, limits), limits)):
                    accepted, duplicates, rejected, kept = ingestor.ingest_counted(chunk, False, report.room)
                    report.add(accepted, duplicates, kept, rejected)
                    if on_progress:
                        on_progress(path, chunk.bytes_done)
            except TooManyRejects as exc:  # its last chunk's refusals were written, not yet counted
                report.add(0, 0, exc.sample[:report.room], exc.rejected)
                failure = exc
            except InputFileError as exc:  # the events read before it are committed below
                failure = exc
            report.add(*ingestor.flush(), [])  # line numbers restart with the next file
            if failure is None and report.events_read == read_before:
                failure = InputFileError(path, _holds_no_events(path))
            if failure is not None:
                failures.append(failure)
    except Exception as exc:
        if _disk_full(exc):
            raise DiskFull(_disk_full_message(home, ingestor, files, exc)) from None
        raise
    finally:
        ingestor.close()
    report.rejects_file = ingestor.rejects.written
    report.seconds = time.perf_counter() - started
    if failures:
        raise FilesNotIngested(report, failures)
    return report


def _holds_no_events(path: Path) -> str:
    if path.stat().st_size == 0:
        return "the file is empty: there are no events in it"
    return "holds no events (only blank lines, or a header without rows): check it is the file you meant"


def _disk_full(exc: BaseException) -> bool:
    """Out of space (ENOSPC, EDQUOT), said by the OS, by DuckDB, or by the store's StoreFullError."""
    seen: BaseException | None = exc
    while seen is not None:
        if is_no_space(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _disk_full_message(home: Home, ingestor: Ingestor, files: list[Path], exc: BaseException) -> str:
    reason = "no space left on device" if "quota" not in str(exc).lower() else "disk quota exceeded"
    if ingestor.stored_through is None:
        stored = f"nothing was stored from {files[0]} on" if files else "nothing was stored"
    else:
        source, unit, number = ingestor.stored_through
        stored = f"events were stored up to {unit} {number:,} of {source}, nothing after it"
    return (f"the disk holding the agentwatch home {home.root} is full ({reason}): {stored}; free some space and "
            "run the same command again (events already stored are skipped as duplicates)")
