"""One HTTP answer read into what the client does next: done, partly refused, retry later, or give up."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504, 507})  # nothing acknowledged; the server says try again
FIRST_BACKOFF_S = 0.2

Verdict = Literal["ok", "refused", "too_large", "retry", "permanent"]


@dataclass(frozen=True)
class Answer:
    """What one attempt came to."""

    verdict: Verdict
    status: int | None  # None: no HTTP answer (connection error, timeout)
    code: str  # the server's error code, or the client's for no answer
    message: str
    body: dict[str, Any] = field(default_factory=dict)
    retry_after_s: float | None = None


def read_answer(response: httpx.Response) -> Answer:
    """Sort an HTTP answer: 200 ok; 422 some events refused; 413 split the batch; 429/5xx/507 retry; else give up."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error = body.get("error")
    if not isinstance(error, dict):
        error = {}
    status = response.status_code
    code = str(error.get("code") or f"http_{status}")
    message = str(error.get("message") or response.reason_phrase or f"HTTP {status}")
    if 200 <= status < 300:
        return Answer("ok", status, "ok", "", body)
    if status == 422:
        return Answer("refused", status, code, message, body)
    if status == 413:
        return Answer("too_large", status, code, message, body)
    if status in RETRIED_STATUSES:
        return Answer("retry", status, code, message, body, _retry_after(response))
    return Answer("permanent", status, code, message, body)


def no_answer(exc: httpx.HTTPError) -> Answer:
    """A connection error or a timeout: nothing is known to have arrived; retry (the event ids make it safe)."""
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return Answer("retry", None, kind, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (agentwatch sends seconds; an HTTP date is not honoured, the backoff applies)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def backoff_s(attempt: int, cap_s: float, retry_after_s: float | None) -> float:
    """The wait before retry number `attempt` (1, 2, ...): exponential from 0.2 s with jitter (half to all of it,
    so many clients do not come back at once), at least the server's Retry-After, at most `cap_s`."""
    ceiling = min(cap_s, FIRST_BACKOFF_S * 2 ** min(attempt - 1, 30))
    wait = random.uniform(ceiling / 2, ceiling)
    return min(cap_s, max(wait, retry_after_s or 0.0))


def auth_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
            "User-Agent": "agentwatch-client/0.1"}
