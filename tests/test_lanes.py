"""agentwatch.checks.lanes: the cadenced checks prepare in a second lane (a thread with its own data), the others
in the caller's; a failure stays with its check; the run's order is kept."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import ClassVar

import duckdb
import pytest

from agentwatch.checks.base import Check, CheckOptions, Finding, Step
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import EvalData
from agentwatch.checks.lanes import prepare_in_lanes

AT = datetime(2026, 10, 19, 12, tzinfo=UTC)


class Recording(Check[CheckOptions]):
    """Records the thread and the data it was prepared with; optionally fails."""

    name: ClassVar[str] = "test.recording"
    family: ClassVar[str] = "test"

    def __init__(self, name: str, every_minutes: float | None, fails: bool = False) -> None:
        super().__init__(CheckOptions(every_minutes=every_minutes), ChecksConfig())
        self.name = name  # type: ignore[misc]  # one class, several named instances
        self.fails = fails
        self.thread: int | None = None
        self.data: EvalData | None = None

    def prepare(self, data: EvalData) -> None:
        self.thread, self.data = threading.get_ident(), data
        assert data.con.execute("SELECT 41 + 1").fetchone() == (42,)  # its lane's connection works in its thread
        if self.fails:
            raise ValueError(f"{self.name} broke")

    def evaluate(self, step: Step) -> list[Finding]:
        return []


@pytest.fixture
def data():
    con = duckdb.connect()
    yield EvalData(con=con, config=ChecksConfig(), first=AT, last=AT, load_from=AT)
    con.close()


def test_cadenced_checks_prepare_in_a_second_lane_with_their_own_data(data):
    opened = []

    def second_lane() -> EvalData:
        con = duckdb.connect()
        opened.append(con)
        return EvalData(con=con, config=ChecksConfig(), first=AT, last=AT, load_from=AT)

    checks = [Recording("sla", 5), Recording("nulls", None), Recording("drift", 60), Recording("volume", None)]
    failures: dict[str, str] = {}
    seconds: dict[str, float] = {}
    ready = prepare_in_lanes(checks, data, second_lane, failures, seconds)
    assert [c.name for c in ready] == ["sla", "nulls", "drift", "volume"] and not failures
    assert set(seconds) == {"sla", "nulls", "drift", "volume"}
    sla, nulls, drift, volume = checks
    here = threading.get_ident()
    assert nulls.thread == volume.thread == here and nulls.data is volume.data is data
    assert sla.thread == drift.thread != here
    assert sla.data is drift.data and sla.data is not data and len(opened) == 1 and sla.data.con is opened[0]
    for con in opened:
        con.close()


def test_a_failing_check_in_either_lane_fails_alone(data):
    checks = [Recording("sla", 5, fails=True), Recording("nulls", None, fails=True), Recording("drift", 60),
              Recording("volume", None)]
    failures: dict[str, str] = {}
    lane = EvalData(con=duckdb.connect(), config=ChecksConfig(), first=AT, last=AT, load_from=AT)
    ready = prepare_in_lanes(checks, data, lambda: lane, failures, {})
    assert [c.name for c in ready] == ["drift", "volume"]
    assert failures == {"sla": "ValueError: sla broke", "nulls": "ValueError: nulls broke"}
    lane.con.close()


@pytest.mark.parametrize("cadences", [(5, 60), (None, None)])
def test_checks_of_one_kind_prepare_in_the_callers_thread_without_a_second_lane(data, cadences):
    checks = [Recording(f"c{i}", every) for i, every in enumerate(cadences)]

    def second_lane() -> EvalData:
        raise AssertionError("no second lane for checks of one kind")

    ready = prepare_in_lanes(checks, data, second_lane, {}, {})
    assert ready == checks and {c.thread for c in checks} == {threading.get_ident()}


def test_a_second_lane_that_cannot_open_fails_only_the_cadenced_checks(data):
    def second_lane() -> EvalData:
        raise OSError("too many open files")

    checks = [Recording("sla", 5), Recording("nulls", None), Recording("drift", 60)]
    failures: dict[str, str] = {}
    ready = prepare_in_lanes(checks, data, second_lane, failures, {})
    assert [c.name for c in ready] == ["nulls"] and checks[1].thread == threading.get_ident()
    assert failures == {name: "OSError opening the store for the checks with a cadence: too many open files"
                        for name in ("sla", "drift")}
