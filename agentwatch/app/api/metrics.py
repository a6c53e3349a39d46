"""``GET /metrics``: the server's Prometheus metrics (docs/operations.md lists every one, with alert rules).

Counters are the process's (``agentwatch.app.metrics``, incremented where things happen); gauges are read when
Prometheus scrapes, by :class:`ServerState`, from what is cheap to read: the write-ahead log in memory, the store's
file listing (no Parquet is opened), the small SQLite files of incidents, notifications and the CRM pollers'
state, and the latest action's time (the newest day's partition only, as ``/healthz`` reads it).
``serve --metrics-port`` serves the same registry, without a key, on a second port bound to loopback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from agentwatch.alerts.health import delivery_health
from agentwatch.app.api.auth import require_read
from agentwatch.app.api.errors import ERROR_RESPONSES
from agentwatch.app.metrics import PROCESS_METRICS
from agentwatch.app.status import checks_keeping_up
from agentwatch.app.version import installed_version
from agentwatch.checks.engine import incident_store
from agentwatch.collector.crm.state import PollState
from agentwatch.collector.wal import WriteAheadLog
from agentwatch.core.api_keys import ApiKey
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home
from agentwatch.core.severity import Severity
from agentwatch.store.datasets import DATASETS
from agentwatch.store.partitions import visible_files
from agentwatch.store.quarantine import quarantined_parts
from agentwatch.store.reader import SCHEMA_PART

log = logging.getLogger(__name__)
router = APIRouter()
UNRESOLVED = ("open", "acknowledged")
_registry_lock = threading.Lock()


class ServerState(Collector):
    """The gauges of one served home, read at each scrape. A source that cannot be read now (a locked SQLite file)
    leaves its gauges out of that scrape and logs why, instead of failing the whole scrape."""

    def __init__(self, home: Home, wal: WriteAheadLog) -> None:
        self.home = home
        self.wal = wal
        self.incidents = incident_store(home)

    def collect(self) -> Iterator[Metric]:
        yield gauge("agentwatch_build_info", "Always 1; the version label is agentwatch's.",
                    {"version": installed_version()}, 1)
        for read in (self._wal, self._store, self._checks, self._incidents, self._notifications, self._crm_pollers):
            try:
                yield from read()
            except Exception as exc:  # one unreadable source must not hide the others
                log.warning("metrics: %s not read this scrape: %s: %s", read.__name__.strip("_"),
                            type(exc).__name__, exc)

    def _wal(self) -> Iterator[Metric]:
        yield gauge("agentwatch_wal_pending_events", "Events acknowledged by the API and not yet flushed into the "
                    "store (the write-ahead log's backlog).", {}, self.wal.pending())
        yield gauge("agentwatch_wal_flush_lag_seconds", "Age of the oldest acknowledged event not yet in the store "
                    "(0 when none waits); stays under the flush interval while flushes keep up.", {},
                    self.wal.flush_lag_s())
        yield gauge("agentwatch_wal_flush_failing", "1 while flushes of the write-ahead log into the store fail "
                    "(the server log says why), else 0.", {}, int(self.wal.last_flush_error is not None))

    def _store(self) -> Iterator[Metric]:
        parts = GaugeMetricFamily("agentwatch_store_parts", "Visible Parquet files per dataset (compaction merges "
                                  "small parts; a count that keeps growing means it falls behind).",
                                  labels=["dataset"])
        for name in DATASETS:
            parts.add_metric([name], sum(1 for p in visible_files(self.home, name) if p.name != SCHEMA_PART))
        yield parts
        yield gauge("agentwatch_store_quarantined_parts", "Damaged store parts moved to the quarantine folder (their "
                    "events are out of every query).", {}, len(quarantined_parts(self.home)))

    def _checks(self) -> Iterator[Metric]:
        checks = checks_keeping_up(self.home)
        run = checks["last_run"]
        families = [
            ("agentwatch_check_run_duration_seconds", "How long the latest live run of the checks took.",
             lambda: run["seconds"]),
            ("agentwatch_check_run_last_finished_timestamp_seconds", "When the latest live run of the checks finished "
             "(Unix time); `time() - this` is how stale they are.",
             lambda: datetime.fromisoformat(run["finished_at"]).timestamp()),
            ("agentwatch_check_run_failed_checks", "Checks that failed in the latest live run.",
             lambda: len(run["failed_checks"])),
            ("agentwatch_check_lag_seconds", "How far the newest action is past the time the latest run evaluated: "
             "events the checks have not looked at yet.", lambda: checks["lag_s"] or 0.0),
        ]
        for name, documentation, read in families:
            family = GaugeMetricFamily(name, documentation)
            if run is not None:  # never run live: described, with no value rather than a made-up one
                family.add_metric([], read())
            yield family

    def _incidents(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("agentwatch_incidents_unresolved", "Open and acknowledged incidents, by severity "
                                   "and status.", labels=["severity", "status"])
        counts = {(severity, status): count for severity, status, count in self.incidents.unresolved_counts()}
        for level in Severity:
            for status in UNRESOLVED:
                family.add_metric([level.value, status], counts.pop((level.value, status), 0))
        for (severity, status), count in counts.items():  # a value outside the known sets still shows
            family.add_metric([severity, status], count)
        yield family

    def _notifications(self) -> Iterator[Metric]:
        delivery = delivery_health(self.home)
        yield gauge("agentwatch_notifications_pending", "Notifications queued and not yet delivered (retries "
                    "included).", {}, delivery["alerts_pending"])
        yield gauge("agentwatch_notifications_failed", "Notifications given up on after their last retry.", {},
                    delivery["alerts_failed"])

    def _crm_pollers(self) -> Iterator[Metric]:
        """Each CRM poller as its state file says (written by `serve` and by `agentwatch schema poll`)."""
        labels = ["source", "object"]
        success = GaugeMetricFamily("agentwatch_crm_poller_last_success_timestamp_seconds", "When the poller of a "
                                    "CRM object last read its fields (Unix time).", labels=labels)
        failing = GaugeMetricFamily("agentwatch_crm_poller_failing_seconds", "How long the poller of a CRM object "
                                    "has been failing (0 while its last poll succeeded).", labels=labels)
        next_run = GaugeMetricFamily("agentwatch_crm_poller_next_run_timestamp_seconds", "When the poller of a CRM "
                                     "object polls next (Unix time).", labels=labels)
        now = datetime.now(UTC)
        for poller in PollState(self.home).pollers():
            key = [poller.source, poller.object]
            if poller.last_success_at:
                success.add_metric(key, datetime.fromisoformat(poller.last_success_at).timestamp())
            since = datetime.fromisoformat(poller.failing_since) if poller.failing_since else now
            failing.add_metric(key, max(0.0, (now - since).total_seconds()))
            if poller.next_run_at:
                next_run.add_metric(key, datetime.fromisoformat(poller.next_run_at).timestamp())
        yield from (success, failing, next_run)


def gauge(name: str, documentation: str, labels: dict[str, str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def registry_of(app: FastAPI) -> CollectorRegistry:
    """The app's registry (made at first use): the process's counters and the app's gauges."""
    registry = getattr(app.state, "metrics_registry", None)
    if registry is None:
        with _registry_lock:
            registry = getattr(app.state, "metrics_registry", None)
            if registry is None:
                registry = CollectorRegistry(auto_describe=False)
                for metric in PROCESS_METRICS:
                    registry.register(metric)
                registry.register(ServerState(app.state.home, app.state.wal))
                app.state.metrics_registry = registry
    return registry


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry's text in the format the scraper asked for (Prometheus text, or OpenMetrics), and its type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


