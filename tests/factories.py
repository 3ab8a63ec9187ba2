"""Rows for tests: users, stores, products, orders, invoices, stock and schemes.

Each factory inserts through the given session and flushes, so ids are there at once; the
`db` fixture rolls everything back after the test. `build_world` generates a small
distributor (two teams, a few hundred orders over a year and a half, invoices with partial
payments, stock and schemes) from a seed, for checking tools against independent SQL.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tools.context import Actor, ToolContext
from tools.models import (
    InventoryItem,
    Invoice,
    Order,
    OrderLine,
    Payment,
    Product,
    Promotion,
    Store,
    User,
)

_seq = itertools.count(1)

TODAY = dt.date(2026, 11, 25)


def _n() -> int:
    return next(_seq)


def make_user(
    db: Session, role: str = "rep", *, manager: User | None = None, name: str | None = None
) -> User:
    n = _n()
    user = User(
        email=f"{role}{n}@example.com",
        name=name or f"{role.title()} {n}",
        role=role,
        manager_id=manager.id if manager else None,
    )
    db.add(user)
    db.flush()
    return user


def make_store(db: Session, rep: User | None = None, **fields: Any) -> Store:
    n = _n()
    values: dict[str, Any] = {
        "code": f"ST{n:05d}",
        "name": f"Store {n}",
        "owner_name": f"Owner {n}",
        "phone": f"+91 98{n:08d}",
        "city": "Pune",
        "region": "West",
        "segment": "kirana",
        "credit_limit": Decimal("50000"),
        "payment_terms_days": 30,
        "rep_id": rep.id if rep else None,
    }
    values.update(fields)
    store = Store(**values)
    db.add(store)
    db.flush()
    return store


def make_product(db: Session, **fields: Any) -> Product:
    n = _n()
    values: dict[str, Any] = {
        "sku": f"SKU{n:05d}",
        "name": f"Product {n}",
        "brand": "Parle",
        "category": "Biscuits",
        "pack_size": "24 x 100 g",
        "price": Decimal("100.00"),
    }
    values.update(fields)
    product = Product(**values)
    db.add(product)
    db.flush()
    return product


def make_order(
    db: Session,
    store: Store,
    day: dt.date,
    lines: list[tuple[Product, int]] | list[tuple[Product, int, Decimal]],
    *,
    status: str = "placed",
    external_id: str | None = None,
) -> Order:
    order = Order(
        store_id=store.id,
        rep_id=store.rep_id,
        order_date=day,
        status=status,
        external_id=external_id,
        source_channel="import",
    )
    total = Decimal("0")
    for line_no, line in enumerate(lines, start=1):
        product, quantity = line[0], line[1]
        price = line[2] if len(line) > 2 else product.price  # type: ignore[misc]
        amount = (price * quantity).quantize(Decimal("0.01"))
        order.lines.append(
            OrderLine(
                line_no=line_no,
                product_id=product.id,
                quantity=quantity,
                unit_price=price,
                amount=amount,
            )
        )
        total += amount
    order.total_amount = total
    if status == "delivered":
        order.delivered_date = day + dt.timedelta(days=2)
    db.add(order)
    db.flush()
    return order


def make_invoice(
    db: Session,
    store: Store,
    amount: Decimal | str | int,
    *,
    invoice_date: dt.date,
    due_date: dt.date | None = None,
    paid: list[tuple[dt.date, Decimal | str | int]] | None = None,
    order: Order | None = None,
) -> Invoice:
    invoice = Invoice(
        number=f"INV{_n():06d}",
        store_id=store.id,
        order_id=order.id if order else None,
        invoice_date=invoice_date,
        due_date=due_date or invoice_date + dt.timedelta(days=store.payment_terms_days or 30),
        amount=Decimal(str(amount)),
    )
    db.add(invoice)
    db.flush()
    for day, value in paid or []:
        db.add(
            Payment(
                invoice_id=invoice.id, store_id=store.id, paid_on=day, amount=Decimal(str(value))
            )
        )
    db.flush()
    return invoice


def make_stock(
    db: Session,
    product: Product,
    on_hand: int,
    *,
    reserved: int = 0,
    reorder_point: int = 0,
    warehouse: str = "MAIN",
) -> InventoryItem:
    item = InventoryItem(
        warehouse=warehouse,
        product_id=product.id,
        on_hand=on_hand,
        reserved=reserved,
        reorder_point=reorder_point,
    )
    db.add(item)
    db.flush()
    return item


def make_promotion(
    db: Session, *, starts_on: dt.date, ends_on: dt.date, **fields: Any
) -> Promotion:
    n = _n()
    promotion = Promotion(
        code=f"PROMO{n}",
        name=fields.pop("name", f"Scheme {n}"),
        starts_on=starts_on,
        ends_on=ends_on,
        **fields,
    )
    db.add(promotion)
    db.flush()
    return promotion


def ctx_for(db: Session, user: User, today: dt.date = TODAY) -> ToolContext:
    return ToolContext(session=db, actor=Actor.from_user(user), today=today, channel="test")


def refresh_rollup(db: Session) -> None:
    from tools.migrate import refresh_rollup as refresh

    refresh(db.connection())


@dataclass
class World:
    """A generated distributor: who is who, and what was sold."""

    admin: User
    managers: list[User]
    reps: list[User]
    viewer: User
    stores: list[Store]
    products: list[Product]
    orders: list[Order] = field(default_factory=list)

    def stores_of(self, rep: User) -> list[Store]:
        return [s for s in self.stores if s.rep_id == rep.id]


def build_world(db: Session, seed: int = 7, today: dt.date = TODAY) -> World:
    """Two managers with two reps each, 24 stores, 20 products, ~500 orders, credit, stock."""
    rng = random.Random(seed)
    admin = make_user(db, "admin", name="Asha Admin")
    managers = [make_user(db, "manager", name=f"Manager {i}") for i in range(2)]
    reps = [make_user(db, "rep", manager=managers[i // 2], name=f"Rep {i}") for i in range(4)]
    viewer = make_user(db, "viewer", manager=managers[0], name="Vikram Viewer")
    cities = [("Pune", "West"), ("Mumbai", "West"), ("Delhi", "North"), ("Lucknow", "North")]
    segments = ["kirana", "chemist", "supermarket"]
    words = ["Sharma", "Gupta", "Verma", "Patel", "Singh", "Mehta", "Joshi", "Rao"]
    kinds = ["General Store", "Medical", "Kirana", "Mart", "Traders", "Provisions"]
    stores = []
    for i in range(24):
        city, region = cities[i % len(cities)]
        stores.append(
            make_store(
                db,
                reps[i % 4],
                name=f"{words[i % len(words)]} {kinds[(i // 4) % len(kinds)]} {i}",
                owner_name=f"{rng.choice(['Ramesh', 'Suresh', 'Anita', 'Kavita'])} {words[i % 8]}",
                city=city,
                region=region,
                segment=segments[i % 3],
                credit_limit=Decimal(rng.choice([20000, 50000, 100000])),
            )
        )
    brands = [("Parle", "Biscuits"), ("Tata", "Tea"), ("Amul", "Dairy"), ("Dabur", "Health")]
    products = [
        make_product(
            db,
            name=f"{brands[i % 4][0]} Item {i}",
            brand=brands[i % 4][0],
            category=brands[i % 4][1],
            price=Decimal(rng.randint(50, 900)) + Decimal(rng.choice(["0", "0.5", "0.25"])),
        )
        for i in range(20)
    ]
    world = World(admin, managers, reps, viewer, stores, products)
    start = today - dt.timedelta(days=540)
    for store_index, store in enumerate(stores):
        if store_index == 23:
            continue  # one store never ordered
        gap = rng.randint(7, 30)
        stop = today - dt.timedelta(days=rng.choice([0, 0, 0, 20, 75, 200]))
        day = start + dt.timedelta(days=rng.randint(0, gap))
        while day <= stop:
            chosen = rng.sample(products, rng.randint(1, 4))
            status = rng.choices(["delivered", "placed", "cancelled"], [8, 2, 1])[0]
            if day > today - dt.timedelta(days=5) and status == "delivered":
                status = "placed"
            order = make_order(
                db, store, day, [(p, rng.randint(1, 12)) for p in chosen], status=status
            )
            world.orders.append(order)
            if status == "delivered":
                invoice_date = order.delivered_date or day
                amount = order.total_amount
                pay_roll = rng.random()
                if pay_roll < 0.6:
                    paid = [(invoice_date + dt.timedelta(days=rng.randint(5, 40)), amount)]
                elif pay_roll < 0.8:
                    paid = [
                        (
                            invoice_date + dt.timedelta(days=10),
                            (amount / 3).quantize(Decimal("0.01")),
                        )
                    ]
                else:
                    paid = []
                paid = [(d, a) for d, a in paid if d <= today and a > 0]
                make_invoice(db, store, amount, invoice_date=invoice_date, paid=paid, order=order)
            day += dt.timedelta(days=max(1, int(rng.gauss(gap, gap / 4))))
    for i, product in enumerate(products):
        for warehouse in ("MAIN", "NORTH"):
            on_hand = rng.choice([0, 5, 40, 200, 600]) if i % 5 else 0
            make_stock(
                db,
                product,
                on_hand,
                reserved=min(on_hand, rng.choice([0, 3, 20])),
                reorder_point=rng.choice([0, 10, 50]),
                warehouse=warehouse,
            )
    make_promotion(
        db,
        starts_on=today - dt.timedelta(days=10),
        ends_on=today + dt.timedelta(days=10),
        brand="Parle",
        discount_pct=Decimal("5"),
        name="Parle 5% off",
    )
    make_promotion(
        db,
        starts_on=today - dt.timedelta(days=10),
        ends_on=today + dt.timedelta(days=10),
        product_id=products[1].id,
        min_quantity=10,
        free_quantity=1,
        segment="chemist",
        name="Buy 10 get 1 for chemists",
    )
    make_promotion(
        db,
        starts_on=today - dt.timedelta(days=10),
        ends_on=today + dt.timedelta(days=10),
        category="Dairy",
        region="North",
        discount_pct=Decimal("3"),
        name="North dairy 3%",
    )
    make_promotion(
        db,
        starts_on=today - dt.timedelta(days=60),
        ends_on=today - dt.timedelta(days=1),
        brand="Tata",
        discount_pct=Decimal("10"),
        name="Expired Tata scheme",
    )
    refresh_rollup(db)
    return world


@pytest.fixture(scope="module")
def world_db(db_engine: Engine) -> Iterator[tuple[Session, World]]:
    """A generated world shared by a module's tests, rolled back when the module ends.

    Each test gets the same session; tests that write must do so inside `db.begin_nested()`
    and roll it back (the `wdb` fixture does this).
    """
    with db_engine.connect() as conn:
        trans = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session, build_world(session)
        finally:
            session.close()
            trans.rollback()


@pytest.fixture()
def wdb(world_db: tuple[Session, World]) -> Iterator[Session]:
    """The world's session, with whatever the test writes rolled back afterwards."""
    session, _ = world_db
    nested = session.begin_nested()
    try:
        yield session
    finally:
        if nested.is_active:
            nested.rollback()
        session.expire_all()


@pytest.fixture()
def world(world_db: tuple[Session, World]) -> World:
    return world_db[1]
