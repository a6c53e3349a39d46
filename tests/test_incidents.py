"""Incident lifecycle: the in-memory book (open, update, resolve), the SQLite store (humans win, ids unique), links."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentwatch.checks.base import Clearance, Finding
from agentwatch.checks.book import IncidentBook
from agentwatch.checks.incidents import IncidentStore
from agentwatch.checks.linking import link_incidents
from agentwatch.core.errors import ConfigError
from agentwatch.core.severity import Severity
from agentwatch.schemas.incidents import Incident

AT = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
NULLS = "quality.null_spike"
RENAMED = "schema.field_renamed"
RESOLVE_AFTER = {NULLS: timedelta(minutes=60), RENAMED: timedelta(minutes=60)}
EVALUATED = {NULLS, RENAMED}


def finding(field: str = "deal_stage", severity: Severity = Severity.warning, started: datetime = AT,
            check: str = NULLS, affected: int = 10, **evidence: object) -> Finding:
    return Finding(check=check, subject={"field": field}, severity=severity, summary=f"{field} reads null",
                   started_at=started, affected=affected, evidence=dict(evidence), sample_event_ids=["a-1"])


def rename_finding(old: str = "deal_stage", new: str = "opportunity_stage", started: datetime = AT) -> Finding:
    return Finding(check=RENAMED, subject={"object": "Lead", "field": f"{old} -> {new}"}, severity=Severity.critical,
                   summary=f"Lead.{old} -> {new} was renamed", started_at=started, affected=1,
                   evidence={"object": "Lead", "old_field": old, "new_field": new, "agents": ["lead-router"]})


def seen_cleared(incident: Incident) -> Clearance:
    return Clearance(True, f"{incident.subject} read values again")


def step(book: IncidentBook, at: datetime, *findings: Finding,
         clearance: Callable[[Incident], Clearance] = seen_cleared) -> list[Incident]:
    return book.apply(list(findings), at, RESOLVE_AFTER, EVALUATED, clearance)


def new_book(store: IncidentStore | None = None) -> IncidentBook:
    if store is None:
        return IncidentBook([], 1)
    unresolved, number = store.load_book()
    return IncidentBook(unresolved, number)


def save(store: IncidentStore, book: IncidentBook) -> int:
    return store.save([book.by_id[i] for i in sorted(book.touched)], book.first_number)


@pytest.fixture
def store(tmp_path: Path) -> IncidentStore:
    return IncidentStore(tmp_path / "incidents.sqlite3")


def test_a_finding_opens_an_incident() -> None:
    """The first finding on a subject opens an incident with the finding's content and the step as opened_at."""
    book = new_book()
    opened = step(book, AT, finding(started=AT - timedelta(minutes=20)))
    assert [i.id for i in opened] == ["INC-1"]
    incident = opened[0]
    assert (incident.check, incident.subject, incident.severity, incident.status) == \
        (NULLS, {"field": "deal_stage"}, "warning", "open")
    assert incident.opened_at == incident.last_fired_at == AT
    assert incident.started_at == AT - timedelta(minutes=20)
    assert incident.affected == 10 and incident.sample_event_ids == ["a-1"]


def test_started_at_is_never_after_the_opening() -> None:
    """A finding that claims to start after the evaluation time opens an incident started at that time."""
    incident = step(new_book(), AT, finding(started=AT + timedelta(hours=1)))[0]
    assert incident.started_at == AT


def test_same_check_and_subject_update_the_open_incident() -> None:
    """Firing again on the same subject updates the incident: no second one, severity rises, earliest start kept."""
    book = new_book()
    step(book, AT, finding(started=AT - timedelta(minutes=10)))
    assert step(book, AT + timedelta(minutes=15), finding(severity=Severity.critical, started=AT, affected=40)) == []
    earlier = AT - timedelta(minutes=30)
    assert step(book, AT + timedelta(minutes=30), finding(severity=Severity.warning, started=earlier)) == []
    assert list(book.by_id) == ["INC-1"]
    incident = book.by_id["INC-1"]
    assert incident.severity == "critical"  # a later warning does not lower it
    assert incident.started_at == AT - timedelta(minutes=30)  # an earlier estimate moves it back, a later never
    assert incident.opened_at == AT and incident.last_fired_at == AT + timedelta(minutes=30)
    assert incident.affected == 40


