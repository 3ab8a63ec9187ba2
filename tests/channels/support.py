"""What the channel tests share: a committed little world, recording outbound channels and fake
provider servers on loopback.

The app and the worker open their own connections (as in production), so the rows they must
see are committed in a database made for the test module (`create_database`).

The world: a rep (with a phone number and a Telegram id) who looks after "Alpha Kirana
Store", another rep with "Zulu Provision Mart", and a product with stock, so "book 10 cases of
Parle-G for Alpha Kirana Store" drafts an order that a "Yes" button places.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from channels.base import OutboundChannel
from tests.factories import make_product, make_stock, make_store, make_user
from tools.db import make_engine
from tools.models import Order, User
from tools.security import hash_password

PASSWORD = "correct horse battery staple"
SECRET = "channel-tests-secret-key-long-enough-0123456789"
REP_PHONE = "+91 98765 43210"
REP_WA_ID = "919876543210"
REP_TELEGRAM_ID = 5550001
DRAFT_TEXT = "book 10 cases of Parle-G for Alpha Kirana Store"


@dataclass
class World:
    """The committed rows of a channel test database."""

    url: str
    engine: Engine
    rep: User
    other_rep: User
    store_id: int
    other_store_id: int


def build_world(create_database: Callable[..., str]) -> World:
    url = create_database(migrate=True)
    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        manager = make_user(session, "manager")
        rep = make_user(session, "rep", manager=manager, name="Ravi Kumar")
        rep.phone = REP_PHONE
        rep.telegram_id = REP_TELEGRAM_ID
        rep.password_hash = hash_password(PASSWORD)
        other = make_user(session, "rep", manager=manager, name="Sunita Rao")
        other.password_hash = rep.password_hash
        store = make_store(session, rep, name="Alpha Kirana Store")
        other_store = make_store(session, other, name="Zulu Provision Mart")
        product = make_product(session, sku="PARLE-G", name="Parle-G Biscuits")
        make_stock(session, product, 5000)
        session.commit()
        return World(url, engine, rep, other, store.id, other_store.id)


def count_orders(engine: Engine, store_id: int, status: str = "placed") -> int:
    with Session(engine) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Order)
                .where(Order.store_id == store_id, Order.status == status)
            )
            or 0
        )


class Recorder(OutboundChannel):
    """An outbound channel that records what it would send."""

    max_length = 4096

    def __init__(self, name: str = "telegram") -> None:
        self.name = name
        self.sent: list[tuple[str, str]] = []

    async def send_text(self, recipient: str, text: str) -> None:
        self.sent.append((recipient, text))


# --- servers on loopback -----------------------------------------------------------------------


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yields its URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll until `condition()` holds (AssertionError after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def run(coro: Any) -> Any:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


# --- a fake Telegram Bot API -------------------------------------------------------------------


class FakeBotApi:
    """A Bot API on loopback that records every method call (form fields decoded).

    `fail_next[method]` holds canned error answers (e.g. a 429 with retry_after) returned to
    the next calls of that method before it succeeds again.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self.fail_next: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._message_id = 0
        self._lock = threading.Lock()

    def app(self) -> Any:
        import json
        from urllib.parse import parse_qsl

        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def method(request: Request) -> JSONResponse:
            name = request.path_params["method"]
            raw = await request.body()
            json_body = "json" in request.headers.get("content-type", "")
            fields = json.loads(raw or b"{}") if json_body else dict(parse_qsl(raw.decode()))
            for key in ("reply_markup", "allowed_updates"):
                if isinstance(fields.get(key), str):
                    fields[key] = json.loads(fields[key])
            with self._lock:
                self.calls.append((time.monotonic(), name, fields))
                failures = self.fail_next.get(name)
                failure = failures.pop(0) if failures else None
                self._message_id += 1
                message_id = self._message_id
            if failure is not None:
                return JSONResponse(failure[1], status_code=failure[0])
            return JSONResponse({"ok": True, "result": self._result(name, fields, message_id)})

        return Starlette(routes=[Route("/bot{token}/{method}", method, methods=["POST", "GET"])])

    @staticmethod
    def _result(name: str, fields: dict[str, Any], message_id: int) -> Any:
        if name == "getMe":
            return {
                "id": 424242,
                "is_bot": True,
                "first_name": "Mangalm",
                "username": "mangalm_test_bot",
                "can_join_groups": False,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        if name == "sendMessage":
            return {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": int(fields.get("chat_id", 0)), "type": "private"},
                "text": fields.get("text", ""),
            }
        return True

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        with self._lock:
            return [fields for _, name, fields in self.calls if name == method]

    def times(self, method: str = "sendMessage") -> list[float]:
        with self._lock:
            return [at for at, name, _ in self.calls if name == method]


# --- a fake Graph API (WhatsApp Cloud API) -----------------------------------------------------


class FakeGraphApi:
    """The Graph API's `/{version}/{phone_number_id}/messages` on loopback, recording bodies.

    A request without the expected bearer token gets Meta's 401 error body.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.messages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._count = 0

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def messages(request: Request) -> JSONResponse:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse(
                    {"error": {"message": "Invalid OAuth access token", "code": 190}},
                    status_code=401,
                )
            body = await request.json()
            with self._lock:
                self.messages.append(body)
                self.paths.append(request.url.path)
                self._count += 1
                count = self._count
            return JSONResponse(
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                    "messages": [{"id": f"wamid.TEST{count}"}],
                }
            )

        return Starlette(
            routes=[Route("/{version}/{phone_number_id}/messages", messages, methods=["POST"])]
        )

    def to(self, recipient: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m.get("to") == recipient]
