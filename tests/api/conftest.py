"""Fixtures for the API: a database of its own with committed users and stores, the app on it.

The app opens its own connections (as in production), so the rows it must see are committed,
in a database made for these tests alone (`create_database`), dropped at the end of the run.

The team (see `world`): an admin; a manager with two reps and a viewer; another manager with
one rep. Each rep has one store with an order and an invoice. Everyone's password is
`PASSWORD`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.auth import create_access_token
from api.main import create_app
from tests.factories import (
    TODAY,
    make_invoice,
    make_order,
    make_product,
    make_stock,
    make_store,
    make_user,
)
from tools.db import make_engine
from tools.models import Order, Store, User
from tools.security import hash_password
from tools.settings import Settings, load_settings

PASSWORD = "correct horse battery staple"
SECRET = "test-secret-key-that-is-long-enough-0123456789"


# --- the database and its people ---------------------------------------------------------------


@dataclass
class World:
    """Who and what is in the API test database."""

    users: dict[str, User] = field(default_factory=dict)
    stores: dict[str, Store] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)


@pytest.fixture(scope="session")
def api_db_url(create_database: Callable[..., str]) -> str:
    return create_database(migrate=True)


@pytest.fixture(scope="session")
def api_engine(api_db_url: str) -> Iterator[Engine]:
    engine = make_engine(api_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def world(api_engine: Engine) -> World:
    """Commit the team, a store per rep with an order and an invoice, and some stock.

    Users (by key): admin; manager with reps `rep` and `teammate` and viewer `viewer`;
    `other_manager` with rep `outsider`. Stores are keyed by their rep.
    """
    hashed = hash_password(PASSWORD)
    found = World()
    with Session(api_engine, expire_on_commit=False) as session:
        admin = make_user(session, "admin")
        manager = make_user(session, "manager")
        other_manager = make_user(session, "manager")
        found.users = {
            "admin": admin,
            "manager": manager,
            "rep": make_user(session, "rep", manager=manager),
            "teammate": make_user(session, "rep", manager=manager),
            "viewer": make_user(session, "viewer", manager=manager),
            "other_manager": other_manager,
            "outsider": make_user(session, "rep", manager=other_manager),
        }
        for user in found.users.values():
            user.password_hash = hashed
        product = make_product(session, sku="API-SKU-1", name="Api Test Biscuits")
        make_stock(session, product, 500)
        for key, name in (
            ("rep", "Alpha Kirana Store"),
            ("teammate", "Bravo Medical Hall"),
            ("outsider", "Zulu Provision Mart"),
        ):
            store = make_store(session, found.users[key], name=name)
            found.stores[key] = store
            found.orders[key] = make_order(
                session, store, TODAY - dt.timedelta(days=3), [(product, 2)]
            )
            make_invoice(session, store, "500", invoice_date=TODAY - dt.timedelta(days=60))
        # Two names one word apart, both the outsider's: "sharma" is ambiguous to an admin
        # and unknown to everyone outside the outsider's team.
        for key, name in (("sharma1", "Sharma General Store"), ("sharma2", "Sharma Medical Store")):
            found.stores[key] = make_store(session, found.users["outsider"], name=name)
        session.commit()
    return found


@pytest.fixture(scope="session")
def api_settings(api_db_url: str) -> Settings:
    return load_settings(database_url=api_db_url, secret_key=SECRET, environment="test")


@pytest.fixture()
def app(api_settings: Settings, world: World) -> FastAPI:
    return create_app(api_settings)


@pytest.fixture()
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture()
def bearer(api_settings: Settings, world: World) -> Callable[[str], dict[str, str]]:
    """Headers with an access token for a user of the world (by key: "rep", "admin", ...)."""

    def headers(key: str) -> dict[str, str]:
        """Authorization header for the world's user `key`."""
        token = create_access_token(world.users[key], api_settings)
        return {"Authorization": f"Bearer {token.token}"}

    return headers


# --- a real server on a free loopback port (for the MCP client) --------------------------------


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(api_settings: Settings, world: World) -> Iterator[str]:
    """The app served by uvicorn in a thread; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(api_settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
