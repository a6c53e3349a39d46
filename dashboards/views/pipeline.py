"""The pipeline quality page, for sales leaders: qualified pipeline, routing accuracy, time to first action, rep
corrections per 100 leads and conversion to opportunity and to won, next to the reply rate, with a plain note
of where they disagree."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from agentwatch.dashboards import business as biz
from agentwatch.dashboards import business_pipeline as pipe
from agentwatch.dashboards.context import empty_state, has_rows, local, viewer_timezone

NO_ROUTING = ("No routed leads yet: pipeline quality follows the leads the agents route, so it needs `lead.route` "
              "or `lead.assign_owner` action events (`agentwatch ingest actions ...` or POST /v1/actions).")
NO_OUTCOMES = ("No outcome events yet, so reply rate, conversions, corrections and pipeline are all zero: send them "
               "with `agentwatch ingest outcomes ...` or POST /v1/outcomes (`replied`, `opportunity_created`, "
               "`closed_won`, and `owner_changed` with `corrects_event_id` for routing accuracy).")
DEFINITIONS = {
    "Reply rate": "Share of the range's routed leads with a `replied` outcome.",
    "Qualified pipeline": "Opportunities (`opportunity_created`) from routed leads an agent qualified (an ok "
    "`lead.qualify` with `decision.qualified` true or `after.status` 'qualified'): the sum of the `amount` the "
    "`opportunity_created` outcomes sent, or their number when none sends one.",
    "Routing accuracy": f"Share of routed leads no rep reassigned (`owner_changed`) within {biz.DEFAULT_KEEP_DAYS} "
    "days (see Routing accuracy).",
    "Time to first action": "Average time from a lead's first routing in the range to the first external action an "
    "agent took on it in the range (an email sent, a meeting booked); leads not touched by the range's end, or "
    "touched before they were routed, are left out.",
    "Rep corrections per 100 leads": "`owner_changed`, `requalified` and `marked_spam` outcomes on the routed leads, "
    "per 100 leads.",
    "Conversion to opportunity": "Share of routed leads with an `opportunity_created` outcome.",
    "Conversion to won": "Share of routed leads with a `closed_won` outcome (on the lead, or on the opportunity "
    "created from it).",
}


def _delta(kpi: pipe.Kpi) -> str | None:
    change = kpi.change()
    if change is None:
        return None
    if kpi.unit == "share":
        return f"{change:+.1f} pp"
    if change == float("inf"):
        return "new"
    return f"{change:+.0%}"


def _metrics(items: list[pipe.Kpi]) -> None:
    for row in (items[:4], items[4:]):
        for column, kpi in zip(st.columns(4), row, strict=False):
            definition = DEFINITIONS.get(kpi.label, "")
            flat = kpi.direction() == 0  # under the note's thresholds: grey, no arrow
            column.metric(kpi.label, kpi.show(kpi.now), delta=_delta(kpi),
                          delta_color="off" if flat else "normal" if kpi.higher_is_better else "inverse",
                          delta_arrow="off" if flat else "auto",
                          help=f"{definition} Previous range: {kpi.show(kpi.before)}. Changes under "
                          f"{pipe.SHARE_FLAT_POINTS:g} point (shares) or {pipe.RELATIVE_FLAT:.0%} (the others) "
                          "count as flat (grey).")


UNIT_SUFFIX = {"share": " (%)", "minutes": " (min)", "money": " ($)", "count": " (opportunities)"}


def weekly(report: pl.DataFrame) -> pl.DataFrame:
    """week (a Monday, as text), kpi, value, leads: the current range's KPIs per week of first routing (shares in
    percent, times in minutes)."""
    weeks = report.filter(pl.col("period") == 1).sort("week")
    rows = []
    for row in weeks.iter_rows(named=True):  # a handful of weeks: the per-week KPIs, not events
        for kpi in pipe.kpis_of(row, None):
            if kpi.now is not None:
                value = kpi.now * 100 if kpi.unit == "share" else kpi.now
                rows.append({"week": row["week"].isoformat(), "kpi": kpi.label + UNIT_SUFFIX.get(kpi.unit, ""),
                             "value": round(float(value), 2), "leads": row["leads"]})
    return pl.DataFrame(rows, schema={"week": pl.String, "kpi": pl.String, "value": pl.Float64, "leads": pl.Int64})


def _trend(frame: pl.DataFrame) -> alt.FacetChart:
    return alt.Chart(frame).mark_line(point=True).encode(
        alt.X("week:O", title="week starting", axis=alt.Axis(labelAngle=0)),
        alt.Y("value:Q", title=None, scale=alt.Scale(zero=False), axis=alt.Axis(format=",.4~r")),
        tooltip=[alt.Tooltip("week:O", title="week starting"), "kpi:N", alt.Tooltip("value:Q", format=",.2f"),
                 alt.Tooltip("leads:Q", title="routed leads", format=",")],
    ).properties(width=240, height=130).facet(alt.Facet("kpi:N", title=None), columns=3).resolve_scale(
        y="independent")


def main() -> None:
    st.title("Pipeline quality")
    latest = biz.latest_event()
    if latest is None:
        empty_state(NO_ROUTING)
        return
    names = list(biz.RANGES)
    span = st.selectbox("Time range", names, index=names.index(biz.DEFAULT_RANGE), key="pipeline_range",
                        help="Ends at the latest event in the store; compared with the same length before it.")
    window = biz.window_ending(latest, biz.RANGES[span])
    report = pipe.pipeline_report(window, biz.zone_name(str(viewer_timezone())))
    items = pipe.kpis(report)
    if items[0].now is None:
        empty_state(f"No lead was routed between {local(window.start)} and {local(window.end)}: pick a longer "
                    "range." if biz.has_routing() else NO_ROUTING)
        return
    if not has_rows("outcomes"):
        empty_state(NO_OUTCOMES)
    st.caption(
        f"The leads the agents routed from {local(window.start)} to {local(window.end)} (latest event "
        f"{local(latest)}), against the {biz.RANGES[span]} days before. Each range counts only the outcomes that "
        "had arrived by its own end, so both are compared at the same age; the last days' leads have had little "
        "time to reply or convert.")
    _metrics(items)
    text, verdict = pipe.note(items)
    {"disagree": st.warning, "agree": st.success, "nothing": st.info}[verdict](text, icon=":material/compare_arrows:")
    st.subheader("Weekly trend")
    trend = weekly(report)
    if trend.is_empty():
        st.caption("No weeks to show.")
    else:
        st.altair_chart(_trend(trend), width="content")
        st.caption("Weeks start on Monday in your timezone and group leads by their first routing; each is judged "
                   "by what had arrived by the end of the range, so the last week has had the least time.")
        table = trend.pivot(on="kpi", index=["week", "leads"], values="value").sort("week")
        st.dataframe(table.rename({"week": "Week starting", "leads": "Routed leads"}), hide_index=True,
                     width="stretch", key="pipeline_weeks")
    with st.expander("How each number is defined"):
        st.markdown("\n".join(f"- **{name}**: {text}" for name, text in DEFINITIONS.items()))


main()
