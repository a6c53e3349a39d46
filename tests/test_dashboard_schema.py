"""The schema page (AppTest): snapshot timeline, the diff between two snapshots and the fields agents read."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from agentwatch.core.home import Home
from agentwatch.dashboards import schema_history
from agentwatch.dashboards.context import local
from tests.dashboard_support import (
    open_dashboard,  # noqa: F401  (autouse: no key asked)
    open_page,
    sql,
)

ROOT = Path(__file__).resolve().parents[1]
RED = "color: #b00020; font-weight: bold"


def open_schema(monkeypatch: pytest.MonkeyPatch, home: Home, object_name: str | None = "Lead") -> AppTest:
    return open_page(monkeypatch, home, "schema", **({"schema_object": object_name} if object_name else {}))


def rename_pair(home: Home) -> tuple[datetime, datetime]:
    """The last Lead snapshot with deal_stage and the first with opportunity_stage."""
    names = "[f.name for f in fields]"
    ((before, after),) = sql(home, f"SELECT max(taken_at) FILTER (WHERE list_contains({names}, 'deal_stage')), "
                                   f"min(taken_at) FILTER (WHERE list_contains({names}, 'opportunity_stage')) "
                                   "FROM schema_snapshots WHERE object = 'Lead'")
    return before, after


def table(at: AppTest, title: str) -> tuple[pd.DataFrame, str] | None:
    """The dataframe following the markdown or expander titled `title`: its values and its styler's CSS."""
    found = False
    for element in at.main:
        label = getattr(element, "value", None) if element.type == "markdown" else getattr(element, "label", None)
        found = found or label == title
        if found and element.type == "dataframe":
            return element.value, element.proto.arrow_data.styler.styles
    return None


