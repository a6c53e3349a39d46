"""Running the real CLI in the test process: its output, and the one-line error a user mistake must give."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from agentwatch.app import cli

PLAIN_WIDE = {"COLUMNS": "250", "NO_COLOR": "1"}  # wide tables, so cells are not cut; no colour codes


def run_cli(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the real CLI app in process: (exit code, stdout, stderr); an unexpected exception fails the test."""
    result = CliRunner().invoke(cli.app, [str(a) for a in args], env=env or PLAIN_WIDE)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def main_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: object) -> str:
    """Run `agentwatch.app.cli.main` as the installed command does; it must exit 2 with one stderr line."""
    monkeypatch.setattr(sys, "argv", ["agentwatch", *(str(a) for a in args)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    assert exited.value.code == 2, captured
    assert "Traceback" not in captured.err and captured.err.startswith("error: ")
    assert captured.err.count("\n") == 1, captured.err
    return captured.err
