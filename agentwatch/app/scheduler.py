"""Background work inside ``agentwatch serve``: the checks on a schedule (default every minute), and store
maintenance (compaction, retention, deletions past the grace; ``store.compaction.every_seconds``)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from agentwatch.app.config import Config, config_for
from agentwatch.checks.base import Check
from agentwatch.checks.engine import enabled_checks, evaluate, incident_store, prepare_ahead
from agentwatch.checks.incidents import IncidentStore
from agentwatch.core.errors import AgentwatchError
from agentwatch.core.home import Home
from agentwatch.store.compaction import run_pass
from agentwatch.store.kept_rows import KeptRows
from agentwatch.store.rollups import HOUR, SETTLE, floor_to
from agentwatch.store.settings import StoreSettings

log = logging.getLogger(__name__)
PREPARE_AHEAD_LOCK_S = 1.0  # preparing ahead waits this long for another run (a backtest, a cron check), then skips


class CheckScheduler:
    """A daemon thread evaluating every check at the current time, every `every_s` seconds."""

    def __init__(self, home: Home, every_s: float, config_path: Path | None = None) -> None:
        self.home = home
        self.every_s = every_s
        self.config_path = config_path
        self.runs = 0
        self.skipped = 0  # runs skipped because an earlier one was still going
        self._checks: tuple[str, list[Check]] | None = None  # (the config they were built from, the checks)
        self._kept: KeptRows | None = None  # the aggregates' files read by earlier runs
        self._settled: datetime | None = None  # the last hour the aggregates could store, at the last run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="agentwatch-checks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 120) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def run_once(self) -> None:
        """One evaluation at the current time; a failure is logged and the next run tries again."""
        try:
            config = config_for(self.home, self.config_path)  # re-read: an edited config applies next run
            store, at = incident_store(self.home), datetime.now(UTC)
            checks, kept = self._checks_for(config), self._kept_for(config.store.aggregates.kept_in_memory_mb)
            report = evaluate(self.home, config, [at], store, checks=checks, kept=kept)
            store.record_run(at, report.seconds, sorted(report.failures))
        except AgentwatchError as exc:
            log.error("checks did not run: %s", exc)
            return
        except Exception:  # the store or the incident file failed: log it, the next run tries again
            log.exception("checks did not run")
            return
        self.runs += 1
        for _, incident in report.opened:
            log.warning("incident %s opened: %s [%s] %s", incident.id, incident.check, incident.severity,
                        incident.summary)
        for name, problem in report.failures.items():
            log.error("check %s failed: %s", name, problem)
        settled = floor_to(at - SETTLE, HOUR)
        if kept is not None and settled != self._settled:  # an hour settled: store it now for the resting checks
            self._settled = settled
            self._prepare_ahead(config, at, store, checks, kept, report.resting)

    def _prepare_ahead(self, config: Config, at: datetime, store: IncidentStore, checks: list[Check], kept: KeptRows,
                       resting: list[str]) -> None:
        """Optional work: skipped when another run holds the store (a backtest, a cron `check`), logged if it fails;
        the checks then store the hour when they fall due, as they would without it."""
        try:
            failures = prepare_ahead(self.home, config, at, store, checks, kept, resting,
                                     lock_timeout_s=PREPARE_AHEAD_LOCK_S)
        except AgentwatchError as exc:
            log.info("the resting checks did not prepare ahead: %s", exc)
            return
        except Exception:
            log.exception("the resting checks did not prepare ahead")
            return
        for name, problem in failures.items():
            log.warning("check %s could not prepare ahead (it will when due): %s", name, problem)

    def _checks_for(self, config: Config) -> list[Check]:
        """The same check objects run after run while the config stays the same (their throttles then hold
        between runs); new ones when it changed."""
        fingerprint = config.model_dump_json()
        if self._checks is None or self._checks[0] != fingerprint:
            self._checks = (fingerprint, enabled_checks(config))
        return self._checks[1]

    def _kept_for(self, megabytes: int) -> KeptRows | None:
        """The aggregates' files held between runs, within the configured bound (a new bound starts afresh)."""
        limit = megabytes * 1024 * 1024
        if limit == 0:
            self._kept = None
        elif self._kept is None or self._kept.max_bytes != limit:
            self._kept = KeptRows(limit)
        return self._kept

    def _loop(self) -> None:
        """Run on a fixed rate. A run longer than the interval never piles runs up: the ones that fell due
        meanwhile are skipped, and that is logged once until the runs keep up again."""
        due = time.monotonic()
        behind = False
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_once()
            took = time.monotonic() - started
            due += self.every_s
            if time.monotonic() > due:
                skipped = int((time.monotonic() - due) // self.every_s) + 1
                due += skipped * self.every_s
                self.skipped += skipped
                if not behind:
                    log.warning("checks took %.1f s, longer than --check-every %g s: skipping the runs that fell due "
                                "meanwhile (logged once until they keep up)", took, self.every_s)
                behind = True
            else:
                behind = False
            self._stop.wait(max(0.0, due - time.monotonic()))


class StoreMaintenance:
    """A daemon thread running a compaction pass (retention, merges, deletions past the grace) every
    ``store.compaction.every_seconds`` inside ``serve``; a failure is logged and the next pass tries again."""

    FAILING_AFTER = 3  # consecutive failed passes that make `failing` true

    def __init__(self, home: Home, config_path: Path | None = None) -> None:
        self.home = home
        self.config_path = config_path
        self.passes = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="agentwatch-compaction", daemon=True)

    @property
    def failing(self) -> bool:
        return self.consecutive_failures >= self.FAILING_AFTER

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 120) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def run_once(self) -> float:
        """One pass; returns the seconds until the next one (the config's interval, re-read every pass)."""
        every = StoreSettings().compaction.every_seconds
        try:
            settings = config_for(self.home, self.config_path).store
            every = settings.compaction.every_seconds
            report = run_pass(self.home, settings, lock_timeout_s=every)
        except Exception as exc:  # the store, the config or the disk failed: log it, the next pass tries again
            self._failed(f"{type(exc).__name__}: {exc}")
            return every
        self.passes += 1
        for candidate, merged in report.merged:
            log.info("compacted %s %s: %d parts -> 1 file, %d rows, %d -> %d bytes in %.1f s", candidate.dataset,
                     candidate.partition, merged.parts_in, merged.rows_out, merged.bytes_in, merged.bytes_out,
                     merged.seconds)
        for expiry in report.expired:
            log.info("retention dropped %s %s (%d events before %s)", expiry.dataset, expiry.partition,
                     expiry.events, expiry.cutoff)
        if report.failures:
            self._failed("; ".join(report.failures))
        else:
            self.consecutive_failures, self.last_error = 0, None
        return every

    def _failed(self, error: str) -> None:
        self.consecutive_failures += 1
        self.last_error = error
        log.error("compaction pass failed (%d in a row): %s", self.consecutive_failures, error)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.run_once())
