"""File ingest of action and outcome events: every input format, de-duplication, rejections, chunking, errors."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentwatch.collector.ingest.pipeline import FilesNotIngested, Ingestor, IngestReport, ingest_files
from agentwatch.collector.ingest.sources import read_jsonl
from agentwatch.core.errors import InputFileError
from agentwatch.core.home import Home
from agentwatch.store import duck
from agentwatch.store.datasets import ACTIONS, OUTCOMES
from agentwatch.store.reader import SCHEMA_PART

T0 = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)


def ingest(home: Home, *paths: Path, dataset=ACTIONS, fmt: str | None = None) -> IngestReport:
    return ingest_files(home, dataset, list(paths), fmt=fmt)


def stored_ids(query) -> list[str]:
    return [row[0] for row in query("SELECT event_id FROM actions ORDER BY event_id")]


def rejection_by_number(report: IngestReport) -> dict[int, Any]:
    return {r.number: r for r in report.sample}


def error_fields(rejection) -> set[str]:
    return {e.field for e in rejection.errors}


# -- JSONL: stored values ------------------------------------------------------------------------


def test_jsonl_action_values_round_trip(home, query, make_action, write_jsonl, tmp_path):
    """Every field of a JSONL action lands in its column with the value sent (nested objects as JSON)."""
    full = make_action(
        event_id="evt-full",
        ts="2026-10-01T11:30:00.250+02:00",
        agent_id="lead-router",
        agent_version="1.4.2",
        action="lead.assign_owner",
        resource={"type": "lead", "id": "00Q5e00000ABCDE"},
        status="error",
        inputs={"deal_stage": None, "region": "EMEA", "employees": 120},
        before={"owner_id": None},
        after={"owner_id": "ae-emea-03"},
        decision={"route_to": "ae-emea-03", "qualified": True, "score": 0.82},
        confidence=0.82,
        rationale="open deal in EMEA",
        authorized_by="policy-7",
        approval={"approved_by": "mgr-emea-1", "approved_at": "2026-10-01T11:25:00+02:00"},
        external=True,
        records_affected=3,
        error={"code": "timeout", "message": "CRM did not answer within 5 s"},
        latency_ms=231.5,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
    )
    minimal = make_action(event_id="evt-minimal", status="skipped")
    report = ingest(home, write_jsonl(tmp_path / "a.jsonl", [full, minimal]))
    assert (report.accepted, report.duplicates, report.rejected) == (2, 0, 0)

    rows = query("""
        SELECT event_id, ts, agent_id, agent_version, action, resource_type, resource_id, status, inputs, before,
               after, decision, confidence, rationale, authorized_by, approved_by, approved_at, external,
               records_affected, error_code, error_message, latency_ms, trace_id, span_id, extra
        FROM actions ORDER BY event_id""")
    assert len(rows) == 2
    got = rows[0]
    assert got[:8] == ("evt-full", datetime(2026, 10, 1, 9, 30, 0, 250000, tzinfo=UTC), "lead-router", "1.4.2",
                       "lead.assign_owner", "lead", "00Q5e00000ABCDE", "error")
    assert [json.loads(v) for v in got[8:12]] == [full["inputs"], full["before"], full["after"], full["decision"]]
    assert got[12:] == (0.82, "open deal in EMEA", "policy-7", "mgr-emea-1",
                        datetime(2026, 10, 1, 9, 25, tzinfo=UTC), True, 3, "timeout",
                        "CRM did not answer within 5 s", 231.5, "4bf92f3577b34da6a3ce929d0e0e4736",
                        "00f067aa0ba902b7", None)
    # The minimal event: optional columns are NULL and records_affected takes its default of 1.
    assert rows[1] == ("evt-minimal", T0, "lead-router", None, "lead.route", "lead", "L-1", "skipped",
                       *[None] * 10, 1, *[None] * 6)


def test_inputs_null_value_and_missing_key_are_distinguishable(home, query, make_action, write_jsonl, tmp_path):
    """An input sent as null is stored as a present key with a null value, unlike a key never sent."""
    sent_null = make_action(event_id="null-stage", inputs={"deal_stage": None, "region": "NA"})
    not_sent = make_action(event_id="no-stage", inputs={"region": "NA"})
    no_inputs = make_action(event_id="no-inputs")
    ingest(home, write_jsonl(tmp_path / "a.jsonl", [sent_null, not_sent, no_inputs]))
    rows = query("""
        SELECT event_id, json_exists(inputs, '$.deal_stage'), inputs ->> 'deal_stage', inputs ->> 'region',
               inputs IS NULL
        FROM actions ORDER BY event_id""")
    assert rows == [
        ("no-inputs", None, None, None, True),
        ("no-stage", False, None, "NA", False),
        ("null-stage", True, None, "NA", False),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "2026-10-01T09:30:00Z",
        "2026-10-01T09:30:00+00:00",
        "2026-10-01T11:30:00+02:00",
        "2026-10-01T04:00:00-05:30",
        "2026-10-01T22:30:00+13:00",
        "2026-10-01t09:30:00z",
        "2026-10-01 09:30:00Z",
        "2026-10-01T09:30:00.000000Z",
    ],
)
def test_timestamp_offsets_store_the_same_utc_instant(home, query, make_action, write_jsonl, tmp_path, text):
    """A ts written with any offset (or Z, lower case, space separator) is stored as the same UTC instant."""
    ingest(home, write_jsonl(tmp_path / "a.jsonl", [make_action(event_id="e", ts=text)]))
    assert query("SELECT ts, day FROM actions") == [(T0, date(2026, 10, 1))]


def test_fractional_seconds_are_kept_to_the_microsecond(home, query, make_action, write_jsonl, tmp_path):
    """Fractions of a second are kept to the microsecond; longer fractions are truncated, not rounded."""
    events = [
        make_action(event_id="micro", ts="2026-10-01T09:30:00.123456+02:00"),
        make_action(event_id="nano", ts="2026-10-01T09:30:00.999999999Z"),
    ]
    ingest(home, write_jsonl(tmp_path / "a.jsonl", events))
    assert query("SELECT event_id, ts FROM actions ORDER BY event_id") == [
        ("micro", datetime(2026, 10, 1, 7, 30, 0, 123456, tzinfo=UTC)),
        ("nano", datetime(2026, 10, 1, 9, 30, 0, 999999, tzinfo=UTC)),
    ]


def test_day_partition_is_the_utc_date(home, query, make_action, write_jsonl, tmp_path):
    """The day column and the day= folder hold the UTC date of ts, not the date written with its offset."""
    events = [
        make_action(event_id="late-local", ts="2026-10-01T23:30:00-02:00"),  # 2026-10-02 01:30 UTC
        make_action(event_id="early-local", ts="2026-10-02T00:30:00+02:00"),  # 2026-10-01 22:30 UTC
    ]
    ingest(home, write_jsonl(tmp_path / "a.jsonl", events))
    assert query("SELECT event_id, ts, day FROM actions ORDER BY event_id") == [
        ("early-local", datetime(2026, 10, 1, 22, 30, tzinfo=UTC), date(2026, 10, 1)),
        ("late-local", datetime(2026, 10, 2, 1, 30, tzinfo=UTC), date(2026, 10, 2)),
    ]
    parts = home.dataset_dir("actions").glob("day=*/part-*.parquet")
    folders = sorted({p.parent.name for p in parts if p.name != SCHEMA_PART})  # the zero-row schema part aside
    assert folders == ["day=2026-10-01", "day=2026-10-02"]


def test_unknown_top_level_keys_are_kept_in_extra(home, query, make_action, write_jsonl, tmp_path):
    """Unknown top-level keys are stored as sent in `extra`; known keys are not repeated there."""
    custom = {"crm_instance": "eu-1", "tags": ["inbound", None], "meta": {"retries": 2, "why": None}, "note": None}
    with_extra = make_action(event_id="extra", confidence=0.5, inputs={"a": 1}, **custom)
    plain = make_action(event_id="plain", confidence=0.5)
    ingest(home, write_jsonl(tmp_path / "a.jsonl", [with_extra, plain]))
    rows = query("SELECT event_id, extra, confidence, inputs ->> 'a' FROM actions ORDER BY event_id")
    assert rows[1] == ("plain", None, 0.5, None)
    assert rows[0][0] == "extra"
    assert json.loads(rows[0][1]) == custom
    assert rows[0][2:] == (0.5, "1")


def test_utf8_bom_at_the_start_of_a_jsonl_file_is_ignored(home, query, make_action, tmp_path):
    """A JSONL file starting with a UTF-8 byte order mark (as Windows editors write) keeps its first line."""
    path = tmp_path / "bom.jsonl"
    lines = [json.dumps(make_action(event_id=f"b{i}")) for i in range(3)]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    report = ingest(home, path)
    assert (report.accepted, report.rejected) == (3, 0)
    assert stored_ids(query) == ["b0", "b1", "b2"]


# -- other input formats --------------------------------------------------------------------------


def three_actions(make_action) -> list[dict[str, Any]]:
    return [
        make_action(event_id="f1", ts="2026-10-01T11:30:00+02:00", inputs={"deal_stage": None}, confidence=0.9),
        make_action(event_id="f2", agent_id="qualifier", action="lead.qualify", status="pending_approval"),
        make_action(event_id="f3", resource={"type": "contact", "id": "C-9"}, external=False, records_affected=0),
    ]


EXPECTED_THREE = [
    ("f1", T0, "lead-router", "lead.route", "lead", "L-1", "ok", '{"deal_stage":null}', 0.9, None, 1),
    ("f2", T0, "qualifier", "lead.qualify", "lead", "L-1", "pending_approval", None, None, None, 1),
    ("f3", T0, "lead-router", "lead.route", "contact", "C-9", "ok", None, None, False, 0),
]
THREE_SQL = """SELECT event_id, ts, agent_id, action, resource_type, resource_id, status, inputs, confidence, external,
                      records_affected FROM actions ORDER BY event_id"""


def test_jsonl_gz(home, query, make_action, tmp_path):
    """A gzipped JSONL file is read like the plain one."""
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(e) for e in three_actions(make_action)).encode()))
    assert ingest(home, path).accepted == 3
    assert query(THREE_SQL) == EXPECTED_THREE


@pytest.mark.parametrize("indent", [None, 2], ids=["compact", "pretty"])
def test_json_array(home, query, make_action, tmp_path, indent):
    """A JSON array file stores one event per element; rejections count items from 1."""
    events = [*three_actions(make_action), make_action(event_id="bad", status="done")]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(events, indent=indent))
    report = ingest(home, path)
    assert (report.accepted, report.rejected) == (3, 1)
    assert [(r.unit, r.number, r.event_id, error_fields(r)) for r in report.sample] == [
        ("item", 4, "bad", {"status"})
    ]
    assert query(THREE_SQL) == EXPECTED_THREE


@pytest.mark.parametrize("indent", [None, 4], ids=["one-line", "pretty-printed"])
def test_single_json_object_file(home, query, make_action, tmp_path, indent):
    """A .json file holding one event object (on one line or pretty-printed over many) stores that event."""
    path = tmp_path / "one.json"
    path.write_text(json.dumps(three_actions(make_action)[0], indent=indent) + "\n")
    assert ingest(home, path).accepted == 1
    assert query(THREE_SQL) == EXPECTED_THREE[:1]


def test_csv_flat_layout(home, query, tmp_path):
    """A CSV in the flat layout stores typed values: JSON text, numbers, booleans and the records default."""
    path = tmp_path / "a.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["event_id", "ts", "agent_id", "action", "resource_type", "resource_id", "status", "inputs",
                         "confidence", "external", "records_affected"])
        writer.writerow(["f1", "2026-10-01T11:30:00+02:00", "lead-router", "lead.route", "lead", "L-1", "ok",
                         '{"deal_stage": null}', "0.9", "", ""])
        writer.writerow(["f2", "2026-10-01T09:30:00Z", "qualifier", "lead.qualify", "lead", "L-1",
                         "pending_approval", "", "", "", ""])
        writer.writerow(["f3", "2026-10-01T09:30:00Z", "lead-router", "lead.route", "contact", "C-9", "ok", "", "",
                         "false", "0"])
        writer.writerow(["f4", "2026-10-01T09:30:00Z", "lead-router", "lead.route", "lead", "L-4", "ok", "", "1.5",
                         "TRUE", "2"])
    report = ingest(home, path)
    assert (report.accepted, report.rejected) == (3, 1)
    # Line 1 is the header, so the fourth data row is line 5.
    assert [(r.unit, r.number, r.event_id, error_fields(r)) for r in report.sample] == [
        ("line", 5, "f4", {"confidence"})
    ]
    assert query(THREE_SQL) == EXPECTED_THREE


def test_csv_dotted_headers_and_nested_objects(home, query, tmp_path):
    """CSV headers may name nested keys with dots; all-empty cells of an optional object mean it is absent."""
    path = tmp_path / "a.csv"
    path.write_text(
        "event_id,ts,agent_id,action,resource.type,resource.id,status,error.code,error.message,"
        "approval.approved_by,approval.approved_at,crm_region\n"
        "d1,2026-10-01T09:30:00Z,lead-router,lead.route,lead,L-1,ok,,,,,emea\n"
        "d2,2026-10-01T09:30:00Z,lead-router,lead.route,lead,L-2,error,timeout,no answer,,,\n"
        "d3,2026-10-01T09:30:00Z,lead-router,lead.route,lead,L-3,ok,,,mgr-1,2026-10-01T10:00:00+01:00,\n",
        encoding="utf-8",
    )
    report = ingest(home, path)
    assert (report.accepted, report.rejected) == (3, 0), [r.describe() for r in report.sample]
    assert query("""SELECT event_id, resource_type, resource_id, error_code, error_message, approved_by, approved_at,
                           extra ->> 'crm_region'
                    FROM actions ORDER BY event_id""") == [
        ("d1", "lead", "L-1", None, None, None, None, "emea"),
        ("d2", "lead", "L-2", "timeout", "no answer", None, None, None),
        ("d3", "lead", "L-3", None, None, "mgr-1", datetime(2026, 10, 1, 9, 0, tzinfo=UTC), None),
    ]


def test_csv_quoted_json_cells_with_commas_and_quotes(home, query, tmp_path):
    """CSV cells quoted the standard way keep their commas and quotes; JSON text that is not an object is rejected."""
    path = tmp_path / "a.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["event_id", "ts", "agent_id", "action", "resource_type", "resource_id", "status", "inputs",
                         "rationale"])
        writer.writerow(["q1", "2026-10-01T09:30:00Z", "lead-router", "lead.route", "lead", "L-1", "ok",
                         json.dumps({"region": "EMEA, North", "ids": [1, 2]}), 'said "route it", then left'])
        writer.writerow(["q2", "2026-10-01T09:30:00Z", "lead-router", "lead.route", "lead", "L-1", "ok",
                         "region=EMEA", ""])
    report = ingest(home, path)
    assert (report.accepted, report.rejected) == (1, 1)
    assert [(r.number, r.event_id, error_fields(r)) for r in report.sample] == [(3, "q2", {"inputs"})]
    [(inputs, rationale)] = query("SELECT inputs, rationale FROM actions")
    assert json.loads(inputs) == {"region": "EMEA, North", "ids": [1, 2]}
    assert rationale == 'said "route it", then left'


def test_parquet_flat_layout_with_typed_columns(home, query, tmp_path):
    """A Parquet file with typed columns (TIMESTAMPTZ ts, JSON inputs, DOUBLE, BOOLEAN, BIGINT) stores them."""
    path = tmp_path / "a.parquet"
    con = duck.connect()
    try:
        duck.run(con, f"""
            COPY (
                SELECT * FROM (VALUES
                    ('f1', TIMESTAMPTZ '2026-10-01 11:30:00+02', 'lead-router', 'lead.route', 'lead', 'L-1', 'ok',
                     '{{"deal_stage": null}}'::JSON, 0.9::DOUBLE, NULL::BOOLEAN, NULL::BIGINT),
                    ('f2', TIMESTAMPTZ '2026-10-01 09:30:00+00', 'qualifier', 'lead.qualify', 'lead', 'L-1',
                     'pending_approval', NULL::JSON, NULL::DOUBLE, NULL::BOOLEAN, 1::BIGINT),
                    ('f3', TIMESTAMPTZ '2026-10-01 04:00:00-05:30', 'lead-router', 'lead.route', 'contact', 'C-9',
                     'ok', NULL::JSON, NULL::DOUBLE, false, 0::BIGINT)
                ) AS t(event_id, ts, agent_id, action, resource_type, resource_id, status, inputs, confidence,
                       external, records_affected)
            ) TO '{path}' (FORMAT parquet)""")
    finally:
        con.close()
    report = ingest(home, path)
    assert (report.accepted, report.rejected) == (3, 0), [r.describe() for r in report.sample]
    assert query(THREE_SQL) == EXPECTED_THREE


def test_parquet_written_by_pyarrow_with_nanosecond_utc_times(home, query, tmp_path):
    """A pyarrow/pandas-style Parquet file with timestamp[ns, UTC] and an unknown column stores its rows."""
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({
        "event_id": ["p1", "p2"],
        "ts": pa.array([T0, datetime(2026, 10, 3, 0, 0, tzinfo=UTC)], pa.timestamp("ns", tz="UTC")),
        "agent_id": ["lead-router", "lead-router"],
        "action": ["lead.route", "lead.route"],
        "resource_type": ["lead", "lead"],
        "resource_id": ["L-1", "L-2"],
        "status": ["ok", "error"],
        "latency_ms": [12.5, None],
        "shard": [3, 4],
    }), path)
    report = ingest(home, path)
    assert (report.accepted, report.rejected) == (2, 0), [r.describe() for r in report.sample]
    assert query("SELECT event_id, ts, day, status, latency_ms, extra FROM actions ORDER BY event_id") == [
        ("p1", T0, date(2026, 10, 1), "ok", 12.5, '{"shard":3}'),
        ("p2", datetime(2026, 10, 3, tzinfo=UTC), date(2026, 10, 3), "error", None, '{"shard":4}'),
    ]


def test_parquet_timestamp_without_time_zone_is_rejected_not_guessed(home, query, tmp_path):
    """A Parquet ts without a time zone is rejected naming ts, like a JSON time without an offset, not read as UTC."""
    path = tmp_path / "naive.parquet"
    pq.write_table(pa.table({
        "event_id": ["n1"], "ts": pa.array([datetime(2026, 10, 1, 9, 30)], pa.timestamp("us")),
        "agent_id": ["lead-router"], "action": ["lead.route"], "resource_type": ["lead"], "resource_id": ["L-1"],
        "status": ["ok"],
    }), path)
    report = ingest(home, path)
    assert (report.accepted, report.rejected) == (0, 1)
    [rejection] = report.sample
    assert (rejection.unit, rejection.number, rejection.event_id, error_fields(rejection)) == ("row", 1, "n1", {"ts"})
    assert query("SELECT count(*) FROM actions") == [(0,)]


@pytest.mark.parametrize(
    ("name", "text"),
    [("empty.json", "[]"), ("header-only.csv", "event_id,ts,agent_id,action,resource_type,resource_id,status\n")],
    ids=["empty-json-array", "header-only-csv"],
)
def test_file_without_events_stores_nothing(home, query, tmp_path, name, text):
    """An empty JSON array or a CSV with only its header row ingests nothing, and says so (issue 12, 11)."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(FilesNotIngested, match="holds no events") as caught:
        ingest(home, path)
    report = caught.value.report
    assert (report.accepted, report.duplicates, report.rejected) == (0, 0, 0)
    assert query("SELECT count(*) FROM actions") == [(0,)]


