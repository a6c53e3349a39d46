"""One incident in full: header and the buttons that act on it; then what broke, since when, what it did (the records
acted on with bad input, over the incident and its effects, linked to the audit trail) and what to do; then the
signal around its start, its linked incidents, the drift report (drift incidents), the evidence and the sample
events. An effect says which root incident explains it, and links there."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import altair as alt
import duckdb
import polars as pl
import streamlit as st
import streamlit.components.v1 as components

from agentwatch.alerts.properties import incident_properties
from agentwatch.alerts.silences import Silences, operator_name
from agentwatch.app.alerting import notify_unless_served
from agentwatch.checks import damage, incident_audit
from agentwatch.checks.affected import affected_text
from agentwatch.checks.remedies import remedy
from agentwatch.core.durations import parse_duration_text
from agentwatch.core.errors import AgentwatchError
from agentwatch.core.sql import sql_string
from agentwatch.dashboards import context, signals
from agentwatch.dashboards.agent_health import latest_event_at
from agentwatch.dashboards.drift_report import drift_report_html, report_columns, sample_sql
from agentwatch.dashboards.escape import md
from agentwatch.schemas.incidents import Incident
from agentwatch.store.event_keys import event_key

SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}
STATUS_COLORS = {"open": "red", "acknowledged": "orange", "resolved": "green"}
SILENCE_DURATIONS = ["1h", "2h", "8h", "24h"]
MESSAGE_KEY = "incident_message"  # what the last button did, shown once on the next run
ACTUAL_COLOR, BAND_COLOR, EXPECTED_COLOR, START_COLOR = "#1f77b4", "#9ecae9", "#6b6b6b", "#d62728"
NULL_COLOR = "#c7c7c7"
READ_VALUE, READ_NULL = "read a value", "read null"
MAX_DECISIONS = 8  # decision values listed under "What it did", the most records first
AUDIT_PAGE = "views/audit.py"  # served at /audit: the link is audit?incident=INC-n
AUDIT_PARAM = "incident"
SAFE_CODE = re.compile(r"[\w.,{}<>* -]*(?:: [\w.,{}<>* -]*)*")  # no link, image, icon, emoji or math can form


def subject_text(incident: Incident) -> str:
    """The subject as people say it: ``lead-router lead.route``, ``Lead.deal_stage -> opportunity_stage``."""
    subject = dict(incident.subject)
    if "object" in subject and "field" in subject:
        return f"{subject.pop('object')}.{subject.pop('field')}" + "".join(f" {k}={v}" for k, v in subject.items())
    if "agent_id" in subject and "action" in subject:
        return f"{subject.pop('agent_id')} {subject.pop('action')}" + "".join(f" {k}={v}" for k, v in subject.items())
    return " ".join(f"{k}={v}" for k, v in subject.items()) or "-"


def show(incident: Incident, switch: Callable[[str], None]) -> None:
    """The whole detail view; `switch` opens another incident (a linked one)."""
    title, buttons = st.columns([1, 1], vertical_alignment="center")
    with title:
        _title(incident)
    with buttons:
        _buttons(incident)
    _message()
    store = context.incidents()
    root = damage.root_of(incident, store.get_many)
    if root.id != incident.id:
        _explained_by(root, switch)
    _what_broke(incident)
    _since_when(incident)
    _guarded("What it did", lambda i: _what_it_did(i, damage.family(i, store.get_many)), incident)
    _what_to_do(incident, root)
    _silenced_by(incident)
    _guarded("The signal", _signal, incident)
    _links(incident, switch)
    if incident.check == "drift.distribution":
        _drift_report(incident)
    _evidence(incident)
    _guarded("The sample events", _samples, incident)


def _guarded(what: str, part: Callable[[Incident], None], incident: Incident) -> None:
    """A part that reads the store: a store that cannot be read is said on the page, the rest still shows."""
    try:
        part(incident)
    except (duckdb.Error, AgentwatchError) as exc:
        st.warning(f"{what} could not be read from the store: {md(exc)}")


# --- header --------------------------------------------------------------------------------------------------

def _title(incident: Incident) -> None:
    severity = f":{SEVERITY_COLORS[incident.severity]}-badge[{incident.severity}]"
    status = f":{STATUS_COLORS[incident.status]}-badge[{incident.status}]"
    st.subheader(f"{incident.id} · {incident.check}", anchor=False)
    st.markdown(f"{severity} {status} &nbsp; **{md(subject_text(incident))}**")


def duration_text(span: timedelta) -> str:
    """``45 min``, ``5 h 10 min``, ``3 d 4 h``."""
    minutes = max(0, int(span.total_seconds() // 60))
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _explained_by(root: Incident, switch: Callable[[str], None]) -> None:
    st.info(f"Explained by **{root.id}** ({md(root.check)}, {md(subject_text(root))}): this incident is one of its "
            "effects, so fixing that one fixes this one.", icon=":material/account_tree:")
    st.button(f"Open {root.id}, the cause", key="root_link", on_click=switch, args=(root.id,),
              icon=":material/arrow_upward:")


def _what_broke(incident: Incident) -> None:
    st.markdown("#### What broke")
    st.markdown(md(incident.summary))
    evidence = incident.evidence
    if not (incident.check.startswith("schema.") and isinstance(evidence.get("old_field"), str)):
        st.markdown(f"**{md(incident.check)}** on **{md(subject_text(incident))}**")
        return
    change = {"schema.field_renamed": f"was renamed **{md(evidence.get('new_field'))}**",
              "schema.field_removed": "was removed",
              "schema.field_added": "was added",
              "schema.type_changed": f"changed type from {md(evidence.get('from'))} to {md(evidence.get('to'))}",
              "schema.picklist_changed": "changed its picklist values"}.get(incident.check, "changed")
    lines = [f"**{md(evidence.get('object'))}.{md(evidence['old_field'])}** {change} in "
             f"{md(evidence.get('source') or 'the CRM')}: the snapshot of "
             f"{md(_when(evidence.get('previous_snapshot_at')))} had it, the snapshot of "
             f"{md(_when(evidence.get('snapshot_at')))} shows the change."]
    agents = [str(a) for a in evidence.get("agents", [])]
    lines.append(f"**Agents reading it:** {md(', '.join(agents))}" if agents else "No agent reads it.")
    still = [str(a) for a in evidence.get("still_reading", [])]
    if still and incident.check == "schema.field_renamed":
        lines.append(f"**Still reading {md(evidence['old_field'])}:** {md(', '.join(still))}")
    st.markdown("  \n".join(lines))


def _since_when(incident: Incident) -> None:
    st.markdown("#### Since when")
    began, opened = context.local(incident.started_at), context.local(incident.opened_at)
    lines = [f"**Began** {began} · **opened** {opened}, {duration_text(incident.opened_at - incident.started_at)} "
             "later"]
    shown = _time(incident.evidence.get("snapshot_at"))
    if shown is not None and shown > incident.started_at:
        lines.append(f"The change lies between the last value an agent read ({began}) and the first snapshot that "
                     f"shows it ({context.local(shown)}).")
    if incident.resolved_at:
        lines.append(f"**Resolved** {context.local(incident.resolved_at)}: it lasted "
                     f"{duration_text(incident.resolved_at - incident.started_at)}.")
    else:
        now = datetime.now(UTC)
        latest = latest_event_at() or now
        until = f"to the latest event, {context.local(latest)}" if latest < now - timedelta(hours=1) else "now"
        lines.append(f"**Still {incident.status}**: {duration_text(min(now, latest) - incident.started_at)} since it "
                     f"began ({until}); the check last fired {context.local(incident.last_fired_at)}.")
    if incident.acknowledged_at:
        lines.append(f"**Acknowledged** {context.local(incident.acknowledged_at)}"
                     + (f" by {md(incident.acknowledged_by)}" if incident.acknowledged_by else ""))
    lines.append(f"**Affected** {md(affected_text(incident))}")
    st.markdown("  \n".join(lines))


def _what_it_did(incident: Incident, tree: list[Incident]) -> None:
    """The records acted on with bad input since it began, over the incident and its effects (each record once),
    the decisions taken on them (or the records its failed actions left undone), and the link to exactly those
    actions in the audit trail; without such a measure, the link to its subject's actions over its range."""
    st.markdown("#### What it did")
    found = damage.sources(tree)
    scope = incident_audit.audit_scope(incident, tree)
    if not found:
        st.markdown(f"**Affected** {md(affected_text(incident))}.")
        st.caption(f"{md(incident.check)} measures no records acted on with bad input"
                   + (" (nor do its effects)" if len(tree) > 1 else "")
                   + ": the evidence and the sample events below show what happened.")
        if scope is not None:
            _subject_link(scope)
        return
    summary = context.query(*_flatten(damage.summary_sql(found, MAX_DECISIONS)))
    totals = summary.filter(pl.col("part") == "total")
    if totals.is_empty():
        st.markdown("No record was acted on with bad input since it began.")
        return
    bad = [s for s in found if not s.failed]
    how = "; ".join(f"{md(s.bad_input)} ({s.incident_id}{'' if s.exact else ', an upper bound'})" for s in bad)
    undone = "; ".join(f"{md(s.bad_input)} ({s.incident_id})" for s in found if s.failed)
    for kind, failed, records, actions in totals.select("resource_type", "failed", "records", "actions").iter_rows():
        if failed:
            words = md(scope.failed_words) if scope is not None and scope.failed_words else "not acted on"
            st.markdown(f"**{md(damage.plural(kind, records))}** {words} (the actions failed): {actions:,} "
                        f"actions, {undone}.")
        else:
            st.markdown(f"**{md(damage.plural(kind, records))}** acted on with bad input since it began, in "
                        f"{actions:,} actions: {how}.")
    having = bad[0].records_with if len({s.records_with for s in bad}) == 1 else ""
    taken = summary.filter(pl.col("part") == "decision").select("resource_type", "decision", "value", "records")
    lines = [decision_line(kind, key, value, count, having) for kind, key, value, count in taken.iter_rows()]
    lines += [f"- and {more:,} more decisions ({md(damage.plural(kind, records))})" for kind, more, records in
              summary.filter(pl.col("part") == "more").select("resource_type", "decisions", "records").iter_rows()]
    if lines:
        st.markdown("**Decisions taken on them:**\n" + "\n".join(lines))
    actions, records = int(totals["actions"].sum()), int(totals["records"].sum())
    if scope is not None and scope.failed:
        label = f"See these {actions:,} failed actions in the audit trail"
    elif scope is not None and scope.carried:  # the link selects the writes that carried the decisions out too
        counts = context.query(*_flatten(incident_audit.counts_sql(scope.selection())))
        selected = int(counts["actions"].sum())
        label = (f"See these {actions:,} actions on {records:,} records in the audit trail, with the "
                 f"{selected - actions:,} writes that carried out their decisions, and their rollback plan")
    else:
        label = (f"See these {actions:,} actions on {records:,} records in the audit trail, with their rollback "
                 "plan")
    st.page_link(AUDIT_PAGE, label=label, query_params={AUDIT_PARAM: incident.id}, icon=":material/history:")


