"""The CRM schema pollers against loopback servers answering as Salesforce and HubSpot do (tests/crm_fakes.py):
a rename stored once and caught by the next `agentwatch check`, unchanged polls storing nothing but the heartbeat,
retries on a 429 and a 500, a new token after an expired session, the JWT bearer flow, a failing poller opening its
incident after the grace and resolving on a success, status, /healthz, and no secret in any output."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agentwatch.app.config import Config, config_for
from agentwatch.app.crm_polling import CrmPolling
from agentwatch.checks.engine import incident_store
from agentwatch.collector.crm.state import PollState
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home
from tests.checks_support import run
from tests.crm_fakes import HUBSPOT_RATE_LIMIT, SALESFORCE_SERVER_ERROR, FakeHubspot, FakeSalesforce, serving
from tests.dashboard_support import open_dashboard, open_page  # noqa: F401  (autouse: no key asked)
from tests.live_support import CLI_TIMEOUT_S, Server, agentwatch, free_port, stored_rows

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata" / "salesforce"
HUBSPOT_FIXTURE = ROOT / "tests" / "fixtures" / "hubspot" / "contacts_properties.json"
CLIENT_ID = "3MVG9pollerTestConsumerKey"
CLIENT_SECRET = "sf-consumer-secret-5e1f0c9a7b3d"
HUBSPOT_TOKEN = "pat-na1-7c0ffee0-1234-4abc-9def-0123456789ab"
ENV = {"SF_CLIENT_ID": CLIENT_ID, "SF_CLIENT_SECRET": CLIENT_SECRET, "HUBSPOT_TOKEN": HUBSPOT_TOKEN}
T0 = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
SNAPSHOTS = "SELECT source, object, taken_at FROM schema_snapshots ORDER BY taken_at, source, object"


class MovableClock:
    """The pollers' clock in a test: `sleep` records the wait and moves the time, nothing sleeps."""

    def __init__(self, at: datetime) -> None:
        self.at, self.slept = at, []

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.at += timedelta(seconds=seconds)

    def advance(self, **amount: float) -> None:
        self.at += timedelta(**amount)


def describe(name: str) -> dict[str, Any]:
    """A real describe body Salesforce returned (../shared/realdata), as the fake serves it."""
    path = REALDATA / f"cumulusci_{name}.describe.json"
    if not path.exists():
        pytest.skip(f"{path} is missing: the real describe bodies live outside the repository")
    return json.loads(path.read_text())


def rename_field(body: dict[str, Any], old: str, new: str) -> None:
    """As RevOps renaming a field does: the API name changes, the rest stays."""
    key = "fields" if "fields" in body else "results"
    (field,) = [f for f in body[key] if f["name"] == old]
    field["name"] = new


def salesforce_section(url: str, objects: list[str], **auth: str) -> dict[str, Any]:
    auth = auth or {"kind": "client_credentials", "client_id_env": "SF_CLIENT_ID",
                    "client_secret_env": "SF_CLIENT_SECRET"}
    return {"instance_url": url, "objects": objects, "auth": auth}


def write_config(home: Home, **crm: Any) -> Config:
    home.config_file.write_text(yaml.safe_dump({"crm": crm}))
    return config_for(home)


def snapshots(home: Home) -> list[tuple[Any, ...]]:
    return stored_rows(home, SNAPSHOTS, 0)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log line agentwatch and httpx write during the test, at every level."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("agentwatch", "httpx", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield lines
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def assert_no_secret(texts: list[str], secrets: list[str]) -> None:
    """No secret value appears in any of `texts` (log lines, outputs, files)."""
    assert secrets and all(len(s) > 10 for s in secrets)
    leaks = [(secret[:6] + "...", text[:200]) for text in texts for secret in secrets if secret in text]
    assert not leaks, leaks


def home_files(home: Home) -> list[str]:
    """The pollers' and incidents' state files, as text: secrets must not be stored either."""
    return [path.read_bytes().decode("latin-1") for path in (home.crm_polls_file, home.incidents_file)
            if path.exists()]


