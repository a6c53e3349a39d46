"""The dashboard's door: it shows nothing until a read key is given, unless it listens on loopback and the operator
opted out (`dashboard: {require_key: false}` or `--no-key`); wrong keys are limited per session and address."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agentwatch.app.dashboard_launch import NO_KEY_ENV
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from tests.dashboard_support import listening_on

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"


@pytest.fixture(autouse=True)
def on_loopback(monkeypatch: pytest.MonkeyPatch):
    """Streamlit listens on 127.0.0.1 (as `agentwatch dashboard` by default) and no `--no-key` was given."""
    monkeypatch.delenv(NO_KEY_ENV, raising=False)
    listening_on("127.0.0.1")
    yield
    listening_on(None)


def home_with(demo_home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_extra: str) -> Home:
    shutil.copytree(demo_home.root, tmp_path / "home")
    home = Home.resolve(tmp_path / "home")
    config = home.root / "agentwatch.yaml"
    config.write_text(config.read_text() + config_extra)
    monkeypatch.setenv("AGENTWATCH_HOME", str(home.root))
    return home


def asks_for_a_key(at: AppTest) -> bool:
    return [t.label for t in at.text_input] == ["API key"] and not at.metric


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


def test_by_default_it_asks_for_a_key_even_on_loopback(demo_home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config without a dashboard section (the demo's) asks for a key: the dashboard is not open by default."""
    monkeypatch.setenv("AGENTWATCH_HOME", str(demo_home.root))
    assert "dashboard" not in (demo_home.root / "agentwatch.yaml").read_text()
    assert asks_for_a_key(AppTest.from_file(str(APP), default_timeout=60).run())


def test_an_opted_out_dashboard_on_loopback_asks_nothing(demo_home, tmp_path, monkeypatch) -> None:
    """`require_key: false` on loopback: the incidents page shows at once."""
    home_with(demo_home, tmp_path, monkeypatch, "dashboard: {require_key: false}\n")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.text_input or at.text_input[0].label != "API key"
    assert "Incidents" in [t.value for t in at.title]


def test_the_no_key_flag_opens_it_on_loopback(demo_home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--no-key` (what `agentwatch demo` passes) opens a loopback dashboard whatever the config says."""
    monkeypatch.setenv("AGENTWATCH_HOME", str(demo_home.root))
    monkeypatch.setenv(NO_KEY_ENV, "1")
    assert "Incidents" in [t.value for t in AppTest.from_file(str(APP), default_timeout=60).run().title]


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.20", "::", None, "dashboard.example.com"])
def test_off_loopback_it_always_asks(demo_home, tmp_path, monkeypatch, address) -> None:
    """Listening anywhere but loopback (None: every interface), neither `require_key: false` nor `--no-key` opens it."""
    home_with(demo_home, tmp_path, monkeypatch, "dashboard: {require_key: false}\n")
    monkeypatch.setenv(NO_KEY_ENV, "1")
    listening_on(address)
    assert asks_for_a_key(AppTest.from_file(str(APP), default_timeout=60).run())


def test_wrong_keys_are_limited_per_session_and_per_address(demo_home, tmp_path, monkeypatch) -> None:
    """Past `limits.auth_failures_per_minute` wrong keys, the prompt checks no key (not even a valid one) and says
    to wait, naming the setting; a new session from the same address is held back too."""
    home = home_with(demo_home, tmp_path, monkeypatch, "limits: {auth_failures_per_minute: 3}\n")
    read = KeyStore(home).create("read", name="revops")[1]
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    for n in range(3):
        at.text_input[0].input(f"aw_wrong_{n}").run()
        assert "not of scope read" in at.error[0].value
    at.text_input[0].input("aw_wrong_3").run()
    assert "wait" in at.error[0].value and "limits.auth_failures_per_minute" in at.error[0].value
    at.text_input[0].input(read).run()
    assert asks_for_a_key(at) and "limits.auth_failures_per_minute" in at.error[0].value
    other = AppTest.from_file(str(APP), default_timeout=60).run()  # another browser session, same address
    other.text_input[0].input(read).run()
    assert asks_for_a_key(other) and "limits.auth_failures_per_minute" in other.error[0].value


def test_the_same_wrong_key_counts_once(demo_home, tmp_path, monkeypatch) -> None:
    """Reruns of the prompt with the same wrong key in it count one failure, not one per rerun."""
    home = home_with(demo_home, tmp_path, monkeypatch, "limits: {auth_failures_per_minute: 2}\n")
    read = KeyStore(home).create("read", name="revops")[1]
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.text_input[0].input("aw_wrong").run()
    at.run()
    at.run()
    at.text_input[0].input(read).run()
    assert "Incidents" in [t.value for t in at.title] and len(at.metric) == 4


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
