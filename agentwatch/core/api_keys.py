"""API keys: created and revoked with the CLI, checked by the HTTP API on every request.

A token reads ``aw_<id>_<secret>``: an 8-hex-digit id that names the key (safe to log and show)
and a 32-byte random secret (URL-safe base64) that is shown once, when the key is created.
``keys.json`` under AGENTWATCH_HOME keeps, per key, its id, name, scope, dates and the SHA-256 of
its secret, never the secret itself. The file is replaced atomically (temp file, fsync, rename)
and readable by its owner only (mode 0600).

Scopes: ``ingest`` may send events and snapshots, ``read`` may read status, ``admin`` may do both.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from agentwatch.core.durable import fsync_dir
from agentwatch.core.errors import AuthError, ConfigError
from agentwatch.core.home import Home
from agentwatch.core.locks import WriteLock

log = logging.getLogger(__name__)

SCOPES = ("ingest", "read", "admin")
TOKEN_PREFIX = "aw_"
KEY_FILE_VERSION = 1
_TOKEN = re.compile(r"aw_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
# Compared against when the id is unknown, so an unknown id costs the same time as a wrong secret.
_NOT_READ = object()
_DUMMY_HASH = hashlib.sha256(b"agentwatch: no such key").hexdigest()


class ApiKey(BaseModel):
    """One API key as listed: never its secret, nor the secret's hash."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str | None
    scope: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows(self, scope: str) -> bool:
        """True when this key may do what `scope` permits (admin implies ingest and read)."""
        return self.scope == "admin" or self.scope == scope


def _hash_secret(secret: str) -> str:
    # The secret is 256 random bits, so a plain SHA-256 cannot be brute-forced: a slow password
    # KDF (bcrypt, scrypt) would only cost time on every request and add nothing.
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token.strip())
    return (match.group(1), match.group(2)) if match else None


def check_scope(scope: str) -> str:
    """`scope` when it is one of SCOPES; otherwise a ConfigError listing them."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)} (admin implies ingest and read)")
    return scope


class KeyStore:
    """The API keys of one home, kept in ``home.keys_file``.

    ``authenticate`` re-reads the file whenever it changed on disk (mtime, size or inode), so a
    key created or revoked with the CLI takes effect in a running server without a restart.
    """

    def __init__(self, home: Home) -> None:
        self.path: Path = home.keys_file
        self._lock_path = home.lock_file("keys")
        self._mutex = threading.Lock()
        self._signature: object = _NOT_READ
        self._records: dict[str, dict[str, Any]] = {}

    # -- the CLI's operations ------------------------------------------------------------------

    def create(self, scope: str, name: str | None = None) -> tuple[ApiKey, str]:
        """Create a key; returns its record and the full token (shown once, never stored)."""
        check_scope(scope)
        with WriteLock(self._lock_path, timeout_s=10):
            records = self._read_file()
            key_id = secrets.token_hex(4)
            while key_id in records:
                key_id = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            created = datetime.now(UTC).replace(microsecond=0)
            records[key_id] = {
                "id": key_id,
                "name": name,
                "scope": scope,
                "created_at": created.isoformat(),
                "revoked_at": None,
                "secret_sha256": _hash_secret(secret),
            }
            self._write_file(records)
        return _as_key(records[key_id]), f"{TOKEN_PREFIX}{key_id}_{secret}"

    def list(self) -> builtins.list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        keys = [_as_key(record) for record in self._read_file().values()]
        return sorted(keys, key=lambda k: k.created_at)  # stable: same-second keys stay in creation order

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id (revoking a revoked key changes nothing); AuthError for an unknown id."""
        with WriteLock(self._lock_path, timeout_s=10):
            records = self._read_file()
            record = records.get(key_id)
            if record is None:
                raise AuthError(f"no API key with id {key_id!r}; list the keys with `agentwatch keys list`")
            if record.get("revoked_at") is None:
                record["revoked_at"] = datetime.now(UTC).replace(microsecond=0).isoformat()
                self._write_file(records)
        return _as_key(record)

    # -- the server's check --------------------------------------------------------------------

    def authenticate(self, token: str) -> ApiKey | None:
        """The key a token belongs to, or None when it is malformed, unknown or revoked."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        records = self._current_records()
        record = records.get(key_id)
        expected = record["secret_sha256"] if record else _DUMMY_HASH
        matches = hmac.compare_digest(_hash_secret(secret), expected)
        if record is None or not matches or record.get("revoked_at") is not None:
            return None
        return _as_key(record)

    def _current_records(self) -> dict[str, dict[str, Any]]:
        try:
            stat = os.stat(self.path)
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            signature = None
        with self._mutex:
            if signature != self._signature:
                try:
                    self._records = self._read_file()
                except ConfigError as exc:  # fail closed: no key is accepted until the file is fixed
                    log.error("%s; every request is refused until it is fixed", exc)
                    self._records = {}
                self._signature = signature
            return self._records

    # -- the file ------------------------------------------------------------------------------

    def _read_file(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"cannot read the key file {self.path}: {exc.strerror}") from None
        try:
            document = json.loads(text)
            records = {record["id"]: record for record in document["keys"]}
            for record in records.values():
                if not isinstance(record.get("secret_sha256"), str):
                    raise ValueError(f"key {record.get('id')!r} has no secret_sha256")
                _as_key(record)  # every field a key needs is there and readable
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"the key file {self.path} is damaged ({type(exc).__name__}: {exc}); restore it from a "
                "backup, or delete it and create new keys with `agentwatch keys create`"
            ) from None
        return records

    def _write_file(self, records: dict[str, dict[str, Any]]) -> None:
        document = {"version": KEY_FILE_VERSION, "keys": list(records.values())}
        data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(temp, self.path)
        fsync_dir(self.path.parent)


def _as_key(record: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=record["id"],
        name=record.get("name"),
        scope=record["scope"],
        created_at=datetime.fromisoformat(record["created_at"]),
        revoked_at=datetime.fromisoformat(record["revoked_at"]) if record.get("revoked_at") else None,
    )
