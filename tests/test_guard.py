"""The agent guard: operator pauses and resumes, pauses by critical incidents, the automatic record, the HTTP
endpoint of the real app, and the `agentwatch agent` commands."""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentwatch.alerts.config import GuardConfig
from agentwatch.alerts.db import alerts_db
from agentwatch.alerts.guard import AgentControls, GuardDecision, decide, record_automatic_changes
from agentwatch.app.api.app import ApiSettings, create_app
from agentwatch.checks.engine import incident_store
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home
from agentwatch.schemas.incidents import Incident
from tests.cli_support import PLAIN_WIDE, main_error, run_cli

with warnings.catch_warnings():  # starlette's TestClient warns that it prefers httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

AT = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
NULLS = "quality.null_spike"
RENAMED = "schema.field_renamed"
AGENT = "lead-router"
GUARD = GuardConfig(pause_on=[NULLS, "schema.*"])
ALLOWED = GuardDecision(allowed=True, reason=None, incident_id=None)
CONFIG = f"guard:\n  pause_on: [{NULLS}]\n"
ENV = PLAIN_WIDE | {"USER": "tester"}


def incident(number: int, check: str = NULLS, severity: str = "critical", status: str = "open",
             opened: datetime = AT, agents: tuple[str, ...] = (AGENT,), subject_agent: str | None = None) -> Incident:
    """An incident naming `agents` in its evidence (as the null spike does), and `subject_agent` in its subject."""
    subject = {"field": "deal_stage"} | ({"agent_id": subject_agent} if subject_agent else {})
    return Incident(id=f"INC-{number}", check=check, severity=severity, status=status, opened_at=opened,
                    started_at=opened - timedelta(minutes=20), last_fired_at=opened, subject=subject,
                    summary=f"{', '.join(agents)} read deal_stage as null 40 times", evidence={"agents": list(agents)},
                    affected=40)


@pytest.fixture
def controls(home: Home) -> AgentControls:
    return AgentControls(alerts_db(home))


# -- decide ----------------------------------------------------------------------------------------


def test_nothing_recorded_is_allowed(controls: AgentControls) -> None:
    """An agent no one paused and no incident names is allowed, with null reason and incident."""
    assert decide(AGENT, [], controls, GUARD) == ALLOWED


def test_operator_pause_stops_the_agent_until_resumed(controls: AgentControls) -> None:
    """An operator's pause refuses the agent with who, when and why; their resume allows it again."""
    controls.pause(AGENT, "ana@ops", "wrong owners since 9:00", now=AT)
    assert decide(AGENT, [], controls, GUARD) == GuardDecision(
        allowed=False, reason="paused by ana@ops at 2026-10-05 09:00:00 UTC: wrong owners since 9:00", incident_id=None)
    assert decide("followup-writer", [], controls, GUARD) == ALLOWED
    controls.resume(AGENT, "bo@ops", "owners fixed", now=AT + timedelta(hours=1))
    assert decide(AGENT, [], controls, GUARD) == ALLOWED


@pytest.mark.parametrize("named", ["evidence", "subject"])
def test_critical_incident_of_a_guarded_check_pauses_the_agents_it_names(controls: AgentControls,
                                                                         named: str) -> None:
    """A critical null spike naming the agent (in evidence or subject) refuses it, naming the incident."""
    found = incident(1, agents=()) if named == "subject" else incident(1)
    if named == "subject":
        found = found.model_copy(update={"subject": {"agent_id": AGENT, "field": "deal_stage"}})
    decision = decide(AGENT, [found], controls, GUARD)
    assert decision == GuardDecision(allowed=False, incident_id="INC-1",
                                     reason=f"INC-1 {NULLS} (critical): {found.summary}")
    assert decide("followup-writer", [found], controls, GUARD) == ALLOWED


def test_a_pattern_in_pause_on_covers_matching_checks(controls: AgentControls) -> None:
    """pause_on `schema.*` makes a critical schema.field_renamed incident pause the agents reading the field."""
    assert decide(AGENT, [incident(3, check=RENAMED)], controls, GUARD).incident_id == "INC-3"


@pytest.mark.parametrize(("check", "severity"),
                         [(NULLS, "warning"), (NULLS, "info"), ("volume.action_drop", "critical")])
def test_warnings_and_unguarded_checks_do_not_pause(controls: AgentControls, check: str, severity: str) -> None:
    """A warning or info incident, or a critical one of a check not in pause_on, leaves the agent allowed."""
    assert decide(AGENT, [incident(1, check=check, severity=severity)], controls, GUARD) == ALLOWED


