"""agentwatch.client against a real `agentwatch serve` on loopback: batches arrive once across a restart, the
action scope, the guard and its fail-closed rule, refused events, the example agent, and a light import."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentwatch.client import (
    ActionScopeError,
    AuthenticationFailed,
    Client,
    InvalidArgument,
    QueueFull,
    RequestRefused,
)
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from tests.cli_support import PLAIN_WIDE, run_cli
from tests.live_support import Server, free_port, stop
from tests.live_support import stored_rows as rows

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "lead_router_agent.py"
POLICY = 'agents:\n  "*": {forbidden_actions: [record.delete]}\n  policy-agent: {requires_approval: [email.send]}\n'
HEAVY = ("duckdb", "fastapi", "polars", "pandas", "pyarrow", "uvicorn", "streamlit", "evidently",
         "great_expectations", "pydantic", "numpy")


def new_server(root: Path, config: str | None = None) -> Server:
    home = Home.resolve(root / "home")
    if config:
        home.config_file.write_text(config, encoding="utf-8")
    return Server(home, free_port(), KeyStore(home).create("ingest", name="client test")[1], root / "server.log")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by the tests that do not stop it; each uses its own agent_id."""
    started = new_server(tmp_path_factory.mktemp("client-server"), POLICY).start()
    yield started
    assert started.process is not None
    stop(started.process)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- batching and retries ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_batched_actions_arrive_exactly_once_across_a_server_restart(tmp_path: Path,
                                                                     processes: list[subprocess.Popen]) -> None:
    """Three batches' worth of actions, the server killed (SIGKILL) after the first batch and started again on the
    same home and port: after flush() every action is stored once, the client retried, and what it counts as
    sent plus duplicates is every event it queued (an event_id given twice is a duplicate, stored once)."""
    server = new_server(tmp_path).start()
    assert server.process is not None
    processes.append(server.process)
    aw = Client(server.url, server.key, agent_id="restart-agent", batch_size=100, flush_interval_s=0.05,
                max_retry_s=0.5, timeout_s=5.0)
    try:
        ids = [aw.action("lead.route", ("lead", f"L-{i}"), status="ok", decision={"route_to": f"rep-{i % 7}"}).event_id
               for i in range(100)]
        aw.flush(timeout=60)
        assert aw.stats.sent == 100
        server.kill()
        ids += [aw.action("lead.route", ("lead", f"L-{i}"), status="ok").event_id for i in range(100, 300)]
        aw.action("lead.route", ("lead", "L-0"), status="ok", event_id=ids[0])  # the same event_id again
        wait_for(lambda: aw.stats.retries > 0, "the client to retry while the server is down")
        server.start()
        assert server.process is not None
        processes.append(server.process)
        aw.flush(timeout=120)
        stats = aw.stats
    finally:
        aw.close()
    server.kill(signal.SIGTERM)  # flushes the WAL into the store
    stored = rows(server.home, "SELECT event_id, count(*) FROM actions GROUP BY event_id", 300)
    assert len(ids) == len(set(ids)) == 300
    assert dict(stored) == dict.fromkeys(ids, 1)
    assert stats.retries > 0 and stats.queued == 0
    assert stats.sent + stats.duplicates == 301 and stats.duplicates >= 1
    assert (stats.refused, stats.dropped) == (0, 0)
    assert any(error.code in ("unreachable", "timeout") for error in stats.last_errors)


def test_a_full_queue_raises_and_a_closing_client_counts_what_it_drops(caplog: pytest.LogCaptureFixture) -> None:
    """Past max_queue an immediate action raises QueueFull (nothing is blocked or lost silently); a scope ending on a
    full queue does not raise, it is logged and counted as dropped, as is what close() could not deliver."""
    aw = Client(f"http://127.0.0.1:{free_port()}", "aw_test_key", agent_id="full-agent", max_queue=2,
                max_retry_s=0.2, timeout_s=1.0)
    try:
        for i in range(2):
            aw.action("lead.route", ("lead", f"L-{i}"), status="ok")
        with pytest.raises(QueueFull, match="2 events wait to be sent"):
            aw.action("lead.route", ("lead", "L-2"), status="ok")
        with caplog.at_level(logging.ERROR, logger="agentwatch.client"), \
                aw.action("crm.update_field", ("lead", "L-3")) as act:
            act.after = {"OwnerId": "rep-1"}
        assert aw.stats.dropped == 1 and aw.stats.last_errors[-1].event_id == act.event_id
        assert f"action {act.event_id} dropped" in caplog.text
    finally:
        aw.close(timeout=0.2)
    assert (aw.stats.dropped, aw.stats.queued, aw.stats.sent) == (3, 0, 0)