def test_format_option_overrides_the_file_name(home, query, make_action, write_jsonl, tmp_path):
    """fmt="jsonl" reads a file whose name says nothing about its format."""
    path = write_jsonl(tmp_path / "export.txt", [make_action(event_id="t1"), make_action(event_id="t2")])
    assert ingest(home, path, fmt="jsonl").accepted == 2
    assert stored_ids(query) == ["t1", "t2"]


# -- idempotence -----------------------------------------------------------------------------------


def test_reingesting_the_same_file_is_a_no_op(home, query, make_action, write_jsonl, tmp_path):
    """Ingesting a file again accepts nothing, counts every event as a duplicate and stores no new row."""
    path = write_jsonl(tmp_path / "a.jsonl", [make_action(event_id=f"r{i:02d}") for i in range(25)])
    first, second = ingest(home, path), ingest(home, path)
    assert (first.accepted, first.duplicates) == (25, 0)
    assert (second.accepted, second.duplicates, second.rejected) == (0, 25, 0)
    assert query("SELECT count(*), count(DISTINCT event_id) FROM actions") == [(25, 25)]


def test_same_id_in_two_files_is_stored_once(home, query, make_action, write_jsonl, tmp_path):
    """An event id sent in two files (in one run or in two runs) is stored once, as first sent."""
    a = write_jsonl(tmp_path / "a.jsonl", [make_action(event_id="shared", agent_id="one"), make_action(event_id="a")])
    b = write_jsonl(tmp_path / "b.jsonl", [make_action(event_id="shared", agent_id="two"), make_action(event_id="b")])
    c = write_jsonl(tmp_path / "c.jsonl", [make_action(event_id="shared", agent_id="three")])
    report = ingest(home, a, b)
    assert (report.accepted, report.duplicates) == (3, 1)
    later = ingest(home, c)
    assert (later.accepted, later.duplicates) == (0, 1)
    assert query("SELECT event_id, agent_id FROM actions ORDER BY event_id") == [
        ("a", "lead-router"), ("b", "lead-router"), ("shared", "one")
    ]


