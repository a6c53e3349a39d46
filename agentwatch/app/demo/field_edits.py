"""The enrichment agent's releases, and reps setting back the industry and segment it wrote.

Reps now and then change an enriched industry or segment to what they know it is (a ``field_changed``
outcome, within a few office hours of the write): the steady baseline. enrichment-agent 1.9.0 reads
ZoomInfo's industry code one row off its table, so every lead ZoomInfo matched gets the next industry of
the list; reps set most of those back the same day, until 1.9.1 fixes the mapping.
"""

from __future__ import annotations

from agentwatch.app.demo.followup import REP_LOG_OFFSET, business_time
from agentwatch.app.demo.recorder import World
from agentwatch.app.demo.traffic import HOUR_MS, INDUSTRIES, REGION_UTC_OFFSET_MIN, SEGMENTS, Lead

ENRICHER = ("enrichment-agent", "1.8.2", 0)
ENRICHER_BAD = ("enrichment-agent", "1.9.0", 0)  # the off-by-one industry mapping
ENRICHER_FIXED = ("enrichment-agent", "1.9.1", 0)
# Per written field, the chance a rep sets it back when the agent wrote the right value: they know the
# account better, or file it differently. About 2% of these writes, a baseline the check learns.
BASELINE_SET_BACK = {"industry": 0.025, "segment": 0.015}
WRONG_SET_BACK = 0.6  # a wrong industry is set back more often than not: the rep working the lead sees it
EDITED_FIELDS = tuple(BASELINE_SET_BACK)

_INDUSTRY_NAMES = tuple(name for name, _ in INDUSTRIES)
_SEGMENT_NAMES = tuple(name for name, *_ in SEGMENTS)


def enricher_at(w: World, ms: int) -> tuple[str, str, int]:
    """The enrichment agent's release running at ``ms``."""
    if ms < w.bad_release[0]:
        return ENRICHER
    return ENRICHER_BAD if ms < w.bad_release[1] else ENRICHER_FIXED


def written_industry(agent: tuple[str, str, int], provider: str, lead: Lead) -> str:
    """The industry the release writes: 1.9.0 takes the next row of the table for ZoomInfo's matches."""
    if agent == ENRICHER_BAD and provider == "zoominfo":
        return _INDUSTRY_NAMES[(_INDUSTRY_NAMES.index(lead.industry) + 1) % len(_INDUSTRY_NAMES)]
    return lead.industry


def set_back(w: World, lead: Lead, written: dict[str, tuple[int, str]]) -> None:
    """Reps changing fields enrichment wrote ({field: (ms of the write, value written)}), within office hours."""
    rng, rec = w.edit_rng, w.rec
    for field, (written_ms, value) in written.items():
        wrong = field == "industry" and value != lead.industry
        if rng.random() >= (WRONG_SET_BACK if wrong else BASELINE_SET_BACK[field]):
            continue
        if wrong:
            to = lead.industry
        elif field == "industry":
            to = rng.choice([name for name in _INDUSTRY_NAMES if name != value])
        else:  # a neighbouring segment: the head count enrichment found is off by a little
            at = _SEGMENT_NAMES.index(value)
            to = rng.choice([_SEGMENT_NAMES[i] for i in (at - 1, at + 1) if 0 <= i < len(_SEGMENT_NAMES)])
        noticed = written_ms + rng.randint(20 * 60_000, 4 * HOUR_MS)
        when = business_time(rng, noticed, REGION_UTC_OFFSET_MIN[lead.region])
        rec.outcome(
            when,
            "field_changed",
            lead.id,
            REP_LOG_OFFSET[lead.region],
            actor=rng.choice(w.sdrs[(lead.region, lead.segment)]),
            field=field,
            from_=value,
            to=to,
        )
        w.fields_set_back += rec.in_window(when)
