"""Notifications page: what the outbox holds (pending, delivered, failed, with retry), and the silences (with
expire). Destination URLs and keys are never shown: rows name destinations, errors are scrubbed when recorded."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import streamlit as st

from agentwatch.alerts.outbox import Outbox
from agentwatch.alerts.silences import Silences
from agentwatch.dashboards import context
from agentwatch.dashboards.escape import md

st.title("Notifications")
outbox = Outbox(context.alerts())
silences = Silences(context.alerts())

counts = outbox.counts()
pending, delivered, failed = st.columns(3)
pending.metric("Pending", f"{counts['pending']:,}", help="Queued, or waiting for a retry.")
delivered.metric("Delivered", f"{counts['delivered']:,}")
failed.metric("Failed", f"{counts['failed']:,}", help="Given up after the last retry: fix the destination, then "
                                                       "retry them here or with `agentwatch alerts retry`.")

rows = outbox.rows(limit=200)
if not rows:
    context.empty_state("No notifications yet: add destinations and routes under `alerts:` in agentwatch.yaml "
                        "(docs/alerts.md), then `agentwatch alerts test DESTINATION`.")
else:
    table = pl.DataFrame([{
        "id": r.id, "destination": r.destination, "event": r.notification().event,
        "group": r.notification().group_key, "state": r.state, "attempts": r.attempts,
        "next attempt": context.local(r.next_attempt_at) if r.state == "pending" else "",
        "last error": r.last_error or "", "created": context.local(r.created_at),
    } for r in rows])
    st.dataframe(table, hide_index=True, key="outbox_table", width="stretch")
    if counts["failed"] and st.button(f"Retry the {counts['failed']} failed", key="retry_failed_button",
                                      icon=":material/replay:"):
        queued = outbox.retry(None, datetime.now(UTC))
        st.success(f"{queued} notification(s) queued again; the server sends them within a second.")

st.header("Silences")
current = silences.list(include_expired=st.toggle("Show ended silences", key="silences_all"))
if not current:
    st.caption("No silence in force. Silence an incident from its page, or `agentwatch silence add`.")
now = datetime.now(UTC)
for silence in current:
    left, right = st.columns([5, 1])
    left.markdown(f"**{silence.id}** {md(silence.describe())} · {silence.state(now)} · until "
                  f"{context.local(silence.ended_at)} · by {md(silence.created_by)}: {md(silence.comment)}")
    if silence.state(now) != "expired" and right.button("Expire", key=f"expire_{silence.id}"):
        silences.expire(silence.id)
        st.rerun()