def _subject_link(scope: incident_audit.AuditScope) -> None:
    """The link to the incident's subject's actions over its range (an incident without a damage measure)."""
    counts = context.query(*_flatten(incident_audit.counts_sql(scope.selection())))
    actions = int(counts["actions"].sum()) if not counts.is_empty() else 0
    if actions == 0:
        st.caption(f"No {md(scope.what)} from {context.local(scope.start)} to {context.local(scope.end)} in the "
                   "store.")
        return
    st.page_link(AUDIT_PAGE, label=f"See the {actions:,} {md(scope.what)} from {context.local(scope.start)} to "
                 f"{context.local(scope.end)} in the audit trail", query_params={AUDIT_PARAM: scope.incident_id},
                 icon=":material/history:")


def decision_line(kind: str, key: str, value: str, count: int, having: str) -> str:
    """A Markdown bullet a sales leader reads: ``- **295** leads with opportunity_id set routed to nurture
    (route_to=nurture)`` (every value from events escaped)."""
    number, _, things = damage.plural(kind, count).partition(" ")
    words = " ".join(part for part in (things, having, damage.decision_words(key, value)) if part)
    return f"- **{number}** {md(words)} ({md(f'{key}={value}')})"


def _what_to_do(incident: Incident, root: Incident) -> None:
    st.markdown("#### What to do")
    if root.id != incident.id:
        st.markdown(f"Fix the cause first, **{root.id}**: {inline(remedy(root).text)}")
        st.caption(f"For this incident itself: {inline(remedy(incident).text)}")
        return
    fix = remedy(incident)
    st.markdown(inline(fix.text))
    if fix.config:
        st.code(fix.config, language="yaml")


