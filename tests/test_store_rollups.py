"""The aggregates kept in the home (agentwatch.store.rollups) answer exactly what a full recompute answers, and
stay right as the store changes: new events, late events, a compaction, an erasure, a run in the past.

Each test stores events through the real pipeline, asks a :class:`RollupStore` whose wall clock the test sets, and
compares with the same rollup's query over every event (what ``evaluate(recompute=True)`` reads)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from agentwatch.checks.rollup_sql import (
    ACTION_COUNTS,
    ERROR_DETAILS,
    KEY_COUNTS,
    correction_histogram,
    drift_sample,
    follow_up_cases,
    invalid_transitions,
    mapped_actions,
    new_record_cases,
    policy_violations,
    repeated_actions,
)
from agentwatch.core.home import Home
from agentwatch.store import duck
from agentwatch.store.compaction import run_pass
from agentwatch.store.erasure import Selector, erase
from agentwatch.store.kept_rows import KeptRows
from agentwatch.store.reader import open_reader
from agentwatch.store.rollups import Rollup, RollupStore, requested_span
from agentwatch.store.settings import StoreSettings
from tests.checks_support import T0, iso, store_events

ROLLUPS = [
    ACTION_COUNTS, KEY_COUNTS, ERROR_DETAILS, drift_sample(5),
    follow_up_cases([("email.send", "crm.log_activity")], timedelta(minutes=30)),
    new_record_cases("lead", ["lead.created"], timedelta(minutes=15), timedelta(days=2)),
    mapped_actions(["lead.assign_owner"]),
    repeated_actions(timedelta(hours=6)),
    # crm.log_activity is forbidden to every agent; assignments need an approval none of them has.
    policy_violations([(None, None, ["crm.log_activity"], ["lead.assign_owner"], None)], ["ok", "error"]),
    invalid_transitions("lead", '$."status"', ["ok"], ["assigned", "new"], [("new", "assigned")]),
    correction_histogram({"owner_changed": ["lead.assign_owner"]}, timedelta(hours=6), 0.5),
]
HISTOGRAM = ROLLUPS[-1]
DAYS = 3


def actions_between(start: datetime, hours: int, prefix: str, every: timedelta = timedelta(minutes=7)) -> list[dict]:
    """A lead's life every `every`: created by the intake agent, routed, assigned, emailed, logged (some errors)."""
    events, at, n = [], start, 0
    steps = [("intake-agent", "lead.created"), ("lead-router", "lead.assign_owner"),
             ("followup-agent", "email.send"), ("followup-agent", "crm.log_activity")]
    while at < start + timedelta(hours=hours):
        lead = f"L{prefix}{n % 40}"
        for offset, (agent, action) in enumerate(steps):
            if action == "crm.log_activity" and n % 5 == 0:
                continue  # a follow-up write that never came
            event = {"event_id": f"{prefix}-{n}-{offset}", "ts": iso(at + timedelta(minutes=offset * 2)),
                     "agent_id": agent, "action": action, "resource": {"type": "lead", "id": lead},
                     "status": "error" if n % 11 == 0 and offset == 1 else "ok",
                     "inputs": {"region": None if n % 3 == 0 else "EMEA", "deal_stage": "proposal"},
                     "decision": {"score": (n % 10) / 10}, "confidence": (n % 10) / 10}
            if event["status"] == "error":
                event["error_code"] = "timeout"
            if action == "lead.assign_owner":  # the router moves the lead on, to a state it should not every 4th time
                event["before"] = {"status": "new"}
                event["after"] = {"status": "closed" if n % 4 == 0 else "assigned"}
            events.append(event)
        at += every
        n += 1
    return events


def owner_changes(actions: list[dict]) -> list[dict]:
    """A rep corrects every third assignment an hour later (half name the action, half only the lead)."""
    out = []
    for i, event in enumerate(e for e in actions if e["action"] == "lead.assign_owner" and e["status"] == "ok"):
        if i % 3:
            continue
        at = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")) + timedelta(hours=1)
        outcome = {"event_id": f"o-{event['event_id']}", "ts": iso(at), "kind": "owner_changed",
                   "resource": event["resource"], "actor": "rep-1"}
        if i % 2:
            outcome["corrects_event_id"] = event["event_id"]
        out.append(outcome)
    return out


def recomputed(home: Home, rollup: Rollup, since: datetime, last: datetime) -> pl.DataFrame:
    con = open_reader(home)
    try:
        return pl.DataFrame(duck.run_arrow(con, rollup.select(rollup.views(), requested_span(rollup, since, last))))
    finally:
        con.close()


