"""Send what the outbox holds: one attempt per due notification, then deliver, retry later or give up."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from agentwatch.alerts.config import AlertsConfig, DeliveryConfig
from agentwatch.alerts.destinations import send
from agentwatch.alerts.outbox import Outbox, OutboxRow

log = logging.getLogger(__name__)
# httpx logs every request with its full URL at INFO, and a Slack webhook URL is a secret: keep the HTTP
# client's own loggers to warnings, whatever level the host application sets for the root logger.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

LEASE_S = 120.0  # longer than one attempt can take (3 x the 30 s timeout cap): a sender that died lets go after this
MISSING_DESTINATION_RETRY = timedelta(minutes=1)


@dataclass
class DeliveryReport:
    """What one delivery pass did, by notification id."""

    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def backoff(attempts: int, delivery: DeliveryConfig, retry_after_s: float | None) -> timedelta:
    """The wait before the next attempt after `attempts` failed ones: the destination's Retry-After when it
    gave one (capped), else ``first_retry`` doubling up to ``max_retry``."""
    if retry_after_s is not None and math.isfinite(retry_after_s):
        return timedelta(seconds=min(max(retry_after_s, 0.0), delivery.max_retry_after.total_seconds()))
    return min(delivery.first_retry * (2 ** min(max(attempts - 1, 0), 30)), delivery.max_retry)


def deliver_due(outbox: Outbox, alerts: AlertsConfig, now: datetime | None = None,
                client: httpx.Client | None = None, limit: int = 50) -> DeliveryReport:
    """One attempt at each notification due at `now` (at most `limit`), leasing one row at a time so that a
    slow destination cannot outlast the lease of rows still waiting behind it."""
    report = DeliveryReport()
    own_client = client is None
    client = client or httpx.Client(follow_redirects=False)
    try:
        for _ in range(limit):
            rows = outbox.claim_due(now or datetime.now(UTC), LEASE_S, 1)
            if not rows:
                break
            try:
                _deliver(rows[0], outbox, alerts, client, report)
            except Exception as exc:  # never let one row stop the queue: record it as failed, visibly
                error = f"could not send: {type(exc).__name__}: {exc}"
                outbox.failed(rows[0].id, error, None)
                report.failed.append(rows[0].id)
                log.exception("notification %s to %s failed", rows[0].id, rows[0].destination)
    finally:
        if own_client:
            client.close()
    return report


def _deliver(row: OutboxRow, outbox: Outbox, alerts: AlertsConfig, client: httpx.Client,
             report: DeliveryReport) -> None:
    destination = alerts.destinations.get(row.destination)
    if destination is None:
        # Maybe this process read another config than the one that queued it: leave it to a process that can.
        error = (f"destination {row.destination!r} is not in the config this process read; it stays queued "
                 f"for a process whose config has it (`agentwatch alerts deliver --config PATH`)")
        outbox.postpone(row.id, error, datetime.now(UTC) + MISSING_DESTINATION_RETRY)
        report.retrying.append(row.id)
        return
    outcome = send(client, row.destination, destination, row.notification())
    done = datetime.now(UTC)
    attempts = row.attempts + 1
    if outcome.delivered:
        outbox.delivered(row.id, outcome.status, done)
        report.delivered.append(row.id)
        return
    error = outcome.error or f"HTTP {outcome.status}"
    if outcome.retryable and attempts < alerts.delivery.max_attempts:
        wait = backoff(attempts, alerts.delivery, outcome.retry_after_s)
        outbox.retry_later(row.id, error, outcome.status, done + wait)
        report.retrying.append(row.id)
        log.warning("notification %s to %s: attempt %d failed (%s); next in %.0f s", row.id, row.destination,
                    attempts, error, wait.total_seconds())
        return
    outbox.failed(row.id, error, outcome.status)
    report.failed.append(row.id)
    log.error("notification %s to %s failed after %d attempt(s): %s; `agentwatch alerts retry %s` sends it again",
              row.id, row.destination, attempts, error, row.id)