def test_salesforce_rename_is_stored_once_and_caught_by_the_next_check(home: Home, log_lines: list[str]) -> None:
    """Real describe bodies: the first poll stores each object, unchanged polls store nothing (through a 500 and
    an expired session), the rename is stored once and `agentwatch check` in a fresh process reports it; a day
    later the heartbeat stores an unchanged snapshot."""
    lead, opportunity = describe("Lead"), describe("Opportunity")
    with serving(FakeSalesforce({"Lead": lead, "Opportunity": opportunity}, CLIENT_ID, CLIENT_SECRET)) as sf:
        write_config(home, salesforce=salesforce_section(sf.url, ["Lead", "Opportunity"]))
        clock = MovableClock(T0)
        polling = CrmPolling(home, clock=clock, environ=ENV)

        first = polling.poll_once()
        assert [(o.object, o.result, o.field_count) for o in first] == [("Lead", "first", 54),
                                                                         ("Opportunity", "first", 40)]
        assert len(snapshots(home)) == 2 and sf.token_requests == 1

        clock.advance(minutes=15)
        sf.faults.append(SALESFORCE_SERVER_ERROR)  # Lead's describe fails once, then answers
        assert [o.result for o in polling.poll_once()] == ["unchanged", "unchanged"]
        assert clock.slept == [1.0]  # the first backoff after a 500
        assert len(snapshots(home)) == 2

        clock.advance(minutes=15)
        sf.expire_sessions()
        rename_field(lead, "Industry", "Industry__c")
        renamed_at = clock.now()
        assert [o.result for o in polling.poll_once()] == ["changed", "unchanged"]
        assert sf.token_requests == 2  # one new token after INVALID_SESSION_ID, then the describe again

        clock.advance(minutes=15)
        assert [o.result for o in polling.poll_once()] == ["unchanged", "unchanged"]
        assert [(s, o) for s, o, _ in snapshots(home)] == [("salesforce", "Lead"), ("salesforce", "Opportunity"),
                                                           ("salesforce", "Lead")]
        assert snapshots(home)[2][2] == renamed_at

        checked = agentwatch(home, "check", "--as-of", (clock.now() + timedelta(minutes=1)).isoformat())
        assert "schema.field_renamed object=Lead field=Industry -> Industry__c" in checked

        clock.advance(hours=24)
        assert [o.result for o in polling.poll_once()] == ["heartbeat", "heartbeat"]
        assert len(snapshots(home)) == 5
    assert_no_secret([*log_lines, checked, *home_files(home)], [CLIENT_SECRET, *sf.issued])


def test_hubspot_waits_as_retry_after_says_and_stores_a_renamed_property(home: Home, log_lines: list[str]) -> None:
    """A 429 with HubSpot's RATE_LIMIT body and Retry-After is waited out; a renamed property is a new snapshot."""
    properties = json.loads(HUBSPOT_FIXTURE.read_text())
    with serving(FakeHubspot({"contacts": properties}, HUBSPOT_TOKEN)) as hubspot:
        write_config(home, hubspot={"objects": ["contacts"], "token_env": "HUBSPOT_TOKEN", "base_url": hubspot.url})
        clock = MovableClock(T0)
        polling = CrmPolling(home, clock=clock, environ=ENV)
        hubspot.faults.append(HUBSPOT_RATE_LIMIT)
        (outcome,) = polling.poll_once()
        assert outcome.result == "first" and clock.slept == [1.0]
        assert len(hubspot.requests) == 2

        clock.advance(minutes=15)
        rename_field(properties, "direct_dial", "direct_phone")
        assert [o.result for o in polling.poll_once()] == ["changed"]
        clock.advance(minutes=15)
        assert [o.result for o in polling.poll_once()] == ["unchanged"]
    assert [(s, o) for s, o, _ in snapshots(home)] == [("hubspot", "contacts")] * 2
    assert_no_secret(log_lines + home_files(home), [HUBSPOT_TOKEN])


