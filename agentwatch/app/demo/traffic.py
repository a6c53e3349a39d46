"""Who the inbound leads are and when they arrive.

Arrivals follow the local business day of each lead's region (fixed UTC offsets, so the output
does not depend on the machine's tz database), fewer on weekends, a Monday-morning burst of
weekend backlog, and a webinar-list import every Wednesday afternoon.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# Where leads come from, and the (fixed) UTC offset of their business day, in minutes.
REGION_UTC_OFFSET_MIN = {"NA": -300, "EMEA": 120, "APAC": 480}
REGION_SHARE = {"NA": 0.50, "EMEA": 0.32, "APAC": 0.18}

# Monday..Sunday, relative to an average weekday; Wednesday also gets the webinar import.
WEEKDAY_FACTOR = (1.15, 1.05, 0.85, 0.95, 0.85, 0.16, 0.13)
WEBINAR_SHARE = 0.18  # of an average weekday's volume, imported on Wednesdays at 16:00 UTC

_WEEKDAY_HOURS = (
    0.15,
    0.1,
    0.08,
    0.08,
    0.1,
    0.2,
    0.4,
    0.9,
    2.0,
    3.0,
    3.3,
    3.1,
    2.4,
    2.8,
    3.0,
    2.8,
    2.4,
    1.8,
    1.2,
    0.8,
    0.6,
    0.5,
    0.35,
    0.22,
)
_WEEKEND_HOURS = (
    0.3,
    0.2,
    0.15,
    0.1,
    0.1,
    0.15,
    0.3,
    0.5,
    0.8,
    1.1,
    1.3,
    1.4,
    1.4,
    1.3,
    1.2,
    1.2,
    1.1,
    1.0,
    0.9,
    0.8,
    0.7,
    0.6,
    0.5,
    0.4,
)
# Monday 7-11 local: forms filled in over the weekend land when people reopen laptops.
_MONDAY_HOURS = tuple(w * (1.8 if 7 <= h <= 11 else 1.0) for h, w in enumerate(_WEEKDAY_HOURS))
_CUM = {
    name: list(accumulate(w))
    for name, w in (("weekday", _WEEKDAY_HOURS), ("weekend", _WEEKEND_HOURS), ("monday", _MONDAY_HOURS))
}

SEGMENTS = (("smb", 0.60, 5, 199), ("mid-market", 0.28, 200, 1999), ("enterprise", 0.12, 2000, 60000))
ORGANIC_SOURCES = (("web", 0.42), ("form", 0.36), ("referral", 0.14), ("webinar", 0.08))
DEAL_LINK_RATE = {"smb": 0.09, "mid-market": 0.24, "enterprise": 0.38}
DEAL_STAGES = (("prospecting", 0.22), ("proposal", 0.30), ("negotiation", 0.32), ("closed_won_pending", 0.16))
INDUSTRIES = (
    ("Software", 0.24),
    ("Financial Services", 0.12),
    ("Healthcare", 0.1),
    ("Manufacturing", 0.12),
    ("Retail", 0.1),
    ("Education", 0.06),
    ("Logistics", 0.08),
    ("Media", 0.06),
    ("Professional Services", 0.12),
)
COUNTRIES = {
    "NA": ("US", "US", "US", "CA"),
    "EMEA": ("DE", "GB", "FR", "NL", "SE", "ES"),
    "APAC": ("SG", "AU", "JP", "IN"),
}
PERSONAL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com")

_FIRST = (
    "ana",
    "ben",
    "chloe",
    "david",
    "elena",
    "farid",
    "grace",
    "hiro",
    "ines",
    "jonas",
    "kavya",
    "liam",
    "maria",
    "noah",
    "olga",
    "priya",
    "quinn",
    "rafael",
    "sofia",
    "tom",
    "uma",
    "victor",
    "wei",
    "yara",
)
_LAST = (
    "smith",
    "mueller",
    "garcia",
    "tanaka",
    "kowalski",
    "nguyen",
    "okafor",
    "rossi",
    "dubois",
    "patel",
    "larsen",
    "kim",
    "silva",
    "cohen",
    "novak",
    "jensen",
    "haddad",
    "lopez",
    "brown",
    "ito",
)
_ROOTS = (
    "north",
    "blue",
    "peak",
    "iron",
    "bright",
    "silver",
    "cedar",
    "swift",
    "nova",
    "delta",
    "summit",
    "harbor",
    "lumen",
    "atlas",
    "vertex",
    "quarry",
    "orbit",
    "maple",
    "granite",
    "zephyr",
)
_TAILS = ("wind", "stack", "works", "line", "forge", "loop", "path", "base", "field", "scale", "grid", "labs")


@dataclass(frozen=True, slots=True)
class Deal:
    """An open opportunity that an inbound lead can belong to."""

    id: str
    stage: str
    owner: str  # the account executive
    company: str
    domain: str


@dataclass(slots=True)
class Lead:
    """One inbound lead and the ground truth the agents only partly see."""

    id: str
    created_ms: int
    region: str
    segment: str
    source: str
    employees: int  # the true head count, as enrichment finds it
    form_employees: int | None  # what the person typed in the form, if anything
    first_name: str
    email: str
    company: str
    industry: str
    country: str
    junk: bool = False
    deal: Deal | None = None


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in table], weights=[w for _, w in table])[0]


def _company(rng: random.Random) -> tuple[str, str]:
    root, tail = rng.choice(_ROOTS), rng.choice(_TAILS)
    return (
        f"{root.title()}{tail} {rng.choice(('Inc.', 'GmbH', 'Ltd', 'Group', 'Systems'))}",
        f"{root}{tail}.com",
    )


def deal_pool(rng: random.Random, aes: dict[str, list[str]], per_region: int) -> dict[str, list[Deal]]:
    """Open opportunities per region, each owned by one of the region's account executives."""
    pool: dict[str, list[Deal]] = {}
    number = 4100
    for region in REGION_SHARE:
        deals = []
        for _ in range(per_region):
            number += rng.randint(1, 9)
            company, domain = _company(rng)
            deals.append(
                Deal(f"OPP-{number:06d}", _pick(rng, DEAL_STAGES), rng.choice(aes[region]), company, domain)
            )
        pool[region] = deals
    return pool


