"""What ``/healthz`` and ``/v1/health`` report: a status and its reasons, each reason found by one rule.

A reason is (severity, code, short fixed text): ``failing`` reasons make the status failing (503), ``degraded``
ones degraded (200). Adding a reason is adding one line to RULES. The texts are fixed phrases: the
unauthenticated ``/healthz`` shows no paths and no error text (an error can quote incident data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentwatch.app.api.startup import WalStartup
from agentwatch.app.api.storage import DiskFull
from agentwatch.app.status import checks_degraded
from agentwatch.collector.crm.state import pollers_failing
from agentwatch.core.home import Home

Reason = tuple[str, str, str]  # (severity: failing | degraded, code, short fixed text)


@dataclass(frozen=True)
class Facts:
    """What the rules look at."""

    home: Home
    startup: WalStartup
    disk_full: DiskFull
    delivery: dict[str, Any]
    checks: dict[str, Any]
    quarantined: int  # store parts moved aside as damaged
    check_every_s: float | None
    now: datetime
    maintenance_failing: bool = False  # the background compaction and retention passes keep failing


RULES: list[Callable[[Facts], Reason | None]] = [
    lambda f: ("failing", "wal_unavailable", "the write-ahead log could not be opened") if f.startup.error else None,
    lambda f: ("failing", "wal_unwritable", "a write-ahead log fsync failed; restart the server")
    if f.startup.wal.failure else None,
    lambda f: ("failing", "disk_full", "no space left to log events") if f.disk_full.active else None,
    lambda f: ("failing", "flush_failing", "acknowledged events cannot be flushed into the store")
    if f.startup.wal.last_flush_error else None,
    lambda f: ("degraded", "delivery_failed", "some notifications could not be delivered")
    if f.delivery["alerts_failed"] else None,
    lambda f: ("degraded", "parts_quarantined", "damaged store parts were quarantined; their events are out of "
               "every query (agentwatch status lists them)") if f.quarantined else None,
    lambda f: ("degraded", "checks_behind", "the last check run failed or is overdue")
    if checks_degraded(f.checks, f.check_every_s, f.now) else None,
    lambda f: ("degraded", "compaction_failing", "store compaction keeps failing: small files will pile up "
               "(the server log says why)") if f.maintenance_failing else None,
    lambda f: ("degraded", "crm_poller_failing", "a CRM schema poller has failed past its grace: schema changes "
               "go unseen (agentwatch status says why)") if pollers_failing(f.home, f.now) else None,
]


def assess(facts: Facts) -> tuple[str, list[Reason], int]:
    """The status (starting, ok, degraded or failing), its reasons and the HTTP status to answer with."""
    reasons = [reason for rule in RULES if (reason := rule(facts)) is not None]
    severities = {severity for severity, _, _ in reasons}
    if "failing" in severities:
        return "failing", reasons, 503
    if facts.startup.starting:
        return "starting", reasons, 503
    return ("degraded" if severities else "ok"), reasons, 200


def health_bodies(facts: Facts) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The public body (status, reasons, counts), the full one (with paths and error texts), the HTTP status."""
    status, reasons, code = assess(facts)
    wal = facts.startup.wal
    public = {
        "status": status,
        "reasons": [{"severity": s, "code": c, "text": t} for s, c, t in reasons],
        "wal_pending": wal.pending(),
        "alerts_pending": facts.delivery["alerts_pending"],
        "alerts_failed": facts.delivery["alerts_failed"],
        "checks": facts.checks,
        "quarantined_parts": facts.quarantined,
    }
    full = {
        **public,
        "home": str(facts.home.root),
        "startup_error": facts.startup.error,
        "wal_failure": wal.failure,
        "last_flush_error": wal.last_flush_error,
        "last_alert_error": facts.delivery["last_alert_error"],
    }
    return public, full, code


def now() -> datetime:
    return datetime.now(UTC)
