"""The routing accuracy page: the share of routed leads reps kept vs reassigned, by agent, route destination,
segment or week, against the previous range, and the top reassignment flows (routed to X, moved to Y)."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from agentwatch.dashboards import business as biz
from agentwatch.dashboards.context import empty_state, local, viewer_timezone

NO_ROUTING = ("No routed leads yet: routing accuracy needs the agents' `lead.route` or `lead.assign_owner` action "
              "events (`agentwatch ingest actions ...` or POST /v1/actions).")
NO_CHANGES = ("No owner_changed outcomes yet: routing accuracy needs them. Send each rep reassignment with "
              "`agentwatch ingest outcomes ...` or POST /v1/outcomes (kind `owner_changed`, `corrects_event_id` = the "
              "`lead.route`/`lead.assign_owner` action it corrects, `to` = the new owner).")
TOP_FLOWS = 15
TOP_BARS = 20


def _controls() -> tuple[int, str, int]:
    left, middle, right = st.columns(3)
    span = left.selectbox("Time range", list(biz.RANGES), index=list(biz.RANGES).index(biz.DEFAULT_RANGE),
                          key="routing_range", help="Ends at the latest event in the store.")
    by = middle.selectbox("Group by", list(biz.ROUTING_GROUPS), format_func=lambda group: biz.ROUTING_GROUPS[group],
                          key="routing_by")
    keep = right.selectbox("Kept means no reassignment within", biz.KEEP_DAYS,
                           index=biz.KEEP_DAYS.index(biz.DEFAULT_KEEP_DAYS), key="routing_keep_days",
                           format_func=lambda d: f"{d} day{'s' if d > 1 else ''}")
    return biz.RANGES[span], by, keep


def with_accuracy(frame: pl.DataFrame) -> pl.DataFrame:
    """kept = routed - reassigned; accuracy = kept / routed in percent (one decimal)."""
    return frame.with_columns((pl.col("routed") - pl.col("reassigned")).alias("kept")).with_columns(
        (pl.col("kept") / pl.col("routed") * 100).round(1).alias("accuracy"))


def _metrics(periods: dict[str, dict], keep: int, span_days: int) -> None:
    now, before = periods["1"], periods.get("0")
    share = now["kept"] / now["routed"]
    old = before["kept"] / before["routed"] if before else None
    accuracy, routed, reassigned, still_open = st.columns(4)
    accuracy.metric("Routing accuracy", f"{share:.1%}",
                    delta=None if old is None else f"{(share - old) * 100:+.1f} pp",
                    help=f"Routed leads kept (no rep reassignment within {keep} days) out of all routed leads; "
                    f"the delta is against the {span_days} days before, judged at the same age.")
    routed.metric("Routed leads", f"{now['routed']:,}",
                  delta=None if before is None else f"{now['routed'] - before['routed']:+,}")
    reassigned.metric("Reassigned by reps", f"{now['reassigned']:,}", delta_color="inverse",
                      delta=None if before is None else f"{now['reassigned'] - before['reassigned']:+,}")
    still_open.metric("Still open", f"{now['still_open']:,}",
                      help=f"Kept so far but routed less than {keep} days before the range's end: a rep may still "
                      "move them, so the accuracy of the last days can still fall.")


def _chart(groups: pl.DataFrame, by: str) -> alt.Chart:
    label = biz.ROUTING_GROUPS[by]
    if by == "week":
        return alt.Chart(groups.sort("key")).mark_line(point=True).encode(
            alt.X("key:O", title="week starting (Monday, your timezone)", axis=alt.Axis(labelAngle=0)),
            alt.Y("accuracy:Q", title="routing accuracy (%)", scale=alt.Scale(zero=False)),
            tooltip=[alt.Tooltip("key:O", title="week starting"), "routed:Q", "reassigned:Q", "still_open:Q",
                     alt.Tooltip("accuracy:Q", title="accuracy (%)")])
    top = groups.sort("routed", descending=True).head(TOP_BARS)
    long = top.unpivot(index=["key", "routed", "accuracy"], on=["kept", "reassigned"], variable_name="outcome",
                       value_name="leads")
    return alt.Chart(long).mark_bar().encode(
        alt.Y("key:N", title=label, sort=alt.EncodingSortField("accuracy", order="ascending")),
        alt.X("leads:Q", stack="normalize", title="share of routed leads", axis=alt.Axis(format="%")),
        alt.Color("outcome:N", title=None, scale=alt.Scale(domain=["kept", "reassigned"],
                                                           range=["#4c78a8", "#e45756"])),
        tooltip=[alt.Tooltip("key:N", title=label), "outcome:N", "leads:Q", "routed:Q",
                 alt.Tooltip("accuracy:Q", title="accuracy (%)")])


def _table(groups: pl.DataFrame, by: str) -> None:
    label = biz.ROUTING_GROUPS[by]
    order = "key" if by == "week" else "routed"
    table = groups.sort(order, descending=by != "week").select(
        pl.col("key").alias(label if by != "week" else "Week starting"), pl.col("routed").alias("Routed leads"),
        pl.col("kept").alias("Kept"), pl.col("reassigned").alias("Reassigned"),
        pl.col("accuracy").alias("Accuracy (%)"), pl.col("still_open").alias("Still open"))
    st.dataframe(table, hide_index=True, width="stretch", key="routing_table")


def _flows(flows: pl.DataFrame) -> None:
    st.subheader("Top reassignment flows")
    if flows.is_empty():
        st.caption("No routed lead of this range was reassigned.")
        return
    total = flows["routed"].sum()
    table = flows.sort(["routed", "key", "moved_to"], descending=[True, False, False]).head(TOP_FLOWS).select(
        pl.col("key").alias("Routed to"), pl.col("moved_to").alias("Moved to"), pl.col("routed").alias("Leads"),
        (pl.col("routed") / total * 100).round(1).alias("Share of reassignments (%)"))
    st.caption("Routed to: the destination the routing action sent (`decision.route_to`, else `decision.owner`). "
               "Moved to: the new owner the rep's `owner_changed` outcome sent (`to`).")
    st.dataframe(table, hide_index=True, width="stretch", key="routing_flows")


def main() -> None:
    st.title("Routing accuracy")
    latest = biz.latest_event()
    if latest is None or not biz.has_routing():
        empty_state(NO_ROUTING)
        return
    if biz.outcome_kinds().filter(pl.col("kind") == "owner_changed").is_empty():
        empty_state(NO_CHANGES)
        return
    span_days, by, keep = _controls()
    st.caption(
        f"A **routed lead** is a lead an agent routed in the range (an ok `lead.route` or `lead.assign_owner` "
        f"action). It is **reassigned** when a rep's `owner_changed` outcome on that lead arrives within {keep} "
        "days of a routing and before the range ends, naming the routing in `corrects_event_id` (or naming no "
        "action); otherwise it is **kept**. Routing accuracy = kept / routed. The previous range is judged "
        "only by the outcomes that had arrived by its own end, so both are compared at the same age.")
    window = biz.window_ending(latest, span_days)
    report = with_accuracy(biz.routing_report(window, keep, by, biz.zone_name(str(viewer_timezone()))))
    periods = {row["key"]: row for row in report.filter(pl.col("part") == "period").iter_rows(named=True)}
    if "1" not in periods:
        empty_state(f"No lead was routed between {local(window.start)} and {local(window.end)}: pick a longer "
                    "range.")
        return
    st.caption(f"{local(window.start)} to {local(window.end)} (latest event {local(latest)}).")
    _metrics(periods, keep, span_days)
    groups = report.filter(pl.col("part") == "group")
    st.subheader(f"By {biz.ROUTING_GROUPS[by].lower()}")
    st.altair_chart(_chart(groups, by), width="stretch")
    _table(groups, by)
    _flows(report.filter(pl.col("part") == "flow"))


main()
