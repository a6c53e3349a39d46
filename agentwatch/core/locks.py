"""A cross-process write lock: writers to one dataset take turns, readers never wait."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from agentwatch.core.errors import StoreError


class WriteLock:
    """An exclusive ``flock`` on a lock file, held only for the short commit of a batch."""

    def __init__(self, path: Path, timeout_s: float = 120.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._fd: int | None = None

    def __enter__(self) -> WriteLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise StoreError(
                        f"another agentwatch process has held the write lock {self.path} for more than "
                        f"{self.timeout_s:.0f} s; is an ingest stuck? Retry when it has finished."
                    ) from None
                time.sleep(0.005)
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
