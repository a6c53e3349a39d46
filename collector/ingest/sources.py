"""Input files as chunks of raw JSON texts, each with its location (line, item or row number).

Every format is brought to the same shape so that one validator serves them all:
JSONL (optionally gzipped) is split into lines without a Python loop; JSON arrays and objects are
split by DuckDB; CSV and Parquet rows in the flat column layout (docs/formats.md) are turned into
JSON objects by SQL generated from the dataset's field list.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import duckdb
import numpy as np
import pyarrow as pa

from agentwatch.core.errors import InputFileError
from agentwatch.core.limits import Limits
from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.store import duck
from agentwatch.store.datasets import Dataset, FieldSpec, Kind

CHUNK_BYTES = 64 << 20
STORE_BOOKKEEPING_COLUMNS = frozenset({"event_key", "ingested_at"})
TABLE_CHUNK_ROWS = 50_000  # JSON items, CSV and Parquet rows per chunk: a large file is read in pieces
CHUNK_ROWS = 1_000_000  # lines per chunk at most: millions of tiny lines must not make one huge table
INFLATE_PIECE = 1 << 20  # bytes inflated per gzip read: a damaged stream loses none of the lines before it
DEFAULT_LIMITS = Limits()
FORMATS = ("jsonl", "json", "csv", "parquet")
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class RawChunk:
    """A run of events from one source, as JSON texts with their locations."""

    source: str
    unit: str  # "line", "item" or "row": what `numbers` count
    numbers: np.ndarray  # int64, one per text
    texts: pa.Array  # large_string
    bytes_done: int  # how far into the source this chunk reaches, for progress bars
    # Texts refused before validation (too long, too deep, not UTF-8, ...): (number, problem, first bytes,
    # field or ""). Their slots in `texts` are null, so the validator skips them.
    refused: tuple[tuple[int, str, bytes, str], ...] = ()

    def __len__(self) -> int:
        return len(self.numbers)


def detect_format(path: Path) -> str:
    """The format a file's name implies."""
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".csv", "csv"),
                        (".parquet", "parquet")):
        if name.endswith(suffix):
            return fmt
    raise InputFileError(path, "cannot tell the format from the file name; pass --format " + "|".join(FORMATS))


