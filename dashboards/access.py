"""The dashboard's door: when ``dashboard.require_key`` is set, an API key of scope read is asked for first."""

from __future__ import annotations

import streamlit as st

from collector.keys import KeyStore
from dashboards.context import config, home

SESSION_KEY = "agentwatch_key_id"


def require_access() -> None:
    """Stop the page unless the config lets everyone in or this session gave a valid read key."""
    if not config().dashboard.require_key or st.session_state.get(SESSION_KEY):
        return
    st.title("agentwatch")
    st.write("This dashboard needs an agentwatch API key of scope `read` or `admin`.")
    token = st.text_input("API key", type="password", placeholder="aw_...",
                          help="`agentwatch keys create --scope read` prints one.")
    if token:
        key = KeyStore(home()).authenticate(token.strip())
        if key is None or not key.allows("read"):
            st.error("That key is unknown, revoked, or not of scope read: create one with "
                     "`agentwatch keys create --scope read`.")
        else:
            st.session_state[SESSION_KEY] = key.id
            st.rerun()
    st.stop()
