"""A mistyped home is refused, not created: commands that read need a home holding a store; only the commands
that write (ingest, serve, keys create, demo) may create one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentwatch.core.home import Home
from tests.cli_support import main_error, run_cli

READERS = [
    ["status"], ["check"], ["backtest", "--start", "2026-10-01T00:00:00Z", "--end", "2026-10-02T00:00:00Z"],
    ["incidents"], ["incident", "show", "INC-1"], ["alerts", "outbox"], ["alerts", "deliver"], ["silence", "list"],
    ["keys", "list"], ["agent", "status", "lead-router"], ["dashboard"],
]


@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c[:2]))
def test_a_command_that_reads_refuses_a_home_that_does_not_exist(tmp_path: Path, command: list[str],
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped --home is one error naming the path and how to create a home; nothing is created there."""
    typo = tmp_path / "hoem"
    error = main_error(capsys, monkeypatch, *command, "--home", typo)
    assert f"{typo} (--home) does not exist" in error, error
    assert "agentwatch ingest" in error and "agentwatch serve" in error
    assert not typo.exists()


def test_a_folder_without_a_store_and_a_mistyped_environment_variable_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An existing folder that holds no store (say, the project folder) is no home; AGENTWATCH_HOME is named when
    it is where the path came from."""
    error = main_error(capsys, monkeypatch, "check", "--home", tmp_path)
    assert f"{tmp_path} (--home) holds no agentwatch store" in error
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path / "typo"))
    error = main_error(capsys, monkeypatch, "status")
    assert f"{tmp_path / 'typo'} (AGENTWATCH_HOME) does not exist" in error


def test_commands_that_write_create_the_home_and_readers_then_accept_it(tmp_path: Path, write_jsonl,
                                                                         make_action) -> None:
    """`keys create` and `ingest` create a missing home; `status` reads it afterwards."""
    for_keys = tmp_path / "keys-home"
    code, _, err = run_cli("keys", "create", "--scope", "read", "--home", for_keys)
    assert code == 0, err
    assert Home.resolve(for_keys).store.is_dir()
    for_events = tmp_path / "events-home"
    events = write_jsonl(tmp_path / "actions.jsonl", [make_action()])
    code, _, err = run_cli("ingest", "actions", events, "--home", for_events)
    assert code == 0, err
    code, out, err = run_cli("status", "--json", "--home", for_events)
    assert code == 0, err
    assert json.loads(out)
