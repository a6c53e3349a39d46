"""The Great Expectations child process (agentwatch.checks.gx_worker), driven directly: what the checks rely on."""

from __future__ import annotations

import os
import resource
import signal
from datetime import date

import pyarrow as pa
import pytest

from agentwatch.checks import gx_worker
from agentwatch.checks.gx_worker import GxWorker
from agentwatch.core.errors import ConfigError, WorkerError

RESULT = {"result_format": "SUMMARY"}


@pytest.fixture(scope="module")
def shared():
    """One child for the tests that leave it running (each child pays GX's import)."""
    handle = GxWorker()
    yield handle
    handle.close()


@pytest.fixture
def worker():
    """A child of the test's own, for the tests that kill or strain it."""
    handle = GxWorker()
    yield handle
    handle.close()


def test_a_suite_with_dates_from_yaml_validates(shared):
    """YAML gives `min_value: 2020-01-01` as a date: it reaches GX as a date, not as an encoding error."""
    key = shared.send_suite([{"expectation": "expect_column_min_to_be_between", "where": "expectations.actions[0]",
                              "arguments": {"column": "day", "min_value": date(2020, 1, 1)}}])
    rows = pa.table({"event_id": ["a", "b"], "day": pa.array([date(2021, 5, 1), date(2019, 12, 31)])})
    (result,) = shared.validate(key, rows, RESULT)
    assert result["success"] is False and result["exception"] is None
    assert result["result"]["observed_value"].startswith("2019-12-31")


def test_an_expectation_needing_scipy_validates_though_the_child_defers_scipy(shared):
    """The child defers scipy.stats and altair (a third of GX's import); the KL-divergence expectation, which uses
    both, still loads them when it runs and judges a window against its partition both ways."""
    assert "scipy.stats" in gx_worker.DEFERRED_MODULES
    key = shared.send_suite([{"expectation": "expect_column_kl_divergence_to_be_less_than",
                              "where": "expectations.actions[0]",
                              "arguments": {"column": "region", "threshold": 0.1,
                                            "partition_object": {"values": ["NA", "EMEA"], "weights": [0.5, 0.5]}}}])
    skewed = pa.table({"event_id": [f"e{i}" for i in range(100)], "region": ["NA"] * 90 + ["EMEA"] * 10})
    even = pa.table({"event_id": [f"e{i}" for i in range(100)], "region": ["NA", "EMEA"] * 50})
    result, = shared.validate(key, skewed, RESULT)
    assert result["exception"] is None and not result["success"]
    assert result["result"]["observed_value"] == pytest.approx(0.3681, abs=1e-3)  # KL(0.9/0.1 || 0.5/0.5)
    result, = shared.validate(key, even, RESULT)
    assert result["exception"] is None and result["success"]


def test_a_refused_suite_names_its_entry_and_fails_only_its_own_key(shared):
    """The refusal is read by whoever drains the answers first (here the good suite's validation), and still
    raised to the sender of the bad suite only."""
    good = shared.send_suite([{"expectation": "expect_column_values_to_not_be_null", "where": "expectations.actions[0]",
                               "arguments": {"column": "x"}}])
    bad = shared.send_suite([{"expectation": "expect_column_values_to_be_in_set", "where": "expectations.actions[1]",
                              "arguments": {"column": "x"}}])
    (result,) = shared.validate(good, pa.table({"event_id": ["a"], "x": [None]}), RESULT)
    assert result["success"] is False
    with pytest.raises(ConfigError, match=r"expectations\.actions\[1\] \(expect_column_values_to_be_in_set\)"):
        shared.wait([bad])
    shared.wait([good])


def test_a_suite_the_child_dropped_is_sent_again(shared):
    """The child keeps MAX_SUITES suites (a serve whose config is reloaded often); a validation of one it dropped
    sends it again and answers."""
    between = "expect_column_values_to_be_between"
    keys = [shared.send_suite([{"expectation": between, "where": f"s[{i}]",
                                "arguments": {"column": "x", "min_value": i}}])
            for i in range(gx_worker.MAX_SUITES + 2)]
    shared.wait(keys[-1:])
    (result,) = shared.validate(keys[0], pa.table({"event_id": ["a"], "x": [1]}), RESULT)
    assert result["success"] is True  # min_value 0: the first suite, not the last one (min_value 65)


