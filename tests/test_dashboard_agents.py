"""The agents page (AppTest): its counts, charts, pause controls and incidents against the store, read independently."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.guard import AgentControls, GuardDecision, decide
from agentwatch.alerts.silences import operator_name
from agentwatch.app.config import config_for
from agentwatch.checks.engine import incident_store
from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.core.home import Home
from agentwatch.dashboards.escape import md
from agentwatch.schemas.incidents import agents_named
from agentwatch.store.datasets import ACTIONS
from tests.dashboard_support import (
    open_dashboard,  # noqa: F401  (autouse: no key asked)
    sql,
)

ROOT = Path(__file__).resolve().parents[1]
AGENT = "lead-router"


def open_agents(monkeypatch: pytest.MonkeyPatch, home: Home, agent: str | None = AGENT,
                span: str | None = None) -> AppTest:
    monkeypatch.setenv("AGENTWATCH_HOME", str(home.root))
    at = AppTest.from_file(str(ROOT / "dashboards" / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/agents.py").run()
    if agent is not None:
        at.selectbox(key="agent_pick").select(agent).run()
    if span is not None:
        at.segmented_control(key="agent_range").set_value(span).run()
    assert not at.exception
    return at


def window(home: Home, span: timedelta) -> tuple[datetime, datetime]:
    """The page's range, worked out here: from the hour after the latest event's, back `span`."""
    ((end,),) = sql(home, "SELECT date_trunc('hour', max(ts)) + INTERVAL 1 HOUR FROM actions")
    return end - span, end


def counts(home: Home, agent: str, start: datetime, end: datetime) -> tuple[int, int]:
    ((events, errors),) = sql(home, "SELECT count(*), count(*) FILTER (WHERE status = 'error') FROM actions "
                                    "WHERE agent_id = ? AND ts >= ? AND ts < ?", agent, start, end)
    return events, errors


def metric(at: AppTest, label: str) -> Any:
    return next(m for m in at.metric if m.label == label)


def chart_frames(at: AppTest) -> list[pd.DataFrame]:
    """Every dataset of every Altair chart on the page, as sent to the browser."""
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas()
            for chart in at.get("vega_lite_chart") for d in chart.proto.datasets]


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def guard_now(home: Home, agent: str = AGENT) -> GuardDecision:
    return decide(agent, incident_store(home).unresolved_critical(), AgentControls(alerts_db(home)),
                  config_for(home).guard)


@pytest.mark.parametrize(("span", "length"), [("Last 24 h", timedelta(hours=24)), ("Last 7 days", timedelta(days=7))])
def test_counts_match_the_store(monkeypatch: pytest.MonkeyPatch, demo_home: Home, span: str,
                                length: timedelta) -> None:
    """lead-router's events, errors, error share, rate and their deltas equal a DuckDB count over the same range."""
    at = open_agents(monkeypatch, demo_home, span=span)
    start, end = window(demo_home, length)
    events, errors = counts(demo_home, AGENT, start, end)
    before_events, before_errors = counts(demo_home, AGENT, start - length, start)
    assert events > 0 and errors > 0
    assert metric(at, "Events").value == f"{events:,}"
    assert metric(at, "Errors").value == f"{errors:,}"
    assert metric(at, "Error share").value == f"{errors / events:.2%}"
    assert metric(at, "Actions per hour").value == f"{events / (length / timedelta(hours=1)):,.1f}"
    if before_events:  # the demo's 7 days hold the day before the last, not the week before the last
        assert metric(at, "Events").delta == f"{events - before_events:+,}"
        assert metric(at, "Errors").delta == f"{errors - before_errors:+,}"
    else:
        assert metric(at, "Events").delta is None or metric(at, "Events").delta == ""


