"""The Schema page's section on the CRM schema pollers (the crm: section of agentwatch.yaml, docs/crm.md): each
poller's last success, last error and next run, so a watcher that went blind does not pass for a quiet CRM."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import streamlit as st

from agentwatch.collector.crm.state import poller_status
from agentwatch.dashboards.context import home, to_viewer
from agentwatch.dashboards.escape import md

TIMES = ("last_success_at", "last_error_at", "failing_since", "next_run_at")


def show_pollers() -> None:
    """A table of the pollers, with an alarm line when one has failed past its grace; nothing when none ran."""
    pollers = poller_status(home(), datetime.now(UTC))
    if not pollers:
        return
    frame = pl.DataFrame(pollers, infer_schema_length=None).with_columns(
        [pl.col(c).cast(pl.String).str.to_datetime(time_zone="UTC") for c in TIMES])
    blind = frame.filter(pl.col("failing_past_grace"))["poller"].to_list()
    if blind:
        st.error(f"Failing past their grace, schema changes unseen: {md(', '.join(blind))} "
                 "(a schema.watcher_blind incident is open or opens at the next check run).")
    table = to_viewer(frame, *TIMES).select(
        "poller", pl.col("last_success_at").alias("last success"), pl.col("last_error").alias("last error"),
        pl.col("last_error_at").alias("error at"), pl.col("failing_since").alias("failing since"),
        pl.col("next_run_at").alias("next run"), pl.col("api_usage").alias("API usage"))
    st.markdown("**CRM schema pollers**")
    st.dataframe(table, hide_index=True, key="schema_pollers")
