"""Silences: matching incidents by key=pattern, the active window, early expiry, persistence and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentwatch.alerts.db import alerts_db, open_alerts_db
from agentwatch.alerts.properties import incident_properties
from agentwatch.alerts.silences import Silence, Silences, operator_name, parse_matcher
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from tests.cli_support import main_error
from tests.cli_support import run_cli as agentwatch

AT = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)


def incident(check: str = "volume.action_spike", severity: str = "warning", incident_id: str = "INC-1",
             **subject: str) -> Incident:
    return Incident(id=incident_id, check=check, severity=severity, status="open", opened_at=AT, started_at=AT,
                    last_fired_at=AT, subject=subject or {"agent_id": "lead-router", "action": "lead.route"},
                    summary="something changed", affected=10)


def rename() -> Incident:
    """The rename of Lead.deal_stage, read by two agents named in its evidence."""
    return Incident(id="INC-7", check="schema.field_renamed", severity="critical", status="open", opened_at=AT,
                    started_at=AT, last_fired_at=AT, subject={"object": "Lead", "field": "deal_stage -> stage"},
                    summary="Lead.deal_stage -> stage was renamed", affected=1,
                    evidence={"agents": ["lead-router", "lead-scorer"]})


def silence(*matchers: str, start: datetime = AT, hours: float = 2) -> Silence:
    return Silence(id="SIL-1", matchers=[parse_matcher(m) for m in matchers], starts_at=start,
                   ends_at=start + timedelta(hours=hours), created_by="ana@laptop", comment="webinar", created_at=start)


@pytest.fixture
def silences(tmp_path: Path) -> Silences:
    return Silences(open_alerts_db(tmp_path / "alerts.sqlite3"))


def test_every_matcher_must_match() -> None:
    """A silence matches only when all its matchers do: one wrong value is enough to miss."""
    props = incident_properties(incident())
    assert silence("check=volume.action_spike", "agent_id=lead-router").matches(props)
    assert not silence("check=volume.action_spike", "agent_id=other-agent").matches(props)
    assert not silence("check=volume.action_spike", "object=Lead").matches(props)  # the incident has no object


def test_patterns_are_shell_globs_matched_case_sensitively() -> None:
    """`*`, `?` and `[...]` work as in the shell, on the whole value, and case counts."""
    props = incident_properties(incident(check="schema.field_removed"))
    assert silence("check=schema.*").matches(props)
    assert silence("check=schema.field_re[m]oved").matches(props)
    assert silence("check=schema.field_remove?").matches(props)
    assert not silence("check=schema").matches(props)
    assert not silence("check=Schema.*").matches(props)


def test_agent_id_matches_any_agent_the_incident_names() -> None:
    """agent_id matches the subject's agent and every agent the evidence names (the readers of a renamed field)."""
    props = incident_properties(rename())
    assert silence("agent_id=lead-scorer").matches(props)
    assert silence("agent_id=lead-router").matches(props)
    assert not silence("agent_id=billing-bot").matches(props)


def test_a_rename_field_matches_its_old_and_new_name() -> None:
    """field=deal_stage matches the rename `deal_stage -> stage`, as does the new name and the whole text."""
    props = incident_properties(rename())
    assert silence("field=deal_stage").matches(props)
    assert silence("field=stage").matches(props)
    assert silence("field=deal_stage -> stage").matches(props)
    assert not silence("field=owner").matches(props)


def test_id_matches_one_incident() -> None:
    """id=INC-7 silences that incident and no other."""
    assert silence("id=INC-7").matches(incident_properties(rename()))
    assert not silence("id=INC-7").matches(incident_properties(incident()))


def test_active_from_start_until_end() -> None:
    """A silence is pending before it starts, active from its start, and expired from its end on."""
    made = silence("check=*", hours=2)
    assert not made.active(AT - timedelta(seconds=1)) and made.state(AT - timedelta(seconds=1)) == "pending"
    assert made.active(AT) and made.active(AT + timedelta(hours=2) - timedelta(seconds=1))
    assert not made.active(AT + timedelta(hours=2)) and made.state(AT + timedelta(hours=2)) == "expired"


def test_parse_matcher_splits_at_the_first_equals() -> None:
    """`field=a=b` is the key field and the pattern `a=b`; spaces around the key and pattern are dropped."""
    assert parse_matcher("field=a=b") == ("field", "a=b")
    assert parse_matcher(" check = volume.* ") == ("check", "volume.*")


@pytest.mark.parametrize(("text", "problem"), [
    ("chek=volume.*", "unknown key 'chek'"),
    ("volume.action_spike", "give key=pattern"),
    ("check=", "give key=pattern"),
])
def test_a_bad_matcher_names_the_text_and_the_keys(text: str, problem: str) -> None:
    """An unknown key, a missing '=' or an empty pattern is a ConfigError quoting the text and listing the keys."""
    with pytest.raises(ConfigError) as raised:
        parse_matcher(text, "--match")
    message = str(raised.value)
    assert message.startswith(f"--match {text!r}") and problem in message
    assert "check, severity, agent_id, object, field, action, id" in message


