"""A full disk says so: an out-of-space error anywhere in a write becomes one ``StoreFullError``."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from agentwatch.core.errors import StoreFullError
from agentwatch.core.home import Home

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# DuckDB reports a failed write as text (its IOException carries no errno attribute).
NO_SPACE_TEXTS = (f'"errno":"{errno.ENOSPC}"', f'"errno":"{errno.EDQUOT}"', "No space left on device",
                  "Disk quota exceeded")


def is_no_space(exc: BaseException) -> bool:
    """Whether an error says the disk or the quota is full."""
    if isinstance(exc, StoreFullError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE_ERRNOS
    if isinstance(exc, duckdb.Error):
        return any(text in str(exc) for text in NO_SPACE_TEXTS)
    return False


def store_full(home: Home, doing: str) -> StoreFullError:
    """The one error a full disk gives, naming the home and what could not be written."""
    return StoreFullError(f"no space left on the disk holding {home.root} ({doing}): nothing of it was stored; "
                          "free some space and retry (events already stored are skipped as duplicates)")


@contextmanager
def no_space_is_store_full(home: Home, doing: str) -> Iterator[None]:
    """Turn an out-of-space OSError or DuckDB error raised inside into ``store_full(home, doing)``."""
    try:
        yield
    except StoreFullError:
        raise
    except (OSError, duckdb.Error) as exc:
        if is_no_space(exc):
            raise store_full(home, doing) from exc
        raise
