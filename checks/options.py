"""Per-check options from the ``checks:`` section of the config, validated against each check's model."""

from __future__ import annotations

from pydantic import ValidationError

from agentwatch.checks.base import REGISTRY, CheckOptions
from agentwatch.checks.catalog import load_all
from agentwatch.checks.config import ChecksConfig
from agentwatch.core.config_file import Where
from agentwatch.core.errors import ConfigError


def options_for(config: ChecksConfig, check_name: str) -> CheckOptions:
    """The options of one check: its defaults overridden by the config."""
    return REGISTRY[check_name].Options.model_validate(config.checks.get(check_name) or {})


def validate_check_options(config: ChecksConfig, where: Where) -> None:
    """Refuse unknown check names and invalid check options; `where(key_path)` names the file and line."""
    load_all()
    for name, raw in config.checks.items():
        if name not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            raise ConfigError(f"{where(('checks', name))}: no check has this name; known checks: {known}")
        try:
            REGISTRY[name].Options.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"{where(('checks', name, *first['loc']))}: {first['msg']}") from None
