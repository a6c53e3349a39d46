"""The checks' configuration: ``agentwatch.yaml`` in AGENTWATCH_HOME, or the file given by ``--config``.

Validated with pydantic; a mistake is reported with the file, the line and the key path, e.g.
``agentwatch.yaml line 7 (agents.lead-router.max_records_per_action): Input should be a valid integer``.
An agent's entry extends the ``"*"`` entry: lists are joined, single values override.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from agentwatch.alerts.config import AlertsConfig, GuardConfig, validate_alerts
from agentwatch.core.errors import ConfigError
from agentwatch.app.settings import DashboardConfig

CONFIG_NAME = "agentwatch.yaml"


def _object_and_field(target: str) -> str:
    """A ``fields:`` value names one field of one object; checked per entry so an error names its line."""
    if target.count(".") != 1 or not all(target.split(".")):
        raise ValueError(f"{target!r} should be Object.Field, e.g. Account.Region__c")
    return target


CrmField = Annotated[str, AfterValidator(_object_and_field)]


class AgentPolicy(BaseModel):
    """What one agent (or every agent, under ``"*"``) may do."""

    model_config = ConfigDict(extra="forbid")
    allowed_actions: list[str] | None = Field(None, description="If set, any other action is `policy.not_allowed`.")
    forbidden_actions: list[str] = Field(default_factory=list, description="Never allowed: `policy.forbidden_action`.")
    requires_approval: list[str] = Field(
        default_factory=list, description="Need `approval`, else `policy.unapproved_action`."
    )
    max_records_per_action: int | None = Field(None, ge=1, description="Above it: `policy.bulk_limit`.")

    def extended_by(self, other: AgentPolicy) -> AgentPolicy:
        """This policy (the ``"*"`` one) extended by an agent's own entry."""
        allowed = None
        if self.allowed_actions is not None or other.allowed_actions is not None:
            allowed = sorted({*(self.allowed_actions or []), *(other.allowed_actions or [])})
        return AgentPolicy(
            allowed_actions=allowed,
            forbidden_actions=sorted({*self.forbidden_actions, *other.forbidden_actions}),
            requires_approval=sorted({*self.requires_approval, *other.requires_approval}),
            max_records_per_action=other.max_records_per_action or self.max_records_per_action,
        )


class WorkflowConfig(BaseModel):
    """The state machine of one CRM object, read from agents' ``before``/``after``."""

    model_config = ConfigDict(extra="forbid")
    object: str = Field(description="The resource type the state machine applies to, e.g. lead.")
    state_field: str = Field("status", description="The key in before/after holding the state.")
    transitions: dict[str, list[str]] = Field(default_factory=dict, description="state -> states it may move to.")
    sla_first_action_minutes: float | None = Field(None, gt=0, description="Time to the first action by an agent.")
    follow_ups: dict[str, list[str]] = Field(
        default_factory=lambda: {"email.send": ["crm.update_field", "crm.log_activity"]},
        description="External action -> writes that must follow it on the same resource.",
    )


class Config(BaseModel):
    """The whole ``agentwatch.yaml``."""

    model_config = ConfigDict(extra="forbid")
    agents: dict[str, AgentPolicy] = Field(default_factory=dict)
    workflow: WorkflowConfig | None = None
    fields: dict[str, CrmField] = Field(default_factory=dict, description="input key -> Object.Field in the CRM.")
    checks: dict[str, dict[str, Any] | None] = Field(
        default_factory=dict, description="check name -> its options (empty: the defaults)."
    )
    expectations: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="dataset (actions | outcomes) -> Great Expectations expectations."
    )
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Destinations, routes and timing.")
    guard: GuardConfig = Field(default_factory=GuardConfig, description="Which incidents pause agents.")
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig, description="Who may open the dashboard.")

    def policy_for(self, agent_id: str) -> AgentPolicy:
        """The effective policy of an agent: ``"*"`` extended by its own entry."""
        base = self.agents.get("*", AgentPolicy())
        own = self.agents.get(agent_id)
        return base.extended_by(own) if own else base


def load_config(path: Path | None) -> Config:
    """Read and validate a config file; no file means every default."""
    if path is None or not path.exists():
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(f"{path} line {line}: not valid YAML: {exc.problem}") from None
    lines: dict[tuple, int] = {}
    data = _to_python(node, (), lines) if node is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} line 1: the config should be a mapping of keys (agents, workflow, fields, checks, "
                          "alerts, guard, dashboard)")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        where = ".".join(str(p) for p in loc) or "top level"
        raise ConfigError(f"{path} line {_line_of(loc, lines)} ({where}): {first['msg']}") from None
    from agentwatch.checks.options import validate_check_options

    validate_check_options(config, path, lambda loc: _line_of(loc, lines))
    from agentwatch.checks.base import REGISTRY

    validate_alerts(config.alerts, config.guard, list(REGISTRY),
                    lambda loc: f"{path} line {_line_of(loc, lines)} ({'.'.join(str(p) for p in loc)})")
    return config


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int:
    """The line of the deepest known part of a key path (1-based)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _to_python(node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> Any:
    """A YAML node as plain Python, noting the line of every key path."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            result[key] = _to_python(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return yaml.SafeLoader("").construct_object(node)