def inline(text: str) -> str:
    """Text from :mod:`agentwatch.checks.remedies` as Markdown: its `code` spans kept where they hold only plain
    names (letters, digits, ``_ . , { } < > * -``, a colon before a space), everything else escaped."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code spans at all
        return md(text)
    return "".join(f"`{part}`" if odd and SAFE_CODE.fullmatch(part) else md(part)
                   for odd, part in ((n % 2 == 1, part) for n, part in enumerate(parts)))


# --- acknowledge, resolve, silence ---------------------------------------------------------------------------

def _message() -> None:
    """What the last button did (set by its callback), shown once."""
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message:
        (st.success if message[0] == "success" else st.error)(message[1])


def _buttons(incident: Incident) -> None:
    ack, resolve, silence = st.columns([4, 3, 3])
    ack.button("Acknowledge", key="ack_button", icon=":material/check:", disabled=incident.status != "open",
               on_click=_set_status, args=(incident.id, "acknowledged"), width="stretch",
               help="Someone is on it: the alert stops reminding (only an open incident can be acknowledged).")
    resolve.button("Resolve", key="resolve_button", icon=":material/done_all:", disabled=incident.status == "resolved",
                   on_click=_set_status, args=(incident.id, "resolved"), width="stretch",
                   help="Fixed: closes the incident (the check opens a new one if it fires again).")
    with silence.popover("Silence", icon=":material/notifications_off:", width="stretch"):
        _silence_form(incident)


def _set_status(incident_id: str, status: str) -> None:
    try:
        updated = context.incidents().set_status(incident_id, status, by=operator_name())
    except AgentwatchError as exc:
        st.session_state[MESSAGE_KEY] = ("error", md(exc))
        return
    st.session_state[MESSAGE_KEY] = ("success", f"{incident_id} is now {updated.status}.")
    _notify()


def _notify() -> None:
    """Tell the destinations now when no server runs for the home (a running server does within a second), as
    `agentwatch incident ack` does."""
    try:
        notify_unless_served(context.home(), context.config_path())
    except AgentwatchError as exc:
        st.session_state[MESSAGE_KEY] = ("warning", f"notifications were not sent: {md(exc)}")


def silence_matchers(incident: Incident) -> list[tuple[str, str]]:
    """The check, and the subject's agent or else its field (glob characters escaped so they match literally)."""
    matchers = [("check", _literal(incident.check))]
    if "agent_id" in incident.subject:
        matchers.append(("agent_id", _literal(incident.subject["agent_id"])))
    elif "field" in incident.subject:
        matchers.append(("field", _literal(incident.subject["field"])))
    return matchers


