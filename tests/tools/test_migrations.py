"""Migrations: up to head, down to base and up again, and the schema matches the models."""

from __future__ import annotations

from collections.abc import Callable

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
