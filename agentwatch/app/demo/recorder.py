"""Turns simulated actions and outcomes into native JSON lines, keeping only those inside the window."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

# Each agent's host logs in its own zone; the instant is what matters, the offset is realism.
_ZONES = {m: UTC if m == 0 else timezone(timedelta(minutes=m)) for m in (0, 120, -300, 480)}
_EPOCHS = {m: datetime(1970, 1, 1, tzinfo=UTC).astimezone(z) for m, z in _ZONES.items()}
_MASK32 = 0xFFFFFFFF

ERRORS = {
    "crm": (
        ("crm_timeout", "Salesforce API call timed out after 30s", 30000.0),
        ("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", 4200.0),
        ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded", 180.0),
    ),
    "llm": (
        ("llm_timeout", "model call exceeded 20s deadline", 20000.0),
        ("model_overloaded", "upstream model returned 529 overloaded", 900.0),
    ),
    "enrich": (
        ("provider_unavailable", "enrichment provider returned 503", 1500.0),
        ("crm_timeout", "Salesforce API call timed out after 30s", 30000.0),
    ),
    "email": (
        ("smtp_timeout", "SMTP relay did not answer within 15s", 15000.0),
        ("rate_limited", "mailbox send quota reached, retry later", 120.0),
    ),
}


def rfc3339(ms: int, offset_min: int) -> str:
    """An RFC 3339 timestamp with millisecond precision at the given fixed UTC offset."""
    text = (_EPOCHS[offset_min] + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if offset_min == 0 else text


def latency(rng: random.Random, median_ms: float, sigma: float = 0.45) -> float:
    """A log-normal latency around ``median_ms``, in ms."""
    return round(median_ms * math.exp(rng.gauss(0.0, sigma)), 1)


def _fmix32(x: int) -> int:
    """MurmurHash3's finalizer: a bijection on 32-bit ints, so distinct counters give distinct ids."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _MASK32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _MASK32
    return x ^ (x >> 16)


class Recorder:
    """Collects events as (ts_ms, sequence, json line); drops those outside [start, end)."""

    def __init__(self, rng: random.Random, start_ms: int, end_ms: int, crm_incident: tuple[int, int]) -> None:
        self.rng = rng
        self.start_ms, self.end_ms = start_ms, end_ms
        self.crm_incident = crm_incident  # a half hour of Salesforce API trouble
        self.actions: list[tuple[int, int, str]] = []
        self.outcomes: list[tuple[int, int, str]] = []
        self._salt = rng.getrandbits(32)
        self._n_actions = 0
        self._n_outcomes = 0
        self._emitted: set[str] = set()

    def _id(self, prefix: str, n: int) -> str:
        return f"{prefix}-{_fmix32((n + self._salt) & _MASK32):08x}"

    def in_window(self, ms: int) -> bool:
        """True when an event at ``ms`` lands in the output files."""
        return self.start_ms <= ms < self.end_ms

    def action(
        self,
        ms: int,
        agent: tuple[str, str, int],
        action: str,
        lead_id: str,
        status: str = "ok",
        trace_id: str | None = None,
        **fields: object,
    ) -> str:
        """Record one action event; ``agent`` is (agent_id, version, utc offset in minutes)."""
        self._n_actions += 1
        event_id = self._id("act", self._n_actions)
        span_id = f"{self.rng.getrandbits(64):016x}" if trace_id else None
        if not self.in_window(ms):
            return event_id
        event: dict[str, object] = {
            "event_id": event_id,
            "ts": rfc3339(ms, agent[2]),
            "agent_id": agent[0],
            "agent_version": agent[1],
            "action": action,
            "resource": {"type": "lead", "id": lead_id},
            "status": status,
        }
        for key, value in fields.items():
            if value is not None:
                event[key] = value
        if trace_id:
            event["trace_id"], event["span_id"] = trace_id, span_id
        self._emitted.add(event_id)
        self.actions.append((ms, self._n_actions, json.dumps(event, separators=(",", ":"))))
        return event_id

    def attempt(
        self, ms: int, agent: tuple[str, str, int], action: str, lead_id: str, errors: str, **fields: Any
    ) -> tuple[int, str]:
        """Record an action that now and then fails once and is retried; returns (ms, id) of the success."""
        rate = 0.012
        if errors == "crm" and self.crm_incident[0] <= ms < self.crm_incident[1]:
            rate = 0.3
        if self.rng.random() < rate:
            code, message, latency = self.rng.choice(ERRORS[errors])
            self.action(
                ms,
                agent,
                action,
                lead_id,
                "error",
                fields.get("trace_id"),
                inputs=fields.get("inputs"),
                error={"code": code, "message": message},
                latency_ms=latency,
            )
            ms += int(latency) + self.rng.randint(2000, 45000)
        return ms, self.action(ms, agent, action, lead_id, **fields)

    def outcome(
        self,
        ms: int,
        kind: str,
        lead_id: str,
        offset_min: int = 0,
        corrects: str | None = None,
        **fields: object,
    ) -> None:
        """Record one outcome; dropped when it corrects an action that is not in the files."""
        self._n_outcomes += 1
        event_id = self._id("out", self._n_outcomes)
        if not self.in_window(ms) or (corrects is not None and corrects not in self._emitted):
            return
        event: dict[str, object] = {
            "event_id": event_id,
            "ts": rfc3339(ms, offset_min),
            "kind": kind,
            "resource": {"type": "lead", "id": lead_id},
        }
        for key, value in fields.items():
            if value is not None:
                event["from" if key == "from_" else key] = value
        if corrects is not None:
            event["corrects_event_id"] = corrects
        self.outcomes.append((ms, self._n_outcomes, json.dumps(event, separators=(",", ":"))))


@dataclass
class World:
    """Shared state of one simulation run."""

    rec: Recorder
    rng: random.Random
    rename_ms: int
    upgrade_ms: int  # when qualifier-agent 2.4.0 is deployed
    sdrs: dict[tuple[str, str], list[str]]
    aes: dict[str, list[str]]
    managers: dict[str, list[str]]
    bad_release: tuple[int, int]  # [from, to): enrichment-agent 1.9.0 runs, until 1.9.1 fixes it
    offsite: tuple[int, int]  # [from, to): the managers who approve enterprise first touches are away
    # Streams of their own for the reps' field edits and the offsite's late approvals, so adding them left the
    # main stream's draws as they were up to the offsite (a meeting after a late approval is booked at another hour,
    # which can take one draw more or less and so varies the leads after it).
    edit_rng: random.Random
    offsite_rng: random.Random
    open_deal_nurture_after_rename: int = 0
    fields_set_back: int = 0  # field_changed outcomes in the window
    approvals_held: int = 0  # approval requests in the window answered late because of the offsite
    _opportunities: list[int] = field(default_factory=lambda: [700000])

    def new_opportunity_id(self) -> str:
        """A fresh id for an opportunity a meeting turns into."""
        self._opportunities[0] += self.rng.randint(1, 7)
        return f"OPP-{self._opportunities[0]:06d}"
