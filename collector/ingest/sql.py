"""Generate the vectorized validator of a dataset: one DuckDB query over a chunk of raw JSON texts.

The query reads a table ``chunk(line_no BIGINT, raw VARCHAR)`` and yields, per non-blank line, a
``valid`` flag and the stored columns. It works in stages so that every JSON text is parsed once:

1. ``parsed``: ``json_transform`` turns the line into a struct of raw JSON values, one per key;
2. ``typed``: each value is minified JSON text, so its first character tells its JSON type; string
   contents are cut from between the quotes (unescaped only when they hold a backslash); closed
   objects (``resource``, ``approval``, ``error``) are parsed into their own structs;
3. ``members``: the same for the members of closed objects;
4. the final SELECT combines those columns into the ``valid`` flag and the stored columns.

The rules mirror the pydantic models exactly; ``tests/test_fast_path_equivalence.py`` proves it on
generated events, and any row the SQL rejects is re-checked by pydantic before it is rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from agentwatch.core.sql import quote_identifier, sql_string
from agentwatch.schemas.common import MAX_ID_LENGTH, RFC3339_PATTERN
from agentwatch.store.datasets import Dataset, FieldSpec, Kind

STRING_KINDS = {Kind.ID, Kind.NONEMPTY, Kind.TEXT, Kind.TIMESTAMP, Kind.ENUM, Kind.PATTERN}


def _sql_list(values: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join(sql_string(v) for v in values) + ")"


@dataclass(frozen=True)
class _Value:
    """Column names holding one JSON value's raw JSON (v), JSON type (t) and string form (s)."""

    spec: FieldSpec
    tag: str

    @property
    def v(self) -> str:
        return f"v_{self.tag}"

    @property
    def s(self) -> str:
        return f"s_{self.tag}"

    @property
    def ts(self) -> str:
        return f"p_{self.tag}"

    @property
    def closed(self) -> str:
        return f"closed_{self.tag}"

    @property
    def members(self) -> str:
        return f"m_{self.tag}"

    def columns(self, source: str) -> list[str]:
        """Stage-2/3 columns computed from `source`, the SQL expression of the raw JSON value."""
        cols = [f"{source} AS {self.v}"]
        if self.spec.kind in STRING_KINDS:
            cols.append(f"{_string_of_text(source)} AS {self.s}")
        if self.spec.kind is Kind.TIMESTAMP:
            # DuckDB wants upper-case T and Z; the regex vouches for the rest.
            cols.append(f"TRY_CAST(upper({source} ->> '$') AS TIMESTAMPTZ) AS {self.ts}")
        if self.spec.kind is Kind.STRUCT:
            is_object = f"left({source}, 1) = '{{'"
            known = _sql_list([sub.key for sub in self.spec.subfields])
            transform = sql_string(json.dumps({sub.key: "JSON" for sub in self.spec.subfields}))
            cols.append(
                f"CASE WHEN {is_object} THEN len(list_filter(json_keys({source}), "
                f"lambda k: k NOT IN {known})) = 0 END AS {self.closed}"
            )
            cols.append(f"CASE WHEN {is_object} THEN json_transform({source}, {transform}) END AS {self.members}")
        return cols

    def sub_values(self) -> list[_Value]:
        return [_Value(sub, f"{self.tag}_{i}") for i, sub in enumerate(self.spec.subfields)]

    # -- final stage ---------------------------------------------------------------------------

    def present(self) -> str:
        # json_transform gives SQL NULL for an absent key and for a JSON null alike.
        return f"({self.v} IS NOT NULL)"

    def check(self) -> str:
        """The condition that a present value satisfies its kind.

        A value is minified JSON text (as json_transform returns it), so its first character tells its
        JSON type: one cheap test per kind instead of parsing the value again.
        """
        spec, is_string = self.spec, f"{self.s} IS NOT NULL"
        is_number = f"left({self.v}, 1) IN ('-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9')"
        match spec.kind:
            case Kind.ID:
                parts = [is_string, f"length({self.s}) BETWEEN 1 AND {MAX_ID_LENGTH}"]
            case Kind.NONEMPTY:
                parts = [is_string, f"length({self.s}) >= 1"]
            case Kind.TEXT:
                parts = [is_string]
            case Kind.TIMESTAMP:
                rfc3339 = f"regexp_full_match({self.s}, {sql_string(RFC3339_PATTERN)})"
                # Python's datetime (pydantic) stops at years 1 and 9999 in UTC; DuckDB does not.
                in_range = f"{self.ts} BETWEEN '0001-01-01 00:00:00+00' AND '9999-12-31 23:59:59.999999+00'"
                parts = [is_string, rfc3339, f"{self.ts} IS NOT NULL", in_range]
            case Kind.ENUM:
                parts = [is_string, f"{self.s} IN {_sql_list(spec.values)}"]
            case Kind.PATTERN:
                assert spec.pattern is not None
                parts = [is_string, f"regexp_full_match({self.s}, {sql_string(spec.pattern)})"]
            case Kind.OBJECT:
                parts = [f"left({self.v}, 1) = '{{'"]
            case Kind.ANY:
                parts = ["TRUE"]
            case Kind.NUMBER:
                number = f"TRY_CAST({self.v} AS DOUBLE)"
                parts = [is_number, f"isfinite({number})", *_bounds(number, spec)]
            case Kind.INTEGER:
                number = f"TRY_CAST({self.v} AS BIGINT)"
                integral = f"NOT regexp_matches({self.v}, '[.eE]')"
                parts = [is_number, integral, f"{number} IS NOT NULL", *_bounds(number, spec)]
            case Kind.BOOLEAN:
                parts = [f"CAST({self.v} AS VARCHAR) IN ('true', 'false')"]
            case Kind.STRUCT:
                parts = [f"left({self.v}, 1) = '{{'", self.closed, *(sub.valid() for sub in self.sub_values())]
        return "(" + " AND ".join(parts) + ")"

    def valid(self) -> str:
        if self.spec.required:
            return f"COALESCE({self.present()} AND {self.check()}, FALSE)"
        return f"COALESCE(NOT {self.present()} OR {self.check()}, FALSE)"

    def projections(self) -> list[str]:
        """SQL of the stored columns of this value (meaningful on valid rows only)."""
        if self.spec.kind is Kind.STRUCT:
            return [p for sub in self.sub_values() for p in sub.projections()]
        match self.spec.kind:
            case Kind.TIMESTAMP:
                value = self.ts
            case Kind.OBJECT | Kind.ANY:
                value = self.v
            case Kind.NUMBER:
                value = f"TRY_CAST({self.v} AS DOUBLE)"
            case Kind.INTEGER:
                value = f"TRY_CAST({self.v} AS BIGINT)"
            case Kind.BOOLEAN:
                value = f"TRY_CAST({self.v} AS BOOLEAN)"
            case _:
                value = self.s
        # An absent key and a JSON null both reach here as SQL NULL, so no presence test is needed.
        column = quote_identifier(self.spec.column_name)
        if self.spec.default is not None:
            value = f"COALESCE({value}, {self.spec.default!r})"
        return [f"{value} AS {column}"]


