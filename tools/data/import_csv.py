"""Reading CSV exports for `mangalm import`: decoding, delimiters, column mapping, rejects files.

The importer reads files with the standard library's `csv` module and validates each row with
pydantic (see `tools.data.import_rows`) rather than loading whole frames with pandas or COPY:
the point of an import of real exports is to say *which* rows are wrong and why, with their line
numbers, and to keep every original value of a rejected row so the user can fix and re-import
it. A row-by-row reader keeps the physical line number of every record (quoted fields may span
lines) and the row exactly as it was written.

Whole-file problems (undecodable bytes, a mapped column that is not in the file, an unknown
field) raise `ImportFailure` before anything is written; row problems become `Reject`s.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DELIMITERS = (",", ";", "\t", "|")


class ImportFailure(ValueError):
    """The file as a whole cannot be imported; the message says why and what to do."""


@dataclass(frozen=True)
class CsvOptions:
    """How to read a file's values: delimiter (None: detect), decimal mark, date format..."""

    delimiter: str | None = None
    decimal: str = "."
    date_format: str | None = None
    encoding: str = "utf-8-sig"
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.delimiter in ("\\t", "tab", "TAB"):
            object.__setattr__(self, "delimiter", "\t")  # typed on a command line
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ImportFailure(
                f"--delimiter must be one character (got {self.delimiter!r}); use tab for tabs"
            )
        if self.decimal not in (".", ","):
            raise ImportFailure(f"--decimal must be '.' or ',' (got {self.decimal!r})")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ImportFailure(
                f"--timezone {self.timezone!r} is not a time zone name (e.g. Asia/Kolkata, UTC)"
            ) from None
        if self.date_format is not None and "%" not in self.date_format:
            raise ImportFailure(
                f"--date-format {self.date_format!r} has no % directives; "
                "write it like %d/%m/%Y or %m/%d/%Y %H:%M"
            )


@dataclass
class CsvTable:
    """A decoded CSV file: its header and its non-blank rows with their line numbers."""

    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]
    sha256: str
    delimiter: str
    encoding: str

    def column_index(self, column: str) -> int | None:
        """Index of a header column: exact match first, then ignoring case and spaces."""
        if column in self.header:
            return self.header.index(column)
        wanted = column.strip().casefold()
        for index, name in enumerate(self.header):
            if name.strip().casefold() == wanted:
                return index
        return None


@dataclass
class Reject:
    """A row that was not imported: where it is, why, and its original values."""

    line: int
    reason: str
    values: list[str] = field(default_factory=list)
    file: str = "main"  # "main" or "lines" (the --lines file of header+lines orders)


def _decode(path: Path, data: bytes, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except LookupError:
        raise ImportFailure(
            f"unknown encoding {encoding!r}; use a Python codec name such as utf-8, "
            "utf-8-sig, cp1252, latin-1 or utf-16"
        ) from None
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        byte = data[error.start : error.start + 1].hex()
        raise ImportFailure(
            f"{path.name} is not valid {encoding}: byte 0x{byte} on line {line} cannot be "
            "decoded. Pass --encoding with the file's real encoding (files saved by Excel on "
            "Windows are usually cp1252; many older exports are latin-1)."
        ) from None
    # A byte-order mark is never data, whichever codec was asked for.
    return text.removeprefix("\ufeff")


def detect_delimiter(first_line: str) -> str:
    """The candidate delimiter that occurs most often in the header line (',' if none)."""
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_table(path: Path, options: CsvOptions) -> CsvTable:
    """Read and decode a whole CSV file; raise `ImportFailure` on whole-file problems."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportFailure(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportFailure(f"{path}: is a directory, not a CSV file") from None
    except OSError as error:
        raise ImportFailure(f"{path}: cannot read it ({error.strerror})") from None
    text = _decode(path, data, options.encoding)
    if not text.strip():
        raise ImportFailure(f"{path.name} is empty")
    first_line = text.split("\n", 1)[0]
    delimiter = options.delimiter or detect_delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    previous_end = 0
    try:
        for record in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not any(value.strip() for value in record):
                continue  # blank lines and rows of empty cells (Excel's trailing ";;;;")
            if header is None:
                header = [name.strip() for name in record]
            else:
                rows.append((start, record))
    except csv.Error as error:
        raise ImportFailure(
            f"{path.name} line {reader.line_num}: not readable as CSV ({error})"
        ) from None
    if header is None:
        raise ImportFailure(f"{path.name} has no header row")
    return CsvTable(
        path=path,
        header=header,
        rows=rows,
        sha256=hashlib.sha256(data).hexdigest(),
        delimiter=delimiter,
        encoding=options.encoding,
    )


def parse_map(items: Iterable[str]) -> dict[str, str]:
    """`["field=Column", ...]` -> `{"field": "Column"}`; the column may contain '='."""
    mapping: dict[str, str] = {}
    for item in items:
        name, sep, column = item.partition("=")
        name = name.strip()
        if not sep or not name or not column.strip():
            raise ImportFailure(f"--map {item!r}: write it as field=column, e.g. sku='Product ID'")
        if name in mapping:
            raise ImportFailure(f"--map gives field {name!r} twice")
        mapping[name] = column.strip()
    return mapping


def write_rejects(path: Path, table: CsvTable, rejects: Sequence[Reject]) -> None:
    """Write rejected rows with their original columns plus `line` and `reason`.

    The file uses the input's delimiter and encoding, so it can be fixed and imported again
    with the same command.
    """
    encoding = table.encoding
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, errors="replace", newline="") as handle:
        writer = csv.writer(handle, delimiter=table.delimiter)
        writer.writerow([*table.header, "line", "reason"])
        width = len(table.header)
        for reject in sorted(rejects, key=lambda r: r.line):
            values = list(reject.values[:width]) + [""] * (width - len(reject.values))
            writer.writerow([*values, str(reject.line), reject.reason])
