"""Render docs/checks.md from the checks themselves: every check, every option, its default and its reason.

``python -m agentwatch.checks.docs`` rewrites the file; a test fails when it is stale.
"""

from __future__ import annotations

import inspect
import json
from datetime import timedelta
from pathlib import Path

from agentwatch.checks.base import REGISTRY, CheckOptions
from agentwatch.checks.catalog import load_all

DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "checks.md"

INTRO = """\
# Checks

Generated from the code by `python -m agentwatch.checks.docs`; do not edit by hand (a test fails when it is stale).

Every check is a small object with options, `prepare(data)` once per run and `evaluate(step)` per
evaluation time (see `checks/base.py`). `agentwatch check` evaluates once; `agentwatch backtest`
evaluates every step of a range in one process; `agentwatch serve` evaluates every minute.
A firing check opens an incident, or updates the open one with the same check and subject. An incident
resolves only on evidence that its condition cleared, never because data stopped: once its check has been
quiet for `resolve_after_minutes`, the check looks at the data that arrived since the incident last fired
(at least `clear_min_events` of the subject's events, judged normal, or a repair such as a new snapshot).
Without that data the incident stays open and its `status_note` says what it waits for, for example
"no actions by lead-router since 2026-10-18 12:40 UTC". Each check's rule is under "Resolves" below;
a person can always resolve an incident (`agentwatch incident resolve`).

A check with `every_minutes` is evaluated at the first evaluation in each slot of that many minutes, the
slots shifted by a phase of whole minutes that `agentwatch.checks.phases` gives each such check of the config
(from their names and cadences alone, so `serve`, `check` and a backtest agree): the 5-, 15- and 60-minute
checks fall due in different minutes of the hour instead of all at its top, so no minute of `serve` pays for
all of them at once, and the minute five past the hour (when the kept aggregates store the hour just settled)
is taken last. `agentwatch check --only` keeps the phases of the full config.

Set options under `checks:` in `agentwatch.yaml`, by check name, for example:

```yaml
checks:
  quality.null_spike: {threshold: 12, baseline_days: 14}
  volume.action_drop: {enabled: false}
```

An unknown check name or option, or a value of the wrong type, is refused with its line number.
"""


def _default(field_info: object) -> str:
    factory = getattr(field_info, "default_factory", None)
    value = factory() if factory else getattr(field_info, "default", None)
    return f"`{json.dumps(value)}`"


def _duration(delta: timedelta) -> str:
    """A timedelta in words: 8 days, 1 h, 1 day 2 h."""
    days, hours = delta.days, delta.seconds // 3600
    minutes = delta.seconds % 3600 // 60
    parts = [f"{days} day{'s' if days != 1 else ''}" if days else "", f"{hours} h" if hours else "",
             f"{minutes} min" if minutes else ""]
    return " ".join(p for p in parts if p) or "none"


def _options_table(options: type[CheckOptions]) -> list[str]:
    rows = ["| option | default | what it does, and why this default |", "| --- | --- | --- |"]
    for name, info in options.model_fields.items():
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_default(info)} | {description} |")
    return rows


def render() -> str:
    """The whole of docs/checks.md."""
    load_all()
    lines = [INTRO]
    families: dict[str, list[str]] = {}
    for name in sorted(REGISTRY):
        families.setdefault(REGISTRY[name].family, []).append(name)
    for family, names in families.items():
        lines.append(f"## {family}\n")
        for name in names:
            check = REGISTRY[name]
            doc = inspect.cleandoc(check.__doc__ or "")
            lines.append(f"### `{name}`\n")
            lines.append(doc + "\n")
            lines.append(f"*Resolution.* {check.clears_when}\n")
            lines.append(f"History read before the first evaluation (by default): {_duration(check.history)}.\n")
            lines.extend(_options_table(check.Options))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    DOCS_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {DOCS_PATH}")


if __name__ == "__main__":
    main()
