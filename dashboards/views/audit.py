"""The audit trail page: every action by agent, action, resource and time range, one event's before/after diff,
and the selection's rollback plan (restore steps and irreversible actions) as CSV and JSON.

``?incident=INC-18`` (the incident page's link) narrows it to exactly the actions that incident is about
(agentwatch.checks.incident_audit): those it and its effects took on bad input, or its failed actions, else its
subject's actions over its range; the rollback plan and the downloads cover those alone, until cleared."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from agentwatch.checks.incident_audit import AuditScope, counts_sql, incident_scope, sentence
from agentwatch.core.errors import AgentwatchError
from agentwatch.core.home import Home
from agentwatch.dashboards import audit_trail as trail
from agentwatch.dashboards.access import require_access
from agentwatch.dashboards.context import empty_state, home, incidents, local, query, to_viewer, viewer_timezone
from agentwatch.dashboards.escape import md
from agentwatch.schemas.actions import ACTION_STATUSES
from agentwatch.store.reader import open_reader

EMPTY = ("No action events yet: send some with `agentwatch ingest actions FILE` (or POST /v1/actions, or "
         "`make demo`), then every action shows here.")
NOTHING = "Nothing matches these filters: widen the time range, or clear an agent, action, resource or status filter."
DEFAULT_RANGE = "Last 24 hours"
PREVIEW = 200  # plan rows shown on the page; the downloads hold all of them
LARGE_PLAN = 300_000  # reversible writes above which the restore preview waits for the viewer's toggle
SEEN_ROW = "audit_table_seen"  # the table row last pushed into the event picker
INCIDENT = "incident"  # the query parameter naming an incident whose actions the page shows


def _run(q: trail.Query) -> pl.DataFrame:
    sql, params = q
    return query(sql, *params)


def _latest() -> datetime | None:
    day = _run(trail.latest_day_sql())["day"][0]
    return None if day is None else _run(trail.latest_sql(day))["latest"][0]


def _naive_local(at: datetime) -> datetime:
    return at.astimezone(viewer_timezone()).replace(tzinfo=None, second=0, microsecond=0)


def _time_range(latest: datetime) -> tuple[str, datetime, datetime]:
    """The range control (and, for Custom, its from / to inputs in the viewer's timezone)."""
    ranges = list(trail.RANGES)
    choice = st.selectbox("Time range", ranges, index=ranges.index(DEFAULT_RANGE), key="audit_range",
                          help="Each range ends at the latest event in the store, so past data reads the same.")
    custom = None
    if choice == "Custom":
        zone = viewer_timezone()
        left, right = st.columns(2)
        start = left.datetime_input("From", value=_naive_local(latest - timedelta(hours=48)), key="audit_from",
                                    step=timedelta(minutes=1), help=f"In your timezone, {zone}.")
        end = right.datetime_input("To", value=_naive_local(latest + timedelta(minutes=1)), key="audit_to",
                                   step=timedelta(minutes=1), help=f"In your timezone, {zone}; included.")
        if start is None or end is None:
            st.error("A custom range needs both a From and a To.")
            st.stop()
        custom = (start.replace(tzinfo=zone), end.replace(tzinfo=zone))
    start, end = trail.time_range(choice, latest, custom)
    return choice, start, end


def _keep(options: list[str], key: str) -> list[str]:
    """The options plus whatever is already picked (a pick outside the new range stays visible, not dropped)."""
    picked = st.session_state.get(key) or []
    return sorted(set(options) | set(picked if isinstance(picked, list) else [picked]))


def _selection(start: datetime, end: datetime, **filters: Any) -> trail.Selection:
    """A Selection, or a message on the page (and a stop) when the filters cannot make one."""
    try:
        return trail.Selection(start, end, **filters)
    except ValueError as exc:
        st.error(f"These filters cannot be used: {exc}.")
        st.stop()


def _clear_incident() -> None:
    st.query_params.pop(INCIDENT, None)


def _incident() -> AuditScope | None:
    """The actions of ``?incident=``, said in a note with a button that clears it; None without the parameter, or
    (said why) when the incident is unknown or about no agent's actions."""
    wanted = st.query_params.get(INCIDENT)
    if not wanted:
        return None
    scope, problem = _incident_scope(wanted)
    note, clear = st.columns([4, 1], vertical_alignment="center")
    clear.button("Clear the incident filter", key="audit_clear_incident", on_click=_clear_incident,
                 icon=":material/close:")
    if scope is None:
        note.warning(f"{problem}: showing every record.")
        return None
    counts = _run(counts_sql(scope.selection()))
    described = md(sentence(scope, [(str(k), int(r), int(a)) for k, r, a in counts.iter_rows()], local))
    then = (" They failed: nothing to roll back; retry them." if scope.failed else
            " The rollback plan and the downloads cover exactly these.")
    note.info(f"Showing **{scope.incident_id}**: {described}.{then}", icon=":material/filter_alt:")
    return scope


def _incident_scope(wanted: str) -> tuple[AuditScope | None, str]:
    """The actions of the incident named `wanted` (from the URL), or why there are none."""
    try:
        store = incidents() if home().incidents_file.exists() else None  # asking the store would create the file
        if store is None:
            raise AgentwatchError("no incidents file")
        incident, scope = incident_scope(wanted, store.get, store.get_many)
    except AgentwatchError:
        return None, f"There is no incident {md(repr(wanted))} in this home"
    if scope is None:
        return None, f"{incident.id} ({md(incident.check)}) is about no agent's actions"
    return scope, ""


def _filters(latest: datetime, scope: AuditScope | None) -> trail.Selection:
    """Every filter of the page, as a Selection (a bad combination stops the page with a message); an incident's
    actions fix the time range, and the other filters narrow them."""
    when, who, what = st.columns([1, 1, 1])
    if scope is not None:
        choice, start, end = f"the actions of {scope.incident_id}", scope.start, scope.end
        when.caption("**Time range:** the incident's, from its start to its end (or its last firing)")
    else:
        with when:
            choice, start, end = _time_range(latest)
    seen = _run(trail.options_sql(_selection(start, end)))
    agents = who.multiselect("Agents", _keep(seen["agent_id"].unique().to_list(), "audit_agents"),
                             key="audit_agents", placeholder="all agents")
    actions = what.multiselect("Actions", _keep(seen["action"].unique().to_list(), "audit_actions"),
                               key="audit_actions", accept_new_options=True, placeholder="all actions",
                               help="Pick actions, or type a glob such as `email.*` or `lead.*` and press Enter.")
    kind, ident, status = st.columns([1, 1, 1])
    resource_type = kind.selectbox("Resource type", _keep(seen["resource_type"].unique().to_list(),
                                                          "audit_resource_type"),
                                   index=None, key="audit_resource_type", placeholder="any type")
    resource_id = ident.text_input("Resource id", key="audit_resource_id", placeholder="exact id, e.g. L-000123",
                                   help="One record's id, exactly as the CRM spells it.").strip()
    statuses = status.multiselect("Status", list(ACTION_STATUSES), key="audit_status", placeholder="any status")
    filters: dict[str, Any] = dict(
        agents=tuple(agents), actions=tuple(a.strip() for a in actions if a.strip()),
        resource_type=resource_type or None, resource_id=resource_id or None, statuses=tuple(statuses), label=choice)
    if scope is None:
        return _selection(start, end, **filters)
    try:
        return scope.selection(**filters)
    except ValueError as exc:
        st.error(f"These filters cannot be used: {exc}.")
        st.stop()


def _summary(counts: dict[str, Any]) -> None:
    events, writes, gone, not_done = st.columns(4)
    events.metric("Matching events", f"{counts['events']:,}", help="Every action event the filters select.")
    writes.metric("Reversible writes", f"{counts['writes_with_before']:,}",
                  help="Done (status ok) with a before and an after state: their changed fields are in the plan.")
    gone.metric("Irreversible", f"{trail.irreversible_count(counts):,}",
                help="External actions (emails sent, meetings booked), writes without a before state, and writes "
                     "whose before lacks some written fields.")
    not_done.metric("Not done", f"{counts['not_done']:,}",
                    help="Status error, skipped or pending_approval: nothing changed, nothing to roll back.")


def _incident_records(selection: trail.Selection) -> None:
    """The records of the incident's actions, each with its actions: every one, not only those of the latest
    events."""
    records = _run(trail.records_sql(selection))
    with st.expander(f"The {records.height:,} records of these actions"):
        st.dataframe(to_viewer(records, "first", "last").select(
            (pl.col("resource_type") + " " + pl.col("resource_id")).alias("resource"), "actions", "first", "last"),
            hide_index=True, width="stretch", key="audit_records", column_config={
                "first": st.column_config.DatetimeColumn("first action", format="YYYY-MM-DD HH:mm:ss"),
                "last": st.column_config.DatetimeColumn("last action", format="YYYY-MM-DD HH:mm:ss")})


def _events_table(shown: pl.DataFrame) -> int | None:
    """The latest events; returns the row the viewer selected in the table, if any."""
    table = to_viewer(shown, "ts").select(
        pl.col("ts").alias("time"), pl.col("agent_id").alias("agent"), pl.col("agent_version").alias("version"),
        "action", (pl.col("resource_type") + " " + pl.col("resource_id")).alias("resource"), "status",
        pl.col("approved_by").alias("approval"), "records_affected", "confidence", "changes", "event_id")
    picked = st.dataframe(
        table, key="audit_table", on_select="rerun", selection_mode="single-row", hide_index=True,
        width="stretch",
        column_config={
            "time": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm:ss"),
            "approval": st.column_config.TextColumn("approval", help="Who approved the action, when one did."),
            "confidence": st.column_config.NumberColumn("confidence", format="%.2f"),
            "changes": st.column_config.TextColumn("changes", help="field: before -> after; — = not recorded",
                                                   width="large"),
        })
    rows = picked.selection.rows if picked is not None else []
    return rows[0] if rows else None


def _pick_event(shown: pl.DataFrame, table_row: int | None) -> dict[str, Any] | None:
    """The event picker (kept in step with a row selected in the table)."""
    ids = shown["event_id"].to_list()
    if table_row is not None and table_row != st.session_state.get(SEEN_ROW) and table_row < len(ids):
        st.session_state["audit_event"] = ids[table_row]
    st.session_state[SEEN_ROW] = table_row
    rows = {r["event_id"]: r for r in shown.iter_rows(named=True)}  # the shown rows only (at most SHOWN)
    label = {i: f"{local(r['ts'])} · {r['agent_id']} · {r['action']} · {r['resource_type']} {r['resource_id']} · "
                f"{r['status']}" for i, r in rows.items()}
    picked = st.selectbox("Event", ids, index=None, key="audit_event", format_func=lambda i: label.get(i, i),
                          placeholder="select a row in the table, or pick an event here")
    return rows.get(picked) if picked else None


def _event_detail(row: dict[str, Any]) -> None:
    found = _run(trail.event_sql(row["event_id"], row["ts"]))
    if found.is_empty():
        st.warning(f"Event {md(row['event_id'])} is no longer in the store.")
        return
    event = found.row(0, named=True)
    st.subheader(md(f"{event['action']} on {event['resource_type']} {event['resource_id']}"))
    facts = [
        ("event", event["event_id"]), ("time", local(event["ts"])),
        ("agent", f"{event['agent_id']} {event['agent_version'] or ''}".strip()), ("status", event["status"]),
        ("approval", f"{event['approved_by']} at {local(event['approved_at'])}" if event["approved_by"] else "none"),
        ("authorized by", event["authorized_by"]), ("confidence", event["confidence"]),
        ("records affected", event["records_affected"]), ("external", event["external"]),
        ("error", f"{event['error_code']}: {event['error_message'] or ''}" if event["error_code"] else None),
        ("latency", f"{event['latency_ms']:,.0f} ms" if event["latency_ms"] is not None else None),
        ("trace", event["trace_id"]), ("rationale", event["rationale"]),
    ]
    # every value escaped: they come from the event (an approver, an error message, a rationale ...)
    st.markdown("  \n".join(f"**{name}:** {md(value)}" for name, value in facts if value not in (None, "")))
    before, after = trail.as_object(event["before"]), trail.as_object(event["after"])
    if before is None and after is None:
        st.caption("This action recorded no before or after state.")
    else:
        if before is None:
            st.caption("No before state was recorded: this write cannot be rolled back.")
        st.dataframe(trail.diff(before, after), hide_index=True, width="stretch",
                     column_config={"changed": st.column_config.CheckboxColumn("changed?")})
    inputs, decision = st.columns(2)
    inputs.markdown("**inputs** (the fields the agent read)")
    inputs.json(trail.as_object(event["inputs"]) or {}, expanded=True)
    decision.markdown("**decision** (the model's outputs)")
    decision.json(trail.as_object(event["decision"]) or {}, expanded=True)


def _exporter(root: Path, selection: trail.Selection, kind: str) -> Any:
    """A download's content, computed only when the viewer clicks (a plan may have hundreds of thousands of rows)."""
    def build() -> str:
        con = open_reader(Home.resolve(root))
        try:
            return trail.plan_csv(con, selection) if kind == "csv" else trail.plan_json(con, selection)
        finally:
            con.close()
    return build


def _downloads(selection: trail.Selection) -> None:
    zone = viewer_timezone()
    stamp = f"{selection.start.astimezone(zone):%Y%m%d-%H%M}-{selection.end.astimezone(zone):%Y%m%d-%H%M}"
    root = home().root
    csv, js = st.columns(2)
    csv.download_button("Download the plan (CSV)", _exporter(root, selection, "csv"), key="rollback_csv",
                        file_name=f"rollback-plan-{stamp}.csv", mime="text/csv", on_click="ignore",
                        icon=":material/download:", width="stretch",
                        help="The restore steps in order, then the irreversible actions (column `section`); values "
                             "are JSON text. Built when you click, from every matching event.")
    js.download_button("Download the plan (JSON)", _exporter(root, selection, "json"), key="rollback_json",
                       file_name=f"rollback-plan-{stamp}.json", mime="application/json", on_click="ignore",
                       icon=":material/download:", width="stretch",
                       help="`{generated_at, selection, restore: [...], irreversible: [...]}`. Built when you click.")


def _restore_section(selection: trail.Selection, counts: dict[str, Any]) -> None:
    writes = counts["writes_with_before"]
    if writes == 0:
        st.caption("No reversible write in the selection: nothing to restore.")
        return
    if writes > LARGE_PLAN and not st.toggle(
            f"Preview the restore steps of these {writes:,} writes here", key="audit_plan_preview",
            help=f"Above {LARGE_PLAN:,} writes the page waits for you: the preview takes a few seconds. The "
                 "downloads work either way."):
        return
    plan = _run(trail.restore_overview_sql(selection, PREVIEW))
    totals = plan.row(0, named=True)
    steps, fields, again, overwrites = st.columns(4)
    steps.metric("Restore steps", f"{totals['total_rows']:,}", help="One per changed field of each reversible write.")
    fields.metric("Fields restored", f"{totals['total_fields']:,}", help="Distinct record + field pairs.")
    again.metric("Changed again later", f"{totals['total_again']:,}",
                 help="Steps whose field a later write of this plan changed again: apply newest first.")
    overwrites.metric("Overwrite later changes", f"{totals['total_overwrites']:,}",
                      help="Steps whose field was changed later by something this plan does not undo (another "
                           "agent, a write without before, a rep's correction): check those before applying.")
    shown = plan.drop_nulls("step")
    if shown.is_empty():
        st.caption("The reversible writes changed no field (each before equals its after): nothing to restore.")
        return
    if totals["total_rows"] > PREVIEW:
        st.caption(f"The first {PREVIEW:,} of {totals['total_rows']:,} steps; the downloads hold all of them.")
    st.dataframe(
        to_viewer(shown, "ts").select(
            "step", pl.col("ts").alias("time"), pl.col("agent_id").alias("agent"), "action",
            (pl.col("resource_type") + " " + pl.col("resource_id")).alias("resource"), "field",
            pl.col("restore_value").alias("restore"), pl.col("written_value").alias("written"), "final", "note"),
        hide_index=True, width="stretch", key="audit_plan",
        column_config={"time": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm:ss"),
                       "restore": st.column_config.TextColumn("value to restore", help='JSON: "x" is text'),
                       "written": st.column_config.TextColumn("value written", help="The write's after value."),
                       "final": st.column_config.CheckboxColumn("final", help="The earliest write of this record "
                                                                "and field: the value the field ends at."),
                       "note": st.column_config.TextColumn("note (times in UTC)", width="large")})


def _irreversible_section(selection: trail.Selection, counts: dict[str, Any]) -> None:
    total = trail.irreversible_count(counts)
    st.subheader(f"Irreversible actions: {total:,}")
    st.caption(f"{counts['external']:,} external (emails sent, meetings booked), {counts['writes_without_before']:,} "
               f"writes without a before state, {counts['writes_missing_before']:,} writes whose before lacks some "
               "written fields. They are listed apart: no value can undo them.")
    if total == 0:
        return
    if total > PREVIEW:
        st.caption(f"The newest {PREVIEW:,} of {total:,}; the downloads hold all of them.")
    listed = _run(trail.irreversible_preview_sql(selection, PREVIEW))
    st.dataframe(
        to_viewer(listed, "ts").select(
            pl.col("ts").alias("time"), pl.col("agent_id").alias("agent"), "action",
            (pl.col("resource_type") + " " + pl.col("resource_id")).alias("resource"), "kind", "reason", "event_id"),
        hide_index=True, width="stretch", key="audit_irreversible",
        column_config={"time": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm:ss"),
                       "reason": st.column_config.TextColumn("why it cannot be rolled back", width="large")})


def _rollback(selection: trail.Selection, counts: dict[str, Any]) -> None:
    st.header("Rollback plan")
    st.caption(
        "For every reversible write in the selection (all matching events, not only the rows above): the field and "
        "the value to restore. Apply the steps in order, newest write first; each sets the field back to its value "
        "before that write, so a field written several times ends at the before of its **earliest** write in the "
        "selection (the row marked final).")
    _downloads(selection)
    _restore_section(selection, counts)
    _irreversible_section(selection, counts)


require_access()  # already passed under app.py; guards this page if its script is ever served on its own
st.title("Audit trail")
st.caption("Every action the agents took, by agent, action, resource and time, with before/after diffs and a "
           "rollback plan for the selection.")
latest = _latest()
if latest is None:
    empty_state(EMPTY)
    st.stop()
selection = _filters(latest, _incident())
st.caption(f"From **{local(selection.start)}** to **{local(selection.end)}** (your timezone); the ranges end at the "
           f"latest event in the store, {local(latest)}.")
counts = _run(trail.summary_sql(selection)).row(0, named=True)
if counts["events"] == 0:
    empty_state(NOTHING)
    st.stop()
_summary(counts)
if selection.incident:
    _incident_records(selection)
shown = _run(trail.events_sql(selection))
st.markdown(f"Showing the latest **{len(shown):,}** of **{counts['events']:,}** matching events, newest first. "
            "Select a row to see the event in full.")
table_row = _events_table(shown)
row = _pick_event(shown, table_row)
if row is not None:
    _event_detail(row)
_rollback(selection, counts)
