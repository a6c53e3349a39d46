"""Reading ``agentwatch.yaml``: YAML as plain Python, with the line of every key so a mistake names its place.

Each component validates its own sections; this module only reads the file and answers "where is key path X",
e.g. ``agentwatch.yaml line 7 (agents.lead-router.max_records_per_action)``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
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

    def where(loc: KeyPath) -> str:
        return f"{path} line {_line_of(loc, lines)} ({'.'.join(str(p) for p in loc) or 'top level'})"

    data = _to_python(node, (), lines, where) if node is not None else None
    return data, where


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest of `choices` to a mistyped `word`, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _line_of(loc: KeyPath, lines: dict[KeyPath, int]) -> int:
    """The line of the deepest known part of a key path (1-based)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _to_python(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], where: Where) -> Any:
    """A YAML node as plain Python, noting the line of every key path; a key given twice in one mapping is
    refused (YAML loaders keep the last one silently, so a setting written twice would quietly lose one)."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in result:
                first = lines[(*path, key)]
                lines[(*path, key)] = key_node.start_mark.line + 1
                raise ConfigError(f"{where((*path, key))}: duplicate key {key!r} (first given on line {first}); "
                                  "keep one")
            result[key] = _to_python(value_node, (*path, key), lines, where)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines, where) for i, item in enumerate(node.value)]
    return yaml.SafeLoader("").construct_object(node)
