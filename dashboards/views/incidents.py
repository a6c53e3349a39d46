"""The incidents page: counts, the list (unresolved first, then by severity and age) with its filters, and the
incident chosen in the picker or in the URL (``?incident=INC-17``, the link notifications carry) in full."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import streamlit as st

from agentwatch.core.errors import AgentwatchError
from agentwatch.core.severity import Severity
from agentwatch.dashboards import context, incident_view
from agentwatch.dashboards.escape import md
from agentwatch.schemas.incidents import Incident, agents_named

PARAM = "incident"
PICK = "incident_pick"
SYNCED = "incident_param_seen"  # the query parameter value last applied to the picker
STATUSES = ["open", "acknowledged", "resolved"]
RECENT = timedelta(days=7)
EMPTY = ("No incidents yet: run `agentwatch check` (or `agentwatch serve`, which runs the checks every minute)")


def ordered(incidents: list[Incident]) -> list[Incident]:
    """Open and acknowledged first, then critical, warning, info, then the most recently opened first (ties keep
    the store's order: the newest incident first)."""
    return sorted(incidents, key=lambda i: (i.status == "resolved", -Severity(i.severity).rank,
                                            -i.opened_at.timestamp()))


def objects_named(incident: Incident) -> list[str]:
    """The CRM objects an incident is about: its subject's, else those its evidence names."""
    found = [incident.subject["object"]] if "object" in incident.subject else []
    found += [o for o in incident.evidence.get("objects", []) if isinstance(o, str)]
    return list(dict.fromkeys(found))


def age(since: datetime, now: datetime) -> str:
    """``45 min``, ``3 h``, ``2 d``."""
    seconds = max(0.0, (now - since).total_seconds())
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600:.0f} h"
    return f"{seconds // 86400:.0f} d"


def counts(incidents: list[Incident], now: datetime) -> dict[str, int]:
    """The numbers at the top of the page."""
    return {
        "open_critical": sum(i.status == "open" and i.severity == "critical" for i in incidents),
        "open_warning": sum(i.status == "open" and i.severity == "warning" for i in incidents),
        "acknowledged": sum(i.status == "acknowledged" for i in incidents),
        "resolved_7d": sum(i.status == "resolved" and i.resolved_at is not None and now - i.resolved_at <= RECENT
                           for i in incidents),
    }


def table(incidents: list[Incident], now: datetime) -> pl.DataFrame:
    """One row per incident, the columns the list shows."""
    rows = []
    for i in incidents:
        links = [f"caused by {', '.join(i.caused_by)}"] if i.caused_by else []
        links += [f"effects {', '.join(i.effects)}"] if i.effects else []
        rows.append({"id": i.id, "status": i.status, "severity": i.severity, "check": i.check,
                     "subject": incident_view.subject_text(i), "age": age(i.opened_at, now),
                     "opened": context.local(i.opened_at), "links": "; ".join(links), "summary": i.summary})
    return pl.DataFrame(rows, schema={c: pl.String for c in
                                      ("id", "status", "severity", "check", "subject", "age", "opened", "links",
                                       "summary")})


def _filters(incidents: list[Incident]) -> list[Incident]:
    bar = st.sidebar
    bar.markdown("**Filter incidents**")
    checks = bar.multiselect("Check", sorted({i.check for i in incidents}), key="filter_check",
                             placeholder="every check")
    agents = bar.multiselect("Agent", sorted({a for i in incidents for a in agents_named(i)}), key="filter_agent",
                             placeholder="every agent", help="Matches any agent the incident names (its subject's, "
                             "or those its evidence names, e.g. the agents reading a renamed field).")
    objects = bar.multiselect("CRM object", sorted({o for i in incidents for o in objects_named(i)}),
                              key="filter_object", placeholder="every object")
    statuses = bar.multiselect("Status", STATUSES, key="filter_status", placeholder="every status")
    return [i for i in incidents
            if (not checks or i.check in checks)
            and (not agents or set(agents) & set(agents_named(i)))
            and (not objects or set(objects) & set(objects_named(i)))
            and (not statuses or i.status in statuses)]


def _switch(incident_id: str) -> None:
    """Open another incident (a linked one): the picker and the URL follow."""
    st.session_state[PICK] = incident_id
    st.session_state[SYNCED] = incident_id
    st.query_params[PARAM] = incident_id


def _picked() -> None:
    """The picker changed: the URL follows, so it can be shared."""
    chosen = st.session_state.get(PICK)
    st.session_state[SYNCED] = chosen
    if chosen:
        st.query_params[PARAM] = chosen
    else:
        st.query_params.pop(PARAM, None)


def _apply_param(known: set[str]) -> None:
    """A new ``?incident=`` (a link opened, the URL edited) chooses the incident; an unknown id is said plainly."""
    wanted = st.query_params.get(PARAM)
    if wanted is None or wanted == st.session_state.get(SYNCED):
        return
    st.session_state[SYNCED] = wanted
    if wanted in known:
        st.session_state[PICK] = wanted
    else:
        st.warning(f"There is no incident {md(repr(wanted))} in this home; choose one below.")  # from the URL


def main() -> None:
    st.title("Incidents")
    if not context.home().incidents_file.exists():  # asking the store would create the file
        context.empty_state(EMPTY)
        return
    try:
        everything = context.incidents().list()
    except AgentwatchError as exc:
        st.error(f"The incidents cannot be read: {md(exc)}")
        return
    if not everything:
        context.empty_state(EMPTY)
        return
    now = datetime.now(UTC)
    numbers = counts(everything, now)
    columns = st.columns(4)
    columns[0].metric("Open critical", numbers["open_critical"], border=True)
    columns[1].metric("Open warning", numbers["open_warning"], border=True)
    columns[2].metric("Acknowledged", numbers["acknowledged"], border=True)
    columns[3].metric("Resolved, last 7 days", numbers["resolved_7d"], border=True)

    by_id = {i.id: i for i in everything}
    _apply_param(set(by_id))
    shown = ordered(_filters(everything))
    choices = [i.id for i in shown]
    chosen = st.session_state.get(PICK)
    if chosen in by_id and chosen not in choices:
        choices.insert(0, chosen)  # the open incident stays pickable whatever the filters hide
    st.selectbox("Incident", choices, index=None, key=PICK, on_change=_picked,
                 format_func=lambda i: f"{i} · {by_id[i].check} · {incident_view.subject_text(by_id[i])}",
                 placeholder="Choose an incident to open it (or open /?incident=INC-n)")
    chosen = st.session_state.get(PICK)
    if chosen in by_id:
        with st.container(border=True):
            incident_view.show(context.incidents().get(chosen), _switch)

    st.markdown(f"#### All incidents ({len(shown)} of {len(everything)})")
    if not shown:
        context.empty_state("No incident matches these filters: clear some in the sidebar.")
        return
    st.dataframe(table(shown, now), hide_index=True, key="incidents_table", column_config={
        "id": st.column_config.TextColumn(width="small"),
        "age": st.column_config.TextColumn(width="small", help="Since the incident opened."),
        "opened": st.column_config.TextColumn(help="When the incident opened, in your timezone."),
        "summary": st.column_config.TextColumn(width="large"),
    })


main()
