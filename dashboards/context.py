"""What every page shares: the home, cached DuckDB queries, the incident and alert stores, the viewer's timezone.

Queries run in DuckDB over the store's Parquet views (never the whole event table into pandas) and return
Polars frames. Results are cached by Streamlit, keyed by the SQL, its parameters and a cheap fingerprint of
the store (``agentwatch.store.partitions.store_version``: the modification times of its partition folders), so
a page reloads from cache until new data lands.
"""

from __future__ import annotations

import os
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import polars as pl
import streamlit as st

from agentwatch.alerts.db import alerts_db
from agentwatch.app.config import Config, config_for
from agentwatch.checks.engine import incident_store
from agentwatch.checks.incidents import IncidentStore
from agentwatch.core.errors import AgentwatchError
from agentwatch.core.home import CONFIG_ENV, Home
from agentwatch.core.sqlite import SqliteFile
from agentwatch.dashboards.escape import md
from agentwatch.store.partitions import store_version
from agentwatch.store.reader import open_reader

CACHE_TTL_S = 300  # a safety net: the store version already changes when new parts land


def home() -> Home:
    """The home the dashboard was started on (``agentwatch dashboard --home``, else $AGENTWATCH_HOME)."""
    return Home.resolve()


def config_path() -> Path | None:
    """The config file ``agentwatch dashboard --config`` named, if any (else the home's agentwatch.yaml applies)."""
    override = os.environ.get(CONFIG_ENV)
    return Path(override) if override else None


def config_or_none() -> Config | None:
    """The config, or None when it cannot be read (the caller decides what that means; the access check locks)."""
    try:
        return config_for(home(), config_path())
    except AgentwatchError as exc:
        st.error(f"agentwatch.yaml cannot be read: {md(exc)}")
        return None


def config() -> Config:
    """The home's config (or the one ``agentwatch dashboard --config`` named); a broken one is shown, not raised."""
    try:
        return config_for(home(), config_path())
    except AgentwatchError as exc:
        st.error(f"agentwatch.yaml cannot be read, so the defaults apply: {md(exc)}")
        return Config()


@st.cache_resource(show_spinner=False)
def _connection(root: str) -> duckdb.DuckDBPyConnection:
    connection = open_reader(Home.resolve(Path(root)))
    # Parts are written once (atomic rename) and never changed, so their footers can be cached: saves re-reading
    # the metadata of every part at every query.
    connection.execute("SET parquet_metadata_cache = true")
    return connection


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=500)
def _cached_query(root: str, fingerprint: tuple, sql: str, params: tuple) -> pl.DataFrame:
    cursor = _connection(root).cursor()  # one cursor per query: sessions run on different threads
    try:
        return pl.DataFrame(cursor.sql(sql, params=list(params) if params else None).to_arrow_table())
    finally:
        cursor.close()


def query(sql: str, *params: Any) -> pl.DataFrame:
    """Run SQL over the views ``actions``, ``outcomes`` and ``schema_snapshots``; cached until the store changes."""
    where = home()
    return _cached_query(str(where.root), store_version(where), sql, tuple(params))


def incidents() -> IncidentStore:
    return incident_store(home())


def alerts() -> SqliteFile:
    return alerts_db(home())


def viewer_timezone() -> tzinfo:
    """The browser's timezone (Streamlit reports it), else UTC."""
    name = getattr(st.context, "timezone", None)
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local(at: datetime | None) -> str:
    """A time as the viewer reads it: ``2026-10-05 12:45 CEST``."""
    if at is None:
        return "-"
    return at.astimezone(viewer_timezone()).strftime("%Y-%m-%d %H:%M %Z")


def to_viewer(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Timestamp columns converted to the viewer's timezone (charts and tables then show local time)."""
    zone = str(viewer_timezone())
    return frame.with_columns([pl.col(c).dt.convert_time_zone(zone) for c in columns if c in frame.columns])


def empty_state(message: str) -> None:
    """What to do next when a page has nothing to show."""
    st.info(message, icon=":material/lightbulb:")


def has_rows(view: str) -> bool:
    return query(f"SELECT EXISTS (SELECT 1 FROM {view}) AS present")["present"][0]
