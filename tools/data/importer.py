"""`mangalm import`: load real CSV exports (stores, products, orders, payments, communications).

    import_file(session, ImportRequest(entity="orders", path=Path("sales.csv"),
                mapping={"store_code": "Customer ID", ...}, options=CsvOptions(decimal=",")))

The rules, whichever entity:

- Files are read with the standard `csv` module and every row is validated by a pydantic model
  (`import_rows`), so each rejected row is reported with its line number and a reason, and
  written to a rejects CSV with its original values (`import_csv`).
- A file imports whole or not at all: everything happens in one transaction (a savepoint of
  the caller's session), and if any row is rejected nothing is written, unless
  `skip_rejects` is set, in which case the good rows are written and the rejects reported.
- Business keys make imports idempotent: store code, SKU, external order id, payment
  reference, communication id. Importing the same file twice creates nothing new.
- Imports are serialised with a transaction-level advisory lock, so two concurrent imports
  cannot race on the same business keys.
- Each run (except dry runs) is recorded in `import_runs`, rejected ones included; after
  orders are written the `sales_daily` rollup is refreshed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from tools.data.import_activity import import_communications, import_payments
from tools.data.import_base import ImportRequest, ImportResult, Run, check_mapping
from tools.data.import_csv import CsvOptions, ImportFailure, Reject, parse_map, write_rejects
from tools.data.import_masters import import_products, import_stores
from tools.data.import_orders import import_orders
from tools.data.import_rows import ENTITIES, describe_fields, entity_fields
from tools.migrate import refresh_rollup
from tools.models import ImportRun

__all__ = [
    "ENTITIES",
    "CsvOptions",
    "ImportFailure",
    "ImportRequest",
    "ImportResult",
    "Reject",
    "default_rejects_path",
    "describe_fields",
    "entity_fields",
    "import_file",
    "parse_lookups",
    "parse_map",
    "write_rejects_files",
]

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key shared by every import ("mgim").
IMPORT_LOCK = 0x6D67696D

HANDLERS: dict[str, Callable[[Run], None]] = {
    "stores": import_stores,
    "products": import_products,
    "orders": import_orders,
    "payments": import_payments,
    "communications": import_communications,
}


def parse_lookups(items: list[str]) -> dict[str, str]:
    """`["category=categories.csv:category_id:category_name"]` -> {"category": "..."}."""
    lookups: dict[str, str] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ImportFailure(
                f"--lookup {item!r}: write it as field=FILE:KEY_COLUMN:VALUE_COLUMN, "
                "e.g. category=categories.csv:category_id:category_name"
            )
        lookups[name.strip()] = spec.strip()
    return lookups


def import_file(session: Session, request: ImportRequest) -> ImportResult:
    """Import one file (or header+lines pair) inside `session`'s transaction.

    Raises `ImportFailure` for whole-file problems (before writing anything). Row problems
    are returned as `result.rejects`; `result.written` says whether rows were written. The
    caller commits (a dry run leaves nothing to commit but the session's own state).
    """
    entity = request.entity
    if entity not in HANDLERS:
        raise ImportFailure(f"unknown entity {entity!r}; choose one of {', '.join(ENTITIES)}")
    if request.lines_path is not None and entity != "orders":
        raise ImportFailure("--lines is only for orders (header+lines files)")
    check_mapping(entity, request.mapping, lines_mode=request.lines_path is not None)
    for name in request.lookups:
        if name not in entity_fields(entity):
            raise ImportFailure(f"--lookup {name}: {entity} have no field {name!r}")
    files = [request.path] + ([request.lines_path] if request.lines_path else [])
    result = ImportResult(entity=entity, files=files, dry_run=request.dry_run)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": IMPORT_LOCK})
    savepoint = session.begin_nested()
    try:
        HANDLERS[entity](Run(session, request, result))
        if result.written and entity == "orders" and not request.dry_run:
            session.flush()
            refresh_rollup(session.connection())
    except BaseException:
        savepoint.rollback()
        raise
    result.accepted = result.written
    if request.dry_run or not result.written:
        savepoint.rollback()
        result.written = False
        if not result.accepted:
            # A failed run writes nothing: forget the counts of what it would have done.
            result.inserted = result.updated = result.unchanged = 0
            result.created.clear()
    else:
        savepoint.commit()
    if not request.dry_run:
        result.run_id = _record_run(session, result)
    return result


def _record_run(session: Session, result: ImportResult) -> int:
    tables = list(result.tables.values())
    name = " + lines ".join(str(t.path) for t in tables) or str(result.files[0])
    digest = tables[0].sha256 if len(tables) == 1 else _combined(t.sha256 for t in tables)
    inserted = result.inserted if result.written else 0
    run_id = session.execute(
        insert(ImportRun)
        .values(
            entity=result.entity,
            file_name=name[:500],
            file_sha256=digest,
            rows_read=result.rows_read,
            rows_inserted=inserted,
            rows_skipped=result.rows_read - inserted - result.rejected,
            rows_rejected=result.rejected,
        )
        .returning(ImportRun.id)
    ).scalar_one()
    return int(run_id)


def _combined(digests: Iterable[str]) -> str:
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def default_rejects_path(path: Path) -> Path:
    """Where rejects of `path` go by default: next to it, as `NAME.rejects.csv`."""
    return path.with_name(path.name + ".rejects.csv")


def write_rejects_files(result: ImportResult, path: Path | None = None) -> list[Path]:
    """Write the rejects of each input file; returns the files written.

    `path` is the main file's rejects file (default `FILE.rejects.csv`); the `--lines` file's
    rejects go next to it with `.lines` before the extension.
    """
    written = []
    for role, table in result.tables.items():
        rejects = [r for r in result.rejects if r.file == role]
        if not rejects:
            continue
        if path is None:
            target = default_rejects_path(table.path)
        elif role == "main":
            target = path
        else:
            target = path.with_name(path.stem + ".lines" + path.suffix)
        write_rejects(target, table, rejects)
        written.append(target)
    return written
