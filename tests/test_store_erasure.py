"""Erasure (agentwatch erase): every event of a resource leaves every dataset, nothing else does, and the audit
record says who, when and how many without the erased values."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from agentwatch.checks.engine import incident_store
from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.core.home import Home
from agentwatch.core.locks import acquire_serve_lock, release_serve_lock
from agentwatch.schemas.incidents import Incident
from agentwatch.store.datasets import ACTIONS, OUTCOMES
from agentwatch.store.partitions import visible_parts
from tests.live_support import agentwatch

EMAIL = "ana@example.com"


def run(home: Home, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from agentwatch.app.cli import main; main()", *args, "--home",
                           str(home.root)], capture_output=True, text=True, timeout=600,
                          env={"COLUMNS": "250", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})


def seed(home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict],
         make_outcome: Callable[..., dict]) -> None:
    """L-1 has actions on two days (in two commits) and an outcome; L-2's action carries Ana's email."""
    lead = {"type": "lead", "id": "L-1"}
    batches = [
        [make_action(event_id="a1", resource=lead, ts="2026-10-01T09:00:00Z", inputs={"email": EMAIL}),
         make_action(event_id="a2", resource={"type": "lead", "id": "L-9"}, ts="2026-10-01T09:05:00Z")],
        [make_action(event_id="a3", resource=lead, ts="2026-10-02T09:00:00Z"),
         make_action(event_id="a4", resource={"type": "lead", "id": "L-2"}, ts="2026-10-02T10:00:00Z",
                     inputs={"email": EMAIL, "source": "web"}),
         make_action(event_id="a5", resource={"type": "lead", "id": "L-3"}, ts="2026-10-02T11:00:00Z",
                     inputs={"email": "bo@example.com"})],
    ]
    for n, batch in enumerate(batches):
        assert ingest_files(home, ACTIONS, [write_jsonl(tmp_path / f"a{n}.jsonl", batch)]).rejected == 0
    outcomes = [make_outcome(event_id="o1", resource=lead), make_outcome(event_id="o2", resource={"type": "lead",
                                                                                                  "id": "L-9"})]
    assert ingest_files(home, OUTCOMES, [write_jsonl(tmp_path / "o.jsonl", outcomes)]).rejected == 0


def ids(query: Callable[..., list[tuple]], view: str) -> list[str]:
    return [row[0] for row in query(f"SELECT event_id FROM {view} ORDER BY event_id")]


def test_erase_removes_every_event_of_the_resource_and_nothing_else(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict],
        make_outcome: Callable[..., dict], query: Callable[..., list[tuple]]) -> None:
    seed(home, tmp_path, write_jsonl, make_action, make_outcome)
    now = datetime.now(UTC)
    incident = Incident(id="INC-1", check="errors.burst", severity="warning", status="open", opened_at=now,
                        started_at=now, last_fired_at=now, subject={"agent_id": "lead-router"}, summary="errors",
                        sample_event_ids=["a1", "a2", "a3"], affected=3)
    incident_store(home).save([incident], first_number=1)

    dry = agentwatch(home, "erase", "--resource-id", "L-1", "--dry-run")
    assert "would erase 2 actions events from day=2026-10-01, day=2026-10-02" in dry
    assert "would erase 1 outcomes events" in dry
    assert ids(query, "actions") == ["a1", "a2", "a3", "a4", "a5"], "a dry run erases nothing"
    assert not (home.erasures_file).exists()

    done = agentwatch(home, "erase", "--resource-id", "L-1", "--requested-by", "dpo@example.com",
                      "--reason", "ticket 42")
    assert "erased 2 actions events" in done and "erased 1 outcomes events" in done
    assert ids(query, "actions") == ["a2", "a4", "a5"]
    assert ids(query, "outcomes") == ["o2"]
    assert incident_store(home).get("INC-1").sample_event_ids == ["a2"]

    (entry,) = [json.loads(line) for line in (home.erasures_file).read_text().splitlines()]
    assert entry["requested_by"] == "dpo@example.com" and entry["reason"] == "ticket 42" and entry["os_user"]
    assert entry["selectors"] == ["resource_id"]
    assert entry["datasets"] == {"actions": {"events": 2, "partitions": ["day=2026-10-01", "day=2026-10-02"]},
                                 "outcomes": {"events": 1, "partitions": ["day=2026-10-02"]}}
    assert "L-1" not in (home.erasures_file).read_text(), "the record never holds the erased value"

    again = agentwatch(home, "erase", "--resource-id", "L-1")
    assert "erased 0 actions events" in again and "nothing matched: no event was erased" in again


def test_erase_by_an_inputs_key(home: Home, tmp_path: Path, write_jsonl: Callable[..., Path],
                                make_action: Callable[..., dict], make_outcome: Callable[..., dict],
                                query: Callable[..., list[tuple]]) -> None:
    seed(home, tmp_path, write_jsonl, make_action, make_outcome)
    done = agentwatch(home, "erase", "--where", f"inputs.email={EMAIL}")
    assert "erased 2 actions events" in done
    assert ids(query, "actions") == ["a2", "a3", "a5"]
    assert ids(query, "outcomes") == ["o1", "o2"], "outcomes have no inputs: untouched"
    record = (home.erasures_file).read_text()
    assert EMAIL not in record and json.loads(record)["selectors"] == ["inputs.email"]
    # each partition is one rewritten file now, hiding the parts it replaced
    assert all(p.name.startswith("part-c-") for d in ("day=2026-10-01", "day=2026-10-02")
               for p in visible_parts(home, "actions")[d])


def test_erase_refuses_mistakes_and_a_running_server(home: Home, tmp_path: Path, write_jsonl: Callable[..., Path],
                                                     make_action: Callable[..., dict],
                                                     make_outcome: Callable[..., dict]) -> None:
    seed(home, tmp_path, write_jsonl, make_action, make_outcome)
    nothing = run(home, "erase")
    assert nothing.returncode == 2 and "say what to erase" in nothing.stderr
    wrong = run(home, "erase", "--where", "email=x")
    assert wrong.returncode == 2 and "inside inputs, before or after" in wrong.stderr
    acquire_serve_lock(home)  # as a running `agentwatch serve` holds it
    try:
        served = run(home, "erase", "--resource-id", "L-1")
    finally:
        release_serve_lock(home)
    assert served.returncode == 2 and "agentwatch serve is running" in served.stderr
    assert "Traceback" not in nothing.stderr + wrong.stderr + served.stderr


def test_erase_removes_the_resources_rejected_events_and_keeps_the_others(
        home: Home, tmp_path: Path, write_jsonl: Callable[..., Path], make_action: Callable[..., dict],
        make_outcome: Callable[..., dict]) -> None:
    """Rejected events (refused for their shape, kept in rejects/ for people to fix) may hold the erased person's
    data too: a record goes when its text holds the value as a whole token (L-1, not L-10), its count follows,
    and the audit record says how many without the value."""
    seed(home, tmp_path, write_jsonl, make_action, make_outcome)
    bad = [
        {**make_action(event_id="r1", resource={"type": "lead", "id": "L-1"}), "status": "exploded"},
        {**make_action(event_id="r2", resource={"type": "lead", "id": "L-10"}), "status": "exploded"},
        {**make_action(event_id="r3", resource={"type": "lead", "id": "L-3"}, inputs={"email": EMAIL}),
         "status": "exploded"},
        # The value after a JSON escape (\n): only decoded does it stand as a token of its own.
        {**make_action(event_id="r5", resource={"type": "lead", "id": "L-5"}, inputs={"note": f"Contact:\n{EMAIL}."}),
         "status": "exploded"},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in bad) + '\n{"event_id": "r4", "resource": "L-1", oops\n')
    assert ingest_files(home, ACTIONS, [path]).rejected == 5
    (reject_file,) = home.rejects.glob("actions-*.jsonl")
    as_sent = reject_file.read_bytes()

    dry = agentwatch(home, "erase", "--resource-id", "L-1", "--dry-run")
    assert "would erase 2 rejected events (in rejects/) holding the value" in dry
    assert reject_file.read_bytes() == as_sent, "a dry run changes nothing"
    done = agentwatch(home, "erase", "--resource-id", "L-1")
    assert "erased 2 rejected events (in rejects/) holding the value" in done
    left = [json.loads(line)["event_id"] for line in reject_file.read_text().splitlines()]
    assert left == ["r2", "r3", "r5"], "L-10's and the other leads' rejects stay"
    assert json.loads(reject_file.with_suffix(".count").read_text())["count"] == 3
    (entry,) = [json.loads(line) for line in home.erasures_file.read_text().splitlines()]
    assert entry["rejected_records"] == 2 and "L-1" not in home.erasures_file.read_text()

    by_email = agentwatch(home, "erase", "--where", f"inputs.email={EMAIL}")
    assert "erased 2 rejected events" in by_email and "quarantined" not in by_email
    assert [json.loads(line)["event_id"] for line in reject_file.read_text().splitlines()] == ["r2"]

    # A damaged part moved to quarantine/ cannot be read, so it is not searched: the command says so.
    (home.quarantine / "actions").mkdir(parents=True)
    (home.quarantine / "actions" / "part-damaged.parquet").write_bytes(b"PAR1 torn")
    warned = agentwatch(home, "erase", "--resource-id", "L-2")
    assert "1 quarantined parts (quarantine/: damaged, unreadable) were not searched" in warned
    assert json.loads(home.erasures_file.read_text().splitlines()[-1])["quarantined_parts_unsearched"] == 1
