"""A small demo distributor shared by the offline planner and evaluation tests.

Built once per test session in a database of its own: 40 stores, 60 products and 8 months of
orders from the demo generator, with the forecasting models trained on it (the forecasting
tools read their stored predictions) and two extra stores of one rep that share a name word,
for the ambiguity tests. Tests that write (orders, notes) compute their expectations from the
database at the moment they ask, so their order does not matter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from tools.db import make_engine
from tools.models import Store, User

DEMO_TODAY = dt.date(2026, 11, 25)


@dataclass
class DemoWorld:
    engine: Engine
    home: Path
    today: dt.date
    rep: str
    other_rep: str
    manager: str
    admin: str
    twin_codes: tuple[str, str]


@pytest.fixture(scope="session")
def demo_world(
    create_database: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoWorld]:
    from forecasting.train import train_all
    from tools.data.demo import load_demo

    engine = make_engine(create_database(migrate=True), pool_size=3, max_overflow=2)
    load_demo(engine, stores=40, products=60, months=8, seed=11, today=DEMO_TODAY)
    home = tmp_path_factory.mktemp("assistant-home")
    with engine.begin() as conn:
        train_all(conn, home=home, as_of=DEMO_TODAY, seed=0, evaluate=False)
    with Session(engine) as session:
        reps = session.scalars(
            select(User).where(User.role == "rep", User.is_active.is_(True)).order_by(User.id)
        ).all()
        with_stores = [
            r for r in reps if session.scalar(select(Store.id).where(Store.rep_id == r.id))
        ]
        rep, other = with_stores[0], with_stores[1]
        manager = session.scalar(select(User.email).where(User.id == rep.manager_id))
        admin = session.scalar(select(User.email).where(User.role == "admin").limit(1))
        # Two stores of the same rep that share their distinctive word.
        codes = ("ZT-9001", "ZT-9002")
        for code, name in zip(codes, ("Zorawar Kirana", "Zorawar Medical Hall"), strict=True):
            session.add(
                Store(
                    code=code,
                    name=name,
                    owner_name="Harpreet Gill" if code.endswith("1") else "Jaspal Bedi",
                    city="Ludhiana",
                    region="North",
                    segment="kirana",
                    credit_limit=50000,
                    payment_terms_days=15,
                    rep_id=rep.id,
                )
            )
        session.commit()
        session.execute(text("ANALYZE"))
        world = DemoWorld(
            engine=engine,
            home=home,
            today=DEMO_TODAY,
            rep=rep.email,
            other_rep=other.email,
            manager=str(manager),
            admin=str(admin),
            twin_codes=codes,
        )
    yield world
    engine.dispose()
