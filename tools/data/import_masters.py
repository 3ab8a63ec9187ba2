"""Importing master data: stores and products (with optional inventory levels).

A store is identified by its code and a product by its SKU. A row for a code that already
exists updates the mapped fields that the row fills in (an empty cell never erases what the
database knows); a row that changes nothing counts as unchanged. The helpers at the bottom also
create the stores and products that order files mention.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from tools.data.import_base import Binding, Parsed, Run, add, fetch_in
from tools.data.import_rows import (
    ProductFields,
    ProductRow,
    StoreFields,
    StoreRow,
    entity_fields,
)
from tools.models import InventoryItem, Product, Store, User
from tools.settings import get_settings

# field of the file -> column of `stores`
STORE_COLUMNS = {
    "store_name": "name",
    "owner_name": "owner_name",
    "phone": "phone",
    "city": "city",
    "region": "region",
    "segment": "segment",
    "lat": "lat",
    "lon": "lon",
    "credit_limit": "credit_limit",
    "payment_terms_days": "payment_terms_days",
}
# field of the file -> key in `stores.address`
ADDRESS_KEYS = {
    "address": "street",
    "postal_code": "postal_code",
    "state": "state",
    "country": "country",
}
PRODUCT_COLUMNS = {
    "product_name": "name",
    "brand": "brand",
    "category": "category",
    "pack_size": "pack_size",
    "unit": "unit",
    "price": "price",
}


def store_values(row: StoreFields) -> dict[str, Any]:
    """The `stores` columns a row fills in (empty cells left out)."""
    values: dict[str, Any] = {}
    for name, column in STORE_COLUMNS.items():
        value = getattr(row, name)
        if value is not None:
            values[column] = value
    address = {
        key: getattr(row, name)
        for name, key in ADDRESS_KEYS.items()
        if getattr(row, name) is not None
    }
    if address:
        values["address"] = address
    return values


def product_values(row: ProductFields, attributes: dict[str, str]) -> dict[str, Any]:
    """The `products` columns a row fills in (empty cells left out)."""
    values: dict[str, Any] = {}
    for name, column in PRODUCT_COLUMNS.items():
        value = getattr(row, name, None)
        if value is not None:
            values[column] = value
    discontinued = getattr(row, "discontinued", None)
    if discontinued is not None:
        values["is_active"] = not discontinued
    if attributes:
        values["attributes"] = dict(attributes)
    return values


def _changes(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The columns whose value would change; JSON columns merge key by key."""
    changed: dict[str, Any] = {}
    for column, value in wanted.items():
        old = current.get(column)
        if isinstance(value, dict):
            merged = {**(old or {}), **value}
            if merged != old:
                changed[column] = merged
        elif old != value:
            changed[column] = value
    return changed


def _dedupe(run: Run, parsed: list[Parsed[Any]], key: str, label: str) -> list[Parsed[Any]]:
    """Keep the first row of each business key; later ones are rejected as repeats."""
    first: dict[str, int] = {}
    unique = []
    for item in parsed:
        code = getattr(item.row, key)
        if code in first:
            run.reject(
                item.line,
                f"{label} {code!r} appears again (first on line {first[code]})",
                item.values,
                item.role,
            )
            continue
        first[code] = item.line
        unique.append(item)
    return unique


