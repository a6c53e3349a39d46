"""The collector's HTTP API: ``create_app`` builds it, ``serve`` runs it (one server per home).

The names are imported lazily, so ``collector.api.wal.pending_events`` (used by ``agentwatch
status``) does not pull in FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.api.app import ApiSettings, create_app
    from collector.api.server import serve

__all__ = ["ApiSettings", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("ApiSettings", "create_app"):
        from collector.api import app

        return getattr(app, name)
    if name == "serve":
        from collector.api.server import serve

        return serve
    raise AttributeError(f"module 'collector.api' has no attribute {name!r}")
