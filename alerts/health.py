"""Notification delivery as the collector's health endpoint reports it."""

from __future__ import annotations

from typing import Any

from agentwatch.alerts.db import alerts_db
from agentwatch.core.home import Home


def delivery_health(home: Home) -> dict[str, Any]:
    """Pending and failed notification counts, and the latest delivery error (never a secret: errors are
    scrubbed when recorded)."""
    db = alerts_db(home)
    with db.reading() as con:
        counts = dict(con.execute("SELECT state, count(*) FROM outbox WHERE state IN ('pending', 'failed') "
                                  "GROUP BY state").fetchall())
        # A superseded row was skipped on purpose: an error it met before is no longer news.
        row = con.execute("SELECT last_error FROM outbox WHERE last_error IS NOT NULL "
                          "AND state IN ('pending', 'failed') "
                          "ORDER BY next_attempt_at DESC LIMIT 1").fetchone()
    return {"alerts_pending": counts.get("pending", 0), "alerts_failed": counts.get("failed", 0),
            "last_alert_error": row[0] if row else None}
