"""Critical incidents marked on the business charts: a red rule at each one's start, linking to it, so a dip in a
trend is read beside the rename that caused it."""

from __future__ import annotations

from datetime import datetime

import altair as alt
import polars as pl

from agentwatch.core.errors import AgentwatchError
from agentwatch.dashboards import context
from agentwatch.dashboards.incident_view import subject_text
from agentwatch.schemas.incidents import Incident

MARK_COLOR = "#d62728"
MARKED_SEVERITY = "critical"


def incident_link(incident_id: str) -> str:
    """The incident page's address for one incident, relative to any page (the incidents page is the root)."""
    return f"./?incident={incident_id}"


def critical_between(start: datetime, end: datetime) -> list[Incident]:
    """The critical root incidents (their effects are explained by them, and would crowd the chart) that began in
    ``[start, end)``, oldest first; none when the incidents cannot be read: the chart still shows, unmarked."""
    if not context.home().incidents_file.exists():  # asking the store would create the file
        return []
    try:
        found = context.incidents().list()
    except AgentwatchError:
        return []
    marked = [i for i in found if i.severity == MARKED_SEVERITY and not i.caused_by and start <= i.started_at < end]
    return sorted(marked, key=lambda i: i.started_at)


def marks_frame(incidents: list[Incident]) -> pl.DataFrame:
    """started_at, id, label (id, check and subject), href: one row per incident."""
    return pl.DataFrame(
        [{"started_at": i.started_at, "id": i.id, "label": f"{i.id} {i.check}: {subject_text(i)}",
          "href": incident_link(i.id)} for i in incidents],
        schema={"started_at": pl.Datetime("us", "UTC"), "id": pl.String, "label": pl.String, "href": pl.String})


def mark_layers(marks: pl.DataFrame | None, x_field: str) -> list[alt.Chart]:
    """A red dashed rule per incident at its start (`x_field` names the chart's temporal x field, so the rules
    share its axis), with its id above and a link to it on click. With `marks` None the layers take their rows
    from the chart they are layered into (a facet's shared data; rows without ``href`` are not marks)."""
    base = alt.Chart() if marks is None else alt.Chart(viewer_rows(marks, x_field))
    base = base.transform_filter("isValid(datum.href)")
    tooltip = [alt.Tooltip("label:N", title="incident"), alt.Tooltip(f"{x_field}:T", title="began",
                                                                     format="%Y-%m-%d %H:%M")]
    rule = base.mark_rule(color=MARK_COLOR, strokeDash=[5, 3], strokeWidth=1.5).encode(
        x=f"{x_field}:T", href="href:N", tooltip=tooltip)
    text = base.mark_text(color=MARK_COLOR, align="left", dx=3, dy=2, baseline="top", fontSize=10).encode(
        x=f"{x_field}:T", y=alt.value(0), text="id:N", href="href:N", tooltip=tooltip)
    return [rule, text]


def viewer_rows(marks: pl.DataFrame, x_field: str) -> pl.DataFrame:
    """The marks with their start in the viewer's timezone, named as the chart's x field."""
    return context.to_viewer(marks, "started_at").rename({"started_at": x_field})
