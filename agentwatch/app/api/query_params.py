"""Refuse query parameters a route does not take: a misspelt filter (``?agent=`` for ``?agent_id=``) must not
return the unfiltered selection as if it were the one asked for."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from agentwatch.app.api.errors import ApiError


def _names(dependant: Any) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _names(sub)
    return names


async def known_query_parameters(request: Request) -> None:
    """A router dependency: 400 ``unknown_parameter`` naming each query parameter the matched route lacks."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    taken = _names(dependant)
    unknown = sorted({name for name in request.query_params if name not in taken})
    if unknown:
        raise ApiError(400, "unknown_parameter",
                       f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
                       f"{request.url.path} takes {', '.join(sorted(taken)) or 'none'}; nothing was selected")
