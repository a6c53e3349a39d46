"""The checks' sections of ``agentwatch.yaml``: ``agents``, ``workflow``, ``fields``, ``checks``, ``expectations``.

The whole file is read by ``agentwatch.app.config``, which validates these sections with :class:`ChecksConfig`
and then calls ``agentwatch.checks.options.validate_check_options`` for what pydantic cannot see (check names,
each check's options).
An agent's entry extends the ``"*"`` entry: lists are joined, single values override, and a ``min_confidence``
map is joined pattern by pattern (the agent's threshold for a pattern wins; a single number replaces the map).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

GLOB_CHARACTERS = "*?["  # a min_confidence key with none of these is an exact action name
EXACT_NAME = 1_000_000  # the specificity of an exact name: above any pattern's length

# min_confidence: one threshold for every action, or action pattern -> threshold.
ConfidenceThresholds = float | dict[str, float]


def _object_and_field(target: str) -> str:
    """A ``fields:`` value names one field of one object; checked per entry so an error names its line."""
    if target.count(".") != 1 or not all(target.split(".")):
        raise ValueError(f"{target!r} should be Object.Field, e.g. Account.Region__c")
    return target


CrmField = Annotated[str, AfterValidator(_object_and_field)]


def pattern_specificity(pattern: str) -> int:
    """How specific a ``min_confidence`` key is, to pick among the keys matching one action: an exact action name
    beats any pattern, and a longer pattern beats a shorter one (``email.send*`` over ``email.*`` over ``*``)."""
    return len(pattern) if any(c in pattern for c in GLOB_CHARACTERS) else EXACT_NAME


def _fraction(value: object, key: str) -> float:
    """A threshold: a number from 0 to 1 (a YAML ``true`` is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{key} should be a number from 0 to 1, not {value!r}")
    return float(value)


class AgentPolicy(BaseModel):
    """What one agent (or every agent, under ``"*"``) may do."""

    model_config = ConfigDict(extra="forbid")
    allowed_actions: list[str] | None = Field(None, description="If set, any other action is `policy.not_allowed`.")
    forbidden_actions: list[str] = Field(default_factory=list, description="Never allowed: `policy.forbidden_action`.")
    requires_approval: list[str] = Field(
        default_factory=list, description="Need `approval`, else `policy.unapproved_action`."
    )
    max_records_per_action: int | None = Field(None, ge=1, description="Above it: `policy.bulk_limit`.")
    min_confidence: ConfidenceThresholds | None = Field(
        None, description="Below it, without approval: `policy.low_confidence_autonomy`. One number for every action, "
        "or action pattern (shell glob on the dotted name) -> number; the most specific key matching an action "
        "applies: an exact name, else the longest pattern, else (same length) the higher threshold."
    )
    require_confidence: bool | None = Field(
        None, description="Every action of the agent must carry a confidence: one without it, and without approval, "
        "is `policy.low_confidence_autonomy` whether a `min_confidence` covers it or not."
    )

    @field_validator("min_confidence", mode="before")
    @classmethod
    def _thresholds(cls, value: object) -> object:
        """Checked here, not by the union type, so an error names the pattern and the rule instead of every branch
        of the union."""
        if value is None:
            return None
        if not isinstance(value, dict):
            return _fraction(value, "min_confidence")
        for pattern in value:
            if not isinstance(pattern, str) or not pattern.strip():
                raise ValueError(f"min_confidence has an empty action pattern {pattern!r}")
        return {pattern: _fraction(v, f"min_confidence {pattern!r}") for pattern, v in value.items()}

    def confidence_thresholds(self) -> dict[str, float]:
        """``min_confidence`` as action pattern -> threshold (a single number applies to ``*``, every action)."""
        if self.min_confidence is None:
            return {}
        if isinstance(self.min_confidence, dict):
            return dict(self.min_confidence)
        return {"*": self.min_confidence}

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
            min_confidence=_extended_thresholds(self, other),
            require_confidence=other.require_confidence if other.require_confidence is not None
            else self.require_confidence,
        )


def _extended_thresholds(base: AgentPolicy, own: AgentPolicy) -> ConfidenceThresholds | None:
    """The agent's map overrides the ``"*"`` one pattern by pattern; its single number overrides all of it."""
    if own.min_confidence is None:
        return base.min_confidence
    if not isinstance(own.min_confidence, dict) or base.min_confidence is None:
        return own.min_confidence
    return base.confidence_thresholds() | own.min_confidence


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


class ChecksConfig(BaseModel):
    """The sections of ``agentwatch.yaml`` the checks read."""

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

    def policy_for(self, agent_id: str) -> AgentPolicy:
        """The effective policy of an agent: ``"*"`` extended by its own entry."""
        base = self.agents.get("*", AgentPolicy())
        own = self.agents.get(agent_id)
        return base.extended_by(own) if own else base