def test_acknowledged_still_pauses_and_resolved_does_not(controls: AgentControls) -> None:
    """Acknowledging an incident keeps the agent paused; a resolved incident no longer pauses it."""
    assert decide(AGENT, [incident(1, status="acknowledged")], controls, GUARD).incident_id == "INC-1"
    assert decide(AGENT, [incident(1, status="resolved")], controls, GUARD) == ALLOWED


def test_operator_resume_overrides_incidents_opened_before_it(controls: AgentControls) -> None:
    """A resume after an incident opened allows the agent despite it; an incident opened later pauses it again."""
    first = incident(1, opened=AT)
    controls.resume(AGENT, "ana@ops", "the nulls are expected during the migration", now=AT + timedelta(minutes=5))
    assert decide(AGENT, [first], controls, GUARD) == ALLOWED
    later = incident(2, opened=AT + timedelta(minutes=30))
    assert decide(AGENT, [first, later], controls, GUARD).incident_id == "INC-2"


def test_operator_pause_wins_over_an_incident(controls: AgentControls) -> None:
    """When both an operator and an incident pause the agent, the reason is the operator's and incident_id null."""
    controls.pause(AGENT, "ana@ops", "hold", now=AT)
    decision = decide(AGENT, [incident(1)], controls, GUARD)
    assert not decision.allowed and decision.incident_id is None and decision.reason.startswith("paused by ana@ops")


def test_the_earliest_opened_incident_is_named(controls: AgentControls) -> None:
    """Of several incidents pausing the agent, the one opened first is named, whatever the list order."""
    incidents = [incident(5, opened=AT + timedelta(hours=1)), incident(4, check=RENAMED, opened=AT)]
    assert decide(AGENT, incidents, controls, GUARD).incident_id == "INC-4"


@pytest.mark.parametrize(("by", "reason", "message"), [
    ("ana@ops", "", "give a reason with --reason"),
    ("ana@ops", "   ", "give a reason with --reason"),
    ("agentwatch", "hold", "'agentwatch' is reserved"),
    ("", "hold", "--by is empty"),
])
def test_operator_controls_need_a_reason_and_a_person(controls: AgentControls, by: str, reason: str,
                                                      message: str) -> None:
    """A pause without a reason, by no one, or by the reserved name 'agentwatch' is refused and nothing recorded."""
    with pytest.raises(ConfigError, match=message):
        controls.pause(AGENT, by, reason)
    assert controls.history() == []


def test_history_is_newest_first_and_per_agent(controls: AgentControls) -> None:
    """history() lists controls newest first, of one agent or of all, up to the limit."""
    controls.pause(AGENT, "ana@ops", "one", now=AT)
    controls.pause("followup-writer", "ana@ops", "two", now=AT + timedelta(minutes=1))
    controls.resume(AGENT, "bo@ops", "three", now=AT + timedelta(minutes=2))
    assert [c.reason for c in controls.history()] == ["three", "two", "one"]
    assert [(c.action, c.by, c.at) for c in controls.history(AGENT)] == [
        ("resume", "bo@ops", AT + timedelta(minutes=2)), ("pause", "ana@ops", AT)]
    assert [c.reason for c in controls.history(limit=1)] == ["three"]
    assert controls.latest_operator(AGENT).reason == "three"


# -- the automatic record --------------------------------------------------------------------------


def test_automatic_changes_are_recorded_once_and_resume_on_resolve(home: Home, controls: AgentControls) -> None:
    """A pausing incident records one pause per agent it names; a second call adds nothing; resolving records
    a resume 'INC-n resolved', once."""
    db = alerts_db(home)
    open_one = incident(1, agents=(AGENT, "followup-writer"))
    added = record_automatic_changes(db, [open_one], GUARD, AT)
    assert [(c.agent_id, c.action, c.by, c.incident_id, c.reason) for c in added] == [
        ("followup-writer", "pause", "agentwatch", "INC-1", f"INC-1 {NULLS} (critical): {open_one.summary}"),
        (AGENT, "pause", "agentwatch", "INC-1", f"INC-1 {NULLS} (critical): {open_one.summary}")]
    assert record_automatic_changes(db, [open_one], GUARD, AT + timedelta(minutes=1)) == []
    resolved = open_one.model_copy(update={"status": "resolved"})
    later = AT + timedelta(hours=1)
    added = record_automatic_changes(db, [resolved], GUARD, later)
    assert [(c.agent_id, c.action, c.reason, c.at) for c in added] == [
        ("followup-writer", "resume", "INC-1 resolved", later), (AGENT, "resume", "INC-1 resolved", later)]
    assert record_automatic_changes(db, [], GUARD, later) == []
    assert [c.action for c in controls.history(AGENT)] == ["resume", "pause"]


