"""The alerts: and guard: sections of agentwatch.yaml: mistakes are one error naming the file, line and key."""

from __future__ import annotations

import os
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


@pytest.fixture(autouse=True)
def slack_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """BASE's destination reads SLACK_URL: set, as it must be for the config to load."""
    monkeypatch.setenv("SLACK_URL", "https://hooks.slack.invalid/T0/B0/x")


@pytest.mark.parametrize(("extra", "line", "needle"), [
    ("  repeat_interval: 0s\n", 5, "alerts.repeat_interval"),
    ("  group_interval: 0s\n", 5, "alerts.group_interval"),
    ("  group_wait: soon\n", 5, "is not a duration"),
    ("  group_wait: 99999999d\n", 5, "longer than ten years"),
    ("  delivery: {first_retry: 0s}\n", 5, "alerts.delivery.first_retry"),
    ("  routes:\n    - {match: {check: x}, destinations: [pager]}\n", 6, "no destination is named 'pager'"),
    ("  routes:\n    - {match: {colour: red}, destinations: [slack]}\n", 6, "alerts.routes.0.match.colour"),
    ("guard: {pause_on: [nothing.like.this]}\n", 5, "names no check"),
    ("guard: {pause_on: [quality.nul_spike]}\n", 5, "did you mean 'quality.null_spike'"),
    ("  routes:\n    - {match: {severity: critcal}, destinations: [slack]}\n", 6,
     "(alerts.routes.0.match.severity): 'critcal' matches no severity; did you mean 'critical'? "
     "(severities: info, warning, critical)"),
    ("  routes:\n    - {match: {severity: [warning, crit]}, destinations: [slack]}\n", 6, "'crit' matches no severity"),
    ("  routes:\n    - {match: {check: volume.action_spik}, destinations: [slack]}\n", 6,
     "(alerts.routes.0.match.check): 'volume.action_spik' names no check; did you mean 'volume.action_spike'?"),
    ("  routes:\n    - {match: {check: [schema.*, qualty.*]}, destinations: [slack]}\n", 6,
     "'qualty.*' names no check"),
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


def test_route_patterns_that_match_something_load(tmp_path: Path) -> None:
    """Globs and lists naming real checks and severities are accepted as they are."""
    path = tmp_path / "agentwatch.yaml"
    path.write_text(BASE + "  routes:\n    - {match: {check: [schema.*, quality.null_spike], severity: 'crit*'}, "
                           "destinations: [slack]}\n")
    assert load_config(path).alerts.routes[0].match["severity"] == "crit*"


@pytest.mark.parametrize(("destination", "line", "needle"), [
    ("pd: {type: pagerduty, routing_key_env: AW_TEST_UNSET_KEY}", 3,
     "(alerts.destinations.pd.routing_key_env): environment variable AW_TEST_UNSET_KEY is not set"),
    ("hook: {type: webhook, url_env: SLACK_URL, secret_env: AW_TEST_UNSET_SECRET}", 3,
     "environment variable AW_TEST_UNSET_SECRET is not set"),
    ("pd: {type: pagerduty, routing_key: '${PD_KEY}'}", 3,
     "(alerts.destinations.pd.routing_key): '${...}' is not expanded in agentwatch.yaml; write routing_key_env: "
     "PD_KEY"),
    ("pd: {type: pagerduty, routing_key_env: '${PD_KEY}'}", 3,
     "(alerts.destinations.pd.routing_key_env): give the variable's name: routing_key_env: PD_KEY"),
])
def test_secrets_read_from_the_environment_must_be_there(tmp_path: Path, destination: str, line: int,
                                                          needle: str) -> None:
    """A routing key, URL or signing secret named by an environment variable that is not set (or written as a
    shell reference the file does not expand) fails loading, naming the line and the variable."""
    assert "AW_TEST_UNSET_KEY" not in os.environ and "AW_TEST_UNSET_SECRET" not in os.environ
    path = tmp_path / "agentwatch.yaml"
    path.write_text(f"alerts:\n  destinations:\n    {destination}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"line {line} " in str(error.value) and needle in str(error.value), str(error.value)