def test_another_subject_opens_another_incident() -> None:
    """A finding of the same check on another field is another incident."""
    book = new_book()
    opened = step(book, AT, finding("deal_stage"), finding("email"))
    assert [(i.id, i.subject["field"]) for i in opened] == [("INC-1", "deal_stage"), ("INC-2", "email")]


def test_quiet_for_resolve_after_resolves_and_a_later_firing_opens_a_new_incident() -> None:
    """Quiet for less than resolve_after keeps it open; quiet that long resolves it; firing again opens INC-2."""
    book = new_book()
    step(book, AT, finding())
    step(book, AT + timedelta(minutes=45))
    assert book.by_id["INC-1"].status == "open"
    step(book, AT + timedelta(minutes=60))
    resolved = book.by_id["INC-1"]
    assert resolved.status == "resolved" and resolved.resolved_at == AT + timedelta(minutes=60)
    assert resolved.status_note == "{'field': 'deal_stage'} read values again"
    assert book.unresolved() == []
    again = step(book, AT + timedelta(hours=3), finding())
    assert [i.id for i in again] == ["INC-2"]
    assert book.by_id["INC-1"].status == "resolved"


def test_a_check_that_was_not_evaluated_does_not_resolve_its_incidents() -> None:
    """An incident of a check that failed (not evaluated) stays open however long it is quiet."""
    book = new_book()
    step(book, AT, finding())
    book.apply([], AT + timedelta(days=1), RESOLVE_AFTER, {RENAMED}, seen_cleared)
    assert book.by_id["INC-1"].status == "open"


def test_silence_never_resolves_an_incident_and_it_says_what_it_waits_for() -> None:
    """Quiet for days with no evidence keeps the incident open with the check's note; evidence then resolves it."""
    book = new_book()
    step(book, AT, finding())
    waiting = Clearance(False, "no actions by lead-router since 2026-10-05 09:00 UTC")
    for days in (1, 3, 10):
        step(book, AT + timedelta(days=days), clearance=lambda _: waiting)
        assert book.by_id["INC-1"].status == "open"
        assert book.by_id["INC-1"].status_note == waiting.note
    step(book, AT + timedelta(days=11))
    assert book.by_id["INC-1"].status == "resolved"
    assert book.by_id["INC-1"].resolved_at == AT + timedelta(days=11)


def test_an_update_keeps_every_agent_the_incident_ever_named() -> None:
    """A later finding naming fewer agents (its window slid past the others) does not release them."""
    book = new_book()
    step(book, AT, rename_finding())
    later = rename_finding()
    step(book, AT + timedelta(minutes=15), Finding(**{**later.__dict__, "evidence": {**later.evidence, "agents": []}}))
    assert book.by_id["INC-1"].evidence["agents"] == ["lead-router"]


def test_store_round_trip_and_status_filter(store: IncidentStore) -> None:
    """Saved incidents come back from list() newest first, filtered by status, and from get() by id."""
    book = new_book(store)
    step(book, AT, finding("deal_stage"), finding("email"))
    assert save(store, book) == 3
    assert [i.id for i in store.list()] == ["INC-2", "INC-1"]
    assert store.get("INC-1") == book.by_id["INC-1"]
    store.set_status("INC-2", "resolved", AT + timedelta(hours=1))
    assert [i.id for i in store.list(["open"])] == ["INC-1"]
    assert [i.id for i in store.list(["resolved"])] == ["INC-2"]
    unresolved, number = store.load_book()
    assert [i.id for i in unresolved] == ["INC-1"] and number == 3


