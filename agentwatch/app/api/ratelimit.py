"""Rate limits of the API, in memory: failed authentications per client address, requests per API key.

Token buckets, one per address or key, in an LRU map of bounded size: a flood of distinct addresses evicts
the least recently seen buckets instead of growing memory (an evicted bucket starts full again).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from agentwatch.app.api.errors import ApiError
from agentwatch.core.limits import Limits

MAX_TRACKED = 10_000  # buckets kept per kind (addresses, keys); ~200 bytes each


class TokenBuckets:
    """Buckets of `capacity` tokens refilled at `rate_per_s`, per name; at most `max_entries` of them."""

    def __init__(self, rate_per_s: float, capacity: float, max_entries: int = MAX_TRACKED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.capacity = max(1.0, capacity)
        self.max_entries = max_entries
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # name -> (tokens, at)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, name: str, now: float) -> float:
        tokens, at = self._buckets.get(name, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def wait(self, name: str) -> float:
        """Seconds until `name` has a token (0 when it has one now); takes nothing."""
        with self._lock:
            tokens = self._tokens(name, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, name: str) -> float:
        """Take a token of `name`: 0 when there was one, else the seconds until there is (nothing taken)."""
        with self._lock:
            now = self.clock()
            tokens = self._tokens(name, now)
            took = tokens >= 1
            if took:
                tokens -= 1
            self._buckets[name] = (tokens, now)
            self._buckets.move_to_end(name)
            while len(self._buckets) > self.max_entries:
                self._buckets.popitem(last=False)
        return 0.0 if took else (1 - tokens) / self.rate


def retry_after(seconds: float) -> dict[str, str]:
    """A Retry-After header of whole seconds, at least one."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class RateLimits:
    """The API's two limits, from ``limits:`` in the config."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.auth_failures = TokenBuckets(limits.auth_failures_per_minute / 60, limits.auth_failures_per_minute)
        self.requests = TokenBuckets(limits.requests_per_second, 2 * limits.requests_per_second)

    def check_address(self, address: str) -> None:
        """Refuse (429) an address that failed to authenticate too often lately, before its key is looked at."""
        wait = self.auth_failures.wait(address)
        if wait:
            raise ApiError(429, "too_many_failed_authentications",
                           f"more than {self.limits.auth_failures_per_minute} requests a minute from {address} had a "
                           "missing, unknown or revoked API key (setting limits.auth_failures_per_minute): check the "
                           "key, and retry after the Retry-After seconds", headers=retry_after(wait))

    def failed(self, address: str) -> None:
        """Count a failed authentication of `address`."""
        self.auth_failures.take(address)

    def admit(self, key_id: str) -> None:
        """Let a request of `key_id` through, or refuse it (429) past its rate."""
        wait = self.requests.take(key_id)
        if wait:
            raise ApiError(429, "rate_limited",
                           f"API key {key_id} made more than {self.limits.requests_per_second:g} requests a second "
                           "(setting limits.requests_per_second; bursts of twice that pass): send fewer, larger "
                           "batches, and retry after the Retry-After seconds", headers=retry_after(wait))