def _literal(value: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in value)


def _silence_form(incident: Incident) -> None:
    matchers = silence_matchers(incident)
    st.caption("Holds back notifications of incidents matching " + " ".join(f"**{md(k)}={md(v)}**" for k, v in matchers)
               + " (they are still recorded and shown here).")
    with st.form("silence_form", border=False):
        st.selectbox("For", SILENCE_DURATIONS, index=1, key="silence_for")
        st.text_input("Why", key="silence_comment", placeholder="e.g. fix deploying, expect noise until 15:00")
        st.form_submit_button("Silence", key="silence_button", icon=":material/notifications_off:",
                              on_click=_silence, args=(incident,))


def _silence(incident: Incident) -> None:
    duration = parse_duration_text(st.session_state.get("silence_for") or SILENCE_DURATIONS[1])
    try:
        silence = Silences(context.alerts()).add(silence_matchers(incident), duration,
                                                 st.session_state.get("silence_comment") or "", operator_name())
    except AgentwatchError as exc:
        st.session_state[MESSAGE_KEY] = ("error", f"not silenced: {md(exc)}")
        return
    st.session_state[MESSAGE_KEY] = (
        "success", f"Silenced as {silence.id} until {context.local(silence.ends_at)} ({md(silence.describe())}).")


def _silenced_by(incident: Incident) -> None:
    try:
        silence = Silences(context.alerts()).silenced_by(incident_properties(incident))
    except AgentwatchError as exc:
        st.caption(f"silences cannot be read: {md(exc)}")
        return
    if silence is not None:
        st.caption(f":material/notifications_off: Notifications held back by {silence.id} until "
                   f"{context.local(silence.ends_at)} ({md(silence.describe())}; {md(silence.created_by)}: "
                   f"{md(silence.comment)})")


# --- the signal ----------------------------------------------------------------------------------------------

