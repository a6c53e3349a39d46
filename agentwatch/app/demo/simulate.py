"""A month of inbound-lead AI agent traffic, with one silent fault and two visible ones, for ``agentwatch demo``.

Four agents work every inbound lead: enrichment, qualification, routing, follow-up. On ``rename_day``
RevOps renames the Lead field ``deal_stage`` to ``opportunity_stage``; the router keeps reading
``deal_stage``, gets null, and sends open-deal contacts to cold nurture instead of their account
executive. Nothing errors. Two faults people notice: on day 12 enrichment-agent 1.9.0 writes the wrong
industry for every lead ZoomInfo matched and reps set most of those back within hours, until 1.9.1
fixes it on day 13; on days 20 and 21 the managers who approve enterprise first-touch emails are at an
offsite, so the requests pile up unanswered until they are back on day 22. Around them is ordinary
noise: retried errors, approvals, opt-outs, reps setting back about 2% of the enriched industries and
segments, a short Salesforce API incident on day 8, a qualifier upgrade on day 10 and an unused field
added on day 5.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentwatch.app.demo.crm import schema_timeline, write_snapshots
from agentwatch.app.demo.pipeline import AGENTS, run_lead
from agentwatch.app.demo.recorder import Recorder, World
from agentwatch.app.demo.traffic import DAY_MS, HOUR_MS, arrivals, deal_pool, make_lead

WARMUP_DAYS = 28  # leads from before the window still get emails and outcomes in it: no cold start
QUALIFIER_UPGRADE = timedelta(days=10, hours=15)  # qualifier-agent 2.3.0 -> 2.4.0
CRM_INCIDENT = timedelta(days=8, hours=14)  # 30 minutes of Salesforce API errors
BAD_RELEASE = (timedelta(days=12, hours=9, minutes=30), timedelta(days=13, hours=15))  # enrichment-agent 1.9.0
MANAGER_OFFSITE = (timedelta(days=20), timedelta(days=22))  # Wednesday and Thursday: nobody approves

# Sales team per region: SDRs per segment, account executives, managers.
_TEAM_SIZES = {"NA": ((5, 4, 3), 8, 2), "EMEA": ((4, 3, 2), 6, 2), "APAC": ((3, 2, 2), 4, 1)}


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; the defaults are the demo's month."""

    start: datetime = datetime(2026, 10, 1, tzinfo=UTC)  # first day, UTC midnight
    days: int = 30
    leads_per_weekday: int = 400  # inbound leads on an average weekday; weekends far fewer
    rename_day: int = 17  # day index (0-based) on which RevOps renames deal_stage -> opportunity_stage
    seed: int = 7


@dataclass(frozen=True)
class SimulationFiles:
    """The files one simulation wrote, and what is in them."""

    actions: Path  # JSONL, one ActionEvent per line, sorted by ts
    outcomes: Path  # JSONL, one OutcomeEvent per line, sorted by ts
    schema_snapshots: list[Path]  # one JSON file per snapshot (native SchemaSnapshot format)
    rename_at: datetime  # exact UTC time of the first snapshot that shows the rename
    # counts: actions, outcomes, snapshots, leads, agents, nurture_enrolments_of_open_deals_after_rename,
    # fields_set_back (field_changed outcomes), approvals_held_by_offsite (requests answered after it)
    summary: dict


def _team() -> tuple[dict[tuple[str, str], list[str]], dict[str, list[str]], dict[str, list[str]]]:
    sdrs: dict[tuple[str, str], list[str]] = {}
    aes: dict[str, list[str]] = {}
    managers: dict[str, list[str]] = {}
    for region, (per_segment, n_aes, n_managers) in _TEAM_SIZES.items():
        code, number = region.lower(), 0
        for segment, count in zip(("smb", "mid-market", "enterprise"), per_segment, strict=True):
            sdrs[(region, segment)] = [f"sdr-{code}-{number + i:02d}" for i in range(1, count + 1)]
            number += count
        aes[region] = [f"ae-{code}-{i:02d}" for i in range(1, n_aes + 1)]
        managers[region] = [f"mgr-{code}-{i}" for i in range(1, n_managers + 1)]
    return sdrs, aes, managers


def _ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))


def _write_jsonl(path: Path, rows: list[tuple[int, int, str]]) -> int:
    rows.sort()  # by time; ties keep generation order (the sequence numbers are unique)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.writelines(f"{line}\n" for _, _, line in rows)
    return len(rows)


def simulate(directory: Path, config: SimulationConfig = SimulationConfig()) -> SimulationFiles:
    """Write the month's actions, outcomes and schema snapshots under ``directory``; same seed, same bytes."""
    if config.start.tzinfo is None:
        raise ValueError("SimulationConfig.start needs a timezone, e.g. datetime(2026, 10, 1, tzinfo=UTC)")
    start = config.start.astimezone(UTC)
    if start != start.replace(hour=0, minute=0, second=0, microsecond=0):
        raise ValueError(f"SimulationConfig.start must be a UTC midnight, got {start.isoformat()}")
    if config.days < 1 or not 0 <= config.rename_day < config.days:
        raise ValueError(f"need days >= 1 and 0 <= rename_day < days, got {config.days}, {config.rename_day}")
    if config.leads_per_weekday < 1:
        raise ValueError("leads_per_weekday must be at least 1")

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    start_ms = _ms(start)
    timeline = schema_timeline(start, config.days, config.rename_day)
    incident_ms = _ms(start + CRM_INCIDENT)
    rec = Recorder(rng, start_ms, start_ms + config.days * DAY_MS, (incident_ms, incident_ms + HOUR_MS // 2))
    sdrs, aes, managers = _team()
    world = World(
        rec,
        rng,
        _ms(timeline.rename_at),
        _ms(start + QUALIFIER_UPGRADE),
        sdrs,
        aes,
        managers,
        bad_release=(_ms(start + BAD_RELEASE[0]), _ms(start + BAD_RELEASE[1])),
        offsite=(_ms(start + MANAGER_OFFSITE[0]), _ms(start + MANAGER_OFFSITE[1])),
        edit_rng=random.Random(f"{config.seed}/field-edits"),
        offsite_rng=random.Random(f"{config.seed}/offsite"),
    )
    deals = deal_pool(rng, aes, per_region=max(12, config.leads_per_weekday // 8))

    first_ms = start_ms - WARMUP_DAYS * DAY_MS
    leads = 0
    for number, (created, region, source) in enumerate(
        arrivals(rng, first_ms, WARMUP_DAYS + config.days, config.leads_per_weekday), start=1
    ):
        run_lead(world, make_lead(rng, number, created, region, source, deals))
        leads += created >= start_ms

    actions = _write_jsonl(directory / "actions.jsonl", rec.actions)
    outcomes = _write_jsonl(directory / "outcomes.jsonl", rec.outcomes)
    snapshots = write_snapshots(directory / "schema_snapshots", timeline)
    summary = {
        "actions": actions,
        "outcomes": outcomes,
        "snapshots": len(snapshots),
        "leads": leads,  # created inside the window; older leads only appear in follow-ups
        "agents": len(AGENTS),
        "nurture_enrolments_of_open_deals_after_rename": world.open_deal_nurture_after_rename,
        "fields_set_back": world.fields_set_back,
        "approvals_held_by_offsite": world.approvals_held,
    }
    return SimulationFiles(
        actions=directory / "actions.jsonl",
        outcomes=directory / "outcomes.jsonl",
        schema_snapshots=snapshots,
        rename_at=timeline.rename_at,
        summary=summary,
    )
