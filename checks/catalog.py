"""Import every check module so each registers itself (the registry is filled on first use)."""

from __future__ import annotations

import importlib

CHECK_MODULES = (
    "agentwatch.checks.schema_changes",
    "agentwatch.checks.schema_watch",
    "agentwatch.checks.null_spike",
    "agentwatch.checks.volume",
    "agentwatch.checks.error_burst",
    "agentwatch.checks.policy",
    "agentwatch.checks.human_threshold",
    "agentwatch.checks.workflow",
    "agentwatch.checks.outcome",
    "agentwatch.checks.write_reverted",
    "agentwatch.checks.duplicates",
    "agentwatch.checks.identity",
    "agentwatch.checks.expectations",
    "agentwatch.checks.drift",
    "agentwatch.checks.approval",
)


def load_all() -> None:
    for module in CHECK_MODULES:
        importlib.import_module(module)