def test_chart_data_matches_the_store(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """The volume chart holds lead-router's events per hour and action type (zero-filled) and the error chart its
    hourly error share, both equal to DuckDB's counts."""
    at = open_agents(monkeypatch, demo_home, span="Last 24 h")
    start, end = window(demo_home, timedelta(hours=24))
    expected = {(hour, action): (n, e) for hour, action, n, e in sql(
        demo_home, "SELECT date_trunc('hour', ts), action, count(*), count(*) FILTER (WHERE status = 'error') "
                   "FROM actions WHERE agent_id = ? AND ts >= ? AND ts < ? GROUP BY ALL", AGENT, start, end)}
    frames = chart_frames(at)
    volume = next(f for f in frames if "action" in f.columns)
    actions = {action for _, action in expected}
    assert len(volume) == 24 * len(actions)  # every hour x every action, zeros included
    shown = {(row.hour.to_pydatetime(), row.action): (row.events, row.errors) for row in volume.itertuples()}
    assert {k: v for k, v in shown.items() if v[0]} == expected
    errors = next(f for f in frames if "error_share" in f.columns)
    per_hour: dict[datetime, list[int]] = {}
    for (hour, _), (n, e) in expected.items():
        per_hour.setdefault(hour, [0, 0])
        per_hour[hour][0] += n
        per_hour[hour][1] += e
    assert {row.hour.to_pydatetime(): row.error_share for row in errors.itertuples()} == \
        pytest.approx({hour: e / n for hour, (n, e) in per_hour.items()})


def test_expected_band_is_the_same_hour_of_previous_weeks(monkeypatch: pytest.MonkeyPatch, home: Home,
                                                         make_action: Any, write_jsonl: Any, tmp_path: Path) -> None:
    """The band of an hour is the 10th-90th percentile and median of the same hour-of-week in the previous three
    weeks (2, 4 and 10 events -> 2.4, 4, 8.8); weeks before the store's first event are left out, not zero."""
    latest = datetime(2026, 10, 22, 10, 30, tzinfo=UTC)
    events = [make_action(agent_id="bander", ts=latest.isoformat())]
    for weeks, n in ((1, 2), (2, 4), (3, 10)):
        at = latest - timedelta(weeks=weeks)
        events += [make_action(agent_id="bander", ts=(at + timedelta(minutes=i)).isoformat()) for i in range(n)]
    ingest_files(home, ACTIONS, [write_jsonl(tmp_path / "band.jsonl", events)])
    at = open_agents(monkeypatch, home, agent="bander", span="Last 24 h")
    band = next(f for f in chart_frames(at) if "median" in f.columns)
    by_hour = {row.hour.to_pydatetime(): row for row in band.itertuples()}
    ten = by_hour[datetime(2026, 10, 22, 10, tzinfo=UTC)]
    assert (ten.low, ten.median, ten.high, ten.weeks) == pytest.approx((2.4, 4.0, 8.8, 3))
    nine = by_hour[datetime(2026, 10, 22, 9, tzinfo=UTC)]  # three weeks back is before the first event
    assert (nine.low, nine.median, nine.high, nine.weeks) == (0, 0, 0, 2)
    assert len(band) == 24
    assert metric(at, "Events").value == "1"


def test_pause_and_resume_from_the_page(monkeypatch: pytest.MonkeyPatch, demo_home: Home, tmp_path: Path) -> None:
    """Pause makes the guard refuse lead-router and the page say 'paused'; resume lets it act and says 'allowed';
    a pause without a reason is refused with a message."""
    home = Home.resolve(Path(shutil.copytree(demo_home.root, tmp_path / "home")))
    at = open_agents(monkeypatch, home)
    assert guard_now(home).incident_id == "INC-1"  # the demo's rename pauses it to begin with
    assert md("paused: INC-1") in at.error[0].value

    at.button(key="pause_button").click().run()
    assert "give a reason" in at.warning[0].value
    assert AgentControls(alerts_db(home)).latest_operator(AGENT) is None

    at.text_input(key="pause_reason").input("routing to the wrong queue")
    at.button(key="pause_button").click().run()
    assert not at.exception
    decision = guard_now(home)
    assert not decision.allowed
    assert decision.reason.startswith(f"paused by {operator_name()} at ")
    assert decision.reason.endswith(": routing to the wrong queue")
    assert at.error[0].value == f"**{md(AGENT)}**: {md('paused: ' + decision.reason)}"
    controls = frame_with(at, "by")
    assert list(controls.loc[0, ["action", "by", "reason"]]) == ["pause", operator_name(), "routing to the wrong queue"]
    assert at.text_input(key="pause_reason").value == ""

    at.text_input(key="resume_reason").input("fixed the mapping")
    at.button(key="resume_button").click().run()
    assert guard_now(home).allowed
    assert not at.error
    assert "allowed" in at.success[0].value
    assert list(frame_with(at, "by").loc[0, ["action", "reason"]]) == ["resume", "fixed the mapping"]


def test_latest_incidents_name_the_agent(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """The latest incidents are those naming lead-router, newest first, at most 10, the rename among them, each
    linked to the incidents page."""
    at = open_agents(monkeypatch, demo_home)
    named = [i for i in incident_store(demo_home).list() if AGENT in agents_named(i)]
    named.sort(key=lambda i: (i.opened_at, int(i.id.split("-")[1])), reverse=True)
    shown = frame_with(at, "summary")
    assert list(shown["id"]) == [i.id for i in named[:10]]
    assert "INC-1" in list(shown["id"])
    rename = shown[shown["id"] == "INC-1"].iloc[0]
    assert rename["check"] == "schema.field_renamed"
    links = {link.proto.query_string: link.proto.page for link in at.get("page_link")}
    assert links["incident=INC-1"] == ""  # the app's default page, which is Incidents
    assert len(links) == len(shown)


def test_empty_home_says_what_to_do(monkeypatch: pytest.MonkeyPatch, home: Home) -> None:
    """A home without action events shows how to send some, and no chart."""
    at = open_agents(monkeypatch, home, agent=None)
    assert at.info[0].value == "No action events yet: `agentwatch ingest actions ...` or POST /v1/actions"
    assert not at.get("vega_lite_chart")


def test_an_event_from_the_future_does_not_empty_the_ranges(monkeypatch: pytest.MonkeyPatch, demo_home: Home,
                                                            tmp_path) -> None:
    """One event sent with a wrong clock (dated 2099) leaves the page's range ending now at the latest, so the
    agent's real events still show."""
    import shutil

    from tests.checks_support import store_events

    shutil.copytree(demo_home.root, tmp_path / "home")
    home = Home.resolve(tmp_path / "home")
    store_events(home, actions=[{"event_id": "from-the-future", "ts": "2099-01-01T00:00:00Z", "agent_id": AGENT,
                                 "action": "lead.route", "resource": {"type": "lead", "id": "L-x"}, "status": "ok"}])
    at = open_agents(monkeypatch, home, span="Last 30 days")
    events = next(m.value for m in at.metric if m.label == "Events")
    assert int(events.replace(",", "")) > 1000
