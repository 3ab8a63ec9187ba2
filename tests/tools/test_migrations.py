"""Migrations: up to head, down to base and up again, and the schema matches the models."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from tools.migrate import current_revision, downgrade, head_revision, upgrade
from tools.models import Base

TABLES = {
    "users",
    "api_keys",
    "stores",
    "products",
    "orders",
    "order_lines",
    "invoices",
    "payments",
    "inventory",
    "promotions",
    "communications",
    "predictions",
    "conversation_turns",
    "ground_truth",
    "import_runs",
}


def test_upgrade_downgrade_upgrade(create_database: Callable[..., str]) -> None:
    engine = create_engine(create_database())
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        names = set(inspect(engine).get_table_names())
        assert names >= TABLES
        with engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass('sales_daily')")).scalar()
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert not (TABLES & set(inspect(engine).get_table_names()))
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_models_match_migrations(db_engine) -> None:
    with db_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_constraints_reject_bad_rows(db) -> None:
    db.execute(text("INSERT INTO stores (code, name) VALUES ('S1', 'Sharma General')"))
    db.execute(text("INSERT INTO products (sku, name, price) VALUES ('P1', 'Parle-G', 10)"))
    order_id = db.execute(
        text(
            "INSERT INTO orders (store_id, order_date) "
            "SELECT id, DATE '2026-01-01' FROM stores WHERE code = 'S1' RETURNING id"
        )
    ).scalar()
    bad = [
        "INSERT INTO stores (code, name) VALUES ('S1', 'duplicate code')",
        "INSERT INTO products (sku, name, price) VALUES ('P2', 'x', -1)",
        f"INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price, amount) "
        f"SELECT {order_id}, 1, id, 0, 10, 0 FROM products WHERE sku = 'P1'",
        "INSERT INTO users (email, name, role) VALUES ('a@b.c', 'A', 'superuser')",
        f"UPDATE orders SET status = 'lost' WHERE id = {order_id}",
    ]
    for statement in bad:
        nested = db.begin_nested()
        with pytest.raises(IntegrityError):
            db.execute(text(statement))
        nested.rollback()


def test_a_payment_names_its_invoices_store(db) -> None:
    db.execute(text("INSERT INTO stores (code, name) VALUES ('S1', 'One'), ('S2', 'Two')"))
    invoice_id = db.execute(
        text(
            "INSERT INTO invoices (number, store_id, invoice_date, due_date, amount) "
            "SELECT 'INV-1', id, DATE '2026-01-01', DATE '2026-01-31', 100 "
            "FROM stores WHERE code = 'S1' RETURNING id"
        )
    ).scalar()
    pay = (
        "INSERT INTO payments (invoice_id, store_id, paid_on, amount) "
        "SELECT :invoice, id, DATE '2026-01-05', 40 FROM stores WHERE code = :store"
    )
    nested = db.begin_nested()
    with pytest.raises(IntegrityError, match="fk_payments_invoice_store_invoices"):
        db.execute(text(pay), {"invoice": invoice_id, "store": "S2"})
    nested.rollback()
    db.execute(text(pay), {"invoice": invoice_id, "store": "S1"})
    # Moving the invoice to another store moves its payments with it.
    db.execute(
        text(
            "UPDATE invoices SET store_id = (SELECT id FROM stores WHERE code = 'S2') "
            "WHERE id = :invoice"
        ),
        {"invoice": invoice_id},
    )
    moved = (
        db.execute(
            text(
                "SELECT s.code FROM payments p JOIN stores s ON s.id = p.store_id "
                "WHERE p.invoice_id = :invoice"
            ),
            {"invoice": invoice_id},
        )
        .scalars()
        .all()
    )
    assert moved == ["S2"]


def test_invoice_paid_amount_follows_every_change_to_payments(db) -> None:
    """`invoices.paid_amount` (and `due_amount`) track inserts, updates, moves between
    invoices, deletes and truncation of payments, whichever statement makes them."""
    db.execute(text("INSERT INTO stores (code, name) VALUES ('S1', 'Sharma General')"))
    store = db.execute(text("SELECT id FROM stores WHERE code = 'S1'")).scalar()
    a, b = (
        db.execute(
            text(
                "INSERT INTO invoices (number, store_id, invoice_date, due_date, amount) "
                "VALUES (:n, :s, DATE '2026-01-01', DATE '2026-01-31', 1000) RETURNING id"
            ),
            {"n": number, "s": store},
        ).scalar()
        for number in ("INV-A", "INV-B")
    )

    def paid() -> dict[int, tuple[str, str]]:
        rows = db.execute(text("SELECT id, paid_amount, due_amount FROM invoices")).all()
        return {r.id: (str(r.paid_amount), str(r.due_amount)) for r in rows}

    def expected() -> dict[int, tuple[str, str]]:
        rows = db.execute(
            text(
                "SELECT i.id, coalesce(sum(p.amount), 0)::numeric(14,2) AS paid, i.amount "
                "FROM invoices i LEFT JOIN payments p ON p.invoice_id = i.id GROUP BY i.id"
            )
        ).all()
        return {r.id: (str(r.paid), str(r.amount - r.paid)) for r in rows}

    insert = text(
        "INSERT INTO payments (invoice_id, store_id, paid_on, amount) "
        "SELECT :i, :s, DATE '2026-02-01', x FROM unnest(CAST(:amounts AS numeric[])) AS x"
    )
    db.execute(insert, {"i": a, "s": store, "amounts": [Decimal("100"), Decimal("250.5")]})
    db.execute(insert, {"i": b, "s": store, "amounts": [Decimal("1000")]})
    assert paid() == expected() == {a: ("350.50", "649.50"), b: ("1000.00", "0.00")}
    db.execute(text("UPDATE payments SET amount = amount * 2 WHERE invoice_id = :i"), {"i": a})
    assert paid() == expected()
    db.execute(text("UPDATE payments SET invoice_id = :b WHERE amount = 200"), {"b": b})
    assert paid() == expected()
    db.execute(text("DELETE FROM payments WHERE invoice_id = :b"), {"b": b})
    assert paid() == expected() == {a: ("501.00", "499.00"), b: ("0.00", "1000.00")}
    open_ids = db.execute(text("SELECT id FROM invoices WHERE due_amount > 0 ORDER BY id")).all()
    assert [r.id for r in open_ids] == [a, b]
    db.execute(text("TRUNCATE payments"))
    assert paid() == expected() == {a: ("0.00", "1000.00"), b: ("0.00", "1000.00")}


def test_phone_keys_are_the_last_ten_digits_and_follow_changes(db) -> None:
    """Users and stores are matched on their phone's last ten digits, kept by the database in
    an indexed column whatever way the number is written (migration 0019)."""
    db.execute(
        text(
            "INSERT INTO users (email, name, role, phone) VALUES "
            "('a@b.c', 'A', 'rep', '+91 98765-43210'), ('d@e.f', 'D', 'rep', NULL)"
        )
    )
    db.execute(text("INSERT INTO stores (code, name, phone) VALUES ('S1', 'S', '098765 11111')"))
    keys = dict(db.execute(text("SELECT email, phone_key FROM users")).all())
    assert keys == {"a@b.c": "9876543210", "d@e.f": None}
    assert db.execute(text("SELECT phone_key FROM stores")).scalar() == "9876511111"
    db.execute(text("UPDATE users SET phone = 'whatsapp:+919812312345' WHERE email = 'a@b.c'"))
    assert (
        db.execute(text("SELECT phone_key FROM users WHERE email = 'a@b.c'")).scalar()
        == "9812312345"
    )
    indexed = {
        row.indexname
        for row in db.execute(
            text("SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%(phone_key)%'")
        )
    }
    assert indexed == {"ix_users_phone_key", "ix_stores_phone_key"}
