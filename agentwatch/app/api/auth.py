"""FastAPI dependencies that check the API key of a request and its scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentwatch.app.api.errors import ApiError
from agentwatch.app.api.ratelimit import RateLimits
from agentwatch.core.api_keys import ApiKey, KeyStore, parse_token

CHALLENGE = {"WWW-Authenticate": "Bearer"}
OR_ADMIN = " (or 'admin')"  # admin keys hold every scope

# Declares the scheme in the OpenAPI document (the "Authorize" button of /docs); the checks and
# their messages are ours, so it never raises by itself.
bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="aw_<id>_<secret>",
    description="An agentwatch API key: `agentwatch keys create --scope ingest|read|admin`.",
)


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers=CHALLENGE)


def require_scope(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency admitting requests whose bearer key is valid and allows `scope`."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> ApiKey:
        limits: RateLimits = request.app.state.rate_limits
        address = request.client.host if request.client else "unknown"
        limits.check_address(address)  # before the key is looked at: a blocked address guesses nothing
        try:
            key = _authenticate(request, credentials, scope)
        except ApiError as exc:
            if exc.status == 401:
                limits.failed(address)
            raise
        limits.admit(key.id)
        request.state.api_key = key
        return key

    dependency.__name__ = f"require_{scope}_scope"
    return dependency


def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str) -> ApiKey:
    """The request's key when it is valid and allows `scope`; else a 401 or 403 saying what to do."""
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized(
            "missing_api_key",
            f"missing API key: send 'Authorization: Bearer <key>'; create one with "
            f"`agentwatch keys create --scope {scope}`",
        )
    parsed = parse_token(credentials.credentials) if credentials is not None else None
    if credentials is None or parsed is None:
        raise _unauthorized(
            "malformed_api_key",
            "malformed Authorization header: expected 'Authorization: Bearer aw_<id>_<secret>', the key "
            f"exactly as `agentwatch keys create --scope {scope}` printed it",
        )
    keys: KeyStore = request.app.state.keys
    key = keys.authenticate(credentials.credentials)
    if key is None:
        key_id = parsed[0]
        raise _unauthorized(
            "invalid_api_key",
            f"API key {key_id} is unknown or revoked: check it with `agentwatch keys list`, or create a new "
            f"one with `agentwatch keys create --scope {scope}`",
        )
    if not key.allows(scope):
        raise ApiError(
            403,
            "insufficient_scope",
            f"API key {key.id} has scope '{key.scope}' but {request.method} {request.url.path} needs "
            f"'{scope}'{OR_ADMIN if scope != 'admin' else ''}: use a key created with `agentwatch keys create "
            f"--scope {scope}`",
        )
    return key


require_ingest = require_scope("ingest")
require_read = require_scope("read")
require_admin = require_scope("admin")
