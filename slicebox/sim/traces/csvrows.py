"""Line-numbered reading of delimited trace files, shared by every reader.

Each reader only says which columns it needs and how one row becomes a record; this
module owns the parts every reader must get the same: the guarded read of the file
(regular files only, size and row limits), the file/line/column/reason of each error,
what counts as an empty file, what `skip_bad_lines` does, and bounded number parsing.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, NoReturn, TypeVar

from slicebox import untrusted
from slicebox.sim.traces import limits, model

if TYPE_CHECKING:
    from _csv import Reader as _csv_reader

T = TypeVar("T")

# Enough examples for a CLI to show what was wrong without keeping every error of a
# badly broken file alive.
MAX_KEPT_ERRORS = 5
_COLUMN_SHAPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


class RowError(ValueError):
    """A reason one row is bad, and the column at fault; the caller adds file and line."""

    def __init__(self, reason: str, column: str | None = None) -> None:
        super().__init__(reason)
        self.column = column


class LineErrors:
    """Raises a row's error at once, or counts it when told to skip bad lines."""

    def __init__(self, path: str, skip_bad_lines: bool) -> None:
        self.path = path
        self.skip_bad_lines = skip_bad_lines
        self.skipped = 0
        self.first: list[model.TraceError] = []

    def add(self, line: int, reason: str, column: str | None = None) -> None:
        error = model.TraceError(self.path, line, reason, column)
        if not self.skip_bad_lines:
            raise error
        self.skipped += 1
        if len(self.first) < MAX_KEPT_ERRORS:
            self.first.append(error)


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One data row: its physical line number and its fields."""

    line: int
    fields: list[str]


@dataclasses.dataclass(frozen=True, slots=True)
class Table:
    """A delimited file's column positions and its data rows.

    `rows` converts lazily: consume it inside `open_table`'s block.
    """

    columns: dict[str, int]
    rows: Iterator[Row]


def read_text(path: str | os.PathLike[str]) -> str:
    """The whole file as text, read the way only untrusted input should be.

    `untrusted.read_regular_file` reads only a regular file outside /proc, /sys and
    /dev (a directory, FIFO or device is refused without being opened, so nothing
    blocks), checks the size limit before reading, and stops one byte past it whatever
    `stat` claimed. Invalid UTF-8 is located to its exact line.
    """
    name = os.fspath(path)
    try:
        data = untrusted.read_regular_file(name, limits.MAX_TRACE_BYTES, "a trace")
    except untrusted.PathProblem as exc:
        raise model.TraceError(name, 0, f"cannot read the trace: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise model.TraceError(name, line, f"not UTF-8 text ({exc.reason})") from None
    return text.removeprefix("\ufeff")  # a byte-order mark is not part of the header


@contextlib.contextmanager
def open_table(
    path: str | os.PathLike[str],
    required: Sequence[str],
    errors: LineErrors,
    delimiter: str = ",",
) -> Iterator[Table]:
    """Read a headed file, check its header, and give its rows with line numbers.

    A missing column or an empty file fails even when skipping bad lines: no row of
    such a file could be read, and saying "skipped everything" would hide the cause.
    A row with the wrong number of fields goes to `errors`.
    """
    name = os.fspath(path)
    reader = csv.reader(io.StringIO(read_text(name), newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise model.TraceError(name, 1, f"malformed CSV header: {exc}") from None
    if header is None or not any(cell.strip() for cell in header):
        raise model.TraceError(name, 1, "empty file: no header and no rows")
    header = [cell.strip() for cell in header]
    missing = [column for column in required if column not in header]
    if missing:
        names = ", ".join(repr(column) for column in missing)
        plural = "s" if len(missing) > 1 else ""
        # Only cells shaped like column names are echoed: a file that is not a trace
        # at all (a symlink to /etc/shadow, say) must not have its first line printed.
        shown = ", ".join(cell if _COLUMN_SHAPE.fullmatch(cell) else "(not a column name)"
                          for cell in header[:20])
        raise model.TraceError(
            name, 1, f"missing column{plural} {names} (header has: {shown})", missing[0]
        )
    columns = {column: index for index, column in enumerate(header)}
    yield Table(columns=columns, rows=_rows(reader, len(header), errors))


@contextlib.contextmanager
def open_headerless(
    path: str | os.PathLike[str], width: int, errors: LineErrors, delimiter: str
) -> Iterator[Iterator[Row]]:
    """Give the rows of a file without a header (Gavel's traces), `width` fields each."""
    text = read_text(path)
    # Gavel's commands hold quotes that are not CSV quoting: read fields verbatim.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=csv.QUOTE_NONE)
    yield _rows(reader, width, errors, empty_line=1, empty_what="no rows")


def _rows(
    reader: _csv_reader,
    width: int,
    errors: LineErrors,
    empty_line: int = 2,
    empty_what: str = "a header but no rows",
) -> Iterator[Row]:
    seen_data = 0
    try:
        for fields in reader:
            # csv's line_num counts physical lines, so a quoted field holding a
            # newline still reports the line the user sees in an editor.
            line = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank lines carry no job; a trailing newline is common
            seen_data += 1
            if seen_data > limits.MAX_TRACE_ROWS:
                # Never skipped: the simulator would not finish such a trace anyway.
                raise model.TraceError(
                    errors.path, line, f"more than {limits.MAX_TRACE_ROWS:,} rows; "
                    "a trace may have at most that many")
            if len(fields) != width:
                errors.add(line, f"expected {width} fields, got {len(fields)}")
                continue
            yield Row(line, fields)
    except csv.Error as exc:
        raise model.TraceError(errors.path, reader.line_num, f"malformed CSV: {exc}") from None
    if not seen_data:
        raise model.TraceError(errors.path, empty_line, f"empty file: {empty_what}")


def convert_rows(rows: Iterator[Row], convert: Callable[[Row], T], errors: LineErrors) -> list[T]:
    """Convert each row, sending a row's RowError to `errors` with its line."""
    records: list[T] = []
    append = records.append
    for row in rows:
        try:
            append(convert(row))
        except RowError as exc:
            errors.add(row.line, str(exc), exc.column)
    return records


def shorten(text: str, limit: int = 40) -> str:
    """`text` quoted for a one-line message, cut short when long."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text):,} characters)"


def parse_float(
    text: str, column: str, low: float | None = None, high: float | None = None
) -> float:
    """A finite float within [low, high] (where given), or a RowError that names the
    column and quotes the value."""
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"column {column!r}: {shorten(text)} is not a number", column) from None
    if not math.isfinite(value):
        raise RowError(f"column {column!r}: {shorten(text)} is not a finite number", column)
    if (low is not None and value < low) or (high is not None and value > high):
        _range_error(value, text, column, low, high)
    return value


def parse_int(text: str, column: str, low: int | None = None, high: int | None = None) -> int:
    """An integer (also written as '4.0') within [low, high] (where given), or a
    RowError naming the column."""
    try:
        value = int(text)
    except ValueError:
        number = parse_float(text, column)
        if not number.is_integer():
            raise RowError(
                f"column {column!r}: {shorten(text)} is not a whole number", column
            ) from None
        value = int(number)
    if (low is not None and value < low) or (high is not None and value > high):
        _range_error(value, text, column, low, high)
    return value


def _range_error(
    value: float, text: str, column: str, low: float | None, high: float | None
) -> NoReturn:
    if low is not None and value < low:
        raise RowError(f"column {column!r}: {shorten(text.strip())} is below the minimum "
                       f"{low:g}", column)
    raise RowError(f"column {column!r}: {shorten(text.strip())} is above the maximum "
                   f"{high:g} (see slicebox.sim.traces.limits)", column)


def non_negative(value: float, what: str) -> float:
    """The value itself, or a RowError saying `what` is negative."""
    if value < 0:
        raise RowError(f"negative {what} {value:g}", what)
    return value


def parse_name(text: str, column: str) -> str:
    """A non-empty, printable, single-line name of at most MAX_NAME_CHARS characters."""
    name = text.strip()
    if not name:
        raise RowError(f"column {column!r} is empty", column)
    if len(name) > limits.MAX_NAME_CHARS:
        raise RowError(f"column {column!r}: {shorten(name)} is longer than "
                       f"{limits.MAX_NAME_CHARS} characters", column)
    if not name.isprintable():
        raise RowError(f"column {column!r}: {shorten(name)} holds a control character",
                       column)
    return name
