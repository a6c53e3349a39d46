"""Errors raised by agentwatch.

Every error agentwatch raises on purpose derives from one root, so a caller (or the CLI, which
turns them into a one-line message and exit code 2) can catch them all::

    AgentwatchError
    ├── ConfigError          a setting or the environment is wrong (AGENTWATCH_HOME, options)
    ├── FormatError          a payload does not have the shape its format requires
    │   └── InputFileError   a whole input file cannot be read (missing, unreadable, not JSON)
    ├── StoreError           the store on disk is unusable (lock timeout, the write-ahead log failing)
    │   └── StoreFullError   no space left on the disk (or quota) of the home: nothing was stored or acknowledged
    ├── AuthError            a key is missing, unknown, revoked or lacks the scope
    ├── CrmError             a CRM API (Salesforce, HubSpot) refused or failed a schema poll
    └── WorkerError          a helper process (Great Expectations') exited, hung or broke its protocol

Errors about single events are not exceptions: they are collected as ``Rejection`` rows
(``agentwatch.collector.ingest.rejects``) so that one bad event never costs the valid ones beside it.
"""

from __future__ import annotations


class AgentwatchError(Exception):
    """Root of every error agentwatch raises on purpose."""


class ConfigError(AgentwatchError):
    """A setting, option or the environment is wrong; the message says which and how to fix it."""


class FormatError(AgentwatchError):
    """A payload does not have the shape its format requires."""


class InputFileError(FormatError):
    """A whole input file cannot be read as the format it was given as."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class StoreError(AgentwatchError):
    """The store under AGENTWATCH_HOME cannot be used as it is."""


class StoreFullError(StoreError):
    """The disk (or the quota) holding AGENTWATCH_HOME is full: what was being written was not stored.

    Nothing is half-written: retrying once space is freed is safe (stored events are recognised as duplicates).
    """


class AuthError(AgentwatchError):
    """An API key is missing, unknown, revoked, or lacks the scope an operation needs."""


class CrmError(AgentwatchError):
    """A CRM API refused or failed a request of a schema poller. The message is a fixed phrase with the status
    code and the API's error code, never a secret, a header or a URL with a token; `retry_after_s` is how long the
    API asked to be left alone, when it said so."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class WorkerError(AgentwatchError):
    """A helper process failed: it exited, did not answer in time or broke its protocol; the message says which,
    with the last line it printed."""