def kept(home: Home, rollup: Rollup, since: datetime, last: datetime, now: datetime,
         in_memory: KeptRows | None = None) -> tuple[pl.DataFrame, int]:
    """The rollup's rows through the stored aggregates, and how many days the store summarised or extended."""
    con = open_reader(home)
    try:
        # Keep whatever the size: the stored path is tested.
        store = RollupStore(home, con, now=now, small_bytes=0, kept=in_memory)
        return store.frame(rollup, since, last), store.updated.get(rollup.name, 0)
    finally:
        con.close()


def same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns or sorted(a.columns) == sorted(b.columns)
    b = b.select(a.columns)
    key = [c for c in a.columns if a[c].dtype != pl.List(pl.String)]
    assert a.height == b.height
    assert a.sort(key, nulls_last=True).equals(b.sort(key, nulls_last=True))


@pytest.fixture
def filled(home: Home) -> Home:
    actions = actions_between(T0, 24 * DAYS, "a")
    store_events(home, actions=actions, outcomes=owner_changes(actions))
    return home


@pytest.mark.parametrize("rollup", ROLLUPS, ids=lambda r: r.name.split("-")[0])
def test_stored_rows_equal_a_full_recompute_at_any_range(filled: Home, rollup: Rollup) -> None:
    now = T0 + timedelta(days=DAYS, hours=1)
    ranges = [(T0 - timedelta(hours=1), T0 + timedelta(days=DAYS)),  # everything, from before the first event
              (T0 + timedelta(hours=5, minutes=3, seconds=7), T0 + timedelta(days=1, hours=20, minutes=1)),  # ragged
              (T0 + timedelta(days=2), T0 + timedelta(days=2, hours=2))]  # whole hours
    for since, last in ranges:
        rows, _ = kept(filled, rollup, since, last, now)
        assert rows.height > 0
        same(rows, recomputed(filled, rollup, since, last))
    assert list((filled.root / "aggregates" / rollup.name).glob("day=*.parquet")), "nothing was stored"


@pytest.mark.parametrize("rollup", ROLLUPS, ids=lambda r: r.name.split("-")[0])
def test_a_ragged_start_is_answered_from_the_stored_cells(filled: Home, rollup: Rollup) -> None:
    """A run asking from a ragged time gets whole cells from the one holding it, all of them stored: only the
    events after the stored cells are read raw (a ragged start read raw once cost as much as the rest of the
    range, since its cases read a whole look-back or reach too)."""
    now = T0 + timedelta(days=DAYS, hours=1)
    since, last = T0 + timedelta(days=1, hours=5, minutes=3, seconds=7), T0 + timedelta(days=2)
    con = open_reader(filled)
    try:
        sql = RollupStore(filled, con, now=now, small_bytes=0).sql(rollup, since, last)
        pieces = sql.split(" UNION ALL BY NAME ")
        assert sum("read_parquet" in p for p in pieces) >= 1
        assert sum("_days_" in p for p in pieces) <= 1, "only the events after the stored cells are read raw"
        rows = pl.DataFrame(duck.run_arrow(con, sql))
    finally:
        con.close()
    same(rows, recomputed(filled, rollup, since, last))
    cell_start = since if rollup.grain < timedelta(minutes=5) else T0 + timedelta(days=1, hours=5)
    assert requested_span(rollup, since, last).lo == cell_start  # a row per event; per 5 minutes or hour


@pytest.mark.parametrize("rollup", ROLLUPS, ids=lambda r: r.name.split("-")[0])
def test_a_live_sequence_extends_the_stored_hours_and_matches_every_time(home: Home, rollup: Rollup) -> None:
    """Events arrive day by day while the wall clock moves: each run extends what is stored and answers exactly."""
    since = T0 - timedelta(hours=1)
    for day in range(DAYS):
        actions = actions_between(T0 + timedelta(days=day), 24, f"d{day}")
        store_events(home, actions=actions, outcomes=owner_changes(actions))
        for hours in (6, 13, 24):
            now = T0 + timedelta(days=day, hours=hours)
            rows, _ = kept(home, rollup, since, now, now)
            same(rows, recomputed(home, rollup, since, now))


