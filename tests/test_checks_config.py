"""agentwatch.yaml: loading, errors that name the file, line and key path, policies, fields, per-check options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentwatch.app.config import Config, load_config
from agentwatch.checks.config import AgentPolicy, pattern_specificity
from agentwatch.checks.null_spike import NullSpikeOptions
from agentwatch.checks.options import options_for
from agentwatch.core.errors import ConfigError

ISSUE_EXAMPLE = """\
agents:
  "*":            {forbidden_actions: [record.delete, record.merge]}
  lead-router:    {allowed_actions: [lead.route, lead.assign_owner, crm.update_field, task.create],
                   requires_approval: [email.send], max_records_per_action: 5}
workflow:
  object: lead
  state_field: status          # read from before/after
  transitions: {new: [enriched, disqualified], enriched: [qualified, disqualified], qualified: [routed, escalated]}
  sla_first_action_minutes: 15
fields:          # optional: agent input keys that name a CRM field differently
  region: Account.Region__c
checks: {}   # per-check thresholds and on/off; every default is written in docs/checks.md with its reason
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentwatch.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    """The message load_config raises for `text`; it must be one line."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def line_and_key(message: str) -> tuple[int, str | None]:
    match = re.search(r" line (\d+)(?: \(([^)]*)\))?:", message)
    assert match, message
    return int(match.group(1)), match.group(2)


def test_the_issue_example_loads(tmp_path: Path) -> None:
    """The example config of the issue loads with every section as written."""
    config = load_config(write(tmp_path, ISSUE_EXAMPLE))
    assert config.agents["*"].forbidden_actions == ["record.delete", "record.merge"]
    router = config.agents["lead-router"]
    assert router.allowed_actions == ["lead.route", "lead.assign_owner", "crm.update_field", "task.create"]
    assert router.requires_approval == ["email.send"] and router.max_records_per_action == 5
    assert config.workflow is not None
    assert (config.workflow.object, config.workflow.state_field, config.workflow.sla_first_action_minutes) == \
        ("lead", "status", 15)
    assert config.workflow.transitions["qualified"] == ["routed", "escalated"]
    assert config.fields == {"region": "Account.Region__c"}
    assert config.checks == {}


def test_no_file_or_an_empty_file_means_every_default(tmp_path: Path) -> None:
    """A missing path, None and an empty file all give the default config."""
    assert load_config(None) == Config()
    assert load_config(tmp_path / "missing.yaml") == Config()
    assert load_config(write(tmp_path, "# nothing configured yet\n")) == Config()


@pytest.mark.parametrize(("text", "line", "key", "first"), [
    ("agents:\n  lead-router: {max_records_per_action: 5}\n  lead-router: {max_records_per_action: 50}\n", 3,
     "agents.lead-router", 2),
    ("checks: {}\nalerts: {}\nchecks: {quality.null_spike: {enabled: false}}\n", 3, "checks", 1),
    ("fields: {region: A.Region, region: B.Region}\n", 1, "fields.region", 1),
])
def test_a_duplicate_key_is_refused_naming_both_places(tmp_path: Path, text: str, line: int, key: str,
                                                       first: int) -> None:
    """A key written twice in one mapping (YAML would silently keep the last) names its line and the first."""
    message = error_of(tmp_path, text)
    assert line_and_key(message) == (line, key)
    assert f"duplicate key {key.rsplit('.', 1)[-1]!r} (first given on line {first})" in message, message


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    """YAML that does not parse is reported with the line of the problem."""
    message = error_of(tmp_path, "agents:\n  lead-router: {allowed_actions: [lead.route}\n")
    assert line_and_key(message)[0] == 2 and "not valid YAML" in message


def test_a_config_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    """A YAML list at the top is refused, saying a mapping is expected."""
    message = error_of(tmp_path, "- agents\n- checks\n")
    assert line_and_key(message)[0] == 1 and "mapping" in message


def test_wrong_type_names_line_and_key_path(tmp_path: Path) -> None:
    """A string where an integer belongs names its line and agents.<agent>.<key>."""
    text = 'agents:\n  "*": {forbidden_actions: [record.delete]}\n  lead-router:\n    max_records_per_action: five\n'
    message = error_of(tmp_path, text)
    assert line_and_key(message) == (4, "agents.lead-router.max_records_per_action")
    assert "integer" in message


def test_out_of_range_value_names_its_line(tmp_path: Path) -> None:
    """max_records_per_action: 0 is refused (at least 1) on its own line."""
    message = error_of(tmp_path, "agents:\n  lead-router:\n    allowed_actions: [lead.route]\n"
                                 "    max_records_per_action: 0\n")
    assert line_and_key(message) == (4, "agents.lead-router.max_records_per_action")


def test_a_bad_list_item_names_its_line_and_index(tmp_path: Path) -> None:
    """A mapping inside a list of action names is reported at its own line, with its index."""
    message = error_of(tmp_path, "agents:\n  x:\n    forbidden_actions:\n      - record.delete\n      - {b: 1}\n")
    assert line_and_key(message) == (5, "agents.x.forbidden_actions.1")


@pytest.mark.parametrize(("text", "line", "key"), [
    ("agents: {}\n\nworkflows:\n  object: lead\n", 3, "workflows"),
    ("agents:\n  lead-router:\n    allowed_actions: [a]\n    alowed: [b]\n", 4, "agents.lead-router.alowed"),
    ("workflow:\n  object: lead\n  sla_minutes: 15\n", 3, "workflow.sla_minutes"),
])
def test_unknown_key_names_line_and_key_path(tmp_path: Path, text: str, line: int, key: str) -> None:
    """A misspelt key anywhere is refused at its line with its full key path."""
    message = error_of(tmp_path, text)
    assert line_and_key(message) == (line, key) and "not permitted" in message


def test_unknown_check_name_lists_the_known_ones(tmp_path: Path) -> None:
    """A check name under checks: that no check has is refused at its line, listing the real names."""
    message = error_of(tmp_path, "checks:\n  quality.null_spike: {}\n  quality.nul_spike: {threshold: 3}\n")
    assert line_and_key(message) == (3, "checks.quality.nul_spike")
    assert "no check has this name" in message and "quality.null_spike" in message


def test_invalid_option_of_a_check_names_line_and_option(tmp_path: Path) -> None:
    """quality.null_spike: {threshold: -1} is refused at its line, naming the option."""
    message = error_of(tmp_path, "checks:\n  schema.field_renamed: {}\n  quality.null_spike: {threshold: -1}\n")
    assert line_and_key(message) == (3, "checks.quality.null_spike.threshold")
    assert "greater than 0" in message


def test_invalid_option_in_block_style_names_the_options_own_line(tmp_path: Path) -> None:
    """In block style the error points at the option's own line."""
    message = error_of(tmp_path, "checks:\n  quality.null_spike:\n    enabled: true\n    threshold: -1\n")
    assert line_and_key(message) == (4, "checks.quality.null_spike.threshold")


