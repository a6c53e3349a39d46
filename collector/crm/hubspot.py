"""HubSpot: ``GET /crm/v3/properties/{objectType}`` with a private app's access token as Bearer.

A private app token does not expire, so a 401 is an error to fix (the token was rotated or lacks a scope), not
something to renew. A 429 (``{"status": "error", "errorType": "RATE_LIMIT", ...}``) and a 5xx are tried again as
``agentwatch.collector.crm.http`` says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from agentwatch.collector.crm.config import CrmConfig, secret_from_env
from agentwatch.collector.crm.http import Clock, HttpSettings, read_bounded, status_phrase, with_retries
from agentwatch.collector.crm.salesforce import ApiUsage
from agentwatch.core.errors import CrmError


class HubspotClient:
    """Fetches properties responses of one account."""

    source = "hubspot"

    def __init__(self, config: CrmConfig, http: httpx.Client, clock: Clock,
                 environ: Mapping[str, str] | None = None) -> None:
        assert config.hubspot is not None
        self.account = config.hubspot
        self.http, self.clock = http, clock
        self.settings = HttpSettings(config.max_response_bytes, config.max_attempts, config.max_wait_seconds)
        self._token = secret_from_env(os.environ if environ is None else environ, self.account.token_env,
                                      "crm.hubspot.token_env")
        self.usage: ApiUsage | None = None  # HubSpot reports no daily usage in its headers the pollers read

    def fetch(self, object_name: str) -> dict[str, Any]:
        """The properties response of one object type, as HubSpot returns it."""
        what = f"hubspot properties of {object_name}"
        url = f"{self.account.base_url}/crm/v3/properties/{object_name}"
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        reply = with_retries(lambda: read_bounded(self.http, "GET", url, what, self.settings.max_response_bytes,
                                                  headers), what, self.settings, self.clock)
        if reply.status != 200:
            hint = ""
            if reply.status in (401, 403):
                hint = f"; check the private app token in ${self.account.token_env} and its crm.schemas scopes"
            raise CrmError(f"{what}: {status_phrase(reply)}{hint}")
        payload = reply.json(what)
        if not isinstance(payload, dict):
            raise CrmError(f"{what}: the answer is not a properties response (a JSON {type(payload).__name__})")
        return payload
