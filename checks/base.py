"""What every check is: a small object with options, ``prepare(data)`` once, ``evaluate(step)`` per time.

A check never touches the incident store. It reports :class:`Finding` objects; the engine turns them
into incidents (open, update, resolve) and links causes to effects. ``prepare`` runs the heavy,
vectorised work once over the whole evaluation range (DuckDB or Polars), so a backtest of a thousand
steps costs one scan plus a thousand cheap look-ups, not a thousand scans.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agentwatch.core.severity import Severity

if TYPE_CHECKING:
    from agentwatch.checks.config import ChecksConfig
    from agentwatch.checks.data import EvalData


SAMPLE_IDS = 20  # event ids an incident keeps as examples


def subject_key(check: str, subject: Mapping[str, str]) -> str:
    """The identity of an incident: its check and its subject, in a canonical string."""
    return check + " " + json.dumps(dict(sorted(subject.items())), separators=(",", ":"))


@dataclass(frozen=True)
class Finding:
    """One check firing on one subject at one evaluation time."""

    check: str
    subject: dict[str, str]
    severity: Severity
    summary: str
    started_at: datetime
    affected: int
    evidence: dict[str, Any] = field(default_factory=dict)
    sample_event_ids: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return subject_key(self.check, self.subject)


@dataclass(frozen=True)
class Step:
    """One evaluation time and what the engine knows of incidents open at that time."""

    at: datetime
    open_since: Mapping[str, datetime] = field(default_factory=dict)  # subject_key -> started_at

    def started(self, check: str, subject: Mapping[str, str]) -> datetime | None:
        """When the open incident of this check and subject began, if one is open."""
        return self.open_since.get(subject_key(check, subject))


class CheckOptions(BaseModel):
    """Options every check has; a check's own options extend these."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="Run this check; every check is on by default, since each one "
                          "stays quiet on ordinary traffic.")
    resolve_after_minutes: float = Field(
        60, gt=0, description="Resolve an incident once its condition has been clear this long: an hour rides "
        "out a quiet spell without closing and reopening the same incident."
    )


OptionsT = TypeVar("OptionsT", bound=CheckOptions)


class Check(Generic[OptionsT]):
    """The interface of every check. Subclasses set ``name``, ``family`` and ``Options`` (the model of
    ``OptionsT``, e.g. ``class NullSpike(Check[NullSpikeOptions])`` with ``Options = NullSpikeOptions``)."""

    name: ClassVar[str]
    family: ClassVar[str]
    Options: ClassVar[type[CheckOptions]] = CheckOptions
    # How much history before the first evaluation time `prepare` needs (baselines, reference windows); a check
    # whose need depends on its options sets it per instance.
    history: timedelta = timedelta(days=1)

    def __init__(self, options: OptionsT, config: ChecksConfig) -> None:
        self.options: OptionsT = options
        self.config = config

    def warm_imports(self) -> tuple[str, ...]:
        """Slow modules this check will import; the engine imports them in a background thread while the
        other checks scan the store, and prepares this check last."""
        return ()

    def prepare(self, data: EvalData) -> None:
        """Compute what `evaluate` needs over the whole range of `data` (once per run)."""

    def evaluate(self, step: Step) -> list[Finding]:
        """The findings at ``step.at``, from data with event time up to ``step.at`` only."""
        raise NotImplementedError


REGISTRY: dict[str, type[Check[Any]]] = {}
CheckT = TypeVar("CheckT", bound=Check[Any])


def register(cls: type[CheckT]) -> type[CheckT]:
    """Class decorator: make a check known by its name."""
    if cls.name in REGISTRY:
        raise ValueError(f"two checks are named {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls


Builder = Callable[[], Any]