def test_unknown_option_of_a_check_is_refused(tmp_path: Path) -> None:
    """A misspelt option of a known check is refused at its line."""
    message = error_of(tmp_path, "checks:\n  quality.null_spike:\n    thresh: 3\n")
    assert line_and_key(message) == (3, "checks.quality.null_spike.thresh")


def test_check_options_override_defaults(tmp_path: Path) -> None:
    """Options in checks: override that check's defaults; the others keep theirs."""
    config = load_config(write(tmp_path, "checks:\n  quality.null_spike: {threshold: 4, enabled: false}\n"))
    options = options_for(config, "quality.null_spike")
    assert isinstance(options, NullSpikeOptions)
    assert options.threshold == 4 and options.enabled is False
    assert options.baseline_days == NullSpikeOptions().baseline_days
    assert options_for(config, "schema.field_renamed").enabled is True


def test_fields_accept_object_dot_field(tmp_path: Path) -> None:
    """fields: maps an input key to Object.Field."""
    config = load_config(write(tmp_path, "fields:\n  region: Account.Region__c\n  stage: Opportunity.StageName\n"))
    assert config.fields == {"region": "Account.Region__c", "stage": "Opportunity.StageName"}


@pytest.mark.parametrize("target", ["deal_stage", "Account.", ".Region__c", "Account.Region.Extra"])
def test_fields_refuse_anything_but_object_dot_field(tmp_path: Path, target: str) -> None:
    """A fields: value that is not Object.Field is refused at its own line, naming the key."""
    message = error_of(tmp_path, f"fields:\n  region: Account.Region__c\n  stage: '{target}'\n")
    assert line_and_key(message) == (3, "fields.stage")
    assert "Object.Field" in message


def test_an_agent_entry_extends_the_star_entry() -> None:
    """policy_for joins the lists of "*" and the agent's entry, and the agent's single values override."""
    config = Config.model_validate({"agents": {
        "*": {"forbidden_actions": ["record.delete"], "requires_approval": ["email.send"],
              "max_records_per_action": 50, "allowed_actions": ["task.create"]},
        "lead-router": {"forbidden_actions": ["record.merge"], "requires_approval": ["sequence.enroll"],
                        "max_records_per_action": 5, "allowed_actions": ["lead.route"]},
    }})
    router = config.policy_for("lead-router")
    assert router.forbidden_actions == ["record.delete", "record.merge"]
    assert router.requires_approval == ["email.send", "sequence.enroll"]
    assert router.allowed_actions == ["lead.route", "task.create"]
    assert router.max_records_per_action == 5


def test_an_agent_without_an_entry_gets_the_star_policy() -> None:
    """An agent the config does not name gets "*" as is; with no "*" either, an empty policy."""
    config = Config.model_validate({"agents": {"*": {"forbidden_actions": ["record.delete"]}}})
    assert config.policy_for("qualifier") == config.agents["*"]
    assert Config().policy_for("qualifier") == AgentPolicy()


