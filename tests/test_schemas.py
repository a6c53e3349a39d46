"""The committed JSON Schema files are current, and the examples in docs/formats.md are valid as documented.

An example in docs/formats.md is a fenced block (```json, ```jsonl or ```csv) right after a marker comment:

- ``<!-- example: action_event.v1 -->`` (or ``outcome_event.v1``, ``schema_snapshot.v1``): events or
  snapshots in that format, each of which must validate with the format's pydantic model;
- ``<!-- example: salesforce_describe -->`` / ``hubspot_properties``: a vendor payload, which must map onto
  the snapshot marked ``<!-- example: schema_snapshot.v1 from salesforce_describe -->`` (or hubspot);
- ``<!-- example: reject -->``: a line of a rejects file, which must be what ingest writes for its ``raw``.
"""

from __future__ import annotations

import json
import re
import typing
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from agentwatch.collector.ingest.pipeline import ingest_files
from agentwatch.collector.ingest.rejects import Rejection, RejectLog, explain, guess_event_id
from agentwatch.collector.ingest.snapshots import parse_snapshot
from agentwatch.collector.ingest.sources import read_source
from agentwatch.core.home import Home
from agentwatch.schemas import SchemaSnapshot
from agentwatch.schemas.jsonschema import FORMATS, JSON_DIR, render
from agentwatch.store.datasets import ACTIONS, DATASETS, OUTCOMES

ROOT = Path(__file__).resolve().parents[1]
FORMATS_DOC = ROOT / "docs" / "formats.md"
EVENT_DATASETS = {"action_event.v1": ACTIONS, "outcome_event.v1": OUTCOMES}
VENDOR_FORMATS = {"salesforce_describe": "salesforce", "hubspot_properties": "hubspot"}
SUFFIXES = {"json": ".json", "jsonl": ".jsonl", "csv": ".csv"}

_EXAMPLE = re.compile(
    r"^<!-- example: (?P<name>[\w.]+)(?: from (?P<origin>\w+))? -->\n```(?P<lang>\w*)\n(?P<body>.*?)^```$",
    re.M | re.S,
)


@dataclass(frozen=True)
class Example:
    """One marked example of docs/formats.md."""

    name: str  # a format of agentwatch.schemas.jsonschema.FORMATS, a vendor payload, or "reject"
    origin: str | None  # for a snapshot: the vendor payload example it is mapped from
    lang: str  # json, jsonl or csv
    body: str
    line: int  # line of the marker in docs/formats.md

    @property
    def where(self) -> str:
        return f"docs/formats.md line {self.line} ({self.name} example)"


@cache
def examples() -> tuple[Example, ...]:
    text = FORMATS_DOC.read_text(encoding="utf-8")
    return tuple(
        Example(m["name"], m["origin"], m["lang"], m["body"], text.count("\n", 0, m.start()) + 1)
        for m in _EXAMPLE.finditer(text)
    )


def examples_of(name: str) -> list[Example]:
    return [example for example in examples() if example.name == name]


def the_example(name: str, origin: str | None = None) -> Example:
    found = [e for e in examples() if e.name == name and e.origin == origin]
    marker = f"<!-- example: {name}{f' from {origin}' if origin else ''} -->"
    assert len(found) == 1, f"docs/formats.md needs exactly one {marker} block; found {len(found)}"
    return found[0]


def texts(example: Example, tmp_path: Path) -> list[str]:
    """The JSON text of each event or snapshot in an example, as ingest would hand it to the model."""
    if example.lang == "json":
        value = json.loads(example.body)
        return [json.dumps(item) for item in (value if isinstance(value, list) else [value])]
    if example.lang == "jsonl":
        return [line for line in example.body.splitlines() if line.strip()]
    if example.lang == "csv":
        path = tmp_path / f"example-{example.line}.csv"
        path.write_text(example.body, encoding="utf-8")
        return [text for chunk in read_source(path, EVENT_DATASETS[example.name], "csv")
                for text in chunk.texts.to_pylist()]
    raise AssertionError(f"{example.where}: unknown block type {example.lang!r}; use json, jsonl or csv")


def used_keys(item: Any, prefix: str = "") -> set[str]:
    """The key paths an example uses, written as in the docs' key tables: `resource.id`, `fields[].name`,
    `incidents[].id`."""
    keys: set[str] = set()
    for key, value in item.items():
        keys.add(prefix + key)
        if isinstance(value, dict) and key in ("resource", "approval", "error"):
            keys |= used_keys(value, f"{prefix}{key}.")
        elif isinstance(value, list) and key in ("fields", "incidents"):
            for element in value:
                keys |= used_keys(element, f"{prefix}{key}[].")
    return keys


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path of a format model, by alias (`from`, not `from_`)."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        keys.add(key)
        annotation = info.annotation
        in_list = typing.get_origin(annotation) is list
        for sub in (annotation, *typing.get_args(annotation)):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                keys |= model_keys(sub, f"{key}[]." if in_list else f"{key}.")
    return keys


