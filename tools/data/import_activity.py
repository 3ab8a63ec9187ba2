"""Importing receivables (invoices and payments) and communications.

Payments: each row names an invoice. A new invoice is created from the row's store, invoice
date and invoice amount (due date from the file or the store's payment terms); a row with a
payment amount records a payment against it. The payment reference is the business key; a
file without references gets a stable one derived from the invoice, date, amount and the
row's occurrence, so importing the same file twice records each payment once. A payment that
would make an invoice's payments exceed its amount is rejected.

Communications: each row is a note, message, call or complaint about a known store. The
business key is the file's message id, or without one a hash of store, time and text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select

from tools.data.import_base import Parsed, Run, add, fetch_in
from tools.data.import_masters import existing_store_ids
from tools.data.import_rows import CommunicationRow, PaymentRow, entity_fields
from tools.models import Communication, Invoice, Order, Payment, Store, User

DEFAULT_CHANNEL = "import"


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def _orders_by_external_id(run: Run, ids: list[str]) -> dict[str, tuple[int, int]]:
    rows = fetch_in(
        run.session,
        lambda chunk: select(Order.external_id, Order.id, Order.store_id).where(
            Order.external_id.in_(chunk)
        ),
        ids,
    )
    return {external_id: (order_id, store_id) for external_id, order_id, store_id in rows}


def import_payments(run: Run) -> None:
    """`mangalm import payments`: see the module docstring."""
    table = run.read(run.request.path, "main")
    binding = run.bind(
        table, "main", entity_fields("payments"), run.request.mapping, required=["invoice_number"]
    )
    labels = binding.labels
    parsed = run.parse(binding, PaymentRow)
    session = run.session

    # Invoices: the first row of each number defines it; later rows must agree.
    first: dict[str, Parsed[PaymentRow]] = {}
    facts = ("store_code", "invoice_date", "due_date", "invoice_amount", "order_id")
    failed: dict[str, str] = {}
    for item in parsed:
        number = item.row.invoice_number
        head = first.setdefault(number, item)
        for name in facts:
            mine, theirs = getattr(item.row, name), getattr(head.row, name)
            if item is not head and mine is not None and theirs is not None and mine != theirs:
                run.reject(
                    item.line,
                    f"invoice {number}: its {name} is {theirs} (line {head.line}); "
                    f"this row says {mine}",
                    item.values,
                )
                failed.setdefault(number, f"line {item.line} of the same invoice was rejected")
                break
    existing = {
        r.number: r
        for r in fetch_in(
            session,
            lambda chunk: (
                select(Invoice.number, Invoice.id, Invoice.amount, Invoice.order_id, Store.code)
                .join(Store, Store.id == Invoice.store_id)
                .where(Invoice.number.in_(chunk))
            ),
            first,
        )
    }
    paid: defaultdict[str, Decimal] = defaultdict(Decimal)
    if existing:
        by_id = {r.id: number for number, r in existing.items()}
        for invoice_id, total in session.execute(
            select(Payment.invoice_id, func.sum(Payment.amount))
            .where(Payment.invoice_id.in_(list(by_id)))
            .group_by(Payment.invoice_id)
        ):
            paid[by_id[invoice_id]] = total
    codes = [i.row.store_code for i in first.values() if i.row.store_code]
    stores = existing_store_ids(run, codes)
    terms = {
        code: days
        for code, days in session.execute(
            select(Store.code, Store.payment_terms_days).where(Store.code.in_(list(stores)))
        )
    }
    order_ids = [i.row.order_id for i in first.values() if i.row.order_id]
    orders = _orders_by_external_id(run, order_ids)
    invoiced_orders = {
        order_id
        for (order_id,) in fetch_in(
            session,
            lambda chunk: select(Invoice.order_id).where(Invoice.order_id.in_(chunk)),
            [o[0] for o in orders.values()],
        )
    }

    new_invoices: dict[str, dict[str, Any]] = {}
    amounts: dict[str, Decimal] = {n: r.amount for n, r in existing.items()}
    for number, head in first.items():
        if number in failed:
            continue
        row = head.row
        reason = None
        if number in existing:
            known = existing[number]
            if row.store_code and row.store_code != known.code:
                reason = f"invoice {number} belongs to store {known.code}, not {row.store_code}"
        else:
            reason = _new_invoice_problem(row, labels, stores, orders, invoiced_orders)
            if reason is None:
                assert row.store_code and row.invoice_date and row.invoice_amount is not None
                due = row.due_date or row.invoice_date + dt.timedelta(
                    days=terms.get(row.store_code) or 0
                )
                order = orders.get(row.order_id) if row.order_id else None
                new_invoices[number] = {
                    "number": number,
                    "store_id": stores[row.store_code][0],
                    "order_id": order[0] if order else None,
                    "invoice_date": row.invoice_date,
                    "due_date": due,
                    "amount": row.invoice_amount,
                }
                if order:
                    invoiced_orders.add(order[0])
                amounts[number] = row.invoice_amount
        if reason:
            run.reject(head.line, reason, head.values)
            failed[number] = f"line {head.line} of the same invoice was rejected"

    # Payments.
    references = [i.row.reference for i in parsed if i.row.reference]
    known_refs = {
        ref
        for (ref,) in fetch_in(
            session,
            lambda chunk: select(Payment.reference).where(Payment.reference.in_(chunk)),
            references,
        )
    }
    occurrences: Counter[tuple[Any, ...]] = Counter()
    seen: dict[str, int] = {}
    payments: list[tuple[Parsed[PaymentRow], dict[str, Any]]] = []
    for item in parsed:
        row = item.row
        number = row.invoice_number
        if row.amount is None or number in failed or row.paid_on is None:
            continue
        triple = (number, row.paid_on, row.amount)
        occurrences[triple] += 1
        reference = row.reference or "auto:" + _digest(*triple, occurrences[triple])[:32]
        if reference in seen:
            run.reject(
                item.line,
                f"payment reference {reference} appears again (first on line {seen[reference]})",
                item.values,
            )
            continue
        seen[reference] = item.line
        if reference in known_refs:
            continue
        total = paid[number] + row.amount
        if total > amounts[number]:
            run.reject(
                item.line,
                f"payments of invoice {number} would total {total}, "
                f"more than its amount {amounts[number]}",
                item.values,
            )
            continue
        paid[number] = total
        payments.append(
            (
                item,
                {
                    "paid_on": row.paid_on,
                    "amount": row.amount,
                    "method": row.method,
                    "reference": reference,
                },
            )
        )
    _reject_rest_of_failed(run, parsed, failed, "invoice", lambda r: r.invoice_number)
    if not run.may_write:
        return

    rejected = {r.line for r in run.result.rejects}
    invoice_ids = {number: r.id for number, r in existing.items()}
    store_of = {number: r.code for number, r in existing.items()}
    if new_invoices:
        created = session.execute(
            insert(Invoice).returning(Invoice.number, Invoice.id), list(new_invoices.values())
        )
        invoice_ids.update({number: invoice_id for number, invoice_id in created})
        store_of.update({n: first[n].row.store_code or "" for n in new_invoices})
    store_ids = existing_store_ids(run, list(set(store_of.values())))
    rows = [
        {
            **values,
            "invoice_id": invoice_ids[item.row.invoice_number],
            "store_id": store_ids[store_of[item.row.invoice_number]][0],
        }
        for item, values in payments
        if item.line not in rejected
    ]
    if rows:
        session.execute(insert(Payment), rows)
    ok_lines = {item.line for item in parsed} - rejected
    inserting = {item.line for item, _ in payments} | {first[n].line for n in new_invoices}
    inserting &= ok_lines
    run.result.inserted += len(inserting)
    run.result.unchanged += len(ok_lines - inserting)
    add(run.result.created, "invoices", len(new_invoices))
    add(run.result.created, "payments", len(rows))
    run.result.written = True


def _new_invoice_problem(
    row: PaymentRow,
    labels: dict[str, str],
    stores: dict[str, tuple[int, int | None]],
    orders: dict[str, tuple[int, int]],
    invoiced_orders: set[int],
) -> str | None:
    number = row.invoice_number
    missing = [
        name
        for name in ("store_code", "invoice_date", "invoice_amount")
        if getattr(row, name) is None
    ]
    if missing:
        return f"invoice {number} does not exist; to create it the row needs " + ", ".join(
            labels.get(name, f"{name} (map it)") for name in missing
        )
    assert row.store_code is not None
    if row.store_code not in stores:
        return f"store {row.store_code!r} does not exist; import stores first"
    if row.order_id:
        order = orders.get(row.order_id)
        if order is None:
            return f"order {row.order_id} does not exist"
        if order[1] != stores[row.store_code][0]:
            return f"order {row.order_id} is not an order of store {row.store_code}"
        if order[0] in invoiced_orders:
            return f"order {row.order_id} already has an invoice"
    return None


def _reject_rest_of_failed(
    run: Run, parsed: list[Parsed[Any]], failed: dict[str, str], kind: str, key: Any
) -> None:
    rejected = {r.line for r in run.result.rejects}
    for item in parsed:
        number = key(item.row)
        if number in failed and item.line not in rejected:
            run.reject(item.line, f"{kind} {number} not imported: {failed[number]}", item.values)


def import_communications(run: Run) -> None:
    """`mangalm import communications`: see the module docstring."""
    table = run.read(run.request.path, "main")
    binding = run.bind(
        table,
        "main",
        entity_fields("communications"),
        run.request.mapping,
        required=["store_code", "text", "occurred_at"],
    )
    parsed = run.parse(binding, CommunicationRow)
    stores = existing_store_ids(run, [i.row.store_code for i in parsed])
    orders = _orders_by_external_id(run, [i.row.order_id for i in parsed if i.row.order_id])
    users = {
        email.casefold(): user_id
        for user_id, email in run.session.execute(select(User.id, User.email))
    }
    keyed: list[tuple[Parsed[CommunicationRow], str]] = []
    seen: dict[str, int] = {}
    for item in parsed:
        row = item.row
        key = (
            row.external_id
            or "auto:"
            + _digest(row.store_code, row.occurred_at.astimezone(dt.UTC).isoformat(), row.text)[:40]
        )
        reason = None
        if key in seen:
            reason = (
                f"message id {key} appears again (first on line {seen[key]})"
                if row.external_id
                else f"the same store, time and text as line {seen[key]}"
            )
        elif row.store_code not in stores:
            reason = f"store {row.store_code!r} does not exist; import stores first"
        elif row.order_id and row.order_id not in orders:
            reason = f"order {row.order_id} does not exist"
        if reason:
            run.reject(item.line, reason, item.values)
            continue
        seen[key] = item.line
        keyed.append((item, key))
    known = {
        external_id
        for (external_id,) in fetch_in(
            run.session,
            lambda chunk: select(Communication.external_id).where(
                Communication.external_id.in_(chunk)
            ),
            [key for _, key in keyed],
        )
    }
    if not run.may_write:
        return
    rows = []
    for item, key in keyed:
        if key in known:
            continue
        row = item.row
        kind = row.kind or "note"
        rows.append(
            {
                "external_id": key,
                "store_id": stores[row.store_code][0],
                "author_id": users.get(row.author.casefold()) if row.author else None,
                "author_name": row.author,
                "channel": row.channel or DEFAULT_CHANNEL,
                "direction": row.direction or ("internal" if kind == "note" else "inbound"),
                "kind": kind,
                "text": row.text,
                "occurred_at": row.occurred_at,
                "order_id": orders[row.order_id][0] if row.order_id else None,
            }
        )
    if rows:
        run.session.execute(insert(Communication), rows)
    run.result.inserted += len(rows)
    run.result.unchanged += len(keyed) - len(rows)
    add(run.result.created, "communications", len(rows))
    run.result.written = True