def test_same_id_twice_in_one_file_keeps_the_first(home, query, make_action, write_jsonl, tmp_path):
    """An id repeated inside one file is stored once with the content of its first occurrence."""
    events = [
        make_action(event_id="x", status="ok", inputs={"n": 1}),
        make_action(event_id="y"),
        make_action(event_id="x", status="error", inputs={"n": 2}),
        make_action(event_id="x", status="skipped", inputs={"n": 3}),
    ]
    report = ingest(home, write_jsonl(tmp_path / "a.jsonl", events))
    assert (report.accepted, report.duplicates) == (2, 2)
    assert query("SELECT event_id, status, inputs ->> 'n' FROM actions ORDER BY event_id") == [
        ("x", "ok", "1"), ("y", "ok", None)
    ]


# -- rejections ------------------------------------------------------------------------------------


def test_invalid_lines_are_rejected_one_by_one(home, query, make_action, write_jsonl, tmp_path):
    """Each invalid line is rejected with its line number, event id and field; the valid lines are stored."""
    lines = [
        make_action(event_id="ok-1"),  # 1
        '{"event_id": "broken", ',  # 2 not JSON
        make_action(event_id="no-agent", drop=["agent_id"]),  # 3
        make_action(event_id="records-text", records_affected="3"),  # 4 wrong type
        make_action(event_id="naive-ts", ts="2026-10-01T09:30:00"),  # 5 no offset
        make_action(event_id="no-dot", action="route"),  # 6
        "",  # 7 blank
        make_action(event_id="too-sure", confidence=1.5),  # 8
        make_action(event_id="numeric-id", resource={"type": "lead", "id": 42}),  # 9
        "   \t  ",  # 10 whitespace only
        make_action(event_id="bad-status", status="done"),  # 11
        json.dumps([make_action(event_id="in-array")]),  # 12 an array, not an object
        make_action(event_id="ok-2"),  # 13
        make_action(event_id="ok-last"),  # 14, no newline after it
    ]
    report = ingest(home, write_jsonl(tmp_path / "mixed.jsonl", lines, trailing_newline=False))
    assert (report.accepted, report.duplicates, report.rejected) == (3, 0, 9)
    assert stored_ids(query) == ["ok-1", "ok-2", "ok-last"]

    expected = {
        2: (None, {""}),
        3: ("no-agent", {"agent_id"}),
        4: ("records-text", {"records_affected"}),
        5: ("naive-ts", {"ts"}),
        6: ("no-dot", {"action"}),
        8: ("too-sure", {"confidence"}),
        9: ("numeric-id", {"resource.id"}),
        11: ("bad-status", {"status"}),
        12: (None, {""}),
    }
    got = {n: (r.event_id, error_fields(r)) for n, r in rejection_by_number(report).items()}
    assert got == expected
    assert all(r.unit == "line" and r.source == str(tmp_path / "mixed.jsonl") for r in report.sample)
    messages = {n: r.errors[0].message for n, r in rejection_by_number(report).items()}
    assert messages[2].startswith("not valid JSON")
    assert "offset" in messages[5]

    assert report.rejects_file is not None and report.rejects_file.parent == home.rejects
    records = [json.loads(line) for line in report.rejects_file.read_text().splitlines()]
    assert sorted(r["number"] for r in records) == sorted(expected)
    for record in records:
        assert record["source"] == str(tmp_path / "mixed.jsonl")
        assert record["dataset"] == "actions"
        assert {e["field"] for e in record["errors"]} == expected[record["number"]][1]
        original = lines[record["number"] - 1]
        assert record["raw"] == (original if isinstance(original, str) else json.dumps(original))


