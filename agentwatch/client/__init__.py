"""The Python client agents use: send actions and outcomes in the background, ask the guard before acting.

    from agentwatch.client import Client

    with Client(os.environ["AGENTWATCH_URL"], os.environ["AGENTWATCH_KEY"], agent_id="lead-router") as aw:
        if aw.allowed(action="crm.update_field"):
            with aw.action("crm.update_field", resource=("lead", "L-1"), before={"owner": None}) as act:
                act.after = crm.update(...)

It imports only the standard library and httpx (no server dependencies). docs/client.md documents it all.

Exceptions, one tree (everything the client raises on purpose):

    AgentwatchClientError
    ├── InvalidArgument           (also a ValueError) an argument cannot make a valid event or setting
    ├── ClientClosed              the client was closed
    ├── QueueFull                 max_queue events wait already; the new one was not queued
    ├── FlushTimeout              flush(timeout) passed; the events stay queued and are retried
    ├── ActionScopeError          aw.action(...) misused (a recorded action entered, a scope entered twice)
    ├── ServerUnreachable         a synchronous call got no answer: connection error, timeout, 429, 5xx
    └── RequestRefused            the server refused a synchronous call for good (4xx): .status .code .details
        └── AuthenticationFailed  401 or 403: a missing, unknown or revoked key, or the wrong scope
"""

from agentwatch.client.client import Client
from agentwatch.client.errors import (
    ActionScopeError,
    AgentwatchClientError,
    AuthenticationFailed,
    ClientClosed,
    FlushTimeout,
    InvalidArgument,
    QueueFull,
    RequestRefused,
    ServerUnreachable,
)
from agentwatch.client.guard import GuardDecision
from agentwatch.client.scope import ActionScope
from agentwatch.client.stats import ClientStats, ErrorRecord

__all__ = [
    "ActionScope",
    "ActionScopeError",
    "AgentwatchClientError",
    "AuthenticationFailed",
    "Client",
    "ClientClosed",
    "ClientStats",
    "ErrorRecord",
    "FlushTimeout",
    "GuardDecision",
    "InvalidArgument",
    "QueueFull",
    "RequestRefused",
    "ServerUnreachable",
]
