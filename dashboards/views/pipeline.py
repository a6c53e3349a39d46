"""The pipeline quality page, for sales leaders: routing accuracy, time to first action, rep corrections, qualified
pipeline and conversions next to the reply rate, each on cohorts old enough to be judged (dashboards/cohorts.py,
dashboards/kpis.py), with a plain note of where they disagree and the critical incidents on the trend."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import polars as pl
import streamlit as st

from agentwatch.dashboards import business as biz
from agentwatch.dashboards import cohort_controls as controls
from agentwatch.dashboards import cohorts as co
from agentwatch.dashboards import incident_marks as marks
from agentwatch.dashboards import kpis
from agentwatch.dashboards.context import empty_state, has_rows, local, query, to_viewer, viewer_timezone
from agentwatch.dashboards.ranges import Window, floor_hour

NO_ROUTING = ("No routed leads yet: pipeline quality follows the leads the agents route, so it needs `lead.route` "
              "or `lead.assign_owner` action events (`agentwatch ingest actions ...` or POST /v1/actions).")
NO_OUTCOMES = ("No outcome events yet, so reply rate, conversions, corrections and pipeline are all zero: send them "
               "with `agentwatch ingest outcomes ...` or POST /v1/outcomes (`replied`, `opportunity_created`, "
               "`closed_won`, and `owner_changed` with `corrects_event_id` for routing accuracy).")
CONVERSION_DAYS = (7, 14, 30, 60, 90)
DEFAULT_CONVERSION_DAYS = 14  # the demo's opportunities come within days of a meeting; set it to your cycle
JUDGED, PROVISIONAL = "#1f77b4", "#b0b0b0"


def _controls() -> tuple[int, int, int]:
    left, middle, right = st.columns(3)
    span = controls.cohort_length(left, "pipeline_range")
    keep = controls.kept_window(middle, "pipeline_keep_days", "Routing accuracy, replies, corrections and the first "
                                "touch count what happened")
    conversion = right.selectbox("Conversion window", CONVERSION_DAYS,
                                 index=CONVERSION_DAYS.index(DEFAULT_CONVERSION_DAYS), key="pipeline_conversion_days",
                                 format_func=kpis.days_text,
                                 help="Opportunities, won deals and qualified pipeline count what happened this long "
                                 "after a lead's first routing; a lead is judged once it is this old.")
    return span, keep, conversion


def _section(title: str, keys: tuple[str, ...], pair: co.CohortPair, cover: co.Coverage, quarters: pl.DataFrame,
             amounts: bool) -> dict[str, kpis.Change]:
    """The headline of one horizon's KPIs on its mature cohort, or the sentence saying why it is not computed."""
    days = int(pair.current.horizon / timedelta(days=1))
    st.subheader(f"{title}: each lead judged {kpis.days_text(days)} after its first routing", anchor=False)
    now_w, before_w = pair.current.window, pair.previous.window
    if not pair.current.covered:
        st.warning(f"Not computed: these KPIs judge the leads first routed from {local(now_w.start)} to "
                   f"{local(now_w.end)}, but the store begins {local(cover.start)}, so that cohort is not all "
                   "there. Pick a shorter cohort length or window.", icon=":material/block:")
        return {}
    now = co.sums_in(quarters, now_w)
    before = co.sums_in(quarters, before_w) if pair.previous.covered else None
    against = (f"against the cohort before ({local(before_w.start)} to {local(before_w.end)}, "
               f"{int(before['leads']):,} leads)" if before is not None else
               f"with no comparison: the cohort before ({local(before_w.start)} to {local(before_w.end)}) begins "
               f"before the store's first event ({local(cover.start)}), so it is not compared")
    st.caption(f"Leads first routed from {local(now_w.start)} to {local(now_w.end)} ({int(now['leads']):,} leads), "
               f"{against}. " + (co.lookback_note(cover, before_w if before is not None else now_w) or ""))
    changes = {}
    for column, key in zip(st.columns(4), keys, strict=False):
        measure = kpis.measure(key, now, amounts)
        change = kpis.Change(measure, kpis.measure(key, before, amounts) if before is not None else None)
        flat = change.direction() == 0  # under the thresholds or within noise: grey, no arrow
        column.metric(measure.spec.label, measure.text(), delta=change.delta(),
                      delta_color="off" if flat else "normal" if measure.spec.higher_is_better else "inverse",
                      delta_arrow="off" if flat else "auto",
                      help=f"{measure.spec.definition} Previous cohort: "
                      f"{change.before.text() if change.before else 'not compared'}. A change counts (colour, "
                      f"arrow) only beyond {kpis.SHARE_FLAT_POINTS:g} point (shares) or {kpis.RELATIVE_FLAT:.0%} "
                      "(the others) and beyond noise (95 %).")
        column.caption(measure.n_text())
        changes[key] = change
    return changes


