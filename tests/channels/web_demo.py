"""The web chat tests' world: a small demo distributor in a database of its own, the app on it.

The demo's history ends on `TODAY`, and the app's assistant treats `TODAY` as today, so "this
month" means the same in every run. Everyone logs in with the demo passwords.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.main import create_app
from assistant.factory import build_assistant
from tools.context import ToolContext, load_actor, store_scope
from tools.credit import credit_position
from tools.data.demo import DEMO_PASSWORDS, load_demo
from tools.db import make_engine
from tools.models import InventoryItem, Product, Store
from tools.settings import Settings, load_settings

TODAY = dt.date(2026, 11, 25)
SECRET = "web-chat-test-secret-key-long-enough-0123456789"
ADMIN = "admin@demo.mangalm.in"
PASSWORD = DEMO_PASSWORDS


def demo_database(create_database: Callable[..., str]) -> str:
    """A fresh migrated database holding the demo distributor; its URL."""
    url = create_database(migrate=True)
    engine = make_engine(url)
    try:
        load_demo(engine, stores=30, products=40, months=6, seed=7, today=TODAY)
    finally:
        engine.dispose()
    return url


def demo_settings(url: str) -> Settings:
    return load_settings(database_url=url, secret_key=SECRET, environment="test")


class PrebuiltAssistant:
    """Stands where the app keeps its assistant: the real one, with `TODAY` as today."""

    def __init__(self, assistant: Any) -> None:
        self.assistant = assistant

    def get(self) -> Any:
        return self.assistant


def demo_assistant(settings: Settings, engine: Engine) -> Any:
    """The assistant the app would build, treating `TODAY` as today."""
    return build_assistant(settings, engine, today=TODAY)


def demo_app(settings: Settings, engine: Engine, assistant: Any = None) -> FastAPI:
    """The app on `engine` with `assistant` (default: a new `demo_assistant`)."""
    app = create_app(settings, engine=engine)
    app.state.assistant = PrebuiltAssistant(assistant or demo_assistant(settings, engine))
    return app


@dataclass(frozen=True)
class Booking:
    """An order a user may book: a product in stock and one of their stores with credit."""

    email: str
    product: str
    store: str
    store_id: int


def bookable(engine: Engine, emails: list[str], *, cases: int = 2) -> Booking:
    """The first of `emails` with a store whose credit covers `cases` cases of a product with
    stock to spare (the cheapest such product).

    Names are unique and free of digits, so the assistant cannot read a pack size as the
    quantity or be unsure which product or store is meant.
    """
    with Session(engine) as session:
        unique_products = (
            select(Product.name).group_by(Product.name).having(func.count() == 1).subquery()
        )
        available = func.sum(InventoryItem.on_hand - InventoryItem.reserved)
        products = session.execute(
            select(Product.name, Product.price)
            .join(InventoryItem, InventoryItem.product_id == Product.id)
            .where(Product.name.in_(select(unique_products.c.name)), Product.name.op("!~")("[0-9]"))
            .group_by(Product.id)
            .having(available >= 10 * cases)
            .order_by(Product.price, Product.id)
        ).all()
        assert products, "the demo has no product in stock"
        name, price = products[0]
        unique_stores = select(Store.name).group_by(Store.name).having(func.count() == 1)
        for email in emails:
            actor = load_actor(session, email=email)
            ctx = ToolContext(session=session, actor=actor, today=TODAY)
            stores = session.scalars(
                select(Store)
                .where(
                    store_scope(actor),
                    Store.name.in_(unique_stores),
                    Store.name.op("!~")("[0-9]"),
                )
                .order_by(Store.id)
            ).all()
            for store in stores:
                if credit_position(ctx, store).available > Decimal(price) * cases * 2:
                    return Booking(email=email, product=name, store=store.name, store_id=store.id)
    raise AssertionError(f"none of {emails} has a store with credit for {cases} cases of {name}")
