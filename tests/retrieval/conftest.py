"""Fixtures for retrieval tests: committed communications in a database of their own, real
Chroma (embedded in a temporary directory, and a `chroma run` server on loopback)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from retrieval.chroma import forget_clients
from retrieval.keyword import keyword_cache
from tools.context import Actor, ToolContext
from tools.db import make_engine
from tools.models import Communication, Store, User
from tools.settings import get_settings


@pytest.fixture(scope="module")
def comm_engine(create_database: Callable[..., str]) -> Iterator[Engine]:
    """A migrated database whose rows are committed (the sync reads in its own transaction)."""
    engine = make_engine(create_database(migrate=True), pool_size=2, max_overflow=2)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _fresh_retrieval_state() -> Iterator[None]:
    # Each test has its own MANGALM_HOME (so its own Chroma directory): forget cached clients.
    forget_clients()
    keyword_cache.clear()
    yield
    forget_clients()
    keyword_cache.clear()


@dataclass
class World:
    """A small distributor: two reps with their stores, and a manager over one of them."""

    engine: Engine
    admin: Actor
    manager: Actor
    rep_a: Actor
    rep_b: Actor
    stores: dict[str, Store] = field(default_factory=dict)
    _day: int = 0
    _open: list[Session] = field(default_factory=list)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def ctx(self, actor: Actor) -> ToolContext:
        """A tool context with a session of its own (closed when the test ends)."""
        session = self.session()
        self._open.append(session)
        return ToolContext(session=session, actor=actor, today=dt.date(2024, 6, 30))

    def close(self) -> None:
        for session in self._open:
            session.close()

    def add(
        self,
        store: str,
        body: str,
        *,
        kind: str = "note",
        channel: str = "whatsapp",
        direction: str = "inbound",
        when: dt.datetime | None = None,
        author: str | None = "Ravi Kumar",
    ) -> int:
        self._day += 1
        with self.session() as session:
            comm = Communication(
                store_id=self.stores[store].id,
                author_name=author,
                channel=channel,
                direction=direction,
                kind=kind,
                text=body,
                occurred_at=when
                or dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC) + dt.timedelta(days=self._day),
            )
            session.add(comm)
            session.commit()
            return comm.id

    def edit(self, comm_id: int, body: str) -> None:
        with self.session() as session:
            comm = session.get(Communication, comm_id)
            assert comm is not None
            comm.text = body
            session.commit()

    def delete(self, comm_id: int) -> None:
        with self.session() as session:
            session.execute(text("DELETE FROM communications WHERE id = :i"), {"i": comm_id})
            session.commit()


def _user(session: Session, email: str, name: str, role: str, manager: User | None = None) -> User:
    user = User(email=email, name=name, role=role, manager_id=manager.id if manager else None)
    session.add(user)
    session.flush()
    return user


@pytest.fixture()
def world(comm_engine: Engine) -> Iterator[World]:
    """Users and stores committed in `comm_engine`; every table is emptied afterwards."""
    with Session(comm_engine, expire_on_commit=False) as session:
        admin = _user(session, "admin@example.com", "Asha Admin", "admin")
        manager = _user(session, "manager@example.com", "Meera Manager", "manager")
        rep_a = _user(session, "rep.a@example.com", "Ravi Kumar", "rep", manager)
        rep_b = _user(session, "rep.b@example.com", "Sunil Yadav", "rep")
        stores = {}
        for code, name, rep in [
            ("S001", "Sharma General Store", rep_a),
            ("S002", "Gupta Kirana", rep_a),
            ("S003", "Patel Medical", rep_a),
            ("S004", "Mehta Supermart", rep_b),
            ("S005", "Khan Provision Store", rep_b),
        ]:
            store = Store(code=code, name=name, rep_id=rep.id, city="Pune")
            session.add(store)
            stores[code] = store
        session.commit()
        built = World(
            engine=comm_engine,
            admin=Actor.from_user(admin),
            manager=Actor.from_user(manager),
            rep_a=Actor.from_user(rep_a),
            rep_b=Actor.from_user(rep_b),
        )
        built.stores = {**stores, **{s.name: s for s in stores.values()}}
    yield built
    built.close()
    with comm_engine.begin() as conn:
        conn.execute(text("TRUNCATE ground_truth, communications, stores, users CASCADE"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (`chroma run`) on a free loopback port; its URL."""
    chroma = Path(sys.executable).with_name("chroma")
    if not chroma.exists():
        found = shutil.which("chroma")
        assert found, "the chroma executable (from the chromadb package) is not installed"
        chroma = Path(found)
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(
        [
            str(chroma),
            "run",
            "--path",
            str(data / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "chroma server did not start: " + (data / "server.log").read_text()[-2000:]
                )
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture()
def use_chroma_server(chroma_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CHROMA_URL", chroma_server)
    get_settings.cache_clear()
    forget_clients()
    return chroma_server


@pytest.fixture()
def dead_chroma(monkeypatch: pytest.MonkeyPatch) -> str:
    """CHROMA_URL pointing at a loopback port nobody listens on."""
    url = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("CHROMA_URL", url)
    get_settings.cache_clear()
    forget_clients()
    return url
