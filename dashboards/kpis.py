"""Every business KPI, defined once: what it counts, over which horizon, its unit, how it is shown, when it is
not enough data, and when a change is a change. The routing accuracy and pipeline quality pages both compute
their numbers here, from the cohort sums of ``cohorts.quarter_sums_sql``, so a KPI reads the same on both.

A rate over fewer than MIN_LEADS leads is "not enough data", not a percentage; under INTERVAL_BELOW leads it is
shown with its 95 % interval. A change counts only when it is both large enough to matter (SHARE_FLAT_POINTS,
RELATIVE_FLAT) and unlikely to be noise (a two-sample z test at 95 %), so a note never tells a story about noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KEPT, CONVERSION = "kept", "conversion"  # the two horizons a KPI judges a lead over (see cohorts)
MIN_LEADS = 30  # below this many leads a rate says "not enough data"
INTERVAL_BELOW = 400  # below this many leads a rate shows its 95 % interval
Z95 = 1.96
SHARE_FLAT_POINTS = 1.0  # a share moving less than this many points is flat
RELATIVE_FLAT = 0.10  # any other KPI moving less than this fraction of its previous value is flat
NOT_ENOUGH = "not enough data"


@dataclass(frozen=True)
class KpiSpec:
    """One KPI: `numerator` and `denominator` name cohort sums; `unit` is share (0..1), per100, hours, money or
    count."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    horizon: str  # KEPT or CONVERSION
    numerator: str
    denominator: str
    definition: str
    inverted: bool = False  # the value is 1 - numerator / denominator (kept = not reassigned)


SPECS = {spec.key: spec for spec in (
    KpiSpec("reply_rate", "Reply rate", "share", True, KEPT, "replied", "leads",
            "Share of routed leads with a `replied` outcome within the kept window of their first routing."),
    KpiSpec("routing_accuracy", "Routing accuracy", "share", True, KEPT, "reassigned", "leads",
            "Share of routed leads no rep reassigned within the kept window of their first routing (an "
            "`owner_changed` outcome on the lead naming one of its routings in `corrects_event_id`, or naming none).",
            inverted=True),
    KpiSpec("hours_to_first_action", "Time to first action", "hours", False, KEPT, "touch_hours", "touched",
            "Average hours from a lead's first routing to the first ok external action an agent took on it after "
            "the routing (an email sent, a meeting booked), over the leads touched within the kept window."),
    KpiSpec("corrections_per_100", "Rep corrections per 100 leads", "per100", False, KEPT, "corrections", "leads",
            "`owner_changed`, `requalified` and `marked_spam` outcomes on the routed leads within the kept window, "
            "per 100 leads."),
    KpiSpec("qualified_pipeline", "Qualified pipeline", "money", True, CONVERSION, "qualified_amount", "leads",
            "The `amount` of the `opportunity_created` outcomes, within the conversion window, of routed leads an "
            "agent qualified (an ok `lead.qualify` with `decision.qualified` true or `after.status` 'qualified'); "
            "their number when no outcome sends an amount."),
    KpiSpec("conversion_to_opportunity", "Conversion to opportunity", "share", True, CONVERSION, "opportunity",
            "leads", "Share of routed leads with an `opportunity_created` outcome within the conversion window."),
    KpiSpec("conversion_to_won", "Conversion to won", "share", True, CONVERSION, "won", "leads",
            "Share of routed leads with a `closed_won` outcome (on the lead, or on the opportunity created from it) "
            "within the conversion window."),
)}
EARLY = ("reply_rate", "routing_accuracy", "hours_to_first_action", "corrections_per_100")
LATE = ("qualified_pipeline", "conversion_to_opportunity", "conversion_to_won")


@dataclass(frozen=True)
class Measure:
    """A KPI over one cohort: its value (None: not enough data), the count it is over, its numerator, and its
    95 % interval when the count is small (shares and rates per 100)."""

    spec: KpiSpec
    value: float | None
    n: int
    hits: float
    low: float | None = None
    high: float | None = None
    variance: float | None = None  # of the value, for the noise test of a change (shares use a pooled test)

    def text(self) -> str:
        return NOT_ENOUGH if self.value is None else show(self.spec.unit, self.value)

    def n_text(self) -> str:
        """'n = 1,960 leads' (touched leads for time to first action), with the interval when there is one."""
        counted = "touched leads" if self.spec.denominator == "touched" else "leads"
        text = f"n = {self.n:,} {counted}"
        if self.value is not None and self.low is not None and self.high is not None:
            text += f", 95% interval {show(self.spec.unit, self.low)} to {show(self.spec.unit, self.high)}"
        elif self.value is None:
            text += f" (needs {MIN_LEADS})"
        return text


