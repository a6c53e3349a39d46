"""Helpers of the dashboard tests: the real app through AppTest, and independent SQL over the same home."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit import config as streamlit_config
from streamlit.testing.v1 import AppTest

from agentwatch.app.dashboard_launch import NO_KEY_ENV
from agentwatch.core.home import Home
from agentwatch.store.reader import open_reader

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"


def listening_on(address: str | None) -> None:
    """Make AppTest's dashboard believe Streamlit listens on `address` (the option the access check reads)."""
    streamlit_config.set_option("server.address", address)


@pytest.fixture(autouse=True)
def open_dashboard(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As `agentwatch dashboard --no-key` on loopback (what `agentwatch demo` runs): no key asked. Autouse in
    every module that imports it: the pages' tests are about the pages, test_dashboard_access about the door."""
    monkeypatch.setenv(NO_KEY_ENV, "1")
    listening_on("127.0.0.1")
    yield
    listening_on(None)


def open_page(monkeypatch: pytest.MonkeyPatch, home: Home, page: str, timeout: float = 60,
              **choices: Any) -> AppTest:
    """The page (`views/<page>.py`) as a browser would get it after the app's first request, after picking each
    selectbox key -> value in `choices`."""
    monkeypatch.setenv("AGENTWATCH_HOME", str(home.root))
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.run()
    at.switch_page(f"views/{page}.py").run()
    for key, value in choices.items():
        at.selectbox(key=key).select(value).run()
    assert not at.exception
    return at


def sql(home: Home, text: str, *params: Any) -> list[tuple]:
    """Rows of an independent query over the home's store (what a test compares a page's figures with)."""
    con = open_reader(home)
    try:
        return con.execute(text, list(params)).fetchall()
    finally:
        con.close()


# --- hostile values: Markdown planted in events -------------------------------------------------------------------

NOT_MARKDOWN = ("json", "code", "text", "html", "arrow_data_frame", "vega_lite_chart", "deck_gl_json_chart")


def hostile(url: str) -> str:
    """Text an attacker plants in an event: a remote image, a link, Streamlit's colour and icon directives, math."""
    return f"![x]({url}/img.png) [click]({url}/click) :red[x] $x$ :material/home: <img src={url}/raw.png>"


def planted(text: str) -> list[str]:
    """The pieces of `hostile` found in `text` as live Markdown (an escaped value holds none of them)."""
    return [p for p in ("![x](", "[click](", ":red[x]", "$x$", ":material/home:", "<img", "://")
            if re.search(r"(?<!\\)" + re.escape(p), text)]


def shown_markdown(at: AppTest) -> list[str]:
    """Every text the page renders as Markdown: element bodies (markdown, captions, headings, alerts), labels and
    help of widgets and buttons, labels of expanders, popovers and tabs. Tables, JSON and code show text as text."""
    texts: list[str] = []
    for node in at._tree:
        proto = getattr(node, "proto", None)
        if proto is None or getattr(node, "type", None) in NOT_MARKDOWN:
            continue
        kind = proto.WhichOneof("type") if hasattr(proto, "WhichOneof") and "type" in \
            [f.name for f in proto.DESCRIPTOR.oneofs] else None
        inner = getattr(proto, kind) if kind else proto
        if kind in NOT_MARKDOWN:
            continue
        for name in ("body", "label", "help"):
            value = getattr(inner, name, None)
            if isinstance(value, str) and value:
                texts.append(value)
    return texts


def store_hostile(home: Home, url: str) -> str:
    """Events, a schema snapshot, incidents, a pause and a silence whose every text field holds `hostile(url)`;
    returns the hostile agent's id (its incidents are INC-1, caused by INC-2)."""
    from datetime import UTC, datetime, timedelta

    from agentwatch.alerts.db import alerts_db
    from agentwatch.alerts.guard import AgentControls
    from agentwatch.alerts.silences import Silences
    from agentwatch.checks.engine import incident_store
    from agentwatch.schemas.incidents import Incident
    from tests.checks_support import store_events

    bad = hostile(url)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def at(hours: float) -> str:
        return (now - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")

    actions = [{
        "event_id": f"{bad} {n}", "ts": at(n), "agent_id": bad, "agent_version": bad, "action": action,
        "resource": {"type": bad, "id": bad}, "status": status, "inputs": {bad: bad}, "before": {bad: bad},
        "after": {bad: "new"}, "decision": {"route_to": bad, "owner": bad, "qualified": True, bad: bad},
        "rationale": bad, "authorized_by": bad, "approval": {"approved_by": bad, "approved_at": at(n)},
        "error": {"code": bad, "message": bad} if status == "error" else None, "trace_id": bad, "span_id": bad,
        "external": action == "email.send", "confidence": 0.5, "latency_ms": 10,
    } for n, (action, status) in enumerate([("lead.route", "ok"), ("lead.qualify", "ok"), ("email.send", "ok"),
                                             ("crm.update_field", "error"), ("lead.assign_owner", "ok")])]
    outcomes = [{"event_id": f"{bad} o{n}", "ts": at(0.5), "kind": kind, "resource": {"type": bad, "id": bad},
                 "actor": bad, "field": bad, "from": bad, "to": bad, "corrects_event_id": f"{bad} 0"}
                for n, kind in enumerate(["owner_changed", "replied", "opportunity_created", "requalified"])]
    snapshots = [{"taken_at": at(hours), "source": "custom", "object": bad,
                  "fields": [{"name": bad if hours else f"{bad} renamed", "type": "string", "label": bad,
                              "picklist_values": [bad]}, {"name": "Id", "type": "id"}]} for hours in (3, 0)]
    store_events(home, actions=actions, outcomes=outcomes, snapshots=snapshots)
    opened = datetime.now(UTC) - timedelta(hours=2)
    incidents = [Incident(id=f"INC-{n}", check=check, severity="critical", status="open", opened_at=opened,
                          started_at=opened, last_fired_at=opened, subject=subject, summary=bad,
                          evidence={bad: bad, "agents": [bad], "objects": [bad]}, sample_event_ids=[f"{bad} 0"],
                          affected=1, caused_by=["INC-2"] if n == 1 else [], effects=["INC-1"] if n == 2 else [],
                          status_note=bad)
                 for n, check, subject in ((1, "errors.error_burst", {"agent_id": bad, "action": "lead.route"}),
                                           (2, "schema.field_renamed", {"object": bad, "field": bad, "to": bad}))]
    incident_store(home).save(incidents, first_number=1)
    AgentControls(alerts_db(home)).pause(bad, bad, bad)
    literal = "".join(f"[{c}]" if c in "*?[" else c for c in bad)  # a glob matching the agent id exactly
    Silences(alerts_db(home)).add([("agent_id", literal)], timedelta(hours=2), bad, bad)
    return bad