def _live_day(home: Home) -> tuple[datetime, datetime, list[dict]]:
    """A stored first day; the second day's events, to land minute by minute: (since, the second day, its events)."""
    first = actions_between(T0, 24, "d0")
    store_events(home, actions=first, outcomes=owner_changes(first))
    day = T0 + timedelta(days=1)
    return T0 - timedelta(hours=1), day, actions_between(day, 24, "d1")


def _land(home: Home, arriving: list[dict], landed: datetime, now: datetime) -> datetime:
    """Store the events of (landed, now] (and their outcomes by now), as the API's flushes do; returns now."""
    batch = [e for e in arriving if iso(landed) < e["ts"] <= iso(now)]
    if batch:
        store_events(home, actions=batch, outcomes=[o for o in owner_changes(batch) if o["ts"] <= iso(now)])
    return now


@pytest.mark.parametrize("rollup", [r for r in ROLLUPS if not r.look_back and r.grain < timedelta(hours=1)],
                         ids=lambda r: r.name.split("-")[0])
def test_serve_holds_the_settled_cells_after_the_stored_hours_and_extends_them(home: Home, rollup: Rollup) -> None:
    """Files store whole hours; serve holds the settled cells after them in memory: summarised once, extended as
    minutes pass, summarised again after a late event, and written to the day's file when the stored hours move
    on. Every answer is the full recompute's."""
    since, day, arriving = _live_day(home)
    held, landed, what = KeptRows(), day, []

    def run_at(now: datetime) -> None:
        nonlocal landed
        landed = _land(home, arriving, landed, now)
        con = open_reader(home)
        try:
            store = RollupStore(home, con, now=now, small_bytes=0, kept=held)
            rows = pl.DataFrame(duck.run_arrow(con, store.sql(rollup, since, now)))
            what.append(store.tails.get(rollup.name, []))
        finally:
            con.close()
        same(rows, recomputed(home, rollup, since, now))

    for minute in (40, 46, 52):
        run_at(day + timedelta(hours=10, minutes=minute))
    late = [dict(e, event_id=f"late-{e['event_id']}") for e in arriving[:1]]
    for event in late:
        event["ts"] = iso(day + timedelta(hours=10, minutes=1))
    store_events(home, actions=late)
    run_at(day + timedelta(hours=10, minutes=53))
    run_at(day + timedelta(hours=11, minutes=50))
    # The last run stores the hour the tail held (and the minutes after it), then holds the next hour's cells.
    assert what == [["summarised"], ["extended"], ["extended"], ["summarised"], ["stored", "summarised"]]
    assert held.nbytes > 0


@pytest.mark.parametrize("rollup", [ACTION_COUNTS, *(r for r in ROLLUPS if r.name.startswith(("policy", "invalid")))],
                         ids=lambda r: r.name.split("-")[0])
def test_serve_answers_an_hour_window_after_the_stored_hours_from_its_tail_and_holds_it_past_the_hours_turn(
        home: Home, rollup: Rollup) -> None:
    """A one-hour window (the policy checks') starts after the stored hours in the first minutes after an hour is
    stored: serve answers it from its held tail and its last answer, not from the events; when the next hour is
    stored (from that tail) the last answer still holds. Every answer is the full recompute's."""
    _, day, arriving = _live_day(home)
    held, landed, how = KeptRows(), day, []
    for minute in (6, 62, 63, 64, 66, 67):  # 9:06 stores the day up to 9:00; 10:02 to 10:04 ask for 9:02 on
        now = day + timedelta(hours=9, minutes=minute)
        landed = _land(home, arriving, landed, now)
        con = open_reader(home)
        try:
            store = RollupStore(home, con, now=now, small_bytes=0, kept=held)
            rows = store.frame(rollup, now - timedelta(hours=1), now)
            how.append((store.answers[rollup.name], store.tails.get(rollup.name, [])))
        finally:
            con.close()
        assert rows.height > 0
        same(rows, recomputed(home, rollup, now - timedelta(hours=1), now))
    assert [answer for answer, _ in how] == ["read", "held", "held", "held", "held", "held"]
    assert how[1][1] in (["summarised"], ["extended"]), "10:02 reads its window from the tail, not the events"
    assert "stored" in how[4][1], "10:06 stores the hour 9:00-10:00 from the tail"


