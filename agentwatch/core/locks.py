"""Cross-process locks: writers to one dataset take turns (readers never wait); one server per home."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from types import TracebackType

from agentwatch.core.errors import StoreError
from agentwatch.core.home import Home


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


# -- one server per home ---------------------------------------------------------------------------

_serve_locks: dict[Path, list[int]] = {}  # lock path -> [fd, holders in this process]
_serve_locks_mutex = threading.Lock()


def acquire_serve_lock(home: Home) -> None:
    """Take the home's serve lock, or fail at once when another process holds it.

    Re-entrant within one process: ``serve`` takes it before it binds the port (to fail fast), and
    the app's lifespan takes it again; the last release unlocks it.
    """
    path = home.lock_file("serve")
    with _serve_locks_mutex:
        held = _serve_locks.get(path)
        if held is not None:
            held[1] += 1
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise StoreError(
                f"another agentwatch server{f' (pid {holder})' if holder else ''} is already serving "
                f"{home.root}: one server per home; stop it first, or serve another home "
                "(--home / AGENTWATCH_HOME)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _serve_locks[path] = [fd, 1]


def is_served(home: Home) -> bool:
    """Whether an ``agentwatch serve`` process holds the home's serve lock now."""
    path = home.lock_file("serve")
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock we may have taken
    return False


def release_serve_lock(home: Home) -> None:
    """Give back one hold of the serve lock; the last one unlocks it."""
    path = home.lock_file("serve")
    with _serve_locks_mutex:
        held = _serve_locks.get(path)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _serve_locks[path]
            fcntl.flock(held[0], fcntl.LOCK_UN)
            os.close(held[0])
