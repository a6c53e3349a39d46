"""The inbound pipeline for one lead: enrichment, qualification and routing, and the reps' corrections.

The router decides on ``deal_stage``: non-null means an open deal, so the lead belongs to that deal's
account executive. After the rename the field is gone, the read returns null, and open-deal leads
fall through to the ordinary rules (cold nurture when unqualified) without any error.
"""

from __future__ import annotations

import random

from agentwatch.app.demo.field_edits import EDITED_FIELDS, enricher_at, set_back, written_industry
from agentwatch.app.demo.followup import REP_LOG_OFFSET, business_time, follow_up
from agentwatch.app.demo.recorder import World, latency
from agentwatch.app.demo.traffic import HOUR_MS, PERSONAL_DOMAINS, REGION_UTC_OFFSET_MIN, Lead

QUALIFIER_OLD = ("qualifier-agent", "2.3.0", 120)
QUALIFIER_NEW = ("qualifier-agent", "2.4.0", 120)
ROUTER = ("lead-router", "0.9.4", -300)
AGENTS = ("enrichment-agent", "qualifier-agent", "lead-router", "followup-agent")
QUALIFY_THRESHOLD = 0.55

_SEGMENT_FIT = {"smb": 0.42, "mid-market": 0.55, "enterprise": 0.63}
_SOURCE_FIT = {"referral": 0.12, "form": 0.04, "web": 0.0, "webinar": -0.06}
_INDUSTRY_FIT = {"Software": 0.05, "Financial Services": 0.03, "Education": -0.06, "Retail": -0.03}


def _score(rng: random.Random, lead: Lead, new_model: bool) -> float:
    if lead.junk:
        return round(rng.uniform(0.01, 0.08), 3)
    raw = _SEGMENT_FIT[lead.segment] + _SOURCE_FIT[lead.source] + _INDUSTRY_FIT.get(lead.industry, 0.0)
    raw += rng.gauss(0.0, 0.16) + (0.025 if new_model else 0.0)  # 2.4.0 scores a little more generously
    return round(min(0.99, max(0.01, raw)), 3)