@router.get(
    "/metrics",
    tags=["status"],
    summary="Prometheus metrics",
    description="The server's metrics in the Prometheus text format (OpenMetrics when the scraper asks for it): "
                "events accepted, duplicate and rejected; refused requests; the write-ahead log's backlog and flush "
                "lag; store parts; the checks' last run and lag; unresolved incidents; notifications; guard "
                "decisions; CRM polls. docs/operations.md lists each. Needs scope `read`; `agentwatch serve "
                "--metrics-port` also serves them without a key on a loopback port.",
    responses={200: {"description": "The metrics.", "content": {"text/plain": {"example": (
        '# HELP agentwatch_events_total Events received by the API ...\n# TYPE agentwatch_events_total counter\n'
        'agentwatch_events_total{endpoint="/v1/actions",kind="actions",outcome="accepted"} 498.0\n')}}},
        **{k: v for k, v in ERROR_RESPONSES.items() if k != 413}},
    response_class=Response,
)
async def get_metrics(request: Request, key: Annotated[ApiKey, Depends(require_read)]) -> Response:
    body, content_type = await run_in_threadpool(exposition, registry_of(request.app), request.headers.get("accept"))
    return Response(body, media_type=content_type)


def serve_metrics_port(registry: CollectorRegistry, port: int) -> Callable[[], None]:
    """Serve `registry` without a key on 127.0.0.1:`port` (only this machine can read it) in a daemon thread;
    returns the function that stops it. A port that cannot be bound is a ConfigError saying so."""
    try:
        server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on 127.0.0.1:{port}: {exc.strerror}; is another server using that "
                          "port? pick another with --metrics-port") from None
    log.info("metrics without a key on http://127.0.0.1:%d/metrics (loopback only)", port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