def test_added_silences_persist_across_instances(tmp_path: Path) -> None:
    """A silence added through one Silences is listed, got and matched through another on the same file."""
    path = tmp_path / "alerts.sqlite3"
    made = Silences(open_alerts_db(path)).add([("check", "volume.*"), ("agent_id", "lead-router")],
                                              timedelta(hours=2), "webinar traffic", "ana@laptop", now=AT)
    other = Silences(open_alerts_db(path))
    assert other.get(made.id) == made
    assert other.list(now=AT) == [made]
    assert made.starts_at == AT and made.ends_at == AT + timedelta(hours=2) and made.expired_at is None
    assert other.silenced_by(incident_properties(incident()), AT + timedelta(hours=1)) == made
    assert other.silenced_by(incident_properties(incident()), AT + timedelta(hours=2)) is None


def test_ids_are_unique_and_the_list_is_newest_first(silences: Silences) -> None:
    """Ids count up SIL-1, SIL-2, SIL-3 and list gives the newest first."""
    made = [silences.add([("agent_id", f"c{n}")], timedelta(hours=1), "why", "ana", now=AT + timedelta(minutes=n))
            for n in range(3)]
    assert [s.id for s in made] == ["SIL-1", "SIL-2", "SIL-3"]
    assert [s.id for s in silences.list(now=AT)] == ["SIL-3", "SIL-2", "SIL-1"]


def test_expire_ends_a_silence_early_and_keeps_it_in_the_history(tmp_path: Path) -> None:
    """After expire the silence no longer silences or lists as current, and list(include_expired) still shows it."""
    path = tmp_path / "alerts.sqlite3"
    made = Silences(open_alerts_db(path)).add([("check", "*")], timedelta(hours=2), "deploy", "ana", now=AT)
    ended = Silences(open_alerts_db(path)).expire(made.id, now=AT + timedelta(minutes=30))
    reopened = Silences(open_alerts_db(path))
    assert ended.expired_at == AT + timedelta(minutes=30) and reopened.get(made.id) == ended
    later = AT + timedelta(minutes=31)
    assert reopened.list(now=later) == [] and reopened.active(later) == []
    assert reopened.silenced_by(incident_properties(incident()), later) is None
    assert reopened.list(include_expired=True, now=later) == [ended]
    assert ended.state(later) == "expired"


def test_expiring_an_ended_silence_changes_nothing(silences: Silences) -> None:
    """Expiring a silence that has already run out returns it as it was, without an expiry time."""
    made = silences.add([("check", "*")], timedelta(hours=1), "deploy", "ana", now=AT)
    again = silences.expire(made.id, now=AT + timedelta(hours=3))
    assert again == made and again.expired_at is None


def test_expiring_an_unknown_id_names_it(silences: Silences) -> None:
    """expire and get of an id that does not exist raise a ConfigError naming the id."""
    for call in (silences.expire, silences.get):
        with pytest.raises(ConfigError, match="'SIL-42'"):
            call("SIL-42")


def test_a_future_silence_is_pending_then_active(silences: Silences) -> None:
    """A silence starting later is listed as pending and silences nothing until it starts."""
    made = silences.add([("check", "*")], timedelta(hours=1), "maintenance", "ana", now=AT,
                        starts_at=AT + timedelta(hours=1))
    props = incident_properties(incident())
    assert silences.list(now=AT) == [made] and made.state(AT) == "pending"
    assert silences.silenced_by(props, AT) is None
    assert silences.silenced_by(props, AT + timedelta(hours=1, minutes=5)) == made


def test_the_longest_lasting_matching_silence_is_reported(silences: Silences) -> None:
    """When two active silences match, silenced_by names the one that ends last; a non-matching one is ignored."""
    silences.add([("check", "volume.*")], timedelta(hours=1), "short", "ana", now=AT)
    long = silences.add([("agent_id", "lead-*")], timedelta(hours=5), "long", "ana", now=AT)
    silences.add([("check", "schema.*")], timedelta(hours=9), "other", "ana", now=AT)
    assert silences.silenced_by(incident_properties(incident()), AT + timedelta(minutes=1)) == long


@pytest.mark.parametrize(("matchers", "duration", "comment", "problem"), [
    ([], timedelta(hours=1), "why", "at least one matcher"),
    ([("owner", "ana")], timedelta(hours=1), "why", "unknown key 'owner'"),
    ([("check", "*")], timedelta(0), "why", "longer than 0"),
    ([("check", "*")], timedelta(hours=-1), "why", "longer than 0"),
    ([("check", "*")], timedelta(hours=1), "  ", "say why"),
    ([("check", "volume.action_spik")], timedelta(hours=1), "why",
     "check=volume.action_spik: 'volume.action_spik' names no check; did you mean 'volume.action_spike'?"),
    ([("severity", "critcal")], timedelta(hours=1), "why",
     r"'critcal' matches no severity; did you mean 'critical'\? \(severities: info, warning, critical\)"),
])
def test_add_refuses_a_silence_that_says_too_little(silences: Silences, matchers: list, duration: timedelta,
                                                    comment: str, problem: str) -> None:
    """No matcher, an unknown key, a non-positive duration or an empty comment is a ConfigError and stores nothing."""
    with pytest.raises(ConfigError, match=problem):
        silences.add(matchers, duration, comment, "ana", now=AT)
    assert silences.list(include_expired=True, now=AT) == []


