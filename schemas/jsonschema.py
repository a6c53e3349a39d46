"""Generate the JSON Schema file of every format: ``python -m agentwatch.schemas.jsonschema``."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from agentwatch.schemas.actions import ActionEvent
from agentwatch.schemas.incidents import Incident
from agentwatch.schemas.notifications import Notification
from agentwatch.schemas.outcomes import OutcomeEvent
from agentwatch.schemas.snapshots import SchemaSnapshot
from agentwatch.schemas.spans import SpanSummary

JSON_DIR = Path(__file__).parent / "json"

FORMATS: dict[str, type[BaseModel]] = {
    "action_event.v1": ActionEvent,
    "outcome_event.v1": OutcomeEvent,
    "incident.v1": Incident,
    "notification.v1": Notification,
    "schema_snapshot.v1": SchemaSnapshot,
    "span_summary.v1": SpanSummary,
}


def render(name: str) -> str:
    """The JSON Schema text of one format, as it is published."""
    schema = FORMATS[name].model_json_schema(by_alias=True)
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://agentwatch.dev/schemas/{name}.schema.json",
        **schema,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    """Write every format's schema file; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in FORMATS:
        path = directory / f"{name}.schema.json"
        path.write_text(render(name))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_all():
        print(written)
