"""The ``crm:`` section of ``agentwatch.yaml``: which CRM objects the schema pollers watch, and how they sign in.

Secrets are never written in the file: each ``*_env`` key names an environment variable that holds one, read when a
poller starts (:func:`secret_from_env`); a missing variable is an error naming the variable, never a value::

    crm:
      salesforce:
        instance_url: https://acme.my.salesforce.com
        objects: [Lead, Opportunity]
        auth: {kind: client_credentials, client_id_env: SF_CLIENT_ID, client_secret_env: SF_CLIENT_SECRET}
      hubspot:
        objects: [contacts, deals]
        token_env: HUBSPOT_TOKEN
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentwatch.core.errors import ConfigError

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_LOGIN_URL = "https://login.salesforce.com"  # the JWT bearer flow's token host (test.salesforce.com: sandboxes)
DEFAULT_HUBSPOT_URL = "https://api.hubapi.com"


def _base_url(value: str, key: str) -> str:
    """An https origin (http only on loopback, for local fakes): tokens never travel in clear text."""
    parts = urlsplit(value)
    if parts.query or parts.fragment or parts.username or parts.password:  # checked first: never echo a secret
        raise ValueError(f"{key} must be a plain origin such as https://acme.my.salesforce.com, without "
                         "credentials, query or fragment")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{key} must be a URL such as https://acme.my.salesforce.com; got {value!r}")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError(f"{key} must use https (http is accepted only on loopback); got {value!r}")
    return value.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SalesforceAuth(BaseModel):
    """How the Salesforce poller gets its access token."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["client_credentials", "jwt_bearer", "session_token"] = Field(
        description="client_credentials: the OAuth 2.0 client credentials flow of a connected app (run as its "
                    "integration user); jwt_bearer: the OAuth 2.0 JWT bearer flow (a certificate, no secret sent); "
                    "session_token: a token you obtain and refresh yourself.")
    client_id_env: str | None = Field(None, pattern=ENV_NAME, description="Environment variable holding the connected "
                                      "app's consumer key (client_credentials, jwt_bearer).")
    client_secret_env: str | None = Field(None, pattern=ENV_NAME, description="Environment variable holding the "
                                          "connected app's consumer secret (client_credentials).")
    username: str | None = Field(None, min_length=1, description="The user the JWT bearer token acts as (jwt_bearer); "
                                 "not a secret.")
    private_key_env: str | None = Field(None, pattern=ENV_NAME, description="Environment variable holding the PEM "
                                        "private key that signs the JWT (jwt_bearer; or private_key_file_env).")
    private_key_file_env: str | None = Field(None, pattern=ENV_NAME, description="Environment variable holding the "
                                             "path of the PEM private key file (jwt_bearer; or private_key_env).")
    token_env: str | None = Field(None, pattern=ENV_NAME, description="Environment variable holding the session "
                                  "token (session_token).")
    login_url: str | None = Field(None, description="Where tokens are asked for: the instance URL by default for "
                                  "client_credentials, https://login.salesforce.com for jwt_bearer (also the JWT's "
                                  "audience; https://test.salesforce.com for a sandbox).")

    @field_validator("login_url")
    @classmethod
    def _login_origin(cls, value: str | None) -> str | None:
        return None if value is None else _base_url(value, "login_url")

    @model_validator(mode="after")
    def _keys_of_kind(self) -> SalesforceAuth:
        needed = {"client_credentials": ("client_id_env", "client_secret_env"),
                  "jwt_bearer": ("client_id_env", "username"), "session_token": ("token_env",)}[self.kind]
        missing = [key for key in needed if getattr(self, key) is None]
        if missing:
            raise ValueError(f"auth kind {self.kind} needs {' and '.join(missing)}")
        if self.kind == "jwt_bearer" and (self.private_key_env is None) == (self.private_key_file_env is None):
            raise ValueError("auth kind jwt_bearer needs exactly one of private_key_env or private_key_file_env")
        return self


