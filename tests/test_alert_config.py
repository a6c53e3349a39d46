"""The alerts: and guard: sections of agentwatch.yaml: mistakes are one error naming the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.app.config import load_config
from agentwatch.core.errors import ConfigError

BASE = """\
alerts:
  destinations:
    slack: {type: slack, url_env: SLACK_URL}
  default: [slack]
"""


@pytest.mark.parametrize(("extra", "line", "needle"), [
    ("  repeat_interval: 0s\n", 5, "alerts.repeat_interval"),
    ("  group_interval: 0s\n", 5, "alerts.group_interval"),
    ("  group_wait: soon\n", 5, "is not a duration"),
    ("  group_wait: 99999999d\n", 5, "longer than ten years"),
    ("  delivery: {first_retry: 0s}\n", 5, "alerts.delivery.first_retry"),
    ("  routes:\n    - {match: {check: x}, destinations: [pager]}\n", 6, "no destination is named 'pager'"),
    ("  routes:\n    - {match: {colour: red}, destinations: [slack]}\n", 6, "alerts.routes.0.match.colour"),
    ("guard: {pause_on: [nothing.like.this]}\n", 5, "names no check"),
])
def test_alerts_config_mistakes_name_the_line(tmp_path: Path, extra: str, line: int, needle: str) -> None:
    """Each mistake is refused with the file, the line and what is wrong."""
    path = tmp_path / "agentwatch.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"line {line}" in str(error.value) and needle in str(error.value)


@pytest.mark.parametrize(("destination", "needle"), [
    ("slack: {type: slack, url_env: SLACK_URL, timeout: 60s}", "timeout"),
    ("slack: {type: slack}", "give exactly one of url or url_env"),
    ("slack: {type: slack, url: a, url_env: B}", "give exactly one of url or url_env"),
    ("pd: {type: pagerduty}", "routing_key"),
    ("'équipe': {type: slack, url_env: X}", "destinations"),
    ("x: {type: teams, url: a}", "type"),
])
def test_destination_mistakes_are_one_error(tmp_path: Path, destination: str, needle: str) -> None:
    """A destination with a bad timeout, missing or doubled secret, unusable name or unknown type is refused."""
    path = tmp_path / "agentwatch.yaml"
    path.write_text(f"alerts:\n  destinations:\n    {destination}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "line 3" in str(error.value) and needle in str(error.value)


def test_a_secret_given_inline_never_prints(tmp_path: Path) -> None:
    """An inline webhook URL is kept as a secret: the loaded config's repr does not show it."""
    path = tmp_path / "agentwatch.yaml"
    path.write_text("alerts:\n  destinations:\n    s: {type: slack, url: 'https://hooks.slack.com/T0/B0/SECRET'}\n")
    config = load_config(path)
    assert "SECRET" not in repr(config) and "SECRET" not in config.model_dump_json()
