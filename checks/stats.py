"""Change-point statistics shared by the checks: one-sided CUSUM over bucketed counts.

CUSUM accumulates evidence bucket by bucket, so a small stream fires once enough events have shown
the change and a large stream fires at once. Each function works on the buckets of the recent
window, oldest first, and returns the CUSUM statistic at the end plus the index of the bucket where
the change most likely began: ``S = max over k of sum(llr[k:])``.
"""

from __future__ import annotations

import numpy as np


def cusum_end(llr: np.ndarray) -> tuple[float, int]:
    """The CUSUM statistic at the last bucket and the index where its run began (-1 if zero)."""
    if llr.size == 0:
        return 0.0, -1
    suffix = np.cumsum(llr[::-1])[::-1]  # suffix[k] = sum(llr[k:])
    start = int(np.argmax(suffix))
    best = float(suffix[start])
    return (best, start) if best > 0 else (0.0, -1)


def bernoulli_llr(hits: np.ndarray, trials: np.ndarray, p0: np.ndarray | float, p1: np.ndarray | float) -> np.ndarray:
    """Log-likelihood ratio of "hit rate p1" against "hit rate p0", per bucket."""
    p0 = np.clip(p0, 1e-4, 1 - 1e-4)
    p1 = np.clip(p1, 1e-4, 1 - 1e-4)
    misses = trials - hits
    return hits * np.log(p1 / p0) + misses * np.log((1 - p1) / (1 - p0))


def poisson_llr(counts: np.ndarray, expected: np.ndarray, ratio: float) -> np.ndarray:
    """Log-likelihood ratio of "rate is `ratio` x expected" against "rate is as expected", per bucket."""
    expected = np.maximum(expected, 1e-3)
    return counts * np.log(ratio) - expected * (ratio - 1.0)
