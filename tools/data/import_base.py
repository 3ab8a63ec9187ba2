"""Shared machinery of `mangalm import`: the request, the result, binding `--map` to columns,
and turning CSV rows into validated row models or rejects.

Each entity's handler (`import_masters`, `import_orders`, `import_activity`) works in two
phases: first it validates every row and looks up what already exists, collecting rejects;
only when nothing was rejected (or `--skip-rejects` was given) does it write. That is what
lets a failing file leave the database untouched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from sqlalchemy import Executable
from sqlalchemy.orm import Session

from tools.data.import_csv import CsvOptions, CsvTable, ImportFailure, Reject, read_table
from tools.data.import_rows import (
    ATTRIBUTE_ENTITIES,
    ATTRIBUTE_PREFIX,
    ENTITIES,
    Row,
    entity_fields,
    error_reason,
)

LINES_PREFIX = "lines."
QUERY_CHUNK = 5000

R = TypeVar("R", bound=Row)


@dataclass(frozen=True)
class ImportRequest:
    """What to import and how to read it."""

    entity: str
    path: Path
    mapping: dict[str, str]
    lines_path: Path | None = None
    options: CsvOptions = field(default_factory=CsvOptions)
    lookups: dict[str, str] = field(default_factory=dict)
    skip_rejects: bool = False
    dry_run: bool = False
    auto_map: bool = True


@dataclass
class ImportResult:
    """What an import read, wrote and rejected."""

    entity: str
    files: list[Path]
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejects: list[Reject] = field(default_factory=list)
    created: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    mappings: dict[str, dict[str, str]] = field(default_factory=dict)
    auto_mapped: list[str] = field(default_factory=list)
    tables: dict[str, CsvTable] = field(default_factory=dict)
    written: bool = False
    accepted: bool = False  # the rows were (or in a dry run, would have been) written
    dry_run: bool = False
    run_id: int | None = None

    @property
    def rejected(self) -> int:
        return len(self.rejects)

    def sorted_rejects(self) -> list[Reject]:
        return sorted(self.rejects, key=lambda r: (r.file != "main", r.line))


@dataclass
class Binding:
    """Which column of one file feeds which field."""

    table: CsvTable
    role: str
    columns: dict[str, int]
    attributes: dict[str, int] = field(default_factory=dict)
    lookups: dict[str, tuple[dict[str, str], str]] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        """field -> the file's column name, for messages."""
        return {name: self.table.header[index] for name, index in self.columns.items()}

    def raw(self, values: Sequence[str], name: str) -> str:
        """A field's stripped cell in a row ('' when not mapped or missing)."""
        index = self.columns.get(name)
        if index is None or index >= len(values):
            return ""
        return values[index].strip()


@dataclass
class Parsed(Generic[R]):
    """A row that passed validation."""

    line: int
    row: R
    values: list[str]
    attributes: dict[str, str]
    role: str