def test_duplicated_key_is_judged_like_the_model_does(home, query, make_action, tmp_path):
    """A line repeating a key is judged as the pydantic model judges it: the last value counts."""
    line = json.dumps(make_action(event_id="dup-key", status="ok"))[:-1] + ', "status": "done"}'
    path = tmp_path / "dup.jsonl"
    path.write_text(line + "\n")
    report = ingest(home, path)
    assert query("SELECT event_id, status FROM actions") == []
    assert [(r.number, r.event_id, error_fields(r)) for r in report.sample] == [(1, "dup-key", {"status"})]


def test_blank_lines_only_file_stores_nothing_and_is_an_error(home, query, tmp_path):
    """A JSONL file of blank and whitespace-only lines is neither stored nor rejected: it is an error."""
    path = tmp_path / "blank.jsonl"
    path.write_text("\n  \n\t\n\r\n\n")
    with pytest.raises(FilesNotIngested, match="holds no events") as caught:
        ingest(home, path)
    report = caught.value.report
    assert (report.accepted, report.duplicates, report.rejected, report.rejects_file) == (0, 0, 0, None)
    assert query("SELECT count(*) FROM actions") == [(0,)]


def test_crlf_line_endings(home, query, make_action, tmp_path):
    """Lines ending in CRLF are read like LF lines, and rejected ones keep their numbers."""
    path = tmp_path / "crlf.jsonl"
    lines = [json.dumps(make_action(event_id="c1")), "\r", json.dumps(make_action(event_id="c2", status="x"))]
    path.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    report = ingest(home, path)
    assert (report.accepted, report.rejected) == (1, 1)
    assert [(r.number, r.event_id) for r in report.sample] == [(3, "c2")]


