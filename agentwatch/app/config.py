"""The whole ``agentwatch.yaml``: the home's file, or the one ``--config`` names.

Each component owns and validates its sections: the checks (``agents``, ``workflow``, ``fields``, ``checks``,
``expectations``) in ``agentwatch.checks``, ``alerts`` and ``guard`` in ``agentwatch.alerts``, ``store`` in
``agentwatch.store.settings``, ``otlp`` in ``agentwatch.collector.otlp.config``, ``crm`` in
``agentwatch.collector.crm.config``; ``dashboard`` is the
application's own. This module reads the file once, validates the whole with pydantic (the first mistake is
reported with the file, the line and the key path, e.g.
``agentwatch.yaml line 7 (agents.lead-router.max_records_per_action): Input should be a valid integer``), then
calls each component's own check of what pydantic cannot see.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentwatch.alerts.config import AlertsConfig, GuardConfig, validate_alerts
from agentwatch.checks.base import REGISTRY
from agentwatch.checks.config import ChecksConfig
from agentwatch.checks.options import validate_check_options
from agentwatch.collector.crm.config import CrmConfig
from agentwatch.collector.otlp.config import OtlpConfig
from agentwatch.core.config_file import read_config_file
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home
from agentwatch.core.limits import Limits
from agentwatch.store.settings import StoreSettings


class DashboardConfig(BaseModel):
    """Who may open the dashboard."""

    model_config = ConfigDict(extra="forbid")
    require_key: bool = Field(True, description="Ask for an API key of scope read (or admin) before showing "
                                                "anything; `agentwatch keys create --scope read` makes one. false "
                                                "is honoured only when the dashboard listens on loopback "
                                                "(docs/dashboard.md).")


class Config(ChecksConfig):
    """The whole ``agentwatch.yaml``: the checks' sections, and those of alerts, the guard and the dashboard."""

    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Destinations, routes and timing.")
    guard: GuardConfig = Field(default_factory=GuardConfig, description="Which incidents pause agents.")
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig, description="Who may open the dashboard.")
    limits: Limits = Field(default_factory=Limits, description="Bounds on requests, files and events "
                                                               "(docs/reliability.md).")
    store: StoreSettings = Field(default_factory=StoreSettings, description="Compaction and retention of the store "
                                                                           "(docs/store.md).")
    otlp: OtlpConfig = Field(default_factory=OtlpConfig, description="How OpenTelemetry spans become action events "
                                                                     "(docs/otlp.md).")
    crm: CrmConfig = Field(default_factory=CrmConfig, description="The CRM schema pollers: Salesforce and HubSpot "
                                                                  "objects to watch (docs/crm.md).")


def load_config(path: Path | None) -> Config:
    """Read and validate a config file; no file means every default."""
    if path is None or not path.exists():
        return Config()
    data, where = read_config_file(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} line 1: the config should be a mapping of keys (agents, workflow, fields, checks, "
                          "alerts, guard, dashboard)")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{where(tuple(first['loc']))}: {first['msg']}") from None
    validate_check_options(config, where)  # also loads every check, so REGISTRY is full below
    validate_alerts(config.alerts, config.guard, list(REGISTRY), where)
    return config


def config_for(home: Home, override: Path | None = None) -> Config:
    """The config given, else ``agentwatch.yaml`` in the home, else every default."""
    if override is not None and not override.exists():
        raise ConfigError(f"--config {override}: no such file")
    return load_config(override or home.config_file)
