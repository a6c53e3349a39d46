"""The checks' sections of ``agentwatch.yaml``: ``agents``, ``workflow``, ``fields``, ``checks``, ``expectations``.

The whole file is read by ``agentwatch.app.config``, which validates these sections with :class:`ChecksConfig`
and then calls ``agentwatch.checks.options.validate_check_options`` for what pydantic cannot see (check names,
each check's options).
An agent's entry extends the ``"*"`` entry: lists are joined, single values override.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


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

