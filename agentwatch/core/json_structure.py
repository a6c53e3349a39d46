"""The bracket structure of a JSON text, read without building it: item counts, item spans, nesting depth.

A hostile batch must be measured before it is parsed (3.5M ``{}`` items cost ~250 MB as Python objects),
and a value nested deeper than the JSON parser's own limit must be split into its items before any of them
can be parsed. This module scans the bytes with numpy, 1 MiB at a time (memory stays a few tens of MB
whatever the body), tracking strings (and escaped quotes in them) so brackets and commas inside strings
do not count. It does not validate JSON: the parser does that afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

CHUNK = 1 << 20
QUOTE, BACKSLASH, COMMA = ord('"'), ord("\\"), ord(",")
OPENERS, CLOSERS = (ord("["), ord("{")), (ord("]"), ord("}"))
_STRUCTURAL = np.zeros(256, dtype=bool)
_STRUCTURAL[[*OPENERS, *CLOSERS, COMMA]] = True
_DELTA = np.zeros(256, dtype=np.int64)
_DELTA[list(OPENERS)] = 1
_DELTA[list(CLOSERS)] = -1


def _slash_runs(slashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each run of consecutive backslashes."""
    breaks = np.flatnonzero(np.diff(slashes) != 1)
    starts = slashes[np.r_[0, breaks + 1]]
    ends = slashes[np.r_[breaks, slashes.size - 1]]
    return starts, ends


def _escaped(quotes: np.ndarray, slashes: np.ndarray, carry: int) -> np.ndarray:
    """Which quotes follow an odd number of backslashes (`carry` of them ended the previous chunk)."""
    lengths = np.where(quotes == 0, carry, 0)
    if slashes.size:
        starts, ends = _slash_runs(slashes)
        run = np.minimum(np.searchsorted(ends, quotes - 1), ends.size - 1)
        hit = ends[run] == quotes - 1
        run_length = ends[run] - starts[run] + 1 + np.where(starts[run] == 0, carry, 0)
        lengths = np.where(hit, run_length, lengths)
    return lengths % 2 == 1


def _trailing_slashes(size: int, slashes: np.ndarray, carry: int) -> int:
    """How many backslashes end this chunk (including those carried in when the chunk is all backslashes)."""
    if not slashes.size or slashes[-1] != size - 1:
        return 0
    starts, ends = _slash_runs(slashes)
    return int(ends[-1] - starts[-1] + 1 + (carry if starts[-1] == 0 else 0))


def structure(text: bytes) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per chunk: the positions of the brackets and commas outside strings, those bytes, and the nesting depth
    just after each (an opening bracket's own level; a closing one's level minus one)."""
    in_string, slashes_before, depth = False, 0, 0
    for offset in range(0, len(text), CHUNK):
        chunk = np.frombuffer(text, dtype=np.uint8, count=min(CHUNK, len(text) - offset), offset=offset)
        quotes = np.flatnonzero(chunk == QUOTE)
        slashes = np.flatnonzero(chunk == BACKSLASH)
        if quotes.size and (slashes.size or slashes_before):
            quotes = quotes[~_escaped(quotes, slashes, slashes_before)]
        slashes_before = _trailing_slashes(chunk.size, slashes, slashes_before)
        positions = np.flatnonzero(_STRUCTURAL[chunk])
        outside = (np.searchsorted(quotes, positions) + in_string) % 2 == 0
        positions = positions[outside]
        chars = chunk[positions]
        depths = depth + np.cumsum(_DELTA[chars])
        if depths.size:
            depth = int(depths[-1])
        in_string = (in_string + quotes.size) % 2 == 1
        yield positions + offset, chars, depths


def max_depth(text: bytes) -> int:
    """How deeply `text` nests objects and arrays: 0 for a scalar, 1 for ``{}`` or ``[1, 2]``."""
    deepest = 0
    for _, _, depths in structure(text):
        if depths.size:
            deepest = max(deepest, int(depths.max()))
    return deepest


def depth_at_end(text: bytes) -> int:
    """How many objects and arrays are open at the end of `text` (a prefix of a JSON text)."""
    depth = 0
    for _, _, depths in structure(text):
        if depths.size:
            depth = int(depths[-1])
    return depth


def may_nest_deeper(text: bytes, bound: int) -> bool:
    """A cheap test that is False only when `text` surely nests at most `bound` deep (it has few brackets)."""
    return text.count(b"{") + text.count(b"[") > bound


def top_level_items(body: bytes) -> int:
    """How many items the top-level array of `body` holds (1 when it is not an array), without parsing it."""
    start = len(body) - len(body.lstrip())
    if body[start:start + 1] != b"[":
        return 1
    commas = 0
    for _, chars, depths in structure(body):
        commas += int(np.count_nonzero((chars == COMMA) & (depths == 1)))
    if commas:
        return commas + 1
    return 0 if body[start + 1:].lstrip().startswith(b"]") else 1


def split_top_level(body: bytes) -> list[bytes] | None:
    """The texts of the items of the top-level array of `body`, or None when it is not an array (or its
    brackets do not balance)."""
    start = len(body) - len(body.lstrip())
    if body[start:start + 1] != b"[":
        return None
    bounds: list[int] = []
    end = None
    for positions, chars, depths in structure(body):
        separators = (depths == 1) & (chars == COMMA)
        bounds.extend(positions[separators].tolist())
        closed = np.flatnonzero(depths <= 0)
        if closed.size:
            end = int(positions[closed[0]])
            bounds = [b for b in bounds if b < end]
            break
    if end is None or body[end:end + 1] != b"]" or body[end + 1:].strip():
        return None
    edges = [start, *bounds, end]
    items = [body[a + 1:b] for a, b in itertools.pairwise(edges)]
    return [] if len(items) == 1 and not items[0].strip() else items


def too_deep_message(depth: int | None, bound: int, what: str = "the event") -> str:
    """Why a text nested deeper than `bound` is refused (files and the API say it alike); `depth` None when it
    was too deep to measure whole."""
    found = f"is nested {depth:,} levels deep" if depth is not None else "is nested too deeply"
    return (f"{what} {found}, more than {bound:,} (limits.max_depth): flatten it, e.g. send a deep structure "
            "as a JSON string")
