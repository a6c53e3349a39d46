"""Helpers of the dashboard tests: the real app through AppTest, and independent SQL over the same home."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from agentwatch.core.home import Home
from agentwatch.store.reader import open_reader

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"


def open_page(monkeypatch: pytest.MonkeyPatch, home: Home, page: str, timeout: float = 60,
              **choices: Any) -> AppTest:
    """The page (`views/<page>.py`) as a browser would get it after the app's first request, after picking each
    selectbox key -> value in `choices`."""
    monkeypatch.setenv("AGENTWATCH_HOME", str(home.root))
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.run()
    at.switch_page(f"views/{page}.py").run()
    for key, value in choices.items():
        at.selectbox(key=key).select(value).run()
    assert not at.exception
    return at


def sql(home: Home, text: str, *params: Any) -> list[tuple]:
    """Rows of an independent query over the home's store (what a test compares a page's figures with)."""
    con = open_reader(home)
    try:
        return con.execute(text, list(params)).fetchall()
    finally:
        con.close()