def _signal(incident: Incident) -> None:
    st.markdown("#### Signal around the start")
    signal = signals.signal_for(incident)
    if signal is None:
        st.caption("This incident's subject has no event signal to chart (no agent reads it, or it is about "
                   "outcomes or snapshots); the evidence below has the numbers.")
        return
    if signal.frame.is_empty():
        context.empty_state(f"No events of {md(signal.title.split(':')[0])} between "
                            f"{context.local(signals.window(incident)[0])} and now to chart.")
        return
    if signal.reads:
        every, with_value = reads_chart(signal)
        st.altair_chart(every, width="stretch", key="signal_chart")
        st.altair_chart(with_value, width="stretch", key="signal_values_chart")
        st.caption(f"{md(signal.title)}, {signal.measure}: the reads that carried a value (blue) and those that came "
                   f"back null or missing (grey), stacked; below, the reads with a value alone; red rule: when the "
                   f"incident began. The tooltip has the null share and {md(signal.band)}. Times in "
                   f"{context.viewer_timezone()}.")
        return
    st.altair_chart(signal_chart(signal), width="stretch", key="signal_chart")
    st.caption(f"{md(signal.title)}, {signal.measure}. Line: what happened; shaded band and dashed line: the usual "
               f"range and level ({signal.band}); red rule: when the incident began. Times in "
               f"{context.viewer_timezone()}.")


def signal_chart(signal: signals.Signal) -> alt.LayerChart:
    """Actual as a line over the usual band (an area) and its median (dashed), a rule at the start."""
    frame = context.to_viewer(signal.frame, "bucket")
    number = ".0%" if signal.share else ",.0f"
    legend = alt.Scale(domain=["actual", "usual range (10th-90th pct)", "usual (median)"],
                       range=[ACTUAL_COLOR, BAND_COLOR, EXPECTED_COLOR])
    series = alt.Color("series:N", scale=legend, title=None)
    x = alt.X("bucket:T", title=None, axis=alt.Axis(format="%b %d %H:%M", labelAngle=0))
    y_title = signal.measure
    base = alt.Chart(frame)
    band = base.mark_area(opacity=0.45).encode(
        x=x, y=alt.Y("low:Q", title=y_title, axis=alt.Axis(format=number), scale=alt.Scale(zero=not signal.share)),
        y2="high:Q", color=series).transform_calculate(series="'usual range (10th-90th pct)'")
    expected = base.mark_line(strokeDash=[4, 3], strokeWidth=1.2).encode(
        x=x, y="expected:Q", color=series).transform_calculate(series="'usual (median)'")
    tooltip = [alt.Tooltip("bucket:T", title="from", format="%Y-%m-%d %H:%M"),
               alt.Tooltip("actual:Q", format=number), alt.Tooltip("expected:Q", title="usual", format=number),
               alt.Tooltip("low:Q", format=number), alt.Tooltip("high:Q", format=number)]
    if "reads" in frame.columns:
        tooltip.append(alt.Tooltip("reads:Q", format=","))
    actual = base.mark_line(strokeWidth=1.6, interpolate="step-after").encode(
        x=x, y="actual:Q", color=series, tooltip=tooltip).transform_calculate(series="'actual'")
    return alt.layer(band, expected, actual, *_start_marks(signal)).properties(height=300).configure_legend(
        orient="top", title=None)


