"""A real HTTP receiver on 127.0.0.1 for alert tests: it records every request and answers as scripted."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Receiver:
    """Answers 200 (202 for PagerDuty-shaped paths) unless told to fail the next requests."""

    def __init__(self, port: int = 0) -> None:
        """Listen on `port` (0: any free port); a given port brings a stopped receiver back where it was."""
        self.requests: list[Received] = []
        self._script: list[Answer] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    answer = receiver._script.pop(0) if receiver._script else Answer(
                        202 if "enqueue" in self.path else 200, body=b'{"status":"success"}')
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append(Received("POST", self.path, headers, body, answer.status))
                    receiver._arrived.notify_all()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="test-receiver")

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_next(self, times: int, status: int = 503, headers: dict[str, str] | None = None) -> None:
        """Answer the next `times` requests with `status` (and `headers`, e.g. Retry-After)."""
        with self._lock:
            self._script.extend(Answer(status, dict(headers or {})) for _ in range(times))

    def recover(self) -> None:
        """Forget the failures still scripted: answer 2xx from now on."""
        with self._lock:
            self._script.clear()

    def delivered(self, path: str | None = None) -> list[Received]:
        """The requests answered with a 2xx, optionally only those to `path`."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300 and (path is None or r.path == path)]

    def wait_for(self, count: int, timeout: float = 20.0, path: str | None = None) -> list[Received]:
        """Block until `count` requests were answered 2xx (or the timeout passes); returns them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                done = [r for r in self.requests if 200 <= r.status < 300 and (path is None or r.path == path)]
                left = deadline - time.monotonic()
                if len(done) >= count or left <= 0:
                    return done
                self._arrived.wait(left)
