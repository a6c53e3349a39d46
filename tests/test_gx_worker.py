"""The Great Expectations child process (agentwatch.checks.gx_worker), driven directly: what the checks rely on."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from agentwatch.checks import gx_worker
from agentwatch.checks.gx_worker import GxWorker
from agentwatch.core.errors import ConfigError, WorkerError

RESULT = {"result_format": "SUMMARY"}


@pytest.fixture
def worker():
    handle = GxWorker()
    yield handle
    handle.close()


def test_a_suite_with_dates_from_yaml_validates(worker):
    """YAML gives `min_value: 2020-01-01` as a date: it reaches GX as a date, not as an encoding error."""
    key = worker.send_suite([{"expectation": "expect_column_min_to_be_between", "where": "expectations.actions[0]",
                              "arguments": {"column": "day", "min_value": date(2020, 1, 1)}}])
    rows = pa.table({"event_id": ["a", "b"], "day": pa.array([date(2021, 5, 1), date(2019, 12, 31)])})
    (result,) = worker.validate(key, rows, RESULT)
    assert result["success"] is False and result["exception"] is None
    assert result["result"]["observed_value"].startswith("2019-12-31")


def test_a_refused_suite_names_its_entry_and_fails_only_its_own_key(worker):
    good = worker.send_suite([{"expectation": "expect_column_values_to_not_be_null", "where": "expectations.actions[0]",
                               "arguments": {"column": "x"}}])
    bad = worker.send_suite([{"expectation": "expect_column_values_to_be_in_set", "where": "expectations.actions[1]",
                              "arguments": {"column": "x"}}])
    with pytest.raises(ConfigError, match=r"expectations\.actions\[1\] \(expect_column_values_to_be_in_set\)"):
        worker.wait([bad])
    worker.wait([good])
    (result,) = worker.validate(good, pa.table({"event_id": ["a"], "x": [None]}), RESULT)
    assert result["success"] is False


def test_a_child_that_dies_before_answering_is_reported_and_the_next_request_starts_another(worker):
    """Killed while it still imports GX: the answer never comes, the error says so with the exit code; the next
    request starts a new child and sends it the suite again."""
    key = worker.send_suite([{"expectation": "expect_column_values_to_not_be_null", "where": "expectations.actions[0]",
                              "arguments": {"column": "x"}}])
    first = worker.process.pid
    worker.process.kill()
    with pytest.raises(WorkerError, match=r"exited before answering suite \(exit code -9\)"):
        worker.wait([key])
    assert worker.process is None
    (result,) = worker.validate(key, pa.table({"event_id": ["a"], "x": [1]}), RESULT)
    assert result["success"] is True and worker.process.pid != first


def test_rows_over_the_message_bound_are_refused_before_anything_is_sent(worker, monkeypatch):
    """An oversized request is refused whole: nothing half-written puts the protocol out of step."""
    key = worker.send_suite([{"expectation": "expect_column_values_to_not_be_null", "where": "expectations.actions[0]",
                              "arguments": {"column": "x"}}])
    monkeypatch.setattr(gx_worker, "MAX_MESSAGE_BYTES", 10_000)
    with pytest.raises(WorkerError, match="over the 10,000-byte bound"):
        worker.validate(key, pa.table({"event_id": [str(i) for i in range(5_000)], "x": list(range(5_000))}), RESULT)
    monkeypatch.undo()
    (result,) = worker.validate(key, pa.table({"event_id": ["a"], "x": [1]}), RESULT)
    assert result["success"] is True