def days_text(n: int) -> str:
    """'1 day', '7 days'."""
    return f"{n} day{'s' if n != 1 else ''}"


def interval_text(hits: int, n: int) -> str:
    """A share's 95 % interval as a table shows it ('59.1-86.4%'); empty from INTERVAL_BELOW leads, and 'not
    enough data' under MIN_LEADS."""
    if n < MIN_LEADS:
        return NOT_ENOUGH
    if n >= INTERVAL_BELOW:
        return ""
    low, high = wilson(hits, n)
    return f"{low * 100:.1f}-{high * 100:.1f}%"


def money_unit(sums: list[dict[str, float]]) -> bool:
    """Qualified pipeline is an amount when any cohort's opportunities sent one, else a count."""
    return any(s.get("qualified_amount") for s in sums)


def spec_for(key: str, amounts: bool = True) -> KpiSpec:
    """The KPI `key` as shown: qualified pipeline is a count of opportunities when no outcome sent an amount."""
    spec = SPECS[key]
    if key == "qualified_pipeline" and not amounts:
        return KpiSpec(spec.key, "Qualified opportunities", "count", True, spec.horizon, "qualified_opportunities",
                       "leads", spec.definition)
    return spec


def measure(key: str, sums: dict[str, float], amounts: bool = True) -> Measure:
    """The KPI `key` over a cohort's sums."""
    spec = spec_for(key, amounts)
    n, hits = int(sums.get(spec.denominator, 0)), float(sums.get(spec.numerator, 0))
    leads = int(sums.get("leads", 0))
    if leads < MIN_LEADS or n == 0:
        return Measure(spec, None, n, hits)
    if spec.unit == "share":
        share = hits / n
        low, high = wilson(hits, n) if n < INTERVAL_BELOW else (None, None)
        if spec.inverted:
            share, low, high = 1 - share, (None if high is None else 1 - high), (None if low is None else 1 - low)
        return Measure(spec, share, n, hits, low, high)
    if spec.unit == "per100":
        rate, variance = hits / n * 100, hits / n ** 2 * 100 ** 2  # Poisson counts per lead
        spread = Z95 * math.sqrt(variance) if n < INTERVAL_BELOW else None
        return Measure(spec, rate, n, hits, None if spread is None else max(0.0, rate - spread),
                       None if spread is None else rate + spread, variance)
    if spec.unit == "hours":
        mean, squares = hits / n, float(sums.get("touch_hours_sq", 0))
        spread = max(squares / n - mean ** 2, 0.0) * n / (n - 1) if n > 1 else 0.0
        return Measure(spec, mean, n, hits, variance=spread / n)  # of the mean
    if spec.unit == "money":  # a total of amounts: a compound Poisson, its variance the sum of squared amounts
        return Measure(spec, hits, n, hits, variance=float(sums.get("qualified_amount_sq", 0)))
    return Measure(spec, hits, n, hits, variance=hits)  # a count: Poisson


