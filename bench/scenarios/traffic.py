"""Realistic inbound-lead traffic: leads arrive, four agents act on each, in numpy and Polars.

Leads arrive per region on the region's local working day (hour-of-day curve, a Monday-morning burst,
quiet weekends, holidays at a quarter of normal, steady growth). Each lead then flows through
enrichment-agent (lead.enrich, crm.update_field), qualifier-agent (lead.qualify), lead-router
(lead.route, lead.assign_owner, sequence.enroll) and followup-agent (email.send, crm.log_activity).

Every random draw is made for every lead whatever the knobs say, so two runs with the same seed and
different knobs have identical history before the first knob's time: a scenario can reuse a store of
clean history and only add its own evaluation period.

An action frame has one row per event; a column named ``group.key`` (``inputs.region``) becomes the key
of a nested object when written, and ``_``-prefixed columns are the generator's bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from scenarios.outcomes import uniform
from scenarios.timeline import DAY, HOUR, MINUTE, SECOND, Timeline, us, weekday_of

REGIONS = ("NA", "EMEA", "APAC")
REGION_SHARE = (0.50, 0.35, 0.15)
UTC_OFFSET_H = (-5, 1, 8)  # the region's local time, for arrivals and for when reps react
SEGMENTS = ("smb", "mid-market", "enterprise")
SEGMENT_SHARE = (0.55, 0.30, 0.15)
SEGMENT_CODE = ("smb", "mm", "ent")
EMPLOYEES_MEDIAN = (40, 400, 4000)
INDUSTRIES = ("Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Education", "Logistics")
SOURCES = ("web", "form", "webinar", "referral")
SOURCE_SHARE = (0.45, 0.30, 0.15, 0.10)
DEAL_STAGES = ("prospecting", "proposal", "negotiation", "closed_won_pending")
FIRST_NAMES = ("Ana", "Ben", "Chen", "Dana", "Emil", "Fatima", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena")
QUALIFY_THRESHOLD = 0.55
VERSIONS = {"enrichment-agent": "2.4.1", "qualifier-agent": "3.2.0", "lead-router": "1.9.0", "followup-agent": "1.4.2"}
QUALIFIER_NEW_VERSION = "3.3.0"
SDRS_PER_TEAM, AES_PER_REGION = 4, 6

# Share of a local day's leads per hour: web forms never sleep, people fill them in office hours.
_HOURLY = np.array([0.15, 0.12, 0.1, 0.1, 0.12, 0.2, 0.35, 0.6, 1.2, 1.6, 1.7, 1.6,
                    1.2, 1.4, 1.5, 1.4, 1.2, 0.8, 0.5, 0.35, 0.3, 0.25, 0.2, 0.18])
_WEEKEND_HOURLY = np.where(_HOURLY > 0.5, 0.4, _HOURLY)
_MONDAY_HOURLY = _HOURLY * np.where((np.arange(24) >= 8) & (np.arange(24) < 11), 1.8, 1.0)  # weekend backlog
DAY_FACTOR = (1.1, 1.0, 1.0, 1.0, 1.0, 0.15, 0.10)  # Monday .. Sunday
HOLIDAY_FACTOR = 0.25
DUPLICATE_LEAD_OFFSET = 5_000_000  # lead numbers of the second copies of duplicated people


@dataclass(frozen=True)
class Knobs:
    """Lead-level faults, each from a time on (None: never). Event-level faults live in faults.py."""

    rename_at: datetime | None = None  # deal_stage reads null for every agent (renamed in the CRM)
    router_region_null_at: datetime | None = None  # lead-router reads region as null (its own bug)
    qualifier_bump_at: datetime | None = None  # qualifier 3.3.0: scores shift up
    qualifier_backlog_at: datetime | None = None  # qualify waits in a growing queue: SLA breaches rise
    route_typo_at: datetime | None = None  # a new rule routes some leads to "sdr:unassigned"
    route_typo_share: float = 0.12
    owner_changed_at: datetime | None = None  # a routing rule change: reps reassign many more leads
    owner_changed_rate: float = 0.30
    requalified_at: datetime | None = None  # reps overturn the qualifier far more often
    requalified_rate: float = 0.25
    calibration_at: datetime | None = None  # high-confidence qualifier decisions turn out wrong
    calibration_rate: float = 0.40
    calibration_confidence: float = 0.9
    approvals_stall_at: datetime | None = None  # marketing-ops stops answering approval requests
    approvals_slow_at: datetime | None = None  # every approval takes 2 to 6 hours more
    rubber_stamp_at: datetime | None = None  # marketing-ops approves within 1 to 3 seconds
    low_confidence_at: datetime | None = None  # lead-router 2.1 routes a fifth of leads below its confidence floor
    wrong_industry_at: datetime | None = None  # enrichment-agent writes wrong industries: reps set 30% back
    revert_rate: float = 0.30
    duplicate_people_at: datetime | None = None  # the dedup step breaks: 10% of people arrive as two leads
    duplicate_share: float = 0.10
    sweep_stops_at: datetime | None = None  # the nightly hygiene sweep stops running


def _text(values: np.ndarray) -> pl.Series:
    """An object array of strings and None as a Polars text column."""
    return pl.Series(values.tolist(), dtype=pl.String)


def _after(ts: np.ndarray, at: datetime | None) -> np.ndarray:
    return np.zeros(len(ts), dtype=bool) if at is None else ts >= us(at)


def arrivals(rng: np.random.Generator, timeline: Timeline) -> tuple[np.ndarray, np.ndarray]:
    """(created time in us, region index) of every lead, sorted by time."""
    start, end, eval_start = us(timeline.start), us(timeline.end), us(timeline.eval_start)
    holidays = {(h.toordinal() - 719163) for h in timeline.holidays}  # days since the epoch
    times, regions = [], []
    for region, (share, offset) in enumerate(zip(REGION_SHARE, UTC_OFFSET_H, strict=True)):
        for day in range((start + offset * HOUR) // DAY - 1, (end + offset * HOUR) // DAY + 1):
            midnight = day * DAY - offset * HOUR  # local midnight, in UTC
            weekday = int(weekday_of(day))
            factor = HOLIDAY_FACTOR if day in holidays else DAY_FACTOR[weekday]
            growth = (1 + timeline.growth_per_day) ** ((midnight - eval_start) / DAY)
            count = rng.poisson(timeline.leads_per_day * share * factor * growth)
            hourly = _WEEKEND_HOURLY if weekday >= 5 else _MONDAY_HOURLY if weekday == 0 else _HOURLY
            slots = np.repeat(hourly / hourly.sum() / 12, 12)  # 5-minute slots
            slot = rng.choice(288, count, p=slots / slots.sum())
            times.append(midnight + slot * 5 * MINUTE + rng.integers(0, 5 * MINUTE, count))
            regions.append(np.full(count, region))
    created, region = np.concatenate(times), np.concatenate(regions)
    keep = (created >= start) & (created < end)
    order = np.argsort(created[keep], kind="stable")
    return created[keep][order], region[keep][order]


def leads(rng: np.random.Generator, timeline: Timeline, knobs: Knobs) -> pl.DataFrame:
    """One row per lead: who it is, what each agent decides, and when each step happens."""
    created, region = arrivals(rng, timeline)
    n = len(created)
    seg = rng.choice(3, n, p=SEGMENT_SHARE)
    draws = {
        "employees": np.round(np.exp(rng.normal(np.log(np.array(EMPLOYEES_MEDIAN)[seg]), 0.6))).astype(np.int64),
        "industry": rng.integers(0, len(INDUSTRIES), n),
        "source": rng.choice(len(SOURCES), n, p=SOURCE_SHARE),
        "first": rng.integers(0, len(FIRST_NAMES), n),
        "has_opp": rng.random(n) < 0.10,
        "stage": rng.integers(0, len(DEAL_STAGES), n),
        "junk": rng.random(n) < 0.03,
        "score_old": rng.beta(2.5, 3.0, n),
        "score_new": rng.beta(3.4, 2.3, n),
        "conf_noise": rng.normal(0, 0.05, n),
        "sdr": rng.integers(1, SDRS_PER_TEAM + 1, n),
        "ae": rng.integers(1, AES_PER_REGION + 1, n),
        "typo": rng.random(n),
        "backlog": rng.random(n),
        "route_conf": rng.uniform(0.86, 1.0, n),
        "enrich_conf": rng.uniform(0.72, 0.99, n),
        "provider": rng.integers(0, 2, n),
        "upd_err": rng.random((n, 3)) < 0.005,  # CRM writes time out now and then
        "log_err": rng.random(n) < 0.002,
    }
    d = {  # delays in us
        "enrich": rng.uniform(5, 40, n) * SECOND,
        "upd": rng.uniform(0.2, 1.5, (n, 3)).cumsum(axis=1) * SECOND,
        "qual": rng.uniform(45, 110, n) * SECOND,
        "route": rng.uniform(25, 80, n) * SECOND,
        "assign": rng.uniform(0.4, 2.5, n) * SECOND,
        "enroll": rng.uniform(0.3, 2.0, n) * SECOND,
        "email_sdr": rng.uniform(1, 15, n) * MINUTE,
        "email_nurture": rng.uniform(30, 240, n) * MINUTE,
        "log": rng.uniform(1, 6, n) * SECOND,
        "approve": rng.uniform(0.5, 10, n) * MINUTE,
    }
    lat = {name: np.round(rng.lognormal(np.log(m), 0.45, n), 1)
           for name, m in (("enrich", 900), ("upd", 180), ("qual", 1800), ("route", 350), ("assign", 220),
                           ("enroll", 300), ("email", 600), ("log", 150))}
    # Drawn after the others, so the traffic the earlier draws make stays the same as before they were added.
    d |= {"review": rng.uniform(1, 20, n) * MINUTE,  # an approver reads the email before approving it
          "stamp": rng.uniform(1, 3, n) * SECOND, "slow": rng.uniform(2, 6, n) * HOUR}
    draws["low_conf"] = rng.uniform(0.5, 0.78, n)
    d = {k: v.astype(np.int64) for k, v in d.items()}

    t_enrich = created + d["enrich"]
    t_upd = t_enrich[:, None] + (lat["enrich"] * 1000).astype(np.int64)[:, None] + d["upd"]
    t_qual = t_upd[:, 2] + d["qual"]
    if knobs.qualifier_backlog_at is not None:  # a queue that grows for three hours: up to 45 min late
        since = np.clip((t_qual - us(knobs.qualifier_backlog_at)) / (3 * HOUR), 0, 1)
        t_qual = t_qual + (since * draws["backlog"] * 45 * MINUTE).astype(np.int64)
    t_route = t_qual + d["route"]
    t_assign = t_route + d["assign"]
    t_enroll = t_assign + d["enroll"]

    junk = draws["junk"]
    stage = np.array(DEAL_STAGES, dtype=object)[draws["stage"]]
    stage = np.where(draws["has_opp"], stage, None)
    stage_enricher = np.where(_after(t_enrich, knobs.rename_at), None, stage)
    stage_router = np.where(_after(t_route, knobs.rename_at), None, stage)

    bump = np.array([0.0, 0.06, 0.12])[seg]
    new_model = _after(t_qual, knobs.qualifier_bump_at)
    score = np.where(new_model, draws["score_new"], draws["score_old"]) + bump
    score = np.round(np.clip(np.where(junk, score * 0.3, score), 0.01, 0.99), 3)
    qualified = (score >= QUALIFY_THRESHOLD) & ~junk
    confidence = np.round(np.clip(0.6 + 1.2 * np.abs(score - QUALIFY_THRESHOLD) + draws["conf_noise"], 0.5, 0.99), 3)

    region_name = np.array(REGIONS, dtype=object)[region]
    router_region = np.where(_after(t_route, knobs.router_region_null_at), None, region_name)
    path = np.where(stage_router != None, "ae", np.where(qualified, "sdr", "nurture"))  # noqa: E711 (object array)
    t_email = t_assign + np.where(path == "sdr", d["email_sdr"], d["email_nurture"])
    # The agent asks for approval once the lead is enrolled, a person reviews, the agent sends a little after the
    # approval.
    t_request = np.maximum(t_email - d["approve"] - d["review"], t_enroll + SECOND)
    marketing = path != "sdr"  # marketing-ops approves nurture emails; an SDR approves its own
    usual_review = t_email - d["approve"] - t_request
    review = np.where(marketing & _after(t_request, knobs.rubber_stamp_at), d["stamp"], usual_review)
    review = review + np.where(_after(t_request, knobs.approvals_slow_at), d["slow"], 0)
    t_approve = t_request + review
    t_email = t_approve + d["approve"]
    stalled = marketing & _after(t_request, knobs.approvals_stall_at)  # never answered: never sent
    route_conf = np.where(_after(t_route, knobs.low_confidence_at) & (draws["typo"] > 0.8), draws["low_conf"],
                          draws["route_conf"])
    wrong_industry = _after(t_upd[:, 0], knobs.wrong_industry_at)

    p_owner = np.where(path == "nurture", 0.02, 0.05)
    p_owner = np.where(_after(t_assign, knobs.owner_changed_at), knobs.owner_changed_rate, p_owner)
    borderline = np.abs(score - QUALIFY_THRESHOLD) < 0.1
    p_requal = np.where(borderline, 0.06, 0.015)
    p_requal = np.where(_after(t_qual, knobs.requalified_at), knobs.requalified_rate, p_requal)
    wrong = _after(t_qual, knobs.calibration_at) & (confidence >= knobs.calibration_confidence)
    p_requal = np.where(wrong, np.maximum(p_requal, knobs.calibration_rate), p_requal)

    # About one lead in 300 is a person who already came in a day or so before (same name and email): real CRMs
    # have a steady trickle of these, so only a jump in them is a broken dedup step.
    lead = np.arange(n)
    person = np.where((uniform(lead, 31) < 0.003) & (lead >= 2000), lead - 2000, lead)
    frame = pl.DataFrame({
        "_lead": lead, "_person": person, "_region": region, "_offset_h": np.array(UTC_OFFSET_H)[region], "_seg": seg,
        "region": region_name.astype(str), "router_region": _text(router_region), "segment": np.array(SEGMENTS)[seg],
        "seg_code": np.array(SEGMENT_CODE)[seg], "employees": draws["employees"],
        "industry": np.array(INDUSTRIES)[draws["industry"]], "source": np.array(SOURCES)[draws["source"]],
        "first_name": np.array(FIRST_NAMES)[draws["first"][person]], "junk": junk, "has_opp": draws["has_opp"],
        "stage_enricher": _text(stage_enricher), "stage_router": _text(stage_router),
        "score": score, "qualified": qualified, "confidence": confidence,
        "new_model": new_model, "path": path, "sdr": draws["sdr"], "ae": draws["ae"],
        "typo": draws["typo"] < knobs.route_typo_share, "typo_on": _after(t_route, knobs.route_typo_at),
        "route_conf": np.round(route_conf, 3), "enrich_conf": np.round(draws["enrich_conf"], 3),
        "provider": np.array(["clearbit", "zoominfo"])[draws["provider"]],
        "upd_err_0": draws["upd_err"][:, 0], "upd_err_1": draws["upd_err"][:, 1], "upd_err_2": draws["upd_err"][:, 2],
        "log_err": draws["log_err"], "p_owner": p_owner, "p_requal": p_requal,
        "t_enrich": t_enrich, "t_upd_0": t_upd[:, 0], "t_upd_1": t_upd[:, 1], "t_upd_2": t_upd[:, 2],
        "t_qual": t_qual, "t_route": t_route, "t_assign": t_assign, "t_enroll": t_enroll,
        "t_email": t_email, "t_log": t_email + d["log"], "t_approve": t_approve, "t_request": t_request,
        "stalled": stalled, "wrong_industry": wrong_industry,
        "p_revert": np.where(wrong_industry, knobs.revert_rate, 0.02),
        **{f"lat_{k}": v for k, v in lat.items()},
    }, strict=False)
    frame = _duplicate_people(frame.filter(pl.Series(_at_work(created, region, timeline))), knobs)
    lead_no = pl.col("_lead").cast(pl.String).str.zfill(7)
    person_no = pl.col("_person").cast(pl.String).str.zfill(7)
    return frame.with_columns(
        pl.concat_str(pl.lit("L"), lead_no).alias("lead_id"),
        pl.concat_str(pl.lit("t"), lead_no).alias("trace_id"),
        pl.concat_str(pl.lit("acme-"), person_no).alias("company"),
        pl.concat_str(pl.col("first_name").str.to_lowercase(), pl.lit("."), person_no, pl.lit("@acme-"),
                      person_no, pl.lit(".com")).alias("email"),
        pl.when(pl.col("has_opp")).then(pl.concat_str(pl.lit("006"), lead_no)).alias("opportunity_id"),
        pl.col("^t_.*$").cast(pl.Datetime("us", "UTC")),
    ).with_columns(_routing())


def _at_work(created: np.ndarray, region: np.ndarray, timeline: Timeline) -> np.ndarray:
    """False for the leads a regional holiday keeps away (all but HOLIDAY_FACTOR of its region's leads that local
    day), chosen by a hash after every draw was made: the other leads' draws stay the same."""
    kept = np.ones(created.size, dtype=bool)
    for holiday, name in timeline.regional_holidays:
        offset = UTC_OFFSET_H[REGIONS.index(name)] * HOUR
        local_day = (created + offset) // DAY
        off = (region == REGIONS.index(name)) & (local_day == holiday.toordinal() - 719163)
        kept &= ~off | (uniform(np.arange(created.size), 34) < HOLIDAY_FACTOR)
    return kept