def test_unknown_id_is_a_clear_error(store: IncidentStore) -> None:
    """get and set_status of an id that does not exist raise ConfigError naming the id."""
    with pytest.raises(ConfigError, match="INC-99"):
        store.get("INC-99")
    with pytest.raises(ConfigError, match="INC-99"):
        store.set_status("INC-99", "acknowledged")


def test_a_resolved_incident_cannot_be_acknowledged(store: IncidentStore) -> None:
    """Acknowledging an incident already resolved is refused."""
    book = new_book(store)
    step(book, AT, finding())
    save(store, book)
    store.set_status("INC-1", "resolved")
    with pytest.raises(ConfigError, match="already resolved"):
        store.set_status("INC-1", "acknowledged")


def test_next_run_updates_the_stored_incident(store: IncidentStore) -> None:
    """A second run loads the open incident and updates it instead of opening another."""
    first = new_book(store)
    step(first, AT, finding())
    save(store, first)
    second = new_book(store)
    assert step(second, AT + timedelta(minutes=15), finding(severity=Severity.critical)) == []
    save(store, second)
    assert [(i.id, i.severity, i.last_fired_at) for i in store.list()] == \
        [("INC-1", "critical", AT + timedelta(minutes=15))]


def test_an_ack_made_during_a_run_survives_the_runs_save(store: IncidentStore) -> None:
    """A human acknowledges while a run is in progress; the run's save keeps the ack and its own update."""
    first = new_book(store)
    step(first, AT, finding())
    save(store, first)
    run = new_book(store)  # the run loads the book ...
    acked_at = AT + timedelta(minutes=5)
    store.set_status("INC-1", "acknowledged", acked_at)  # ... a human acks meanwhile ...
    step(run, AT + timedelta(minutes=15), finding(severity=Severity.critical))
    assert run.by_id["INC-1"].status == "open"  # the run's view still says open
    save(store, run)  # ... and the run saves
    stored = store.get("INC-1")
    assert stored.status == "acknowledged" and stored.acknowledged_at == acked_at
    assert stored.severity == "critical" and stored.last_fired_at == AT + timedelta(minutes=15)


def test_a_resolve_made_during_a_run_stands(store: IncidentStore) -> None:
    """A human resolves while a run is in progress; the run still firing does not reopen it."""
    first = new_book(store)
    step(first, AT, finding())
    save(store, first)
    run = new_book(store)
    resolved_at = AT + timedelta(minutes=5)
    store.set_status("INC-1", "resolved", resolved_at)
    step(run, AT + timedelta(minutes=15), finding())
    save(store, run)
    stored = store.get("INC-1")
    assert stored.status == "resolved" and stored.resolved_at == resolved_at
    assert store.list(["open", "acknowledged"]) == []
    # The next run no longer sees it, so a check still firing opens a new incident.
    later = new_book(store)
    assert [i.id for i in step(later, AT + timedelta(minutes=30), finding())] == ["INC-2"]


def test_the_run_resolving_an_acknowledged_incident_resolves_it(store: IncidentStore) -> None:
    """An acknowledged incident whose condition clears is resolved by the run."""
    first = new_book(store)
    step(first, AT, finding())
    save(store, first)
    store.set_status("INC-1", "acknowledged", AT + timedelta(minutes=1))
    run = new_book(store)
    assert run.by_id["INC-1"].status == "acknowledged"
    step(run, AT + timedelta(hours=2))
    save(store, run)
    assert store.get("INC-1").status == "resolved"


