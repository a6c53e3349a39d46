"""After routing: the follow-up agent's emails and meetings, and what prospects and reps do about them."""

from __future__ import annotations

import math
import random

from agentwatch.app.demo.recorder import World, latency, rfc3339
from agentwatch.app.demo.traffic import DAY_MS, HOUR_MS, REGION_UTC_OFFSET_MIN, Lead

FOLLOWUP = ("followup-agent", "3.1.0", 0)
# The offset the CRM webhook stamps rep actions with (business hours still follow the region).
REP_LOG_OFFSET = {"NA": -300, "EMEA": 120, "APAC": 0}

# Per routing path: the sequence and each step's delay after routing, in business days (0: right away).
# Counting business days keeps weekend-due steps from piling up on Monday morning.
_STEPS = {
    "sdr": ("inbound-fast-track", (0, 2, 4, 6, 9)),
    "ae": ("ae-handoff", (0, 3)),
    "nurture": ("cold-nurture", (1, 5, 10, 15, 20)),
}
_SUBJECTS = {
    "inbound-fast-track": "Thanks for reaching out, {first}",
    "ae-handoff": "{company} and your account team",
    "cold-nurture": "Ideas for {company}",
}
_REPLY = {"high": 0.24, "medium": 0.13, "low": 0.06}
_BOOK = {"high": 0.7, "medium": 0.55, "low": 0.35}
_AMOUNT = {"smb": (6_000, 30_000), "mid-market": (30_000, 150_000), "enterprise": (150_000, 900_000)}


def business_time(rng: random.Random, ms: int, offset_min: int) -> int:
    """``ms`` if it falls in local business hours (weekdays 8-18), else a moment early next business day."""
    offset = offset_min * 60_000
    day, within = divmod(ms + offset, DAY_MS)
    if (day + 3) % 7 < 5 and 8 * HOUR_MS <= within < 18 * HOUR_MS:
        return ms
    if within >= 8 * HOUR_MS:
        day += 1
    while (day + 3) % 7 >= 5:
        day += 1
    return day * DAY_MS + 8 * HOUR_MS + rng.randrange(2 * HOUR_MS) - offset


def business_days_later(rng: random.Random, ms: int, days: int, offset_min: int) -> int:
    """``days`` local business days after ``ms``, at about the same local time if that is in hours."""
    offset = offset_min * 60_000
    day, within = divmod(ms + offset, DAY_MS)
    while days > 0:
        day += 1
        if (day + 3) % 7 < 5:  # a weekday
            days -= 1
    if not 8 * HOUR_MS <= within < 17 * HOUR_MS:
        within = 8 * HOUR_MS + rng.randrange(9 * HOUR_MS)
    return day * DAY_MS + within + rng.randrange(HOUR_MS) - offset


def _amount(rng: random.Random, segment: str) -> float:
    low, high = _AMOUNT[segment]
    return float(round(rng.uniform(low, high), -2))


