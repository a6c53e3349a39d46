"""The Notifications page: the outbox with its failed notifications (and retry), and silences (and expire)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.outbox import Outbox, enqueue
from agentwatch.alerts.silences import Silences
from agentwatch.core.home import Home
from agentwatch.dashboards.escape import md
from agentwatch.schemas.notifications import Notification
from tests.dashboard_support import open_dashboard  # noqa: F401  (autouse: no key asked)

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"


@pytest.fixture
def home(demo_home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    shutil.copytree(demo_home.root, tmp_path / "home")
    copy = Home.resolve(tmp_path / "home")
    monkeypatch.setenv("AGENTWATCH_HOME", str(copy.root))
    return copy


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("views/notifications.py").run()
    assert not at.exception
    return at


def queue_two(home: Home) -> Outbox:
    """One delivered and one failed notification in the home's outbox."""
    from agentwatch.checks.engine import incident_store

    incident = incident_store(home).list()[0]
    now = datetime.now(UTC)
    notes = [Notification(id=f"n-{i}", event="trigger", destination="revops-slack", group_key=incident.id,
                          dedup_key="d", status="open", severity=incident.severity, title="t", incidents=[incident],
                          dashboard_url="http://x", created_at=now) for i in (1, 2)]
    db = alerts_db(home)
    with db.writing() as con:
        enqueue(con, notes, now)
    box = Outbox(db)
    box.delivered("n-1", 200, now)
    box.failed("n-2", "HTTP 500 from slack destination 'revops-slack': ...", 500)
    return box


def test_the_outbox_counts_and_failed_rows_show_and_retry_requeues(home: Home) -> None:
    """Counts per state and the failed row with its error are shown; the retry button puts it back in the queue."""
    box = queue_two(home)
    at = open_page()
    assert [m.value for m in at.metric] == ["0", "1", "1"]
    (table,) = [d.value for d in at.dataframe]
    failed = table[table["id"] == "n-2"].iloc[0]
    assert failed["state"] == "failed" and "HTTP 500" in failed["last error"]
    at.button(key="retry_failed_button").click().run()
    assert box.counts() == {"pending": 1, "delivered": 1, "failed": 0, "superseded": 0}


def test_silences_are_listed_and_can_be_expired(home: Home) -> None:
    """An active silence is listed with its matchers and comment; Expire ends it."""
    silences = Silences(alerts_db(home))
    silence = silences.add([("check", "volume.*")], timedelta(hours=2), "webinar", "ana")
    at = open_page()
    text = " ".join(m.value for m in at.markdown)
    assert silence.id in text and md("check=volume.*") in text and "webinar" in text
    at.button(key=f"expire_{silence.id}").click().run()
    assert silences.get(silence.id).state(datetime.now(UTC)) == "expired"


def test_no_notifications_says_how_to_set_them_up(home: Home) -> None:
    """An empty outbox says where destinations are configured."""
    at = open_page()
    assert any("alerts:" in i.value for i in at.info)
