"""The dashboard's door: with `dashboard.require_key` it shows nothing until a read key is given."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"


@pytest.fixture
def locked_home(demo_home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    shutil.copytree(demo_home.root, tmp_path / "home")
    home = Home.resolve(tmp_path / "home")
    config = home.root / "agentwatch.yaml"
    config.write_text(config.read_text() + "dashboard: {require_key: true}\n")
    monkeypatch.setenv("AGENTWATCH_HOME", str(home.root))
    return home


def test_a_locked_dashboard_asks_for_a_key_and_shows_nothing_else(locked_home: Home) -> None:
    """Without a key the page is the key prompt only: no incident, no metric."""
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["API key"]
    assert not at.metric and "Incidents" not in [t.value for t in at.title]


def test_a_wrong_or_ingest_key_is_refused_and_a_read_key_opens_it(locked_home: Home) -> None:
    """An unknown key and an ingest-scope key get an error; a read key opens the incidents page."""
    keys = KeyStore(locked_home)
    ingest = keys.create("ingest", name="agent")[1]
    read = keys.create("read", name="revops")[1]
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.text_input[0].input("aw_nothere_0000").run()
    assert at.error and "not of scope read" in at.error[0].value
    at.text_input[0].input(ingest).run()
    assert at.error and not at.metric
    at.text_input[0].input(read).run()
    assert not at.exception
    assert "Incidents" in [t.value for t in at.title] and len(at.metric) == 4


def test_an_open_dashboard_asks_nothing(demo_home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without require_key the incidents page shows at once."""
    monkeypatch.setenv("AGENTWATCH_HOME", str(demo_home.root))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.text_input or at.text_input[0].label != "API key"
    assert "Incidents" in [t.value for t in at.title]


def test_an_unreadable_config_keeps_the_dashboard_locked(locked_home: Home) -> None:
    """A config that cannot be read (here: a typo elsewhere) leaves the key prompt up rather than opening up."""
    config = locked_home.root / "agentwatch.yaml"
    config.write_text(config.read_text() + "guard: {pause_after: 3}\n")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert [t.label for t in at.text_input] == ["API key"] and not at.metric


def test_a_revoked_key_locks_an_open_session_at_its_next_run(locked_home: Home) -> None:
    """After the key a session entered is revoked, the next run of the page asks for a key again."""
    keys = KeyStore(locked_home)
    record, token = keys.create("read", name="revops")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.text_input[0].input(token).run()
    assert len(at.metric) == 4
    keys.revoke(record.id)
    at.run()
    assert [t.label for t in at.text_input] == ["API key"] and not at.metric