def reads_chart(signal: signals.Signal) -> tuple[alt.LayerChart, alt.LayerChart]:
    """A field's reads per hour as stacked bars, those with a value under those that came back null, and below them
    the reads with a value alone, on their own scale: values vanishing (a rename) show as the blue bars going, even
    where most reads were null anyway (a null share would only move along the top edge, from 83% to 100%)."""
    frame = context.to_viewer(signal.frame, "bucket").with_columns(
        (pl.col("bucket") + pl.duration(hours=1)).alias("bucket_end"))
    kinds = alt.Scale(domain=[READ_VALUE, READ_NULL], range=[ACTUAL_COLOR, NULL_COLOR])
    x = alt.X("bucket:T", title=None, axis=alt.Axis(format="%b %d %H:%M", labelAngle=0))
    tooltip = [alt.Tooltip("bucket:T", title="from", format="%Y-%m-%d %H:%M"),
               alt.Tooltip("reads:Q", format=","), alt.Tooltip("values:Q", title="with a value", format=","),
               alt.Tooltip("nulls:Q", title="null", format=","),
               alt.Tooltip("actual:Q", title="null share", format=".0%"),
               alt.Tooltip("expected:Q", title="usual null share", format=".0%")]
    base = alt.Chart(frame)
    color = alt.Color("read:N", scale=kinds, title=None)
    # explicit ranges (y to y2) rather than Vega-Lite's stack, which a ranged x (x to x2) turns into points
    values = base.mark_bar().encode(x=x, x2="bucket_end:T", y=alt.Y("values:Q", title=signal.measure),
                                    y2=alt.datum(0), color=color, tooltip=tooltip).transform_calculate(
        read=f"'{READ_VALUE}'")
    nulls = base.mark_bar().encode(x=x, x2="bucket_end:T", y="reads:Q", y2="values:Q", color=color,
                                   tooltip=tooltip).transform_calculate(read=f"'{READ_NULL}'")
    alone = alt.Chart(frame.select("bucket", "bucket_end", "values")).mark_bar(color=ACTUAL_COLOR).encode(
        x=x, x2="bucket_end:T", y=alt.Y("values:Q", title="with a value"), y2=alt.datum(0),
        tooltip=[tooltip[0], alt.Tooltip("values:Q", title="reads with a value", format=",")])
    # two charts: Streamlit stretches each to the page's width, a concatenation would overflow it
    return (alt.layer(values, nulls, *_start_marks(signal)).properties(height=240).configure_legend(
                orient="top", title=None),
            alt.LayerChart(layer=[alone, *_start_marks(signal)], height=100))


def _start_marks(signal: signals.Signal) -> tuple[alt.Chart, alt.Chart]:
    """The red rule at the incident's start, labelled."""
    start = context.to_viewer(pl.DataFrame({"started_at": [signal.started_at]}), "started_at")
    rule = alt.Chart(start).mark_rule(color=START_COLOR, strokeDash=[6, 3], strokeWidth=1.5).encode(x="started_at:T")
    label = alt.Chart(start).mark_text(color=START_COLOR, align="left", dx=4, dy=-4, baseline="top").encode(
        x="started_at:T", y=alt.value(0), text=alt.value("began"))
    return rule, label


# --- linked incidents ----------------------------------------------------------------------------------------

def _links(incident: Incident, switch: Callable[[str], None]) -> None:
    if not incident.caused_by and not incident.effects:
        return
    st.markdown("#### Linked incidents")
    linked = {i.id: i for i in context.incidents().get_many([*incident.caused_by, *incident.effects])}
    for title, ids in (("Caused by", incident.caused_by), ("Effects (this incident explains them)", incident.effects)):
        if not ids:
            continue
        st.markdown(f"**{title}**")
        for linked_id in ids:
            other = linked.get(linked_id)
            if other is None:
                st.markdown(f"- {md(linked_id)} (no longer stored)")
                continue
            st.button(f"{other.id} · {other.severity} · {other.status} · {other.check} · {md(subject_text(other))}",
                      key=f"link_{other.id}", on_click=switch, args=(other.id,), type="tertiary",
                      icon=":material/link:", help=md(other.summary))


# --- drift report --------------------------------------------------------------------------------------------

