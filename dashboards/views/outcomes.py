"""The outcome feedback page: rep corrections (requalified, reassigned, marked spam), meetings booked vs accepted
vs cancelled, opportunities created and won, per agent or per agent version."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from agentwatch.dashboards import business as biz
from agentwatch.dashboards.context import empty_state, has_rows, local

NO_OUTCOMES = ("No outcome events yet: `agentwatch ingest outcomes ...` or POST /v1/outcomes. Rep corrections "
               "(`owner_changed`, `requalified`, `marked_spam`) should name the action they correct in "
               "`corrects_event_id`; meetings, replies, opportunities and closed deals are matched to the last "
               "agent action on the same record.")
GROUPINGS = {"agent": "Agent", "version": "Agent version"}
COUNTED_APART = ("Routing accuracy and Pipeline quality count **leads of a routing cohort**, each judged a fixed "
                 "time after its first routing (a lead reassigned twice is one reassigned lead; an opportunity counts "
                 "for its lead's cohort, and qualified pipeline only from agent-qualified leads), so their numbers "
                 "differ from these by definition.")
CORRECTIONS = {"requalified": "requalified", "reassigned": "reassigned", "marked_spam": "marked spam"}
MEETINGS = {"meetings_booked": "booked", "meetings_accepted": "accepted", "meetings_cancelled": "cancelled"}
DEALS = {"opportunities": "opportunities created", "won": "closed won", "lost": "closed lost"}


def _controls() -> tuple[int, bool]:
    left, right = st.columns(2)
    span = left.selectbox("Time range", list(biz.RANGES), index=list(biz.RANGES).index(biz.DEFAULT_RANGE),
                          key="outcomes_range", help="Outcomes whose time falls in the range, which ends at the "
                          "latest event in the store.")
    by = right.selectbox("Per", list(GROUPINGS), format_func=lambda grouping: GROUPINGS[grouping], key="outcomes_by")
    return biz.RANGES[span], by == "version"


def labelled(frame: pl.DataFrame, by_version: bool) -> pl.DataFrame:
    """A 'who' column: the agent, or agent@version."""
    who = pl.concat_str([pl.col("agent_id"), pl.lit("@"), pl.col("agent_version")]) if by_version \
        else pl.col("agent_id")
    return frame.with_columns(who.alias("who"))


def _bars(frame: pl.DataFrame, columns: dict[str, str], title: str, stacked: bool) -> alt.Chart:
    long = frame.select("who", *columns).unpivot(index="who", variable_name="kind", value_name="events").with_columns(
        pl.col("kind").replace_strict(columns))
    chart = alt.Chart(long.filter(pl.col("events") > 0)).mark_bar()
    color = alt.Color("kind:N", title=None, sort=list(columns.values()))
    tooltip = ["who:N", "kind:N", alt.Tooltip("events:Q", format=",.4~r")]
    if stacked:
        return chart.encode(alt.Y("who:N", title=None), alt.X("events:Q", title=title), color, tooltip=tooltip)
    return chart.encode(alt.Y("who:N", title=None), alt.X("events:Q", title=title), color,
                        alt.YOffset("kind:N", sort=list(columns.values())), tooltip=tooltip)


def _section(frame: pl.DataFrame, columns: dict[str, str], title: str, stacked: bool, empty: str) -> None:
    shown = frame.filter(pl.sum_horizontal(*columns) > 0)
    if shown.is_empty():
        st.caption(empty)
        return
    st.altair_chart(_bars(shown, columns, title, stacked), width="stretch")


def _metrics(frame: pl.DataFrame) -> None:
    totals = frame.select(pl.exclude("agent_id", "agent_version", "who")).sum().row(0, named=True)
    corrections = totals["requalified"] + totals["reassigned"] + totals["marked_spam"]
    booked = totals["meetings_booked"]
    cols = st.columns(5)
    cols[0].metric("Rep correction events", f"{corrections:,}", help="requalified + owner_changed + marked_spam "
                   "outcome events whose time falls in the range (events: a lead moved twice counts twice).")
    cols[1].metric("Meetings booked", f"{booked:,}", help="meeting_booked outcomes in the range.")
    cols[2].metric("Accepted", f"{totals['meetings_accepted']:,}",
                   help="meeting_accepted outcomes in the range (a meeting booked late in the previous range may "
                   f"be accepted in this one); {totals['meetings_cancelled']:,} cancelled.")
    cols[3].metric("Opportunities created", f"{totals['opportunities']:,}",
                   help="opportunity_created outcome events in the range, from any lead.")
    cols[4].metric("Closed won", f"{totals['won']:,}", help=f"Won amount: ${totals['won_amount']:,.0f}.")
    st.caption(f"These count **events by when they happened**, for every lead. {COUNTED_APART}")


def _table(frame: pl.DataFrame, by_version: bool) -> None:
    per100 = pl.when(pl.col("actions") > 0).then(
        ((pl.col("requalified") + pl.col("reassigned") + pl.col("marked_spam")) / pl.col("actions") * 100).round(2))
    columns = [pl.col("agent_id").alias("Agent")]
    if by_version:
        columns.append(pl.col("agent_version").alias("Version"))
    columns += [pl.col("actions").alias("Actions (ok)"), pl.col("requalified").alias("Requalified"),
                pl.col("reassigned").alias("Reassignments"), pl.col("marked_spam").alias("Marked spam"),
                per100.alias("Corrections per 100 actions"), pl.col("meetings_booked").alias("Meetings booked"),
                pl.col("meetings_accepted").alias("Accepted"), pl.col("meetings_cancelled").alias("Cancelled"),
                pl.col("replies").alias("Replies"), pl.col("opportunities").alias("Opportunities"),
                pl.col("won").alias("Won"), pl.col("lost").alias("Lost"), pl.col("won_amount").alias("Won amount"),
                pl.col("named").alias("Named by corrects_event_id"), pl.col("outcomes").alias("Outcomes")]
    st.dataframe(frame.select(columns), hide_index=True, width="stretch", key="outcomes_table",
                 column_config={"Won amount": st.column_config.NumberColumn(format="$%.0f")})


def main() -> None:
    st.title("Outcome feedback")
    if not has_rows("outcomes"):
        empty_state(NO_OUTCOMES)
        return
    span_days, by_version = _controls()
    st.caption(
        "Each outcome counts for the agent (and version) of the action it follows: the action its "
        "`corrects_event_id` names, else the last successful agent action on the same record before it (up to "
        f"{biz.ATTRIBUTION_DAYS} days back). A closed deal sent on an opportunity record counts for the lead the "
        f"opportunity was created from. Outcomes with no agent action before them are listed as "
        f"`{biz.NO_AGENT}`.")
    latest = biz.latest_event()
    if latest is None:  # outcomes all in the future: nothing has happened yet
        empty_state(NO_OUTCOMES)
        return
    window = biz.window_ending(latest, span_days)
    frame = labelled(biz.outcome_feedback(window, by_version), by_version)
    if frame["outcomes"].sum() == 0:
        empty_state(f"No outcome arrived between {local(window.start)} and {local(window.end)}: pick a longer "
                    "range, or send outcomes (`agentwatch ingest outcomes ...` or POST /v1/outcomes).")
        return
    st.caption(f"{local(window.start)} to {local(window.end)} (latest event {local(latest)}).")
    _metrics(frame)
    left, right = st.columns(2)
    with left:
        st.subheader("Rep corrections")
        per100 = frame.filter(pl.col("actions") > 0).with_columns(
            (pl.col(c) / pl.col("actions") * 100).round(3) for c in CORRECTIONS)
        _section(per100, CORRECTIONS, "corrections per 100 of the agent's ok actions", True,
                 "No rep corrections in this range.")
    with right:
        st.subheader("Meetings")
        _section(frame, MEETINGS, "meetings", False, "No meetings in this range.")
    st.subheader("Opportunities and deals")
    _section(frame, DEALS, "outcomes", False, "No opportunities or closed deals in this range.")
    st.subheader("Per " + ("agent version" if by_version else "agent"))
    _table(frame, by_version)


main()
