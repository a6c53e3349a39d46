"""The layout of every table the CLI prints, at the width it is printed at: the terminal's, or in a pipe or a log
80 columns unless ``COLUMNS`` says otherwise.

Ids, names, statuses, severities, times and counts are never cut: the columns that fit side by side at their full
width make the table, and the others move under each row as ``header: value`` (the bare value when it says what it
is). Free text (summaries, titles, messages) stays a column only while it keeps a readable width; else it is wrapped
as an indented paragraph under its row, like ``git log``. Plain text, no box drawing: values from events are shown as
text, never read as markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, chop_cells
from rich.console import Console
from rich.text import Text

GAP = "  "
INDENT = "    "
PROSE_MIN = 40  # free text in a narrower column reads a word or two a line: it goes under its row instead
# Control characters from events (an ESC could restyle or clear the terminal) are shown escaped, e.g. \x1b; a tab
# is a space (its width depends on the terminal).
_VISIBLE = {code: f"\\x{code:02x}" for code in [*range(32), 127] if code != ord("\n")} | {ord("\t"): " "}


@dataclass(frozen=True)
class Column:
    """A column of a table. ``prose``: free text that may wrap. ``bare``: its values say what they are (a summary,
    ``object=Lead field=x``), so under a row they are shown without the header."""

    header: str
    prose: bool = False
    bare: bool = False


def print_table(columns: Sequence[Column], rows: Iterable[Sequence[str]], *, title: str | None = None,
                console: Console | None = None) -> None:
    """Print rows under `title` at the console's width (see the module's docstring); ``title: none`` without rows."""
    console = console or Console()  # made now, so COLUMNS and the terminal are read as the command runs
    cells = [[str(value).translate(_VISIBLE) for value in row] for row in rows]
    if not cells:
        if title:
            _emit(console, [f"{title}: none"])
        return
    width = max(console.width, 20)
    widths = [max(cell_len(line) for value in [column.header, *(row[i] for row in cells)]
                  for line in value.split("\n")) for i, column in enumerate(columns)]
    grid = _grid(columns, widths, width)
    prose_below = any(column.prose and i not in grid for i, column in enumerate(columns))
    lines = [title] if title else []
    lines += _grid_lines(columns, [column.header for column in columns], grid)
    lines.append(GAP.join("-" * grid[i] for i in grid))
    for n, row in enumerate(cells):
        if prose_below and n:
            lines.append("")  # rows with a paragraph under them read as blocks, like git log's
        lines += _grid_lines(columns, row, grid)
        lines += _below(columns, row, grid, width)
    _emit(console, lines, header=1 if title else 0)


def print_paragraph(text: str, *, indent: str = "", later: str | None = None, console: Console | None = None) -> None:
    """Print `text` wrapped at spaces to the console's width: its first line after `indent`, the others after
    `later` (default: `indent`)."""
    console = console or Console()
    later = indent if later is None else later
    lines = wrap(text.translate(_VISIBLE), max(console.width - max(len(indent), len(later)), 10))
    _emit(console, [(indent if n == 0 else later) + line for n, line in enumerate(lines)])


def wrap(text: str, width: int) -> list[str]:
    """`text` broken at spaces into lines at most `width` cells wide; only a word wider than a whole line is split."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, used = "", 0
        for word in paragraph.split():
            for piece in chop_cells(word, width) if cell_len(word) > width else [word]:
                size = cell_len(piece)
                if line and used + 1 + size <= width:
                    line, used = f"{line} {piece}", used + 1 + size
                else:
                    if line:
                        lines.append(line)
                    line, used = piece, size
        lines.append(line)
    return lines


def _grid(columns: Sequence[Column], widths: list[int], width: int) -> dict[int, int]:
    """The columns shown side by side, by index, with their widths: every non-prose column that fits at its full
    width (in order; the first always, it names the row), then the prose if all others fit and it keeps PROSE_MIN."""
    grid: dict[int, int] = {}
    used = -len(GAP)
    for i, column in enumerate(columns):
        if not column.prose and (not grid or used + len(GAP) + widths[i] <= width):
            grid[i] = min(widths[i], width) if not grid else widths[i]
            used += len(GAP) + grid[i]
    prose = [i for i, column in enumerate(columns) if column.prose]
    if not prose or len(grid) + len(prose) < len(columns):
        return grid
    room = width - used - len(GAP) * len(prose)
    if room < sum(min(widths[i], PROSE_MIN) for i in prose):
        return grid
    for n, i in enumerate(sorted(prose, key=lambda i: widths[i])):  # narrowest first: what it leaves goes on
        grid[i] = min(widths[i], room // (len(prose) - n))
        room -= grid[i]
    return dict(sorted(grid.items()))


def _grid_lines(columns: Sequence[Column], row: Sequence[str], grid: dict[int, int]) -> list[str]:
    """One row of the grid: each cell on its own lines (prose wrapped), padded to its column's width."""
    cells = {i: wrap(row[i], width) if columns[i].prose else
             [piece for line in row[i].split("\n") for piece in chop_cells(line, width) or [""]]
             for i, width in grid.items()}
    height = max(len(lines) for lines in cells.values())
    out = []
    for n in range(height):
        parts = []
        for i, width in grid.items():
            text = cells[i][n] if n < len(cells[i]) else ""
            parts.append(text + " " * (width - cell_len(text)))
        out.append(GAP.join(parts).rstrip())
    return out


def _below(columns: Sequence[Column], row: Sequence[str], grid: dict[int, int], width: int) -> list[str]:
    """What of a row is not in the grid, indented under it: the other values packed into lines, then the prose."""
    room = width - len(INDENT)
    lines: list[str] = []
    line = ""
    for i, column in sorted(enumerate(columns), key=lambda pair: not pair[1].bare):  # what says itself first
        value = " ".join(row[i].split())
        if i in grid or column.prose or not value:
            continue
        piece = value if column.bare else f"{column.header}: {value}"
        if line and cell_len(line) + len(GAP) + cell_len(piece) <= room:
            line = f"{line}{GAP}{piece}"
            continue
        if line:
            lines.append(line)
        *full, line = wrap(piece, room)
        lines += full
    if line:
        lines.append(line)
    for i, column in enumerate(columns):
        if column.prose and i not in grid and row[i].strip():
            lines += wrap(row[i] if column.bare else f"{column.header}: {row[i]}", room)
    return [INDENT + line for line in lines]


def _emit(console: Console, lines: list[str], header: int | None = None) -> None:
    """Print lines as plain text (never markup); the header line in bold on a terminal."""
    for n, line in enumerate(lines):
        console.print(Text(line, style="bold" if n == header else ""), soft_wrap=True, highlight=False)
