"""CSV the product writes (the rollback plan, the audit trail), safe to open in a spreadsheet (OWASP's CSV injection
guidance).

Values in an export come from events, and a spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@``
as a formula (``=HYPERLINK(...)`` leaks data, ``=cmd|...`` runs a command in old Excel); a leading tab or carriage
return hides such a start. Every text cell beginning with one of those (or with the full-width forms ``＝＋－＠``,
which some spreadsheets fold into the ASCII ones) gets a leading single quote, which spreadsheets show as text,
and every field is quoted, so a separator inside a value cannot start a cell of its own. Numbers, booleans and
times are written as they are (a number cell is not a formula). A reader that wants the value back drops one
leading ``'`` from a cell that starts with ``'`` followed by one of those characters.
"""

from __future__ import annotations

import polars as pl

# A cell a spreadsheet may run: its first character is one of these.
FORMULA_START = r"^[=+\-@\t\r＝＋－＠]"


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with every text cell that a spreadsheet could run as a formula prefixed with ``'`` (vectorised)."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(text).str.contains(FORMULA_START)).then(pl.lit("'") + pl.col(text)).otherwise(pl.col(text))
        .name.keep())


def csv_text(frame: pl.DataFrame) -> str:
    """`frame` as CSV text for a download: formula starts neutralised, every field quoted."""
    return neutralised(frame).write_csv(quote_style="always")
