"""A trained forecasting database shared by the tool tests (built once per test session).

The models train on a small generated history (60 stores, 40 products, 14 months) in a
database of their own; tests that change rows do so inside a rolled-back transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from forecasting.train import TrainResult, train_all
from tests.forecasting.factories import Loaded, load_into, synthetic_history
from tools.db import make_engine
from tools.models import Communication, Invoice, Order, OrderLine, Store


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """Small fits are faster on one thread, and other tests may be running alongside."""
    with threadpool_limits(limits=1):
        yield


@dataclass
class Trained:
    engine: Engine
    loaded: Loaded
    result: TrainResult
    one_order_store: int
    no_order_store: int
    overdue_store: int
    complaint_store: int
    today: dt.date


@pytest.fixture(scope="session")
def trained(
    create_database: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trained]:
    engine = make_engine(create_database(migrate=True))
    synthetic = synthetic_history(stores=60, products=40, days=420, seed=3)
    today = synthetic.end + dt.timedelta(days=1)
    with Session(engine) as session:
        loaded = load_into(session, synthetic)
        rep = loaded.reps[0]
        one = session.execute(
            insert(Store)
            .values(code="ONE-1", name="Single Order Stores", rep_id=rep)
            .returning(Store.id)
        ).scalar_one()
        order = session.execute(
            insert(Order)
            .values(
                store_id=one,
                order_date=synthetic.end - dt.timedelta(days=20),
                status="delivered",
                total_amount=100,
            )
            .returning(Order.id)
        ).scalar_one()
        session.execute(
            insert(OrderLine).values(
                order_id=order,
                line_no=1,
                product_id=loaded.products[0],
                quantity=1,
                unit_price=100,
                amount=100,
            )
        )
        none = session.execute(
            insert(Store)
            .values(code="NONE-1", name="Brand New Traders", rep_id=rep)
            .returning(Store.id)
        ).scalar_one()
        rep_stores = [s for s in loaded.stores if session.get(Store, s).rep_id == rep]  # type: ignore[union-attr]
        overdue_store, complaint_store = rep_stores[0], rep_stores[1]
        session.execute(
            insert(Invoice).values(
                number="INV-TEST-1",
                store_id=overdue_store,
                invoice_date=today - dt.timedelta(days=75),
                due_date=today - dt.timedelta(days=45),
                amount=18400,
            )
        )
        session.execute(
            insert(Communication).values(
                store_id=complaint_store,
                channel="whatsapp",
                direction="inbound",
                kind="complaint",
                text="Last delivery had damaged cartons",
                occurred_at=dt.datetime.combine(
                    today - dt.timedelta(days=3), dt.time(11, 0), dt.UTC
                ),
            )
        )
        session.commit()
    home: Path = tmp_path_factory.mktemp("home")
    with engine.begin() as conn:
        result = train_all(conn, home=home, seed=0, evaluate=True)
    yield Trained(engine, loaded, result, one, none, overdue_store, complaint_store, today)
    engine.dispose()


@pytest.fixture()
def tdb(trained: Trained) -> Iterator[Session]:
    """A session on the trained database inside a transaction rolled back after the test."""
    with trained.engine.connect() as conn:
        trans = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
            trans.rollback()