def test_files_held_in_memory_between_runs_answer_what_reading_them_answers(home: Home) -> None:
    """serve holds the stored files between its runs (KeptRows): as days are extended, summarised again after a
    late event, and new days begin, every answer stays the full recompute's; a small bound evicts, never errs."""
    since = T0 - timedelta(hours=1)
    roomy, tight = KeptRows(), KeptRows(max_bytes=2_000)
    for day in range(DAYS):
        actions = actions_between(T0 + timedelta(days=day), 24, f"m{day}")
        store_events(home, actions=actions, outcomes=owner_changes(actions))
        if day == 2:
            late = actions_between(T0 + timedelta(hours=4), 1, "late")
            store_events(home, actions=late, outcomes=owner_changes(late))
        for hours in (9, 24):
            now = T0 + timedelta(days=day, hours=hours)
            for rollup in (ACTION_COUNTS, ERROR_DETAILS, HISTOGRAM):
                expected = recomputed(home, rollup, since, now)
                for in_memory in (roomy, tight):
                    rows, _ = kept(home, rollup, since, now, now, in_memory)
                    same(rows, expected)
    assert roomy.nbytes > 0 and roomy.tables > 3
    assert tight.nbytes <= 2_000


def test_late_events_update_the_aggregates_they_fall_in(filled: Home) -> None:
    now = T0 + timedelta(days=DAYS, hours=1)
    since, last = T0 - timedelta(hours=1), T0 + timedelta(days=DAYS)
    before, updated = kept(filled, ACTION_COUNTS, since, last, now)
    assert updated == DAYS
    _, updated = kept(filled, ACTION_COUNTS, since, last, now)
    assert updated == 0  # nothing new: the stored days answer alone
    late = [{"event_id": "late-1", "ts": iso(T0 + timedelta(hours=3, minutes=1)), "agent_id": "late-agent",
             "action": "lead.enrich", "resource": {"type": "lead", "id": "L1"}, "status": "error"}]
    store_events(filled, actions=late)
    after, updated = kept(filled, ACTION_COUNTS, since, last, now)
    assert updated == 1  # only the first day is summarised again
    row = after.filter(pl.col("agent_id") == "late-agent")
    assert row.select("bucket", "events", "errors").rows() == [(T0 + timedelta(hours=3), 1, 1)]
    assert after.height == before.height + 1
    same(after, recomputed(filled, ACTION_COUNTS, since, last))