def test_a_retry_after_longer_than_the_wait_bound_ends_the_poll_and_delays_the_next(home: Home) -> None:
    """Retry-After: 3600 with max_wait_seconds 120: the poll fails at once saying so, and its next run is an hour
    later instead of poll_minutes (15) later."""
    with serving(FakeHubspot({"contacts": json.loads(HUBSPOT_FIXTURE.read_text())}, HUBSPOT_TOKEN)) as hubspot:
        write_config(home, hubspot={"objects": ["contacts"], "token_env": "HUBSPOT_TOKEN", "base_url": hubspot.url})
        hubspot.faults.append(type(HUBSPOT_RATE_LIMIT)(429, HUBSPOT_RATE_LIMIT.body, {"Retry-After": "3600"}))
        clock = MovableClock(T0)
        (outcome,) = CrmPolling(home, clock=clock, environ=ENV).poll_once()
    assert not outcome.ok and clock.slept == []
    assert "429 RATE_LIMIT" in (outcome.error or "") and "Retry-After asks for 3600 s" in (outcome.error or "")
    (poller,) = PollState(home).pollers()
    assert datetime.fromisoformat(poller.next_run_at or "") == T0 + timedelta(hours=1)


def test_high_salesforce_api_usage_slows_polling_down(home: Home) -> None:
    """Sforce-Limit-Info at 87% of the daily allowance (slow_down_at_api_usage 0.8): the next poll is four
    poll_minutes away, and the usage shows in the poller's status."""
    with serving(FakeSalesforce({"Lead": describe("Lead")}, CLIENT_ID, CLIENT_SECRET)) as sf:
        write_config(home, salesforce=salesforce_section(sf.url, ["Lead"]))
        sf.api_used = 13_000
        CrmPolling(home, clock=MovableClock(T0), environ=ENV).poll_once()
    (poller,) = PollState(home).pollers()
    assert poller.api_usage == "13,001/15,000 (87%)"
    assert datetime.fromisoformat(poller.next_run_at or "") == T0 + timedelta(minutes=60)