def test_automatic_records_follow_the_incident_that_still_pauses(home: Home) -> None:
    """When the incident behind an automatic pause resolves while another still pauses the agent, a new pause
    names the other; ignoring warnings and resolved incidents passed along."""
    db = alerts_db(home)
    one, two = incident(1), incident(2, check=RENAMED, opened=AT + timedelta(minutes=10))
    warning = incident(3, severity="warning")
    assert [c.incident_id for c in record_automatic_changes(db, [one, two, warning], GUARD, AT)] == ["INC-1"]
    assert record_automatic_changes(db, [one, two], GUARD, AT) == []
    switched = record_automatic_changes(db, [one.model_copy(update={"status": "resolved"}), two], GUARD, AT)
    assert [(c.action, c.incident_id) for c in switched] == [("pause", "INC-2")]
    resumed = record_automatic_changes(db, [], GUARD, AT)
    assert [(c.action, c.reason) for c in resumed] == [("resume", "INC-2 resolved")]


def test_automatic_records_do_not_count_as_an_operator(home: Home, controls: AgentControls) -> None:
    """Automatic rows are not operator controls: an automatic resume does not override a still-open incident."""
    db = alerts_db(home)
    record_automatic_changes(db, [incident(1)], GUARD, AT)
    record_automatic_changes(db, [incident(1, severity="warning")], GUARD, AT + timedelta(hours=1))
    assert controls.latest_operator(AGENT) is None
    assert controls.history(AGENT)[0].reason == "INC-1 is now warning, not critical"
    assert decide(AGENT, [incident(1)], controls, GUARD).incident_id == "INC-1"


# -- the HTTP endpoint -----------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "agentwatch.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def keys(home: Home) -> dict[str, str]:
    store = KeyStore(home)
    return {scope: store.create(scope, name=f"test {scope}")[1] for scope in ("ingest", "read", "admin")}