def test_ids_stay_unique_when_two_runs_save(store: IncidentStore) -> None:
    """Two runs that loaded the same book both open INC-1; the second save renumbers its own, links included."""
    a, b = new_book(store), new_book(store)
    step(a, AT, finding("email"))
    step(b, AT, rename_finding(), finding("deal_stage"))
    link_incidents(b)
    assert set(b.by_id) == {"INC-1", "INC-2"}
    assert save(store, a) == 2
    assert save(store, b) == 4
    stored = {i.id: i for i in store.list()}
    assert set(stored) == {"INC-1", "INC-2", "INC-3"}
    assert stored["INC-1"].subject == {"field": "email"}  # run a's incident was not overwritten
    assert stored["INC-2"].check == RENAMED and stored["INC-3"].subject == {"field": "deal_stage"}
    assert stored["INC-2"].effects == ["INC-3"] and stored["INC-3"].caused_by == ["INC-2"]
    c = new_book(store)
    assert [i.id for i in step(c, AT, finding("phone"))] == ["INC-4"]


def test_a_run_after_another_keeps_numbering_from_the_store(store: IncidentStore) -> None:
    """Runs one after another number their incidents INC-1, INC-2, ... with no gap or reuse."""
    for n, field in enumerate(("a", "b", "c"), start=1):
        book = new_book(store)
        assert [i.id for i in step(book, AT, finding(field))] == [f"INC-{n}"]
        save(store, book)
    assert sorted(i.id for i in store.list()) == ["INC-1", "INC-2", "INC-3"]


def test_a_rename_explains_the_null_spike_on_its_old_field() -> None:
    """schema.field_renamed deal_stage -> opportunity_stage is the cause of quality.null_spike on deal_stage."""
    book = new_book()
    step(book, AT, rename_finding(started=AT - timedelta(minutes=30)))
    step(book, AT + timedelta(minutes=30), finding("deal_stage", crm_fields=["deal_stage"], agents=["lead-router"]))
    link_incidents(book)
    rename, nulls = book.by_id["INC-1"], book.by_id["INC-2"]
    assert rename.effects == ["INC-2"] and rename.caused_by == []
    assert nulls.caused_by == ["INC-1"] and nulls.effects == []
    link_incidents(book)  # linking again adds nothing twice
    assert book.by_id["INC-1"].effects == ["INC-2"] and book.by_id["INC-2"].caused_by == ["INC-1"]


def test_a_rename_does_not_explain_nulls_on_another_field() -> None:
    """A null spike on email is not linked to the deal_stage rename."""
    book = new_book()
    step(book, AT, rename_finding())
    step(book, AT + timedelta(minutes=30), finding("email", crm_fields=["email"], agents=["lead-router"]))
    link_incidents(book)
    assert book.by_id["INC-1"].effects == [] and book.by_id["INC-2"].caused_by == []


def test_a_rename_matches_the_null_key_through_its_crm_field() -> None:
    """A null spike on input key `stage` that maps (fields:) to deal_stage is explained by the deal_stage rename."""
    book = new_book()
    step(book, AT, rename_finding())
    step(book, AT + timedelta(minutes=30), finding("stage", crm_fields=["Deal_Stage"]))
    link_incidents(book)
    assert book.by_id["INC-2"].caused_by == ["INC-1"]


def test_a_rename_that_began_after_the_nulls_opened_explains_nothing() -> None:
    """A rename that started after the null spike was opened is not its cause."""
    book = new_book()
    step(book, AT, finding("deal_stage", crm_fields=["deal_stage"]))
    step(book, AT + timedelta(hours=2), rename_finding(started=AT + timedelta(hours=1)))
    link_incidents(book)
    assert book.by_id["INC-1"].caused_by == [] and book.by_id["INC-2"].effects == []


def test_unresolved_critical_leaves_out_warnings_and_resolved_incidents(store: IncidentStore) -> None:
    """unresolved_critical (what the agent guard reads) returns open and acknowledged critical incidents only."""
    book = new_book(store)
    step(book, AT, finding("a", Severity.critical), finding("b", Severity.warning), finding("c", Severity.critical),
         finding("d", Severity.critical))
    save(store, book)
    store.set_status("INC-3", "resolved")
    store.set_status("INC-4", "acknowledged")
    assert sorted(i.id for i in store.unresolved_critical()) == ["INC-1", "INC-4"]