def run_lead(w: World, lead: Lead) -> None:
    """Simulate everything that happens to one lead, from creation to the end of the month."""
    rng, rec = w.rng, w.rec
    trace = f"{rng.getrandbits(128):032x}" if rng.random() < 0.8 else None  # not every path is traced
    deal = lead.deal

    t = lead.created_ms + rng.randint(6_000, 30_000)
    t, _ = rec.attempt(
        t,
        enricher_at(w, t),
        "lead.dedupe",
        lead.id,
        "crm",
        trace_id=trace,
        inputs={"email": lead.email, "company": lead.company},
        decision={"duplicate": False, "candidates": rng.choice((0, 0, 0, 1, 2))},
        latency_ms=latency(rng, 240),
    )

    # Enrichment, within about a minute. It reads deal_stage too (only to copy it along).
    t += rng.randint(4_000, 30_000)
    enricher = enricher_at(w, t)
    stage = deal.stage if deal is not None and t < w.rename_ms else None
    inputs = {
        "email": lead.email,
        "company": lead.company,
        "employees": lead.form_employees,
        "deal_stage": stage,
    }
    status, employees, industry = "new", lead.form_employees, None
    if lead.junk or lead.email.endswith(PERSONAL_DOMAINS):
        reason = "disposable_email_domain" if lead.junk else "personal_email_domain"
        rec.action(
            t,
            enricher,
            "lead.enrich",
            lead.id,
            "skipped",
            trace,
            inputs=inputs,
            decision={"reason": reason},
            latency_ms=latency(rng, 35),
        )
    else:
        before = {
            "status": "new",
            "industry": None,
            "employees": lead.form_employees,
            "region": None,
            "segment": None,
        }
        provider = rng.choice(("clearbit", "zoominfo"))  # the stream's next draw, as when the decision drew it
        after = {
            "status": "enriched",
            "industry": written_industry(enricher, provider, lead),
            "employees": lead.employees,
            "region": lead.region,
            "segment": lead.segment,
        }
        t, _ = rec.attempt(
            t,
            enricher,
            "lead.enrich",
            lead.id,
            "enrich",
            trace_id=trace,
            inputs=inputs,
            before=before,
            after=after,
            decision={"provider": provider, "match": "domain"},
            confidence=round(rng.uniform(0.72, 0.99), 3),
            latency_ms=latency(rng, 900),
        )
        written: dict[str, tuple[int, str]] = {}
        for name in ("industry", "employees", "region", "segment"):
            if before[name] != after[name]:
                t += rng.randint(150, 1_200)
                t, _ = rec.attempt(
                    t,
                    enricher,
                    "crm.update_field",
                    lead.id,
                    "crm",
                    trace_id=trace,
                    inputs={"field": name},
                    before={name: before[name]},
                    after={name: after[name]},
                    latency_ms=latency(rng, 180),
                )
                if name in EDITED_FIELDS:
                    written[name] = (t, str(after[name]))
        set_back(w, lead, written)
        # The qualifier reads the industry enrichment wrote (its score follows the true fit either way).
        status, employees, industry = "enriched", lead.employees, str(after["industry"])

    # Qualification, about two minutes in.
    t += rng.randint(45_000, 110_000)
    new_model = t >= w.upgrade_ms
    score = _score(rng, lead, new_model)
    qualified = score >= QUALIFY_THRESHOLD and not lead.junk
    intent = "high" if score >= 0.72 else "medium" if score >= 0.5 else "low"
    confidence = round(
        min(0.99, max(0.5, 0.55 + 0.9 * abs(score - QUALIFY_THRESHOLD) + rng.gauss(0, 0.03))), 3
    )
    q_status = "qualified" if qualified else "disqualified"
    rationale = (
        f"{lead.segment} {industry or 'unknown industry'}, {employees or 'unknown'} employees, "
        f"{lead.source} lead: {'fits' if qualified else 'below'} ICP threshold"
    )
    t, qualify_id = rec.attempt(
        t,
        QUALIFIER_NEW if new_model else QUALIFIER_OLD,
        "lead.qualify",
        lead.id,
        "llm",
        trace_id=trace,
        inputs={
            "email": lead.email,
            "company": lead.company,
            "employees": employees,
            "industry": industry,
            "segment": lead.segment,
            "region": lead.region,
            "source": lead.source,
        },
        before={"status": status},
        after={"status": q_status},
        decision={"qualified": qualified, "score": score, "intent": intent},
        confidence=confidence,
        rationale=rationale,
        latency_ms=latency(rng, 1_800, 0.35),
    )

    # Routing, about three minutes in.
    t += rng.randint(25_000, 80_000)
    stage = deal.stage if deal is not None and t < w.rename_ms else None
    r_inputs = {
        "region": lead.region,
        "segment": lead.segment,
        "employees": employees,
        "qualified": qualified,
        "intent": intent,
        "opportunity_id": deal.id if deal else None,
        "deal_stage": stage,
    }
    if lead.junk:
        rec.action(
            t,
            ROUTER,
            "lead.route",
            lead.id,
            "skipped",
            trace,
            inputs=r_inputs,
            decision={"reason": "junk_lead"},
            latency_ms=latency(rng, 40),
        )
        return
    if deal is not None and stage is not None:
        path, owner, sequence = "ae", deal.owner, None
        route_to, why = f"ae:{owner}", f"open opportunity {deal.id} in {stage}: account executive owns it"
    elif qualified:
        path, owner, sequence = "sdr", rng.choice(w.sdrs[(lead.region, lead.segment)]), "inbound-fast-track"
        route_to, why = f"sdr:{lead.region.lower()}-{lead.segment}", f"qualified, {intent} intent"
    else:
        path, owner, sequence = "nurture", "queue-nurture", "cold-nurture"
        route_to, why = "nurture", "not qualified and no open deal"
    t, _ = rec.attempt(
        t,
        ROUTER,
        "lead.route",
        lead.id,
        "crm",
        trace_id=trace,
        inputs=r_inputs,
        decision={"route_to": route_to, "owner": owner, "sequence": sequence},
        confidence=round(rng.uniform(0.9, 1.0), 3),
        rationale=why,
        latency_ms=latency(rng, 350),
    )
    t += rng.randint(400, 2_500)
    t, assign_id = rec.attempt(
        t,
        ROUTER,
        "lead.assign_owner",
        lead.id,
        "crm",
        trace_id=trace,
        inputs={"route_to": route_to},
        before={"owner": "queue-inbound", "status": q_status},
        after={"owner": owner, "status": "nurturing" if path == "nurture" else "routed"},
        decision={"owner": owner},
        latency_ms=latency(rng, 220),
    )
    if sequence is not None:
        t += rng.randint(300, 2_000)
        t, _ = rec.attempt(
            t,
            ROUTER,
            "sequence.enroll",
            lead.id,
            "crm",
            trace_id=trace,
            inputs={"route_to": route_to, "qualified": qualified},
            before={"sequence": None},
            after={"sequence": sequence},
            decision={"sequence": sequence, "step": 1},
            latency_ms=latency(rng, 300),
        )
        if sequence == "cold-nurture" and deal is not None and t >= w.rename_ms and rec.in_window(t):
            w.open_deal_nurture_after_rename += 1  # only reachable once deal_stage reads null

    stop_ms = _rep_corrections(w, lead, path, owner, stage, t, assign_id, qualify_id, qualified, score)
    follow_up(w, lead, path, owner, intent, t, stop_ms)


