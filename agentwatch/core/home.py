"""Where agentwatch keeps its data: AGENTWATCH_HOME (default ``./.agentwatch``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agentwatch.core.errors import ConfigError

HOME_ENV = "AGENTWATCH_HOME"
CONFIG_ENV = "AGENTWATCH_CONFIG"  # the config file, handed to the dashboard process by `agentwatch dashboard`
DEFAULT_HOME = Path(".agentwatch")


@dataclass(frozen=True)
class Home:
    """The folder layout under AGENTWATCH_HOME.

    ``store/<dataset>/day=YYYY-MM-DD/part-*.parquet``  the events (see docs/architecture.md)
    ``wal/``               events acknowledged by the HTTP API and not yet in the store
    ``rejects/``           one JSONL file per ingest run that rejected something
    ``quarantine/<dataset>/``  damaged parts moved out of the store, each with a JSON note
    ``aggregates/<rollup>/``  the checks' kept aggregates per day, with what they summarise (safe to delete)
    ``locks/``             flock files: one per dataset writer and rewrite, ``serve.lock``, ``aggregates.lock``
    ``keys.json``          API keys, hashed
    ``agentwatch.yaml``    the config, unless ``--config`` names another file
    ``incidents.sqlite3``  the incidents
    ``alerts.sqlite3``     the alerting state: outbox, what was sent, silences, agent pauses
    ``crm_polls.sqlite3``  the CRM schema pollers: each one's last success, last error and next run, and its polls
    ``erasures.jsonl``     the audit record of ``agentwatch erase`` (who, when, how many; never the values)

    Every file name in the home is spelled here and nowhere else.
    """

    root: Path

    @classmethod
    def resolve(cls, override: Path | str | None = None) -> Home:
        """The home given, else AGENTWATCH_HOME, else ./.agentwatch; created if missing."""
        root = _root(override)
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

    @classmethod
    def existing(cls, override: Path | str | None = None) -> Home:
        """The home :meth:`resolve` finds, which must already hold a store: a command that reads refuses a mistyped
        path, where creating an empty home would report all clear about nothing."""
        root = _root(override)
        missing = not root.exists()
        if missing or (root.is_dir() and not (root / "store").is_dir()):
            source = "--home" if override else HOME_ENV if os.environ.get(HOME_ENV) else "the default home"
            where = root.absolute()
            state = "does not exist" if missing else "holds no agentwatch store"
            raise ConfigError(f"{where} ({source}) {state}; check the path, or create the home: `agentwatch ingest "
                              f"actions FILE --home {where}` or `agentwatch serve --home {where}` make one")
        return cls.resolve(override)  # which refuses a file

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
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def keys_file(self) -> Path:
        return self.root / "keys.json"

    @property
    def config_file(self) -> Path:
        return self.root / "agentwatch.yaml"

    @property
    def incidents_file(self) -> Path:
        return self.root / "incidents.sqlite3"

    @property
    def alerts_file(self) -> Path:
        return self.root / "alerts.sqlite3"

    @property
    def crm_polls_file(self) -> Path:
        return self.root / "crm_polls.sqlite3"

    @property
    def aggregates(self) -> Path:
        return self.root / "aggregates"

    @property
    def erasures_file(self) -> Path:
        return self.root / "erasures.jsonl"

    def lock_file(self, name: str) -> Path:
        """The flock file of one writer: a dataset, ``keys``, or ``serve`` (one server per home)."""
        return self.locks / f"{name}.lock"

    def dataset_dir(self, dataset: str) -> Path:
        return self.store / dataset


def _root(override: Path | str | None) -> Path:
    return Path(override or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()