# -- the action scope ---------------------------------------------------------------------------------------------


def test_the_action_scope_records_one_action_with_latency_and_status(server: Server) -> None:
    """A scope records before/after, inputs, decision, latency around the block and status ok; an exception inside
    becomes status error with its class and message, and goes on; status set to skipped stays; an action given a
    status is recorded at once and cannot be entered."""
    with Client(server.url, server.key, agent_id="scope-agent", agent_version="1.2.0", flush_interval_s=0.05) as aw:
        with aw.action("crm.update_field", resource=("lead", "L-1"), before={"OwnerId": None},
                       inputs={"country": "DE"}) as ok:
            time.sleep(0.05)
            ok.after = {"OwnerId": "rep-1"}
            ok.decision = {"route_to": "rep-1"}
            ok.confidence = 0.9
        with pytest.raises(TimeoutError, match="CRM did not answer"), \
                aw.action("crm.update_field", resource={"type": "lead", "id": "L-2"}) as failed:
            raise TimeoutError("CRM did not answer in 30 s")
        with aw.action("email.send", resource=("contact", "C-1"), ticket="T-9") as skipped:
            skipped.status = "skipped"
        immediate = aw.action("lead.route", ("lead", "L-3"), status="ok", decision={"route_to": "rep-2"})
        assert immediate.recorded
        with pytest.raises(ActionScopeError, match="recorded when it was made"), immediate:
            pass
        with pytest.raises(ActionScopeError, match="was recorded when its block ended"), skipped:
            pass  # a scope records one action: entering it again says so, not that status= was given
        with pytest.raises(InvalidArgument, match="neither a"):
            aw.action("lead.route", ("lead",), status="ok")  # type: ignore[arg-type]
        aw.flush(timeout=60)
    found = rows(server.home, "SELECT event_id, action, status, before, after, decision, latency_ms, error_code, "
                              "error_message, agent_version, extra FROM actions WHERE agent_id = 'scope-agent'", 4)
    by_id = {row[0]: row[1:] for row in found}
    assert set(by_id) == {ok.event_id, failed.event_id, skipped.event_id, immediate.event_id}
    action, status, before, after, decision, latency, code, message, version, _ = by_id[ok.event_id]
    assert (action, status, code, message, version) == ("crm.update_field", "ok", None, None, "1.2.0")
    assert (json.loads(before), json.loads(after), json.loads(decision)) == (
        {"OwnerId": None}, {"OwnerId": "rep-1"}, {"route_to": "rep-1"})
    assert 50 <= latency < 30_000
    assert by_id[failed.event_id][1] == "error"
    assert by_id[failed.event_id][6:8] == ("TimeoutError", "CRM did not answer in 30 s")
    assert by_id[skipped.event_id][1] == "skipped" and json.loads(by_id[skipped.event_id][9]) == {"ticket": "T-9"}
    assert ok.event_id.startswith("act-") and len({ok.event_id, failed.event_id, immediate.event_id}) == 3


# -- the guard ------------------------------------------------------------------------------------------------------


