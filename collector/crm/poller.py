"""One poll of one CRM object: fetch its schema, compare it with the last stored snapshot, store it only when the
fields differ (or as the heartbeat, when the last stored one is older than ``crm.heartbeat_hours``), and record
the poll in the pollers' state with the time of the next one.

The payload becomes a snapshot through the same mapping as ``agentwatch ingest schema --format salesforce|hubspot``
(``agentwatch.collector.formats``), and is stored through the same ingest, so a polled snapshot is exactly what an
ingested one would be.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx

from agentwatch.collector.crm.config import CrmConfig
from agentwatch.collector.crm.http import Clock
from agentwatch.collector.crm.hubspot import HubspotClient
from agentwatch.collector.crm.salesforce import ApiUsage, SalesforceClient
from agentwatch.collector.crm.state import PollRecord, PollState, poller_name
from agentwatch.collector.formats.hubspot import snapshot_from_hubspot_properties
from agentwatch.collector.formats.salesforce import snapshot_from_salesforce_describe
from agentwatch.collector.ingest.snapshots import ingest_snapshot_items
from agentwatch.core.errors import CrmError, FormatError
from agentwatch.core.home import Home
from agentwatch.schemas import SchemaSnapshot
from agentwatch.store.reader import open_reader

log = logging.getLogger(__name__)
SLOW_DOWN_FACTOR = 4  # how much less often a poller polls while the org's API usage is high


class SchemaFetcher(Protocol):
    """A CRM's schema API: one object's payload as the API returns it."""

    source: str
    usage: ApiUsage | None

    def fetch(self, object_name: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PollOutcome:
    """What one poll found and did."""

    source: str
    object: str
    at: datetime
    result: str  # first | changed | heartbeat | unchanged | failed
    field_count: int | None = None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.result != "failed"

    @property
    def stored(self) -> bool:
        return self.result in ("first", "changed", "heartbeat")

    def describe(self) -> str:
        """One line for the CLI and the log."""
        name = poller_name(self.source, self.object)
        return {
            "first": f"{name}: first snapshot stored ({self.field_count} fields)",
            "changed": f"{name}: fields changed, snapshot stored ({self.field_count} fields)",
            "heartbeat": f"{name}: unchanged, heartbeat snapshot stored ({self.field_count} fields)",
            "unchanged": f"{name}: unchanged ({self.field_count} fields), nothing stored",
        }.get(self.result, f"{name}: poll failed: {self.error}")


def fetcher_for(source: str, config: CrmConfig, http: httpx.Client, clock: Clock,
                environ: Mapping[str, str] | None = None) -> SchemaFetcher:
    """The client of one configured CRM (salesforce or hubspot); a ConfigError names a missing environment
    variable."""
    if source == "salesforce":
        return SalesforceClient(config, http, clock, environ)
    return HubspotClient(config, http, clock, environ)


def http_client(config: CrmConfig) -> httpx.Client:
    """The pollers' HTTP client: the configured timeout, no redirects followed (a describe never redirects; a
    redirect could carry the token elsewhere), no proxy or netrc from the environment."""
    return httpx.Client(timeout=config.timeout_seconds, follow_redirects=False, trust_env=False,
                        headers={"User-Agent": "agentwatch-schema-poller"})


def poll_object(home: Home, fetcher: SchemaFetcher, object_name: str, now: datetime,
                heartbeat: timedelta) -> PollOutcome:
    """Fetch one object's schema and store it when it changed or the heartbeat is due; never raises for the CRM's
    failures (they are the outcome)."""
    source = fetcher.source
    try:
        snapshot = _snapshot(source, fetcher.fetch(object_name), object_name, now)
    except CrmError as exc:
        return PollOutcome(source, object_name, now, "failed", error=str(exc), retry_after_s=exc.retry_after_s)
    except FormatError as exc:
        return PollOutcome(source, object_name, now, "failed", error=f"{source} {object_name}: {exc}")
    fields = [field.model_dump() for field in snapshot.fields]
    last = _last_stored(home, snapshot.source, snapshot.object)
    if last is None:
        result = "first"
    elif _canonical(last[1]) != _canonical(fields):
        result = "changed"
    elif now - last[0] >= heartbeat:
        result = "heartbeat"
    else:
        return PollOutcome(source, object_name, now, "unchanged", len(fields))
    report = ingest_snapshot_items(home, [snapshot.model_dump(mode="json")], source=f"schema poll {source}",
                                   fmt="native")
    if report.rejected:
        problem = "; ".join(r.describe() for r in report.sample)[:500]
        return PollOutcome(source, object_name, now, "failed", error=f"{source} {object_name}: not stored: {problem}")
    return PollOutcome(source, object_name, now, result, len(fields))


def poll_and_record(home: Home, fetcher: SchemaFetcher, object_name: str, config: CrmConfig,
                    clock: Clock) -> tuple[PollOutcome, datetime]:
    """One poll, logged and recorded in the pollers' state; returns it with the time of the next poll (later when
    the API asked for a pause, or its usage is high)."""
    outcome = poll_object(home, fetcher, object_name, clock.now(), timedelta(hours=config.heartbeat_hours))
    every = timedelta(minutes=config.poll_minutes)
    usage = fetcher.usage
    if usage is not None and usage.share >= config.slow_down_at_api_usage:
        every *= SLOW_DOWN_FACTOR
        log.warning("%s API usage %s is above crm.slow_down_at_api_usage (%g): polling every %g min",
                    fetcher.source, usage, config.slow_down_at_api_usage, every.total_seconds() / 60)
    if outcome.retry_after_s is not None:
        every = max(every, timedelta(seconds=outcome.retry_after_s))
    next_run = outcome.at + every
    if outcome.ok:
        log.info("%s", outcome.describe())
    else:
        log.warning("%s", outcome.describe())
    PollState(home).record(PollRecord(outcome.source, outcome.object, outcome.at, outcome.ok, outcome.stored,
                                      outcome.error, next_run, config.failing_grace_minutes,
                                      str(usage) if usage else None))
    return outcome, next_run


def _snapshot(source: str, payload: dict[str, Any], object_name: str, now: datetime) -> SchemaSnapshot:
    if source == "salesforce":
        return snapshot_from_salesforce_describe(payload, taken_at=now)
    return snapshot_from_hubspot_properties(payload, object_name=object_name, taken_at=now)


def _last_stored(home: Home, source: str, object_name: str) -> tuple[datetime, list[dict[str, Any]]] | None:
    """The newest stored snapshot of the object: its time and fields."""
    con = open_reader(home, memory_limit="256MB")
    try:
        row = con.execute("SELECT taken_at, fields FROM schema_snapshots WHERE source = ? AND object = ? "
                          "ORDER BY taken_at DESC LIMIT 1", [source, object_name]).fetchone()
    finally:
        con.close()
    return (row[0], row[1]) if row else None


def _canonical(fields: list[dict[str, Any]]) -> list[str]:
    """Fields compared as a set, each with every attribute (as the Schema page's timeline compares them)."""
    return sorted(json.dumps(field, sort_keys=True, default=str) for field in fields)