def read_source(path: Path, dataset: Dataset, fmt: str | None = None, limits: Limits | None = None
                ) -> Iterator[RawChunk]:
    """Chunks of one input file."""
    if not path.is_file():
        raise InputFileError(path, "no such file")
    fmt = fmt or detect_format(path)
    limits = limits or DEFAULT_LIMITS
    if fmt == "jsonl":
        return read_jsonl(path, limits)
    if fmt == "json":
        return read_json_document(path, limits)
    if fmt in ("csv", "parquet"):
        return read_flat_table(path, dataset, fmt, limits)
    raise InputFileError(path, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


class StreamStopped(Exception):
    """Reading a compressed stream stopped early: the bytes before it were returned, this says why."""


class _Inflated:
    """A .gz file's inflated bytes, at most `bound` of them. Reading past the bound, or into damage, raises
    StreamStopped only after every byte before it has been returned, so no complete line is lost."""

    def __init__(self, path: Path, bound: int) -> None:
        self._file = gzip.open(path, "rb")  # noqa: SIM115 (closed by __exit__)
        self._bound = bound
        self._total = 0
        self._stopped: StreamStopped | None = None

    def __enter__(self) -> _Inflated:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def read(self, size: int) -> bytes:
        if self._stopped:
            raise self._stopped
        pieces, got = [], 0
        while got < size and not self._stopped:
            room = self._bound - self._total
            try:
                if room <= 0:
                    if self._file.read1(1):
                        self._stopped = StreamStopped(
                            f"inflates to more than {self._bound:,} bytes, the bound set by "
                            "limits.max_decompressed_bytes in agentwatch.yaml: reading stopped {where} (raise the "
                            "bound if the file is genuine)")
                    break
                piece = self._file.read1(min(size - got, room, INFLATE_PIECE))  # one piece: none lost on error
            except EOFError:
                self._stopped = StreamStopped("is truncated {where}: the compressed data ends before the end of "
                                              "the file (was the copy or download cut short?)")
                break
            except (OSError, zlib.error) as exc:  # not gzip at all, or damaged inside
                self._stopped = StreamStopped(f"is not a readable .gz file {{where}} ({exc or type(exc).__name__})")
                break
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
            self._total += len(piece)
        if not pieces and self._stopped:
            raise self._stopped
        return b"".join(pieces)


def _open_binary(path: Path, limits: Limits) -> BinaryIO | _Inflated:
    if path.name.lower().endswith(".gz"):
        return _Inflated(path, limits.max_decompressed_bytes)
    return open(path, "rb")


def read_jsonl(path: Path, limits: Limits | None = None, chunk_bytes: int = CHUNK_BYTES) -> Iterator[RawChunk]:
    """JSONL lines in chunks of about `chunk_bytes`, split on newlines by numpy (no per-line loop)."""
    limits = limits or Limits()
    try:
        with _open_binary(path, limits) as stream:
            yield from split_lines(stream, str(path), limits.max_event_bytes, chunk_bytes)
    except StreamStopped as exc:
        raise InputFileError(path, str(exc)) from None
    except OSError as exc:  # unreadable
        raise InputFileError(path, f"cannot read the file: {exc.strerror or exc}") from None


class _Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...


def split_lines(stream: _Reader, source: str, max_event_bytes: int = DEFAULT_LIMITS.max_event_bytes,
                chunk_bytes: int = CHUNK_BYTES) -> Iterator[RawChunk]:
    """Split a byte stream into line chunks; each text keeps its newline (JSON ignores it).

    A line longer than `max_event_bytes` is refused as soon as it is known to be, and passed over block by
    block to its newline: memory stays within a block plus the bound whatever the input.
    """
    head = stream.read(len(UTF8_BOM))
    carry = b"" if head == UTF8_BOM else head  # editors on Windows start UTF-8 files with a BOM
    next_line = 1
    done = len(head)
    skipping: list = []  # [bytes passed so far, first bytes] of an over-long line
    try:
        while True:
            block = stream.read(chunk_bytes)
            done += len(block)
            eof = not block
            if skipping:
                end = block.find(b"\n")
                if end < 0 and not eof:
                    skipping[0] += len(block)
                    continue
                end = len(block) - 1 if end < 0 else end
                yield _long_line(source, next_line, skipping[0] + end + 1, skipping[1], max_event_bytes, done)
                next_line += 1
                skipping = []
                block = block[end + 1:]
                if eof:
                    return
            data = carry + block
            if eof:
                if not data.strip():
                    return
                data += b"\n"  # a last line without its newline
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
            cut = int(ends[-1]) + 1 if len(ends) else 0
            carry = data[cut:]
            for start in range(0, len(ends), CHUNK_ROWS):  # a chunk of tiny lines stays a bounded table
                part = ends[start:start + CHUNK_ROWS]
                first = int(ends[start - 1]) + 1 if start else 0
                offsets = np.concatenate(([first], part + 1)).astype(np.int64)
                texts, refused = _line_texts(data, offsets, next_line)
                numbers = np.arange(next_line, next_line + len(part), dtype=np.int64)
                next_line += len(part)
                yield RawChunk(source, "line", numbers, texts, done, refused)
            if len(carry) > max_event_bytes:
                skipping = [len(carry), carry[:1024]]
                carry = b""
            if eof:
                return
    except StreamStopped as exc:
        if skipping:  # the over-long line the stream stopped in is refused like any other
            yield _long_line(source, next_line, skipping[0], skipping[1], max_event_bytes, done)
        where = f"after line {next_line - 1:,}; the lines before it were read" if next_line > 1 else "at its start"
        raise StreamStopped(str(exc).replace("{where}", where)) from None


def _long_line(source: str, number: int, size: int, head: bytes, limit: int, done: int) -> RawChunk:
    problem = (f"the event is {size:,} bytes, more than {limit:,} bytes (limits.max_event_bytes): refused "
               "without being read whole")
    return RawChunk(source, "line", np.array([number], dtype=np.int64), pa.nulls(1, pa.large_string()), done,
                    ((number, problem, head, ""),))


def _line_texts(data: bytes, offsets: np.ndarray, first_line: int) -> tuple[pa.Array, tuple]:
    """The lines as a string array over `data` (no copy); lines that are not UTF-8 become nulls."""
    count = len(offsets) - 1
    texts = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))
    bad: dict[int, str] = {}
    try:
        texts.validate(full=True)  # UTF-8 of every line, vectorized
    except pa.ArrowInvalid:  # rare: find the offending lines one by one
        for i in range(count):
            try:
                data[offsets[i]:offsets[i + 1]].decode("utf-8")
            except UnicodeDecodeError as exc:
                bad[i] = f"not valid UTF-8 text ({exc.reason} at byte {exc.start})"
    if not bad:
        return texts, ()
    valid = np.ones(count, dtype=bool)
    valid[list(bad)] = False
    bitmap = pa.array(valid).buffers()[1]
    texts = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data), bitmap, len(bad))
    refused = tuple((first_line + i, problem, bytes(data[offsets[i]:min(offsets[i + 1], offsets[i] + 1024)]), "")
                    for i, problem in sorted(bad.items()))
    return texts, refused


