"""Inputs that broke ingest once: bytes that are not text, oversized lines, broken archives, store parts."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.core.api_keys import KeyStore
from agentwatch.core.errors import ConfigError, InputFileError
from agentwatch.core.home import Home
from agentwatch.core.limits import Limits
from agentwatch.store.datasets import ACTIONS
from agentwatch.store.reader import open_reader


def _event(number: int, **changes: object) -> dict:
    return {"event_id": f"e{number}", "ts": "2026-10-18T10:00:00Z", "agent_id": "lead-router",
            "action": "lead.route", "resource": {"type": "lead", "id": f"L-{number}"}, "status": "ok", **changes}


def _line(number: int, **changes: object) -> bytes:
    return json.dumps(_event(number, **changes)).encode() + b"\n"


def _stored(home: Home, sql: str = "SELECT event_id FROM actions ORDER BY 1") -> list[tuple]:
    con = open_reader(home)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_non_utf8_and_oversized_lines_are_rejected_one_by_one(tmp_path: Path) -> None:
    """A line that is not UTF-8 and a line over the size limit are each rejected; the lines around them are kept."""
    home = Home.resolve(tmp_path / "home")
    path = tmp_path / "mixed.jsonl"
    not_text = _line(2).replace(b'"lead-router"', b'"lead-\xff-router"')
    huge = _line(3, rationale="x" * (Limits().max_event_bytes + 10))
    path.write_bytes(_line(1) + not_text + huge + _line(4))
    report = ingest_files(home, ACTIONS, [path])
    assert (report.accepted, report.rejected) == (2, 2)
    problems = {r.number: r.errors[0].message for r in report.sample}
    assert "not valid UTF-8" in problems[2]
    assert "limits.max_event_bytes" in problems[3]
    assert _stored(home) == [("e1",), ("e4",)]


def test_truncated_and_fake_gzip_files_are_named_errors(tmp_path: Path) -> None:
    """A cut-off .gz and a plain file named .gz raise InputFileError naming the file, not a traceback."""
    home = Home.resolve(tmp_path / "home")
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(_line(1) * 2000)[:100])
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_text("not compressed")
    for path in (truncated, fake):
        with pytest.raises(InputFileError, match=path.name):
            ingest_files(home, ACTIONS, [path])


def test_store_parts_of_another_home_ingest_unchanged(tmp_path: Path) -> None:
    """Ingesting one home's Parquet parts into another keeps unknown keys and explicit nulls as they were sent."""
    source = Home.resolve(tmp_path / "a")
    path = tmp_path / "in.jsonl"
    path.write_bytes(_line(1, tenant="acme", note=None, inputs={"deal_stage": None, "region": "EMEA"}))
    ingest_files(source, ACTIONS, [path])
    target = Home.resolve(tmp_path / "b")
    report = ingest_files(target, ACTIONS, [source.dataset_dir("actions")])
    assert (report.accepted, report.rejected) == (1, 0)
    sql = "SELECT extra, inputs, ts FROM actions"
    assert _stored(target, sql) == _stored(source, sql)
    extra, inputs, _ = _stored(target, sql)[0]
    assert json.loads(extra) == {"tenant": "acme", "note": None}
    assert json.loads(inputs) == {"deal_stage": None, "region": "EMEA"}


def test_timestamp_beyond_year_9999_in_utc_is_rejected(tmp_path: Path) -> None:
    """A time that is in year 10000 once converted to UTC is rejected with the reason, never stored."""
    home = Home.resolve(tmp_path / "home")
    path = tmp_path / "late.jsonl"
    path.write_bytes(_line(1) + _line(2, ts="9999-12-31T23:59:59-01:00") + _line(3, ts="0001-01-01T00:30:00+01:00"))
    report = ingest_files(home, ACTIONS, [path])
    assert report.accepted == 1
    assert {r.number for r in report.sample} == {2, 3}
    assert all("outside years 1 to 9999" in r.errors[0].message for r in report.sample)


def test_status_survives_a_half_written_reject_line(tmp_path: Path) -> None:
    """`status` counts rejects while a reject file ends in half a line (being appended to)."""
    home = Home.resolve(tmp_path / "home")
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"not json\n" + _line(1))
    report = ingest_files(home, ACTIONS, [path])
    assert report.rejects_file is not None
    with open(report.rejects_file, "a") as out:
        out.write('{"dataset": "actions", "rejected_at": "2026')
    from agentwatch.app.status import store_status

    assert store_status(home)["rejects"] == {"actions": 1}


def test_unusable_home_is_a_config_error(tmp_path: Path) -> None:
    """A home below a regular file is refused with a ConfigError naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot use"):
        Home.resolve(blocker / "home")
    events = tmp_path / "events.jsonl"
    events.write_bytes(_line(1))
    # ingest creates a missing home (a reading command such as status refuses one that does not exist)
    result = subprocess.run([sys.executable, "-m", "agentwatch.app.cli", "ingest", "actions", str(events), "--home",
                             str(blocker / "home")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "cannot use" in result.stderr


def test_damaged_key_record_is_a_config_error(tmp_path: Path) -> None:
    """A key record missing a field makes the key file a ConfigError that says how to recover."""
    home = Home.resolve(tmp_path / "home")
    store = KeyStore(home)
    store.create("read")
    document = json.loads(home.keys_file.read_text())
    del document["keys"][0]["scope"]
    home.keys_file.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="damaged"):
        KeyStore(home).list()


def test_hostile_csv_header_names_are_data_not_sql(tmp_path: Path) -> None:
    """CSV header names full of quotes and SQL become extra keys verbatim; nothing is executed or mangled."""
    home = Home.resolve(tmp_path / "home")
    hostile = ['tenant"); DROP TABLE actions; --', "it's", "a\"b"]
    header = ",".join(["event_id", "ts", "agent_id", "action", "resource_type", "resource_id", "status"]
                      + ['"' + name.replace('"', '""') + '"' for name in hostile])
    row = "e1,2026-10-18T10:00:00Z,lead-router,lead.route,lead,L-1,ok,x,y,z"
    path = tmp_path / "hostile.csv"
    path.write_text(header + "\n" + row + "\n")
    report = ingest_files(home, ACTIONS, [path])
    assert (report.accepted, report.rejected) == (1, 0)
    (extra,) = _stored(home, "SELECT extra FROM actions")[0]
    assert json.loads(extra) == dict(zip(hostile, ["x", "y", "z"], strict=True))
