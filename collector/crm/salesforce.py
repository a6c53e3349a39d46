"""Salesforce: an access token, then ``GET /services/data/v{version}/sobjects/{object}/describe``.

Tokens come from the OAuth 2.0 client credentials flow, the JWT bearer flow (an RS256 assertion signed with PyJWT)
or a session token you provide. A describe answered 401 (``INVALID_SESSION_ID``: the session expired) gets a new
token once and is tried again. Every answer's ``Sforce-Limit-Info: api-usage=N/M`` is kept, so the poller can slow
down when the org's daily API allowance runs low. The token lives in memory only.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import jwt

from agentwatch.collector.crm.config import DEFAULT_LOGIN_URL, CrmConfig, SalesforceAuth, secret_from_env
from agentwatch.collector.crm.http import Clock, HttpSettings, read_bounded, status_phrase, with_retries
from agentwatch.core.errors import ConfigError, CrmError

log = logging.getLogger(__name__)
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME = timedelta(minutes=3)  # Salesforce accepts assertions that expire within 3 minutes
LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
AUTH_KEY = "crm.salesforce.auth"


@dataclass(frozen=True)
class ApiUsage:
    """The org's API requests in the last 24 hours, out of its allowance (Sforce-Limit-Info)."""

    used: int
    limit: int

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit else 0.0

    def __str__(self) -> str:
        return f"{self.used:,}/{self.limit:,} ({self.share:.0%})"


def api_usage(headers: httpx.Headers) -> ApiUsage | None:
    """``Sforce-Limit-Info: api-usage=25/15000`` as ApiUsage; None when the header is absent."""
    match = LIMIT_INFO.search(headers.get("sforce-limit-info", ""))
    return ApiUsage(int(match.group(1)), int(match.group(2))) if match else None


class _Credentials:
    """The secrets of one auth kind, read from the environment once (a ConfigError names a missing variable)."""

    def __init__(self, auth: SalesforceAuth, environ: Mapping[str, str]) -> None:
        def read(key: str) -> str:
            variable = getattr(auth, key)
            return secret_from_env(environ, variable, f"{AUTH_KEY}.{key}")

        self.kind = auth.kind
        self.client_id = read("client_id_env") if auth.client_id_env else ""
        self.client_secret = read("client_secret_env") if auth.kind == "client_credentials" else ""
        self.session_token = read("token_env") if auth.kind == "session_token" else ""
        self.private_key = ""
        if auth.kind == "jwt_bearer":
            self.private_key = read("private_key_env") if auth.private_key_env else _key_file(auth, environ)


def _key_file(auth: SalesforceAuth, environ: Mapping[str, str]) -> str:
    variable = auth.private_key_file_env or ""
    path = Path(secret_from_env(environ, variable, f"{AUTH_KEY}.private_key_file_env")).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{AUTH_KEY}.private_key_file_env: the file named by {variable} cannot be read "
                          f"({reason}); give the path of a PEM private key") from None


class SalesforceClient:
    """Fetches describe results of one org."""

    source = "salesforce"

    def __init__(self, config: CrmConfig, http: httpx.Client, clock: Clock,
                 environ: Mapping[str, str] | None = None) -> None:
        assert config.salesforce is not None
        self.org = config.salesforce
        self.http, self.clock = http, clock
        self.settings = HttpSettings(config.max_response_bytes, config.max_attempts, config.max_wait_seconds)
        self.credentials = _Credentials(self.org.auth, os.environ if environ is None else environ)
        self.login_url = self.org.auth.login_url or (
            DEFAULT_LOGIN_URL if self.org.auth.kind == "jwt_bearer" else self.org.instance_url)
        if self.credentials.kind == "jwt_bearer":
            self._assertion()  # an unreadable key is a config error now, not at the first poll
        self._token: str | None = self.credentials.session_token or None
        self.usage: ApiUsage | None = None

    def fetch(self, object_name: str) -> dict[str, Any]:
        """The describe result of one sObject, as Salesforce returns it."""
        what = f"salesforce describe of {object_name}"
        url = f"{self.org.instance_url}/services/data/v{self.org.api_version}/sobjects/{object_name}/describe"
        for renewed in (False, True):
            token = self._token or self._new_token()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            reply = with_retries(partial(read_bounded, self.http, "GET", url, what, self.settings.max_response_bytes,
                                         headers), what, self.settings, self.clock)
            self.usage = api_usage(reply.headers) or self.usage
            if reply.status == 401 and not renewed and self.credentials.kind != "session_token":
                log.info("%s: %s (the session expired); getting a new token", what, status_phrase(reply))
                self._token = None
                continue
            if reply.status != 200:
                hint = ""
                if reply.status == 401 and self.credentials.kind == "session_token":
                    hint = f"; put a fresh session token in ${self.org.auth.token_env}"
                raise CrmError(f"{what}: {status_phrase(reply)}{hint}")
            payload = reply.json(what)
            if not isinstance(payload, dict):
                raise CrmError(f"{what}: the answer is not a describe result (a JSON {type(payload).__name__})")
            return payload
        raise AssertionError("unreachable: the second try returns or raises")

    def _new_token(self) -> str:
        what = "salesforce token request"
        form = self._token_form()
        reply = with_retries(lambda: read_bounded(self.http, "POST", f"{self.login_url}/services/oauth2/token", what,
                                                  self.settings.max_response_bytes, {"Accept": "application/json"},
                                                  form), what, self.settings, self.clock)
        if reply.status != 200:
            raise CrmError(f"{what} ({self.credentials.kind}): {status_phrase(reply)}; check the connected app and "
                           f"the variables named in {AUTH_KEY}")
        body = reply.json(what)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise CrmError(f"{what}: the answer has no access_token")
        self._token = token
        return token

    def _token_form(self) -> dict[str, str]:
        credentials = self.credentials
        if credentials.kind == "client_credentials":
            return {"grant_type": "client_credentials", "client_id": credentials.client_id,
                    "client_secret": credentials.client_secret}
        if credentials.kind == "jwt_bearer":
            return {"grant_type": JWT_GRANT, "assertion": self._assertion()}
        raise CrmError(f"salesforce: the session token in ${self.org.auth.token_env} was refused; put a fresh one "
                       "there (a session token cannot be renewed by agentwatch)")

    def _assertion(self) -> str:
        """The JWT bearer flow's assertion: issued by the connected app, for the user, to the login host."""
        now = self.clock.now()
        claims = {"iss": self.credentials.client_id, "sub": self.org.auth.username, "aud": self.login_url,
                  "exp": int((now + JWT_LIFETIME).timestamp()), "jti": uuid.uuid4().hex}
        try:
            return jwt.encode(claims, self.credentials.private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError):  # the key's text is never quoted
            variable = self.org.auth.private_key_env or self.org.auth.private_key_file_env
            raise ConfigError(f"{AUTH_KEY}: the private key from {variable} is not a PEM RSA private key") from None