def _rep_corrections(
    w: World,
    lead: Lead,
    path: str,
    owner: str,
    stage: str | None,
    routed_ms: int,
    assign_id: str,
    qualify_id: str,
    qualified: bool,
    score: float,
) -> int:
    """Reps reassign and requalify some leads; returns when the nurture sequence is stopped, if ever."""
    rng, rec = w.rng, w.rec
    offset, local = REP_LOG_OFFSET[lead.region], REGION_UTC_OFFSET_MIN[lead.region]
    stop_ms = 1 << 62
    region_reps = [rep for (region, _), reps in w.sdrs.items() if region == lead.region for rep in reps]
    if lead.deal is not None and stage is None:
        # The rename's victims: the AE (or the SDR who got it) notices some of them, days later.
        p, new_owner = (0.3 if path == "nurture" else 0.25), lead.deal.owner
        actor = new_owner if path == "nurture" else owner
    elif path == "nurture":
        new_owner = rng.choice(region_reps)
        p, actor = 0.015, new_owner
    else:
        new_owner = rng.choice([rep for rep in (*region_reps, *w.aes[lead.region]) if rep != owner])
        p, actor = 0.08, rng.choice((new_owner, rng.choice(w.managers[lead.region])))
    if rng.random() < p:
        when = business_time(rng, routed_ms + rng.randint(HOUR_MS, 60 * HOUR_MS), local)
        rec.outcome(
            when,
            "owner_changed",
            lead.id,
            offset,
            assign_id,
            actor=actor,
            field="owner",
            from_=owner,
            to=new_owner,
        )
        if path == "nurture":
            stop_ms = when
    borderline = abs(score - QUALIFY_THRESHOLD) < 0.1
    if rng.random() < (0.08 if borderline else 0.02):
        when = business_time(rng, routed_ms + rng.randint(2 * HOUR_MS, 72 * HOUR_MS), local)
        actor = owner if path != "nurture" else rng.choice(w.managers[lead.region])
        rec.outcome(
            when,
            "requalified",
            lead.id,
            offset,
            qualify_id,
            actor=actor,
            field="qualified",
            from_=qualified,
            to=not qualified,
        )
    return stop_ms