# -- JSON Schema files ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_committed_schema_file_is_current(name: str) -> None:
    """The committed schemas/json file of a format is exactly what the pydantic model renders now."""
    path = JSON_DIR / f"{name}.schema.json"
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing: run `make schemas` and commit the result"
    assert path.read_text(encoding="utf-8") == render(name), (
        f"{path.relative_to(ROOT)} is out of date with the pydantic models in schemas/: run `make schemas` "
        "and commit the result"
    )


def test_schema_folder_holds_only_generated_files() -> None:
    """schemas/json holds one generated file per format and nothing stale."""
    present = sorted(path.name for path in JSON_DIR.glob("*.json"))
    assert present == sorted(f"{name}.schema.json" for name in FORMATS), (
        "schemas/json does not match agentwatch.schemas.jsonschema.FORMATS: remove stale files and run `make schemas`"
    )


# -- the examples of docs/formats.md -------------------------------------------------------------


def test_every_example_marker_is_known() -> None:
    """Every example marker in docs/formats.md names a format, a vendor payload or the reject line."""
    known = {*FORMATS, *VENDOR_FORMATS, "reject"}
    unknown = [example.where for example in examples() if example.name not in known]
    assert not unknown, f"example markers naming nothing this test knows: {unknown}"
    text = FORMATS_DOC.read_text(encoding="utf-8")
    assert text.count("<!-- example:") == len(examples()), "an example marker is not right before a fenced block"


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_documented_examples_validate(name: str, tmp_path: Path) -> None:
    """Every example of a format in docs/formats.md validates with the format's pydantic model."""
    model = FORMATS[name]
    assert examples_of(name), f"docs/formats.md has no <!-- example: {name} --> block"
    failures = []
    for example in examples_of(name):
        for number, text in enumerate(texts(example, tmp_path), start=1):
            problems = explain(model, text)
            if problems:
                failures.append(f"{example.where}, item {number}: " + "; ".join(
                    f"{p.field}: {p.message}" if p.field else p.message for p in problems))
    assert not failures, "invalid examples in docs/formats.md:\n  " + "\n  ".join(failures)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_examples_use_every_key(name: str, tmp_path: Path) -> None:
    """Together, the examples of a format in docs/formats.md show every key of the format at least once."""
    used: set[str] = set()
    for example in examples_of(name):
        for text in texts(example, tmp_path):
            used |= used_keys(json.loads(text))
    missing = sorted(model_keys(FORMATS[name]) - used)
    assert not missing, f"no example in docs/formats.md shows these {name} keys: {missing}"


@pytest.mark.parametrize("name", sorted(EVENT_DATASETS))
def test_documented_event_examples_ingest_cleanly(name: str, tmp_path: Path) -> None:
    """The event examples of docs/formats.md go through the real file ingest with nothing rejected."""
    folder = tmp_path / "examples"
    folder.mkdir()
    for example in examples_of(name):
        (folder / f"example-{example.line}{SUFFIXES[example.lang]}").write_text(example.body, encoding="utf-8")
    expected = sum(len(texts(example, tmp_path)) for example in examples_of(name))
    report = ingest_files(Home.resolve(tmp_path / "home"), EVENT_DATASETS[name], [folder])
    problems = [rejection.describe() for rejection in report.sample]
    assert report.rejected == 0, f"ingest rejected documented {name} examples:\n  " + "\n  ".join(problems)
    assert (report.accepted, report.duplicates) == (expected, 0), "documented examples must have distinct event_ids"


@pytest.mark.parametrize("vendor", sorted(VENDOR_FORMATS))
def test_vendor_example_maps_to_documented_snapshot(vendor: str) -> None:
    """A documented Salesforce or HubSpot payload maps onto exactly the snapshot documented after it."""
    payload = json.loads(the_example(vendor).body)
    documented = SchemaSnapshot.model_validate_json(the_example("schema_snapshot.v1", vendor).body)
    object_name = documented.object if vendor == "hubspot_properties" else None
    mapped = parse_snapshot(payload, VENDOR_FORMATS[vendor], documented.taken_at, object_name)
    assert mapped == documented, (
        f"docs/formats.md: the {vendor} example maps to\n{mapped.model_dump_json(indent=2, exclude_none=True)}"
    )


def test_documented_reject_line_is_what_ingest_writes(tmp_path: Path) -> None:
    """The rejects-file line in docs/formats.md has the keys ingest writes, and the errors it finds in `raw`."""
    documented = json.loads(the_example("reject").body)
    raw = documented["raw"]
    errors = explain(DATASETS[documented["dataset"]].model, raw)
    log = RejectLog(tmp_path, documented["dataset"])
    log.write([Rejection(documented["source"], documented["unit"], documented["number"], guess_event_id(raw),
                         errors, raw)])
    assert log.written is not None
    written = json.loads(log.written.read_text(encoding="utf-8"))
    assert list(written) == list(documented), "the documented reject line has other keys than ingest writes"
    assert written["errors"] == documented["errors"], "the documented errors are not what the model says"
    assert written["event_id"] == documented["event_id"]
    assert datetime.fromisoformat(documented["rejected_at"]).utcoffset() is not None