def test_single_values_fall_back_to_the_star_entry() -> None:
    """An agent entry that leaves max_records_per_action and allowed_actions unset inherits them from "*"."""
    config = Config.model_validate({"agents": {
        "*": {"max_records_per_action": 20, "allowed_actions": ["task.create"]},
        "qualifier": {"forbidden_actions": ["email.send"]},
    }})
    policy = config.policy_for("qualifier")
    assert policy.max_records_per_action == 20 and policy.allowed_actions == ["task.create"]
    assert policy.forbidden_actions == ["email.send"]


def test_allowed_actions_stay_unset_when_nobody_sets_them() -> None:
    """No allowed_actions in "*" nor the agent means every action is allowed (None), not an empty list."""
    config = Config.model_validate({"agents": {"*": {"forbidden_actions": ["a"]}, "x": {"forbidden_actions": ["b"]}}})
    assert config.policy_for("x").allowed_actions is None


def test_min_confidence_loads_as_a_number_or_a_map(tmp_path: Path) -> None:
    """min_confidence is one number for every action, or action pattern -> number; require_confidence a boolean."""
    config = load_config(write(tmp_path, 'agents:\n  "*": {min_confidence: 0.5}\n'
                                         '  lead-router:\n    min_confidence: {"email.*": 0.8, lead.assign_owner: 1}\n'
                                         '    require_confidence: true\n'))
    assert config.agents["*"].min_confidence == 0.5
    assert config.agents["*"].confidence_thresholds() == {"*": 0.5}
    assert config.agents["lead-router"].min_confidence == {"email.*": 0.8, "lead.assign_owner": 1.0}
    assert config.agents["lead-router"].require_confidence is True


@pytest.mark.parametrize(("text", "line", "key", "says"), [
    ("agents:\n  x:\n    min_confidence: 1.5\n", 3, "agents.x.min_confidence", "min_confidence should be a number"),
    ("agents:\n  x:\n    min_confidence: {'email.*': -0.1}\n", 3, "agents.x.min_confidence",
     "min_confidence 'email.*' should be a number from 0 to 1"),
    ("agents:\n  x:\n    min_confidence: {'email.*': high}\n", 3, "agents.x.min_confidence", "'email.*'"),
    ("agents:\n  x:\n    min_confidence: true\n", 3, "agents.x.min_confidence", "not True"),
    ("agents:\n  x:\n    min_confidence: {'': 0.5}\n", 3, "agents.x.min_confidence", "empty action pattern"),
    ("agents:\n  x:\n    min_confidence: 0.5\n    require_confidence: sometimes\n", 4,
     "agents.x.require_confidence", "boolean"),
])
def test_a_bad_confidence_setting_names_its_line_and_key(tmp_path: Path, text: str, line: int, key: str,
                                                         says: str) -> None:
    """A threshold outside [0, 1] (or not a number), an empty pattern, a require_confidence that is no boolean: each is
    refused at its line, naming the key and, in a map, the pattern."""
    message = error_of(tmp_path, text)
    assert line_and_key(message) == (line, key)
    assert says in message, message


def test_confidence_settings_extend_the_star_entry() -> None:
    """An agent's map overrides "*"'s pattern by pattern (a "*" number is its "*" pattern); its number replaces
    "*"'s thresholds; its require_confidence overrides when set, else "*"'s holds."""
    config = Config.model_validate({"agents": {
        "*": {"min_confidence": {"*": 0.5, "email.*": 0.9}, "require_confidence": True},
        "lead-router": {"min_confidence": {"email.*": 0.7, "lead.*": 0.6}, "require_confidence": False},
        "scorer": {"min_confidence": 0.2},
        "intake": {"forbidden_actions": ["record.delete"]},
    }})
    router = config.policy_for("lead-router")
    assert router.confidence_thresholds() == {"*": 0.5, "email.*": 0.7, "lead.*": 0.6}
    assert router.require_confidence is False
    scorer = config.policy_for("scorer")
    assert scorer.min_confidence == 0.2 and scorer.require_confidence is True
    assert config.policy_for("intake").confidence_thresholds() == {"*": 0.5, "email.*": 0.9}
    numbered = Config.model_validate({"agents": {"*": {"min_confidence": 0.4},
                                                 "x": {"min_confidence": {"email.*": 0.8}}}})
    assert numbered.policy_for("x").confidence_thresholds() == {"*": 0.4, "email.*": 0.8}
    assert numbered.policy_for("x").require_confidence is None  # nobody set it: a missing confidence is not judged


def test_the_most_specific_confidence_key_is_an_exact_name_then_the_longest_pattern() -> None:
    """pattern_specificity orders the keys the policy rollup's SQL picks from."""
    assert pattern_specificity("email.send") > pattern_specificity("email.send*") > pattern_specificity("email.*")
    assert pattern_specificity("email.*") > pattern_specificity("*")
    assert pattern_specificity("email.?end") == len("email.?end")