def _provisional(pairs: list[tuple[co.CohortPair, tuple[str, ...]]], quarters: pl.DataFrame, amounts: bool) -> None:
    lines = []
    for pair, keys in pairs:
        sums = co.sums_in(quarters, pair.provisional)
        if not sums.get("leads"):
            continue
        days = int(pair.current.horizon / timedelta(days=1))
        measures = [kpis.measure(k, sums, amounts) for k in keys]
        so_far = "; ".join(f"{m.spec.label.lower()} {m.text()}" for m in measures)
        lines.append(f"Routed since {local(pair.provisional.start)}, not yet {kpis.days_text(days)} old "
                     f"({int(sums['leads']):,} leads): {so_far}.")
    if lines:  # a Markdown line break ("  \n") between the sentences: each cohort on its own line
        st.markdown("  \n".join([":gray[**Provisional, not in the headline**: these leads have not had their whole "
                                 "window, so their figures can still move.]", *(f":gray[{line}]" for line in lines)]))


def trend_frame(quarters: pl.DataFrame, cover: co.Coverage, start: Window, tz: str, every: str,
                horizons: dict[str, timedelta], amounts: bool) -> pl.DataFrame:
    """start (the bucket's first instant, UTC), kpi (its column title), value (as the table shows it), leads, n,
    judged (the bucket's leads have all had the KPI's window): per whole local day or week in `start` that the
    store covers (a bucket the store holds only in part is left out, never drawn beside whole ones)."""
    rows = []
    whole = co.buckets(quarters, tz, every).filter(
        (pl.col("start") >= cover.start) & (pl.col("end") <= cover.end) & (pl.col("start") >= start.start))
    for bucket in whole.iter_rows(named=True):  # a few dozen buckets: per-bucket KPIs, not events
        for key, spec in kpis.SPECS.items():
            measure = kpis.measure(key, bucket, amounts)
            if measure.value is None:
                continue
            rows.append({"start": bucket["start"], "kpi": kpis.column_title(measure.spec),
                         "value": kpis.table_value(measure), "leads": int(bucket["leads"]), "n": measure.n,
                         "judged": bucket["end"] + horizons[spec.horizon] <= cover.end})
    return pl.DataFrame(rows, schema={"start": pl.Datetime("us", "UTC"), "kpi": pl.String, "value": pl.Float64,
                                      "leads": pl.Int64, "n": pl.Int64, "judged": pl.Boolean})


def _trend_chart(frame: pl.DataFrame, marked: pl.DataFrame, every: str) -> alt.FacetChart:
    """One small chart per KPI (a facet: one spec, so it builds in a fraction of the time of separate charts),
    with the incidents' rules repeated in each."""
    shown = to_viewer(frame, "start").with_columns(
        pl.when(pl.col("judged")).then(pl.lit("judged")).otherwise(pl.lit("provisional")).alias("cohort"))
    if not marked.is_empty():
        rows = marks.viewer_rows(marked, "start")
        shown = pl.concat([shown, pl.concat([rows.with_columns(pl.lit(title).alias("kpi"))
                                             for title in shown["kpi"].unique(maintain_order=True)])],
                          how="diagonal_relaxed")
    x = alt.X("start:T", title="day of first routing" if every == "1d" else "week of first routing (from Monday)",
              axis=alt.Axis(format="%b %d", labelAngle=0))
    y = alt.Y("value:Q", title=None, scale=alt.Scale(zero=False))
    points = alt.Chart().transform_filter("isValid(datum.value)")
    tooltip = [alt.Tooltip("start:T", title="from", format="%Y-%m-%d"), alt.Tooltip("value:Q", format=",.1f"),
               alt.Tooltip("n:Q", title="n", format=","), "cohort:N"]
    layers = [
        points.mark_line(color=PROVISIONAL, strokeDash=[3, 3]).encode(x, y),
        points.transform_filter("datum.judged").mark_line(color=JUDGED).encode(x, y),
        points.mark_point(filled=True, size=40).encode(x, y, tooltip=tooltip, color=alt.Color(
            "cohort:N", title=None, scale=alt.Scale(domain=["judged", "provisional"], range=[JUDGED, PROVISIONAL]))),
    ]
    if not marked.is_empty():
        layers += marks.mark_layers(None, "start")
    order = list(dict.fromkeys(frame["kpi"].to_list()))
    return alt.layer(*layers, data=shown).properties(width=250, height=130).facet(
        alt.Facet("kpi:N", title=None, sort=order, header=alt.Header(labelFontWeight="bold", labelFontSize=12)),
        columns=3).resolve_scale(y="independent").configure_legend(orient="top")