def _drift_report(incident: Incident) -> None:
    evidence = incident.evidence
    st.markdown("#### Drift report (Evidently)")
    html = evidence.get("report_html")
    if isinstance(html, str) and html.strip():
        with st.expander("Evidently report", expanded=True):
            components.html(html, height=700, scrolling=True)
        return
    scores = drift_scores(incident)
    if scores.is_empty():
        st.caption("This drift incident keeps no per-column scores.")
        return
    windows = [evidence.get(k) or {} for k in ("reference_window", "current_window")]
    st.caption(" · ".join(
        f"**{name}** {md(_when(w.get('start')))} to {md(_when(w.get('end')))} ({_count(w.get('events'))} events, "
        f"{_count(w.get('sampled_rows'))} sampled)" for name, w in zip(("Reference", "Current"), windows, strict=True)
        if w) + ". Score: normed Wasserstein distance (numbers) or Jensen-Shannon distance (categories); a column "
        "drifted when it reaches the threshold plus its noise margin.")
    chart = alt.Chart(scores).mark_bar().encode(
        x=alt.X("score:Q", title="drift score"), y=alt.Y("column:N", sort="-x", title=None),
        color=alt.Color("drifted:N", scale=alt.Scale(domain=[True, False], range=[START_COLOR, BAND_COLOR]),
                        legend=alt.Legend(title="drifted", orient="top")),
        tooltip=["column", "role", alt.Tooltip("score:Q", format=".3f"), "threshold", "drifted"])
    threshold = alt.Chart(scores.head(1)).mark_rule(strokeDash=[4, 3], color=EXPECTED_COLOR).encode(x="threshold:Q")
    st.altair_chart(alt.layer(chart, threshold).properties(height=alt.Step(22)), width="stretch", key="drift_chart")
    st.dataframe(scores, hide_index=True, key="drift_table", column_config={
        "score": st.column_config.NumberColumn(format="%.4f")})
    for name, described in (evidence.get("columns") or {}).items():
        _drifted_column(name, described)
    _evidently_report(incident)
    report = [m for m in evidence.get("report", []) if isinstance(m, dict)]
    if report:
        st.caption(f"Evidently ValueDrift results ({md(_when(evidence.get('report_at')))})")
        st.dataframe(pl.DataFrame([{"column": str(m.get("column")), "method": str(m.get("method")),
                                    "threshold": _number(m.get("threshold")), "value": _number(m.get("value"))}
                                   for m in report]), hide_index=True, key="evidently_table")


def _evidently_report(incident: Incident) -> None:
    """Evidently's full data drift report, rebuilt from the store on request (a few seconds)."""
    if not st.toggle("Show Evidently's full data drift report", key="evidently_toggle",
                     help="Samples the reference and current windows from the store and runs Evidently's "
                          "DataDriftPreset on them (a few seconds the first time)."):
        return
    with st.spinner("Building Evidently's report ..."):
        html = _report_html(incident.model_dump_json())
    if html is None:
        st.caption("The windows of this incident hold no events any more.")
    else:
        components.html(html, height=900, scrolling=True)


@st.cache_data(show_spinner=False, max_entries=8)
def _report_html(incident_json: str) -> str | None:

    incident = Incident.model_validate_json(incident_json)
    rows = context.query(*_flatten(sample_sql(incident, report_columns(incident))))
    if rows.is_empty() or rows["sample"].n_unique() < 2:
        return None
    return drift_report_html(incident, rows)


def _flatten(sql_and_params: tuple[str, list]) -> list:
    sql, params = sql_and_params
    return [sql, *params]


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def drift_scores(incident: Incident) -> pl.DataFrame:
    """column, role, score, threshold, drifted: every compared column of a drift incident, highest score first."""
    evidence = incident.evidence
    described = evidence.get("columns") or {}
    drifted = set(evidence.get("drifted_columns") or [])
    thresholds = [float(d["threshold"]) for d in described.values() if isinstance(d, dict) and d.get("threshold")]
    threshold = thresholds[0] if thresholds else 0.1
    rows = [{"column": str(name), "role": _role(str(name), described.get(name)), "score": _number(score),
             "threshold": threshold, "drifted": name in drifted}
            for name, score in (evidence.get("scores") or {}).items()]
    schema = {"column": pl.String, "role": pl.String, "score": pl.Float64, "threshold": pl.Float64,
              "drifted": pl.Boolean}
    return pl.DataFrame(rows, schema=schema).sort("score", descending=True, nulls_last=True)


def _role(name: str, described: Any) -> str:
    if isinstance(described, dict) and described.get("role"):
        return str(described["role"])
    return "input" if name.startswith("inputs.") else "decision"


def _drifted_column(name: str, described: Any) -> None:
    if not isinstance(described, dict):
        return
    if described.get("shares"):
        shares = pl.DataFrame(described["shares"]).select(
            pl.col("value").cast(pl.String), pl.col("reference").cast(pl.Float64), pl.col("current").cast(pl.Float64))
        long = shares.unpivot(["reference", "current"], index="value", variable_name="window", value_name="share")
        chart = alt.Chart(long).mark_bar().encode(
            x=alt.X("share:Q", axis=alt.Axis(format=".0%")), y=alt.Y("value:N", title=None),
            yOffset="window:N", color=alt.Color("window:N", scale=alt.Scale(
                domain=["reference", "current"], range=[BAND_COLOR, ACTUAL_COLOR]), legend=alt.Legend(orient="top")),
            tooltip=["value", "window", alt.Tooltip("share:Q", format=".1%")])
        st.markdown(f"**{md(name)}**: share of events per value, reference vs current")
        st.altair_chart(chart.properties(height=alt.Step(16)), width="stretch", key=f"drift_shares_{name}")
    elif isinstance(described.get("reference"), dict) and isinstance(described.get("current"), dict):
        stats = pl.DataFrame([{"window": w, **{k: _number(v) for k, v in described[w].items()}}
                              for w in ("reference", "current")])
        st.markdown(f"**{md(name)}**: reference vs current")
        st.dataframe(stats, hide_index=True, key=f"drift_stats_{name}")