# -- chunk boundaries ------------------------------------------------------------------------------


@pytest.mark.parametrize("commit_each_chunk", [True, False], ids=["commit-per-chunk", "one-commit-per-file"])
def test_lines_across_chunk_boundaries_keep_their_numbers(home, query, make_action, tmp_path, commit_each_chunk):
    """With chunks far smaller than a line, each valid line is stored once and rejections keep their line numbers."""
    lines: list[str] = []
    expected_rejected: dict[int, str] = {}
    expected_ids: set[str] = set()
    for i in range(1, 61):
        if i % 11 == 0:
            lines.append("")
        elif i % 7 == 0:
            lines.append(json.dumps(make_action(event_id=f"bad-{i}", confidence=2)))
            expected_rejected[i] = f"bad-{i}"
        elif i == 30:
            lines.append(json.dumps(make_action(event_id="ok-1", agent_id="repeat")))  # repeats line 1's id
        else:
            lines.append(json.dumps(make_action(event_id=f"ok-{i}", inputs={"pad": "é" * (i % 5)})))
            expected_ids.add(f"ok-{i}")
    path = tmp_path / "chunks.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")  # no newline after the last line

    chunks = list(read_jsonl(path, chunk_bytes=97))
    assert len(chunks) > 30
    assert sum(len(c) for c in chunks) == 60
    assert [n for c in chunks for n in c.numbers.tolist()] == list(range(1, 61))

    report = IngestReport("actions")
    ingestor = Ingestor(home, ACTIONS)
    try:
        for chunk in chunks:
            report.add(*ingestor.ingest_chunk(chunk, commit=commit_each_chunk))
        report.add(*ingestor.flush(), [])
    finally:
        ingestor.close()
    assert (report.accepted, report.duplicates, report.rejected) == (len(expected_ids), 1, len(expected_rejected))
    assert {r.number: r.event_id for r in report.sample} == expected_rejected
    assert all(error_fields(r) == {"confidence"} for r in report.sample)
    rows = query("SELECT event_id, agent_id, inputs ->> 'pad' FROM actions")
    assert len(rows) == len({r[0] for r in rows}) == len(expected_ids)
    assert {r[0] for r in rows} == expected_ids
    assert ("ok-1", "lead-router", "é") in rows


