"""Notification order per group and destination survives an outage: a later state never overtakes an earlier one,
and a state superseded while it waited is dropped (and shown so in the outbox)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from typer.testing import CliRunner

from agentwatch.alerts.db import alerts_db, open_alerts_db
from agentwatch.alerts.outbox import Outbox
from agentwatch.app.alerting import alert_pass
from agentwatch.app.cli import app as cli_app
from agentwatch.schemas.notifications import Notification
from tests.receiver import Received, Receiver
from tests.test_alert_delivery import incident, pass_until, save, write_config

# Retries keep going through the outage; the trigger's backoff grows past what later rows would wait (the old bug).
OUTAGE_RETRIES = "delivery: {max_attempts: 1000, first_retry: 100ms, max_retry: 1s}"
def event_of(request: Received) -> str:
    body = request.json()
    return body.get("event_action") or body["event"]  # PagerDuty's field, else the webhook's


def test_after_an_outage_each_destination_hears_trigger_then_resolve_and_never_twice(home, receiver) -> None:
    """Receiver down; trigger, acknowledge and resolve of one incident are queued meanwhile. Once it is back,
    each destination gets the trigger then the resolve (the acknowledge, superseded, is skipped and listed as
    such), and no notification arrives twice."""
    write_config(home, receiver, retries=OUTAGE_RETRIES)
    port = receiver.port
    receiver.stop()  # the outage: connections are refused
    store = save(home, incident(1))  # critical: to PagerDuty and the webhook
    box = Outbox(alerts_db(home))
    pass_until(home, lambda: len(box.rows()) == 2 and min(r.attempts for r in box.rows()) >= 4)  # backoff grows
    store.set_status("INC-1", "acknowledged")
    alert_pass(home)
    store.set_status("INC-1", "resolved")
    alert_pass(home)
    waiting = {r.notification().event: r for r in box.rows() if r.destination == "hook"}
    assert waiting["resolve"].attempts == 0  # it waits behind the trigger: not even tried during the outage
    assert waiting["acknowledge"].state == "superseded"

    back = Receiver(port=port).start()
    try:
        pass_until(home, lambda: box.counts()["pending"] == 0)
    finally:
        back.stop()
    for path in ("/hook", "/v2/enqueue"):
        assert [event_of(r) for r in back.delivered(path)] == ["trigger", "resolve"], path
    assert len(back.requests) == 4  # nothing sent twice, nothing refused

    listed = CliRunner().invoke(cli_app, ["alerts", "outbox", "--json", "--home", str(home.root)])
    assert listed.exit_code == 0, listed.output
    rows = {(r["destination"], r["event"]): r for r in json.loads(listed.stdout)}
    for destination in ("hook", "pd"):
        acknowledge, resolve = rows[(destination, "acknowledge")], rows[(destination, "resolve")]
        assert acknowledge["state"] == "superseded" and acknowledge["superseded_by"] == resolve["id"]
        assert (resolve["state"], rows[(destination, "trigger")]["state"]) == ("delivered", "delivered")


def test_retrying_a_failed_trigger_after_its_resolve_went_out_marks_it_superseded(home, receiver) -> None:
    """A trigger that failed for good no longer holds its group back: the resolve goes out. Retrying the trigger
    afterwards would make "open" the destination's last word, so it is marked superseded, not sent."""
    write_config(home, receiver, retries="delivery: {max_attempts: 1, first_retry: 50ms, max_retry: 50ms}")
    store = save(home, incident(1, severity="warning"))  # to the webhook only
    receiver.fail_next(1, 500)
    alert_pass(home)
    store.set_status("INC-1", "resolved")
    alert_pass(home)
    assert [event_of(r) for r in receiver.delivered("/hook")] == ["resolve"]
    retried = CliRunner().invoke(cli_app, ["alerts", "retry", "--all-failed", "--home", str(home.root)])
    assert retried.exit_code == 0 and "0 notification(s) queued again" in retried.output, retried.output
    alert_pass(home)
    assert [event_of(r) for r in receiver.delivered("/hook")] == ["resolve"]
    rows = {r.notification().event: r for r in Outbox(alerts_db(home)).rows()}
    assert (rows["trigger"].state, rows["trigger"].superseded_by) == ("superseded", rows["resolve"].id)


def test_an_outbox_from_before_ordering_gets_its_order_columns(tmp_path) -> None:
    """An alerts.sqlite3 written by an older version (no group, event or order columns) is upgraded on open, its
    pending rows keep their planned order and are delivered."""
    path = tmp_path / "alerts.sqlite3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE outbox (id TEXT PRIMARY KEY, destination TEXT NOT NULL, body TEXT NOT NULL, "
                "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, "
                "lease_until REAL NOT NULL DEFAULT 0, last_error TEXT, last_status INTEGER, created_at REAL NOT NULL, "
                "delivered_at REAL)")
    first = incident(1)
    for number, event in ((1, "trigger"), (2, "resolve")):
        note = Notification(id=f"n-{number}", event=event, destination="hook", group_key="INC-1", dedup_key="d",
                            status="open", severity="critical", title="t", incidents=[first],
                            dashboard_url="http://x", created_at=first.opened_at)
        con.execute("INSERT INTO outbox (id, destination, body, state, next_attempt_at, created_at) "
                    "VALUES (?, 'hook', ?, 'pending', 0, 0)", [note.id, note.model_dump_json()])
    con.commit()
    con.close()
    box = Outbox(open_alerts_db(path))
    (claimed,) = box.claim_due(datetime.now(UTC), 60, 10)  # the resolve waits behind the trigger
    assert claimed.id == "n-1"
    with open_alerts_db(path).reading() as con:
        assert con.execute("SELECT id, group_key, event, seq FROM outbox ORDER BY seq").fetchall() == [
            ("n-1", "INC-1", "trigger", 1), ("n-2", "INC-1", "resolve", 2)]