def test_timeline_counts_every_snapshot(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """The Lead timeline (table and chart) has one row per Lead snapshot in the store, newest first, with the
    field counts the store holds."""
    at = open_schema(monkeypatch, demo_home)
    expected = sql(demo_home, "SELECT taken_at, field_count FROM schema_snapshots WHERE object = 'Lead' "
                              "ORDER BY taken_at DESC")
    shown, _ = table(at, "9 snapshots of Lead")
    assert len(shown) == len(expected) == 9
    assert list(shown["field_count"]) == [n for _, n in expected]
    assert [t.to_pydatetime() for t in shown["taken_at"]] == [t for t, _ in expected]
    assert list(shown["vs previous"]).count("changed") == 2  # the rename, then Twitter_Handle__c added
    charted = [pa.ipc.open_stream(d.data.data).read_all() for d in at.get("vega_lite_chart")[0].proto.datasets]
    points = next(t for t in charted if "field_count" in t.column_names)
    assert sorted(points.column("taken_at").to_pylist()) == sorted(t for t, _ in expected)


def test_default_diff_is_around_the_latest_change(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """Opened without a choice, the diff is the latest change: Twitter_Handle__c added, which no agent reads."""
    at = open_schema(monkeypatch, demo_home)
    added, styles = table(at, "**Added**")
    assert list(added["field"]) == ["Twitter_Handle__c"]
    assert added.loc[0, "read by agents"] == ""
    assert styles == ""  # nothing to stress: nobody reads it


def test_rename_diff_marks_the_field_agents_still_read(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """Between the snapshots around the rename, deal_stage -> opportunity_stage is listed as renamed, read by
    lead-router (and enrichment-agent), marked and styled red as still read; nothing else changed."""
    at = open_schema(monkeypatch, demo_home)
    before, after = rename_pair(demo_home)
    at.selectbox(key="schema_from").select(before).run()
    at.selectbox(key="schema_to").select(after).run()
    assert not at.exception
    renamed, styles = table(at, "**Renamed**")
    assert len(renamed) == 1
    row = renamed.iloc[0]
    assert (row["field"], row["renamed to"]) == ("deal_stage", "opportunity_stage")
    assert "lead-router" in row["read by agents"].split(", ")
    readers = {a for (a,) in sql(demo_home, "SELECT DISTINCT agent_id FROM actions WHERE json_exists(inputs, "
                                            "'$.deal_stage')")}
    assert set(row["read by agents"].split(", ")) == readers
    assert row["agents still read it"] == "⚠ yes"
    assert row["type"] == "picklist" and row["label"] == "Deal Stage -> Deal Stage"
    assert float(row["similarity"]) >= 0.6
    assert RED in styles
    assert table(at, "**Added**") is None and table(at, "**Removed**") is None
    assert "1 change: 1 renamed." in [c.value for c in at.caption]


def test_reversed_choice_shows_the_same_diff(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """Picking the later snapshot as 'from' diffs the same two snapshots oldest to newest, and says so."""
    at = open_schema(monkeypatch, demo_home)
    before, after = rename_pair(demo_home)
    at.selectbox(key="schema_from").select(after).run()
    at.selectbox(key="schema_to").select(before).run()
    renamed, _ = table(at, "**Renamed**")
    assert list(renamed["field"]) == ["deal_stage"]
    assert any("later than" in c.value for c in at.caption)


def test_fields_read_through_the_config_mapping(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """Every field of the later snapshot (the latest here) lists its readers: Region__c through
    `fields: region: Lead.Region__c`, Email by its name; unread fields are left blank and unstyled."""
    at = open_schema(monkeypatch, demo_home)
    later = sql(demo_home, "SELECT max(taken_at) FROM schema_snapshots WHERE object = 'Lead'")[0][0]
    at.selectbox(key="schema_to").select(later).run()
    fields, styles = table(at, f"Every field of Lead at {local(later)}")
    by_name = fields.set_index("field")
    region = {a for (a,) in sql(demo_home, "SELECT DISTINCT agent_id FROM actions WHERE json_exists(inputs, "
                                           "'$.region')")}
    assert set(by_name.loc["Region__c", "read by agents"].split(", ")) == region
    assert by_name.loc["Region__c", "input keys"] == "region"
    assert by_name.loc["Email", "input keys"] == "email"
    assert by_name.loc["Phone", "read by agents"] == ""
    assert len(fields) == 24
    row = {name: i for i, name in enumerate(fields["field"])}
    assert f"_row{row['Region__c']}_col0" in styles and f"_row{row['Phone']}_col0" not in styles


def test_read_window_shrinks_to_the_latest_day(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """With more events than READ_ROWS in the window, reads are taken from the latest UTC day alone, and the page
    says which day and how many events."""
    monkeypatch.setattr(schema_history, "READ_ROWS", 10)
    at = open_schema(monkeypatch, demo_home)
    ((day, events),) = sql(demo_home, "SELECT day, count(*) FROM actions GROUP BY day ORDER BY day DESC LIMIT 1")
    assert any(f"on {day} (UTC days, {events:,} events)" in c.value for c in at.caption)


def test_empty_home_says_what_to_do(monkeypatch: pytest.MonkeyPatch, home: Home) -> None:
    """A home without snapshots says how to send one, and shows no chart."""
    at = open_schema(monkeypatch, home, object_name=None)
    assert at.info[0].value == "No schema snapshots yet: `agentwatch ingest schema ...`"
    assert not at.get("vega_lite_chart")


def test_switching_object_resets_the_pair(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """After a Lead diff, picking Opportunity shows its own timeline and its last two snapshots, which are the
    same (the demo never changes Opportunity)."""
    at = open_schema(monkeypatch, demo_home)
    before, _ = rename_pair(demo_home)
    at.selectbox(key="schema_from").select(before).run()
    at.selectbox(key="schema_object").select("Opportunity").run()
    assert not at.exception
    times = [t for (t,) in sql(demo_home, "SELECT taken_at FROM schema_snapshots WHERE object = 'Opportunity' "
                                          "ORDER BY taken_at")]
    shown, _ = table(at, f"{len(times)} snapshots of Opportunity")
    assert len(shown) == len(times) == 7
    assert (at.selectbox(key="schema_from").value, at.selectbox(key="schema_to").value) == (times[-2], times[-1])
    assert at.success[0].value == "No change between these two snapshots."