def test_line_longer_than_a_chunk(home, query, make_action, tmp_path):
    """A line longer than the chunk size is read whole."""
    path = tmp_path / "long.jsonl"
    short, long = json.dumps(make_action(event_id="short")), json.dumps(make_action(rationale="x" * 5000))
    path.write_text(f"{short}\n{long}\n")
    chunks = list(read_jsonl(path, chunk_bytes=256))
    texts = [(n, t) for c in chunks for n, t in zip(c.numbers.tolist(), c.texts.to_pylist(), strict=True)]
    assert texts == [(1, short + "\n"), (2, long + "\n")]


# -- outcomes --------------------------------------------------------------------------------------


def test_outcome_values_of_any_json_type(home, query, make_outcome, write_jsonl, tmp_path):
    """Outcome from/to of every JSON type are stored as JSON; field, actor, amount and corrects_event_id are kept."""
    values = ["ae-emea-03", 3, 2.5, True, {"stage": "won", "n": [1, None]}, [1, "x"], ""]
    events = [
        make_outcome(event_id=f"o{i}", field="owner_id", actor="rep-9", corrects_event_id=f"act-{i}",
                     **{"from": value, "to": values[(i + 1) % len(values)]})
        for i, value in enumerate(values)
    ]
    events.append(make_outcome(event_id="won", kind="closed_won", amount=1200, ts="2026-10-02T23:00:00-03:00"))
    report = ingest(home, write_jsonl(tmp_path / "o.jsonl", events), dataset=OUTCOMES)
    assert (report.accepted, report.rejected) == (8, 0)
    rows = query("""SELECT event_id, kind, field, actor, from_value, to_value, amount, corrects_event_id, ts, day
                    FROM outcomes ORDER BY event_id""")
    by_id = {r[0]: r for r in rows}
    for i, value in enumerate(values):
        row = by_id[f"o{i}"]
        assert row[1:4] == ("owner_changed", "owner_id", "rep-9")
        assert json.loads(row[4]) == value
        assert json.loads(row[5]) == values[(i + 1) % len(values)]
        assert row[7] == f"act-{i}"
    assert by_id["won"][1:] == ("closed_won", None, None, None, None, 1200.0, None,
                                datetime(2026, 10, 3, 2, 0, tzinfo=UTC), date(2026, 10, 3))


