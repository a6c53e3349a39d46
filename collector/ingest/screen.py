"""Rules every event text is held to before validation, whatever format it came in: size, nesting depth and
finite numbers.

They run on the JSON texts the readers produce (JSONL lines, JSON array items, CSV and Parquet rows turned
into JSON), so every format obeys the same bounds; cheap vectorized tests pick the few texts that may break a
rule, and only those are looked at one by one. The depth rule is ``agentwatch.core.json_structure`` (the HTTP
API's too); ``non_finite_field`` is the API's rule for non-finite numbers too.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agentwatch.collector.ingest.rejects import MAX_RAW_CHARS
from agentwatch.collector.ingest.sources import RawChunk
from agentwatch.core.json_structure import OPENERS, max_depth, too_deep_message
from agentwatch.core.limits import Limits

NON_FINITE_MESSAGE = "a number is out of range for a double (e.g. 1e999); send a finite number or null"
# A text that may hold a non-finite number: the words, an exponent of three digits or more, or a number with
# more digits than a double can hold. The exact test (json.loads) runs on these only.
_MAYBE_NON_FINITE = r"NaN|Infinity|[0-9.][eE]\+?0*[1-9][0-9]{2}|[0-9]{309}"


class _NonFinite:
    """Stands for a NaN, an infinity or a number too large for a double while a text is parsed."""


_MARK = _NonFinite()


def _finite_or_mark(text: str) -> Any:
    number = float(text)
    return number if math.isfinite(number) else _MARK


def non_finite_field(text: str | bytes) -> str | None:
    """The dotted path (``inputs.deal.size``, list items by index) of the first NaN, Infinity or number beyond
    a double (``1e999``) in a JSON text; "" when the text is that number, None when it holds none (or is not
    valid JSON: the validator says why)."""
    try:
        value = json.loads(text, parse_constant=lambda _: _MARK, parse_float=_finite_or_mark)
        path = _path_to_mark(value)
    except (ValueError, RecursionError):
        return None
    return None if path is None else ".".join(path)


def _path_to_mark(value: Any) -> list[str] | None:
    if value is _MARK:
        return []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _path_to_mark(item)
        if found is not None:
            return [str(key), *found]
    return None


def screen_chunk(chunk: RawChunk, limits: Limits) -> RawChunk:
    """The chunk with each text that breaks a bound or holds a non-finite number refused on its own (its slot
    nulled, the reason in ``refused``), so the validator never parses it."""
    texts = chunk.texts
    problems: dict[int, tuple[str, str]] = {}  # position -> (field, problem)
    sizes = pc.binary_length(texts).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(np.nan_to_num(sizes, nan=0) > limits.max_event_bytes).tolist():
        problems[i] = ("", f"the event is {int(sizes[i]):,} bytes, more than {limits.max_event_bytes:,} bytes "
                                "(limits.max_event_bytes)")
    for i in np.flatnonzero(_openers(texts) > limits.max_depth).tolist():
        if i in problems:
            continue
        depth = max_depth(texts[i].as_py().encode())
        if depth > limits.max_depth:
            problems[i] = ("", too_deep_message(depth, limits.max_depth))
    for i in _positions(pc.match_substring_regex(texts, _MAYBE_NON_FINITE)):
        if i not in problems and (path := non_finite_field(texts[i].as_py())) is not None:
            problems[i] = (path, NON_FINITE_MESSAGE)
    if not problems:
        return chunk
    mask = np.zeros(len(texts), dtype=bool)
    mask[list(problems)] = True
    nulled = pc.if_else(pa.array(mask), pa.scalar(None, texts.type), texts)
    refused = tuple((int(chunk.numbers[i]), problem, _head(texts[i].as_py()), field)
                    for i, (field, problem) in sorted(problems.items()))
    return RawChunk(chunk.source, chunk.unit, chunk.numbers, nulled, chunk.bytes_done, chunk.refused + refused)


def _openers(texts: pa.Array) -> np.ndarray:
    """`{` and `[` per text (an upper bound of its depth), counted by numpy over the texts' shared buffer:
    several times faster than two Arrow substring counts. Null texts count 0."""
    texts = texts.cast(pa.large_string())
    _, offset_buffer, data_buffer = texts.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int64)[texts.offset:texts.offset + len(texts) + 1]
    if not len(texts) or offsets[-1] == offsets[0]:
        return np.zeros(len(texts), dtype=np.int32)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0]:offsets[-1]]
    starts = np.minimum(offsets[:-1] - offsets[0], len(data) - 1)
    counts = np.add.reduceat(np.isin(data, OPENERS), starts, dtype=np.int32)
    counts[np.diff(offsets) == 0] = 0  # reduceat gives an empty text the byte at its start
    counts[~texts.is_valid().to_numpy(zero_copy_only=False)] = 0
    return counts


def _positions(flags: pa.Array) -> list[int]:
    return np.flatnonzero(pc.fill_null(flags, False).to_numpy(zero_copy_only=False)).tolist()


def _head(text: str) -> bytes:
    """As much of a refused text as its reject keeps: enough to fix and send it again."""
    return text[:MAX_RAW_CHARS].encode("utf-8", "replace")
