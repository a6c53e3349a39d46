"""What the client did with its events: counts, and the last errors with the event ids they concern."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

LAST_ERRORS_KEPT = 50


@dataclass(frozen=True)
class ErrorRecord:
    """One problem the background sender met: refused events (one record each), a drop, a failed attempt."""

    at: datetime
    dataset: str  # actions | outcomes
    status: int | None  # the HTTP status; None for a connection error or a timeout
    code: str  # the server's error code (invalid_events, unauthorized, ...) or the client's (unreachable, ...)
    message: str
    event_id: str | None = None  # the refused event, when one is meant


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of ``Client.stats``. Every event queued ends in exactly one of sent, duplicates, refused, dropped,
    or is still queued."""

    queued: int = 0  # waiting to be sent or in flight now
    sent: int = 0  # acknowledged as new by the server (on its disk)
    duplicates: int = 0  # acknowledged as already held (a retry of an event that had arrived, or a repeated id)
    refused: int = 0  # refused for good (422: invalid; 413: one event over the body limit); not retried
    dropped: int = 0  # given up: a 401/403/4xx batch, or still queued when the client closed
    retries: int = 0  # attempts repeated after a connection error, a timeout, 429, 5xx or 507
    last_errors: tuple[ErrorRecord, ...] = field(default_factory=tuple)  # newest last, at most 50


class StatsKeeper:
    """The counters behind ClientStats, shared by the caller's threads and the sender's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "duplicates": 0, "refused": 0, "dropped": 0, "retries": 0}
        self._errors: deque[ErrorRecord] = deque(maxlen=LAST_ERRORS_KEPT)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, number in counts.items():
                self._counts[name] += number

    def error(self, dataset: str, status: int | None, code: str, message: str, event_id: str | None = None) -> None:
        with self._lock:
            self._errors.append(ErrorRecord(datetime.now(UTC), dataset, status, code, message, event_id))

    def snapshot(self, queued: int) -> ClientStats:
        with self._lock:
            return ClientStats(queued=queued, last_errors=tuple(self._errors), **self._counts)