def read_json_document(path: Path, limits: Limits = DEFAULT_LIMITS) -> Iterator[RawChunk]:
    """A JSON array of events, or one or more JSON objects; each element becomes one text."""
    last = _last_significant_byte(path, limits)  # first: it holds a .gz to the decompression bound
    first = _first_significant_byte(path, limits)
    if first not in (b"[", b"{"):
        raise InputFileError(path, "expected a JSON array or object at the start of the file")
    layout = "array" if first == b"[" else "unstructured"
    if layout == "array" and last != b"]":  # DuckDB reads a cut-off array without a word
        raise InputFileError(path, "not valid JSON: the array is not closed (no final ']'); is the file truncated?")
    sql = f"SELECT json::VARCHAR AS raw FROM read_json_objects({sql_string(str(path))}, format = '{layout}')"
    yield from _query_texts(path, sql, "item", 1, "not valid JSON")


def _query_texts(path: Path, sql: str, unit: str, first_number: int, problem: str,
                 con: duckdb.DuckDBPyConnection | None = None) -> Iterator[RawChunk]:
    """The `raw` column of a DuckDB query as chunks of TABLE_CHUNK_ROWS texts, read as they are yielded (a
    large file is never held whole); a DuckDB error becomes `problem` naming the file, the chunks before it
    kept."""
    con = con or duck.connect()
    number, size = first_number, path.stat().st_size
    try:
        try:
            reader = con.sql(sql).to_arrow_reader(TABLE_CHUNK_ROWS)
            pending: list[pa.Array] = []
            for batch in itertools.chain(reader, [None]):  # DuckDB's batches vary in size: gather them into full chunks
                if batch is not None:
                    pending.append(batch.column(0))
                rows = sum(len(p) for p in pending)
                if rows and (batch is None or rows >= TABLE_CHUNK_ROWS):
                    texts = pa.concat_arrays(pending).cast(pa.large_string())
                    pending = []
                    numbers = np.arange(number, number + len(texts), dtype=np.int64)
                    number += len(texts)
                    yield RawChunk(str(path), unit, numbers, texts, size)
        except duckdb.Error as exc:  # DuckDB says where the file breaks
            raise InputFileError(path, f"{problem}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def _last_significant_byte(path: Path, limits: Limits) -> bytes:
    """The last non-blank byte; a .gz is inflated through to its end (within the bound) on the way."""
    try:
        with _open_binary(path, limits) as stream:
            if isinstance(stream, _Inflated):  # no seeking in a gzip stream: keep a sliding tail
                tail = b""
                while block := stream.read(1 << 20):
                    tail = (tail + block)[-4096:]
            else:
                stream.seek(max(path.stat().st_size - 4096, 0))
                tail = stream.read()
    except StreamStopped as exc:
        raise InputFileError(path, str(exc).replace("{where}", "before any event was read")) from None
    return tail.rstrip(b" \t\r\n")[-1:]


def _first_significant_byte(path: Path, limits: Limits = DEFAULT_LIMITS) -> bytes:
    try:
        with _open_binary(path, limits) as stream:
            head = stream.read(4096).lstrip(b" \t\r\n\xef\xbb\xbf")
    except StreamStopped:
        return b""
    return head[:1]


# -- CSV and Parquet: flat columns -> JSON objects ---------------------------------------------


def _flat_names(spec: FieldSpec) -> list[str]:
    """Column names accepted for a (sub)field in flat files: its stored name, then its key."""
    return list(dict.fromkeys([spec.column_name, spec.key]))


def _cell_as_json(column: str, column_type: str, kind: Kind) -> str:
    """SQL turning one flat cell into the JSON value the field expects (strings stay strings)."""
    c = quote_identifier(column)
    if column_type.startswith("TIMESTAMPTZ") or column_type.startswith("TIMESTAMP WITH TIME ZONE"):
        return f"to_json(strftime({c}, '%Y-%m-%dT%H:%M:%S.%fZ'))"
    if column_type.startswith("TIMESTAMP"):  # no offset: refused like a JSON time without one, never guessed
        return f"to_json(strftime({c}, '%Y-%m-%dT%H:%M:%S.%f'))"
    if column_type != "VARCHAR":
        return f"to_json({c})"
    match kind:
        case Kind.NUMBER:
            return f"COALESCE(to_json(TRY_CAST({c} AS DOUBLE)), to_json({c}))"
        case Kind.INTEGER:
            whole = f"regexp_full_match({c}, '-?[0-9]+')"
            integer = f"COALESCE(to_json(TRY_CAST({c} AS BIGINT)), to_json({c}))"
            return f"CASE WHEN {whole} THEN {integer} ELSE to_json({c}) END"
        case Kind.BOOLEAN:
            return (f"CASE lower({c}) WHEN 'true' THEN 'true'::JSON WHEN 'false' THEN 'false'::JSON "
                    f"ELSE to_json({c}) END")
        case Kind.OBJECT | Kind.ANY:
            return f"CASE WHEN json_valid({c}) THEN {c}::JSON ELSE to_json({c}) END"
        case _:
            return f"to_json({c})"


def flat_to_json_sql(dataset: Dataset, columns: dict[str, str], relation: str) -> str:
    """SELECT (number, raw) turning a flat relation with `columns` (name -> type) into JSON texts."""
    used: set[str] = set()
    pairs: list[str] = []
    for spec in dataset.fields:
        if spec.kind is Kind.STRUCT:
            members, cells = [], []
            for sub in spec.subfields:
                names = [*_flat_names(sub), f"{spec.key}.{sub.key}"]
                found = next((n for n in names if n in columns), None)
                if found:
                    used.add(found)
                    cells.append(f"{quote_identifier(found)} IS NULL")
                    members.append(f"{sql_string(sub.key)}, {_cell_as_json(found, columns[found], sub.kind)}")
            if members:
                # A row whose cells of this object are all empty does not have the object (an `ok` row
                # in a file with error_code/error_message columns), rather than an object of nulls.
                value = f"CASE WHEN {' AND '.join(cells)} THEN NULL ELSE json_object({', '.join(members)}) END"
                pairs.append(f"{sql_string(spec.key)}, {value}")
            continue
        found = next((n for n in _flat_names(spec) if n in columns), None)
        if found:
            used.add(found)
            pairs.append(f"{sql_string(spec.key)}, {_cell_as_json(found, columns[found], spec.kind)}")
    # A part file of a store (another home being merged in): its bookkeeping columns are recomputed,
    # and its `extra` column holds the unknown keys the events were sent with.
    used |= STORE_BOOKKEEPING_COLUMNS
    restore_extra = dataset.keeps_extra and columns.get("extra") == "JSON"
    if restore_extra:
        used.add("extra")
    for name, column_type in columns.items():
        if name not in used and dataset.keeps_extra:
            pairs.append(f"{sql_string(name)}, {_cell_as_json(name, column_type, Kind.ANY)}")
    event = f"json_object({', '.join(pairs)})::VARCHAR"
    if restore_extra:
        # Join the two minified objects' members as text: a JSON merge patch would drop nested nulls, and
        # the unknown keys in `extra` cannot collide with the known keys of the event.
        inner = "CAST(extra AS VARCHAR)[2:-2]"
        event = (f"CASE WHEN json_type(extra) = 'OBJECT' AND {inner} <> '' "
                 f"THEN '{{' || {inner} || ',' || ({event})[2:] ELSE {event} END")
    return f"SELECT {event} AS raw FROM {relation}"


def read_flat_table(path: Path, dataset: Dataset, fmt: str, limits: Limits = DEFAULT_LIMITS) -> Iterator[RawChunk]:
    """CSV (header row, nested objects as JSON text) or Parquet in the flat layout."""
    if path.name.lower().endswith(".gz"):
        _last_significant_byte(path, limits)  # DuckDB inflates it: hold it to the bound first
    con = duck.connect()
    if fmt == "csv":
        relation = f"read_csv({sql_string(str(path))}, header = true, all_varchar = true)"
        first_number = 2  # line 1 is the header
    else:
        relation = f"read_parquet({sql_string(str(path))}, hive_partitioning = false)"
        first_number = 1
    try:
        described = duck.run(con, f"DESCRIBE SELECT * FROM {relation}")
    except duckdb.Error as exc:
        con.close()
        raise InputFileError(path, f"cannot read as {fmt}: {str(exc).splitlines()[0]}") from None
    columns = {row[0]: row[1] for row in described}
    try:
        _require_event_columns(path, dataset, fmt, columns, limits)
    except InputFileError:
        con.close()
        raise
    yield from _query_texts(path, flat_to_json_sql(dataset, columns, relation), "line" if fmt == "csv" else "row",
                            first_number, f"cannot read as {fmt}", con)


def _require_event_columns(path: Path, dataset: Dataset, fmt: str, columns: dict[str, str], limits: Limits) -> None:
    """A flat file none of whose columns names an event field holds no events, whatever it holds."""
    known = {name for spec in dataset.fields for name in _flat_names(spec)}
    known |= {f"{spec.key}.{sub.key}" for spec in dataset.fields for sub in spec.subfields}
    known |= {name for spec in dataset.fields for sub in spec.subfields for name in _flat_names(sub)}
    if known & set(columns):
        return
    what = "CSV but its header" if fmt == "csv" else "Parquet but its columns"
    problem = f"read as {what} names no event field (expected columns such as event_id, ts, ...)"
    first = _first_significant_byte(path, limits)
    if first == b"{":
        problem += "; it looks like JSONL: pass --format jsonl (or name the file .jsonl)"
    elif first == b"[":
        problem += "; it looks like a JSON array: pass --format json (or name the file .json)"
    else:
        problem += "; see docs/formats.md for the flat layout"
    raise InputFileError(path, problem)
