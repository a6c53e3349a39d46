"""Quoting for the SQL agentwatch generates: data reaches DuckDB and SQLite only through these (or parameters)."""

from __future__ import annotations


def sql_string(value: str) -> str:
    """A SQL string literal; data never reaches SQL any other way."""
    return "'" + value.replace("'", "''") + "'"


def quote_identifier(identifier: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'
