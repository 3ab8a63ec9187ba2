"""Small generated order histories for the forecasting tests (seeded, seconds to build).

Each store orders on its own rhythm (every 5-30 days, with jitter) from a personal list of
regular products plus occasional extras; a few stores slow down or stop in the last weeks, so
the at-risk model has something to find.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from forecasting.features import History, from_day, to_day
from tools.models import InventoryItem, Order, OrderLine, Product, Store, User

START = dt.date(2023, 1, 2)


@dataclass
class Synthetic:
    history: History
    slowed: list[int]
    end: dt.date


def synthetic_history(
    *, stores: int = 60, products: int = 40, days: int = 420, seed: int = 0
) -> Synthetic:
    rng = np.random.default_rng(seed)
    start = to_day(START)
    price = np.round(rng.uniform(20, 400, products), 2)
    popularity = rng.dirichlet(np.full(products, 0.6))
    categories = np.array(["tea", "biscuits", "soap", "oil"])[np.arange(products) % 4]
    regions = np.array(["North", "South", "East"])
    segments = np.array(["kirana", "chemist"])
    slowed = list(rng.choice(np.arange(1, stores + 1), size=max(2, stores // 10), replace=False))
    rows = []
    order_id = 0
    for store in range(1, stores + 1):
        interval = int(rng.integers(5, 31))
        regular = rng.choice(products, size=int(rng.integers(3, 9)), replace=False, p=popularity)
        qty = rng.integers(1, 12, size=products)
        day = start + int(rng.integers(0, interval))
        stop_at = start + days - int(rng.integers(40, 90)) if store in slowed else None
        while day < start + days:
            if stop_at is not None and day > stop_at:
                break
            order_id += 1
            basket = [p for p in regular if rng.random() < 0.8]
            if rng.random() < 0.3:
                basket.append(int(rng.choice(products, p=popularity)))
            for product in sorted(set(basket)) or [int(regular[0])]:
                q = max(1, int(qty[product] + rng.integers(-1, 2)))
                rows.append((order_id, store, int(product) + 1, day, q, q * price[product]))
            day += max(1, interval + int(rng.integers(-2, 3)))
    lines = pd.DataFrame(
        rows, columns=["order_id", "store_id", "product_id", "day", "quantity", "amount"]
    )
    store_frame = pd.DataFrame(
        {
            "store_id": np.arange(1, stores + 1),
            "region": regions[np.arange(stores) % 3],
            "segment": segments[np.arange(stores) % 2],
        }
    )
    product_frame = pd.DataFrame(
        {"product_id": np.arange(1, products + 1), "price": price, "category": categories}
    )
    return Synthetic(
        History(lines, store_frame, product_frame),
        [int(s) for s in slowed],
        from_day(start + days - 1),
    )


@dataclass
class Loaded:
    """Ids of what `load_into` created."""

    manager: int
    reps: list[int]
    stores: list[int]
    products: list[int]
    store_of: dict[int, int]
    product_of: dict[int, int]
    end: dt.date


def load_into(session: Session, synthetic: Synthetic, *, reps: int = 2) -> Loaded:
    """Insert users, stores, products, orders and lines of `synthetic` (returns the new ids)."""
    tag = np.random.default_rng().integers(1_000_000_000)
    manager = session.execute(
        insert(User)
        .values(email=f"mgr{tag}@example.com", name="Manager", role="manager")
        .returning(User.id)
    ).scalar_one()
    rep_ids = [
        session.execute(
            insert(User)
            .values(
                email=f"rep{i}-{tag}@example.com", name=f"Rep {i}", role="rep", manager_id=manager
            )
            .returning(User.id)
        ).scalar_one()
        for i in range(reps)
    ]
    h = synthetic.history
    store_of: dict[int, int] = {}
    for row in h.stores.itertuples():
        store_of[int(row.store_id)] = session.execute(
            insert(Store)
            .values(
                code=f"S{tag}-{row.store_id}",
                name=f"Store {row.store_id} {tag}",
                region=row.region,
                segment=row.segment,
                rep_id=rep_ids[int(row.store_id) % reps],
            )
            .returning(Store.id)
        ).scalar_one()
    product_of: dict[int, int] = {}
    for row in h.products.itertuples():
        product_of[int(row.product_id)] = session.execute(
            insert(Product)
            .values(
                sku=f"P{tag}-{row.product_id}",
                name=f"Product {row.product_id} {tag}",
                category=row.category,
                price=float(row.price),
            )
            .returning(Product.id)
        ).scalar_one()
        session.execute(
            insert(InventoryItem).values(
                warehouse="MAIN",
                product_id=product_of[int(row.product_id)],
                on_hand=1000,
                reserved=0,
            )
        )
    orders = h.orders
    order_of: dict[int, int] = {}
    for row in orders.itertuples():
        order_of[int(row.order_id)] = session.execute(
            insert(Order)
            .values(
                store_id=store_of[int(row.store_id)],
                order_date=from_day(int(row.day)),
                status="delivered",
                total_amount=round(float(row.amount), 2),
            )
            .returning(Order.id)
        ).scalar_one()
    line_rows = [
        {
            "order_id": order_of[int(r.order_id)],
            "line_no": i,
            "product_id": product_of[int(r.product_id)],
            "quantity": int(r.quantity),
            "unit_price": round(float(r.amount) / float(r.quantity), 2),
            "amount": round(float(r.amount), 2),
        }
        for i, r in enumerate(h.lines.itertuples())
    ]
    session.execute(insert(OrderLine), line_rows)
    session.execute(text("SELECT 1"))
    return Loaded(
        manager=manager,
        reps=rep_ids,
        stores=list(store_of.values()),
        products=list(product_of.values()),
        store_of=store_of,
        product_of=product_of,
        end=synthetic.end,
    )
