"""The demo's rename cascade, replayed with `agentwatch backtest --alerts send` to Slack-, PagerDuty- and
webhook-shaped receivers: one group, one page, no notification per effect."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from rich.console import Console

from agentwatch.app.demo.run import DEMO_CONFIG, run_demo
from agentwatch.app.demo.simulate import SimulationConfig
from agentwatch.core.home import Home
from tests.receiver import Receiver
from tests.test_cli import run_cli

DAYS = 7


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory):
    """The 7-day demo in a fresh home, its checks replayed at 15-minute steps with every notification sent."""
    receiver = Receiver().start()
    root = tmp_path_factory.mktemp("alerts-demo")
    home = Home.resolve(root / "home")
    run_demo(home, days=DAYS, console=Console(file=io.StringIO()), checks=False)
    (home.root / "agentwatch.yaml").write_text(DEMO_CONFIG.replace("checks: {}", f"""checks: {{}}
alerts:
  destinations:
    revops-slack: {{type: slack, url: "{receiver.url('/slack')}"}}
    oncall-pd: {{type: pagerduty, routing_key: demo-key, url: "{receiver.url('/v2/enqueue')}"}}
    audit-hook: {{type: webhook, url: "{receiver.url('/hook')}", secret: demo-secret}}
  routes:
    - match: {{severity: critical}}
      destinations: [oncall-pd, revops-slack, audit-hook]
  default: [revops-slack, audit-hook]
"""))
    start = SimulationConfig(days=DAYS).start
    result = run_cli("backtest", "--start", (start + timedelta(days=1)).isoformat(), "--end",
                     (start + timedelta(days=DAYS)).isoformat(), "--every", "15m", "--alerts", "send", "--record",
                     "--home", home.root, cwd=root)
    yield home, receiver, result
    receiver.stop()


def cascade(home: Home) -> list[str]:
    """The ids of the rename and of every incident it explains, directly or not."""
    from agentwatch.checks.engine import incident_store

    found = {i.id: i for i in incident_store(home).list()}
    (rename,) = [i for i in found.values() if i.check == "schema.field_renamed"]
    ids, todo = [rename.id], list(rename.effects)
    while todo:
        effect = todo.pop(0)
        ids.append(effect)
        todo += found[effect].effects
    return ids


def test_the_replay_sends_every_notification(replayed) -> None:
    """The backtest exits 0 and every notification it planned was delivered."""
    _, _, result = replayed
    assert result.returncode == 0, result.stderr
    assert " 0 failed" in result.stdout and "0 to retry" in result.stdout


def test_the_rename_cascade_is_one_group_and_one_page(replayed) -> None:
    """The rename, the null spike it caused and the drift that followed go out under the rename's group only:
    one PagerDuty dedup_key, one trigger per destination, and the message about the null spike lists it with
    the rename."""
    home, receiver, _ = replayed
    ids = cascade(home)
    checks = ["schema.field_renamed", "quality.null_spike", "drift.distribution"]
    assert len(ids) >= 3
    hooks = [r.json() for r in receiver.delivered("/hook")]
    about = [h for h in hooks if {i["id"] for i in h["incidents"]} & set(ids)]
    assert {h["group_key"] for h in about} == {ids[0]}
    events = [h["event"] for h in about]
    assert events[0] == "trigger" and events.count("trigger") == 1
    with_spike = [h for h in about if ids[1] in {i["id"] for i in h["incidents"]}]
    assert with_spike and [i["check"] for i in with_spike[0]["incidents"]][:2] == checks[:2]
    assert {i["check"] for i in about[-1]["incidents"]} >= set(checks)
    pages = [r.json() for r in receiver.delivered("/v2/enqueue")]
    cascade_pages = [p for p in pages if p["dedup_key"].endswith(f"-{ids[0]}")]
    # One page: a trigger, then the same dedup_key again when the null spike and drift joined (PagerDuty adds
    # them to the open incident), never a second dedup_key.
    assert cascade_pages and {p["event_action"] for p in cascade_pages} == {"trigger"} and len(cascade_pages) <= 3
    assert not [p for p in pages if any(p["dedup_key"].endswith(f"-{i}") for i in ids[1:])]
    slack = [r.json() for r in receiver.delivered("/slack")]
    assert sum("deal_stage -&gt; opportunity_stage" in s["text"] for s in slack) == len(about)  # Slack-escaped


def test_grouping_sends_fewer_notifications_than_incidents(replayed) -> None:
    """The webinar burst of volume spikes goes out as one notification, so the webhook gets fewer
    notifications than the replay opened incidents above info."""
    home, receiver, _ = replayed
    from agentwatch.checks.engine import incident_store

    found = incident_store(home).list()
    hooks = [r.json() for r in receiver.delivered("/hook")]
    triggers = [h for h in hooks if h["event"] == "trigger"]
    spikes = [i for i in found if i.check == "volume.action_spike"]
    assert len(spikes) >= 3
    spike_triggers = [h for h in triggers if h["incidents"][0]["check"] == "volume.action_spike"]
    assert len(spike_triggers) < len(spikes)
    assert len(triggers) < len([i for i in found if i.severity != "info"])
