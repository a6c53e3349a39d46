"""Per-check options from the ``checks:`` section of the config, validated against each check's model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from agentwatch.checks.base import REGISTRY, CheckOptions
from agentwatch.checks.config import Config
from agentwatch.core.errors import ConfigError


def options_for(config: Config, check_name: str) -> CheckOptions:
    """The options of one check: its defaults overridden by the config."""
    return REGISTRY[check_name].Options.model_validate(config.checks.get(check_name) or {})


def validate_check_options(config: Config, path: Path, line_of: Callable[[tuple], int]) -> None:
    """Refuse unknown check names and invalid options, naming the line."""
    from agentwatch.checks.catalog import load_all

    load_all()
    for name, raw in config.checks.items():
        if name not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            raise ConfigError(f"{path} line {line_of(('checks', name))} (checks.{name}): no check has this name; "
                              f"known checks: {known}")
        try:
            REGISTRY[name].Options.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ("checks", name, *first["loc"])
            where = ".".join(str(p) for p in loc)
            raise ConfigError(f"{path} line {line_of(loc)} ({where}): {first['msg']}") from None
