"""The config a running server reads per request: kept in memory, read again only when the file changes.

A request must not parse YAML (the guard answers in milliseconds; an export may come every second), and an edit
must not need a restart. The file's mtime, size and inode say when it changed; an invalid edit keeps the last
good config, and is logged once. One per app (``app.state.config_watch``): the guard and OTLP ingest read the same
file, so it is parsed once per change, not once per reader.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from agentwatch.app.api.errors import ApiError
from agentwatch.app.config import Config, config_for
from agentwatch.core.errors import ConfigError
from agentwatch.core.home import Home

log = logging.getLogger(__name__)
_UNREAD = object()


class WatchedConfig:
    """The last good config of one server, read again when its file changes."""

    def __init__(self, home: Home, config_path: Path | None) -> None:
        self.home = home
        self.config_path = config_path
        self.path = config_path or home.config_file
        self._lock = threading.Lock()
        self._signature: object = _UNREAD
        self._config: Config | None = None
        self._error: str | None = None

    def _file_signature(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def get(self, purpose: str) -> Config:
        """The config, re-read when the file changed; 503 config_invalid when no good version was ever read, saying
        that `purpose` ("the guard", "OTLP ingest") cannot work."""
        signature = self._file_signature()
        with self._lock:
            if signature != self._signature:
                self._signature = signature
                self._reload()
            if self._config is None:
                raise ApiError(503, "config_invalid", f"{purpose} cannot work: {self._error}; fix the config "
                               "(it is read again at the next request)")
            return self._config

    def _reload(self) -> None:
        try:
            self._config = config_for(self.home, self.config_path)
            self._error = None
        except (ConfigError, OSError) as exc:
            self._error = str(exc)
            kept = "the server keeps the last good config" if self._config else "no good config was read yet"
            log.error("cannot read the config: %s; %s", exc, kept)