def _duplicate_people(frame: pl.DataFrame, knobs: Knobs) -> pl.DataFrame:
    """With the dedup step broken, a share of the people created from then on arrive a second time as a new lead,
    2 to 20 minutes later, and every agent works both (times are still microseconds here)."""
    if knobs.duplicate_people_at is None:
        return frame
    again = frame.filter(pl.Series(uniform(frame["_lead"].to_numpy(), 32) < knobs.duplicate_share)
                         & (pl.col("t_enrich") >= us(knobs.duplicate_people_at)))
    lag = pl.Series(((2 + 18 * uniform(again["_lead"].to_numpy(), 33)) * MINUTE).astype(np.int64))
    copies = again.with_columns(*[pl.col(c) + lag for c in frame.columns if c.startswith("t_")],
                                (pl.col("_lead") + DUPLICATE_LEAD_OFFSET).alias("_lead"))
    return pl.concat([frame, copies])


def _wrong_industry() -> pl.Expr:
    """The industry enrichment-agent writes: the next one in the list once its bad version is live."""
    shifted = pl.col("industry").replace_strict(INDUSTRIES, [*INDUSTRIES[1:], INDUSTRIES[0]])
    return pl.when(pl.col("wrong_industry")).then(shifted).otherwise(pl.col("industry"))


