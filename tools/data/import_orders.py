"""Importing orders: flat order-line files and header+lines files.

- Flat: one row per order line, the order's header (store, date, ...) repeated on each row.
  Rows are grouped by the order id column; without one, all lines of a store on a date form
  one order (its external id is then `auto:STORE:DATE`).
- Header+lines: `FILE` holds one row per order, `--lines FILE2` the lines, joined on the
  order id. A header without lines and a line without a header are rejected.

An order imports whole or not at all: when one of its rows is rejected, every other row of
that order is rejected too (with a reason pointing at the first), so an order never lands with
a wrong total. Orders whose external id already exists are skipped, which makes importing the
same file twice a no-op. Stores and products the file mentions that do not exist yet are
created from the file's columns when their name column is mapped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text

from tools.data.import_base import LINES_PREFIX, Binding, Parsed, Run, add, fetch_in
from tools.data.import_csv import ImportFailure, Reject
from tools.data.import_masters import (
    create_products,
    create_stores,
    existing_product_ids,
    existing_store_ids,
    product_values,
    store_values,
)
from tools.data.import_rows import (
    ATTRIBUTE_PREFIX,
    FlatOrderRow,
    OrderHeaderFields,
    OrderHeaderRow,
    OrderLineFields,
    OrderLineRow,
)
from tools.models import Order

SOURCE_CHANNEL = "import"
DEFAULT_STATUS = "delivered"
ORDER_COLUMNS = (
    "id",
    "external_id",
    "store_id",
    "rep_id",
    "order_date",
    "status",
    "source_channel",
    "total_amount",
    "promised_date",
    "delivered_date",
)
LINE_COLUMNS = ("order_id", "line_no", "product_id", "quantity", "unit_price", "discount", "amount")
HEADER_FIELDS = tuple(OrderHeaderFields.model_fields)
LINE_FIELDS = (*OrderLineFields.model_fields, "order_id")


@dataclass
class Group:
    """The rows that make one order."""

    key: str
    header: Parsed[Any]
    lines: list[Parsed[Any]] = field(default_factory=list)
    members: list[tuple[str, int, list[str]]] = field(default_factory=list)
    raw_keys: set[str] = field(default_factory=set)
    failure: str | None = None  # why the order is not imported (names the first bad row)

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason


def import_orders(run: Run) -> None:
    """`mangalm import orders`: see the module docstring."""
    if run.request.lines_path is None:
        groups, bindings = _read_flat(run)
    else:
        groups, bindings = _read_header_lines(run)
    _fail_groups_with_rejects(run, groups, bindings)
    existing = _existing_orders(run, groups)
    new_groups = [g for g in groups.values() if g.key not in existing and g.failure is None]
    new_stores, store_ids = _plan_stores(run, new_groups, bindings)
    new_products, product_ids = _plan_products(run, new_groups, bindings)
    _reject_failed_groups(run, groups)
    if not run.may_write:
        return
    good = [g for g in new_groups if g.failure is None]
    created_stores = create_stores(run, _needed(new_stores, good, "store"))
    store_ids.update({code: (store_id, None) for code, store_id in created_stores.items()})
    created_products = create_products(run, _needed(new_products, good, "product"))
    product_ids.update(created_products)
    add(run.result.created, "stores", len(created_stores))
    add(run.result.created, "products", len(created_products))
    _write_orders(run, good, store_ids, product_ids)
    for group in groups.values():
        if group.key in existing and group.failure is None:
            run.result.unchanged += len(group.members)
    run.result.written = True


def _need_price(binding: Binding) -> None:
    if "unit_price" not in binding.columns and "amount" not in binding.columns:
        raise ImportFailure(
            "order lines need a price: add --map unit_price=COLUMN or --map amount=COLUMN "
            f"(columns of {binding.table.path.name}: {', '.join(binding.table.header)})"
        )


def _flat_key(binding: Binding, values: list[str]) -> str:
    """The grouping key of a row from its raw cells (also for rows that failed validation)."""
    if "order_id" in binding.columns:
        return binding.raw(values, "order_id")
    return f"{binding.raw(values, 'store_code')}\x00{binding.raw(values, 'order_date')}"


def _read_flat(run: Run) -> tuple[dict[str, Group], dict[str, Binding]]:
    table = run.read(run.request.path, "main")
    binding = run.bind(
        table,
        "main",
        {*HEADER_FIELDS, *LINE_FIELDS},
        run.request.mapping,
        required=["store_code", "order_date", "sku", "quantity"],
        attributes=True,
    )
    _need_price(binding)
    with_ids = "order_id" in binding.columns
    groups: dict[str, Group] = {}
    for item in run.parse(binding, FlatOrderRow):
        row = item.row
        if with_ids and not row.order_id:
            label = binding.labels["order_id"]
            run.reject(item.line, f"{label}: is empty", item.values)
            continue
        key = row.order_id if with_ids else f"auto:{row.store_code}:{row.order_date.isoformat()}"
        assert key is not None
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(key=key, header=item)
        else:
            conflict = _header_conflict(group.header, item)
            if conflict:
                run.reject(item.line, f"order {key}: {conflict}", item.values)
                group.fail(f"line {item.line} of the same order was rejected")
                group.raw_keys.add(_flat_key(binding, item.values))
                continue
        group.lines.append(item)
        group.members.append(("main", item.line, item.values))
        group.raw_keys.add(_flat_key(binding, item.values))
    return groups, {"main": binding, "lines": binding}


def _header_conflict(first: Parsed[Any], other: Parsed[Any]) -> str | None:
    """Why `other` cannot belong to the same order as `first` (None when it can)."""
    a, b = first.row, other.row
    if (a.store_code, a.order_date) != (b.store_code, b.order_date):
        return (
            f"it is for store {a.store_code} on {a.order_date} (line {first.line}); "
            f"this row says store {b.store_code} on {b.order_date}"
        )
    for name in ("status", "promised_date", "delivered_date"):
        if getattr(a, name) != getattr(b, name):
            return (
                f"its {name} is {getattr(a, name)} (line {first.line}); "
                f"this row says {getattr(b, name)}"
            )
    return None


def _read_header_lines(run: Run) -> tuple[dict[str, Group], dict[str, Binding]]:
    assert run.request.lines_path is not None
    mapping = run.request.mapping
    line_mapping = {
        name: column
        for name, column in mapping.items()
        if not name.startswith(LINES_PREFIX)
        and (name in LINE_FIELDS or name.startswith(ATTRIBUTE_PREFIX))
    }
    line_mapping.update(
        {
            name.removeprefix(LINES_PREFIX): column
            for name, column in mapping.items()
            if name.startswith(LINES_PREFIX)
        }
    )
    header_table = run.read(run.request.path, "main")
    lines_table = run.read(run.request.lines_path, "lines")
    headers = run.bind(
        header_table,
        "main",
        HEADER_FIELDS,
        {k: v for k, v in mapping.items() if not k.startswith(LINES_PREFIX)},
        required=["order_id", "store_code", "order_date"],
    )
    lines = run.bind(
        lines_table,
        "lines",
        LINE_FIELDS,
        line_mapping,
        required=["order_id", "sku", "quantity"],
        attributes=True,
    )
    _need_price(lines)
    groups: dict[str, Group] = {}
    parsed_headers = run.parse(headers, OrderHeaderRow)
    rejected_headers = _rejected_keys(run, {"main": headers})
    for item in parsed_headers:
        key = item.row.order_id
        if key in groups:
            first = groups[key].header.line
            run.reject(item.line, f"order {key} appears again (first on line {first})", item.values)
            groups[key].fail(f"order {key} appears twice in {header_table.path.name}")
            continue
        groups[key] = Group(key=key, header=item, raw_keys={key})
        groups[key].members.append(("main", item.line, item.values))
    for line_item in run.parse(lines, OrderLineRow):
        group = groups.get(line_item.row.order_id)
        if group is None:
            if line_item.row.order_id not in rejected_headers:
                run.reject(
                    line_item.line,
                    f"order {line_item.row.order_id} is not in {header_table.path.name}",
                    line_item.values,
                    "lines",
                )
                continue
            run.reject(
                line_item.line,
                f"not imported: the header of order {line_item.row.order_id} was rejected",
                line_item.values,
                "lines",
            )
            continue
        group.lines.append(line_item)
        group.members.append(("lines", line_item.line, line_item.values))
    lines_rejected = _rejected_keys(run, {"lines": lines})
    for group in groups.values():
        if not group.lines and group.failure is None and group.key not in lines_rejected:
            run.reject(
                group.header.line,
                f"order {group.key} has no lines in {lines_table.path.name}",
                group.header.values,
            )
            group.fail("it has no lines")
    return groups, {"main": headers, "lines": lines}


def _rejected_keys(run: Run, bindings: dict[str, Binding]) -> set[str]:
    keys = set()
    for reject in run.result.rejects:
        binding = bindings.get(reject.file)
        if binding is not None:
            keys.add(_flat_key(binding, reject.values))
    return keys


def _fail_groups_with_rejects(
    run: Run, groups: dict[str, Group], bindings: dict[str, Binding]
) -> None:
    """An order with a rejected row (even one that failed validation) is not imported."""
    first_bad: dict[str, Reject] = {}
    for reject in run.result.rejects:
        key = _flat_key(bindings[reject.file], reject.values)
        first_bad.setdefault(key, reject)
    names = {role: b.table.path.name for role, b in bindings.items()}
    for group in groups.values():
        for raw_key in group.raw_keys:
            bad = first_bad.get(raw_key)
            if bad is not None:
                where = f"line {bad.line}"
                if bindings["main"] is not bindings["lines"]:
                    where += f" of {names[bad.file]}"
                group.fail(f"{where} of the same order was rejected")
                break


def _existing_orders(run: Run, groups: dict[str, Group]) -> set[str]:
    rows = fetch_in(
        run.session,
        lambda chunk: select(Order.external_id).where(Order.external_id.in_(chunk)),
        groups,
    )
    return {external_id for (external_id,) in rows}


def _plan_stores(
    run: Run, groups: list[Group], bindings: dict[str, Binding]
) -> tuple[dict[str, tuple[Group, dict[str, Any]]], dict[str, tuple[int, int | None]]]:
    """Which stores exist, which the file creates, and which orders fail for want of one."""
    binding = bindings["main"]
    codes = [g.header.row.store_code for g in groups]
    known = existing_store_ids(run, codes)
    new: dict[str, tuple[Group, dict[str, Any]]] = {}
    names: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        row = group.header.row
        code = row.store_code
        if code in known:
            continue
        if row.store_name:
            names[code].add(row.store_name)
        if code in new:
            continue
        if "store_name" not in binding.columns:
            reason = (
                f"store {code!r} does not exist; import stores first, "
                "or map store_name to create stores from this file"
            )
        elif row.store_name is None:
            reason = f"store {code!r} is new and its {binding.labels['store_name']} is empty"
        else:
            new[code] = (group, store_values(row))
            continue
        run.reject(group.header.line, reason, group.header.values, group.header.role)
        group.fail(f"line {group.header.line}: {reason}")
    _note_names(run, names, "store codes")
    return new, known


def _plan_products(
    run: Run, groups: list[Group], bindings: dict[str, Binding]
) -> tuple[dict[str, tuple[Group, dict[str, Any]]], dict[str, int]]:
    binding = bindings["lines"]
    skus = [line.row.sku for g in groups for line in g.lines]
    known = existing_product_ids(run, skus)
    new: dict[str, tuple[Group, dict[str, Any]]] = {}
    names: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        for line in group.lines:
            row = line.row
            if row.sku in known:
                continue
            if row.product_name:
                names[row.sku].add(row.product_name)
            if row.sku in new:
                continue
            if "product_name" not in binding.columns:
                reason = (
                    f"product {row.sku!r} does not exist; import products first, "
                    "or map product_name to create products from this file"
                )
            elif row.product_name is None:
                reason = (
                    f"product {row.sku!r} is new and its {binding.labels['product_name']} is empty"
                )
            else:
                new[row.sku] = (
                    group,
                    {"price": row.unit_price, **product_values(row, line.attributes)},
                )
                continue
            run.reject(line.line, reason, line.values, line.role)
            group.fail(f"line {line.line}: {reason}")
    _note_names(run, names, "SKUs")
    return new, known


def _note_names(run: Run, names: dict[str, set[str]], what: str) -> None:
    varying = sum(1 for values in names.values() if len(values) > 1)
    if varying:
        run.result.notes.append(
            f"{varying} new {what} appear with more than one name in the file; "
            "each was created with the name of its first row"
        )


def _needed(
    planned: dict[str, tuple[Group, dict[str, Any]]], good: list[Group], kind: str
) -> dict[str, dict[str, Any]]:
    """The planned creations that some order still being imported uses.

    A store or product planned from an order that was later rejected is still created when
    another, good order needs it: its values come from the first row that mentions it.
    """
    if kind == "store":
        used = {g.header.row.store_code for g in good}
    else:
        used = {line.row.sku for g in good for line in g.lines}
    return {key: values for key, (_, values) in planned.items() if key in used}


def _reject_failed_groups(run: Run, groups: dict[str, Group]) -> None:
    """Reject every not-yet-rejected row of the orders that failed."""
    already = {(r.file, r.line) for r in run.result.rejects}
    for group in groups.values():
        if group.failure is None:
            continue
        for role, line, values in group.members:
            if (role, line) not in already:
                run.reject(line, f"order {group.key} not imported: {group.failure}", values, role)


def _write_orders(
    run: Run,
    groups: list[Group],
    store_ids: dict[str, tuple[int, int | None]],
    product_ids: dict[str, int],
) -> None:
    if not groups:
        return
    orders: list[dict[str, Any]] = []
    for group in groups:
        header = group.header.row
        store_id, rep_id = store_ids[header.store_code]
        orders.append(
            {
                "external_id": group.key,
                "store_id": store_id,
                "rep_id": rep_id,
                "order_date": header.order_date,
                "status": header.status or DEFAULT_STATUS,
                "source_channel": SOURCE_CHANNEL,
                "total_amount": sum((line.row.amount for line in group.lines), Decimal(0)),
                "promised_date": header.promised_date,
                "delivered_date": header.delivered_date,
            }
        )
    # COPY is several times faster than INSERT for tens of thousands of rows; the order ids are
    # drawn from the sequence first so the lines can refer to them.
    connection = run.session.connection()
    new_ids = connection.execute(
        text("SELECT nextval(pg_get_serial_sequence('orders', 'id')) FROM generate_series(1, :n)"),
        {"n": len(orders)},
    ).scalars()
    order_ids = {}
    for order, order_id in zip(orders, new_ids, strict=True):
        order["id"] = order_id
        order_ids[order["external_id"]] = order_id
    lines = [
        (
            order_ids[group.key],
            number,
            product_ids[line.row.sku],
            line.row.quantity,
            line.row.unit_price,
            line.row.discount,
            line.row.amount,
        )
        for group in groups
        for number, line in enumerate(group.lines, start=1)
    ]
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        with cursor.copy(f"COPY orders ({', '.join(ORDER_COLUMNS)}) FROM STDIN") as copy:
            for order in orders:
                copy.write_row([order[c] for c in ORDER_COLUMNS])
        with cursor.copy(f"COPY order_lines ({', '.join(LINE_COLUMNS)}) FROM STDIN") as copy:
            for line_row in lines:
                copy.write_row(line_row)
    run.result.inserted += sum(len(g.members) for g in groups)
    add(run.result.created, "orders", len(groups))
    add(run.result.created, "order lines", len(lines))