@pytest.fixture
def client(home: Home, config_file: Path) -> Iterator[TestClient]:
    app = create_app(home, ApiSettings(config_path=config_file, flush_interval_s=0.05))
    with TestClient(app) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def guard(client: TestClient, token: str, agent_id: str = AGENT) -> dict[str, Any]:
    response = client.get(f"/v1/agents/{agent_id}/guard", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def rewrite(path: Path, text: str, bump_s: int) -> None:
    """Write `text` and move the mtime forward, so the change is seen whatever the clock's resolution."""
    path.write_text(text, encoding="utf-8")
    stamp = path.stat().st_mtime + bump_s
    os.utime(path, (stamp, stamp))


def test_endpoint_flips_with_a_critical_incident_and_back_on_resolve(client: TestClient, keys: dict,
                                                                    home: Home) -> None:
    """The guard answers allowed, then not allowed once a critical null spike naming the agent is saved, then
    allowed again once it is resolved; an agent's ingest key and a read key both may ask."""
    allowed = {"allowed": True, "reason": None, "incident_id": None, "fail_closed_actions": []}
    assert guard(client, keys["ingest"]) == allowed
    store = incident_store(home)
    spike = incident(1)
    store.save([spike], 1)
    paused = {"allowed": False, "incident_id": "INC-1", "reason": f"INC-1 {NULLS} (critical): {spike.summary}",
              "fail_closed_actions": []}
    assert guard(client, keys["ingest"]) == paused
    assert guard(client, keys["read"]) == paused
    assert guard(client, keys["ingest"], "followup-writer") == allowed
    store.set_status("INC-1", "resolved")
    assert guard(client, keys["ingest"]) == allowed


def test_endpoint_follows_operator_pause_and_lists_controls(client: TestClient, keys: dict, home: Home) -> None:
    """An operator's pause shows at once in the guard; /controls lists it for a read key and refuses an ingest
    key with 403."""
    AgentControls(alerts_db(home)).pause(AGENT, "ana@ops", "hold", now=AT)
    body = guard(client, keys["admin"])
    assert body == {"allowed": False, "incident_id": None, "fail_closed_actions": [],
                    "reason": "paused by ana@ops at 2026-10-05 09:00:00 UTC: hold"}
    response = client.get(f"/v1/agents/{AGENT}/controls", headers=bearer(keys["read"]))
    assert response.status_code == 200
    assert [(c["action"], c["by"], c["reason"], c["at"]) for c in response.json()] == [
        ("pause", "ana@ops", "hold", "2026-10-05T09:00:00Z")]
    refused = client.get(f"/v1/agents/{AGENT}/controls", headers=bearer(keys["ingest"]))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"


@pytest.mark.parametrize("path", [f"/v1/agents/{AGENT}/guard", f"/v1/agents/{AGENT}/controls"])
def test_endpoints_need_a_key(client: TestClient, path: str) -> None:
    """Without a key the guard and the controls answer 401 in the error shape, with a Bearer challenge."""
    response = client.get(path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = client.get(path, headers=bearer("aw_0000000000000000_" + "x" * 43))
    assert wrong.status_code == 401


def test_endpoint_names_the_actions_to_fail_closed_on(client: TestClient, keys: dict, config_file: Path) -> None:
    """fail_closed_actions is the agent's forbidden_actions and requires_approval, the "*" policy's included, allowed
    or paused alike: what a client refuses when it cannot reach the guard."""
    rewrite(config_file, CONFIG + 'agents:\n  "*": {forbidden_actions: [record.delete]}\n'
            f"  {AGENT}: {{requires_approval: [email.send], forbidden_actions: [record.merge]}}\n", bump_s=5)
    assert guard(client, keys["ingest"])["fail_closed_actions"] == ["email.send", "record.delete", "record.merge"]
    assert guard(client, keys["ingest"], "followup-writer")["fail_closed_actions"] == ["record.delete"]
    AgentControls(alerts_db(client.app.state.home)).pause(AGENT, "ana@ops", "hold", now=AT)
    paused = guard(client, keys["ingest"])
    assert paused["allowed"] is False and paused["fail_closed_actions"] == ["email.send", "record.delete",
                                                                            "record.merge"]


def test_endpoint_rereads_a_changed_config(client: TestClient, keys: dict, home: Home, config_file: Path) -> None:
    """Dropping the check from guard.pause_on in the file allows the agent at the next request, no restart."""
    incident_store(home).save([incident(1)], 1)
    assert guard(client, keys["ingest"])["incident_id"] == "INC-1"
    rewrite(config_file, "guard:\n  pause_on: []\n", bump_s=5)
    assert guard(client, keys["ingest"])["allowed"] is True


def test_unchanged_config_file_is_not_read_again(client: TestClient, keys: dict, home: Home,
                                                 config_file: Path) -> None:
    """The config is cached by the file's mtime, size and inode: same signature, the cached guard config stands."""
    incident_store(home).save([incident(1)], 1)
    assert guard(client, keys["ingest"])["allowed"] is False
    before = config_file.stat()
    unguarded = "guard:\n  pause_on: []  # "
    unguarded += "x" * (len(CONFIG) - len(unguarded) - 1) + "\n"
    with config_file.open("r+", encoding="utf-8") as handle:  # a valid config, same inode and size, mtime put back
        handle.write(unguarded)
    os.utime(config_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert guard(client, keys["ingest"])["allowed"] is False


def test_invalid_config_keeps_the_last_good_one_and_logs(client: TestClient, keys: dict, home: Home,
                                                         config_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A config broken while serving is logged with its error, and the guard keeps answering from the last good
    one; once fixed, the new one is used."""
    incident_store(home).save([incident(1)], 1)
    assert guard(client, keys["ingest"])["incident_id"] == "INC-1"
    rewrite(config_file, "guard:\n  pause_on: [no.such_check]\n", bump_s=5)
    with caplog.at_level("ERROR", logger="agentwatch.app.api.watched_config"):
        assert guard(client, keys["ingest"])["incident_id"] == "INC-1"
        assert guard(client, keys["ingest"])["incident_id"] == "INC-1"
    errors = [r.getMessage() for r in caplog.records if r.name == "agentwatch.app.api.watched_config"]
    assert len(errors) == 1 and "'no.such_check' names no check" in errors[0] and "last good config" in errors[0]
    rewrite(config_file, "guard:\n  pause_on: []\n", bump_s=10)
    assert guard(client, keys["ingest"])["allowed"] is True


def test_invalid_config_from_the_start_is_a_503(home: Home, keys: dict, tmp_path: Path) -> None:
    """With no good config ever read, the guard answers 503 config_invalid naming the problem, not a crash."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("guard: {pause_on: [nope]}\n", encoding="utf-8")
    with TestClient(create_app(home, ApiSettings(config_path=broken))) as client:
        response = client.get(f"/v1/agents/{AGENT}/guard", headers=bearer(keys["ingest"]))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "config_invalid" and "broken.yaml line 1" in error["message"]


def test_endpoint_is_in_the_openapi_document(client: TestClient) -> None:
    """The guard is documented under the 'agents' tag with a summary, the agent's one-line use and its errors."""
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/v1/agents/{agent_id}/guard"]["get"]
    assert operation["tags"] == ["agents"] and operation["summary"]
    assert "curl" in operation["description"] and "/guard" in operation["description"]
    assert {"200", "401", "403", "503"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("GuardDecision")
    assert document["paths"]["/v1/agents/{agent_id}/controls"]["get"]["tags"] == ["agents"]


# -- the CLI ---------------------------------------------------------------------------------------


def agentwatch(*args: object) -> tuple[int, str, str]:
    return run_cli(*args, env=ENV)


def status_json(home: Home, *extra: object) -> dict[str, Any]:
    code, out, _ = agentwatch("agent", "status", AGENT, "--json", "--home", home.root, *extra)
    assert code == 0, out
    return json.loads(out)


def test_cli_pause_status_resume(home: Home, config_file: Path) -> None:
    """`agent pause` records who and why and the status shows the agent refused; a critical incident keeps it
    refused after the operator's pause ends; `agent resume` overrides it; status lists the controls."""
    code, out, _ = agentwatch("agent", "pause", AGENT, "--reason", "wrong owners", "--home", home.root)
    assert code == 0 and out.strip() == f"paused {AGENT} (by tester@{socket.gethostname()}): wrong owners"
    body = status_json(home)
    assert body["allowed"] is False and body["incident_id"] is None
    assert body["reason"].startswith(f"paused by tester@{socket.gethostname()} at ")
    assert body["reason"].endswith(": wrong owners")
    code, out, _ = agentwatch("agent", "status", AGENT, "--home", home.root)
    assert code == 0 and f"{AGENT}: NOT allowed: paused by tester@" in out
    assert ["pause", f"tester@{socket.gethostname()}"] in [line.split()[2:4] for line in out.splitlines()]

    incident_store(home).save([incident(1, opened=datetime.now(UTC) - timedelta(minutes=1))], 1)
    code, _, _ = agentwatch("agent", "resume", AGENT, "--reason", "owners fixed", "--by", "ana", "--home", home.root)
    assert code == 0
    assert status_json(home, "--config", config_file)["allowed"] is True  # the resume came after INC-1 opened
    incident_store(home).save([incident(2, opened=datetime.now(UTC) + timedelta(minutes=1))], 2)
    body = status_json(home, "--config", config_file)
    assert (body["allowed"], body["incident_id"]) == (False, "INC-2")
    assert [(c["action"], c["by"], c["reason"]) for c in body["controls"]] == [
        ("resume", "ana", "owners fixed"), ("pause", f"tester@{socket.gethostname()}", "wrong owners")]


def test_cli_status_uses_the_homes_config(home: Home) -> None:
    """Without --config, status reads agentwatch.yaml in the home: its guard.pause_on decides."""
    incident_store(home).save([incident(1)], 1)
    assert status_json(home)["allowed"] is True
    (home.root / "agentwatch.yaml").write_text(CONFIG, encoding="utf-8")
    assert status_json(home)["incident_id"] == "INC-1"
    code, out, _ = agentwatch("agent", "status", AGENT, "--home", home.root)
    assert code == 0 and f"{AGENT}: NOT allowed: INC-1 {NULLS} (critical)" in out


@pytest.mark.parametrize(("args", "message"), [
    (["pause", AGENT], "pause lead-router: give a reason with --reason"),
    (["resume", AGENT, "--reason", " "], "resume lead-router: give a reason with --reason"),
    (["pause", AGENT, "--reason", "x", "--by", "agentwatch"], "--by 'agentwatch' is reserved"),
    (["status", AGENT, "--config", "/nonexistent/agentwatch.yaml"], "agentwatch.yaml: no such file"),
])
def test_cli_mistakes_are_one_line_and_exit_2(home: Home, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch, args: list[str], message: str) -> None:
    """A missing or blank reason, the reserved --by, or a missing --config exit 2 with one line naming it."""
    assert message in main_error(capsys, monkeypatch, "agent", *args, "--home", home.root)
    assert AgentControls(alerts_db(home)).history() == []