def test_a_late_outcome_updates_the_stored_histogram_of_the_action_it_corrects(filled: Home) -> None:
    """The outcome checks' histograms read a second dataset: an outcome that lands after its action's day was
    stored (a rep's correction exported late) summarises that day again, and the action counts as corrected."""
    now = T0 + timedelta(days=DAYS, hours=1)
    since, last = T0 - timedelta(hours=1), T0 + timedelta(days=DAYS)
    before, _ = kept(filled, HISTOGRAM, since, last, now)
    _, updated = kept(filled, HISTOGRAM, since, last, now)
    assert updated == 0
    acted = T0 + timedelta(hours=2, minutes=1)  # lead Lz's assignment, corrected 90 minutes later
    store_events(filled, actions=[{"event_id": "lz-1", "ts": iso(acted), "agent_id": "late-router",
                                   "action": "lead.assign_owner", "resource": {"type": "lead", "id": "Lz"},
                                   "status": "ok"}])
    _, updated = kept(filled, HISTOGRAM, since, last, now)
    assert updated == 1
    store_events(filled, outcomes=[{"event_id": "late-outcome", "ts": iso(acted + timedelta(minutes=90)),
                                    "kind": "owner_changed", "resource": {"type": "lead", "id": "Lz"},
                                    "actor": "rep-1"}])
    after, updated = kept(filled, HISTOGRAM, since, last, now)
    assert updated == 1  # the action's day is summarised again
    row = after.filter(pl.col("agent_id") == "late-router")
    width_minutes = 6 * 60 / 48
    assert row.select("hour", "bin", "n").rows() == [(T0 + timedelta(hours=2), int(90 // width_minutes), 1)]
    assert after.height == before.height + 1
    same(after, recomputed(filled, HISTOGRAM, since, last))


def test_new_events_after_the_stored_hours_keep_them(filled: Home) -> None:
    """An event arriving for the open hour leaves the stored days as they are and is read raw."""
    now = T0 + timedelta(days=DAYS - 1, hours=12)
    since, last = T0 - timedelta(hours=1), now
    kept(filled, KEY_COUNTS, since, last, now)
    store_events(filled, actions=[{"event_id": "new-1", "ts": iso(now - timedelta(minutes=2)), "agent_id": "x",
                                   "action": "lead.enrich", "resource": {"type": "lead", "id": "L9"},
                                   "status": "ok", "inputs": {"brand_new_key": 1}}])
    rows, updated = kept(filled, KEY_COUNTS, since, last, now)
    assert updated == 0
    assert rows.filter(pl.col("key") == "brand_new_key")["present"].to_list() == [1]
    same(rows, recomputed(filled, KEY_COUNTS, since, last))


def test_a_compaction_keeps_the_stored_days_and_an_erasure_replaces_them(filled: Home) -> None:
    extra = actions_between(T0 + timedelta(hours=2), 3, "b")  # a second part in each of the first day's hours
    store_events(filled, actions=extra, outcomes=owner_changes(extra))
    now = T0 + timedelta(days=DAYS, hours=1)
    since, last = T0 - timedelta(hours=1), T0 + timedelta(days=DAYS)
    for rollup in ROLLUPS:
        kept(filled, rollup, since, last, now)
    merged = run_pass(filled, StoreSettings.model_validate({"compaction": {"quiet_minutes": 0}}))
    assert merged.merged, "the compaction merged nothing: the test proves nothing"
    for rollup in ROLLUPS:
        rows, updated = kept(filled, rollup, since, last, now)
        assert updated == 0, f"{rollup.name} was summarised again after a compaction that changed no row"
        same(rows, recomputed(filled, rollup, since, last))
    erased = erase(filled, [Selector("resource_id", "La3")])
    assert erased.events > 0
    for rollup in ROLLUPS:
        rows, updated = kept(filled, rollup, since, last, now)
        assert updated > 0, f"{rollup.name} kept rows of erased events"
        same(rows, recomputed(filled, rollup, since, last))


def test_a_run_in_the_past_never_reads_later_events(filled: Home) -> None:
    """Stored rows that follow events past a run's last time (the follow-up window) are not used for that run."""
    rollup = ROLLUPS[4]  # follow-up cases: each reads the 30 minutes after it
    now = T0 + timedelta(days=DAYS, hours=1)
    everything, _ = kept(filled, rollup, T0 - timedelta(hours=1), T0 + timedelta(days=DAYS), now)  # stores all days
    last = T0 + timedelta(days=1, hours=6, minutes=11)  # between an email (:10) and its logged write (:12)
    rows, _ = kept(filled, rollup, T0, last, now)
    same(rows, recomputed(filled, rollup, T0, last))
    waiting = rows.filter(pl.col("due") > last).join(everything.select("event_id", pl.col("failed").alias("later")),
                                                     on="event_id")
    # Written after `last`: a case this run sees as still waiting, though the store already holds its write.
    assert waiting.filter(pl.col("failed") & ~pl.col("later")).height > 0


def test_a_damaged_state_file_is_summarised_again(filled: Home) -> None:
    now = T0 + timedelta(days=DAYS, hours=1)
    since, last = T0 - timedelta(hours=1), T0 + timedelta(days=DAYS)
    kept(filled, ACTION_COUNTS, since, last, now)
    state = sorted((filled.root / "aggregates" / ACTION_COUNTS.name).glob("day=*.json"))[0]
    state.write_text("{not json")
    rows, updated = kept(filled, ACTION_COUNTS, since, last, now)
    assert updated == 1
    same(rows, recomputed(filled, ACTION_COUNTS, since, last))


def test_the_wall_clock_bounds_what_is_stored(filled: Home) -> None:
    """Nothing within the settling minutes (plus a rollup's reach) of now is stored: it is still arriving."""
    now = T0 + timedelta(days=1, hours=10, minutes=3)
    kept(filled, ACTION_COUNTS, T0 - timedelta(hours=1), now, now)
    states = sorted((filled.root / "aggregates" / ACTION_COUNTS.name).glob("day=*.json"))
    covered = max(datetime.fromisoformat(json.loads(s.read_text())["covered_until"]) for s in states)
    assert covered == T0 + timedelta(days=1, hours=9)
    assert covered.tzinfo is not None and covered.astimezone(UTC) <= now - timedelta(minutes=5)


def test_an_erasure_leaves_no_erased_value_in_the_kept_aggregates(home: Home) -> None:
    """The drift sample keeps inputs as sent: an erasure deletes the stored days it touched at once, before any run
    summarises them again, so an erased email is nowhere in the home."""
    actions = actions_between(T0, 24, "e")
    for event in actions:
        event["inputs"]["email"] = f"{event['resource']['id'].lower()}@example.com"
    store_events(home, actions=actions)
    now = T0 + timedelta(days=2)
    sample = drift_sample(500)
    kept(home, sample, T0 - timedelta(hours=1), T0 + timedelta(days=1), now)
    stored = home.root / "aggregates" / sample.name

    def files_mentioning(text: str) -> list[str]:
        con = duck.connect(memory_limit="256MB")
        try:
            return [str(p) for p in sorted(stored.glob("*.parquet"))
                    if duck.run(con, f"SELECT count(*) FROM read_parquet('{p}') WHERE inputs::VARCHAR LIKE ?",
                                [f"%{text}%"])[0][0]]
        finally:
            con.close()

    assert files_mentioning("le3@example.com"), "the sample holds no such input: the test proves nothing"
    erased = erase(home, [Selector("inputs.email", "le3@example.com")])
    assert erased.events > 0
    assert files_mentioning("le3@example.com") == []
    rows, updated = kept(home, sample, T0 - timedelta(hours=1), T0 + timedelta(days=1), now)
    assert updated == 1
    assert rows.filter(pl.col("inputs").cast(pl.String).str.contains("le3@example.com")).height == 0
    same(rows, recomputed(home, sample, T0 - timedelta(hours=1), T0 + timedelta(days=1)))


def test_a_merge_that_takes_in_parts_landed_after_the_stored_rows_keeps_them(home: Home) -> None:
    """serve merges today's partition every minute or so, taking in the parts that landed since the last run: the
    stored hours stay (the merged file holds their rows plus later events only), so the day is not summarised
    again each time."""
    store_events(home, actions=actions_between(T0, 10, "m"))
    now = T0 + timedelta(hours=12)
    since = T0 - timedelta(hours=1)
    kept(home, ACTION_COUNTS, since, now, now)  # stores 00:00 to 11:00
    for batch in range(2):  # later events, each its own part
        store_events(home, actions=actions_between(T0 + timedelta(hours=11, minutes=10 + 20 * batch), 1, f"n{batch}",
                                                   every=timedelta(minutes=9)))
    assert run_pass(home, StoreSettings.model_validate({"compaction": {"quiet_minutes": 0}})).merged
    rows, updated = kept(home, ACTION_COUNTS, since, now, now)
    assert updated == 0
    same(rows, recomputed(home, ACTION_COUNTS, since, now))
    late = actions_between(T0 + timedelta(hours=2), 1, "late")  # a late part, then merged with the rest
    store_events(home, actions=late)
    assert run_pass(home, StoreSettings.model_validate({"compaction": {"quiet_minutes": 0}})).merged
    rows, updated = kept(home, ACTION_COUNTS, since, now, now)
    assert updated == 1  # its events fall in the stored hours: summarised again
    same(rows, recomputed(home, ACTION_COUNTS, since, now))


def test_a_stored_file_cut_short_is_summarised_again(filled: Home) -> None:
    """Aggregates are not fsynced (they can always be summarised again): a file a crash left shorter than its state
    says is noticed by its size and the day is summarised again."""
    now = T0 + timedelta(days=DAYS, hours=1)
    since, last = T0 - timedelta(hours=1), T0 + timedelta(days=DAYS)
    kept(filled, KEY_COUNTS, since, last, now)
    stored = sorted((filled.root / "aggregates" / KEY_COUNTS.name).glob("day=*.parquet"))[0]
    stored.write_bytes(stored.read_bytes()[:100])
    rows, updated = kept(filled, KEY_COUNTS, since, last, now)
    assert updated == 1
    same(rows, recomputed(filled, KEY_COUNTS, since, last))


def test_a_small_range_is_read_raw_and_keeps_nothing(filled: Home) -> None:
    """Under SMALL_RANGE_BYTES of parts, reading the events costs no more than reading kept rows: nothing is kept."""
    now = T0 + timedelta(days=DAYS, hours=1)
    since, last = T0 - timedelta(hours=1), T0 + timedelta(days=DAYS)
    con = open_reader(filled)
    try:
        store = RollupStore(filled, con, now=now)
        rows = store.frame(ACTION_COUNTS, since, last)
    finally:
        con.close()
    assert store.updated == {} and not (filled.root / "aggregates").exists()
    same(rows, recomputed(filled, ACTION_COUNTS, since, last))


def test_a_days_view_reads_exactly_the_visible_parts_of_those_days(filled: Home) -> None:
    """Raw reads of a run go through views over only the days they need; a dataset without day partitions keeps
    the store-wide view."""
    con = open_reader(filled)
    try:
        store = RollupStore(filled, con, now=T0 + timedelta(days=DAYS))
        second = (T0 + timedelta(days=1)).date()
        view = store.view("actions", second, second)
        assert store.view("actions", second, second) == view  # made once per run
        (counted, first_ts, last_ts), = duck.run(con, f"SELECT count(*), min(ts), max(ts) FROM {view}")
        (expected,), = duck.run(con, "SELECT count(*) FROM actions WHERE CAST(timezone('UTC', ts) AS DATE) = ?",
                                [second])
        assert counted == expected > 0
        assert first_ts.date() == last_ts.date() == second
        assert store.view("schema_snapshots", second, second) == "schema_snapshots"
    finally:
        con.close()


def test_an_unnamed_outcome_blames_the_latest_action_any_outcome_check_watches(home: Home) -> None:
    """A check watching only lead.route must not count a route as corrected when the rep's unnamed owner change
    came after a later lead.assign_owner on the same lead: the outcome checks attribute over the union of their
    mappings, in the baseline histogram as in the recent window."""
    lead = {"type": "lead", "id": "L-7"}
    store_events(home, actions=[
        {"event_id": "r-1", "ts": iso(T0 + timedelta(hours=1)), "agent_id": "router", "action": "lead.route",
         "resource": lead, "status": "ok"},
        {"event_id": "a-1", "ts": iso(T0 + timedelta(hours=1, minutes=1)), "agent_id": "router",
         "action": "lead.assign_owner", "resource": lead, "status": "ok"},
    ], outcomes=[{"event_id": "o-1", "ts": iso(T0 + timedelta(hours=1, minutes=30)), "kind": "owner_changed",
                  "resource": lead, "actor": "rep-1"}])
    since, last = T0, T0 + timedelta(hours=12)
    own = {"owner_changed": ["lead.route"]}
    union = {"owner_changed": ["lead.assign_owner", "lead.route"]}
    alone = recomputed(home, correction_histogram(own, timedelta(hours=6), None), since, last)
    shared = recomputed(home, correction_histogram(own, timedelta(hours=6), None, attribution=union), since, last)
    assert alone.select("action", "bin", "n").rows() == [("lead.route", int(30 // 7.5), 1)]  # 30 min, 7.5-min bins
    assert shared.select("action", "bin", "n").rows() == [("lead.route", None, 1)]  # the assignment was blamed


@pytest.mark.parametrize("rollup", [ACTION_COUNTS, ROLLUPS[4], ROLLUPS[5], HISTOGRAM],
                         ids=lambda r: r.name.split("-")[0])
def test_serve_answers_the_settled_cells_from_its_last_answer_until_rows_under_it_change(home: Home,
                                                                                      rollup: Rollup) -> None:
    """serve reads a week of each rollup every minute: it holds its last answer over the settled cells and reads
    only the cells after it. A late event under the answer (in a stored day or in the held minutes) and an erasure
    each make a run read everything again, a compaction of the open day does not; every answer is the full
    recompute's."""
    since, day, arriving = _live_day(home)
    held, landed, how = KeptRows(), day, []

    def run_at(now: datetime) -> None:
        nonlocal landed
        landed = _land(home, arriving, landed, now)
        con = open_reader(home)
        try:
            store = RollupStore(home, con, now=now, small_bytes=0, kept=held)
            rows = store.frame(rollup, since, now)
            how.append(store.answers[rollup.name])
        finally:
            con.close()
        same(rows, recomputed(home, rollup, since, now))

    def late(at: datetime, tag: str) -> None:
        store_events(home, actions=[dict(arriving[0], event_id=f"late-{tag}", ts=iso(at))])

    run_at(day + timedelta(hours=10, minutes=40))
    run_at(day + timedelta(hours=10, minutes=46))
    late(T0 + timedelta(hours=5), "stored")  # in a stored day
    run_at(day + timedelta(hours=10, minutes=52))
    run_at(day + timedelta(hours=10, minutes=58))
    # In the settled minutes after the stored hours (the histogram's rows read 6 hours on: inside their reach).
    late(day + timedelta(hours=10, minutes=1) - (rollup.reach if rollup.reach >= timedelta(hours=1) else
                                                  timedelta(0)), "held")
    run_at(day + timedelta(hours=11, minutes=4))
    run_at(day + timedelta(hours=11, minutes=30))  # the stored hours moved on: the answer still holds
    erase(home, [Selector("resource_id", "Ld00")])  # a lead of the first day
    run_at(day + timedelta(hours=11, minutes=36))
    run_at(day + timedelta(hours=11, minutes=42))
    # serve's compaction merges the open day's parts every minute or so under a steady flow: that keeps the rows.
    merging = StoreSettings.model_validate({"compaction": {"max_open_parts": 2}})
    assert run_pass(home, merging, now=day + timedelta(hours=11, minutes=43)).merged
    run_at(day + timedelta(hours=11, minutes=48))
    assert how == ["read", "held", "read", "held", "read", "held", "read", "held", "held"]


@pytest.mark.parametrize("change", ["late event", "erasure", "hours stored"])
def test_serve_does_not_answer_from_rows_another_process_summarised_again(home: Home, change: str) -> None:
    """`check` run by cron shares the stored days with serve: when it summarises a day again first (after a late
    event or an erasure), or stores the hours serve held in memory, serve's next run must not answer from its held
    answer's old rows."""
    since, day, arriving = _live_day(home)
    serve, runs = KeptRows(), []

    def run(now: datetime, kept_rows: KeptRows | None) -> None:
        con = open_reader(home)
        try:
            store = RollupStore(home, con, now=now, small_bytes=0, kept=kept_rows)
            rows = store.frame(ACTION_COUNTS, since, now)
            runs.append(store.answers.get(ACTION_COUNTS.name, "-"))
        finally:
            con.close()
        same(rows, recomputed(home, ACTION_COUNTS, since, now))

    landed = _land(home, arriving, day, day + timedelta(hours=10, minutes=40))
    run(landed, serve)
    if change == "late event":
        store_events(home, actions=[dict(arriving[0], event_id="late-1", ts=iso(T0 + timedelta(hours=5)))])
    elif change == "erasure":
        erase(home, [Selector("resource_id", "Ld00")])
    else:  # a late event in the minutes serve holds, then cron stores their hour before serve runs again
        store_events(home, actions=[dict(arriving[0], event_id="late-2", ts=iso(day + timedelta(hours=10, minutes=2)))])
    cron_at = day + (timedelta(hours=11, minutes=6) if change == "hours stored" else timedelta(hours=10, minutes=43))
    landed = _land(home, arriving, landed, cron_at)
    run(cron_at, None)  # cron's check: no KeptRows
    run(_land(home, arriving, landed, cron_at + timedelta(minutes=3)), serve)
    assert runs == ["read", "-", "read"]


class _HoldsAfter:
    """A process's kept rows as one run sees them, with something another run (serve's second lane) does just
    before this run holds its answer."""

    def __init__(self, real: KeptRows, meanwhile: Callable[[], None]) -> None:
        self._real, self._meanwhile = real, meanwhile

    def hold_answer(self, rollup: str, answer: object, generation: int | None = None) -> None:
        self._meanwhile()
        self._real.hold_answer(rollup, answer, generation)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


def test_an_answer_computed_before_another_run_found_rows_changed_is_not_held(tmp_path) -> None:
    """Two runs of one process share its kept rows (serve's two lanes both read action counts). One answers from
    the held rows; meanwhile a late event lands and the other run finds the rows under the answers changed, forgets
    the held answer and answers afresh. The first one's answer, computed from the stale rows, must not be held
    after that: later runs would answer from it and miss the late event for good."""
    home = Home.resolve(tmp_path / "home")
    since, day, arriving = _live_day(home)
    shared = KeptRows()

    def frame(now: datetime, kept_rows: object) -> pl.DataFrame:
        con = open_reader(home)
        try:
            return RollupStore(home, con, now=now, small_bytes=0, kept=kept_rows).frame(  # type: ignore[arg-type]
                ACTION_COUNTS, since, now)
        finally:
            con.close()

    landed = _land(home, arriving, day, day + timedelta(hours=10, minutes=40))
    frame(landed, shared)  # holds an answer and a tail
    now = _land(home, arriving, landed, day + timedelta(hours=10, minutes=46))

    def other_run() -> None:  # the late event, found by the other lane, which forgets and answers afresh
        store_events(home, actions=[dict(arriving[0], event_id="late-x", ts=iso(day + timedelta(hours=10, minutes=1)))])
        frame(now, shared)

    frame(now, _HoldsAfter(shared, other_run))
    for minute in (52, 58):
        now = _land(home, arriving, now, day + timedelta(hours=10, minutes=minute))
        same(frame(now, shared), recomputed(home, ACTION_COUNTS, since, now))
