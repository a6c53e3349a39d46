"""Where agentwatch keeps its data: AGENTWATCH_HOME (default ``./.agentwatch``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agentwatch.core.errors import ConfigError

HOME_ENV = "AGENTWATCH_HOME"
DEFAULT_HOME = Path(".agentwatch")


@dataclass(frozen=True)
class Home:
    """The folder layout under AGENTWATCH_HOME.

    ``store/<dataset>/day=YYYY-MM-DD/part-*.parquet``  the events (see docs/architecture.md)
    ``wal/``      events acknowledged by the HTTP API and not yet in the store
    ``rejects/``  one JSONL file per ingest run that rejected something
    ``keys.json`` API keys, hashed
    """

    root: Path

    @classmethod
    def resolve(cls, override: Path | str | None = None) -> Home:
        """The home given, else AGENTWATCH_HOME, else ./.agentwatch; created if missing."""
        root = Path(override or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()
        if root.exists() and not root.is_dir():
            raise ConfigError(f"{HOME_ENV}={root} is a file; point it at a folder (it is created if missing)")
        home = cls(root.resolve())
        try:
            for folder in (home.store, home.wal, home.rejects, home.locks):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"cannot use {root} as the agentwatch home ({HOME_ENV} or --home): {exc.strerror}"
            raise ConfigError(problem) from None
        return home

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def wal(self) -> Path:
        return self.root / "wal"

    @property
    def rejects(self) -> Path:
        return self.root / "rejects"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def keys_file(self) -> Path:
        return self.root / "keys.json"

    def dataset_dir(self, dataset: str) -> Path:
        return self.store / dataset