def test_jwt_bearer_flow_signs_an_assertion_the_token_endpoint_verifies(home: Home, log_lines: list[str]) -> None:
    """The fake token endpoint verifies the RS256 assertion with the public key (issuer, subject, audience,
    expiry) before it hands out a token."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    user = "integration@acme.example"
    fake = FakeSalesforce({"Lead": describe("Lead")}, CLIENT_ID, "unused", key.public_key(), user)
    with serving(fake) as sf:
        write_config(home, salesforce=salesforce_section(
            sf.url, ["Lead"], kind="jwt_bearer", client_id_env="SF_CLIENT_ID", username=user,
            private_key_env="SF_JWT_KEY", login_url=sf.url))
        (outcome,) = CrmPolling(home, clock=MovableClock(datetime.now(UTC)),
                                environ={**ENV, "SF_JWT_KEY": pem}).poll_once()
        assert outcome.result == "first", outcome.error
        assert sf.token_requests == 1

        wrong = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        (refused,) = CrmPolling(home, clock=MovableClock(datetime.now(UTC)),
                                environ={**ENV, "SF_JWT_KEY": wrong}).poll_once()
    assert not refused.ok and "400 invalid_grant" in (refused.error or "")
    body_lines = [line for line in pem.splitlines() if "PRIVATE KEY" not in line]
    assert_no_secret(log_lines + home_files(home) + [refused.error or ""], [*body_lines, *sf.issued])


def test_a_missing_secret_variable_is_an_error_naming_it(home: Home) -> None:
    """No environment variable, no poll: the error names the variable and the key, never a value."""
    write_config(home, salesforce=salesforce_section("https://acme.my.salesforce.com", ["Lead"]))
    with pytest.raises(ConfigError, match=r"crm\.salesforce\.auth\.client_secret_env: environment variable "
                                          r"SF_CLIENT_SECRET is not set"):
        CrmPolling(home, environ={"SF_CLIENT_ID": CLIENT_ID}).poll_once()


def test_a_failing_poller_opens_its_incident_after_the_grace_and_resolves_on_a_success(home: Home) -> None:
    """A HubSpot token refused (401) at every poll: schema.watcher_blind opens once the poller has failed for
    failing_grace_minutes, stays open while it fails, and resolves after a successful poll."""
    with serving(FakeHubspot({"contacts": json.loads(HUBSPOT_FIXTURE.read_text())}, "pat-na1-rotated")) as hubspot:
        config = write_config(home, hubspot={"objects": ["contacts"], "token_env": "HUBSPOT_TOKEN",
                                             "base_url": hubspot.url}, failing_grace_minutes=60)
        clock = MovableClock(T0)
        polling = CrmPolling(home, clock=clock, environ=ENV)
        for _ in range(7):  # T0 .. T0+90m, every 15 minutes
            (outcome,) = polling.poll_once()
            assert "401 INVALID_AUTHENTICATION" in (outcome.error or "")
            clock.advance(minutes=15)
        report = run(home, T0, T0 + timedelta(minutes=90), config=config, only=["schema.watcher_blind"])
        ((opened_at, incident),) = report.opened
        assert opened_at == T0 + timedelta(minutes=60)
        assert incident.subject == {"source": "hubspot", "object": "contacts"}
        assert incident.started_at == T0 and "401 INVALID_AUTHENTICATION" in incident.summary

        hubspot.token = HUBSPOT_TOKEN  # the token is fixed
        (outcome,) = polling.poll_once()  # at T0+105m
        assert outcome.ok
    # it last fired at T0+90m: resolve_after_minutes (60) later, the success resolves it
    run(home, T0 + timedelta(minutes=105), T0 + timedelta(minutes=135), config=config, only=["schema.watcher_blind"])
    assert incident_store(home).get(incident.id).status == "open"
    run(home, T0 + timedelta(minutes=150), T0 + timedelta(minutes=150), config=config, only=["schema.watcher_blind"])
    resolved = incident_store(home).get(incident.id)
    assert resolved.status == "resolved", resolved
    assert "hubspot/contacts poller succeeded" in (resolved.status_note or "")


def test_serve_polls_and_shows_each_poller_in_status_and_healthz(home: Home, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `serve` polls by itself: the Salesforce poller succeeds, the HubSpot one (a wrong token) fails past
    its grace, so /healthz is degraded with crm_poller_failing and `agentwatch status` shows both; neither the
    server's log nor the status holds a secret."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    sf_fake = FakeSalesforce({"Lead": describe("Lead")}, CLIENT_ID, CLIENT_SECRET)
    hubspot_fake = FakeHubspot({"contacts": json.loads(HUBSPOT_FIXTURE.read_text())}, "pat-na1-other-token-0000")
    with serving(sf_fake) as sf, serving(hubspot_fake) as hubspot:
        write_config(home, salesforce=salesforce_section(sf.url, ["Lead"]),
                     hubspot={"objects": ["contacts"], "token_env": "HUBSPOT_TOKEN", "base_url": hubspot.url},
                     failing_grace_minutes=0.02)
        server = Server(home, free_port(), "", tmp_path / "serve.log").start()
        try:
            deadline, health = time.monotonic() + 60, {}
            while time.monotonic() < deadline:
                health = httpx.get(f"{server.url}/healthz", timeout=5).json()
                if any(r["code"] == "crm_poller_failing" for r in health["reasons"]):
                    break
                time.sleep(0.3)
            assert health["status"] == "degraded", health
            assert stored_rows(home, SNAPSHOTS, 1)[0][:2] == ("salesforce", "Lead")
            status = json.loads(agentwatch(home, "status", "--json"))
            table = agentwatch(home, "status")
        finally:
            server.kill()
    pollers = {p["poller"]: p for p in status["crm_pollers"]}
    assert pollers["salesforce/Lead"]["last_success_at"] and pollers["salesforce/Lead"]["last_error"] is None
    assert pollers["hubspot/contacts"]["failing_past_grace"] and pollers["hubspot/contacts"]["last_success_at"] is None
    assert "401 INVALID_AUTHENTICATION" in pollers["hubspot/contacts"]["last_error"]
    assert "CRM schema pollers" in table and "hubspot/contacts" in table
    log = (tmp_path / "serve.log").read_text()
    assert "salesforce/Lead: first snapshot stored (54 fields)" in log
    assert_no_secret([log, json.dumps(status), table, json.dumps(health), *home_files(home)],
                     [CLIENT_SECRET, HUBSPOT_TOKEN, *sf_fake.issued])


def cli(home: Home, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process with `env` (the variables holding the CRM secrets)."""
    return subprocess.run([sys.executable, "-c", "from agentwatch.app.cli import main; main()", *args, "--home",
                           str(home.root)], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                          env={"COLUMNS": "250", "NO_COLOR": "1", "PATH": os.environ.get("PATH", ""), **env})