def wilson(hits: float, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of hits / n (sound near 0 and 1, where the normal one is not)."""
    p = hits / n
    centre = (p + Z95 ** 2 / (2 * n)) / (1 + Z95 ** 2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / (1 + Z95 ** 2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def show(unit: str, value: float) -> str:
    """A value as people read it: one unit per KPI (hours are always hours), rounded."""
    if unit == "share":
        return f"{value:.1%}"
    if unit == "per100":
        return f"{value:.1f}"
    if unit == "hours":
        return f"{value:.1f} h"
    if unit == "money":
        for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= limit:
                return f"${value / limit:.1f}{suffix}"
        return f"${value:,.0f}"
    return f"{value:,.0f}"  # a count: the label says of what


def table_value(m: Measure) -> float | None:
    """The value in a table's column (shares in percent, everything else as shown), rounded as shown."""
    if m.value is None:
        return None
    return round(m.value * 100, 1) if m.spec.unit == "share" else round(m.value, 1)


def column_title(spec: KpiSpec) -> str:
    return spec.label + {"share": " (%)", "hours": " (h)", "money": " ($)"}.get(spec.unit, "")


@dataclass(frozen=True)
class Change:
    """How a KPI moved from the previous cohort to the current one."""

    now: Measure
    before: Measure | None  # None: no comparable previous cohort

    def amount(self) -> float | None:
        """Points for shares, else the relative change; None when either side is unknown."""
        if self.before is None or self.now.value is None or self.before.value is None:
            return None
        if self.now.spec.unit == "share":
            return (self.now.value - self.before.value) * 100
        if self.before.value == 0:
            return 0.0 if self.now.value == 0 else math.inf
        return (self.now.value - self.before.value) / abs(self.before.value)

    def significant(self) -> bool:
        """Unlikely to be noise (a z test at 95 %): two proportions pooled for shares; for the others the
        difference against the spread of both values (Poisson for rates per 100 and counts, the sample variance
        of the mean for hours, the sum of squared amounts for a money total)."""
        before, now = self.before, self.now
        if before is None or now.value is None or before.value is None:
            return False
        if now.spec.unit == "share":
            pooled = (now.hits + before.hits) / (now.n + before.n)
            spread = math.sqrt(pooled * (1 - pooled) * (1 / now.n + 1 / before.n))
            difference = abs(now.hits / now.n - before.hits / before.n)
        else:
            spread = math.sqrt((now.variance or 0.0) + (before.variance or 0.0))
            difference = abs(now.value - before.value)
        return difference / spread >= Z95 if spread > 0 else difference > 0  # no spread: any change is real

    def direction(self) -> int:
        """+1 rose, -1 fell, 0 flat, noise or unknown."""
        amount = self.amount()
        if amount is None or not self.significant():
            return 0
        flat = SHARE_FLAT_POINTS if self.now.spec.unit == "share" else RELATIVE_FLAT
        return 0 if abs(amount) < flat else (1 if amount > 0 else -1)

    def verdict(self) -> int:
        """+1 better, -1 worse, 0 flat."""
        return self.direction() * (1 if self.now.spec.higher_is_better else -1)

    def delta(self) -> str | None:
        """What the metric's delta shows: '+4.0 pp', '-12%', 'new'."""
        amount = self.amount()
        if amount is None:
            return None
        if self.now.spec.unit == "share":
            return f"{amount:+.1f} pp"
        return "new" if amount == math.inf else f"{amount:+.0%}"

    def moved(self) -> str:
        """'rose 4.0 points', 'fell from 12.0 h to 18.0 h', 'held steady (+0.3 points)'."""
        amount, direction = self.amount(), self.direction()
        if amount is None or self.before is None:
            return "cannot be compared"
        verb = {1: "rose", -1: "fell", 0: "held steady"}[direction]
        if self.now.spec.unit == "share":
            return f"{verb} {abs(amount):.1f} points" if direction else f"{verb} ({amount:+.1f} points)"
        return f"{verb} from {self.before.text()} to {self.now.text()}" if direction else verb


WORSE = {
    "routing_accuracy": "more replies are coming from leads routed to the wrong rep",
    "corrections_per_100": "reps are correcting the agents more often, so replies flatter them",
    "hours_to_first_action": "leads wait longer for their first touch",
    "conversion_to_opportunity": "the replies are not turning into opportunities",
    "conversion_to_won": "the replies are not turning into won deals",
    "qualified_pipeline": "the replies are not adding pipeline from agent-qualified leads",
}
BETTER = {
    "routing_accuracy": "more leads reach the right rep",
    "corrections_per_100": "reps correct the agents less",
    "hours_to_first_action": "leads are touched sooner",
    "conversion_to_opportunity": "more leads become opportunities",
    "conversion_to_won": "more leads close as won",
    "qualified_pipeline": "more pipeline comes from agent-qualified leads",
}


def note(changes: dict[str, Change]) -> tuple[str, str]:
    """The plain note under the KPIs and its tone: 'disagree' (a quality KPI moved against the reply rate),
    'worse' or 'better' (they agree, and say so by name), 'flat' (nothing moved beyond noise), or 'nothing' (the
    reply rate cannot be compared, so there is no story to tell)."""
    reply = changes.get("reply_rate")
    if reply is None or reply.amount() is None:
        return ("The reply rate cannot be compared with a previous cohort (see above), so there is no comparison "
                "to tell."), "nothing"
    found, along = [], []
    for key, change in changes.items():
        verdict = change.verdict()
        if key == "reply_rate" or change.amount() is None or verdict == 0:
            continue
        if verdict == reply.direction():
            along.append(f"{change.now.spec.label.lower()} {change.moved()}")
            continue
        head = f"Reply rate {reply.moved()} while {change.now.spec.label.lower()} {change.moved()}"
        if reply.direction() == 0:
            found.append(f"{head}: the reply rate alone does not show it.")
        elif verdict < 0:
            found.append(f"{head}: {WORSE[key]}.")
        else:
            found.append(f"{head}: fewer replies, but {BETTER[key]}.")
    if found:
        return " ".join(found), "disagree"
    if along:
        tone = "better" if reply.direction() > 0 else "worse"
        return (f"Reply rate {reply.moved()}, and the quality KPIs moved with it: {'; '.join(along)}."), tone
    return (f"Reply rate {reply.moved()}, and no quality KPI moved beyond {SHARE_FLAT_POINTS:g} point (shares) or "
            f"{RELATIVE_FLAT:.0%} (the others) and beyond noise."), "flat"
