"""quality.identity_collision on seeded synthetic lead traffic: a dedup step that breaks, a second agent overturning
owners, against a steady trickle of real duplicates and the look-alikes (colleagues at one company, namesakes on
free mail, people coming back after the window, agents re-assigning their own leads or writing the same owner)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import datetime, timedelta

import numpy as np

from tests.checks_support import T0, iso, opened, run, store_events

CHECK = "quality.identity_collision"
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
# The check judges a baseline only once the data holds its look-back (two 72-hour windows): ten days of traffic.
START, END = T0 + 10 * DAY, T0 + 11 * DAY + timedelta(hours=12)
FAULT = START + timedelta(hours=10, minutes=7)  # Thursday 10:07
LEADS_PER_HOUR = 30
FIRST_NAMES = ["Ada", "Ben", "Cleo", "Dan", "Eve", "Finn", "Gia", "Hal", "Ivy", "Jon", "Kai", "Lea"]
SAME_PERSON = {"kind": "same_person", "object": "lead"}


class Traffic:
    """Leads arriving at about 30 an hour from T0 to END; each is enriched, assigned an owner and enrolled by
    lead-router, and emailed by followup-agent. territory-agent overturns 2% of the router's owners within hours
    all along, and 1% of people come in again as a second lead within two days (a CRM's steady duplicates)."""

    def __init__(self, seed: int, again_share: float = 0.01) -> None:
        self.rng = np.random.default_rng(seed)
        self.again_share = again_share
        self.events: list[dict] = []
        self.duplicates: set[tuple[str, str]] = set()  # (first record, second record) of one person
        self.people: list[tuple[datetime, str, str, str, str]] = []  # (arrival, record, email, first, last)
        self.arrived: list[datetime] = []  # their arrivals, in order
        self.seen_twice: set[str] = set()  # the first records of people who came in again
        self.owners: dict[str, str] = {}  # record -> the owner the router gave it

    def event(self, prefix: str, at: datetime, agent: str, action: str, record: str, **fields: object) -> None:
        self.events.append({"event_id": f"{prefix}-{len(self.events):06d}", "ts": iso(at), "agent_id": agent,
                            "action": action, "resource": {"type": "lead", "id": record}, "status": "ok", **fields})

    def lead(self, at: datetime, record: str, email: str, first: str, last: str) -> str:
        """A lead's work: enrich, assign, enroll, email; returns the owner the router gave it."""
        rng, person = self.rng, {"email": email, "first_name": first, "last_name": last}
        owner = self.owners[record] = f"rep-{rng.integers(12)}"
        self.event("enr", at + MINUTE, "enrichment-agent", "lead.enrich", record, inputs={"email": email})
        assigned = at + timedelta(minutes=float(rng.uniform(2, 10)))
        self.event("asg", assigned, "lead-router", "lead.assign_owner", record, inputs={"email": email},
                   before={"owner": "queue-inbound"}, after={"owner": owner})
        self.event("seq", at + timedelta(minutes=float(rng.uniform(10, 30))), "lead-router", "sequence.enroll",
                   record, inputs=person)
        self.event("eml", at + timedelta(minutes=float(rng.uniform(30, 120))), "followup-agent", "email.send",
                   record, inputs=person, external=True)
        if rng.random() < 0.02:  # a steady trickle of real reassignments by another agent
            self.event("ter", assigned + timedelta(hours=float(rng.uniform(1, 6))), "territory-agent",
                       "lead.update_territory", record, before={"owner": owner}, after={"owner": f"{owner}-b"})
        return owner

    def arrivals(self) -> list[datetime]:
        times = []
        for hour in range(int((END - T0) / HOUR)):
            start = T0 + hour * HOUR
            times += sorted(start + timedelta(seconds=float(s))
                            for s in self.rng.uniform(0, 3600, self.rng.poisson(LEADS_PER_HOUR)))
        return times

    def since(self, start: datetime, end: datetime) -> list[tuple[datetime, str, str, str, str]]:
        """The people who first arrived in (start, end)."""
        return self.people[bisect_right(self.arrived, start):bisect_left(self.arrived, end)]

    def again(self, at: datetime, person: tuple[datetime, str, str, str, str], record: str, alias: bool) -> None:
        """`person` comes in again as `record` at `at` (under another address at the same domain if `alias`)."""
        _, first_record, email, first, last = person
        if alias:
            email = f"{first[0]}{last}@{email.split('@')[1]}".lower()
        self.lead(at, record, email, first, last)
        self.duplicates.add((first_record, record))
        self.seen_twice.add(first_record)

    def build(self, dedup_broken: bool = False, lookalikes: bool = False, owner_fight: bool = False) -> list[dict]:
        """The traffic; from FAULT on, optionally: 10% of leads arrive twice (`dedup_broken`), the look-alikes
        (`lookalikes`), territory-sync overturning 30% of the router's owners (`owner_fight`)."""
        rng = self.rng
        for n, at in enumerate(self.arrivals()):
            first, last = FIRST_NAMES[n % len(FIRST_NAMES)], f"Quinn{n}"
            record, email = f"L-{n:05d}", f"{first}.{last}@acme{n}.com".lower()
            owner = self.lead(at, record, email, first, last)
            person = (at, record, email, first, last)
            recent = self.since(at - 2 * DAY, at)
            if recent and rng.random() < self.again_share:  # a real duplicate: someone of the last two days again
                self.again(at, recent[int(rng.integers(len(recent)))], f"B-{n:05d}", alias=False)
            self.people.append(person)
            self.arrived.append(at)
            if at < FAULT:
                continue
            if dedup_broken and rng.random() < 0.10:  # the same form post lands twice, within the hour
                later = at + timedelta(minutes=float(rng.uniform(1, 60)))
                self.again(later, person, f"D-{n:05d}", alias=bool(rng.random() < 0.5))
            fought = owner_fight and rng.random() < 0.30
            if fought:
                self.event("syn", at + timedelta(minutes=float(rng.uniform(10, 90))), "territory-sync",
                           "lead.update_territory", record, before={"owner": owner}, after={"owner": "rep-sync"})
            if lookalikes:  # on the leads territory-sync leaves alone: on its leads a later write is a flip back
                self.lookalikes(n, at, person, None if fought else owner)
        return self.events

    def lookalikes(self, n: int, at: datetime, person: tuple[datetime, str, str, str, str], owner: str | None) -> None:
        """What must not count, from FAULT on, each often enough to fire if it did (the owner writes only with
        `owner`)."""
        rng = self.rng
        _, record, email, first, _ = person
        draw = rng.random()
        if draw < 0.10:  # a colleague: same company domain, another name and address
            self.lead(at + HOUR, f"C-{n:05d}", f"zoe.smith{n}@{email.split('@')[1]}", "Zoe", f"Smith{n}")
        elif draw < 0.20:  # two namesakes on free mail: same name, different gmail addresses
            for twin in "ab":
                self.lead(at, f"G-{n:05d}{twin}", f"sam.lee{n}{twin}@gmail.com", "Sam", f"Lee{n}")
        elif draw < 0.30:  # a person from three and a half days ago comes back after the window
            old = [p for p in self.since(at - 4 * DAY, at - timedelta(days=3, hours=12)) if p[1] not in self.seen_twice]
            if old:
                _, old_record, old_email, old_first, old_last = old[int(rng.integers(len(old)))]
                self.lead(at, f"R-{n:05d}", old_email, old_first, old_last)
                self.seen_twice.add(old_record)  # back once: twice within the window would be a real duplicate
        if rng.random() < 0.2:  # the same lead worked again, by another agent
            self.event("nur", at + 3 * HOUR, "nurture-agent", "email.send", record, external=True,
                       inputs={"email": email, "first_name": first})
        # The router re-assigning its own lead; another agent writing the owner the lead has (with or without
        # `before`); another agent reviewing the owner of a lead routed 30 hours ago, past the window.
        draw = rng.random()
        if owner is None:
            return
        if draw < 0.15:
            self.event("re", at + HOUR, "lead-router", "lead.assign_owner", record, before={"owner": owner},
                       after={"owner": f"{owner}-again"})
        elif draw < 0.45:
            before = {"before": {"owner": owner}} if rng.random() < 0.5 else {}
            self.event("same", at + 2 * HOUR, "territory-agent", "lead.update_territory", record,
                       after={"owner": owner}, **before)
        elif draw < 0.60:
            earlier = self.since(at - 31 * HOUR, at - 30 * HOUR)
            if earlier:
                old = earlier[int(rng.integers(len(earlier)))][1]
                self.event("late", at, "territory-agent", "lead.update_territory", old,
                           before={"owner": self.owners[old]}, after={"owner": f"{self.owners[old]}-review"})


def test_fires_when_the_dedup_step_breaks(home):
    """From FAULT 10% of leads arrive twice (half under an alias at the same domain and the same name): one critical
    same-person incident within 6 h, naming the duplicated records, and nothing else fires."""
    traffic = Traffic(1)
    store_events(home, actions=traffic.build(dedup_broken=True, lookalikes=True))
    report = run(home, START, END, only=[CHECK])
    assert not report.failures
    found = opened(report, CHECK)
    assert [i.subject for _, i in found] == [SAME_PERSON], [(at, i.subject, i.summary) for at, i in found]
    at, incident = found[0]
    # Three duplicates an hour over the trickle's 0.3: about eleven in the 6-hour window pass p < 1e-5.
    assert FAULT < at <= FAULT + timedelta(hours=6), at - FAULT
    assert FAULT - timedelta(hours=6) <= incident.started_at <= at  # the first collision of the recent window
    assert incident.severity == "critical"  # the duplicates were emailed
    pairs = {frozenset(p) for p in incident.evidence["record_pairs"]}  # whichever of the two was worked second
    assert pairs <= {frozenset(p) for p in traffic.duplicates}
    assert any(record.startswith("D-") for pair in pairs for record in pair)
    assert set(incident.evidence["matched_by"]) == {"email", "name"}


def test_quiet_on_clean_traffic_with_a_steady_trickle_and_the_lookalikes(home):
    """The steady 1% of duplicate people and 2% of overturned owners, and from FAULT on every look-alike: nothing."""
    traffic = Traffic(2)
    store_events(home, actions=traffic.build(lookalikes=True))
    assert len(traffic.duplicates) >= 50  # the trickle is there, at about seven a day
    report = run(home, START, END, only=[CHECK])
    assert not report.failures
    assert opened(report, CHECK) == []


def test_quiet_through_a_new_stores_first_days_with_many_real_duplicates(home):
    """8% of people come in twice all along: a steady rate, judged from the store's first hours to its twelfth day.
    Early on the look-back holds few earlier records, so the rate climbs as it fills (against the empty baseline of
    the first hours that alone fired at 6 h); the check judges no baseline before the look-back is in the data."""
    traffic = Traffic(1, again_share=0.08)
    store_events(home, actions=traffic.build())
    report = run(home, T0 + timedelta(hours=6), END, every=HOUR, only=[CHECK])
    assert not report.failures
    assert opened(report, CHECK) == []


def test_fires_when_a_second_agent_overturns_the_routers_owners(home):
    """From FAULT territory-sync gives 30% of leads another owner within 90 minutes of the router's: a warning on
    the pair within 2.5 h. Nothing else opens, but for territory-sync's fights with other agents that follow from it
    (territory-agent overturning its owner on a lead it already took): territory-agent's steady reassignments, the
    router re-assigning its own leads, agents writing the owner a lead has, and late reviews stay quiet."""
    traffic = Traffic(3)
    store_events(home, actions=traffic.build(lookalikes=True, owner_fight=True))
    report = run(home, START, END, only=[CHECK])
    assert not report.failures
    found = opened(report, CHECK)
    assert found and all("territory-sync" in i.subject.get("agents", "") for _, i in found), found
    at, incident = found[0]
    assert incident.subject == {"kind": "owner_conflict", "agents": "lead-router, territory-sync", "object": "lead"}
    # Nine overturned owners an hour, each 10 to 90 minutes after the router's: five come within 2.5 h.
    assert FAULT < at <= FAULT + timedelta(hours=2, minutes=30), at - FAULT
    assert incident.started_at >= FAULT
    assert incident.severity == "warning"
    assert max(incident.evidence["overturned_by"], key=incident.evidence["overturned_by"].get) == "territory-sync"
    assert set(incident.evidence["agents"]) == {"lead-router", "territory-sync"}
    assert "rep-sync" in {new for _, new in incident.evidence["owners"]}
