"""The agents page: one agent's volume by action type against its expected band, its error share, whether the
guard lets it act (pause and resume from here) and its latest incidents."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from agentwatch.alerts.guard import AgentControls
from agentwatch.alerts.silences import operator_name
from agentwatch.core.errors import AgentwatchError
from agentwatch.dashboards import agent_health as health
from agentwatch.dashboards.context import alerts, config, empty_state, incidents, local, to_viewer
from agentwatch.dashboards.escape import md
from agentwatch.dashboards.ranges import range_ending

EMPTY = "No action events yet: `agentwatch ingest actions ...` or POST /v1/actions"
DEFAULT_RANGE = "Last 7 days"
FLASH = "agents_flash"
TIME_FORMAT = "YYYY-MM-DD HH:mm z"


def _controls() -> AgentControls:
    return AgentControls(alerts())


def _operate(action: str, agent_id: str) -> None:
    """The pause / resume buttons' callback: record the operator's control, say what happened."""
    reason_key = f"{action}_reason"
    try:
        control = getattr(_controls(), action)(agent_id, operator_name(), st.session_state.get(reason_key, ""))
    except AgentwatchError as exc:
        st.session_state[FLASH] = ("error", md(exc))
        return
    st.session_state[reason_key] = ""
    done = "paused" if control.action == "pause" else "resumed"
    st.session_state[FLASH] = ("success", f"{md(agent_id)} {done} by {md(control.by)}: {md(control.reason)}")


def _pick_agent(agents: pl.DataFrame) -> str:
    names = agents["agent_id"].to_list()
    volume = dict(zip(names, agents["events"].to_list(), strict=True))
    wanted = st.query_params.get("agent")
    index = names.index(wanted) if wanted in names else 0
    return st.selectbox("Agent", names, index=index, key="agent_pick",
                        format_func=lambda a: f"{a} ({volume.get(a, 0):,} events)")


def _delta(now: float | None, before: float | None, fmt: str) -> str | None:
    if now is None or before is None:
        return None
    return format(now - before, fmt)


def _metrics(totals: health.Totals, span_label: str) -> None:
    has_previous = totals.previous_events > 0
    events, errors, share, rate = st.columns(4)
    events.metric("Events", f"{totals.events:,}", help=f"Action events in the range; the delta is against the "
                  f"{span_label.lower().removeprefix('last ')} before it.",
                  delta=_delta(totals.events, totals.previous_events, "+,") if has_previous else None)
    errors.metric("Errors", f"{totals.errors:,}", help="Events with status 'error'.", delta_color="inverse",
                  delta=_delta(totals.errors, totals.previous_errors, "+,") if has_previous else None)
    now_share, before_share = totals.error_share, totals.previous_error_share
    share.metric("Error share", "-" if now_share is None else f"{now_share:.2%}", delta_color="inverse",
                 help="Errors per event; the delta is in percentage points.",
                 delta=None if now_share is None or before_share is None
                 else f"{(now_share - before_share) * 100:+.2f} pp")
    rate.metric("Actions per hour", f"{totals.per_hour:,.1f}", help="Events in the range per hour of the range.",
                delta=_delta(totals.per_hour, totals.previous_per_hour, "+,.1f") if has_previous else None)


def volume_chart(by_action: pl.DataFrame, band: pl.DataFrame) -> alt.LayerChart | alt.FacetChart:
    """Stacked events per hour by action type, the expected band (10th-90th percentile) and its median."""
    hour = alt.X("hour:T", title=None)
    stacked = alt.Chart(by_action).mark_area(opacity=0.85).encode(
        hour, alt.Y("events:Q", stack="zero", title="events per hour"),
        alt.Color("action:N", title="action"),
        tooltip=[alt.Tooltip("hour:T", format="%Y-%m-%d %H:%M"), "action:N", alt.Tooltip("events:Q", format=",")])
    expected = band.drop_nulls("median")
    area = alt.Chart(expected).mark_area(opacity=0.25, color="gray").encode(
        hour, alt.Y("low:Q"), alt.Y2("high:Q"),
        tooltip=[alt.Tooltip("hour:T", format="%Y-%m-%d %H:%M"), alt.Tooltip("low:Q", title="10th pct", format=",.0f"),
                 alt.Tooltip("median:Q", format=",.0f"), alt.Tooltip("high:Q", title="90th pct", format=",.0f"),
                 alt.Tooltip("weeks:Q", title="weeks of history")])
    median = alt.Chart(expected).mark_line(color="black", strokeDash=[5, 3], strokeWidth=1.5).encode(
        hour, alt.Y("median:Q"))
    return alt.layer(stacked, area, median).properties(height=320)


def error_chart(errors: pl.DataFrame) -> alt.Chart:
    """The share of events with status 'error' per hour."""
    return alt.Chart(errors.drop_nulls("error_share")).mark_line(point=alt.OverlayMarkDef(size=12), color="#d62728") \
        .encode(alt.X("hour:T", title=None), alt.Y("error_share:Q", title="error share", axis=alt.Axis(format="%")),
                tooltip=[alt.Tooltip("hour:T", format="%Y-%m-%d %H:%M"),
                         alt.Tooltip("error_share:Q", format=".2%", title="error share"),
                         alt.Tooltip("errors:Q", format=","), alt.Tooltip("events:Q", format=",")]) \
        .properties(height=200)


def _activity(agent_id: str, span_label: str) -> None:
    latest = health.latest_event_at()
    if latest is None:  # every action of the store is in the future: nothing has happened yet
        empty_state(EMPTY)
        return
    window = range_ending(latest, health.RANGES[span_label])
    st.caption(f"{local(window.start)} to {local(window.end)}: the range ends with the hour of the latest event "
               f"in the store ({local(latest)}); deltas compare with the same length of time before it.")
    history = health.hourly_history(agent_id, window)
    totals = health.totals(history, window)
    _metrics(totals, span_label)
    if totals.events == 0:
        empty_state(f"{md(agent_id)} took no action in this range: pick a longer range, or look at the audit trail.")
        return
    by_action = health.hourly_by_action(history, window)
    band = health.expected_band(history, window, health.first_event_at())
    st.subheader("Events per hour by action type")
    st.altair_chart(volume_chart(to_viewer(by_action, "hour"), to_viewer(band, "hour")), width="stretch")
    weeks = int(band.select(pl.max("weeks")).item() or 0) if band.height else 0
    note = ""
    if weeks == 0:
        note = " No band here: the store holds no earlier week for this range."
    elif weeks < health.BAND_WEEKS:
        note = f" The store holds only {weeks} earlier week{'s' if weeks > 1 else ''} for this range."
    st.caption(f"Grey band: the 10th to 90th percentile of the agent's total events in the same hour of the week "
               f"over the previous {health.BAND_WEEKS} weeks; dashed line: their median.{note}")
    st.subheader("Error share per hour")
    st.altair_chart(error_chart(to_viewer(health.hourly_errors(by_action), "hour")), width="stretch")


def _model_calls(agent_id: str, span_label: str) -> None:
    """What OpenTelemetry says besides actions: model calls, their tokens and errors, and unmatched spans."""
    latest = health.latest_event_at()
    if latest is None:
        return
    window = range_ending(latest, health.RANGES[span_label])
    kinds = health.span_kinds(agent_id, window)
    st.subheader("Model calls and other spans (OpenTelemetry)")
    if not kinds:
        st.caption(f"No OpenTelemetry span of {md(agent_id)} besides its actions in this range (POST /v1/traces; "
                   "docs/otlp.md).")
        return
    models = health.model_calls(agent_id, window)
    calls, errors, tokens, unmatched = st.columns(4)
    calls.metric("Model calls", f"{kinds.get('model', 0):,}", help="Chat, completion and embeddings spans.")
    errors.metric("Model call errors", f"{int(models['errors'].sum()):,}")
    tokens.metric("Tokens in / out", f"{int(models['input_tokens'].sum()):,} / {int(models['output_tokens'].sum()):,}")
    unmatched.metric("Unmatched spans", f"{kinds.get('unmatched', 0):,}",
                     help="Spans no rule recognised: neither a tool (an action), a model call nor an agent run. "
                          "Many of them may be tools the OTLP mapping misses (docs/otlp.md).")
    if models.height:
        st.dataframe(models, hide_index=True, key="agent_models")
    st.caption(f"Agent runs: {kinds.get('agent', 0):,}; other GenAI or OpenInference spans (retrieval, guardrails, "
               f"...): {kinds.get('other', 0):,}.")


def _pause_state(agent_id: str) -> None:
    st.subheader("Pause state")
    controls = _controls()
    decision = health.pause_state(agent_id, incidents().unresolved_critical(), controls, config().guard)
    if decision.allowed:
        st.success(f"**{md(agent_id)}**: {md(health.describe(decision))}: the guard lets it act on its own.",
                   icon=":material/play_circle:")
    else:
        st.error(f"**{md(agent_id)}**: {md(health.describe(decision))}", icon=":material/pause_circle:")
    flash = st.session_state.pop(FLASH, None)
    if flash:
        (st.success if flash[0] == "success" else st.warning)(flash[1])
    pause, resume = st.columns(2)
    with pause:
        st.text_input("Reason to pause", key="pause_reason", placeholder="e.g. routing to the wrong queue")
        st.button("Pause", key="pause_button", on_click=_operate, args=("pause", agent_id),
                  icon=":material/pause:", help=f"Recorded as {operator_name()}; the guard refuses until resumed.")
    with resume:
        st.text_input("Reason to resume", key="resume_reason", placeholder="e.g. fixed the field mapping")
        st.button("Resume", key="resume_button", on_click=_operate, args=("resume", agent_id),
                  icon=":material/play_arrow:", help="Ends an operator's pause and overrides the incidents open now.")
    history = health.controls_frame(controls.history(agent_id, limit=20))
    if history.height:
        st.caption("Latest pauses and resumes (by an operator, or by agentwatch on a critical incident)")
        st.dataframe(to_viewer(history, "at"), hide_index=True, key="agent_controls",
                     column_config={"at": st.column_config.DatetimeColumn("at", format=TIME_FORMAT)})
    else:
        st.caption(f"{md(agent_id)} has never been paused or resumed.")


def _incidents(agent_id: str) -> None:
    st.subheader("Latest incidents")
    latest = health.latest_incidents(agent_id, incidents().list())
    if not latest:
        st.caption(f"No incident names {md(agent_id)}.")
        return
    st.dataframe(to_viewer(health.incidents_frame(latest), "opened_at"), hide_index=True, key="agent_incidents",
                 column_config={"opened_at": st.column_config.DatetimeColumn("opened", format=TIME_FORMAT)})
    columns = st.columns(2)
    for i, incident in enumerate(latest):
        with columns[i % 2]:
            st.page_link("views/incidents.py", label=f"Open {incident.id}: {incident.check} ({incident.status})",
                         query_params={"incident": incident.id}, icon=":material/open_in_new:")


st.title("Agents")
agents = health.agents_by_volume()
if agents.is_empty():
    empty_state(EMPTY)
    st.stop()
picker, span = st.columns([2, 3])
with picker:
    agent = _pick_agent(agents)
with span:
    span_label = st.segmented_control("Range", list(health.RANGES), default=DEFAULT_RANGE, required=True,
                                      key="agent_range") or DEFAULT_RANGE
_activity(agent, span_label)
_model_calls(agent, span_label)
_pause_state(agent)
_incidents(agent)