def import_stores(run: Run) -> None:
    """`mangalm import stores`: insert new store codes, update known ones."""
    table = run.read(run.request.path, "main")
    binding = run.bind(
        table, "main", entity_fields("stores"), run.request.mapping, required=["store_code"]
    )
    parsed = _dedupe(run, run.parse(binding, StoreRow), "store_code", "store code")
    reps = _rep_ids(run, [p.row.rep for p in parsed if p.row.rep])
    columns = [Store.id, Store.code, Store.address, Store.rep_id]
    columns += [getattr(Store, c) for c in STORE_COLUMNS.values()]
    existing = {
        r.code: r._asdict()
        for r in fetch_in(
            run.session,
            lambda chunk: select(*columns).where(Store.code.in_(chunk)),
            (p.row.store_code for p in parsed),
        )
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    unchanged = 0
    for item in parsed:
        row = item.row
        wanted = store_values(row)
        if row.rep:
            rep_id = reps.get(row.rep.casefold())
            if rep_id is None:
                run.reject(
                    item.line,
                    f"{binding.labels['rep']}: {row.rep!r} is not the email or code of a user",
                    item.values,
                )
                continue
            wanted["rep_id"] = rep_id
        current = existing.get(row.store_code)
        if current is None:
            if row.store_name is None:
                run.reject(item.line, _nameless("store", row.store_code, binding), item.values)
                continue
            inserts.append({"code": row.store_code, **wanted})
            continue
        changed = _changes(current, wanted)
        if changed:
            updates.append({"id": current["id"], **changed})
        else:
            unchanged += 1
    if not run.may_write:
        return
    if inserts:
        run.session.execute(insert(Store), inserts)
    if updates:
        run.session.execute(update(Store), updates)
    run.result.inserted += len(inserts)
    run.result.updated += len(updates)
    run.result.unchanged += unchanged
    add(run.result.created, "stores", len(inserts))
    run.result.written = True


def _nameless(kind: str, code: str, binding: Binding) -> str:
    field = f"{kind}_name"
    if field in binding.columns:
        return f"{kind} {code!r} is new and its {binding.labels[field]} is empty"
    return f"{kind} {code!r} does not exist yet; map {field} to create new {kind}s"


def _rep_ids(run: Run, wanted: list[str]) -> dict[str, int]:
    """Users by lower-cased email and by code."""
    if not wanted:
        return {}
    ids: dict[str, int] = {}
    for user_id, email, code in run.session.execute(select(User.id, User.email, User.code)):
        ids[email.casefold()] = user_id
        if code:
            ids[code.casefold()] = user_id
    return ids


def import_products(run: Run) -> None:
    """`mangalm import products`: insert new SKUs, update known ones, set stock if mapped."""
    table = run.read(run.request.path, "main")
    binding = run.bind(
        table,
        "main",
        entity_fields("products"),
        run.request.mapping,
        required=["sku"],
        attributes=True,
    )
    parsed = _dedupe(run, run.parse(binding, ProductRow), "sku", "SKU")
    columns = [getattr(Product, c) for c in PRODUCT_COLUMNS.values()]
    existing = {
        r.sku: r._asdict()
        for r in fetch_in(
            run.session,
            lambda chunk: select(
                Product.id, Product.sku, Product.attributes, Product.is_active, *columns
            ).where(Product.sku.in_(chunk)),
            (p.row.sku for p in parsed),
        )
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    unchanged = 0
    for item in parsed:
        wanted = product_values(item.row, item.attributes)
        current = existing.get(item.row.sku)
        if current is None:
            if item.row.product_name is None:
                run.reject(item.line, _nameless("product", item.row.sku, binding), item.values)
                continue
            inserts.append({"sku": item.row.sku, **wanted})
            continue
        changed = _changes(current, wanted)
        if changed:
            updates.append({"id": current["id"], **changed})
        else:
            unchanged += 1
    if not run.may_write:
        return
    ids = {sku: current["id"] for sku, current in existing.items()}
    if inserts:
        ids.update(_insert_returning(run, Product, Product.sku, inserts))
    if updates:
        run.session.execute(update(Product), updates)
    stock_changes = _set_stock(run, parsed, ids)
    run.result.inserted += len(inserts)
    run.result.updated += len(updates)
    run.result.unchanged += unchanged
    add(run.result.created, "products", len(inserts))
    add(run.result.created, "inventory levels set", stock_changes)
    run.result.written = True


def _set_stock(run: Run, parsed: list[Parsed[ProductRow]], ids: dict[str, int]) -> int:
    """Upsert inventory levels for rows that give on_hand or reorder_point."""
    default_warehouse = get_settings().default_warehouse
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in parsed:
        row = item.row
        given = {"on_hand": row.on_hand, "reorder_point": row.reorder_point}
        levels = {k: v for k, v in given.items() if v is not None}
        if not levels or row.sku not in ids:
            continue
        where = {"warehouse": row.warehouse or default_warehouse, "product_id": ids[row.sku]}
        groups.setdefault(tuple(sorted(levels)), []).append({**where, **levels})
    count = 0
    for keys, values in groups.items():
        statement = pg_insert(InventoryItem).values(values)
        statement = statement.on_conflict_do_update(
            constraint="uq_inventory_warehouse_product",
            set_={
                **{k: statement.excluded[k] for k in keys},
                "updated_at": func.now(),
            },
        )
        run.session.execute(statement)
        count += len(values)
    return count


def _insert_returning(
    run: Run, model: type[Store] | type[Product], key: Any, rows: list[dict[str, Any]]
) -> dict[str, int]:
    """Insert rows and return business key -> new id."""
    result = run.session.execute(insert(model).returning(key, model.id), rows)
    return {k: i for k, i in result}


# Helpers for order files that mention stores and products -----------------------------------


def existing_store_ids(run: Run, codes: list[str]) -> dict[str, tuple[int, int | None]]:
    """store code -> (id, rep id) for the codes that exist."""
    rows = fetch_in(
        run.session,
        lambda chunk: select(Store.code, Store.id, Store.rep_id).where(Store.code.in_(chunk)),
        codes,
    )
    return {code: (store_id, rep_id) for code, store_id, rep_id in rows}


def existing_product_ids(run: Run, skus: list[str]) -> dict[str, int]:
    """SKU -> id for the SKUs that exist."""
    rows = fetch_in(
        run.session,
        lambda chunk: select(Product.sku, Product.id).where(Product.sku.in_(chunk)),
        skus,
    )
    return {sku: product_id for sku, product_id in rows}


def create_stores(run: Run, new: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Insert stores {code: values}; return code -> id."""
    if not new:
        return {}
    rows = [{"code": code, **values} for code, values in new.items()]
    return _insert_returning(run, Store, Store.code, rows)


def create_products(run: Run, new: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Insert products {sku: values}; return sku -> id."""
    if not new:
        return {}
    rows = [{"sku": sku, **values} for sku, values in new.items()]
    return _insert_returning(run, Product, Product.sku, rows)
