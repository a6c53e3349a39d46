"""The agentwatch dashboard: ``agentwatch dashboard`` runs ``streamlit run`` on this file.

This entrypoint is the frame around every page: the access check, then the navigation. Each page is a
script in ``dashboards/views`` (not ``pages/``: Streamlit would serve a ``pages/`` folder's scripts on their
own, skipping this frame and its access check, to a browser whose first request is a page's URL).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from agentwatch.dashboards.access import require_access
from agentwatch.dashboards.context import home

PAGES = Path(__file__).parent / "views"

st.set_page_config(page_title="agentwatch", page_icon=":material/monitoring:", layout="wide")
require_access()
st.sidebar.caption(f"home: `{home().root}`")
navigation = st.navigation({
    "Watch": [
        st.Page(PAGES / "incidents.py", title="Incidents", icon=":material/notifications_active:", default=True),
        st.Page(PAGES / "agents.py", title="Agents", icon=":material/smart_toy:"),
        st.Page(PAGES / "schema.py", title="Schema", icon=":material/schema:"),
        st.Page(PAGES / "notifications.py", title="Notifications", icon=":material/campaign:"),
    ],
    "Outcomes": [
        st.Page(PAGES / "routing.py", title="Routing accuracy", icon=":material/alt_route:"),
        st.Page(PAGES / "outcomes.py", title="Outcome feedback", icon=":material/rate_review:"),
        st.Page(PAGES / "pipeline.py", title="Pipeline quality", icon=":material/trending_up:"),
    ],
    "Audit": [
        st.Page(PAGES / "audit.py", title="Audit trail", icon=":material/history:"),
    ],
})
navigation.run()
