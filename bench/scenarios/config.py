"""The team's ``agentwatch.yaml`` for the benchmark: policies, the lead state machine, an expectation suite.

Clean traffic satisfies all of it; each policy, workflow and expectation fault breaks one rule.
"""

from __future__ import annotations

from typing import Any

from agentwatch.app.config import Config
from scenarios.traffic import REGIONS, SEGMENTS

ROUTE_TARGETS = sorted({"nurture", *(f"ae:{r.lower()}" for r in REGIONS),
                        *(f"sdr:{r.lower()}-{s}" for r in REGIONS for s in SEGMENTS)})

CONFIG: dict[str, Any] = {
    "agents": {
        "*": {"forbidden_actions": ["record.delete", "record.merge"]},
        "enrichment-agent": {"allowed_actions": ["lead.enrich", "crm.update_field"]},
        "qualifier-agent": {"allowed_actions": ["lead.qualify"]},
        "lead-router": {"allowed_actions": ["lead.route", "lead.assign_owner", "sequence.enroll", "crm.update_field",
                                            "task.create"],
                        "max_records_per_action": 5, "min_confidence": {"lead.route": 0.8}},
        "followup-agent": {"allowed_actions": ["email.send", "crm.log_activity"], "requires_approval": ["email.send"]},
    },
    "workflow": {
        "object": "lead",
        "state_field": "status",
        "transitions": {"new": ["enriched", "disqualified"], "enriched": ["qualified", "disqualified"],
                        "qualified": ["routed", "escalated"], "disqualified": ["nurturing", "routed"]},
        "sla_first_action_minutes": 15,
        "follow_ups": {"email.send": ["crm.log_activity"]},
    },
    "fields": {"region": "Lead.Region__c", "segment": "Lead.Segment__c", "employees": "Lead.NumberOfEmployees",
               "source": "Lead.LeadSource"},
    "expectations": {
        "actions": [
            {"expectation": "expect_column_values_to_not_be_null", "column": "agent_id"},
            {"expectation": "expect_column_values_to_be_in_set", "column": "decision.route_to",
             "kwargs": {"value_set": ROUTE_TARGETS}, "name": "routes to a known team"},
            {"expectation": "expect_column_values_to_be_in_set", "column": "decision.intent",
             "kwargs": {"value_set": ["low", "medium", "high"]}, "name": "intent is low, medium or high"},
        ],
        "outcomes": [
            {"expectation": "expect_column_values_to_not_be_null", "column": "resource_id"},
        ],
    },
}


def bench_config(checks: dict[str, dict[str, Any]] | None = None) -> Config:
    """The benchmark's config, with per-check option overrides if given."""
    return Config.model_validate({**CONFIG, "checks": checks or {}})
