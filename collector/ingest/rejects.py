"""Rejected events: why each was refused, where it came from, and a file that keeps them."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from agentwatch.core.durable import fsync_dir
from agentwatch.core.locks import WriteLock

MAX_RAW_CHARS = 65_536  # a reject keeps this much of the offending text
COUNT_SUFFIX = ".count"
COUNT_READ_BYTES = 1 << 20
MAX_ROUNDS = 5  # an erasure's looks for reject files that appeared while it worked
LOCK_NAME = ".rejects.lock"  # held by a write and by an erasure's rewrite of a file, so neither loses the other's


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of an event ("" names the event as a whole)."""

    field: str
    message: str


@dataclass(frozen=True)
class Rejection:
    """An event that was refused, with its location and every problem found."""

    source: str
    unit: str  # line, item, row, or index (HTTP batches)
    number: int
    event_id: str | None
    errors: tuple[FieldError, ...]
    raw: str

    def describe(self) -> str:
        """One line a person can act on: where, which event, which fields, what is wrong."""
        where = f"{self.source} {self.unit} {self.number}"
        if self.event_id:
            where += f" (event_id {self.event_id!r})"
        problems = "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in self.errors)
        return f"{where}: {problems}"

    def as_json(self) -> dict:
        return {**asdict(self), "errors": [asdict(e) for e in self.errors]}


def field_errors(exc: ValidationError) -> tuple[FieldError, ...]:
    """pydantic's errors as (dotted field path, message) pairs."""
    errors = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        if error["type"] == "json_invalid":
            message = "not valid JSON: " + str(error.get("ctx", {}).get("error", message))
        errors.append(FieldError(path, message.removeprefix("Value error, ")))
    return tuple(errors)


def explain(model: type[BaseModel], text: str) -> tuple[FieldError, ...]:
    """Why `model` refuses `text`; empty when it accepts it."""
    try:
        model.model_validate_json(text)
    except ValidationError as exc:
        return field_errors(exc)
    return ()


