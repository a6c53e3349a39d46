"""The routing accuracy page: the share of routed leads reps kept vs reassigned, by agent, route destination,
segment or week, against the previous range, and the top reassignment flows (routed to X, moved to Y)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import altair as alt
import polars as pl
import streamlit as st

from agentwatch.dashboards import business as biz
from agentwatch.dashboards import cohort_controls as controls
from agentwatch.dashboards import cohorts as co
from agentwatch.dashboards import incident_marks as marks
from agentwatch.dashboards import kpis
from agentwatch.dashboards.context import empty_state, local, query, viewer_timezone
from agentwatch.dashboards.ranges import Window, floor_hour

NO_ROUTING = ("No routed leads yet: routing accuracy needs the agents' `lead.route` or `lead.assign_owner` action "
              "events (`agentwatch ingest actions ...` or POST /v1/actions).")
NO_CHANGES = ("No owner_changed outcomes yet: routing accuracy needs them. Send each rep reassignment with "
              "`agentwatch ingest outcomes ...` or POST /v1/outcomes (kind `owner_changed`, `corrects_event_id` = the "
              "`lead.route`/`lead.assign_owner` action it corrects, `to` = the new owner).")
TOP_FLOWS = 15
TOP_BARS = 20


def _controls() -> tuple[int, str, int]:
    left, middle, right = st.columns(3)
    span = controls.cohort_length(left, "routing_range")
    by = middle.selectbox("Group by", list(biz.ROUTING_GROUPS), format_func=lambda group: biz.ROUTING_GROUPS[group],
                          key="routing_by")
    keep = controls.kept_window(right, "routing_keep_days", "A lead is kept when no rep reassigned it within")
    return span, by, keep


def with_accuracy(frame: pl.DataFrame) -> pl.DataFrame:
    """kept = routed - reassigned; accuracy = kept / routed in percent (one decimal), null under kpis.MIN_LEADS
    leads (not enough data); interval: its 95 % interval under kpis.INTERVAL_BELOW leads, as text."""
    kept = frame.with_columns((pl.col("routed") - pl.col("reassigned")).alias("kept"))
    intervals = [kpis.interval_text(int(k), int(n)) for k, n in zip(kept["kept"], kept["routed"], strict=True)]
    return kept.with_columns(
        pl.when(pl.col("routed") >= kpis.MIN_LEADS).then((pl.col("kept") / pl.col("routed") * 100).round(1))
        .alias("accuracy"), pl.Series("interval", intervals, dtype=pl.String))


def _metrics(pair: co.CohortPair, cover: co.Coverage, quarters: pl.DataFrame, keep: int) -> bool:
    """The headline on the mature cohort; False (and the sentence why) when the store does not hold it."""
    now_w, before_w = pair.current.window, pair.previous.window
    if not pair.current.covered:
        st.warning(f"Not computed: the cohort of leads first routed from {local(now_w.start)} to {local(now_w.end)} "
                   f"(each judged {keep} days after its routing) begins before the store's first event "
                   f"({local(cover.start)}). Pick a shorter cohort length or kept window.", icon=":material/block:")
        return False
    now = co.sums_in(quarters, now_w)
    before = co.sums_in(quarters, before_w) if pair.previous.covered else None
    accuracy = kpis.measure("routing_accuracy", now)
    change = kpis.Change(accuracy, kpis.measure("routing_accuracy", before) if before is not None else None)
    st.caption(f"Leads first routed from {local(now_w.start)} to {local(now_w.end)}, "
               + (f"against the cohort before ({local(before_w.start)} to {local(before_w.end)})."
                  if before is not None else f"with no comparison: the cohort before ({local(before_w.start)} to "
                  f"{local(before_w.end)}) begins before the store's first event ({local(cover.start)}).")
               + " " + (co.lookback_note(cover, before_w if before is not None else now_w) or ""))
    shown, routed, reassigned, provisional = st.columns(4)
    flat = change.direction() == 0
    shown.metric("Routing accuracy", accuracy.text(), delta=change.delta(), delta_color="off" if flat else "normal",
                 delta_arrow="off" if flat else "auto", help=f"{accuracy.spec.definition} Kept window: {keep} days.")
    shown.caption(accuracy.n_text())
    routed.metric("Routed leads", f"{int(now['leads']):,}", delta_color="off",  # volume, not a verdict
                  delta=None if before is None else f"{int(now['leads'] - before['leads']):+,}")
    reassigned.metric("Reassigned within the window", f"{int(now['reassigned']):,}", delta_color="off",
                      delta=None if before is None else f"{int(now['reassigned'] - before['reassigned']):+,}",
                      help="Leads of the cohort a rep reassigned within the kept window (each lead once).")
    young = co.sums_in(quarters, pair.provisional)
    so_far = kpis.measure("routing_accuracy", young)
    provisional.metric("Provisional leads", f"{int(young.get('leads', 0)):,}",
                       help=f"Routed since {local(pair.provisional.start)}: not yet {keep} days old, so a rep may "
                       "still move them. Never in the headline.")
    provisional.caption(f":gray[accuracy so far {so_far.text()}]")
    return True


def whole_weeks(groups: pl.DataFrame, cohort: Window, tz: str) -> pl.DataFrame:
    """The week groups with ``week`` (the Monday, a date) and ``whole``: the cohort holds all of the week (a week
    it holds in part would be drawn as a rise or fall that is only fewer days)."""
    zone = ZoneInfo(tz)
    starts = [datetime.combine(date.fromisoformat(key), time(), zone) for key in groups["key"]]
    whole = [cohort.start <= start and start + timedelta(days=7) <= cohort.end for start in starts]
    return groups.with_columns(pl.col("key").str.to_date().alias("week"), pl.Series("whole", whole))


def _chart(groups: pl.DataFrame, by: str, cohort: Window) -> alt.Chart | alt.LayerChart | None:
    """Accuracy per group of MIN_LEADS leads or more (fewer say nothing); per whole week when by week."""
    label = biz.ROUTING_GROUPS[by]
    if by == "week":
        weeks = groups.filter(pl.col("whole") & pl.col("accuracy").is_not_null()).sort("week")
        if weeks.is_empty():
            return None
        line = alt.Chart(weeks).mark_line(point=True).encode(
            alt.X("week:T", title="week starting (Monday, your timezone)",
                  axis=alt.Axis(format="%b %d", labelAngle=0, values=weeks["week"].to_list())),
            alt.Y("accuracy:Q", title="routing accuracy (%)", scale=alt.Scale(zero=False)),
            tooltip=[alt.Tooltip("key:N", title="week starting"), "routed:Q", "reassigned:Q",
                     alt.Tooltip("accuracy:Q", title="accuracy (%)"), alt.Tooltip("interval:N", title="95% interval")])
        incidents = marks.critical_between(cohort.start, cohort.end)
        return alt.LayerChart(layer=[line, *marks.mark_layers(marks.marks_frame(incidents), "week")]) if incidents \
            else line
    top = groups.filter(pl.col("accuracy").is_not_null()).sort("routed", descending=True).head(TOP_BARS)
    if top.is_empty():
        return None
    long = top.unpivot(index=["key", "routed", "accuracy", "interval"], on=["kept", "reassigned"],
                       variable_name="outcome", value_name="leads")
    return alt.Chart(long).mark_bar().encode(
        alt.Y("key:N", title=label, sort=alt.EncodingSortField("accuracy", order="ascending"),
              axis=alt.Axis(labelLimit=320)),
        alt.X("leads:Q", stack="normalize", title="share of routed leads", axis=alt.Axis(format="%")),
        alt.Color("outcome:N", title=None, scale=alt.Scale(domain=["kept", "reassigned"],
                                                           range=["#4c78a8", "#e45756"])),
        tooltip=[alt.Tooltip("key:N", title=label), "outcome:N", "leads:Q", "routed:Q",
                 alt.Tooltip("accuracy:Q", title="accuracy (%)"), alt.Tooltip("interval:N", title="95% interval")])


def _table(groups: pl.DataFrame, by: str) -> None:
    label = biz.ROUTING_GROUPS[by]
    order = "key" if by == "week" else "routed"
    columns = [pl.col("key").alias(label if by != "week" else "Week starting"), pl.col("routed").alias("Routed leads"),
               pl.col("kept").alias("Kept"), pl.col("reassigned").alias("Reassigned"),
               pl.col("accuracy").alias("Accuracy (%)"), pl.col("interval").alias("95% interval")]
    if by == "week":
        columns.append(pl.when(pl.col("whole")).then(pl.lit("whole")).otherwise(pl.lit("part of it"))
                       .alias("Week in the cohort"))
    st.dataframe(groups.sort(order, descending=by != "week").select(columns), hide_index=True, width="stretch",
                 key="routing_table")
    st.caption(f"Accuracy needs {kpis.MIN_LEADS} leads (blank below; the chart leaves such groups out); the 95% "
               f"interval is shown under {kpis.INTERVAL_BELOW} leads."
               + (" The line draws only the weeks the cohort holds whole." if by == "week" else ""))


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
    cover = biz.coverage()
    if cover is None or not biz.has_routing():
        empty_state(NO_ROUTING)
        return
    if biz.outcome_kinds().filter(pl.col("kind") == "owner_changed").is_empty():
        empty_state(NO_CHANGES)
        return
    span_days, by, keep = _controls()
    st.caption(
        "A **routed lead** is a lead an agent routed (an ok `lead.route` or `lead.assign_owner` action); it "
        f"belongs to the cohort of its first routing. It is **reassigned** when a rep's `owner_changed` outcome on "
        f"it arrives within {keep} days of that first routing, naming one of its routings in `corrects_event_id` "
        "(or naming none); otherwise it is **kept**. Routing accuracy = kept / routed, over leads at least "
        f"{keep} days old, so every cohort is judged at the same age.")
    pair = co.cohorts(cover, timedelta(days=span_days), timedelta(days=keep))
    scan = Window(max(pair.previous.window.start, floor_hour(cover.start)), cover.end)
    tz = biz.zone_name(str(viewer_timezone()))
    report = query(co.routing_report_sql(scan, pair.current.window, timedelta(days=keep), by, tz)).rename(
        {"leads": "routed"})
    quarters = report.filter(pl.col("part") == "quarter").rename({"routed": "leads"})
    if not _metrics(pair, cover, quarters, keep):
        return
    report = with_accuracy(report)
    groups = report.filter(pl.col("part") == "group")
    if by == "week":
        groups = whole_weeks(groups, pair.current.window, tz)
    st.subheader(f"By {biz.ROUTING_GROUPS[by].lower()}")
    chart = _chart(groups, by, pair.current.window)
    if chart is None:
        st.caption("No group to draw: " + ("the cohort holds no whole week (pick 14 days or more)." if by == "week"
                                           else f"none has {kpis.MIN_LEADS} leads."))
    else:
        st.altair_chart(chart, width="stretch")
    _table(groups, by)
    _flows(report.filter(pl.col("part") == "flow"))


main()