class Run:
    """One import in progress: the session, the request and the result being built."""

    def __init__(self, session: Session, request: ImportRequest, result: ImportResult) -> None:
        self.session = session
        self.request = request
        self.result = result
        self.options = request.options
        self._rejected: dict[tuple[str, int], Reject] = {}

    def reject(self, line: int, reason: str, values: Sequence[str], role: str = "main") -> None:
        """Reject a row; a second reason for the same row is added to the first."""
        known = self._rejected.get((role, line))
        if known is not None:
            if reason not in known.reason:
                known.reason += f"; {reason}"
            return
        reject = Reject(line=line, reason=reason, values=list(values), file=role)
        self._rejected[(role, line)] = reject
        self.result.rejects.append(reject)

    @property
    def may_write(self) -> bool:
        """Writes happen only when nothing was rejected, or rejects are to be skipped."""
        return not self.result.rejects or self.request.skip_rejects

    def read(self, path: Path, role: str) -> CsvTable:
        table = read_table(path, self.options)
        self.result.tables[role] = table
        self.result.rows_read += len(table.rows)
        return table

    def bind(
        self,
        table: CsvTable,
        role: str,
        fields: Collection[str],
        mapping: dict[str, str],
        *,
        required: Iterable[str] = (),
        attributes: bool = False,
    ) -> Binding:
        """Bind the mapped fields of `fields` to the table's columns (and auto-map the rest)."""
        columns: dict[str, int] = {}
        attrs: dict[str, int] = {}
        for name, column in mapping.items():
            is_attr = attributes and name.startswith(ATTRIBUTE_PREFIX)
            if name not in fields and not is_attr:
                continue
            index = table.column_index(column)
            if index is None:
                raise ImportFailure(
                    f"column {column!r} (mapped to {name}) is not in {table.path.name}; "
                    f"its columns are: {', '.join(table.header)}"
                )
            if table.header.count(table.header[index]) > 1:
                raise ImportFailure(f"column {column!r} appears twice in {table.path.name}")
            if is_attr:
                attrs[name.removeprefix(ATTRIBUTE_PREFIX)] = index
            else:
                columns[name] = index
        if self.request.auto_map:
            taken = set(columns.values()) | set(attrs.values())
            for name in fields:
                index = table.column_index(name)
                if name not in columns and index is not None and index not in taken:
                    columns[name] = index
                    taken.add(index)
                    self.result.auto_mapped.append(f"{name}={table.header[index]}")
        for name in required:
            if name not in columns:
                raise ImportFailure(
                    f"{self.request.entity} need the field {name}: add --map {name}=COLUMN "
                    f"(columns of {table.path.name}: {', '.join(table.header)})"
                )
        binding = Binding(table=table, role=role, columns=columns, attributes=attrs)
        for name, spec in self.request.lookups.items():
            if name in columns:
                binding.lookups[name] = load_lookup(name, spec, self.options)
        self.result.mappings[role] = {
            **binding.labels,
            **{ATTRIBUTE_PREFIX + a: table.header[i] for a, i in attrs.items()},
        }
        return binding

    def parse(self, binding: Binding, model: type[R]) -> list[Parsed[R]]:
        """Validate every row of a bound table; rejects go to the result."""
        table = binding.table
        width = len(table.header)
        context = {"options": self.options}
        labels = binding.labels
        parsed: list[Parsed[R]] = []
        for line, values in table.rows:
            if len(values) != width and (
                len(values) < width or any(v.strip() for v in values[width:])
            ):
                self.reject(
                    line,
                    f"the row has {len(values)} values but the header has {width} columns "
                    "(check --delimiter and the quoting of values that contain it)",
                    values,
                    binding.role,
                )
                continue
            raw = {name: values[i].strip() for name, i in binding.columns.items()}
            raw = {name: value for name, value in raw.items() if value}
            problem = None
            for name, (lookup, description) in binding.lookups.items():
                if name in raw:
                    if raw[name] in lookup:
                        raw[name] = lookup[raw[name]]
                    else:
                        problem = f"{labels[name]}: {raw[name]!r} is not in {description}"
                        break
            if problem:
                self.reject(line, problem, values, binding.role)
                continue
            try:
                row = model.model_validate(raw, context=context)
            except ValidationError as error:
                self.reject(line, error_reason(error, labels), values, binding.role)
                continue
            attributes = {
                name: values[i].strip()
                for name, i in binding.attributes.items()
                if values[i].strip()
            }
            parsed.append(Parsed(line, row, values, attributes, binding.role))
        return parsed


def add(counter: Counter[str], what: str, amount: int) -> None:
    """Count something created, leaving out nothing-created entries."""
    if amount:
        counter[what] += amount


def check_mapping(entity: str, mapping: dict[str, str], *, lines_mode: bool) -> None:
    """Refuse unknown field names before reading anything."""
    if entity not in ENTITIES:
        raise ImportFailure(f"unknown entity {entity!r}; choose one of {', '.join(ENTITIES)}")
    known = entity_fields(entity)
    for name in mapping:
        base = name.removeprefix(LINES_PREFIX) if lines_mode else name
        is_attribute = base.startswith(ATTRIBUTE_PREFIX) and len(base) > len(ATTRIBUTE_PREFIX)
        if is_attribute and entity in ATTRIBUTE_ENTITIES:
            continue
        if base not in known:
            raise ImportFailure(
                f"unknown field {name!r} for {entity}; the fields are: {', '.join(known)}"
                + (", attr.NAME" if entity in ATTRIBUTE_ENTITIES else "")
            )


def load_lookup(name: str, spec: str, options: CsvOptions) -> tuple[dict[str, str], str]:
    """`FILE:KEY_COLUMN:VALUE_COLUMN` -> ({key: value}, description) for `--lookup`."""
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise ImportFailure(
            f"--lookup {name}={spec!r}: write it as field=FILE:KEY_COLUMN:VALUE_COLUMN, "
            "e.g. category=categories.csv:category_id:category_name"
        )
    path, key_column, value_column = Path(parts[0]), parts[1], parts[2]
    table = read_table(path, CsvOptions(encoding=options.encoding))
    indexes = []
    for column in (key_column, value_column):
        index = table.column_index(column)
        if index is None:
            raise ImportFailure(
                f"--lookup {name}: column {column!r} is not in {path.name}; "
                f"its columns are: {', '.join(table.header)}"
            )
        indexes.append(index)
    key_index, value_index = indexes
    lookup = {
        values[key_index].strip(): values[value_index].strip()
        for _, values in table.rows
        if len(values) > max(key_index, value_index)
    }
    return lookup, f"the {key_column} column of {path.name}"


def fetch_in(
    session: Session, build: Callable[[list[Any]], Executable], keys: Iterable[Any]
) -> list[Any]:
    """Run `build(chunk)` for chunks of `keys` (an IN list per chunk) and gather the rows."""
    unique = list(dict.fromkeys(keys))
    rows: list[Any] = []
    for start in range(0, len(unique), QUERY_CHUNK):
        rows.extend(session.execute(build(unique[start : start + QUERY_CHUNK])).all())
    return rows