def test_allowed_follows_pause_and_resume_through_the_cache(server: Server) -> None:
    """allowed() turns False once an operator pauses the agent and True after the resume, each time once the cached
    answer (guard_cache_s) is older than that; meanwhile the cached answer stands. The server's fail_closed_actions
    come with it."""
    agent = "guarded-agent"
    with Client(server.url, server.key, agent_id=agent, guard_cache_s=2.0) as aw:
        first = aw.guard()
        assert (first.allowed, first.source, first.fail_closed_actions) == (True, "server", ("record.delete",))
        asked = time.monotonic()
        code, _, _ = run_cli("agent", "pause", agent, "--reason", "client test", "--home", server.home.root,
                             env=PLAIN_WIDE | {"USER": "tester"})
        assert code == 0
        cached = aw.guard()
        if time.monotonic() - asked < 2.0:  # the answer is still fresh: it is reused, not asked again
            assert (cached.allowed, cached.source) == (True, "cache")
        wait_for(lambda: not aw.allowed(), "allowed() to turn False after the pause", 30)
        paused = aw.guard()
        assert paused.reason and paused.reason.startswith("paused by tester@") and paused.incident_id is None
        code, _, _ = run_cli("agent", "resume", agent, "--reason", "done", "--home", server.home.root,
                             env=PLAIN_WIDE | {"USER": "tester"})
        assert code == 0
        wait_for(lambda: aw.allowed(), "allowed() to turn True after the resume", 30)


def test_unreachable_guard_fails_closed_for_irreversible_actions_only(caplog: pytest.LogCaptureFixture) -> None:
    """With nothing listening: "auto" refuses an action marked irreversible and allows another, saying why and
    logging it; "closed" and "open" force one way whatever the action."""
    url = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="agentwatch.client"), \
            Client(url, "aw_test_key", agent_id="down-agent", irreversible_actions=["email.send"]) as aw:
        refused = aw.guard(action="email.send")
        assert (refused.allowed, refused.source) == (False, "unreachable")
        assert refused.reason and "email.send is marked irreversible" in refused.reason
        assert aw.allowed(action="lead.route") is True
        assert aw.allowed() is True  # no action named: nothing marks it irreversible
    assert "down-agent NOT allowed" in caplog.text and "down-agent allowed" in caplog.text
    with Client(url, "aw_test_key", agent_id="down-agent", on_unreachable="closed") as closed:
        assert closed.allowed(action="lead.route") is False
    with Client(url, "aw_test_key", agent_id="down-agent", on_unreachable="open",
                irreversible_actions=["email.send"]) as open_:
        assert open_.allowed(action="email.send") is True
    with pytest.raises(InvalidArgument, match="on_unreachable"):
        Client(url, "aw_test_key", on_unreachable="maybe")  # type: ignore[arg-type]


@pytest.mark.slow
def test_unreachable_guard_fails_closed_for_the_actions_the_server_named(tmp_path: Path,
                                                                         processes: list[subprocess.Popen]) -> None:
    """The actions the agent's policy forbids or puts under approval, as the server last sent them, fail closed
    once the server is gone; the client's own irreversible_actions need not name them."""
    server = new_server(tmp_path, POLICY).start()
    assert server.process is not None
    processes.append(server.process)
    with Client(server.url, server.key, agent_id="policy-agent", guard_cache_s=0.2) as aw:
        assert aw.guard().fail_closed_actions == ("email.send", "record.delete")
        server.kill()
        wait_for(lambda: aw.guard().source == "unreachable", "the cached answer to expire")
        assert aw.allowed(action="email.send") is False
        assert aw.allowed(action="record.delete") is False
        assert aw.allowed(action="lead.route") is True


# -- refusals -------------------------------------------------------------------------------------------------------


