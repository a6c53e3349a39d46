"""The background sender: one daemon thread posting queued events in batches, retrying until the server has them.

Events wait in one FIFO per dataset (actions, outcomes). The thread posts a dataset's events when `batch_size`
of them wait, when the oldest has waited `flush_interval_s`, or when `flush()` asks; one POST holds events of
one dataset only. An attempt that got no answer, or 429, 5xx or 507, is repeated with the same events (so the
same ids: the server counts what had arrived as duplicates) after an exponential backoff, for as long as it
takes; meanwhile events keep queueing up to `max_queue`, and `put` raises QueueFull past it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import httpx

from agentwatch.client.errors import ClientClosed, FlushTimeout, QueueFull
from agentwatch.client.events import Event
from agentwatch.client.stats import ClientStats, StatsKeeper
from agentwatch.client.transport import Answer, auth_headers, backoff_s, no_answer, read_answer

log = logging.getLogger("agentwatch.client")

DATASETS = ("actions", "outcomes")
JOIN_MARGIN_S = 1.0  # close() waits this much past one request's timeout for the thread to end


@dataclass(frozen=True)
class Queued:
    seq: int  # the order of queueing, over both datasets: flush() waits for every seq up to the last one
    event: Event
    at: float  # time.monotonic() when queued


@dataclass(frozen=True)
class SenderSettings:
    url: str
    key: str
    batch_size: int
    flush_interval_s: float
    max_queue: int
    timeout_s: float
    max_retry_s: float


class BatchSender:
    """The queue and the thread that empties it. Thread-safe: any thread may put and flush."""

    def __init__(self, settings: SenderSettings, stats: StatsKeeper) -> None:
        self._settings = settings
        self._stats = stats
        self._waiting: dict[str, deque[Queued]] = {name: deque() for name in DATASETS}
        self._in_flight: list[Queued] = []
        self._seq = 0
        self._flush_upto = 0  # events queued up to this seq are sent now, whatever the batch's size or age
        self._closed = False  # no more puts
        self._halted = False  # the thread stops at its next step; what it still holds is dropped
        self._cond = threading.Condition()
        self._http = httpx.Client(headers=auth_headers(settings.key), timeout=settings.timeout_s)
        self._failing_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="agentwatch-client-sender", daemon=True)
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------------------------------

    def put(self, event: Event) -> None:
        """Queue one event; QueueFull when max_queue events are queued already, ClientClosed after close()."""
        with self._cond:
            if self._closed:
                raise ClientClosed(f"agentwatch client is closed: {event.dataset} event {event.event_id} was not "
                                   "queued; make a new Client")
            queued = self._queued()
            if queued >= self._settings.max_queue:
                raise QueueFull(f"{queued} events wait to be sent to {self._settings.url} (max_queue); "
                                f"{event.dataset} event {event.event_id} was not queued. agentwatch is down or "
                                "slower than this agent: see Client.stats.last_errors, retry later, or raise "
                                "max_queue")
            self._seq += 1
            waiting = self._waiting[event.dataset]
            waiting.append(Queued(self._seq, event, time.monotonic()))
            if len(waiting) == 1 or len(waiting) >= self._settings.batch_size:
                self._cond.notify_all()

    def flush(self, timeout: float | None) -> None:
        """Block until every event queued before this call is acknowledged or refused; FlushTimeout past
        `timeout` seconds (None: no limit), the events staying queued."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._seq
            self._flush_upto = max(self._flush_upto, target)
            self._cond.notify_all()
            while self._oldest_unsettled() <= target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    pending = sum(1 for q in self._unsettled() if q.seq <= target)
                    raise FlushTimeout(f"flush: {pending} events still unacknowledged by {self._settings.url} after "
                                       f"{timeout} s; they stay queued and are retried (Client.stats.last_errors "
                                       "says why)", pending)
                if self._halted:
                    raise ClientClosed("flush: the client's sender stopped (closed, or failed: see the log) with "
                                       "events unacknowledged; Client.stats counts them as dropped")
                self._cond.wait(remaining)

    def close(self, timeout: float) -> int:
        """Flush up to `timeout` s, stop the thread, and drop what is still queued; returns how many were dropped."""
        with self._cond:
            if self._closed:
                return 0
            self._closed = True
        with contextlib.suppress(FlushTimeout, ClientClosed):  # what is left is counted below, as dropped
            self.flush(timeout)
        with self._cond:
            self._halted = True
            left = [q for name in DATASETS for q in self._waiting[name]]
            for waiting in self._waiting.values():
                waiting.clear()
            self._cond.notify_all()
        self._thread.join(self._settings.timeout_s + JOIN_MARGIN_S)
        for name in DATASETS:
            if unsent := [q for q in left if q.event.dataset == name]:
                self._drop(unsent, "closed", f"the client closed with them unacknowledged by {self._settings.url}")
        return len(left)

    def queued(self) -> int:
        with self._cond:
            return self._queued()

    def stats(self) -> ClientStats:
        return self._stats.snapshot(self.queued())

    # -- the thread --------------------------------------------------------------------------------------------

    def _queued(self) -> int:
        return sum(len(waiting) for waiting in self._waiting.values()) + len(self._in_flight)

    def _unsettled(self) -> list[Queued]:
        return [*self._in_flight, *(q for name in DATASETS for q in self._waiting[name])]

    def _oldest_unsettled(self) -> float:
        fronts = [w[0].seq for w in self._waiting.values() if w] + [q.seq for q in self._in_flight[:1]]
        return min(fronts, default=math.inf)

    def _due(self, now: float) -> tuple[str | None, float | None]:
        """The dataset to post now (its oldest event first), else how long until one is due (None: nothing waits)."""
        settings = self._settings
        due: list[tuple[int, str]] = []
        wait: float | None = None
        for name, waiting in self._waiting.items():
            if not waiting:
                continue
            front = waiting[0]
            age = now - front.at
            if (len(waiting) >= settings.batch_size or front.seq <= self._flush_upto or self._closed
                    or age >= settings.flush_interval_s):
                due.append((front.seq, name))
            else:
                left = settings.flush_interval_s - age
                wait = left if wait is None else min(wait, left)
        return (min(due)[1], None) if due else (None, wait)

    def _run(self) -> None:
        try:
            while (taken := self._take()) is not None:
                dataset, batch = taken
                try:
                    self._deliver(dataset, batch)
                finally:
                    with self._cond:
                        self._in_flight = []
                        self._cond.notify_all()
        except Exception:  # a bug here would silently stop all sending: say so loudly
            log.exception("agentwatch client: the sender thread failed; events are no longer sent")
            with self._cond:
                self._halted = True
                self._cond.notify_all()
        finally:
            self._http.close()

    def _take(self) -> tuple[str, list[Queued]] | None:
        """Wait for the next batch that is due and mark it in flight; None once halted."""
        with self._cond:
            while not self._halted:
                dataset, wait = self._due(time.monotonic())
                if dataset is not None:
                    waiting = self._waiting[dataset]
                    self._in_flight = [waiting.popleft() for _ in range(min(len(waiting), self._settings.batch_size))]
                    return dataset, self._in_flight
                self._cond.wait(wait)
        return None

    def _deliver(self, dataset: str, batch: list[Queued]) -> None:
        """Post one batch until it is settled: acknowledged, refused, or given up (halted, or a permanent error)."""
        attempt = 0
        while True:
            body = b"[" + b",".join(q.event.text for q in batch) + b"]"
            try:
                answer = read_answer(self._http.post(f"{self._settings.url}/v1/{dataset}", content=body))
            except httpx.HTTPError as exc:
                answer = no_answer(exc)
            if answer.verdict != "retry":
                self._recovered(attempt)
                self._settle(dataset, batch, answer)
                return
            attempt += 1
            self._stats.add(retries=1)
            if attempt == 1:  # once per batch: a long outage would push every other error out of last_errors
                self._stats.error(dataset, answer.status, answer.code, f"retrying: {answer.message}")
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("agentwatch client: posting %d %s to %s failed (%s: %s); retrying with backoff, the "
                            "events stay queued", len(batch), dataset, self._settings.url, answer.code, answer.message)
            if not self._sleep(backoff_s(attempt, self._settings.max_retry_s, answer.retry_after_s)):
                self._drop(batch, answer.code, f"the client closed while retrying: {answer.message}", answer.status)
                return

    def _sleep(self, seconds: float) -> bool:
        """Wait between attempts; False when close() halts the thread meanwhile."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while not self._halted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                self._cond.wait(left)
        return False

    def _recovered(self, attempts: int) -> None:
        if self._failing_since is not None:
            log.warning("agentwatch client: %s answers again after %.1f s (%d retries of this batch)",
                        self._settings.url, time.monotonic() - self._failing_since, attempts)
            self._failing_since = None

    def _settle(self, dataset: str, batch: list[Queued], answer: Answer) -> None:
        if answer.verdict == "ok":
            self._stats.add(sent=int(answer.body.get("accepted", 0)), duplicates=int(answer.body.get("duplicates", 0)))
        elif answer.verdict == "refused":
            self._refused(dataset, batch, answer)
        elif answer.verdict == "too_large" and len(batch) > 1:
            half = len(batch) // 2  # the body or the count is over the server's limit: halves may pass
            self._deliver(dataset, batch[:half])
            self._deliver(dataset, batch[half:])
        elif answer.verdict == "too_large":
            self._stats.add(refused=1)
            self._stats.error(dataset, answer.status, answer.code, answer.message, batch[0].event.event_id)
            log.error("agentwatch client: %s event %s refused (not retried): %s", dataset, batch[0].event.event_id,
                      answer.message)
        else:
            hint = (" check the key (AGENTWATCH_KEY): it must be a valid key of scope ingest"
                    if answer.status in (401, 403) else "")
            self._drop(batch, answer.code, f"{answer.message}{';' if hint else ''}{hint}", answer.status)

    def _refused(self, dataset: str, batch: list[Queued], answer: Answer) -> None:
        """422: the valid events were kept; the refused ones are counted and reported, never sent again."""
        accepted, duplicates = int(answer.body.get("accepted", 0)), int(answer.body.get("duplicates", 0))
        refused = max(0, len(batch) - accepted - duplicates)
        self._stats.add(sent=accepted, duplicates=duplicates, refused=refused)
        details = answer.body.get("error", {}).get("details") or []
        named = []
        for detail in details if isinstance(details, list) else []:
            if not isinstance(detail, dict):
                continue
            index = detail.get("index")
            event_id = detail.get("event_id") or (batch[index].event.event_id
                                                  if isinstance(index, int) and 0 <= index < len(batch) else None)
            problems = "; ".join(f"{e.get('field') or '(event)'}: {e.get('message')}"
                                 for e in detail.get("errors", []) if isinstance(e, dict))
            self._stats.error(dataset, answer.status, answer.code, problems, event_id)
            named.append(f"{event_id} ({problems})")
        log.error("agentwatch client: %d of %d %s refused by %s and not retried (the other %d were kept): %s",
                  refused, len(batch), dataset, self._settings.url, accepted + duplicates,
                  ", ".join(named[:5]) + (" ..." if len(named) > 5 else ""))

    def _drop(self, batch: list[Queued], code: str, message: str, status: int | None = None) -> None:
        dataset = batch[0].event.dataset
        self._stats.add(dropped=len(batch))
        for queued in batch[:5]:
            self._stats.error(dataset, status, code, message, queued.event.event_id)
        log.error("agentwatch client: %d %s dropped, not sent again (%s%s): %s; first ids: %s", len(batch), dataset,
                  code, f", HTTP {status}" if status else "", message,
                  ", ".join(q.event.event_id for q in batch[:3]))
