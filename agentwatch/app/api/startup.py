"""The WAL opens in the background: the server answers at once (``/healthz`` says ``starting``, ingest says
retry) while the WAL replays what a crash left and loads the store's key index, which takes seconds on a
large store.

What must fail at once still does, before the server answers: another process serving the home (its serve
lock), or another app of this process on it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from agentwatch.app.api.errors import ApiError
from agentwatch.app.api.ratelimit import retry_after
from agentwatch.collector.wal import WriteAheadLog
from agentwatch.core.errors import StoreError
from agentwatch.core.locks import acquire_serve_lock, release_serve_lock

log = logging.getLogger(__name__)

_serving: set[Path] = set()  # homes with an app started in this process
_serving_mutex = threading.Lock()


class WalStartup:
    """Starts a WriteAheadLog on a thread; `ready` once it takes events, `error` if it could not start."""

    def __init__(self, wal: WriteAheadLog) -> None:
        self.wal = wal
        self.ready = threading.Event()
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._locked = False

    @property
    def starting(self) -> bool:
        return not self.ready.is_set() and self.error is None

    def begin(self) -> None:
        """Fail fast when the home is served already; then start the WAL in the background."""
        home = self.wal.home
        with _serving_mutex:
            if home.root in _serving:
                raise StoreError(f"{home.root} is already served by another app in this process; one per home")
            _serving.add(home.root)
        try:
            acquire_serve_lock(home)
        except BaseException:
            with _serving_mutex:
                _serving.discard(home.root)
            raise
        self._locked = True
        self._thread = threading.Thread(target=self._start, name="agentwatch-wal-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self.wal.start()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("the write-ahead log could not start: %s; event routes answer 503", self.error)
            return
        self.ready.set()
        log.info("the write-ahead log is ready: event routes take events")

    def end(self) -> None:
        """Wait for a start under way, flush and stop the WAL, release the home."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            if self.ready.is_set():
                self.wal.stop()
        finally:
            if self._locked:
                self._locked = False
                release_serve_lock(self.wal.home)
                with _serving_mutex:
                    _serving.discard(self.wal.home.root)

    def require_ready(self) -> None:
        """Refuse (503 with Retry-After) an event request while the WAL is not taking events."""
        if self.ready.is_set():
            return
        if self.error is not None:
            raise ApiError(503, "wal_unavailable", "the server could not open its write-ahead log, so it takes no "
                           "events (an operator finds why in /v1/health and the server log); retry later",
                           headers=retry_after(30))
        raise ApiError(503, "starting", "the server is starting: it is replaying its write-ahead log; nothing was "
                       "read from this request, retry after the Retry-After seconds", headers=retry_after(1))
