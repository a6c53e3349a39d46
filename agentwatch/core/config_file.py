"""Reading ``agentwatch.yaml``: YAML as plain Python, with the line of every key so a mistake names its place.

Each component validates its own sections; this module only reads the file and answers "where is key path X",
e.g. ``agentwatch.yaml line 7 (agents.lead-router.max_records_per_action)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from agentwatch.core.errors import ConfigError

KeyPath = tuple[str | int, ...]
Where = Callable[[KeyPath], str]  # key path -> "<file> line <n> (<dotted key path>)"


def read_config_file(path: Path) -> tuple[Any, Where]:
    """The file's content as plain Python (None when empty) and the function that locates a key path in it."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(f"{path} line {line}: not valid YAML: {exc.problem}") from None
    lines: dict[KeyPath, int] = {}
    data = _to_python(node, (), lines) if node is not None else None

    def where(loc: KeyPath) -> str:
        return f"{path} line {_line_of(loc, lines)} ({'.'.join(str(p) for p in loc) or 'top level'})"

    return data, where


def _line_of(loc: KeyPath, lines: dict[KeyPath, int]) -> int:
    """The line of the deepest known part of a key path (1-based)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _to_python(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> Any:
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
