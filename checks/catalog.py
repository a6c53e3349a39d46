"""Import every check module so each registers itself (the registry is filled on first use)."""

from __future__ import annotations

import importlib

CHECK_MODULES = (
    "checks.schema_changes",
    "checks.null_spike",
    "checks.volume",
    "checks.error_burst",
    "checks.policy",
    "checks.human_threshold",
    "checks.workflow",
    "checks.outcome",
    "checks.duplicates",
    "checks.expectations",
    "checks.drift",
)


def load_all() -> None:
    for module in CHECK_MODULES:
        importlib.import_module(module)
