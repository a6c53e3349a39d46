"""The vectorized SQL validator and the pydantic models give the same verdict on every event."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentwatch.collector.ingest.sql import validation_query
from agentwatch.store import duck
from agentwatch.store.datasets import ACTIONS, OUTCOMES, Dataset
from agentwatch.store.event_keys import event_key

VALID_ACTION = {
    "event_id": "act-1",
    "ts": "2026-10-01T09:30:00+02:00",
    "agent_id": "lead-router",
    "action": "lead.assign_owner",
    "resource": {"type": "lead", "id": "L-1"},
    "status": "ok",
}
VALID_OUTCOME = {
    "event_id": "out-1",
    "ts": "2026-10-02T10:00:00Z",
    "kind": "owner_changed",
    "resource": {"type": "lead", "id": "L-1"},
}
# A field_changed outcome must name its field: the one rule that ties one key to another's value.
VALID_FIELD_CHANGE = {**VALID_OUTCOME, "kind": "field_changed", "field": "Industry", "from": "Retail", "to": "Software"}

# Values chosen to sit on every rule's edge: types, emptiness, bounds, formats.
EDGE_VALUES: list[Any] = [
    None, "", "x", "a" * 256, "a" * 257, 0, 1, -1, 0.5, 1.0, 1.5, -0.1, 2**63, True, False, [], [1], {}, {"a": 1},
    "2026-10-01T09:30:00Z", "2026-10-01t09:30:00z", "2026-10-01 09:30:00+05:30", "2026-10-01T09:30:00",
    "2026-10-01T24:00:00Z", "2026-02-30T10:00:00Z", "2026-10-01T09:30:00.123456789-03:00", "1700000000",
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
    "lead.assign_owner", "lead", "Lead.Route-2", "lead..route", ".lead", "ok", "error", "skipped",
    "pending_approval", "OK", "owner_changed", "closed_won", "field_changed", "unknown_kind", "true",
    {"type": "lead", "id": "L-1"}, {"type": "lead"}, {"type": "lead", "id": 1}, {"type": "", "id": "L"},
    {"type": "lead", "id": "L-1", "name": "Acme"},
    {"approved_by": "rep-1", "approved_at": "2026-10-01T10:00:00Z"}, {"approved_by": "rep-1"},
    {"approved_by": "", "approved_at": "2026-10-01T10:00:00Z"},
    {"code": "timeout", "message": "CRM timed out"}, {"code": "timeout"}, {"code": ""}, {"code": "x", "message": 3},
]


def _event_strategy(base: dict[str, Any], dataset: Dataset) -> st.SearchStrategy[dict[str, Any]]:
    keys = sorted(dataset.known_keys | {"extra_key"})
    edits = st.dictionaries(st.sampled_from(keys), st.sampled_from(EDGE_VALUES), max_size=4)
    removals = st.lists(st.sampled_from(sorted(base)), max_size=2)

    def build(changes: dict[str, Any], removed: list[str]) -> dict[str, Any]:
        event = {**base, **changes}
        for key in removed:
            event.pop(key, None)
        return event

    return st.builds(build, edits, removals)


def _sql_verdicts(dataset: Dataset, texts: list[str]) -> list[bool]:
    con = duck.connect(memory_limit="256MB")
    try:
        numbers = np.arange(1, len(texts) + 1, dtype=np.int64)
        con.register("chunk", pa.table({"line_no": numbers, "raw": pa.array(texts, pa.large_string())}))
        rows = duck.run(con, f"SELECT line_no, valid FROM ({validation_query(dataset)}) ORDER BY line_no")
    finally:
        con.close()
    assert [n for n, _ in rows] == numbers.tolist(), "every non-blank text gets a verdict"
    return [bool(v) for _, v in rows]


def _model_verdict(dataset: Dataset, text: str) -> bool:
    try:
        dataset.model.model_validate_json(text)
    except ValueError:
        return False
    return True


def _assert_same_verdicts(dataset: Dataset, events: list[dict[str, Any]]) -> None:
    texts = [json.dumps(e) for e in events]
    sql = _sql_verdicts(dataset, texts)
    disagreements = [(t, s) for t, s in zip(texts, sql, strict=True) if s != _model_verdict(dataset, t)]
    assert not disagreements, f"SQL and pydantic disagree (text, sql verdict): {disagreements[:3]}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event_strategy(VALID_ACTION, ACTIONS), min_size=50, max_size=120))
def test_action_verdicts_match_pydantic(events: list[dict[str, Any]]) -> None:
    """For mutated action events the SQL validator accepts exactly what ActionEvent accepts."""
    _assert_same_verdicts(ACTIONS, events)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event_strategy(VALID_OUTCOME, OUTCOMES), min_size=50, max_size=120))
def test_outcome_verdicts_match_pydantic(events: list[dict[str, Any]]) -> None:
    """For mutated outcome events the SQL validator accepts exactly what OutcomeEvent accepts."""
    _assert_same_verdicts(OUTCOMES, events)


@pytest.mark.parametrize(("dataset", "base"), [(ACTIONS, VALID_ACTION), (OUTCOMES, VALID_OUTCOME),
                                               (OUTCOMES, VALID_FIELD_CHANGE)])
def test_every_key_with_every_edge_value(dataset: Dataset, base: dict[str, Any]) -> None:
    """Setting any one key (or a nested key) to any edge value gets the same verdict from both validators."""
    events = [{**base, key: value} for key in sorted(dataset.known_keys) for value in EDGE_VALUES]
    events += [{k: v for k, v in base.items() if k != key} for key in base]
    for struct_key in ("resource", "approval", "error"):
        for member in ("type", "id", "approved_by", "approved_at", "code", "message"):
            events += [{**base, struct_key: {**base.get("resource", {}), member: value}} for value in EDGE_VALUES]
    _assert_same_verdicts(dataset, events)


@pytest.mark.parametrize(
    "text",
    ["not json", "[1, 2]", '"a string"', "42", "null", '{"event_id": "x"', "{}"],
)
def test_non_objects_and_broken_json_are_refused(text: str) -> None:
    """Texts that are not a JSON object with the required keys are refused by both validators."""
    assert _sql_verdicts(ACTIONS, [text]) == [False]
    assert _model_verdict(ACTIONS, text) is False


def test_event_key_matches_duckdb() -> None:
    """The Python event key equals DuckDB's md5_number_lower, so both sides de-duplicate alike."""
    con = duck.connect(memory_limit="64MB")
    ids = ["act-1", "é-ünïcode", "a" * 256, ""]
    rows = duck.run(con, "SELECT md5_number_lower(unnest($1))", [ids])
    assert [r[0] for r in rows] == [event_key(i) for i in ids]


@pytest.mark.parametrize("key", ["latency_ms", "confidence"])
def test_numbers_too_large_for_a_double_are_refused(key: str) -> None:
    """A number such as 1e999 (infinite as a double) is refused by both validators, not stored as inf."""
    text = json.dumps(VALID_ACTION)[:-1] + f', "{key}": 1e999}}'
    assert _sql_verdicts(ACTIONS, [text]) == [False]
    assert _model_verdict(ACTIONS, text) is False
