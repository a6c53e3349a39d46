"""The write-ahead log of the HTTP API: acknowledged events are on disk before the answer leaves.

Request handlers append valid events as JSON lines to ``wal/<dataset>-<seq:012d>.jsonl`` and
fsync before they answer. Concurrent requests share fsyncs (group commit): a request waits for
the first fsync that starts after its bytes were written, whoever issues it.

A flusher thread, every ``flush_interval_s`` or as soon as a segment outgrows ``flush_max_bytes``,
closes the current segment (new appends go to a fresh file), ingests the closed one into the store
with the ordinary ingest pipeline, and deletes it. A flush that fails keeps its segment and is
retried on the next tick: a failing episode (a full disk) is logged once when it starts and once when
it ends, and shows in ``last_flush_error`` meanwhile. A full disk refuses appends with ``StoreFullError``
(nothing is acknowledged that is not on disk); appends and flushes resume by themselves once space is
freed. A damaged part met while looking up stored ids is quarantined.

On start, segments left by a crash are ingested before the server answers anything (replay); the
store's de-duplication by event_id makes replay idempotent.

One server per home: ``locks/serve.lock`` is held (flock) for as long as the WAL is open.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from agentwatch.collector.ingest.pipeline import Ingestor
from agentwatch.collector.ingest.rejects import guess_event_id
from agentwatch.collector.ingest.sources import read_jsonl
from agentwatch.core.durable import fsync_dir
from agentwatch.core.errors import AgentwatchError, StoreError
from agentwatch.core.home import Home
from agentwatch.core.locks import acquire_serve_lock, release_serve_lock
from agentwatch.store import duck
from agentwatch.store.datasets import DATASETS
from agentwatch.store.event_keys import event_key
from agentwatch.store.keyindex import EventKeyIndex
from agentwatch.store.partitions import parts_sql, visible_files
from agentwatch.store.quarantine import survive_damage
from agentwatch.store.space import is_no_space, no_space_is_store_full, store_full

log = logging.getLogger(__name__)

WAL_DATASETS = ("actions", "outcomes", "spans")
SEGMENT_NAME = re.compile(r"(?P<dataset>[a-z_]+)-(?P<seq>\d{12})\.jsonl")
MAX_LOOKS = 3  # store look-ups per request while flushes keep moving ids from the WAL to the store
INDEX_REFRESH_S = 5.0  # how often an idle flusher picks up parts other processes wrote


def segment_files(home: Home) -> list[Path]:
    """The WAL segments under a home, oldest first within each dataset."""
    if not home.wal.is_dir():
        return []
    return sorted(p for p in home.wal.iterdir() if SEGMENT_NAME.fullmatch(p.name))


def pending_events(home: Home) -> int:
    """Events acknowledged by the API (or being acknowledged) and not yet in the store, counted on disk."""
    total = 0
    for path in segment_files(home):
        try:
            with open(path, "rb") as stream:
                while block := stream.read(1 << 20):
                    total += block.count(b"\n")
        except FileNotFoundError:  # flushed while we looked
            continue
    return total


# -- one log per folder in this process ------------------------------------------------------------

_open_wals: set[Path] = set()  # WAL folders with a running WriteAheadLog in this process
_open_wals_mutex = threading.Lock()


# -- the log -------------------------------------------------------------------------------------


@dataclass(eq=False)
class Segment:
    """One WAL file: open for appends, or closed and waiting to be flushed."""

    dataset: str
    seq: int
    path: Path
    fd: int | None = None
    size: int = 0
    ids: list[str] = field(default_factory=list)
    dirty: bool = False  # written since its last fsync
    opened_at: float = field(default_factory=time.time)  # its first event's write (a recovered file: its mtime)


class WriteAheadLog:
    """The WAL of one home and its flusher thread. ``start`` before use, ``stop`` at the end."""

    def __init__(self, home: Home, flush_interval_s: float = 1.0, flush_max_bytes: int = 64 << 20) -> None:
        self.home = home
        self.directory = home.wal
        self.flush_interval_s = flush_interval_s
        self.flush_max_bytes = flush_max_bytes
        self.last_flush_error: str | None = None  # why the flushes fail, while they do
        self.flush_failing_since: float | None = None  # time.time() of the first failure of the episode

        self._lock = threading.Lock()  # segments, pending ids, sequence numbers
        self._sync_lock = threading.Lock()  # one fsync round at a time
        self._open: dict[str, Segment] = {}
        self._closed: list[Segment] = []  # rotated, oldest first, until flushed
        self._pending: dict[str, set[str]] = {name: set() for name in WAL_DATASETS}
        self._next_seq: dict[str, int] = dict.fromkeys(WAL_DATASETS, 1)
        self._write_seq = 0  # number of appends so far
        self._synced_seq = 0  # appends covered by a completed fsync
        self._dir_dirty = False  # a segment was created since the folder's last fsync
        self._flush_gen = 0  # bumped whenever flushed ids leave `_pending`
        self._failed: str | None = None  # an fsync failed: refuse appends until restart
        self._failed_no_space = False

        self._ingestors: dict[str, Ingestor] = {}
        self._indexes: dict[str, EventKeyIndex] = {}
        self._confirm_lock = threading.Lock()
        self._confirm_con: duckdb.DuckDBPyConnection | None = None

        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._stopping = False
        self._locked = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Lock the home, replay what a crash left, start the flusher; returns once replay is done."""
        with _open_wals_mutex:
            if self.directory in _open_wals:
                raise StoreError(f"{self.home.root} is already served by another app in this process; one per home")
            _open_wals.add(self.directory)
        try:
            acquire_serve_lock(self.home)
        except BaseException:
            with _open_wals_mutex:
                _open_wals.discard(self.directory)
            raise
        self._locked = True
        self._stopping = False
        self._ready.clear()
        self._closed.clear()
        for ids in self._pending.values():
            ids.clear()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._recover()
            self._thread = threading.Thread(target=self._run, name="agentwatch-wal-flusher", daemon=True)
            self._thread.start()
            self._ready.wait()
        except BaseException:
            self._locked = False
            release_serve_lock(self.home)
            with _open_wals_mutex:
                _open_wals.discard(self.directory)
            raise

    def stop(self) -> None:
        """Flush everything pending, stop the flusher, release the home."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join()
            self._thread = None
        with self._lock:
            for segment in [*self._open.values(), *self._closed]:
                if segment.fd is not None:
                    os.close(segment.fd)
                    segment.fd = None
            self._open.clear()
        if self._confirm_con is not None:
            self._confirm_con.close()
            self._confirm_con = None
        if self._locked:
            self._locked = False
            release_serve_lock(self.home)
            with _open_wals_mutex:
                _open_wals.discard(self.directory)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._ready.is_set() and not self._stopping

    @property
    def failure(self) -> str | None:
        """Why the WAL refuses new events until a restart (a failed fsync), else None."""
        return self._failed

    def pending(self) -> int:
        """Events written to the WAL and not yet flushed into the store."""
        with self._lock:
            return sum(len(s.ids) for s in [*self._open.values(), *self._closed])

    def flush_lag_s(self) -> float:
        """Seconds since the oldest event not yet flushed into the store was written; 0 when none waits."""
        with self._lock:
            written = [s.opened_at for s in [*self._open.values(), *self._closed] if s.ids]
        return max(0.0, time.time() - min(written)) if written else 0.0

    def _recover(self) -> None:
        """Register the segments a previous process left, to be ingested before serving."""
        for path in segment_files(self.home):
            match = SEGMENT_NAME.fullmatch(path.name)
            assert match is not None
            dataset, seq = match["dataset"], int(match["seq"])
            if dataset not in WAL_DATASETS:
                log.warning("ignoring %s: not a WAL segment of %s", path, " or ".join(WAL_DATASETS))
                continue
            self._next_seq[dataset] = max(self._next_seq[dataset], seq + 1)
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):  # a torn last line: its request was never acknowledged
                log.warning("%s: dropping %d bytes of an unfinished, unacknowledged write", path, len(data) - end)
                os.truncate(path, end)
            if end == 0:
                path.unlink()
                continue
            ids = [guess_event_id(line) for line in data[:end].splitlines()]
            segment = Segment(dataset, seq, path, size=end, ids=[i for i in ids if i is not None],
                              opened_at=path.stat().st_mtime)
            self._closed.append(segment)
            self._pending[dataset].update(segment.ids)
        if self._closed:
            log.info("replaying %d events from %d WAL segments left by the previous run",
                     sum(len(s.ids) for s in self._closed), len(self._closed))

    # -- appends -------------------------------------------------------------------------------------

    def submit(self, dataset: str, ids: list[str], lines: list[bytes]) -> tuple[int, int]:
        """Durably append the events whose id is neither pending nor stored; returns (accepted, duplicates).

        `ids` must be distinct; `lines` are their JSON texts (UTF-8, no newline). Returns only after an fsync covers
        every accepted event and every pending one it was counted a duplicate of.
        """
        if self._failed:
            raise self._failed_error()
        if not self.running:
            raise StoreError("the write-ahead log is not running (the server is starting or stopping); retry")
        pending = self._pending[dataset]
        for attempt in itertools.count(1):
            generation = self._flush_gen
            candidates = [i for i, event_id in enumerate(ids) if event_id not in pending]
            stored = self.stored_ids(dataset, [ids[i] for i in candidates]) if candidates else set()
            keep = [i for i in candidates if ids[i] not in stored]
            data = b"".join(lines[i] + b"\n" for i in keep)
            with self._lock:
                # A flush moved ids from the WAL to the store meanwhile: look again (a few times at most,
                # the flush's own de-duplication is authoritative anyway).
                if generation != self._flush_gen and attempt < MAX_LOOKS:
                    continue
                if any(ids[i] in pending for i in keep):  # another request wrote some of them meanwhile
                    keep = [i for i in keep if ids[i] not in pending]
                    data = b"".join(lines[i] + b"\n" for i in keep)
                if keep:
                    self._append_locked(dataset, data, [ids[i] for i in keep])
                    pending.update(ids[i] for i in keep)
                seq = self._write_seq
                break
        self._sync(seq)
        return len(keep), len(ids) - len(keep)

    def _append_locked(self, dataset: str, data: bytes, ids: list[str]) -> None:
        segment = self._open.get(dataset)
        if segment is None:
            segment = self._new_segment_locked(dataset)
        assert segment.fd is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(segment.fd, view):]
        except OSError as exc:
            with contextlib.suppress(OSError):  # never leave half a batch: the next append would glue onto it
                os.ftruncate(segment.fd, segment.size)
            if is_no_space(exc):
                raise store_full(self.home, "appending to the write-ahead log") from exc
            raise
        segment.size += len(data)
        segment.ids.extend(ids)
        segment.dirty = True
        self._write_seq += 1
        if segment.size >= self.flush_max_bytes:
            self._wake.set()

    def _new_segment_locked(self, dataset: str) -> Segment:
        seq = self._next_seq[dataset]
        self._next_seq[dataset] = seq + 1
        path = self.directory / f"{dataset}-{seq:012d}.jsonl"
        with no_space_is_store_full(self.home, "creating a write-ahead log segment"):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        segment = Segment(dataset, seq, path, fd=fd)
        self._open[dataset] = segment
        self._dir_dirty = True
        return segment

    def _sync(self, seq: int) -> None:
        """Return once an fsync that started after append number `seq` has completed."""
        with self._sync_lock:
            if self._synced_seq >= seq:
                return  # someone else's fsync covered our bytes
            with self._lock:
                target = self._write_seq
                dirty = [s for s in [*self._open.values(), *self._closed] if s.dirty and s.fd is not None]
                for segment in dirty:
                    segment.dirty = False
                # Each fd stays open until the round ends: a segment is closed only under _sync_lock.
                fds = [s.fd for s in dirty if s.fd is not None]
                dir_dirty, self._dir_dirty = self._dir_dirty, False
            try:
                for fd in fds:
                    os.fdatasync(fd)
                if dir_dirty:
                    fsync_dir(self.directory)
            except OSError as exc:
                # After a failed fsync the kernel may have dropped the dirty pages: retrying could
                # "succeed" without the data. Refuse further writes instead (a full disk included).
                self._failed = f"fsync failed: {exc}"
                self._failed_no_space = is_no_space(exc)
                log.error("WAL %s; refusing new events until the server is restarted", self._failed)
                raise self._failed_error() from exc
            self._synced_seq = target

    def _failed_error(self) -> StoreError:
        if self._failed_no_space:
            error: StoreError = store_full(self.home, "syncing the write-ahead log")
            return type(error)(f"{error}; then restart the server: a failed fsync may have lost pages")
        return StoreError(f"the write-ahead log cannot be written ({self._failed}); restart the server")

    # -- de-duplication against the store ----------------------------------------------------------

    def stored_ids(self, dataset: str, ids: list[str]) -> set[str]:
        """Which of `ids` are in the store: the key index says "maybe", the stored event ids confirm."""
        index = self._indexes.get(dataset)
        if index is None or not ids or len(index) == 0:
            return set()
        keys = np.fromiter((event_key(i) for i in ids), dtype=np.uint64, count=len(ids))
        maybe = index.contains(keys)
        if not maybe.any():
            return set()
        suspects = pa.table({
            "event_id": pa.array([ids[i] for i in np.flatnonzero(maybe)], pa.string()),
            "event_key": pa.array(keys[maybe], pa.uint64()),
        })

        def confirm(con: duckdb.DuckDBPyConnection) -> list[tuple]:
            # the visible parts only, listed at each try (a repair moves one out): a merged part's rows are in the
            # file that replaced it (agentwatch.store.partitions)
            files = visible_files(self.home, dataset)
            if not files:
                return []
            return duck.run(con, f"SELECT DISTINCT p.event_id FROM read_parquet({parts_sql(files)}, union_by_name "
                                 "= true) AS p JOIN _suspects AS s ON p.event_key = s.event_key AND p.event_id = "
                                 "s.event_id")

        with self._confirm_lock:
            if self._confirm_con is None:
                self._confirm_con = duck.connect(memory_limit="512MB")
            con = self._confirm_con
            con.register("_suspects", suspects)
            try:
                rows = survive_damage(self.home, lambda: confirm(con))
            except duckdb.IOException:  # no part at all any more
                rows = []
            finally:
                con.unregister("_suspects")
        return {row[0] for row in rows}

    # -- the flusher ---------------------------------------------------------------------------------

    def _ingestor(self, dataset: str) -> Ingestor:
        ingestor = self._ingestors.get(dataset)
        if ingestor is None:
            ingestor = Ingestor(self.home, DATASETS[dataset])
            if dataset in self._indexes:  # a commit adds to the index only once it succeeded: it is still right
                ingestor.writer.index = self._indexes[dataset]
            ingestor.writer.index.refresh()
            self._ingestors[dataset] = ingestor
            # The writer's index is kept current by every commit; requests read it (never write it).
            self._indexes[dataset] = ingestor.writer.index
        return ingestor

    def _discard_ingestor(self, dataset: str) -> None:
        ingestor = self._ingestors.pop(dataset, None)
        if ingestor is not None:
            with contextlib.suppress(Exception):
                ingestor.close()

    def _run(self) -> None:
        try:
            for dataset in WAL_DATASETS:
                self._ingestor(dataset)
            self.flush()  # replay
        except Exception as exc:
            self._record_error("cannot open the store for flushing", exc)
        finally:
            self._ready.set()
        last_refresh = time.monotonic()
        while not self._stopping:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self._stopping:
                break
            try:
                flushed = self.flush()
                if not flushed and time.monotonic() - last_refresh > INDEX_REFRESH_S:
                    for dataset in WAL_DATASETS:  # parts other processes wrote meanwhile
                        self._ingestor(dataset).writer.index.refresh()
                    last_refresh = time.monotonic()
            except Exception as exc:
                self._record_error("flush failed", exc)
        try:
            self.flush()
            if self._closed:
                log.warning("%d WAL segments could not be flushed at shutdown; they are replayed at the next "
                            "start", len(self._closed))
        except Exception as exc:
            self._record_error("final flush failed; the WAL is replayed at the next start", exc)
        finally:
            for ingestor in self._ingestors.values():
                ingestor.close()
            self._ingestors.clear()
            self._indexes.clear()

    def _record_error(self, what: str, exc: BaseException) -> None:
        """Log a failing episode once: at its first failure, and again only when the failure changes."""
        known = isinstance(exc, AgentwatchError) or is_no_space(exc)
        summary = f"{what}: {exc}" if known else f"{what}: {type(exc).__name__}: {exc}"
        episode_began = self.flush_failing_since is None
        if episode_began:
            self.flush_failing_since = time.time()
        if episode_began or _kind(summary) != _kind(self.last_flush_error):
            # A failure we name (a full disk) is one line; an unexpected one keeps its traceback, once.
            log.error("WAL %s; the WAL keeps it and retries every %.0f s", summary, self.flush_interval_s,
                      exc_info=None if known else exc)
        self.last_flush_error = summary

    def _record_success(self) -> None:
        if self.flush_failing_since is not None:
            log.warning("WAL flushing resumed after %.0f s of failures; nothing acknowledged was lost",
                        time.time() - self.flush_failing_since)
        self.flush_failing_since = None
        self.last_flush_error = None

    def flush(self) -> int:
        """Close the current segments and ingest every closed one; returns the events flushed.

        Runs on the flusher thread only. Stops at the first segment that fails, keeping it and
        every later one for the next try.
        """
        for dataset in WAL_DATASETS:
            self._rotate(dataset)
        flushed = 0
        while True:
            with self._lock:
                if not self._closed:
                    break
                segment = self._closed[0]
            try:
                self._ingest_segment(segment)
            except Exception as exc:
                self._record_error(f"flushing {segment.path.name} failed (kept, retried next tick)", exc)
                self._discard_ingestor(segment.dataset)  # whatever it held back goes; the retry redoes it all
                return flushed
            segment.path.unlink(missing_ok=True)
            with self._lock:
                self._closed.remove(segment)
                self._pending[segment.dataset].difference_update(segment.ids)
                self._flush_gen += 1
            flushed += len(segment.ids)
        self._record_success()
        return flushed

    def _rotate(self, dataset: str) -> None:
        """Close the open segment of `dataset` (if it holds anything); later appends start a new one."""
        with self._lock:
            segment = self._open.get(dataset)
            if segment is None or segment.size == 0:
                return
            del self._open[dataset]
            self._closed.append(segment)
        self._sync(self._write_seq)  # covers the closed segment's last bytes
        with self._sync_lock:  # no fsync round may be using the fd while it is closed
            with self._lock:
                fd, segment.fd = segment.fd, None
            if fd is not None:
                os.close(fd)

    def _ingest_segment(self, segment: Segment) -> None:
        started = time.perf_counter()
        ingestor = self._ingestor(segment.dataset)
        accepted = duplicates = refused = 0
        for chunk in read_jsonl(segment.path):
            chunk_accepted, chunk_duplicates, rejections = ingestor.ingest_chunk(chunk)
            accepted += chunk_accepted
            duplicates += chunk_duplicates
            refused += len(rejections)
        if refused:
            log.warning("%s: %d events were refused at flush (they had passed validation); see %s",
                        segment.path.name, refused, ingestor.rejects.written)
        log.info("flushed %s: %d stored, %d duplicates, %d refused in %.2f s", segment.path.name, accepted,
                 duplicates, refused, time.perf_counter() - started)


def _kind(summary: str | None) -> str | None:
    """A failure's kind: its text up to the first detail that changes between retries (a segment's name)."""
    return None if summary is None else re.sub(r"\S+-\d{12}\.jsonl", "<segment>", summary)