def test_schema_poll_once_from_the_command_line(home: Home) -> None:
    """`agentwatch schema poll --once [--object]` prints what each poll did; a missing variable is one error line
    naming it, exit 2."""
    with serving(FakeSalesforce({"Lead": describe("Lead"), "Opportunity": describe("Opportunity")}, CLIENT_ID,
                                CLIENT_SECRET)) as sf:
        write_config(home, salesforce=salesforce_section(sf.url, ["Lead", "Opportunity"]))
        done = cli(home, ENV, "schema", "poll", "--once", "--object", "Lead")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "salesforce/Lead: first snapshot stored (54 fields)"
        again = cli(home, ENV, "schema", "poll", "--once")
        assert again.stdout.splitlines() == ["salesforce/Lead: unchanged (54 fields), nothing stored",
                                             "salesforce/Opportunity: first snapshot stored (40 fields)"]
        missing = cli(home, {"SF_CLIENT_ID": CLIENT_ID}, "schema", "poll", "--once")
        unknown = cli(home, ENV, "schema", "poll", "--once", "--object", "Contact")
    assert missing.returncode == 2 and "environment variable SF_CLIENT_SECRET is not set" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert unknown.returncode == 2 and "--object Contact: not an object of the crm: section" in unknown.stderr
    assert_no_secret([done.stdout, done.stderr, again.stdout, again.stderr, missing.stderr, *home_files(home)],
                     [CLIENT_SECRET, *sf.issued])


def test_the_schema_page_shows_each_poller_and_a_blind_one(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Schema page lists the pollers (last success, last error, next run), and says which one is blind, even
    before any snapshot is stored."""
    with serving(FakeHubspot({"contacts": json.loads(HUBSPOT_FIXTURE.read_text())}, "pat-na1-rotated")) as hubspot:
        write_config(home, hubspot={"objects": ["contacts"], "token_env": "HUBSPOT_TOKEN", "base_url": hubspot.url})
        CrmPolling(home, clock=MovableClock(T0), environ=ENV).poll_once()
    at = open_page(monkeypatch, home, "schema")
    assert [e.value.replace("\\", "") for e in at.error] == [  # the Markdown source: its escapes removed
        "Failing past their grace, schema changes unseen: hubspot/contacts (a schema.watcher_blind incident is open "
        "or opens at the next check run)."]
    (table,) = [e.value for e in at.dataframe if "poller" in e.value.columns]
    assert table["poller"].tolist() == ["hubspot/contacts"]
    assert "401 INVALID_AUTHENTICATION" in table["last error"][0] and table["last success"].isna().all()


def test_every_crm_setting_is_in_the_key_table_of_docs_crm_md() -> None:
    """docs/crm.md's table has a row `crm.<key>` for every key of the crm: section, nested ones included."""
    from agentwatch.collector.crm.config import CrmConfig, HubspotSource, SalesforceAuth, SalesforceSource

    rows = {line.split("|")[1].strip() for line in (ROOT / "docs" / "crm.md").read_text().splitlines()
            if line.startswith("| `crm.")}
    expected = [f"`crm.{name}`" for name in CrmConfig.model_fields if name not in ("salesforce", "hubspot")]
    expected += [f"`crm.salesforce.{name}`" for name in SalesforceSource.model_fields if name != "auth"]
    expected += [f"`crm.salesforce.auth.{name}`" for name in SalesforceAuth.model_fields]
    expected += [f"`crm.hubspot.{name}`" for name in HubspotSource.model_fields]
    assert [key for key in expected if key not in rows] == []
