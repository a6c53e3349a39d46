"""The CRM schema pollers on their schedule: a daemon thread of ``agentwatch serve``, or the foreground loop of
``agentwatch schema poll``.

Each configured object is polled when its next run is due (``crm.poll_minutes`` apart, later after a Retry-After
or while Salesforce's API usage is high; a restarted server takes up the next runs its state file holds). The
config is read again at least every ``IDLE_S``, so an edited ``crm:`` section applies without a restart. A poller
that cannot start (an environment variable missing) records that as its error at every run, so it shows in
``status`` and ends in a ``schema.watcher_blind`` incident like any other failure.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from agentwatch.app.config import config_for
from agentwatch.app.metrics import record_poll
from agentwatch.collector.crm.config import CrmConfig
from agentwatch.collector.crm.http import Clock, SystemClock
from agentwatch.collector.crm.poller import PollOutcome, SchemaFetcher, fetcher_for, http_client, poll_and_record
from agentwatch.collector.crm.state import PollRecord, PollState, poller_name
from agentwatch.core.errors import AgentwatchError, ConfigError
from agentwatch.core.home import Home

log = logging.getLogger(__name__)
IDLE_S = 30.0  # the longest the loop sleeps: how soon an edited crm: section applies


class PollingStopped(Exception):
    """The server is stopping: a poll waiting between two tries gives up at once."""


class _StoppableClock(SystemClock):
    """The wall clock, whose waits end when the loop is told to stop."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise PollingStopped


class CrmPolling:
    """Polls every object of the ``crm:`` section when it is due."""

    def __init__(self, home: Home, config_path: Path | None = None, clock: Clock | None = None,
                 environ: Mapping[str, str] | None = None,
                 on_poll: Callable[[PollOutcome], None] | None = None) -> None:
        self.home = home
        self.on_poll = on_poll  # told of each scheduled poll (`schema poll` prints it)
        self.config_path = config_path
        self._stop = threading.Event()
        self.clock: Clock = clock or _StoppableClock(self._stop)
        self.environ = os.environ if environ is None else environ
        self._built: tuple[str, dict[str, SchemaFetcher | ConfigError], httpx.Client] | None = None
        self._next: dict[tuple[str, str], datetime] = {}
        self._thread = threading.Thread(target=self.run_forever, name="agentwatch-crm-polls", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._built is not None:
            self._built[2].close()

    def poll_once(self, only: str | None = None) -> list[PollOutcome]:
        """Poll every configured object now (or the one named `only`); a ConfigError when the crm: section names
        nothing to poll, not `only`, or a variable that is not set."""
        config = self._config()
        pollers = [(source, name) for source, name in config.pollers() if only is None or name == only]
        if not pollers:
            known = ", ".join(poller_name(s, n) for s, n in config.pollers()) or "none"
            raise ConfigError(f"--object {only}: not an object of the crm: section (configured: {known})" if only
                              else "nothing to poll: agentwatch.yaml has no crm: section with salesforce or hubspot "
                                   "objects (docs/crm.md)")
        ready: dict[str, SchemaFetcher] = {}
        for source, fetcher in self._fetchers(config).items():
            if isinstance(fetcher, ConfigError):
                if any(source == wanted for wanted, _ in pollers):
                    raise fetcher
                continue
            ready[source] = fetcher
        outcomes = [poll_and_record(self.home, ready[source], name, config, self.clock)[0] for source, name in pollers]
        for outcome in outcomes:
            record_poll(outcome.source, outcome.object, outcome.ok)
        return outcomes

    def poll_due(self, only: str | None = None) -> float:
        """Poll the objects (or the one named `only`) whose next run is due; the seconds until the next one is (at
        most IDLE_S)."""
        try:
            config = self._config()
        except AgentwatchError as exc:
            log.error("CRM schema pollers: the config cannot be read: %s", exc)
            return IDLE_S
        fetchers = self._fetchers(config)  # also forgets the status of pollers the config no longer has
        if not config.configured:
            return IDLE_S
        soonest = self.clock.now() + timedelta(seconds=IDLE_S)
        for source, name in config.pollers():
            if only is not None and name != only:
                continue
            now = self.clock.now()
            due = self._next.get((source, name)) or self._recorded_next_run(source, name) or now
            if due <= now:
                due = self._poll(config, fetchers[source], source, name, now)
                self._next[(source, name)] = due
            soonest = min(soonest, due)
        return max(0.0, (soonest - self.clock.now()).total_seconds())

    def run_forever(self, only: str | None = None) -> None:
        """Poll on schedule (every object, or the one named `only`) until stopped (`stop`, or Ctrl-C in the
        foreground)."""
        while not self._stop.is_set():
            try:
                wait = self.poll_due(only)
            except PollingStopped:
                return
            except Exception:  # the state file or the store failed: logged, the next round tries again
                log.exception("CRM schema polling failed")
                wait = IDLE_S
            self._stop.wait(wait)

    def _poll(self, config: CrmConfig, fetcher: SchemaFetcher | ConfigError, source: str, name: str,
              now: datetime) -> datetime:
        if isinstance(fetcher, ConfigError):  # recorded as the poll's error: a blind watcher must show
            next_run = now + timedelta(minutes=config.poll_minutes)
            PollState(self.home).record(PollRecord(source, name, now, False, False, str(fetcher), next_run,
                                                   config.failing_grace_minutes))
            record_poll(source, name, False)
            return next_run
        outcome, next_run = poll_and_record(self.home, fetcher, name, config, self.clock)
        record_poll(source, name, outcome.ok)
        if self.on_poll is not None:
            self.on_poll(outcome)
        return next_run

    def _recorded_next_run(self, source: str, name: str) -> datetime | None:
        """The next run an earlier process recorded (a restart does not poll sooner than a Retry-After asked)."""
        for poller in PollState(self.home).pollers():
            if (poller.source, poller.object) == (source, name) and poller.next_run_at:
                return datetime.fromisoformat(poller.next_run_at)
        return None

    def _config(self) -> CrmConfig:
        return config_for(self.home, self.config_path).crm

    def _fetchers(self, config: CrmConfig) -> dict[str, SchemaFetcher | ConfigError]:
        """source -> its CRM client (or why it cannot start), kept while the config stays the same (the tokens with
        them)."""
        fingerprint = config.model_dump_json()
        if self._built is None or self._built[0] != fingerprint:
            if self._built is not None:
                self._built[2].close()
            http = http_client(config)
            fetchers: dict[str, SchemaFetcher | ConfigError] = {}
            for source in dict.fromkeys(source for source, _ in config.pollers()):
                try:
                    fetchers[source] = fetcher_for(source, config, http, self.clock, self.environ)
                except ConfigError as exc:
                    log.error("the %s schema pollers cannot start: %s", source, exc)
                    fetchers[source] = exc
            self._built = (fingerprint, fetchers, http)
            self._next.clear()
            PollState(self.home).keep_only(config.pollers())
        return self._built[1]
