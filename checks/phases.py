"""Where in its period each check with a cadence falls due, so the heavy minutes of `serve` do not stack.

A check with ``every_minutes`` is evaluated at the first evaluation of each slot of that length, slots counted from
the Unix epoch shifted by the check's phase (:meth:`Check.due`). With every phase zero, every 5-, 15- and 60-minute
check falls due in the same minute at the top of the hour, and that minute of ``serve`` costs all of them together
(measured on the 10M-event store of ``bench/check_speed.py``: 2.3 to 2.9 s, against 0.6 s for the minutes between).
Spread over the minutes, each minute pays for one or two of them, as a Prometheus server staggers its rule groups.

Phases are whole minutes, chosen from the enabled checks alone (their names and cadences), so ``serve``, ``check``
run by cron and a backtest agree on them: the checks in order of cadence, then name, each take the phase whose
minutes hold the fewest checks already, within the hours that every cadence divides (at most a day). The minute
in which the kept aggregates store the hour just settled (``SETTLE`` past each hour: every rollup's day file is
extended) counts as holding one check already, so the cadenced checks fall due there last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta

from agentwatch.checks.base import Check
from agentwatch.store.rollups import SETTLE

HORIZON_MINUTES = 24 * 60  # the longest stretch over which the minutes' loads are counted


def spread_phases(checks: Sequence[Check]) -> None:
    """Set `phase` on each check with a cadence of whole minutes (1 or more), spreading them over the minutes."""
    cadenced = sorted((c for c in checks if _whole_minutes(c.options.every_minutes)),
                      key=lambda c: (c.options.every_minutes, c.name))
    if not cadenced:
        return
    horizon = math.lcm(*(int(c.options.every_minutes or 0) for c in cadenced))
    horizon = min(horizon, HORIZON_MINUTES)
    load = [0] * horizon  # checks due in each minute of the horizon
    # A minute of the horizon stands for the clock's minutes congruent to it: those past the hour by SETTLE are loaded.
    stores = int(SETTLE / timedelta(minutes=1))
    for minute in range(horizon):
        if (minute - stores) % math.gcd(horizon, 60) == 0:
            load[minute] += 1
    for check in cadenced:
        every = int(check.options.every_minutes or 0)
        best = min(range(every), key=lambda phase: (_load_at(load, phase, every), phase))
        for minute in range(best, horizon, every):
            load[minute] += 1
        check.phase = timedelta(minutes=best)


def _load_at(load: list[int], phase: int, every: int) -> tuple[int, int]:
    """The busiest and the total load of the minutes a check of period `every` at `phase` would fall due in."""
    minutes = load[phase::every]
    return max(minutes, default=0), sum(minutes)


def _whole_minutes(every: float | None) -> bool:
    return every is not None and every >= 1 and float(every).is_integer()