def _string_of_text(value: str) -> str:
    """The content of a JSON string text: between the quotes, unescaped only when it has escapes."""
    return (
        f"CASE WHEN left({value}, 1) <> '\"' THEN NULL WHEN contains({value}, '\\') THEN ({value} ->> '$') "
        f"ELSE {value}[2:-2] END"
    )


def _required_if(value: _Value, by_key: dict[str, _Value]) -> str:
    """The condition that `value` is a non-empty string whenever the key its `required_if` names holds that value
    (a field_changed outcome names its field). A non-string there is refused by the key's own check."""
    assert value.spec.required_if is not None
    key, when = value.spec.required_if
    return f"COALESCE({by_key[key].s} IS DISTINCT FROM {sql_string(when)} OR length({value.s}) >= 1, FALSE)"


def _bounds(number: str, spec: FieldSpec) -> list[str]:
    bounds = []
    if spec.minimum is not None:
        bounds.append(f"{number} >= {spec.minimum!r}")
    if spec.maximum is not None:
        bounds.append(f"{number} <= {spec.maximum!r}")
    return bounds


def validation_query(dataset: Dataset) -> str:
    """The SELECT that validates and projects ``chunk`` rows of one dataset.

    Output columns: ``line_no``, ``valid``, the dataset's stored columns except ``ingested_at``
    (stamped by the writer at commit), and ``extra`` (unknown top-level keys) where kept.
    """
    values = [_Value(spec, str(i)) for i, spec in enumerate(dataset.fields)]
    transform = sql_string(json.dumps({f.key: "JSON" for f in dataset.fields}))
    typed = [c for value in values for c in value.columns(f"j.{quote_identifier(value.spec.key)}")]
    members = [
        c
        for value in values
        for sub in value.sub_values()
        for c in sub.columns(f"{value.members}.{quote_identifier(sub.spec.key)}")
    ]
    by_key = {value.spec.key: value for value in values}
    validity = " AND ".join([*(value.valid() for value in values),
                             *(_required_if(value, by_key) for value in values if value.spec.required_if)])
    projections = [p for value in values for p in value.projections()]
    extra = ""
    if dataset.keeps_extra:
        known = sorted(dataset.known_keys)
        unknown = f"len(list_filter(raw_keys, lambda k: k NOT IN {_sql_list(known)})) > 0"
        removal = sql_string(json.dumps(dict.fromkeys(known)))
        extra = f",\n    CASE WHEN valid AND {unknown} THEN json_merge_patch(raw, {removal}) END AS extra"
    # A key sent twice: DuckDB reads the first value, pydantic the last; refuse here, pydantic decides.
    unique_keys = "len(raw_keys) = len(list_distinct(raw_keys))"
    event_id = next(v for v in values if v.spec.key == "event_id")
    return f"""
WITH parsed AS (
    SELECT line_no, raw, TRY(json_transform(raw, {transform})) AS j
    FROM chunk
    WHERE ltrim(raw, ' ' || chr(9) || chr(10) || chr(13)) <> ''
), typed AS (
    SELECT line_no, raw, j IS NOT NULL AS parsed_ok, CASE WHEN j IS NOT NULL THEN json_keys(raw) END AS raw_keys,
        {", ".join(typed)} FROM parsed
), members AS (
    SELECT *{", " if members else ""}{", ".join(members)} FROM typed
), checked AS (
    SELECT *, COALESCE(parsed_ok AND {validity} AND {unique_keys}, FALSE) AS valid FROM members
)
SELECT line_no, valid,
    {", ".join(projections)},
    md5_number_lower({event_id.s}) AS event_key{extra}
FROM checked
"""
