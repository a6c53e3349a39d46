"""Who holds an outbox lease, and whether that holder still runs.

A sender leases a row for minutes before sending it, so that two processes never send it at once. A sender
killed mid-send (SIGKILL, OOM, a power cut of the process) never gives the lease back; when the holder ran on
this host and is gone, the next sender takes the row at once instead of waiting the lease out. A holder on
another host (a home on a shared disk) is left to its lease.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def this_holder() -> str:
    """``host:pid:start`` of this process (start: its start time since boot, which tells a reused pid apart)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_stat(pid)[1]}"


def holder_gone(holder: str) -> bool:
    """True when `holder` ran on this host and no longer runs: its pid is gone, a zombie, or another process."""
    try:
        host, pid_text, start = holder.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it runs, as another user
    state, started = _stat(pid)
    return state == "Z" or bool(start and started and started != start)


def _stat(pid: int) -> tuple[str, str]:
    """(state, start time in clock ticks since boot) from /proc (Linux); ("", "") where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return "", ""
    return fields[0], fields[19]  # fields 3 (state) and 22 (starttime) of proc(5), counted after the name
