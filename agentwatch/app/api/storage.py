"""A full disk under the write-ahead log: 507 for each refused batch, one log line when it starts and one
when it ends (the probe's full disk logged a traceback per request)."""

from __future__ import annotations

import logging
import shutil
import threading

from agentwatch.app.api.errors import ApiError
from agentwatch.core.home import Home

log = logging.getLogger(__name__)

class DiskFull:
    """Whether the WAL's disk is full now: set by a write that failed for lack of space, cleared by one that
    succeeded or by a health probe that finds room again (a load balancer sends nothing to a server whose
    health says failing, so waiting for a write alone would never end the episode)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.active = False
        self.refused = 0
        self._lock = threading.Lock()

    def refused_batch(self) -> ApiError:
        """Record a batch refused for lack of space; the 507 to answer."""
        with self._lock:
            if not self.active:
                self.active, self.refused = True, 0
                log.error("no space left under %s for the write-ahead log: event batches are answered 507 until a "
                          "write succeeds; free space there", self.home.root)
            self.refused += 1
        return ApiError(507, "insufficient_storage",
                        f"the disk under {self.home.root} is full: nothing of this batch was acknowledged; free "
                        f"space under {self.home.root} and retry (events are de-duplicated by event_id, so a retry "
                        "never stores one twice)")

    def recheck(self, needed_bytes: int) -> None:
        """End an episode when the WAL's disk has room for a batch of `needed_bytes` again."""
        if not self.active:
            return
        try:
            free = shutil.disk_usage(self.home.wal if self.home.wal.exists() else self.home.root).free
        except OSError:
            return
        if free >= needed_bytes:
            self.wrote()

    def wrote(self) -> None:
        """Record a write that succeeded: ends an episode."""
        if not self.active:
            return
        with self._lock:
            if self.active:
                self.active = False
                log.warning("space is available again under %s: the write-ahead log takes events (%d batches "
                            "were refused with 507 meanwhile)", self.home.root, self.refused)
