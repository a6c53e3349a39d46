"""The dashboard's door: an API key of scope read (or admin) is asked for first, unless the dashboard listens on
loopback and the operator opted out (``dashboard: {require_key: false}``, or ``agentwatch dashboard --no-key``).

Wrong keys are limited to ``limits.auth_failures_per_minute`` per browser session and per client address (the
same bound as the API's); past it the prompt checks nothing and says how long to wait.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque

import streamlit as st

from agentwatch.app.config import Config
from agentwatch.app.dashboard_launch import NO_KEY_ENV, key_required
from agentwatch.core.api_keys import KeyStore
from agentwatch.dashboards import context

SESSION_KEY = "agentwatch_key"
SESSION_FAILURES = "agentwatch_key_failures"
SESSION_LAST_WRONG = "agentwatch_key_last_wrong"  # a hash of the last refused key: a rerun does not count it again
WINDOW_S = 60.0
SETTING = "limits.auth_failures_per_minute"
WRONG = "That key is unknown, revoked, or not of scope read: create one with `agentwatch keys create --scope read`."


class Failures:
    """Times of wrong keys per client address over the last minute, shared by every session of the server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_address: dict[str, deque[float]] = {}

    def wait_s(self, address: str, limit: int, now: float) -> float:
        """Seconds until `address` may try again (0: it may now)."""
        with self._lock:
            return _wait(self._by_address.get(address), limit, now)

    def add(self, address: str, now: float) -> None:
        with self._lock:
            # forget addresses whose failures are all over a minute old: the table stays as small as the attack
            for stale in [a for a, times in self._by_address.items() if times[-1] <= now - WINDOW_S]:
                del self._by_address[stale]
            self._by_address.setdefault(address, deque()).append(now)


# One table per home for the life of the server process (this module is imported once; every session shares it).
_TABLES: dict[str, Failures] = {}
_TABLES_LOCK = threading.Lock()


def _failures(root: str) -> Failures:
    with _TABLES_LOCK:
        return _TABLES.setdefault(root, Failures())


def _wait(times: deque[float] | None, limit: int, now: float) -> float:
    if not times:
        return 0.0
    while times and times[0] <= now - WINDOW_S:
        times.popleft()
    return times[0] + WINDOW_S - now if len(times) >= limit else 0.0


def require_access() -> None:
    """Stop the page unless this session may see it: no key needed here, or a key given that is still valid.

    Fails closed: a config that cannot be read keeps the door locked (its `require_key` is unknown), and the
    session's key is checked again at every run, so revoking it locks an open session out at its next click."""
    config = context.config_or_none()
    if config is not None and not key_required(st.get_option("server.address"), config.dashboard.require_key,
                                               os.environ.get(NO_KEY_ENV) == "1"):
        return
    token = st.session_state.get(SESSION_KEY)
    if token and _valid(token):
        return
    st.session_state.pop(SESSION_KEY, None)
    st.title("agentwatch")
    st.write("This dashboard needs an agentwatch API key of scope `read` or `admin`.")
    entered = st.text_input("API key", type="password", placeholder="aw_...",
                            help="`agentwatch keys create --scope read` prints one.")
    if entered:
        _check(entered.strip(), (config or Config()).limits.auth_failures_per_minute)
    st.stop()


def _check(entered: str, limit: int) -> None:
    """Open the session for a valid key; count a wrong one; past the bound, check nothing and say to wait."""
    digest = hashlib.sha256(entered.encode()).hexdigest()
    if st.session_state.get(SESSION_LAST_WRONG) == digest:
        st.error(WRONG)
        return
    now = time.monotonic()
    ip = st.context.ip_address  # None for a loopback client
    address = ip if isinstance(ip, str) and ip else "loopback"
    shared = _failures(str(context.home().root))
    mine: deque[float] = st.session_state.setdefault(SESSION_FAILURES, deque())
    wait = max(_wait(mine, limit, now), shared.wait_s(address, limit, now))
    if wait > 0:
        st.error(f"Too many wrong keys from this browser or address: wait {wait:.0f} s and try again. At most "
                 f"{limit} wrong keys a minute are checked (`{SETTING}` in agentwatch.yaml).")
        return
    if _valid(entered):
        st.session_state[SESSION_KEY] = entered
        st.rerun()
    mine.append(now)
    shared.add(address, now)
    st.session_state[SESSION_LAST_WRONG] = digest
    st.error(WRONG)


def _valid(token: str) -> bool:
    key = KeyStore(context.home()).authenticate(token)
    return key is not None and key.allows("read")
