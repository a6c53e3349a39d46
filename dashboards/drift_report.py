"""Evidently's data drift report of a drift incident, built on demand from the store.

The drift check keeps Evidently's per-column results as evidence; the full interactive report (distributions,
per-column tests) is rebuilt here when someone asks for it: a reservoir sample of the incident's reference and
current windows, read in DuckDB, handed to Evidently's ``DataDriftPreset`` over the columns the check compared.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from agentwatch.schemas.incidents import Incident

SAMPLE_ROWS = 5_000  # per window: enough for Evidently's tests, a fraction of a second to read
MAX_COLUMNS = 12


def report_columns(incident: Incident) -> list[tuple[str, bool]]:
    """(column, numeric) the report covers: the drifted ones first, then the other compared columns by score."""
    scores: dict[str, Any] = incident.evidence.get("scores") or {}
    described: dict[str, Any] = incident.evidence.get("columns") or {}
    drifted = [c for c in incident.evidence.get("drifted_columns") or [] if isinstance(c, str)]
    others = sorted((c for c in scores if c not in drifted), key=lambda c: -float(scores[c] or 0))
    chosen = (drifted + others)[:MAX_COLUMNS]
    return [(c, _numeric(c, described.get(c))) for c in chosen if _expression(c)]


def _numeric(column: str, described: Any) -> bool:
    if isinstance(described, dict):
        return "shares" not in described
    return column == "confidence"


def _expression(column: str) -> str | None:
    """The SQL reading a compared column: `decision.route_to` -> decision ->> 'route_to'."""
    scope, _, key = column.partition(".")
    if scope in ("decision", "inputs") and key and "'" not in key:
        return f"{scope} ->> '{key}'"
    if column == "confidence":
        return "CAST(confidence AS VARCHAR)"
    return None


def sample_sql(incident: Incident, columns: list[tuple[str, bool]]) -> tuple[str, list[Any]]:
    """One query for both windows: a reservoir sample of each, the compared columns typed."""
    readers = {c: _expression(c) for c, _ in columns}
    unreadable = [c for c, sql in readers.items() if sql is None]
    if unreadable:
        raise ValueError(f"no SQL reads the columns {unreadable}: report_columns leaves them out")
    selects = ", ".join(
        (f"TRY_CAST({readers[c]} AS DOUBLE)" if numeric else str(readers[c])) + f' AS "{c}"'
        for c, numeric in columns)
    parts, params = [], []
    for name in ("reference", "current"):
        window = incident.evidence.get(f"{name}_window") or {}
        start, end = datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])
        parts.append(f"""
            SELECT '{name}' AS sample, * FROM (
                SELECT {selects} FROM actions
                WHERE agent_id = ? AND action = ? AND ts > ? AND ts <= ?
                  AND day BETWEEN CAST(? AS DATE) AND CAST(? AS DATE)
            ) USING SAMPLE reservoir({SAMPLE_ROWS} ROWS) REPEATABLE (7)""")
        params += [incident.subject["agent_id"], incident.subject["action"], start, end, start.date(), end.date()]
    return " UNION ALL ".join(parts), params


def drift_report_html(incident: Incident, rows: Any) -> str:
    """Evidently's DataDriftPreset report (HTML with its scripts) over `rows` (a frame with a `sample` column
    naming the window, and the report columns), current against reference."""
    from evidently import DataDefinition, Dataset, Report  # Evidently takes ~4 s to import: only when asked
    from evidently.presets import DataDriftPreset

    columns = [(c, numeric or _all_numbers(rows[c])) for c, numeric in report_columns(incident)]
    rows = rows.with_columns([pl.col(c).cast(pl.Float64, strict=False) for c, numeric in columns if numeric])
    frame = rows.to_pandas()
    definition = DataDefinition(numerical_columns=[c for c, numeric in columns if numeric],
                                categorical_columns=[c for c, numeric in columns if not numeric])

    def dataset(name: str) -> Any:
        part = frame[frame["sample"] == name].drop(columns=["sample"])
        return Dataset.from_pandas(part, data_definition=definition)

    snapshot = Report([DataDriftPreset(columns=[c for c, _ in columns])]).run(dataset("current"), dataset("reference"))
    return snapshot.get_html_str(as_iframe=False)


def _all_numbers(values: Any) -> bool:
    """A text column whose every value reads as a number (employees sent as "120") is compared as numbers."""
    present = values.drop_nulls()
    return present.len() > 0 and present.cast(pl.Float64, strict=False).null_count() == 0