class SalesforceSource(BaseModel):
    """The Salesforce org whose sObject describes are polled."""

    model_config = ConfigDict(extra="forbid")
    instance_url: str = Field(description="The org's My Domain URL, e.g. https://acme.my.salesforce.com.")
    api_version: str = Field("62.0", pattern=r"^\d{2,3}\.\d$", description="The REST API version of the describe "
                             "calls, e.g. 62.0.")
    objects: list[str] = Field(min_length=1, max_length=100, description="sObject API names to watch, e.g. Lead, "
                               "Opportunity, Deal_Desk__c.")
    auth: SalesforceAuth

    @field_validator("instance_url")
    @classmethod
    def _instance_origin(cls, value: str) -> str:
        return _base_url(value, "instance_url")

    @field_validator("objects")
    @classmethod
    def _object_names(cls, names: list[str]) -> list[str]:
        return _names(names, r"^[A-Za-z][A-Za-z0-9_]{0,79}$", "an sObject API name such as Lead or Deal_Desk__c")


class HubspotSource(BaseModel):
    """The HubSpot account whose object properties are polled."""

    model_config = ConfigDict(extra="forbid")
    objects: list[str] = Field(min_length=1, max_length=100, description="Object types to watch: contacts, "
                               "companies, deals, tickets, or a custom object's type id such as 2-123456.")
    token_env: str = Field(pattern=ENV_NAME, description="Environment variable holding the private app's access "
                           "token (scopes: the crm.schemas.*.read of each object).")
    base_url: str = Field(DEFAULT_HUBSPOT_URL, description="The API's origin.")

    @field_validator("base_url")
    @classmethod
    def _origin(cls, value: str) -> str:
        return _base_url(value, "base_url")

    @field_validator("objects")
    @classmethod
    def _object_names(cls, names: list[str]) -> list[str]:
        return _names(names, r"^[A-Za-z0-9_-]{1,80}$", "an object type such as contacts or 2-123456")


def _names(names: list[str], pattern: str, what: str) -> list[str]:
    for name in names:
        if not re.fullmatch(pattern, name):
            raise ValueError(f"{name!r} is not {what}")
    if len(set(names)) != len(names):
        raise ValueError("an object is listed twice")
    return names


class CrmConfig(BaseModel):
    """Which CRM schemas agentwatch polls by itself, how often, and how patiently."""

    model_config = ConfigDict(extra="forbid")
    salesforce: SalesforceSource | None = Field(None, description="The Salesforce org to poll (none: not polled).")
    hubspot: HubspotSource | None = Field(None, description="The HubSpot account to poll (none: not polled).")
    poll_minutes: float = Field(15, ge=1, le=1440, description="Poll each object this often: a rename is seen "
                                "within this long, at one API call per object per poll.")
    heartbeat_hours: float = Field(24, gt=0, description="Store a snapshot this long after the last stored one even "
                                   "when nothing changed, so a quiet CRM shows as watched.")
    failing_grace_minutes: float = Field(60, gt=0, description="A poller failing this long opens a "
                                         "schema.watcher_blind incident and makes /healthz degraded.")
    timeout_seconds: float = Field(30, gt=0, le=300, description="Timeout of each HTTP request (connect, read, write, "
                                   "pool).")
    max_response_bytes: int = Field(16 << 20, ge=1024, le=512 << 20, description="Largest response body accepted; "
                                    "a describe of an object with a thousand fields is about 2 MB.")
    max_attempts: int = Field(4, ge=1, le=10, description="Tries of one request on a 429, a 5xx or a network error "
                              "before the poll counts as failed.")
    max_wait_seconds: float = Field(120, gt=0, le=3600, description="The longest wait between two tries; a "
                                    "Retry-After asking for longer ends the poll, and the next one starts after it.")
    slow_down_at_api_usage: float = Field(0.8, gt=0, le=1, description="When Salesforce's Sforce-Limit-Info says this "
                                          "share of the org's daily API requests is used, poll four times less often.")

    @property
    def configured(self) -> bool:
        return self.salesforce is not None or self.hubspot is not None

    def pollers(self) -> list[tuple[str, str]]:
        """(source, object) of every poller, in the order of the config."""
        found = [("salesforce", name) for name in (self.salesforce.objects if self.salesforce else [])]
        return found + [("hubspot", name) for name in (self.hubspot.objects if self.hubspot else [])]


def secret_from_env(environ: Mapping[str, str], variable: str, key: str) -> str:
    """The value of an environment variable named by the config key `key`; a ConfigError naming the variable (never
    a value) when it is unset or empty."""
    value = environ.get(variable, "")
    if not value.strip():
        raise ConfigError(f"{key}: environment variable {variable} is not set; set it in the environment of "
                          "agentwatch (the crm: section names variables, never secrets)")
    return value.strip()