def test_outcome_validation(home, query, make_outcome, write_jsonl, tmp_path):
    """Outcomes with an unknown kind, a text amount or no resource are rejected naming the field."""
    events = [
        make_outcome(event_id="good", kind="meeting_booked"),
        make_outcome(event_id="bad-kind", kind="deal_won"),
        make_outcome(event_id="text-amount", kind="closed_won", amount="1200"),
        make_outcome(event_id="no-resource", drop=["resource"]),
        make_outcome(event_id="unknown-key", note="kept"),
    ]
    report = ingest(home, write_jsonl(tmp_path / "o.jsonl", events), dataset=OUTCOMES)
    assert (report.accepted, report.rejected) == (2, 3)
    assert {r.number: (r.event_id, error_fields(r)) for r in report.sample} == {
        2: ("bad-kind", {"kind"}), 3: ("text-amount", {"amount"}), 4: ("no-resource", {"resource"}),
    }
    assert query("SELECT event_id, kind, extra FROM outcomes ORDER BY event_id") == [
        ("good", "meeting_booked", None), ("unknown-key", "owner_changed", '{"note":"kept"}')
    ]


# -- whole-file errors and folders -----------------------------------------------------------------


def test_missing_file_raises_input_file_error(home, tmp_path):
    """A path that does not exist raises InputFileError naming it."""
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputFileError) as caught:
        ingest(home, missing)
    assert str(missing) in str(caught.value)


