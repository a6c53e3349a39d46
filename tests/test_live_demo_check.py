"""Right after `make demo`, the README's next command, `agentwatch check`, evaluates at the current time: weeks
after the demo's last event. No data has come since, so nothing may resolve and the guard must keep refusing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agentwatch.core.home import Home
from tests.live_support import agentwatch

pytestmark = pytest.mark.slow


def test_check_after_the_demo_resolves_nothing_that_is_still_broken(demo_home: Home, tmp_path: Path) -> None:
    home = Home.resolve(shutil.copytree(demo_home.root, tmp_path / "home"))
    before = {i["id"]: i for i in json.loads(agentwatch(home, "incidents", "--json"))}
    still_open = {i for i, incident in before.items() if incident["status"] != "resolved"}
    assert still_open, "the demo leaves the rename and what it caused open"
    refused = json.loads(agentwatch(home, "agent", "status", "lead-router", "--json"))
    assert not refused["allowed"]

    printed = agentwatch(home, "check")

    after = {i["id"]: i for i in json.loads(agentwatch(home, "incidents", "--json"))}
    assert {i for i in still_open if after[i]["status"] == "resolved"} == set(), printed
    assert ", 0 resolved" in printed, printed
    waiting = [after[i]["status_note"] for i in still_open if after[i]["status_note"]]
    assert any(note.startswith("no ") for note in waiting), waiting  # each says what it waits for
    assert not json.loads(agentwatch(home, "agent", "status", "lead-router", "--json"))["allowed"]
