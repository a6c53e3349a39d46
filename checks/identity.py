"""quality.identity_collision: one person worked through two records, and two agents disagreeing on a record's owner.

Two rollups (kept per day in the home, as those of ``agentwatch.checks.rollup_sql``) hold the only rows the check
reads, extracted from the events' JSON in DuckDB: the successful handling actions that carry a person identity
(hashed: no email is copied into the aggregates or an incident) and the successful writes that change an owner.
``prepare`` narrows them in DuckDB to the people seen on two records and to the owner writes overturning another
agent's, with counts per 5-minute bucket of what those are a share of; Polars then finds, among those few rows, the
first action showing each person on a second record. ``evaluate`` counts both in the recent window against their
usual rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from agentwatch.checks.activity import Activity
from agentwatch.checks.base import SAMPLE_IDS, Check, CheckOptions, Finding, Step, register, subject_key
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.data import BUCKET, MICROSECOND, EvalData, count_between, from_micros, to_micros
from agentwatch.checks.duplicates import far_above_usual
from agentwatch.checks.rollup_sql import owner_writes, person_rows
from agentwatch.core.severity import Severity

SAME_PERSON, OWNER_CONFLICT = "same_person", "owner_conflict"
PRIOR_COLLISIONS = 0.5  # half a collision of prior: a clean baseline does not make every chance repeat a surprise
RECORD = ["resource_type", "resource_id"]
EVIDENCE_RECORDS = 20  # record pairs an incident lists
BUCKET_US = BUCKET // MICROSECOND

# Free-mail domains: two people of the same name there share nothing but a mail provider.
PUBLIC_EMAIL_DOMAINS = [
    "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "msn.com", "icloud.com",
    "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "mail.com", "yandex.ru", "qq.com",
    "163.com",
]


class IdentityOptions(CheckOptions):
    resolve_after_minutes: float = Field(
        360, gt=0, description="Resolve once the rule has been quiet this long: at a few duplicates an hour, a "
        "broken step still running has hours that fall short of the bar by chance, and an hour would close and "
        "reopen the same incident."
    )
    every_minutes: float | None = Field(
        15, gt=0, description="Evaluate once per this many minutes (slots of the clock), the last findings standing "
        "in between: duplicates arrive at a few an hour and are judged over hours, so `serve` reads the window "
        "four times an hour, not sixty."
    )
    handling_actions: list[str] = Field(
        ["email.send", "sequence.enroll", "lead.assign_owner"], description="Successful actions that count as "
        "working a person: outreach and assignment are what give one person two sequences or two reps. Enrichment "
        "and scoring are left out, since touching a duplicate record harms no one."
    )
    email_keys: list[str] = Field(
        ["email"], description="Keys of `inputs` (then `after`) holding the person's email, compared lower-cased and "
        "trimmed: the same address on two records is the same person, however the records are spelt."
    )
    name_keys: list[list[str]] = Field(
        [["first_name", "last_name"], ["name"]], description="Keys of `inputs` (then `after`) naming the person: "
        "the first group whose keys all have a value, joined by spaces, lower-cased. The same name at the same email "
        "domain is also the same person (jane.doe@ and jdoe@acme.com); a first name alone is not enough, two Johns "
        "often work at one company. Empty: match on the email only."
    )
    domain_keys: list[str] = Field(
        ["domain"], description="Keys of `inputs` (then `after`) giving the company domain when the event carries "
        "no email, so a name and a domain still identify a person."
    )
    public_email_domains: list[str] = Field(
        PUBLIC_EMAIL_DOMAINS, description="Domains where a name does not identify a person (free mail): two people "
        "named John Smith at gmail.com are two people; only their exact email matches them there."
    )
    person_window_hours: float = Field(
        72, gt=0, description="A person collides when an action shows them on a second record within this many "
        "hours of the other record's last handling, and counts once per such window: three days covers a "
        "sequence's first touches, while a person who comes back as a new lead weeks later is a returning person, "
        "not a duplicate."
    )
    owner_keys: list[str] = Field(
        ["owner", "OwnerId", "owner_id", "hubspot_owner_id"], description="Keys of `after` holding the record's "
        "owner (the plain, Salesforce and HubSpot spellings); a write whose `before` already held the same owner "
        "changes nothing and is not counted."
    )
    owner_window_hours: float = Field(
        24, gt=0, description="An owner write conflicts when it overturns a different owner another agent wrote on "
        "the same record within this many hours: a day is the time a rep takes to start on a lead, so a flip within "
        "it means two reps on one lead, while a territory review weeks later is ordinary reassignment."
    )
    recent_hours: float = Field(
        6, gt=0, description="Count collisions and conflicts over this many recent hours: a broken dedup step at "
        "a few leads an hour collects enough in a few hours, and the count forgets it within the working day once "
        "it is fixed."
    )
    baseline_hours: float = Field(
        72, gt=0, description="Learn the usual rate (per handling action, or per owner write of the two agents) "
        "over this many hours before the recent window: three days hold enough of a steady trickle of real "
        "duplicates (a few a day) that it never pages, while a week would make every run read more rows."
    )
    min_count: int = Field(
        5, ge=1, description="Fire at this many collisions (or conflicts of one pair of agents) in the recent "
        "window: a couple of duplicate people a morning is a CRM's normal state, five above the usual rate is a "
        "pattern."
    )
    min_baseline_events: int = Field(
        100, ge=1, description="Take the usual rate over at least this many handling actions (or owner writes), "
        "with half a collision among them when none was seen: a new store or a new pair of agents is judged against "
        "a low rate, not an empty baseline that would make every single repeat a surprise."
    )
    ratio: float = Field(
        3.0, gt=1, description="Fire only when the count is at least this multiple of the usual rate applied to the "
        "recent volume: a broken dedup step multiplies duplicates, a busy morning only adds a few."
    )
    max_p_value: float = Field(
        1e-5, gt=0, lt=1, description="And only when that many would come by chance, at the usual rate, less often "
        "than this (Poisson): 6-hour windows make about 1,500 independent tests a year per subject, so a steady "
        "trickle of real duplicates pages by chance about once in 70 years."
    )




@dataclass(frozen=True)
class Exposure:
    """What a subject's events are a share of (handling actions, owner writes), per 5-minute bucket: the bucket
    starts (microseconds, sorted) and the running sum of the counts."""

    starts: np.ndarray
    running: np.ndarray

    @classmethod
    def of(cls, counts: pl.DataFrame) -> Exposure:
        """From rows of bucket (microseconds) and n."""
        summed = counts.group_by("bucket").agg(pl.col("n").sum()).sort("bucket")
        return cls(summed["bucket"].to_numpy(), np.cumsum(summed["n"].to_numpy()))

    def count(self, start: int | np.ndarray, end: int) -> np.ndarray:
        """The events in the buckets that end in (start, end]: whole buckets, none read past `end`."""
        total = np.concatenate(([0], self.running))
        hi = np.searchsorted(self.starts, end - BUCKET_US, "right")
        lo = np.minimum(np.searchsorted(self.starts, np.asarray(start) - BUCKET_US, "right"), hi)
        return total[hi] - total[lo]


@dataclass(frozen=True)
class Stream:
    """One subject's counted events (collisions or conflicts) as rows sorted by time, their times in microseconds,
    and what they are a share of."""

    rows: pl.DataFrame
    times: np.ndarray
    exposure: Exposure
    reached: np.ndarray  # times of the colliding actions that reached the person (external), counted or not

    @classmethod
    def of(cls, rows: pl.DataFrame, exposure: Exposure, reached: pl.Series | None = None) -> Stream:
        rows = rows.sort("t", "event_id")
        return cls(rows, rows["t"].to_numpy(), exposure, np.sort(reached.to_numpy()) if reached is not None
                   else np.empty(0, dtype=np.int64))

    def count(self, start: int, end: int) -> int:
        """The events with time in (start, end]."""
        return count_between(self.times, start, end)


@dataclass(frozen=True)
class Judged:
    """A firing: the recent window's rows, the index among them where the rise most likely began, the count the
    usual rate expects and that rate."""

    rows: pl.DataFrame
    first: int
    expected: float
    rate: float
    reached: bool  # a colliding action in the window reached a person


@register
class IdentityCollision(Check[IdentityOptions]):
    """One person worked through two records, or two agents giving one record different owners.

    **Same person** (subject ``{"kind": "same_person", "object": <record type>}``): a person is identified by the
    email of a handling action (``handling_actions``, status ok; ``email_keys`` of ``inputs``, then ``after``,
    lower-cased), or by a name (``name_keys``) at an email domain (or ``domain_keys``) that is not free mail. A
    collision is the first action that shows a person on a second record of the same type: it matches another
    record handled within ``person_window_hours`` before. A person counts once per window: later actions on either
    record, or a match on their other key, do not count again. One subject per record type (a broken dedup step
    duplicates every agent's leads), whichever agents did the work; its rate is per handling action carrying an
    identity.

    **Owner conflict** (subject ``{"kind": "owner_conflict", "agents": "<agent>, <agent>", "object": <record
    type>}``): an agent's successful write of a new owner (``owner_keys`` of ``after``) overturns a different owner
    that another agent wrote last on the same record, within ``owner_window_hours``. One subject per pair of agents
    (in name order), so a fight in which each overturns the other (a router sets A, a territory agent B, the router
    A again) is one incident; the evidence counts who overturned whom. Its rate is per owner write of the two.

    Each kind fires when its count over ``recent_hours`` reaches ``min_count``, is ``ratio`` times what its usual
    rate over ``baseline_hours`` before (frozen while an incident is open) predicts, and would come by chance less
    often than ``max_p_value``: a CRM's steady trickle of real duplicates stays quiet, a dedup step that breaks
    fires. Same person is critical when a colliding action in the window reached the person (``external``, e.g. an
    email sent from the second record while the first was being worked), else a warning.

    A store's first days are not judged: until its data holds the look-back (two person windows, one owner window)
    before a full baseline, the rates climb as the look-back fills. By default same person judges from a store's
    tenth day, owner conflicts from its fifth.

    Benign look-alikes it ignores: two people at one company (same domain, different names and emails); namesakes
    on free mail; one record handled by several agents in turn; a person coming back as a new lead after the
    window; an agent re-assigning its own earlier assignment; two agents writing the same owner; an owner changed
    again after the window.
    """

    clears_when = (
        "Resolves when the work goes on without the surge: at least `clear_min_events` handling actions on records "
        "of the type (same person), or owner writes by the two agents (owner conflict), since it last fired. No "
        "further actions or writes keep it open."
    )

    name: ClassVar[str] = "quality.identity_collision"
    family: ClassVar[str] = "quality"
    Options: ClassVar[type[CheckOptions]] = IdentityOptions
    history: timedelta = timedelta(hours=222)

    def __init__(self, options: IdentityOptions, config: ChecksConfig) -> None:
        super().__init__(options, config)
        # A collision looks back a window for the other record, and one more for an earlier collision of the person.
        window = max(2 * options.person_window_hours, options.owner_window_hours)
        self.history = timedelta(hours=options.baseline_hours + options.recent_hours + window)
        self.streams: dict[str, tuple[dict[str, str], Stream]] = {}  # subject_key -> (subject, its stream)
        self.full_from: dict[str, int] = {}  # kind -> the earliest baseline start with its look-back in the data

    def prepare(self, data: EvalData) -> None:
        options = self.options
        self.streams = {}  # afresh: the scheduler may reuse this object
        judged_from = data.look_back_from - timedelta(hours=options.baseline_hours + options.recent_hours)
        person_window = timedelta(hours=options.person_window_hours)
        owner_window = timedelta(hours=options.owner_window_hours)
        # A store's first days have no look-back yet: fewer earlier records to collide with, no earlier owner to
        # overturn. Their rates rise as the look-back fills, which is no news: baselines are judged only past it.
        # (Looked for over twice the look-back, so a store that has long been running never waits.)
        look_back = {SAME_PERSON: 2 * person_window, OWNER_CONFLICT: owner_window}
        began = first_action(data, judged_from - 2 * max(look_back.values()))
        self.full_from = {} if began is None else {kind: began + back // MICROSECOND
                                                   for kind, back in look_back.items()}
        # Read through the rollups' SQL: DuckDB keeps only the few rows that matter, from the stored days.
        self._prepare_people(data, judged_from, person_window)
        self._prepare_owners(data, judged_from, owner_window)

    def _prepare_people(self, data: EvalData, judged_from: datetime, window: timedelta) -> None:
        o = self.options
        people = person_rows(o.handling_actions, o.email_keys, o.name_keys, o.domain_keys, o.public_email_domains)
        shared = data.frame(shared_people_sql(data.rollup_sql(people, since=judged_from - 2 * window)))
        handled = data.frame(bucket_counts_sql(data.rollup_sql(people, since=judged_from - BUCKET), []))
        collisions, reached = same_person(shared, window, judged_from)
        for (kind,), counts in handled.group_by("resource_type"):
            rows, of_kind = (frame.filter(pl.col("resource_type") == kind) for frame in (collisions, reached))
            self._add({"kind": SAME_PERSON, "object": str(kind)}, Stream.of(rows, Exposure.of(counts), of_kind["t"]))

    def _prepare_owners(self, data: EvalData, judged_from: datetime, window: timedelta) -> None:
        owners = owner_writes(self.options.owner_keys)
        conflicts = data.frame(owner_conflicts_sql(data.rollup_sql(owners, since=judged_from - window), window,
                                                   judged_from))
        writes = data.frame(bucket_counts_sql(data.rollup_sql(owners, since=judged_from - BUCKET), ["agent_id"]))
        for (first, second, kind), rows in conflicts.group_by("first_agent", "second_agent", "resource_type"):
            counts = writes.filter(pl.col("agent_id").is_in([first, second]) & (pl.col("resource_type") == kind))
            self._add({"kind": OWNER_CONFLICT, "agents": f"{first}, {second}", "object": str(kind)},
                      Stream.of(rows, Exposure.of(counts)))

    def _add(self, subject: dict[str, str], stream: Stream) -> None:
        self.streams[subject_key(self.name, subject)] = (subject, stream)

    def fresh_events(self, step: Step, subject: Mapping[str, str], since: datetime,
                     activity: Activity) -> tuple[int, str]:
        """Handling actions on records of the type (same person), or the two agents' owner writes (owner
        conflict): each one judged without a new surge is evidence."""
        record = subject.get("object", "")
        what = (f"owner writes by {subject.get('agents', '')} on {record} records"
                if subject.get("kind") == OWNER_CONFLICT else f"handling actions on {record} records")
        known = self.streams.get(subject_key(self.name, subject))
        if known is None:
            return 0, what
        return int(known[1].exposure.count(to_micros(since), to_micros(step.at))), what

    def evaluate(self, step: Step) -> list[Finding]:
        findings = []
        for _, (subject, stream) in sorted(self.streams.items()):
            judged = self._judge(step, subject, stream)
            if judged is not None:
                findings.append(self._finding(subject, judged))
        return findings

    def _judge(self, step: Step, subject: dict[str, str], stream: Stream) -> Judged | None:
        """The recent window's rows and what the usual rate expects of them, when the rule fires."""
        opts = self.options
        at = to_micros(step.at)
        recent = timedelta(hours=opts.recent_hours) // MICROSECOND
        lo, hi = np.searchsorted(stream.times, [at - recent, at], "right")
        count = int(hi - lo)
        if count < opts.min_count:
            return None
        started = step.started(self.name, subject)
        base_end = min(at, to_micros(started) if started else at) - recent  # frozen while an incident is open
        base_start = base_end - timedelta(hours=opts.baseline_hours) // MICROSECOND
        if base_start < self.full_from.get(subject["kind"], at):
            return None  # the baseline would count the store's first days, before the look-back filled
        base_events = max(int(stream.exposure.count(base_start, base_end)), opts.min_baseline_events)
        rate = (stream.count(base_start, base_end) + PRIOR_COLLISIONS) / base_events
        expected = rate * float(stream.exposure.count(at - recent, at))
        if not far_above_usual(count, expected, opts.ratio, opts.max_p_value):
            return None
        first = rise_start(stream.times[lo:hi], stream.exposure, rate, at, opts.min_count)
        reached = count_between(stream.reached, at - recent, at) > 0
        return Judged(stream.rows.slice(int(lo), count), first, expected, rate, reached)

    def _finding(self, subject: dict[str, str], judged: Judged) -> Finding:
        opts = self.options
        count, record, expected = judged.rows.height, subject["object"], judged.expected
        rows = judged.rows.slice(judged.first)  # from where the rise most likely began
        agents = sorted({*rows["agent_id"].to_list(), *rows["other_agent_id"].to_list()})
        sample = [i for pair in zip(rows["other_event_id"], rows["event_id"], strict=True) for i in pair]
        evidence: dict[str, object] = {
            "kind": subject["kind"], "object": record, "agents": agents, "count": count, "since_start": rows.height,
            "expected": round(expected, 2), "usual_rate": round(judged.rate, 5), "recent_hours": opts.recent_hours,
            "baseline_hours": opts.baseline_hours, "min_count": opts.min_count,
        }
        head = rows.head(EVIDENCE_RECORDS)
        if subject["kind"] == SAME_PERSON:
            matched = rows.group_by("matched_by").len().sort("matched_by")
            evidence |= {"record_pairs": [list(p) for p in zip(head["other_id"], head["resource_id"], strict=True)],
                         "matched_by": dict(zip(matched["matched_by"], matched["len"], strict=True)),
                         "window_hours": opts.person_window_hours, "external": judged.reached}
            summary = (f"{count} people were worked on a second {record} record in the last {opts.recent_hours:g} h, "
                       f"within {opts.person_window_hours:g} h of their first (by {', '.join(agents)}; about "
                       f"{expected:.1f} expected)" + (": some were contacted from both." if judged.reached else "."))
            severity = Severity.critical if judged.reached else Severity.warning
        else:
            overturned = rows.group_by("agent_id").len().sort("len", "agent_id", descending=[True, False])
            by = dict(zip(overturned["agent_id"], overturned["len"], strict=True))
            evidence |= {"window_hours": opts.owner_window_hours, "resource_ids": head["resource_id"].to_list(),
                         "overturned_by": by,
                         "owners": [list(p) for p in zip(head["other_owner"], head["owner"], strict=True)]}
            summary = (f"{subject['agents'].replace(', ', ' and ')} set different owners on {count} {record} records "
                       f"within {opts.owner_window_hours:g} h of each other in the last {opts.recent_hours:g} h "
                       f"(overturned by {', '.join(f'{a} {n}' for a, n in by.items())}; about {expected:.1f} "
                       f"expected): those records flip between reps.")
            severity = Severity.warning
        return Finding(check=self.name, subject=subject, severity=severity, summary=summary,
                       started_at=from_micros(rows["t"][0]), affected=count, evidence=evidence,
                       sample_event_ids=sample[:SAMPLE_IDS])