def _trend(quarters: pl.DataFrame, cover: co.Coverage, start: Window, span_days: int,
           horizons: dict[str, timedelta], amounts: bool) -> None:
    every = "1d" if span_days <= 28 else "1w"
    st.subheader("Trend by " + ("day" if every == "1d" else "week") + " of first routing", anchor=False)
    tz = biz.zone_name(str(viewer_timezone()))
    frame = trend_frame(quarters, cover, start, tz, every, horizons, amounts)
    if frame.is_empty():
        st.caption("No whole day or week with enough routed leads to draw.")
        return
    incidents = marks.critical_between(start.start, cover.end)
    marked = marks.marks_frame(incidents)
    st.altair_chart(_trend_chart(frame, marked, every), width="content", key="pipeline_trend")
    st.caption("Blue: cohorts whose leads have all had the KPI's window (judged); grey and dashed: provisional. "
               f"Days or weeks in your timezone ({tz}); one the store holds only in part is left out; a point needs "
               f"{kpis.MIN_LEADS} leads. Red rules: critical incidents, where they began (click one to open it).")
    if incidents:
        st.markdown("Critical incidents in this span: " + ", ".join(
            f"[{i.id}]({marks.incident_link(i.id)}) ({i.check}, began {local(i.started_at)})" for i in incidents))
    table = frame.pivot(on="kpi", index=["start", "leads"], values="value").sort("start")
    for window, key in (("Kept window", "reply_rate"), ("Conversion window", "conversion_to_opportunity")):
        status = frame.filter(pl.col("kpi") == kpis.column_title(kpis.SPECS[key])).select(
            "start", pl.when(pl.col("judged")).then(pl.lit("judged")).otherwise(pl.lit("provisional")).alias(window))
        table = table.join(status, on="start", how="left")
    table = to_viewer(table, "start").with_columns(pl.col("start").dt.strftime("%Y-%m-%d"))
    st.dataframe(table.rename({"start": "Day" if every == "1d" else "Week starting", "leads": "Routed leads"}),
                 hide_index=True, width="stretch", key="pipeline_weeks")


def main() -> None:
    st.title("Pipeline quality")
    cover = biz.coverage()
    if cover is None or not biz.has_routing():
        empty_state(NO_ROUTING)
        return
    span_days, keep_days, conversion_days = _controls()
    span, keep, conversion = timedelta(days=span_days), timedelta(days=keep_days), timedelta(days=conversion_days)
    early, late = co.cohorts(cover, span, keep), co.cohorts(cover, span, conversion)
    earliest = min(early.previous.window.start, late.previous.window.start)
    scan = Window(max(earliest, floor_hour(cover.start)), cover.end)
    quarters = query(co.quarter_sums_sql(scan, keep, conversion))
    if not has_rows("outcomes"):
        empty_state(NO_OUTCOMES)
    st.caption(
        f"The store holds events from {local(cover.start)} to {local(cover.end)}. Every KPI follows the leads the "
        "agents routed, each judged on the same length of time after its first routing, so cohorts compare at the "
        "same age; leads too young for their window are shown apart as provisional.")
    amounts = kpis.money_unit([co.sums_in(quarters, w) for w in (late.current.window, late.previous.window)])
    changes = _section("Routing and replies", kpis.EARLY, early, cover, quarters, amounts)
    changes |= _section("Conversion", kpis.LATE, late, cover, quarters, amounts)
    text, verdict = kpis.note(changes)
    {"disagree": st.warning, "worse": st.warning, "better": st.success, "flat": st.info,
     "nothing": st.info}[verdict](text, icon=":material/compare_arrows:")
    _provisional([(early, kpis.EARLY), (late, kpis.LATE)], quarters, amounts)
    trend_start = Window(min(early.current.window.start, late.current.window.start), cover.end)
    _trend(quarters, cover, trend_start, span_days, {kpis.KEPT: keep, kpis.CONVERSION: conversion}, amounts)
    with st.expander("How each number is defined"):
        shown = [kpis.spec_for(key, amounts) for key in kpis.SPECS]
        st.markdown("\n".join(f"- **{spec.label}** ({'kept' if spec.horizon == kpis.KEPT else 'conversion'} "
                              f"window): {spec.definition}" for spec in shown))


main()
