"""Input files as chunks of raw JSON texts, each with its location (line, item or row number).

Every format is brought to the same shape so that one validator serves them all:
JSONL (optionally gzipped) is split into lines without a Python loop; JSON arrays and objects are
split by DuckDB; CSV and Parquet rows in the flat column layout (docs/formats.md) are turned into
JSON objects by SQL generated from the dataset's field list.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from agentwatch.core.errors import InputFileError
from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.store import duck
from agentwatch.store.datasets import Dataset, FieldSpec, Kind

CHUNK_BYTES = 64 << 20
STORE_BOOKKEEPING_COLUMNS = frozenset({"event_key", "ingested_at"})
MAX_EVENT_BYTES = 8 << 20  # a longer line is refused on its own (the HTTP API caps bodies at 10 MiB)
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
    # Lines refused before validation (too long, not UTF-8): (number, problem, first bytes). Their
    # slots in `texts` are null, so the validator skips them.
    refused: tuple[tuple[int, str, bytes], ...] = ()

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


def read_source(path: Path, dataset: Dataset, fmt: str | None = None) -> Iterator[RawChunk]:
    """Chunks of one input file."""
    if not path.is_file():
        raise InputFileError(path, "no such file")
    fmt = fmt or detect_format(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "json":
        return read_json_document(path)
    if fmt in ("csv", "parquet"):
        return read_flat_table(path, dataset, fmt)
    raise InputFileError(path, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _open_binary(path: Path) -> BinaryIO:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def read_jsonl(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[RawChunk]:
    """JSONL lines in chunks of about `chunk_bytes`, split on newlines by numpy (no per-line loop)."""
    try:
        with _open_binary(path) as stream:
            yield from split_lines(stream, str(path), chunk_bytes)
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a broken or truncated .gz
        raise InputFileError(path, f"cannot read the file: {exc or type(exc).__name__}") from None


def split_lines(stream: BinaryIO | io.BytesIO, source: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[RawChunk]:
    """Split a byte stream into line chunks; each text keeps its newline (JSON ignores it)."""
    head = stream.read(len(UTF8_BOM))
    carry = b"" if head == UTF8_BOM else head  # editors on Windows start UTF-8 files with a BOM
    next_line = 1
    done = len(head)
    while True:
        block = stream.read(chunk_bytes)
        done += len(block)
        data = carry + block
        if not block:
            if data.strip():
                data += b"\n"  # a last line without its newline
            else:
                return
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        if len(ends) == 0:
            carry = data
            continue
        cut = int(ends[-1]) + 1
        carry, data = data[cut:], data[:cut]
        offsets = np.concatenate(([0], ends + 1)).astype(np.int64)
        texts, refused = _line_texts(data, offsets, next_line)
        numbers = np.arange(next_line, next_line + len(ends), dtype=np.int64)
        next_line += len(ends)
        yield RawChunk(source, "line", numbers, texts, done, refused)
        if not block:
            return


def _line_texts(data: bytes, offsets: np.ndarray, first_line: int) -> tuple[pa.Array, tuple]:
    """The lines as a string array over `data` (no copy); too long or non-UTF-8 lines become nulls."""
    count = len(offsets) - 1
    texts = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))
    bad: dict[int, str] = {
        int(i): f"the event is {int(offsets[i + 1] - offsets[i]):,} bytes; the limit is {MAX_EVENT_BYTES:,}"
        for i in np.flatnonzero(np.diff(offsets) > MAX_EVENT_BYTES)
    }
    try:
        texts.validate(full=True)  # UTF-8 of every line, vectorized
    except pa.ArrowInvalid:  # rare: find the offending lines one by one
        for i in range(count):
            if i not in bad:
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
    refused = tuple((first_line + i, problem, bytes(data[offsets[i]:min(offsets[i + 1], offsets[i] + 1024)]))
                    for i, problem in sorted(bad.items()))
    return texts, refused


def read_json_document(path: Path) -> Iterator[RawChunk]:
    """A JSON array of events, or one or more JSON objects; each element becomes one text."""
    first = _first_significant_byte(path)
    if first not in (b"[", b"{"):
        raise InputFileError(path, "expected a JSON array or object at the start of the file")
    layout = "array" if first == b"[" else "unstructured"
    con = duck.connect()
    try:
        table = con.sql(
            f"SELECT json::VARCHAR AS raw FROM read_json_objects({sql_string(str(path))}, format = '{layout}')"
        ).to_arrow_table()
    except Exception as exc:  # DuckDB says where the JSON breaks
        raise InputFileError(path, f"not valid JSON: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    if layout == "array" and _last_significant_byte(path) != b"]":  # DuckDB reads a cut-off array without a word
        raise InputFileError(path, "not valid JSON: the array is not closed (no final ']'); is the file truncated?")
    texts = table.column("raw").combine_chunks().cast(pa.large_string())
    numbers = np.arange(1, len(texts) + 1, dtype=np.int64)
    yield RawChunk(str(path), "item", numbers, texts, path.stat().st_size)


def _last_significant_byte(path: Path) -> bytes:
    with _open_binary(path) as stream:
        if path.name.lower().endswith(".gz"):  # no seeking in a gzip stream: keep a sliding tail
            tail = b""
            while block := stream.read(1 << 20):
                tail = (tail + block)[-4096:]
        else:
            stream.seek(max(path.stat().st_size - 4096, 0))
            tail = stream.read()
    return tail.rstrip(b" \t\r\n")[-1:]


def _first_significant_byte(path: Path) -> bytes:
    with _open_binary(path) as stream:
        head = stream.read(4096).lstrip(b" \t\r\n\xef\xbb\xbf")
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


def read_flat_table(path: Path, dataset: Dataset, fmt: str) -> Iterator[RawChunk]:
    """CSV (header row, nested objects as JSON text) or Parquet in the flat layout."""
    con = duck.connect()
    try:
        if fmt == "csv":
            relation = f"read_csv({sql_string(str(path))}, header = true, all_varchar = true)"
            first_number = 2  # line 1 is the header
        else:
            relation = f"read_parquet({sql_string(str(path))}, hive_partitioning = false)"
            first_number = 1
        try:
            described = duck.run(con, f"DESCRIBE SELECT * FROM {relation}")
            columns = {row[0]: row[1] for row in described}
            table = con.sql(flat_to_json_sql(dataset, columns, relation)).to_arrow_table()
        except InputFileError:
            raise
        except Exception as exc:
            raise InputFileError(path, f"cannot read as {fmt}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    texts = table.column("raw").combine_chunks().cast(pa.large_string())
    numbers = np.arange(first_number, first_number + len(texts), dtype=np.int64)
    yield RawChunk(str(path), "line" if fmt == "csv" else "row", numbers, texts, path.stat().st_size)