def follow_up(w: World, lead: Lead, path: str, owner: str, intent: str, routed_ms: int, stop_ms: int) -> None:
    """The routed lead's email sequence, until a reply, a spam report, an opt-out or the end of the month."""
    rng, rec = w.rng, w.rec
    sequence, delays = _STEPS[path]
    offset = REGION_UTC_OFFSET_MIN[lead.region]
    rep_offset = REP_LOG_OFFSET[lead.region]
    victim = lead.deal is not None and path != "ae"  # an open-deal contact the router mis-sent
    if (
        path == "ae"
        and lead.deal is not None
        and lead.deal.stage == "closed_won_pending"
        and rng.random() < 0.35
    ):
        closed = business_time(rng, routed_ms + rng.randint(1, 10) * DAY_MS, offset)
        rec.outcome(closed, "closed_won", lead.id, rep_offset, actor=owner, amount=_amount(rng, lead.segment))
    subject = _SUBJECTS[sequence].format(first=lead.first_name, company=lead.company)
    for step, delay in enumerate(delays, start=1):
        if delay == 0:
            ms = routed_ms + rng.randint(60_000, 20 * 60_000)  # speed to lead: answer within minutes
        else:
            ms = business_days_later(rng, routed_ms, delay, offset)
        if ms >= stop_ms or ms >= rec.end_ms:
            return
        inputs = {
            "email": lead.email,
            "first_name": lead.first_name,
            "company": lead.company,
            "sequence": sequence,
            "step": step,
        }
        decision = {"template": f"{sequence}-{step}", "subject": subject, "sender": owner}
        if rng.random() < 0.01:
            reason = rng.choice(("unsubscribed", "hard_bounce", "do_not_contact"))
            rec.action(
                ms,
                FOLLOWUP,
                "email.send",
                lead.id,
                "skipped",
                inputs=inputs,
                decision={"reason": reason},
                latency_ms=latency(rng, 30),
            )
            return
        approval = None
        if path == "sdr" and step == 1 and lead.segment == "enterprise" and rng.random() < 0.6:
            # Policy: a manager approves the first email to an enterprise lead.
            rec.action(
                ms,
                FOLLOWUP,
                "email.send",
                lead.id,
                "pending_approval",
                inputs=inputs,
                decision=decision,
                rationale="first touch to an enterprise lead needs a manager's approval",
                latency_ms=latency(rng, 2_400),
            )
            approved = business_time(rng, ms + rng.randint(10 * 60_000, 3 * HOUR_MS), offset)
            approver = rng.choice(w.managers[lead.region])
            if w.offsite[0] <= approved < w.offsite[1]:
                # The managers are at an offsite: the request waits until they are back at their desks.
                back = w.offsite[1] + w.offsite_rng.randrange(2 * HOUR_MS)
                approved = business_time(w.offsite_rng, back, offset)
                w.approvals_held += rec.in_window(ms)
            approval = {"approved_by": approver, "approved_at": rfc3339(approved, rep_offset)}
            ms = approved + rng.randint(5_000, 60_000)
        ms, email_id = rec.attempt(
            ms,
            FOLLOWUP,
            "email.send",
            lead.id,
            "email",
            inputs=inputs,
            decision=decision,
            external=True,
            approval=approval,
            authorized_by="policy:enterprise-first-touch" if approval else None,
            confidence=round(rng.uniform(0.8, 0.99), 3),
            latency_ms=latency(rng, 2_400, 0.4),
        )
        rec.attempt(
            ms + rng.randint(300, 2_500),
            FOLLOWUP,
            "crm.log_activity",
            lead.id,
            "crm",
            inputs={"email_event_id": email_id},
            after={"last_activity": f"email:{sequence}-{step}"},
            decision={"activity": "email"},
            latency_ms=latency(rng, 200),
        )

        if rng.random() < (0.03 if victim else 0.006 if path == "nurture" else 0.002):
            rec.outcome(
                ms + rng.randint(HOUR_MS // 2, 30 * HOUR_MS),
                "marked_spam",
                lead.id,
                0,
                email_id,
                actor="prospect",
            )
            return
        reply_p = 0.06 if victim else 0.02 if path == "nurture" else 0.3 if path == "ae" else _REPLY[intent]
        if rng.random() < reply_p * 0.65 ** (step - 1):
            reply_ms = ms + int(rng.lognormvariate(math.log(3 * HOUR_MS), 0.9))
            rec.outcome(reply_ms, "replied", lead.id, 0, actor="prospect")
            if reply_ms < stop_ms:
                host = rng.choice(w.sdrs[(lead.region, lead.segment)]) if path == "nurture" else owner
                _meeting(w, lead, host, intent, reply_ms)
            return


def _meeting(w: World, lead: Lead, owner: str, intent: str, reply_ms: int) -> None:
    """A reply often becomes a meeting, a few meetings an opportunity, and a few of those close."""
    rng, rec = w.rng, w.rec
    if rng.random() >= _BOOK[intent]:
        return
    offset, rep_offset = REGION_UTC_OFFSET_MIN[lead.region], REP_LOG_OFFSET[lead.region]
    book_ms = reply_ms + rng.randint(3 * 60_000, 40 * 60_000)
    slot = business_time(rng, book_ms + rng.randint(20 * HOUR_MS, 5 * DAY_MS), offset)
    slot -= (slot + offset * 60_000) % (30 * 60_000)  # on the local half hour
    book_ms, _ = rec.attempt(
        book_ms,
        FOLLOWUP,
        "meeting.book",
        lead.id,
        "crm",
        inputs={"email": lead.email, "owner": owner},
        decision={"slot": rfc3339(slot, offset), "duration_min": 30, "with": owner},
        external=True,
        confidence=round(rng.uniform(0.85, 0.99), 3),
        latency_ms=latency(rng, 900),
    )
    rec.outcome(book_ms + rng.randint(30_000, 10 * 60_000), "meeting_booked", lead.id, 0, actor="prospect")
    if rng.random() < 0.12:
        cancelled = max(book_ms + HOUR_MS, slot - rng.randint(1, 20) * HOUR_MS)
        rec.outcome(cancelled, "meeting_cancelled", lead.id, 0, actor=rng.choice(("prospect", owner)))
        return
    accepted = business_time(rng, book_ms + rng.randint(10 * 60_000, 5 * HOUR_MS), offset)
    rec.outcome(accepted, "meeting_accepted", lead.id, rep_offset, actor=owner)
    if rng.random() < 0.45:
        created = business_time(rng, slot + rng.randint(HOUR_MS, 4 * DAY_MS), offset)
        rec.outcome(
            created, "opportunity_created", lead.id, rep_offset, actor=owner, to=w.new_opportunity_id()
        )
        if rng.random() < 0.5:
            closed = business_time(rng, created + rng.randint(7, 35) * DAY_MS, offset)
            kind = "closed_won" if rng.random() < 0.35 else "closed_lost"
            rec.outcome(closed, kind, lead.id, rep_offset, actor=owner, amount=_amount(rng, lead.segment))
