"""How bad an incident is: one order, used by checks, alerts, the dashboard, the formats and the demo."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import WithJsonSchema


class Severity(StrEnum):
    """``info`` < ``warning`` < ``critical``; compares by that order, prints as its name."""

    info = "info"
    warning = "warning"
    critical = "critical"

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for critical."""
        return _ORDER.index(self)

    def __lt__(self, other: object) -> bool:
        return self.rank < Severity(other).rank if isinstance(other, str) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= Severity(other).rank if isinstance(other, str) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > Severity(other).rank if isinstance(other, str) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= Severity(other).rank if isinstance(other, str) else NotImplemented

    @classmethod
    def highest(cls, severities: Iterable[str]) -> Severity:
        """The most severe of some severities (at least one)."""
        return max(cls(s) for s in severities)


_ORDER = tuple(Severity)

# A pydantic field of this type is the plain string enum in JSON Schema, as the published formats have it.
SeverityField = Annotated[
    Severity, WithJsonSchema({"enum": [s.value for s in Severity], "title": "Severity", "type": "string"})
]
