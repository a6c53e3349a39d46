"""Loopback HTTP servers answering as Salesforce and HubSpot do, for the schema pollers' tests.

Bodies, status codes and headers are shaped as the real APIs answer: Salesforce's OAuth token endpoint (client
credentials and JWT bearer, whose assertion is verified with the test's public key), its describe with
``Sforce-Limit-Info``, its error lists (``[{"message", "errorCode"}]``: ``INVALID_SESSION_ID`` on an expired
session); HubSpot's properties with its error objects (``{"status": "error", "errorType": "RATE_LIMIT"}``). A test
queues faults (a 429 with Retry-After, a 500) that the next schema requests get before the normal answer.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs

import jwt

JSON = "application/json;charset=UTF-8"


@dataclass
class Fault:
    """One answer a schema request gets instead of the normal one."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # the test's output stays quiet
        pass

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.server.fake.requests.append(("GET", self.path))
        self._answer(*self.server.fake.get(self.path, self.headers.get("Authorization", "")))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        self.server.fake.requests.append(("POST", self.path))
        self._answer(*self.server.fake.post(self.path, form))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: _Fake) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Fake:
    """A CRM API on a loopback port; `faults` are answered to schema requests first, in order."""

    def __init__(self) -> None:
        self.faults: deque[Fault] = deque()
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.url = ""

    def next_fault(self) -> Fault | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None

    def get(self, path: str, authorization: str) -> tuple[int, Any, dict[str, str]]:
        return 404, {"message": "not found"}, {}

    def post(self, path: str, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        return 404, {"message": "not found"}, {}


class FakeSalesforce(_Fake):
    """An org: token endpoint and sObject describes (`describes`: object name -> describe body)."""

    API_VERSION = "62.0"

    def __init__(self, describes: dict[str, dict[str, Any]], client_id: str, client_secret: str,
                 public_key: Any = None, username: str | None = None, api_limit: int = 15000) -> None:
        super().__init__()
        self.describes = describes
        self.client_id, self.client_secret = client_id, client_secret
        self.public_key, self.username = public_key, username
        self.api_used, self.api_limit = 0, api_limit
        self.issued: list[str] = []  # every access token handed out
        self.valid: set[str] = set()
        self.token_requests = 0

    def expire_sessions(self) -> None:
        """Every session ends (as when a session times out): the next describe gets INVALID_SESSION_ID."""
        with self.lock:
            self.valid.clear()

    def post(self, path: str, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if path != "/services/oauth2/token":
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], {}
        self.token_requests += 1
        if form.get("grant_type") == "client_credentials":
            if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
                return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}, {}
        elif form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                claims = jwt.decode(form.get("assertion", ""), self.public_key, algorithms=["RS256"],
                                    audience=self.url, issuer=self.client_id, options={"require": ["exp"]})
            except jwt.PyJWTError:
                return 400, {"error": "invalid_grant", "error_description": "invalid assertion"}, {}
            if claims.get("sub") != self.username:
                return 400, {"error": "invalid_grant", "error_description": "user hasn't approved this consumer"}, {}
        else:
            return 400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, {}
        token = f"00D5e000000TEST!AQ8AQ{secrets.token_urlsafe(40)}"
        with self.lock:
            self.issued.append(token)
            self.valid.add(token)
        body = {"access_token": token, "signature": secrets.token_urlsafe(32), "scope": "api",
                "instance_url": self.url, "id": f"{self.url}/id/00D5e000000TEST/0055e000001ABCD",
                "token_type": "Bearer", "issued_at": "1733560000000"}
        return 200, body, {}

    def get(self, path: str, authorization: str) -> tuple[int, Any, dict[str, str]]:
        prefix, suffix = f"/services/data/v{self.API_VERSION}/sobjects/", "/describe"
        if not (path.startswith(prefix) and path.endswith(suffix)):
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], {}
        token = authorization.removeprefix("Bearer ")
        if token not in self.valid:
            return 401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], \
                {"WWW-Authenticate": "Token"}
        self.api_used += 1
        limit = {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.api_limit}"}
        fault = self.next_fault()
        if fault is not None:
            return fault.status, fault.body, {**limit, **fault.headers}
        name = path[len(prefix):-len(suffix)]
        describe = self.describes.get(name)
        if describe is None:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], limit
        return 200, describe, limit


class FakeHubspot(_Fake):
    """An account: the CRM v3 properties of object types (`properties`: object type -> response body)."""

    def __init__(self, properties: dict[str, dict[str, Any]], token: str) -> None:
        super().__init__()
        self.properties, self.token = properties, token

    def get(self, path: str, authorization: str) -> tuple[int, Any, dict[str, str]]:
        if authorization != f"Bearer {self.token}":
            return 401, {"status": "error", "message": "Authentication credentials not found. This API supports "
                         "OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/"
                         "docs/methods/auth/oauth-overview", "correlationId": "3c3e4c1c-1f6b-4c46-9d6a-8f4e3b0a1d2e",
                         "category": "INVALID_AUTHENTICATION"}, {}
        fault = self.next_fault()
        if fault is not None:
            return fault.status, fault.body, fault.headers
        name = path.removeprefix("/crm/v3/properties/")
        if name not in self.properties:
            return 400, {"status": "error", "message": f"Unable to infer object type from: {name}",
                         "correlationId": "5d7c1b2a-9e0f-4a3b-8c6d-1e2f3a4b5c6d", "category": "VALIDATION_ERROR"}, {}
        return 200, self.properties[name], {}


HUBSPOT_RATE_LIMIT = Fault(429, {"status": "error", "message": "You have reached your secondly limit.",
                                 "errorType": "RATE_LIMIT", "correlationId": "c7f3e2b1-0a9d-4e8c-b7f6-5a4d3c2b1a0f",
                                 "policyName": "SECONDLY", "groupName": "publicapi:private-app:secondly:1234567"},
                           {"Retry-After": "1"})
SALESFORCE_SERVER_ERROR = Fault(500, [{"errorCode": "UNKNOWN_EXCEPTION", "message": "An unexpected error occurred. "
                                       "Please include this ErrorId if you contact support: 1234567890-12345 "
                                       "(-1234567890)"}])


FakeT = TypeVar("FakeT", bound=_Fake)


@contextmanager
def serving(fake: FakeT) -> Iterator[FakeT]:
    """Run `fake` on a loopback port (its `url`) for the block."""
    server = _Server(fake)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
