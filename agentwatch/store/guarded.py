"""A DuckDB connection over the store whose queries survive a damaged part.

It stands in for the ``duckdb.DuckDBPyConnection`` a reader gets from ``open_reader``: ``execute``, ``sql`` and
``query`` (and the relations they return, and its cursors) run through ``quarantine.survive_damage``, so a query
that fails on a damaged part quarantines it and runs once more over the rest. Before each of them the views are
listed again when ``store_version`` changed since they were built (``StoreViews``, shared by a connection and its
cursors), so a long-lived connection reads the parts that landed meanwhile and not the ones a compaction merged.
Everything else is the connection's own.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import duckdb

from agentwatch.core.home import Home
from agentwatch.store.partitions import store_version
from agentwatch.store.quarantine import survive_damage


class StoreViews:
    """The views of one connection and the store version they were built at; rebuilt when the version moved.

    With `names`, only a statement naming one of the views (as a whole word) rebuilds them: the checks' runs read
    mostly their own temporary views and tables, and under steady traffic the store changes every second, so
    checking before each of their queries rebuilt every view (a listing of every part) several times a run."""

    def __init__(self, home: Home, build: Callable[[duckdb.DuckDBPyConnection], None],
                 version: Callable[[Home], tuple] = store_version, names: Iterable[str] | None = None) -> None:
        self._home = home
        self._build = build
        self._version = version
        self._built: tuple | None = None
        self._lock = threading.Lock()  # cursors of one connection share its catalog: one rebuild at a time
        self._named = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b", re.IGNORECASE) if names else None
        self.builds = 0

    def read_by(self, statement: object) -> bool:
        """Whether `statement` may read the views (anything but SQL text naming none of them may). Names inside
        string literals and comments do not count: every part's path holds its dataset's name (``.../actions/...``),
        and each query of the checks' own day views rebuilt the store-wide ones (35 ms) while parts were landing."""
        if self._named is None or not isinstance(statement, str):
            return True
        return bool(self._named.search(_LITERALS_AND_COMMENTS.sub(" ", statement)))

    def refresh(self, con: duckdb.DuckDBPyConnection) -> None:
        """Rebuild the views on `con` when the store may have changed since they were built."""
        version = self._version(self._home)  # taken before listing: a change during the build shows next time
        if version == self._built:
            return
        with self._lock:
            if version != self._built:
                self._build(con)
                self._built = version
                self.builds += 1


_LITERALS_AND_COMMENTS = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.DOTALL)


def _statement(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    """The SQL a call of execute, sql or query runs (first positional, or `query=`)."""
    return args[0] if args else kwargs.get("query")


class GuardedConnection:
    """A connection (or cursor) over the store; see the module's docstring."""

    def __init__(self, con: duckdb.DuckDBPyConnection, home: Home, views: StoreViews | None = None) -> None:
        self._con = con
        self._home = home
        self._views = views

    def _fresh(self, statement: object) -> duckdb.DuckDBPyConnection:
        if self._views is not None and self._views.read_by(statement):
            self._views.refresh(self._con)
        return self._con

    def execute(self, *args: Any, **kwargs: Any) -> GuardedConnection:
        statement = _statement(args, kwargs)
        survive_damage(self._home, lambda: self._fresh(statement).execute(*args, **kwargs))
        return self  # as DuckDB's own: the result is fetched from the connection

    def sql(self, *args: Any, **kwargs: Any) -> GuardedRelation | None:
        statement = _statement(args, kwargs)
        return GuardedRelation.of(self._home, lambda: self._fresh(statement).sql(*args, **kwargs))

    def query(self, *args: Any, **kwargs: Any) -> GuardedRelation | None:
        statement = _statement(args, kwargs)
        return GuardedRelation.of(self._home, lambda: self._fresh(statement).query(*args, **kwargs))

    def cursor(self) -> GuardedConnection:
        return GuardedConnection(self._con.cursor(), self._home, self._views)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def __enter__(self) -> GuardedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self._con.close()


class GuardedRelation:
    """A lazy DuckDB relation: it reads parts when it is fetched, so each call of it is guarded too."""

    def __init__(self, home: Home, make: Callable[[], duckdb.DuckDBPyRelation], relation: duckdb.DuckDBPyRelation):
        self._home = home
        self._make = make  # builds the relation again after a repair: the failed one is bound to the old parts
        self._relation = relation

    @classmethod
    def of(cls, home: Home, make: Callable[[], duckdb.DuckDBPyRelation | None]) -> GuardedRelation | None:
        relation = survive_damage(home, make)  # binding reads every part's footer already
        if relation is None:  # a statement that returns nothing (SET, CREATE ...)
            return None
        return cls(home, lambda: _some(make()), relation)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._relation, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            def rebuild() -> None:
                self._relation = self._make()

            result = survive_damage(self._home, lambda: getattr(self._relation, name)(*args, **kwargs), rebuild)
            if isinstance(result, duckdb.DuckDBPyRelation):  # a derived relation (filter, project, ...)
                make = self._make
                return GuardedRelation(self._home, lambda: getattr(make(), name)(*args, **kwargs), result)
            return result

        return call

    def __len__(self) -> int:
        return len(self._relation)

    def __repr__(self) -> str:
        return repr(self._relation)


def _some(relation: duckdb.DuckDBPyRelation | None) -> duckdb.DuckDBPyRelation:
    assert relation is not None  # it was a relation the first time: the same SQL is one again
    return relation
