"""The HTTP a schema poller makes: bounded bodies, patient retries, and error texts that carry no secret.

A request is tried up to ``crm.max_attempts`` times. A 429 or a 503 waits what ``Retry-After`` asks (seconds or an
HTTP date); another 5xx, a 429 without it, or a network error waits 1 s, 2 s, 4 s... (doubling, at most
``crm.max_wait_seconds``). A Retry-After longer than ``max_wait_seconds`` ends the poll at once: the error carries
it, and the next poll starts after it. Errors name the request (``describe of Lead``), the status and the API's
error code; never a header, a token or a body.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from agentwatch.core.errors import CrmError
from agentwatch.core.json_structure import max_depth, may_nest_deeper

log = logging.getLogger(__name__)
FIRST_BACKOFF_S = 1.0
MAX_JSON_DEPTH = 64  # a describe nests 4 levels; deeper is not a CRM answer (and would cost a RecursionError)
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class Clock(Protocol):
    """Time as the pollers see it: tests move it instead of sleeping."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class Reply:
    """A response read whole (within the bound)."""

    status: int
    headers: httpx.Headers
    body: bytes

    def json(self, what: str) -> Any:
        """The body as JSON; a CrmError naming the request when it is not."""
        if may_nest_deeper(self.body, MAX_JSON_DEPTH) and max_depth(self.body) > MAX_JSON_DEPTH:
            raise CrmError(f"{what}: the response nests deeper than {MAX_JSON_DEPTH} levels; not a CRM answer")
        try:
            return json.loads(self.body)
        except ValueError:
            raise CrmError(f"{what}: the response ({self.status}) is not JSON") from None


@dataclass(frozen=True)
class HttpSettings:
    """The bounds of every request (from the crm: section)."""

    max_response_bytes: int
    max_attempts: int
    max_wait_s: float


def read_bounded(client: httpx.Client, method: str, url: str, what: str, max_bytes: int,
                 headers: dict[str, str] | None = None, form: dict[str, str] | None = None) -> Reply:
    """One request, its body read up to `max_bytes` (a CrmError beyond, naming the setting)."""
    with client.stream(method, url, headers=headers, data=form) as response:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _too_large(what, max_bytes)
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(what, max_bytes)
            chunks.append(chunk)
        return Reply(response.status_code, response.headers, b"".join(chunks))


def _too_large(what: str, max_bytes: int) -> CrmError:
    return CrmError(f"{what}: the response is larger than crm.max_response_bytes ({max_bytes:,} bytes)")


def with_retries(send: Callable[[], Reply], what: str, settings: HttpSettings, clock: Clock) -> Reply:
    """`send()` until it answers something other than a 429, a 5xx or a network error, within the settings' tries
    and waits; the last answer otherwise (a CrmError for a network error)."""
    for attempt in range(1, settings.max_attempts + 1):
        asked: float | None = None
        try:
            reply = send()
        except httpx.TransportError as exc:  # the type says enough; its text may quote the address
            problem = f"{what}: network error ({type(exc).__name__})"
        except httpx.RequestError as exc:  # a body that cannot be decoded, a malformed answer: no retry helps
            raise CrmError(f"{what}: unreadable answer ({type(exc).__name__})") from None
        else:
            if reply.status not in RETRIED_STATUSES:
                return reply
            asked = retry_after_seconds(reply.headers.get("retry-after"), clock.now())
            problem = f"{what}: {status_phrase(reply)}"
        wait = asked if asked is not None else min(FIRST_BACKOFF_S * 2 ** (attempt - 1), settings.max_wait_s)
        if asked is not None and asked > settings.max_wait_s:
            raise CrmError(f"{problem}; Retry-After asks for {asked:g} s, longer than crm.max_wait_seconds: the next "
                           "poll waits for it", retry_after_s=asked)
        if attempt == settings.max_attempts:
            raise CrmError(f"{problem} ({attempt} tries)", retry_after_s=asked)
        log.info("%s; trying again in %g s (try %d of %d)", problem, wait, attempt + 1, settings.max_attempts)
        clock.sleep(wait)
    raise AssertionError("unreachable: the last try returns or raises")


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from now (it is a number of seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def status_phrase(reply: Reply) -> str:
    """``429 RATE_LIMIT``, ``401 INVALID_SESSION_ID``, ``400 invalid_grant``: the status and the error code the API
    put in its body (Salesforce: a list of {errorCode, message}; OAuth: {error}; HubSpot: {category} or
    {errorType}), never its message text."""
    code = None
    try:
        body = json.loads(reply.body) if reply.body and len(reply.body) < 65_536 else None
    except ValueError:
        body = None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        code = body[0].get("errorCode")
    elif isinstance(body, dict):
        code = body.get("error") or body.get("errorType") or body.get("category")
    code = code if isinstance(code, str) and code.replace("_", "").replace(".", "").isalnum() else None
    return f"{reply.status} {code}" if code else f"answered {reply.status}"