def test_operator_name_is_user_at_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """operator_name is $USER followed by @ and the host name."""
    monkeypatch.setenv("USER", "ana")
    name = operator_name()
    assert name.startswith("ana@") and len(name) > len("ana@")


def listed(home: Path, *flags: str) -> list[dict]:
    code, out, err = agentwatch("silence", "list", "--json", *flags, "--home", home)
    assert code == 0, err
    return json.loads(out)


def test_cli_add_list_expire(tmp_path: Path) -> None:
    """add prints the id, matchers and end; list --json shows it active; expire ends it; list then omits it."""
    home = Home.resolve(tmp_path / "home").root  # silence commands need an existing home
    code, out, err = agentwatch("silence", "add", "--match", "check=volume.action_spike", "--match",
                                "agent_id=lead-router", "--for", "2h", "--comment", "webinar traffic",
                                "--by", "ana@laptop", "--home", home)
    assert code == 0, err
    assert out.startswith("SIL-1 silences check=volume.action_spike agent_id=lead-router until ")
    assert out.rstrip().endswith("UTC (2h)")
    [shown] = listed(home)
    assert shown["id"] == "SIL-1" and shown["state"] == "active" and shown["created_by"] == "ana@laptop"
    assert shown["matchers"] == [["check", "volume.action_spike"], ["agent_id", "lead-router"]]
    assert shown["comment"] == "webinar traffic"
    lasts = datetime.fromisoformat(shown["ends_at"]) - datetime.fromisoformat(shown["starts_at"])
    assert lasts == timedelta(hours=2)
    stored = Silences(alerts_db(Home.resolve(home))).get("SIL-1")
    assert stored.matches(incident_properties(incident()))

    code, out, _ = agentwatch("silence", "list", "--home", home)
    assert code == 0 and "SIL-1" in out and "webinar traffic" in out and "active" in out

    code, out, _ = agentwatch("silence", "expire", "SIL-1", "--home", home)
    assert code == 0 and out.startswith("SIL-1 ended ")
    assert listed(home) == []
    [ended] = listed(home, "--all")
    assert ended["state"] == "expired" and ended["expired_at"] is not None


def test_cli_table_shows_glob_brackets_literally(tmp_path: Path) -> None:
    """A pattern with [...] is printed as typed in the table, not eaten as rich markup."""
    home = Home.resolve(tmp_path / "home").root  # silence commands need an existing home
    code, _, err = agentwatch("silence", "add", "--match", "field=deal_[st]*", "--for", "30m", "--comment", "x",
                              "--home", home)
    assert code == 0, err
    code, out, _ = agentwatch("silence", "list", "--home", home)
    assert "field=deal_[st]*" in out


def test_cli_by_defaults_to_the_operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --by the silence records $USER@host as its maker."""
    monkeypatch.setenv("USER", "ana")
    home = Home.resolve(tmp_path / "home").root  # silence commands need an existing home
    code, _, err = agentwatch("silence", "add", "--match", "check=*", "--for", "1h", "--comment", "x", "--home", home)
    assert code == 0, err
    assert listed(home)[0]["created_by"] == operator_name()


@pytest.mark.parametrize(("args", "named"), [
    (["--match", "chek=volume.*", "--for", "2h", "--comment", "x"], "--match 'chek=volume.*': unknown key"),
    (["--match", "check", "--for", "2h", "--comment", "x"], "--match 'check': give key=pattern"),
    (["--match", "check=*", "--for", "2 hours", "--comment", "x"], "--for '2 hours'"),
    (["--match", "check=*", "--for", "0m", "--comment", "x"], "--for '0m': a silence must last longer than 0"),
    (["--match", "check=*", "--comment", "x"], "give --for"),
    (["--match", "check=*", "--for", "2h"], "give --comment"),
    (["--for", "2h", "--comment", "x"], "give at least one --match"),
    (["--match", "check=volum.*", "--for", "2h", "--comment", "x"],
     "'volum.*' names no check; did you mean 'volume.*'?"),
])
def test_cli_mistakes_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch, args: list[str], named: str) -> None:
    """A bad or missing --match, --for or --comment exits 2 with one `error:` line naming it, and stores nothing."""
    home = Home.resolve(tmp_path / "home").root  # silence commands need an existing home
    error = main_error(capsys, monkeypatch, "silence", "add", *args, "--home", home)
    assert named in error
    assert listed(home, "--all") == []


def test_cli_expire_of_an_unknown_id_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`silence expire SIL-9` when there is no such silence exits 2 with one line naming the id."""
    error = main_error(capsys, monkeypatch, "silence", "expire", "SIL-9", "--home",
                       Home.resolve(tmp_path / "home").root)
    assert "'SIL-9'" in error
