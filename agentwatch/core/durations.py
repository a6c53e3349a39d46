"""Durations as people write them in options and the config: ``30s``, ``15m``, ``4h``, ``2d``."""

from __future__ import annotations

import re
from datetime import timedelta

DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$")
UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
LONGEST = timedelta(days=3650)


def parse_duration_text(text: str) -> timedelta:
    """``15m`` as a timedelta; ValueError saying what is expected otherwise."""
    match = DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration; give one such as 30s, 15m, 1h or 1d")
    amount, unit = float(match.group(1)), UNITS[match.group(2)]
    if amount > LONGEST / timedelta(**{unit: 1}):  # checked before timedelta() can overflow
        raise ValueError(f"{text!r} is longer than ten years")
    return timedelta(**{unit: amount})


def format_duration(value: timedelta) -> str:
    """The shortest of ``90s``, ``15m``, ``4h``, ``2d`` that states `value` exactly."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