def first_action(data: EvalData, since: datetime) -> int | None:
    """When the first action after `since` happened (epoch microseconds), if any did."""
    first = data.frame(f"SELECT ts FROM {data.view('actions', since)} WHERE {data.time_filter(since=since)} "
                       f"ORDER BY ts LIMIT 1")
    return to_micros(first["ts"][0]) if first.height else None


def rise_start(times: np.ndarray, exposure: Exposure, rate: float, end: int, least: int) -> int:
    """Where in `times` (the recent window's events, sorted) the rise most likely began: the start of the suffix,
    of at least `least` events, whose count is the likeliest rise over `rate` times the exposure since it (a Poisson
    GLR), so a chance repeat hours before a dedup step broke does not date the incident."""
    starts = times[:max(len(times) - least + 1, 1)]
    counts = np.arange(len(times), len(times) - len(starts), -1, dtype=float)
    expected = np.maximum(rate * exposure.count(starts, end).astype(float), 1e-9)
    llr = counts * np.log(counts / expected) - (counts - expected)
    llr[counts <= expected] = -np.inf
    return int(np.argmax(llr))


def same_person(shared: pl.DataFrame, window: timedelta,
                judged_from: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The collisions from `judged_from` on, from the rows of :func:`shared_people_sql` (read from two windows
    before it): the first action showing a person on a second record of the type, with that record (other_id,
    other_event_id, other_agent_id) and how they matched (matched_by). An action collides when another record with
    one of its keys was handled within `window` before; it counts unless an action of the same record, or with the
    same key, collided within `window` before it (so each needs a window of look-back, and its own one more).
    Also every colliding action that reached the person (external), counted or not: resource_type, t."""
    width, start = window // MICROSECOND, to_micros(judged_from)
    by_key = ["resource_type", "key"]
    keyed = shared.sort("t", "event_id", "matched_by")
    # Per person, runs of one record's actions in time order: the last of the run before is the latest handling of
    # another record.
    keyed = keyed.with_columns((pl.col("resource_id") != pl.col("resource_id").shift().over(by_key))
                               .fill_null(True).alias("switch"))
    keyed = keyed.with_columns(pl.col("switch").cum_sum().over(by_key).alias("run"))
    runs = keyed.group_by(*by_key, "run").agg(
        pl.col("t").max().alias("other_t"),
        pl.col("event_id").sort_by("t", "event_id").last().alias("other_event_id"),
        pl.col("agent_id").sort_by("t", "event_id").last().alias("other_agent_id"),
        pl.col("resource_id").first().alias("other_id"),
    ).with_columns(pl.col("run") + 1)
    matched = (keyed.filter(pl.col("t") >= start - width).join(runs, on=[*by_key, "run"], how="inner")
               .filter(pl.col("t") - pl.col("other_t") <= width))
    # Every key of a colliding action, and the action once (its email match first, else the latest other record).
    keys = keyed.filter(pl.col("event_id").is_in(matched["event_id"].implode()) & (pl.col("t") >= start - width))
    seen_key = pl.col("t") - pl.col("t").shift().over(by_key) <= width
    fresh = keys.with_columns(seen_key.fill_null(False).alias("seen")).group_by("event_id").agg(pl.col("seen").any())
    actions = (matched.sort("t", "event_id", "matched_by", "other_t", descending=[False, False, False, True])
               .unique("event_id", keep="first", maintain_order=True)
               .join(fresh, on="event_id", maintain_order="left")
               .with_columns((pl.col("t") - pl.col("t").shift().over(RECORD) <= width).fill_null(False)
                             .alias("seen_record")))
    counted = actions.filter(~pl.col("seen") & ~pl.col("seen_record") & (pl.col("t") >= start))
    reached = actions.filter(pl.col("external") & (pl.col("t") >= start)).select("resource_type", "t")
    return counted.select("t", "event_id", "agent_id", "action", "resource_type", "resource_id", "external",
                          "matched_by", "other_id", "other_event_id", "other_agent_id"), reached


# --- queries over the kept rows (checks/rollup_sql.py makes them) ------------------------------------------------


def shared_people_sql(rows: str) -> str:
    """Of the rows of :func:`person_rows` (a SELECT), one per action and key whose key two records share (a key
    names the type): t (epoch microseconds), event_id, agent_id, action, resource_type, resource_id, external, key,
    matched_by (email or name). The rows are read twice rather than held, the keys grouped on their hashes alone:
    the memory of a run is the table of keys."""
    return f"""
        WITH shared AS (
            SELECT key FROM (SELECT record, unnest([email_key, name_key]) AS key FROM ({rows}))
            WHERE key IS NOT NULL GROUP BY key HAVING min(record) <> max(record))
        SELECT * FROM (
            SELECT epoch_us(ts) AS t, event_id, agent_id, action, resource_type, resource_id, external,
                   unnest([email_key, name_key]) AS key, unnest(['email', 'name']) AS matched_by FROM ({rows}))
        SEMI JOIN shared USING (key)"""


def owner_conflicts_sql(rows: str, window: timedelta, judged_from: datetime) -> str:
    """Of the rows of :func:`owner_writes` (a SELECT, from a window before `judged_from`), those from `judged_from`
    on that overturn a different owner another agent wrote last on the record within `window`: t (epoch
    microseconds), event_id, agent_id, resource_type, resource_id, owner, other_agent_id, other_owner,
    other_event_id, external (false), and the two agents in name order (first_agent, second_agent)."""
    return f"""
        SELECT epoch_us(ts) AS t, event_id, agent_id, resource_type, resource_id, owner, other_agent_id, other_owner,
               other_event_id, false AS external, least(agent_id, other_agent_id) AS first_agent,
               greatest(agent_id, other_agent_id) AS second_agent
        FROM (SELECT *, lag(agent_id) OVER r AS other_agent_id, lag(owner) OVER r AS other_owner,
                     lag(ts) OVER r AS other_ts, lag(event_id) OVER r AS other_event_id
              FROM ({rows}) WINDOW r AS (PARTITION BY resource_type, resource_id ORDER BY ts, event_id))
        WHERE ts >= TIMESTAMPTZ '{judged_from.isoformat()}' AND other_agent_id <> agent_id AND other_owner <> owner
        AND epoch_us(ts) - epoch_us(other_ts) <= {window // MICROSECOND}"""


def bucket_counts_sql(rows: str, by: list[str]) -> str:
    """The rows of a SELECT per resource_type, the columns `by` and 5-minute bucket (epoch microseconds): n."""
    columns = "".join(f"{c}, " for c in by)
    return (f"SELECT {columns}resource_type, epoch_us(time_bucket(INTERVAL '5 minutes', ts)) AS bucket, "
            f"count(*)::BIGINT AS n FROM ({rows}) GROUP BY ALL")
