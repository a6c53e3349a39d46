"""The incidents page: counts, the list (unresolved first, then by severity and age, each effect under the incident
that explains it) with its filters, and the incident chosen in the picker or in the URL (``?incident=INC-17``, the
link notifications carry) in full."""

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
EFFECT_MARK = "\u21b3 "  # ↳: an effect, listed under the incident that explains it


def _rank(incident: Incident) -> tuple[bool, int, float]:
    return incident.status == "resolved", -Severity(incident.severity).rank, -incident.opened_at.timestamp()


def _listed_cause(incident: Incident, listed: set[str]) -> str | None:
    """The cause an effect is listed under: the first of its causes in the list."""
    return next((c for c in incident.caused_by if c in listed and c != incident.id), None)


def ordered(incidents: list[Incident]) -> list[Incident]:
    """The incidents no listed incident explains (roots) in order: open and acknowledged first, then critical,
    warning, info, then the most recently opened first (ties keep the store's order: the newest first); each root
    followed by its effects, and theirs, in the same order. An effect of several causes goes under the first of them
    listed; a cause filtered out leaves its effect a root."""
    listed = {i.id for i in incidents}
    effects: dict[str, list[Incident]] = {}
    for incident in sorted(incidents, key=_rank):
        cause = _listed_cause(incident, listed)
        if cause is not None:
            effects.setdefault(cause, []).append(incident)
    found: list[Incident] = []
    seen: set[str] = set()

    def place(incident: Incident) -> None:
        stack = [incident]
        while stack:
            current = stack.pop()
            if current.id in seen:
                continue
            seen.add(current.id)
            found.append(current)
            stack.extend(reversed(effects.get(current.id, [])))

    roots = [i for i in incidents if _listed_cause(i, listed) is None]
    for incident in sorted(roots, key=_rank) + sorted(incidents, key=_rank):  # then any cycle of causes
        place(incident)
    return found


def depths(incidents: list[Incident]) -> list[int]:
    """How deep each incident of an `ordered` list sits under its root (0: a root, 1: its effect, ...)."""
    listed = {i.id for i in incidents}
    depth: dict[str, int] = {}
    for incident in incidents:
        cause = _listed_cause(incident, listed)
        depth[incident.id] = depth[cause] + 1 if cause in depth else 0
    return [depth[i.id] for i in incidents]


def marked(text: str, depth: int) -> str:
    """`text` indented under its cause: ``↳ quality.null_spike`` (non-breaking spaces keep the indent in tables)."""
    return "\u00a0\u00a0" * max(depth - 1, 0) + EFFECT_MARK + text if depth else text


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
    """One row per incident, the columns the list shows; an effect's check is marked and indented under its cause."""
    rows = []
    for i, depth in zip(incidents, depths(incidents), strict=True):
        links = [f"caused by {', '.join(i.caused_by)}"] if i.caused_by else []
        links += [f"effects {', '.join(i.effects)}"] if i.effects else []
        rows.append({"id": i.id, "status": i.status, "severity": i.severity, "check": marked(i.check, depth),
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
    depth = dict(zip(choices, depths(shown), strict=True))
    chosen = st.session_state.get(PICK)
    if chosen in by_id and chosen not in choices:
        choices.insert(0, chosen)  # the open incident stays pickable whatever the filters hide
    st.selectbox("Incident", choices, index=None, key=PICK, on_change=_picked,
                 format_func=lambda i: marked(f"{i} · {by_id[i].check} · {incident_view.subject_text(by_id[i])}",
                                              depth.get(i, 0)),
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
