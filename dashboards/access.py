"""The dashboard's door: when ``dashboard.require_key`` is set, an API key of scope read is asked for first."""

from __future__ import annotations

import streamlit as st

from agentwatch.core.api_keys import KeyStore
from agentwatch.dashboards import context

SESSION_KEY = "agentwatch_key"


def require_access() -> None:
    """Stop the page unless the config lets everyone in or this session gave a key that is still valid.

    Fails closed: a config that cannot be read keeps the door locked (its `require_key` is unknown), and the
    session's key is checked again at every run, so revoking it locks an open session out at its next click."""
    config = context.config_or_none()
    if config is not None and not config.dashboard.require_key:
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
        if _valid(entered.strip()):
            st.session_state[SESSION_KEY] = entered.strip()
            st.rerun()
        st.error("That key is unknown, revoked, or not of scope read: create one with "
                 "`agentwatch keys create --scope read`.")
    st.stop()


def _valid(token: str) -> bool:
    key = KeyStore(context.home()).authenticate(token)
    return key is not None and key.allows("read")
