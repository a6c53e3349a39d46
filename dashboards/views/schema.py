"""The schema page: the timeline of each CRM object's snapshots and a readable diff between any two, with the
fields agents read highlighted (and the renamed or removed fields they still read in red)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import altair as alt
import pandas as pd
import polars as pl
import streamlit as st

from agentwatch.dashboards import schema_history as history
from agentwatch.dashboards.context import config, empty_state, has_rows, local, to_viewer
from agentwatch.dashboards.crm_pollers import show_pollers
from agentwatch.dashboards.escape import md

EMPTY = "No schema snapshots yet: `agentwatch ingest schema ...`"
ALARM = "color: #b00020; font-weight: bold"
READ = "font-weight: bold"
TITLES = {
    "renamed": ("Renamed", "A field that disappeared while a similar one appeared: similarity weighs the API name, "
                           "the label, the type and the picklist values (0 to 1; pairs from 0.6)."),
    "removed": ("Removed", "Fields the later snapshot no longer has."),
    "added": ("Added", "Fields new in the later snapshot."),
    "type_changed": ("Type changes", "Fields whose type changed."),
    "picklist_changed": ("Picklist changes", "Fields whose picklist values changed."),
}


def timeline_chart(snapshots: pl.DataFrame, chosen: list[datetime]) -> alt.LayerChart | alt.FacetChart:
    """Field count per snapshot over time; changed snapshots stand out; the two diffed snapshots are ruled."""
    frame = snapshots.with_columns(
        pl.when(pl.col("changed").is_null()).then(pl.lit("first"))
        .when(pl.col("changed")).then(pl.lit("changed")).otherwise(pl.lit("unchanged")).alias("fields"))
    first, last = frame.select(pl.min("taken_at").alias("first"), pl.max("taken_at").alias("last")).row(0)
    days = (last - first).days if frame.height else 0
    ticks = {"interval": "day", "step": max(1, days // 12)} if days <= 120 else {"interval": "month", "step": 1}
    x = alt.X("taken_at:T", title=None, axis=alt.Axis(format="%b %d" if days <= 120 else "%b %Y", labelAngle=0,
                                                      tickCount=ticks))
    line = alt.Chart(frame).mark_line(interpolate="step-after", color="#9e9e9e").encode(
        x, alt.Y("field_count:Q", title="fields", scale=alt.Scale(zero=False),
                 axis=alt.Axis(format="d", tickMinStep=1)))
    points = alt.Chart(frame).mark_point(filled=True, size=90).encode(
        x, alt.Y("field_count:Q"),
        alt.Color("fields:N", title="vs previous", scale=alt.Scale(domain=["first", "unchanged", "changed"],
                                                                     range=["#1f77b4", "#9e9e9e", "#d62728"])),
        tooltip=[alt.Tooltip("taken_at:T", format="%Y-%m-%d %H:%M", title="taken at"), "source:N",
                 alt.Tooltip("field_count:Q", title="fields"), alt.Tooltip("fields:N", title="vs previous")])
    rules = alt.Chart(pd.DataFrame({"taken_at": chosen, "which": ["from", "to"][:len(chosen)]})).mark_rule(
        strokeDash=[4, 3], color="#555").encode(x, tooltip=["which:N"])
    return alt.layer(line, points, rules).properties(height=220)


def _styled(frame: pl.DataFrame, alarm: bool) -> pd.io.formats.style.Styler | pd.DataFrame:
    """Rows of fields agents read in bold; with `alarm`, rows of renamed/removed fields agents still read in red."""
    table = frame.to_pandas()
    if "still_read" in table:
        table.insert(0, "agents still read it", table.pop("still_read").map({True: "⚠ yes", False: ""}))
    marked = (table["agents still read it"] != "") if alarm and "agents still read it" in table else None

    def style(row: pd.Series) -> list[str]:
        if marked is not None and marked[row.name]:
            return [ALARM] * len(row)
        return [READ if row.get("read by agents") else ""] * len(row)

    styler = table.style.apply(style, axis=1)
    return styler.format({"similarity": "{:.2f}"}) if "similarity" in table else styler


def _snapshot_label(snapshots: pl.DataFrame) -> Callable[[datetime], str]:
    counts = dict(zip(snapshots["taken_at"].to_list(), snapshots["field_count"].to_list(), strict=True))
    return lambda at: f"{local(at)} · {counts.get(at, '?')} fields"


def _pick_pair(snapshots: pl.DataFrame) -> tuple[datetime, datetime]:
    times = snapshots["taken_at"].to_list()
    before, after = history.default_pair(snapshots)
    label = _snapshot_label(snapshots)
    left, right = st.columns(2)
    with left:
        start = st.selectbox("From snapshot", times, index=before, key="schema_from", format_func=label)
    with right:
        end = st.selectbox("To snapshot", times, index=after, key="schema_to", format_func=label)
    return start, end


def _diff(crm: history.CrmObject, start: datetime, end: datetime, readers: history.Readers) -> None:
    if start == end:
        st.info("Pick two different snapshots to see what changed between them.")
        return
    if start > end:
        st.caption("'From' is later than 'To': showing the changes from the earlier to the later one.")
        start, end = end, start
    changes = history.compare(crm, start, end)
    st.subheader(f"{md(crm.object)}: {local(start)} -> {local(end)}")
    if not changes:
        st.success("No change between these two snapshots.")
        return
    tables = history.change_tables(changes, history.fields_at(crm, start), history.fields_at(crm, end), readers)
    counts = ", ".join(f"{len(tables[k])} {TITLES[k][0].lower()}" for k in history.KINDS if k in tables)
    st.caption(f"{len(changes)} change{'s' if len(changes) != 1 else ''}: {counts}.")
    for kind in history.KINDS:
        if kind in tables:
            title, note = TITLES[kind]
            st.markdown(f"**{title}**")
            st.dataframe(_styled(tables[kind], alarm=kind in ("renamed", "removed")), hide_index=True,
                         key=f"schema_diff_{kind}")
            st.caption(note)


def _forget_pair() -> None:
    """Another object: its own default pair, not the times picked for the last one."""
    for key in ("schema_from", "schema_to"):
        st.session_state.pop(key, None)


def _readers() -> tuple[history.Readers, history.ReadWindow | None]:
    window = history.read_window()
    if window is None:
        return history.Readers(pl.DataFrame(schema={"agent_id": pl.String, "key": pl.String}), config()), None
    return history.Readers(history.input_keys(window), config()), window


st.title("Schema")
show_pollers()
if not has_rows("schema_snapshots"):
    empty_state(EMPTY)
    st.stop()
crm_objects = history.objects()
labels = list(crm_objects)
wanted = st.query_params.get("object")
crm = crm_objects[st.selectbox("Object", labels, index=labels.index(wanted) if wanted in labels else 0,
                               key="schema_object", on_change=_forget_pair)]
snapshots = history.timeline(crm)
readers, read_window = _readers()
if snapshots.height < 2:
    st.altair_chart(timeline_chart(to_viewer(snapshots, "taken_at"), []), width="stretch")
    st.info(f"{md(crm.object)} has one snapshot ({local(snapshots['taken_at'][0])}): a diff needs a second one, "
            "sent by the next `agentwatch ingest schema ...`.")
    chosen = (snapshots["taken_at"][0], snapshots["taken_at"][0])
else:
    chosen = _pick_pair(snapshots)
    st.altair_chart(timeline_chart(to_viewer(snapshots, "taken_at"), sorted(chosen)), width="stretch")
with st.expander(f"{snapshots.height} snapshots of {md(crm.object)}", expanded=False):
    table = to_viewer(snapshots, "taken_at").with_columns(
        pl.col("changed").replace_strict({True: "changed", False: "same"}, default="first",
                                          return_dtype=pl.String).alias("vs previous")).drop("changed")
    st.dataframe(table.reverse(), hide_index=True, key="schema_timeline")
if read_window is None:
    st.caption("No action events yet, so no field is known to be read by an agent.")
else:
    days = f"on {read_window.last}" if read_window.first == read_window.last \
        else f"from {read_window.first} to {read_window.last}"
    st.caption(f"Read by agents: the keys of the agents' action inputs {days} (UTC days, {read_window.events:,} "
               "events), by name or through `fields:` in "
               "agentwatch.yaml. **Bold**: fields agents read; **red**: renamed or removed fields agents still read.")
if snapshots.height >= 2:
    _diff(crm, chosen[0], chosen[1], readers)
later = max(chosen)
with st.expander(f"Every field of {md(crm.object)} at {local(later)}"):
    st.dataframe(_styled(history.fields_table(crm, history.fields_at(crm, later), readers), alarm=False),
                 hide_index=True, key="schema_fields")