def arrivals(rng: random.Random, first_ms: int, n_days: int, per_weekday: int) -> list[tuple[int, str, str]]:
    """(created_ms, region, source) of every lead created in [first_ms, first_ms + n_days), by time."""
    end_ms = first_ms + n_days * DAY_MS
    out: list[tuple[int, str, str]] = []
    for region, share in REGION_SHARE.items():
        offset_ms = REGION_UTC_OFFSET_MIN[region] * 60_000
        # Local days overlapping the window; arrivals outside it are dropped below.
        for day in range(-1, n_days + 1):
            local_midnight = first_ms + day * DAY_MS  # as a local wall-clock instant
            weekday = (local_midnight // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday
            mean = per_weekday * share * WEEKDAY_FACTOR[weekday] * max(0.5, rng.gauss(1.0, 0.08))
            cum = _CUM["monday" if weekday == 0 else "weekday" if weekday < 5 else "weekend"]
            for hour in rng.choices(range(24), cum_weights=cum, k=round(mean)):
                ms = local_midnight - offset_ms + hour * HOUR_MS + rng.randrange(HOUR_MS)
                if first_ms <= ms < end_ms:
                    out.append((ms, region, _pick(rng, ORGANIC_SOURCES)))
    for day in range(n_days):
        day_ms = first_ms + day * DAY_MS
        if (day_ms // DAY_MS + 3) % 7 == 2:  # Wednesday: the webinar attendee list is imported
            for _ in range(round(per_weekday * WEBINAR_SHARE * rng.uniform(0.8, 1.2))):
                region = _pick(rng, tuple(REGION_SHARE.items()))
                out.append((day_ms + 16 * HOUR_MS + rng.randrange(20 * 60_000), region, "webinar"))
    out.sort()
    return out


def make_lead(
    rng: random.Random, number: int, created_ms: int, region: str, source: str, deals: dict[str, list[Deal]]
) -> Lead:
    """Draw one lead's attributes; some belong to an account with an open deal."""
    name, _share, low, high = rng.choices(SEGMENTS, weights=[s[1] for s in SEGMENTS])[0]
    employees = min(high, max(low, round(low * (high / low) ** (rng.random() ** 1.6))))
    form_employees = None if rng.random() < 0.35 else max(1, round(employees * rng.uniform(0.6, 1.3)))
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    deal = None
    if rng.random() < DEAL_LINK_RATE[name]:
        deal = rng.choice(deals[region])
        company, domain = deal.company, deal.domain
    else:
        company, domain = _company(rng)
    if deal is None and rng.random() < 0.06:
        domain = rng.choice(PERSONAL_DOMAINS)
    junk = deal is None and rng.random() < 0.03
    email = f"test{rng.randrange(1000)}@mailinator.com" if junk else f"{first}.{last}@{domain}"
    return Lead(
        id=f"L-{number:06d}",
        created_ms=created_ms,
        region=region,
        segment=name,
        source=source,
        employees=employees,
        form_employees=form_employees,
        first_name=first.title(),
        email=email,
        company=company,
        industry=_pick(rng, INDUSTRIES),
        country=rng.choice(COUNTRIES[region]),
        junk=junk,
        deal=deal,
    )
