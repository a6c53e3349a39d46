"""Every check, through one shared test: named as the issue names it, documented, quiet on an empty store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from agentwatch.checks.base import REGISTRY, CheckOptions
from agentwatch.checks.catalog import load_all
from agentwatch.checks.docs import DOCS_PATH, render

from tests.checks_support import T0, run

load_all()

ISSUE_CHECK_NAMES = {
    "schema.field_renamed", "schema.field_removed", "schema.field_added", "schema.type_changed",
    "schema.picklist_changed", "quality.null_spike", "quality.expectation_failed", "quality.duplicate",
    "volume.action_spike", "volume.action_drop", "errors.error_burst", "drift.distribution",
    "policy.forbidden_action", "policy.not_allowed", "policy.unapproved_action", "policy.bulk_limit",
    "workflow.invalid_transition", "workflow.sla_breach", "workflow.partial_failure",
    "outcome.routing_accuracy_drop", "outcome.requalification_spike", "outcome.calibration",
    "policy.human_threshold",  # issue 4's human notification threshold
}


def test_every_check_the_issue_names_is_registered():
    """The check names are part of the interface: each one the issues name exists, and no other."""
    assert set(REGISTRY) == ISSUE_CHECK_NAMES


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_check_is_named_for_its_family_and_explains_itself(name):
    """A check's name starts with its family, it has a docstring, and every option has a default and a reason."""
    check = REGISTRY[name]
    assert name.split(".")[0] == check.family
    assert (check.__doc__ or "").strip()
    assert issubclass(check.Options, CheckOptions)
    check.Options()  # every option has a valid default
    for option, info in check.Options.model_fields.items():
        assert info.description and len(info.description) > 15, f"{name}.{option} needs a description with a reason"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_check_refuses_unknown_options(name):
    """A misspelt option is an error, not silently ignored."""
    with pytest.raises(ValueError, match="extra"):
        REGISTRY[name].Options.model_validate({"treshold": 3})


def test_every_check_runs_quietly_on_an_empty_store(home):
    """With no events at all, no check fails and none fires."""
    report = run(home, T0, T0 + timedelta(hours=1))
    assert report.failures == {}
    assert report.opened == []


def test_docs_checks_md_is_current():
    """docs/checks.md lists every check and option as the code has them (run `python -m agentwatch.checks.docs`)."""
    assert DOCS_PATH.read_text(encoding="utf-8") == render()