def test_answers_are_read_when_the_pipe_has_a_descriptor_over_1024(worker):
    """A busy serve holds many descriptors: waiting on the child's pipe must not be limited to the first 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        key = worker.send_suite([{"expectation": "expect_column_values_to_not_be_null", "where": "s[0]",
                                  "arguments": {"column": "x"}}])
        assert worker.process.stdout.fileno() > 1024
        (result,) = worker.validate(key, pa.table({"event_id": ["a"], "x": [1]}), RESULT)
        assert result["success"] is True
    finally:
        for fd in held:
            os.close(fd)
        worker.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_child_that_died_before_answering_is_replaced_and_sent_the_suite_again(worker):
    """Killed (and gone) before it answers: waiting on its suite starts a new child and sends the suite again, and
    validation goes on in the new child. (Whether a death is seen as a lost answer or as a dead child depends on
    when it is reaped; this takes the reaped case, which is deterministic.)"""
    key = worker.send_suite([{"expectation": "expect_column_values_to_not_be_null", "where": "expectations.actions[0]",
                              "arguments": {"column": "x"}}])
    first = worker.process.pid
    worker.process.kill()
    worker.process.wait()
    worker.wait([key])
    assert worker.process is not None and worker.process.pid != first
    (result,) = worker.validate(key, pa.table({"event_id": ["a"], "x": [1]}), RESULT)
    assert result["success"] is True


def test_a_child_that_exits_while_the_parent_waits_for_an_answer_fails_that_request_only(worker, monkeypatch):
    """The child dies after the request went out and before it answers (a crash inside GX): the request fails
    with a WorkerError naming the exit (not a hang, not a protocol error on the next request), and the next
    request starts a new child that is sent the suite again. The death is injected at the moment the parent
    starts reading the answer, so the test does not depend on timing."""
    key = worker.send_suite([{"expectation": "expect_column_values_to_not_be_null", "where": "expectations.actions[0]",
                              "arguments": {"column": "x"}}])
    worker.wait([key])
    first = worker.process
    real_read = gx_worker._read_message

    def die_then_read(stream, deadline=None):
        first.send_signal(signal.SIGKILL)  # the request is in the pipe; the child will never answer it
        first.wait()
        return real_read(stream, deadline)

    monkeypatch.setattr(gx_worker, "_read_message", die_then_read)
    rows = pa.table({"event_id": ["a", "b"], "x": [1, None]})
    with pytest.raises(WorkerError, match=r"exited before answering validate \(exit code -9\)"):
        worker.validate(key, rows, RESULT)
    monkeypatch.setattr(gx_worker, "_read_message", real_read)
    (result,) = worker.validate(key, rows, RESULT)
    assert worker.process.pid != first.pid and result["success"] is False
    assert result["result"]["unexpected_count"] == 1


def test_rows_over_the_message_bound_are_refused_before_anything_is_sent(shared, monkeypatch):
    """An oversized request is refused whole: nothing half-written puts the protocol out of step."""
    key = shared.send_suite([{"expectation": "expect_column_values_to_not_be_null", "where": "expectations.actions[0]",
                              "arguments": {"column": "x"}}])
    monkeypatch.setattr(gx_worker, "MAX_MESSAGE_BYTES", 10_000)
    with pytest.raises(WorkerError, match="over the 10,000-byte bound"):
        shared.validate(key, pa.table({"event_id": [str(i) for i in range(5_000)], "x": list(range(5_000))}), RESULT)
    monkeypatch.undo()
    (result,) = shared.validate(key, pa.table({"event_id": ["a"], "x": [1]}), RESULT)
    assert result["success"] is True


def test_a_child_that_stops_reading_is_stopped_at_the_deadline(worker, monkeypatch):
    """A child that reads nothing more (here: stopped) cannot hold the check's thread: a request it does not take
    within the deadline fails, the child is killed, and the next request starts a new one."""
    worker.start()
    stopped = worker.process
    os.kill(stopped.pid, signal.SIGSTOP)
    monkeypatch.setattr(gx_worker, "ANSWER_TIMEOUT_S", 2.0)
    big = {"column": "x", "value_set": [f"value-{i}" for i in range(100_000)]}  # far over a pipe's 64 KiB
    with pytest.raises(WorkerError, match="read no suite request within 2 s"):
        worker.send_suite([{"expectation": "expect_column_values_to_be_in_set", "where": "s[0]", "arguments": big}])
    assert stopped.poll() is not None and worker.process is None
    monkeypatch.undo()
    key = worker.send_suite([{"expectation": "expect_column_values_to_not_be_null", "where": "s[1]",
                              "arguments": {"column": "x"}}])
    (result,) = worker.validate(key, pa.table({"event_id": ["a"], "x": [1]}), RESULT)
    assert result["success"] is True