def scheduled_jobs(seed: int, timeline: Timeline, knobs: Knobs) -> dict[str, pl.DataFrame]:
    """Two jobs that are not streams: hygiene-agent's nightly sweep (02:00 UTC) and import-agent's weekly list import
    (Sundays 16:00 UTC), each run starting 0 to 3 hours late at random. Their own random stream: the leads' draws
    do not move."""
    rng = np.random.default_rng([seed, 99])
    frames = {}
    jobs = (("sweep", "hygiene-agent", "account.hygiene_check", "account", 2 * HOUR, DAY, 64, 40),
            ("import", "import-agent", "list.import", "list", 6 * DAY + 16 * HOUR, 7 * DAY, 120, 60))
    first_monday = us(timeline.eval_start) - ((us(timeline.eval_start) - us(timeline.start)) // (7 * DAY) + 1) * 7 * DAY
    for key, agent, action, record, offset, every, size, minutes in jobs:
        rows: dict[str, list] = {"event_id": [], "ts": []}
        for k, run_start in enumerate(range(first_monday + offset, us(timeline.end), every)):
            late, count = int(rng.uniform(0, 3 * HOUR)), int(rng.poisson(size))
            spread = np.sort(rng.uniform(0, minutes * MINUTE, count)).astype(np.int64)
            begins = run_start + late
            if begins < us(timeline.start) or (key == "sweep" and _after(np.array([begins]), knobs.sweep_stops_at)[0]):
                continue
            rows["event_id"] += [f"{key}-{k}-{i}" for i in range(count)]
            rows["ts"] += list(begins + spread)
        frames[key] = pl.DataFrame(rows).with_columns(
            pl.col("ts").cast(pl.Datetime("us", "UTC")), pl.lit(agent).alias("agent_id"),
            pl.lit("1.0.0").alias("agent_version"), pl.lit(action).alias("action"),
            pl.lit(record).alias("resource.type"),
            pl.concat_str(pl.lit(record + "-"), pl.col("event_id")).alias("resource.id"), pl.lit("ok").alias("status"),
            pl.lit(key).alias("inputs.job"))
    return frames


def _routing() -> list[pl.Expr]:
    """route_to, owner and sequence from the path the router chose."""
    reg = pl.col("region").str.to_lowercase()
    route_region = pl.col("router_region").fill_null("NA").str.to_lowercase()  # the router's default territory
    path = pl.col("path")
    route_to = (pl.when(path == "ae").then(pl.concat_str(pl.lit("ae:"), reg))
                .when(path == "sdr").then(pl.concat_str(pl.lit("sdr:"), route_region, pl.lit("-"), pl.col("segment")))
                .otherwise(pl.lit("nurture")))
    owner = (pl.when(path == "ae").then(pl.format("ae-{}-0{}", reg, pl.col("ae")))
             .when(path == "sdr").then(pl.format("sdr-{}-{}-{}", route_region, pl.col("seg_code"), pl.col("sdr")))
             .otherwise(pl.lit("queue-nurture")))
    return [
        pl.when(pl.col("typo") & pl.col("typo_on") & (path == "sdr")).then(pl.lit("sdr:unassigned"))
        .otherwise(route_to).alias("route_to"),
        owner.alias("owner"),
        pl.when(path == "sdr").then(pl.lit("inbound-fast-track"))
        .when(path == "nurture").then(pl.lit("cold-nurture")).alias("sequence"),
        pl.when(pl.col("qualified")).then(pl.lit("qualified")).otherwise(pl.lit("disqualified")).alias("q_status"),
        pl.when(pl.col("score") >= 0.72).then(pl.lit("high")).when(pl.col("score") >= 0.5).then(pl.lit("medium"))
        .otherwise(pl.lit("low")).alias("intent"),
    ]


def _event(prefix: str, agent: str, action: str, ts: str, status: pl.Expr | str = "ok",
           latency: str | None = None, version: pl.Expr | None = None) -> list[pl.Expr]:
    """The columns every action event has."""
    return [
        pl.concat_str(pl.lit(prefix + "-"), pl.col("lead_id").str.slice(1)).alias("event_id"),
        pl.col(ts).alias("ts"),
        pl.lit(agent).alias("agent_id"),
        (version if version is not None else pl.lit(VERSIONS[agent])).alias("agent_version"),
        pl.lit(action).alias("action"),
        pl.lit("lead").alias("resource.type"),
        pl.col("lead_id").alias("resource.id"),
        (pl.lit(status) if isinstance(status, str) else status).alias("status"),
        pl.col("trace_id"),
        *([pl.col(latency).alias("latency_ms")] if latency else []),
        pl.col("_lead"), pl.col("_offset_h"), pl.col("lead_id").alias("_lead_id"),
    ]


def actions(lead_frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Every agent's action events, one frame per kind of event (each kind has its own nested keys)."""
    L = lead_frame  # short: it is used in every line below
    ok, junk = L.filter(~pl.col("junk")), L.filter(pl.col("junk"))
    frames: dict[str, pl.DataFrame] = {}
    enrich_inputs = [pl.col("email").alias("inputs.email"), pl.col("company").alias("inputs.company"),
                     pl.col("employees").alias("inputs.employees"), pl.col("stage_enricher").alias("inputs.deal_stage")]
    frames["enrich"] = ok.select(
        *_event("enr", "enrichment-agent", "lead.enrich", "t_enrich", latency="lat_enrich"), *enrich_inputs,
        pl.lit("new").alias("before.status"), pl.lit(None, pl.String).alias("before.industry"),
        pl.lit("enriched").alias("after.status"), pl.col("industry").alias("after.industry"),
        pl.col("region").alias("after.region"), pl.col("segment").alias("after.segment"),
        pl.col("provider").alias("decision.provider"), pl.lit("domain").alias("decision.match"),
        pl.col("enrich_conf").alias("confidence"))
    frames["enrich_skipped"] = junk.select(
        *_event("enr", "enrichment-agent", "lead.enrich", "t_enrich", "skipped", "lat_enrich"), *enrich_inputs,
        pl.lit("disposable_email_domain").alias("decision.reason"))
    for k, name in enumerate(("industry", "region", "segment")):
        frames[f"update_{name}"] = ok.select(
            *_event(f"upd{k}", "enrichment-agent", "crm.update_field", f"t_upd_{k}",
                    pl.when(pl.col(f"upd_err_{k}")).then(pl.lit("error")).otherwise(pl.lit("ok")), "lat_upd"),
            pl.lit(name).alias("inputs.field"), pl.lit(None, pl.String).alias(f"before.{name}"),
            (_wrong_industry() if name == "industry" else pl.col(name)).alias(f"after.{name}"),
            pl.col("p_revert").alias("_p_reverted"),
            pl.when(pl.col(f"upd_err_{k}")).then(pl.lit("timeout")).alias("error.code"),
            pl.when(pl.col(f"upd_err_{k}")).then(pl.lit("CRM API request timed out after 30 s")).alias("error.message"))
    enriched = pl.when(pl.col("junk")).then(pl.lit(None, pl.String))
    frames["qualify"] = L.select(
        *_event("qua", "qualifier-agent", "lead.qualify", "t_qual", latency="lat_qual",
                version=pl.when(pl.col("new_model")).then(pl.lit(QUALIFIER_NEW_VERSION))
                .otherwise(pl.lit(VERSIONS["qualifier-agent"]))),
        pl.col("email").alias("inputs.email"), pl.col("company").alias("inputs.company"),
        pl.col("employees").alias("inputs.employees"), enriched.otherwise(pl.col("industry")).alias("inputs.industry"),
        enriched.otherwise(pl.col("segment")).alias("inputs.segment"),
        enriched.otherwise(pl.col("region")).alias("inputs.region"), pl.col("source").alias("inputs.source"),
        pl.when(pl.col("junk")).then(pl.lit("new")).otherwise(pl.lit("enriched")).alias("before.status"),
        pl.col("q_status").alias("after.status"),
        pl.col("qualified").alias("decision.qualified"), pl.col("score").alias("decision.score"),
        pl.col("intent").alias("decision.intent"), pl.col("confidence"),
        pl.format("{} {}, {} employees, {} lead", pl.col("segment"), pl.col("industry"), pl.col("employees"),
                  pl.col("source")).alias("rationale"),
        pl.col("p_requal").alias("_p_requalified"), pl.col("qualified").alias("_qualified"))
    route_inputs = [
        pl.col("router_region").alias("inputs.region"), pl.col("segment").alias("inputs.segment"),
        pl.col("employees").alias("inputs.employees"), pl.col("stage_router").alias("inputs.deal_stage"),
        pl.col("opportunity_id").alias("inputs.opportunity_id"), pl.col("qualified").alias("inputs.qualified"),
        pl.col("intent").alias("inputs.intent")]
    frames["route"] = ok.select(
        *_event("rte", "lead-router", "lead.route", "t_route", latency="lat_route"), *route_inputs,
        pl.col("route_to").alias("decision.route_to"), pl.col("owner").alias("decision.owner"),
        pl.col("sequence").alias("decision.sequence"), pl.col("route_conf").alias("confidence"))
    frames["route_skipped"] = junk.select(
        *_event("rte", "lead-router", "lead.route", "t_route", "skipped", "lat_route"),
        pl.lit(None, pl.String).alias("inputs.region"), *route_inputs[1:],  # never enriched: region unknown
        pl.lit("junk_lead").alias("decision.reason"))
    frames["assign"] = ok.select(
        *_event("asg", "lead-router", "lead.assign_owner", "t_assign", latency="lat_assign"),
        pl.col("route_to").alias("inputs.route_to"),
        pl.lit("queue-inbound").alias("before.owner"), pl.col("q_status").alias("before.status"),
        pl.col("owner").alias("after.owner"),
        pl.when(pl.col("path") == "nurture").then(pl.lit("nurturing")).otherwise(pl.lit("routed"))
        .alias("after.status"),
        pl.col("owner").alias("decision.owner"),
        pl.col("p_owner").alias("_p_owner_changed"), pl.col("path").alias("_path"), pl.col("region").alias("_region"),
        pl.col("seg_code").alias("_seg_code"), pl.col("sdr").alias("_sdr"))
    enrolled = ok.filter(pl.col("sequence").is_not_null())
    frames["enroll"] = enrolled.select(
        *_event("seq", "lead-router", "sequence.enroll", "t_enroll", latency="lat_enroll"),
        pl.col("route_to").alias("inputs.route_to"), pl.col("qualified").alias("inputs.qualified"),
        pl.lit(None, pl.String).alias("before.sequence"), pl.col("sequence").alias("after.sequence"),
        pl.col("sequence").alias("decision.sequence"), pl.lit(1).alias("decision.step"))
    frames["approval_request"] = enrolled.select(
        *_event("apr", "followup-agent", "email.send", "t_request", "pending_approval"),
        pl.col("email").alias("inputs.email"), pl.col("sequence").alias("inputs.sequence"),
        pl.concat_str(pl.col("sequence"), pl.lit("-1")).alias("decision.template"), pl.lit(True).alias("external"),
        pl.lit("approval_required").alias("decision.reason"))
    enrolled = enrolled.filter(~pl.col("stalled"))  # a request nobody answers is never sent
    frames["email"] = enrolled.select(
        *_event("eml", "followup-agent", "email.send", "t_email", latency="lat_email"),
        pl.col("email").alias("inputs.email"), pl.col("first_name").alias("inputs.first_name"),
        pl.col("company").alias("inputs.company"), pl.col("sequence").alias("inputs.sequence"),
        pl.lit(1).alias("inputs.step"),
        pl.concat_str(pl.col("sequence"), pl.lit("-1")).alias("decision.template"),
        pl.col("owner").alias("decision.sender"), pl.lit(True).alias("external"),
        pl.when(pl.col("path") == "sdr").then(pl.col("owner")).otherwise(pl.lit("marketing-ops"))
        .alias("approval.approved_by"),
        pl.col("t_approve").alias("approval.approved_at"))
    frames["log"] = enrolled.select(
        *_event("log", "followup-agent", "crm.log_activity", "t_log",
                pl.when(pl.col("log_err")).then(pl.lit("error")).otherwise(pl.lit("ok")), "lat_log"),
        pl.lit("email").alias("inputs.activity_type"),
        pl.concat_str(pl.col("sequence"), pl.lit("-1")).alias("inputs.template"),
        pl.lit("email_sent").alias("after.last_activity"),
        pl.when(pl.col("log_err")).then(pl.lit("timeout")).alias("error.code"),
        pl.when(pl.col("log_err")).then(pl.lit("CRM API request timed out after 30 s")).alias("error.message"))
    return frames