def guess_event_id(text: str | bytes) -> str | None:
    """The event_id of a refused text, when it has a readable one (for the error message)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's parser goes
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) else None


class RejectLog:
    """Appends rejections of one ingest run to ``rejects/<dataset>-<time>-<pid>-<random>.jsonl``.

    Beside it, ``<same name>.count`` holds how many it has (replaced atomically after each write), so that
    ``status`` reads a few bytes per run instead of every rejected event.
    """

    def __init__(self, directory: Path, dataset: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        # Unique per run: two runs of one process in the same second shared a file, and the second's count
        # file overwrote the first's.
        self.path = directory / f"{dataset}-{stamp}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        self.dataset = dataset
        self.count = 0

    def write(self, rejections: list[Rejection]) -> None:
        if not rejections:
            return
        now = datetime.now(UTC).isoformat()
        with WriteLock(self.path.parent / LOCK_NAME):
            with open(self.path, "a", encoding="utf-8") as out:
                for rejection in rejections:
                    record = {"dataset": self.dataset, "rejected_at": now, **rejection.as_json()}
                    record["raw"] = record["raw"].rstrip("\r\n")[:MAX_RAW_CHARS]
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.count += len(rejections)
            # From the file's count, not this run's: an erasure may have removed records since the last write.
            recorded = _recorded_count(self.path.with_suffix(COUNT_SUFFIX))
            _write_count(self.path, self.dataset, recorded + len(rejections) if recorded is not None
                         else _count_lines(self.path))

    @property
    def written(self) -> Path | None:
        return self.path if self.count else None


def reject_counts(directory: Path) -> dict[str, int]:
    """Rejected events per dataset in a rejects folder, in bounded memory whatever it holds.

    Each reject file's count comes from its ``.count`` file; a reject file without one (written before counts
    were kept, or by a run killed between its two writes) has its lines counted in 1 MiB blocks.
    """
    counts: dict[str, int] = {}
    for path in sorted(directory.glob("*.jsonl")):
        dataset = _dataset_of(path)
        count = _recorded_count(path.with_suffix(COUNT_SUFFIX))
        if count is None:
            count = _count_lines(path)
        if count:
            counts[dataset] = counts.get(dataset, 0) + count
    return dict(sorted(counts.items()))


def _dataset_of(path: Path) -> str:
    return path.name.split("-", 1)[0]  # RejectLog names files <dataset>-<time>-<pid>-<random>.jsonl


def _recorded_count(counter: Path) -> int | None:
    try:
        count = json.loads(counter.read_text(encoding="utf-8"))["count"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return count if isinstance(count, int) else None


def _count_lines(path: Path) -> int:
    """Complete lines only: a file being appended to may end in half a line."""
    lines = 0
    try:
        with open(path, "rb") as stream:
            while block := stream.read(COUNT_READ_BYTES):
                lines += block.count(b"\n")
    except OSError:
        return 0
    return lines


def _write_count(path: Path, dataset: str, count: int) -> None:
    counter = path.with_suffix(COUNT_SUFFIX)
    temporary = counter.with_suffix(".tmp")
    temporary.write_text(json.dumps({"dataset": dataset, "count": count}), encoding="utf-8")
    os.replace(temporary, counter)


@dataclass(frozen=True)
class RejectErasure:
    """What erasing from the rejects did: records removed (or that would be), and the files they were in."""

    records: int
    files: int


def erase_rejects(directory: Path, matches: Callable[[str], bool], datasets: list[str],
                  dry_run: bool = False) -> RejectErasure:
    """Rewrite each reject file of `datasets` without the records holding a text that `matches` (an erasure:
    rejected events may hold the erased person's data too). A record's texts are its raw event's string and
    number values (JSON decoded, so escapes do not hide a value; the raw text itself when it is not JSON), its
    event id and its error messages. A file is read line by line (a reject is at most MAX_RAW_CHARS of text),
    twice when it holds a match: counted, then replaced atomically under the lock its writers take, its count
    following. Files that appear meanwhile (an ingest beside it) are looked at too, up to MAX_ROUNDS rounds."""
    records = files = 0
    seen: set[Path] = set()
    for _ in range(MAX_ROUNDS):
        fresh = [p for p in sorted(directory.glob("*.jsonl")) if p not in seen and _dataset_of(p) in datasets]
        if not fresh:
            break
        for path in fresh:
            seen.add(path)
            with WriteLock(directory / LOCK_NAME):
                removed = _erase_file(path, _dataset_of(path), matches, dry_run)
            if removed:
                records, files = records + removed, files + 1
    return RejectErasure(records, files)


def _erase_file(path: Path, dataset: str, matches: Callable[[str], bool], dry_run: bool) -> int:
    """Remove the matching records of one reject file (none in a dry run); returns how many matched."""
    def holds(line: str) -> bool:
        return any(matches(text) for text in _texts_of(line))

    with open(path, encoding="utf-8", errors="surrogateescape") as source:
        removed = sum(1 for line in source if holds(line))
    if not removed or dry_run:
        return removed
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    kept = 0
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as source, \
                open(temporary, "w", encoding="utf-8", errors="surrogateescape") as out:
            for line in source:
                if not holds(line):
                    kept += 1
                    out.write(line)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        fsync_dir(path.parent)
        _write_count(path, dataset, kept)
    finally:
        temporary.unlink(missing_ok=True)
    return removed


def _texts_of(line: str) -> list[str]:
    """The texts of a reject record a value may hide in (see `erase_rejects`)."""
    try:
        record = json.loads(line)
    except ValueError:
        return [line, _unescaped(line)]  # a torn line: its text, escapes decoded as well as they can be
    if not isinstance(record, dict):
        return [line]
    texts = [str(record.get("event_id") or "")]
    texts += [str(e.get("message", "")) for e in record.get("errors") or [] if isinstance(e, dict)]
    raw = record.get("raw")
    if isinstance(raw, str):
        try:
            texts += list(_leaves(json.loads(raw)))
        except (ValueError, RecursionError):
            texts += [raw, _unescaped(raw)]  # not JSON (a CSV row), or cut at MAX_RAW_CHARS
    return texts


def _leaves(value: object) -> Iterator[str]:
    """The string and number values inside a decoded JSON value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            yield item
        elif isinstance(item, int | float) and not isinstance(item, bool):
            yield str(item)


_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": " ", "f": " "}


def _unescaped(text: str) -> str:
    """JSON escapes in a text that is not whole JSON, decoded (\\n, \\u00e9, \\/, ...)."""
    def decode(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u") and len(code) == 5:
            return chr(int(code[1:], 16))
        return _SIMPLE_ESCAPES.get(code, code)
    return _ESCAPE.sub(decode, text)
