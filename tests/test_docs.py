"""Documentation coverage: every CLI command and option, and every key of every format, is documented.

Commands and options may be documented in README.md or any docs/*.md file; the keys, flat column names,
value sets and vendor type mappings of the formats belong in docs/formats.md.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import typer.main
from pydantic import BaseModel

from agentwatch.app.cli import app
from agentwatch.collector.formats import hubspot, salesforce
from agentwatch.schemas import (
    ACTION_STATUSES,
    OUTCOME_KINDS,
    ActionError,
    ActionEvent,
    Approval,
    OutcomeEvent,
    Resource,
    SchemaField,
    SchemaSnapshot,
    SpanSummary,
)
from agentwatch.schemas.incidents import Incident
from agentwatch.schemas.jsonschema import FORMATS
from agentwatch.schemas.notifications import Notification
from agentwatch.store.datasets import ACTIONS, OUTCOMES, Dataset, Kind

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FORMATS_DOC = DOCS / "formats.md"

# Options typer adds to every application; they document themselves in --help.
TYPER_OPTIONS = frozenset({"--help", "--install-completion", "--show-completion"})
KEY_TABLES = {"action_event.v1": ActionEvent, "outcome_event.v1": OutcomeEvent, "schema_snapshot.v1": SchemaSnapshot,
              "incident.v1": Incident, "notification.v1": Notification, "span_summary.v1": SpanSummary}
FORMAT_MODELS = {ActionEvent, OutcomeEvent, SchemaSnapshot, SchemaField, Resource, Approval, ActionError, Incident,
                 Notification, SpanSummary}


# -- reading the docs ----------------------------------------------------------------------------


def doc_files() -> list[Path]:
    """README.md (once it exists) and every docs/*.md file."""
    return ([README] if README.exists() else []) + sorted(DOCS.glob("*.md"))


def sections(markdown: str, name: str) -> Iterator[tuple[str, str]]:
    """(title, text) of each part of a markdown file between two headings (fenced code is not a heading)."""
    title, lines, fenced = f"{name} (top)", [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6}\s", line):
            yield title, "\n".join(lines)
            title, lines = f"{name}: {line.lstrip('#').strip()}", []
        lines.append(line)
    yield title, "\n".join(lines)


def mentions(text: str, words: str) -> bool:
    """Whether `words` (a command or an option) appears in `text` as a whole, not inside a longer name."""
    return re.search(rf"(?<![\w-]){re.escape(words)}(?![\w-])", text) is not None


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in `text` (header and separator rows included)."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.lstrip().startswith("|")]


def key_table(text: str, name: str) -> list[list[str]] | None:
    """The rows of the table that follows ``<!-- keys: name -->``, without its header; None if absent."""
    match = re.search(rf"^<!-- keys: {re.escape(name)} -->\n((?:\|.*\n?)+)", text, re.M)
    return table_rows(match.group(1))[2:] if match else None


# -- what there is to document -------------------------------------------------------------------


def cli_commands() -> list[tuple[str, list[str]]]:
    """("agentwatch ingest actions", its options) for every command and group of the CLI, root first."""
    found: list[tuple[str, list[str]]] = []

    def walk(command: typing.Any, path: str) -> None:
        options = [opt for param in command.params if param.param_type_name == "option" and not param.hidden
                   for opt in (*param.opts, *param.secondary_opts) if opt not in TYPER_OPTIONS]
        found.append((path, options))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            if not getattr(sub, "hidden", False):
                walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "agentwatch")
    return found


def nested_models(annotation: typing.Any) -> Iterator[tuple[type[BaseModel], bool]]:
    """The models inside a field's annotation, each with whether it sits in a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
        return
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        for model, in_list in nested_models(arg):
            yield model, in_list or origin is list


def key_paths(model: type[BaseModel], prefix: str = "", seen: set[type[BaseModel]] | None = None) -> list[str]:
    """Every key of a format as it is written in JSON: `resource.type`, `fields[].name`, `from` (by alias)."""
    if seen is not None:
        seen.add(model)
    paths = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        paths.append(key)
        for sub, in_list in nested_models(info.annotation):
            paths += key_paths(sub, f"{key}[]." if in_list else f"{key}.", seen)
    return paths


def flat_column_names(dataset: Dataset) -> list[str]:
    """Every column name the flat CSV/Parquet layout accepts for a dataset's keys."""
    names = []
    for spec in dataset.fields:
        if spec.kind is Kind.STRUCT:
            names += [n for sub in spec.subfields for n in (sub.column_name, sub.key, f"{spec.key}.{sub.key}")]
        else:
            names += [spec.column_name, spec.key]
    return list(dict.fromkeys(names))


@cache
def formats_doc() -> str:
    return FORMATS_DOC.read_text(encoding="utf-8")


# -- the tests -----------------------------------------------------------------------------------


def test_docs_exist() -> None:
    """docs/formats.md exists, so the coverage tests below have something to read."""
    assert FORMATS_DOC.is_file(), "docs/formats.md is missing"


def test_every_command_is_documented() -> None:
    """Every command and subcommand of the CLI is named (as `agentwatch ...`) in README.md or docs/*.md."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in doc_files())
    missing = [path for path, _ in cli_commands()[1:] if not mentions(text, path)]
    assert not missing, (
        "commands not documented in README.md or docs/*.md (name each as written here):\n  "
        + "\n  ".join(missing)
    )


def test_every_option_is_documented_with_its_command() -> None:
    """Every option of every command appears in a docs section (heading to heading) that names that command."""
    parts = [text for path in doc_files() for _, text in sections(path.read_text(encoding="utf-8"), path.name)]
    missing = [
        f"{command} {option}"
        for command, options in cli_commands()
        for option in options
        if not any(mentions(text, command) and mentions(text, option) for text in parts)
    ]
    assert not missing, (
        "options not documented: for each, README.md or a docs/*.md file needs a section (the text between "
        "two headings) that names both the command and the option:\n  " + "\n  ".join(missing)
    )


def test_key_tables_cover_every_format_model() -> None:
    """The key tables of docs/formats.md reach every format model, so no model's keys go unchecked."""
    seen: set[type[BaseModel]] = set()
    for model in KEY_TABLES.values():
        key_paths(model, seen=seen)
    assert seen == FORMAT_MODELS, f"models outside the key tables: {FORMAT_MODELS ^ seen}"
    assert set(KEY_TABLES) == set(FORMATS), "every published format needs a key table"


def test_every_format_key_is_in_its_key_table() -> None:
    """Each format's key table in docs/formats.md lists exactly its keys, nested ones included (`resource.id`)."""
    problems = []
    for name, model in KEY_TABLES.items():
        rows = key_table(formats_doc(), name)
        if rows is None:
            problems.append(f"{name}: no table after <!-- keys: {name} -->")
            continue
        documented = [row[0] for row in rows]
        expected = [f"`{path}`" for path in key_paths(model)]
        problems += [f"{name}: key {key} is not in the table" for key in expected if key not in documented]
        problems += [f"{name}: the table lists {key}, which is not a key of the format"
                     for key in documented if key not in expected]
    assert not problems, "docs/formats.md key tables are out of date:\n  " + "\n  ".join(problems)


def test_every_flat_column_name_is_documented() -> None:
    """Every column name the flat CSV/Parquet layout accepts appears, in backticks, in docs/formats.md."""
    missing = [f"{dataset.name}: `{name}`" for dataset in (ACTIONS, OUTCOMES) for name in flat_column_names(dataset)
               if f"`{name}`" not in formats_doc()]
    assert not missing, "flat layout column names missing from docs/formats.md:\n  " + "\n  ".join(missing)


def test_every_status_and_outcome_kind_is_documented() -> None:
    """Every action status and outcome kind is a row of a table in docs/formats.md."""
    first_cells = {row[0] for row in table_rows(formats_doc())}
    missing = [value for value in (*ACTION_STATUSES, *OUTCOME_KINDS) if f"`{value}`" not in first_cells]
    assert not missing, f"statuses or outcome kinds without a row in docs/formats.md: {missing}"


def test_vendor_type_mappings_are_documented() -> None:
    """Each Salesforce and HubSpot type mapping is a row of a mapping table in docs/formats.md."""
    mappings = [
        *(("salesforce", source, common) for source, common in salesforce._TYPE_MAP.items()),
        *(("hubspot", source, common) for source, common in hubspot._TYPE_MAP.items()),
        *(("hubspot", field_type, common) for field_type, common in hubspot._ENUMERATION_FIELD_TYPES.items()),
    ]
    rows = [row for row in table_rows(formats_doc()) if len(row) >= 2]
    missing = [
        f"{vendor}: {source} -> {common}"
        for vendor, source, common in mappings
        if not any(f"`{source}`" in row[0].lower() and row[-1] == f"`{common}`" for row in rows)
    ]
    assert not missing, "type mappings missing from docs/formats.md tables:\n  " + "\n  ".join(missing)


def test_schema_files_are_named_in_formats_doc() -> None:
    """docs/formats.md says where the JSON Schema file of every format is."""
    missing = [name for name in FORMATS if f"schemas/json/{name}.schema.json" not in formats_doc()]
    assert not missing, f"JSON Schema files not named in docs/formats.md: {missing}"


def test_section_reader_ignores_headings_in_code() -> None:
    """A `#` comment inside a fenced shell block does not start a new section."""
    sample = "## One\n```shell\n# a comment\nagentwatch status --json\n```\n## Two\n"
    assert [title for title, _ in sections(sample, "x.md")] == ["x.md (top)", "x.md: One", "x.md: Two"]


def test_every_alerts_setting_is_documented() -> None:
    """Every key of the alerts: and guard: config sections is in docs/alerts.md's key table, and every destination
    key is named in its Destinations section."""
    from agentwatch.alerts.config import AlertsConfig, DeliveryConfig, GuardConfig, Route
    from agentwatch.alerts.destinations import AnyDestination

    text = (DOCS / "alerts.md").read_text(encoding="utf-8")
    rows = {row[0] for row in table_rows(text)}
    expected = [f"`alerts.{name}`" for name in AlertsConfig.model_fields]
    expected += [f"`alerts.routes[].{info.alias or name}`" for name, info in Route.model_fields.items()]
    expected += [f"`alerts.delivery.{name}`" for name in DeliveryConfig.model_fields]
    expected += [f"`guard.{name}`" for name in GuardConfig.model_fields]
    missing = [key for key in expected if key not in rows]
    destinations = dict(sections(text, "alerts.md"))["alerts.md: Destinations"]
    missing += [f"destination key {name}" for model in typing.get_args(AnyDestination)
                for name in model.model_fields if not mentions(destinations, name)]
    assert not missing, "docs/alerts.md does not document: " + ", ".join(missing)


def test_every_limit_is_documented_with_its_default() -> None:
    """docs/reliability.md's bounds table has a row `limits.<name>` per setting, giving its default."""
    from agentwatch.core.limits import Limits

    rows = {row[0]: row for row in table_rows((DOCS / "reliability.md").read_text(encoding="utf-8"))}
    problems = []
    for name, info in Limits.model_fields.items():
        row = rows.get(f"`limits.{name}`")
        if row is None:
            problems.append(f"limits.{name} has no row")
        elif str(int(info.default)) not in " ".join(row[1:]).replace(",", ""):
            problems.append(f"limits.{name}: its row does not give the default {info.default}")
    assert not problems, "docs/reliability.md: " + "; ".join(problems)


def test_client_md_shows_the_example_agent_file_as_it_is() -> None:
    """The fenced block after `<!-- example: PATH -->` in docs/client.md is PATH's whole text (tests/test_client.py
    runs the file against a real server), so the documented agent is one that runs."""
    text = (DOCS / "client.md").read_text(encoding="utf-8")
    examples = re.findall(r"^<!-- example: (\S+) -->\n```python\n(.*?)^```$", text, re.M | re.S)
    assert [path for path, _ in examples] == ["docs/examples/lead_router_agent.py"]
    for path, block in examples:
        assert block == (ROOT / path).read_text(encoding="utf-8"), f"docs/client.md's copy of {path} is stale"
