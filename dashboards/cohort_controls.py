"""The controls the cohort pages share (Routing accuracy, Pipeline quality): the cohort length and the kept
window, spelled once so the two pages offer the same choices with the same defaults."""

from __future__ import annotations

from streamlit.delta_generator import DeltaGenerator

from agentwatch.dashboards import business as biz
from agentwatch.dashboards import kpis


def cohort_length(column: DeltaGenerator, key: str) -> int:
    """Days of first routings a cohort holds (7 by default), chosen in `column`."""
    names = list(biz.COHORT_LENGTHS)
    chosen = column.selectbox("Cohort length", names, index=names.index(biz.DEFAULT_COHORT_LENGTH), key=key,
                              help="How many days of routed leads a cohort holds; compared with the same length "
                              "before it.")
    return biz.COHORT_LENGTHS[chosen or biz.DEFAULT_COHORT_LENGTH]


def kept_window(column: DeltaGenerator, key: str, what: str) -> int:
    """The kept window in days (7 by default), chosen in `column`; `what` says what it judges, for its help."""
    chosen = column.selectbox("Kept window", biz.KEEP_DAYS, index=biz.KEEP_DAYS.index(biz.DEFAULT_KEEP_DAYS), key=key,
                              format_func=kpis.days_text, help=f"{what} this long after a lead's first routing; a "
                              "lead is judged once it is this old.")
    return int(chosen if chosen is not None else biz.DEFAULT_KEEP_DAYS)
