"""The ``dashboard:`` section of ``agentwatch.yaml`` (no Streamlit import: the config loader reads it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DashboardConfig(BaseModel):
    """Who may open the dashboard."""

    model_config = ConfigDict(extra="forbid")
    require_key: bool = Field(False, description="Ask for an API key of scope read (or admin) before showing "
                                                 "anything; `agentwatch keys create --scope read` makes one.")
