"""Line-numbered reading of delimited trace files, shared by every reader.

Each reader only says which columns it needs and how one row becomes a record; this
module owns the parts every reader must get the same: the file/line/reason of each
error, what counts as an empty file, and what `skip_bad_lines` does.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from slicebox.sim.traces import model

if TYPE_CHECKING:
    from _csv import _reader as _csv_reader

T = TypeVar("T")

# Enough examples for a CLI to show what was wrong without keeping every error of a
# badly broken file alive.
MAX_KEPT_ERRORS = 5


class RowError(ValueError):
    """A reason one row is bad; the caller adds the file and line."""


class LineErrors:
    """Raises a row's error at once, or counts it when told to skip bad lines."""

    def __init__(self, path: str, skip_bad_lines: bool) -> None:
        self.path = path
        self.skip_bad_lines = skip_bad_lines
        self.skipped = 0
        self.first: list[model.TraceError] = []

    def add(self, line: int, reason: str) -> None:
        error = model.TraceError(self.path, line, reason)
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

    `rows` reads the open file lazily: consume it inside `open_table`'s block.
    """

    columns: dict[str, int]
    rows: Iterator[Row]


@contextlib.contextmanager
def open_table(
    path: str | os.PathLike[str],
    required: Sequence[str],
    errors: LineErrors,
    delimiter: str = ",",
) -> Iterator[Table]:
    """Open a headed file, check its header, and give its rows with line numbers.

    A missing column or an empty file fails even when skipping bad lines: no row of
    such a file could be read, and saying "skipped everything" would hide the cause.
    A row with the wrong number of fields goes to `errors`.
    """
    name = os.fspath(path)
    with open(name, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader, None)
        except UnicodeDecodeError as exc:
            raise model.TraceError(name, 1, f"not UTF-8 text ({exc.reason})") from None
        if header is None or not any(cell.strip() for cell in header):
            raise model.TraceError(name, 1, "empty file: no header and no rows")
        header = [cell.strip() for cell in header]
        missing = [column for column in required if column not in header]
        if missing:
            names = ", ".join(repr(column) for column in missing)
            plural = "s" if len(missing) > 1 else ""
            raise model.TraceError(
                name, 1, f"missing column{plural} {names} (header has: {', '.join(header)})"
            )
        columns = {column: index for index, column in enumerate(header)}
        yield Table(columns=columns, rows=_rows(reader, len(header), errors))


@contextlib.contextmanager
def open_headerless(
    path: str | os.PathLike[str], width: int, errors: LineErrors, delimiter: str
) -> Iterator[Iterator[Row]]:
    """Give the rows of a file without a header (Gavel's traces), `width` fields each."""
    with open(os.fspath(path), newline="", encoding="utf-8") as handle:
        # Gavel's commands hold quotes that are not CSV quoting: read fields verbatim.
        reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        yield _rows(reader, width, errors, empty_line=1, empty_what="no rows")


def _rows(
    reader: _csv_reader,
    width: int,
    errors: LineErrors,
    empty_line: int = 2,
    empty_what: str = "a header but no rows",
) -> Iterator[Row]:
    seen_data = False
    try:
        for fields in reader:
            # csv's line_num counts physical lines, so a quoted field holding a
            # newline still reports the line the user sees in an editor.
            line = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank lines carry no job; a trailing newline is common
            seen_data = True
            if len(fields) != width:
                errors.add(line, f"expected {width} fields, got {len(fields)}")
                continue
            yield Row(line, fields)
    except UnicodeDecodeError as exc:
        # Decoding fails a buffer ahead of the csv reader: the line is a guess near
        # the damage, and nothing after it can be trusted, so this is never skipped.
        raise model.TraceError(
            errors.path, reader.line_num + 1, f"not UTF-8 text ({exc.reason})"
        ) from None
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
            errors.add(row.line, str(exc))
    return records


def parse_float(text: str, column: str) -> float:
    """A finite float, or a RowError that names the column and quotes the value."""
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise RowError(f"column {column!r}: {text!r} is not a finite number")
    return value


def parse_int(text: str, column: str) -> int:
    """An integer (also written as '4.0'), or a RowError naming the column."""
    try:
        return int(text)
    except ValueError:
        pass
    value = parse_float(text, column)
    if not value.is_integer():
        raise RowError(f"column {column!r}: {text!r} is not a whole number")
    return int(value)


def non_negative(value: float, what: str) -> float:
    """The value itself, or a RowError saying `what` is negative."""
    if value < 0:
        raise RowError(f"negative {what} {value:g}")
    return value