def test_folder_without_event_files_raises_input_file_error(home, tmp_path):
    """A folder holding no event files raises InputFileError naming the folder."""
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing to see\n")
    with pytest.raises(InputFileError) as caught:
        ingest(home, folder)
    assert str(folder) in str(caught.value)


def test_unknown_extension_without_format_raises_input_file_error(home, make_action, write_jsonl, tmp_path):
    """A file whose name implies no format, without fmt, raises InputFileError naming it and --format."""
    path = write_jsonl(tmp_path / "events.log", [make_action()])
    with pytest.raises(InputFileError) as caught:
        ingest(home, path)
    assert str(path) in str(caught.value)
    assert "--format" in str(caught.value)


@pytest.mark.parametrize("text", ['[{"event_id": "a", ', "this is not JSON", ""], ids=["truncated", "text", "empty"])
def test_json_file_that_is_not_json_raises_input_file_error(home, query, tmp_path, text):
    """A .json file that is not JSON raises InputFileError naming it, and stores nothing."""
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputFileError) as caught:
        ingest(home, path)
    assert str(path) in str(caught.value)
    assert query("SELECT count(*) FROM actions") == [(0,)]


def test_folder_argument_ingests_every_event_file_under_it(home, query, make_action, write_jsonl, tmp_path):
    """A folder ingests every .jsonl, .jsonl.gz, .json and .csv file under it, recursively, and skips others."""
    folder = tmp_path / "drop"
    write_jsonl(folder / "a.jsonl", [make_action(event_id="a1"), make_action(event_id="a2")])
    nested = folder / "2026" / "10"
    nested.mkdir(parents=True)
    (nested / "b.jsonl.gz").write_bytes(gzip.compress(json.dumps(make_action(event_id="b1")).encode()))
    (nested / "c.json").write_text(json.dumps([make_action(event_id="c1")]))
    (folder / "d.csv").write_text("event_id,ts,agent_id,action,resource_type,resource_id,status\n"
                                  "d1,2026-10-01T09:30:00Z,lead-router,lead.route,lead,L-1,ok\n")
    (folder / "README.txt").write_text("not events\n")
    report = ingest(home, folder)
    assert (report.accepted, report.rejected) == (5, 0)
    assert stored_ids(query) == ["a1", "a2", "b1", "c1", "d1"]