# --- evidence and samples ------------------------------------------------------------------------------------

def evidence_rows(evidence: dict[str, Any]) -> pl.DataFrame:
    """key, value: scalars as text, lists of scalars joined, nested values as compact JSON."""
    rows = []
    for key, value in evidence.items():
        if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
            text = ", ".join("null" if v is None else str(v) for v in value) or "(none)"
        elif isinstance(value, dict | list):
            text = json.dumps(value, separators=(", ", ": "), default=str)
        elif isinstance(value, float):
            text = f"{value:.4g}"
        else:
            text = "null" if value is None else str(value)
        rows.append({"key": str(key), "value": text})
    return pl.DataFrame(rows, schema={"key": pl.String, "value": pl.String})


def _evidence(incident: Incident) -> None:
    st.markdown("#### Evidence")
    if not incident.evidence:
        st.caption("This incident keeps no evidence.")
        return
    rows = evidence_rows(incident.evidence)
    st.dataframe(rows, hide_index=True, key="evidence_table", height=_table_height(rows.height), column_config={
        "key": st.column_config.TextColumn(width="small"), "value": st.column_config.TextColumn(width="large")})


def sample_events(incident: Incident) -> pl.DataFrame:
    """The incident's sample events from the actions view, oldest first. Checks pick them near the start (the
    first null reads, the spike's events) or near the last firing (drift's current window), so only the days
    around those two moments are read (the ``day`` partitions prune the rest)."""
    ids = list(dict.fromkeys(incident.sample_event_ids))
    if not ids:
        return pl.DataFrame()
    last = incident.last_fired_at
    moments = (incident.started_at, incident.started_at + timedelta(days=1), last - timedelta(days=1), last)
    days = ", ".join(sorted({f"DATE '{m.astimezone(UTC).date().isoformat()}'" for m in moments}))
    keys = ", ".join(str(event_key(i)) for i in ids)
    names = ", ".join(sql_string(i) for i in ids)
    return context.query(
        f"SELECT event_id, ts, agent_id, action, resource_type || '/' || resource_id AS resource, status, "
        f"CAST(decision AS VARCHAR) AS decision FROM actions WHERE day IN ({days}) "
        f"AND event_key IN ({keys}) AND event_id IN ({names}) ORDER BY ts, event_id")


def _samples(incident: Incident) -> None:
    st.markdown("#### Sample events")
    if not incident.sample_event_ids:
        st.caption("This incident keeps no sample events (schema changes point at snapshots, not events).")
        return
    found = sample_events(incident)
    if found.is_empty():
        st.caption(f"The {len(incident.sample_event_ids)} sample events are not in the store around the incident's "
                   "start or last firing (removed by retention?).")
        return
    frame = found.filter(pl.col("ts").dt.convert_time_zone("UTC") >= incident.started_at)  # not the traffic before
    if frame.height < found.height:
        st.caption(f"{found.height - frame.height} of the sample events are from before the incident began "
                   f"({context.local(incident.started_at)}): not shown, they show the usual traffic.")
    if frame.is_empty():
        return
    st.dataframe(context.to_viewer(frame, "ts"), hide_index=True, key="samples_table", column_config={
        "ts": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm:ss z"),
        "decision": st.column_config.TextColumn(width="large")})


def _table_height(rows: int) -> int:
    """Tall enough for every row up to 20, then it scrolls."""
    return 38 + 35 * min(max(rows, 1), 20)


def _when(value: Any) -> str:
    at = _time(value)
    return context.local(at) if at else value if isinstance(value, str) else "-"


def _time(value: Any) -> datetime | None:
    """An ISO time from the evidence, else None."""
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return at.replace(tzinfo=at.tzinfo or UTC) if at else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