def test_refused_events_are_counted_not_retried_and_the_valid_ones_stored(server: Server,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A batch with one invalid event (confidence 1.5): the server answers 422 and keeps the other two; the client
    counts one refused, names it in last_errors and the log, and does not send it again."""
    with caplog.at_level(logging.ERROR, logger="agentwatch.client"), \
            Client(server.url, server.key, agent_id="refusing-agent", flush_interval_s=0.05) as aw:
        good = [aw.action("lead.route", ("lead", f"L-{i}"), status="ok").event_id for i in range(2)]
        bad = aw.action("lead.route", ("lead", "L-9"), status="ok", confidence=1.5).event_id
        aw.flush(timeout=60)
        time.sleep(0.3)  # a retry would show in the counts by now
        stats = aw.stats
    assert (stats.sent, stats.refused, stats.retries, stats.dropped, stats.queued) == (2, 1, 0, 0, 0)
    refused = [error for error in stats.last_errors if error.event_id == bad]
    assert len(refused) == 1 and refused[0].status == 422 and "confidence" in refused[0].message
    assert f"1 of 3 actions refused by {server.url}" in caplog.text and bad in caplog.text
    stored = rows(server.home, "SELECT event_id FROM actions WHERE agent_id = 'refusing-agent'", 2)
    assert sorted(row[0] for row in stored) == sorted(good)


def test_a_bad_key_drops_the_batch_once_and_the_guard_raises(server: Server) -> None:
    """401 is permanent: the batch is dropped and counted, not retried; the guard raises AuthenticationFailed
    rather than guessing; the key is never in a message."""
    bad_key = "aw_00000000_" + "x" * 43
    with Client(server.url, bad_key, agent_id="badkey-agent", flush_interval_s=0.05) as aw:
        aw.action("lead.route", ("lead", "L-1"), status="ok")
        aw.flush(timeout=60)
        stats = aw.stats
        with pytest.raises(AuthenticationFailed) as raised:
            aw.allowed()
    assert (stats.dropped, stats.retries, stats.sent) == (1, 0, 0)
    assert stats.last_errors[-1].status == 401 and "AGENTWATCH_KEY" in stats.last_errors[-1].message
    assert raised.value.status == 401
    assert bad_key not in repr(aw) and all(bad_key not in e.message for e in stats.last_errors)


def test_a_schema_snapshot_is_sent_at_once(server: Server, make_snapshot: Callable[..., dict[str, Any]]) -> None:
    """schema_snapshot() posts now and returns the server's answer; the same snapshot again is a duplicate; an
    invalid one raises RequestRefused naming the field."""
    with Client(server.url, server.key) as aw:
        snapshot = make_snapshot(taken_at="2026-10-03T00:00:00Z")
        assert aw.schema_snapshot(snapshot) == {"accepted": 1, "duplicates": 0}
        assert aw.schema_snapshot([snapshot]) == {"accepted": 0, "duplicates": 1}
        with pytest.raises(RequestRefused) as refused:
            aw.schema_snapshot(make_snapshot(drop=["source"]))
    assert refused.value.status == 422 and refused.value.details[0]["errors"][0]["field"] == "source"


# -- the example agent and the import -------------------------------------------------------------------------------


def test_the_example_agent_runs_and_its_actions_are_stored(server: Server) -> None:
    """docs/examples/lead_router_agent.py routes its three leads against the real server: three actions and the
    rep's correction are stored."""
    env = {"AGENTWATCH_URL": server.url, "AGENTWATCH_KEY": server.key, "PATH": os.environ.get("PATH", "")}
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sent 4, duplicates 0, refused 0, dropped 0" in done.stdout
    actions = rows(server.home, "SELECT event_id, status, after FROM actions WHERE agent_id = 'lead-router'", 3)
    assert len(actions) == 3 and {row[1] for row in actions} == {"ok"}
    outcomes = rows(server.home, "SELECT corrects_event_id FROM outcomes WHERE kind = 'owner_changed'", 1)
    assert outcomes[0][0] in {row[0] for row in actions}


def test_events_still_queued_at_interpreter_exit_are_sent(server: Server) -> None:
    """A script that never closes its client loses nothing: the atexit hook flushes what is queued."""
    code = (f"from agentwatch.client import Client\n"
            f"aw = Client({server.url!r}, {server.key!r}, agent_id='exit-agent', flush_interval_s=600)\n"
            "for i in range(7):\n"
            "    aw.action('lead.route', ('lead', f'L-{i}'), status='ok')\n"
            "print(aw.stats.queued)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "7", "")
    assert len(rows(server.home, "SELECT event_id FROM actions WHERE agent_id = 'exit-agent'", 7)) == 7


def test_importing_the_client_loads_none_of_the_servers_dependencies() -> None:
    """`import agentwatch.client` in a fresh interpreter loads no DuckDB, FastAPI, pydantic, pandas, ...: agents
    install it next to their own stack."""
    code = f"import agentwatch.client, sys; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
