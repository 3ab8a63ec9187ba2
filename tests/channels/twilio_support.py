"""What the Twilio channel tests share: a local fake of Twilio's REST API, signed webhooks,
a small committed database, and an app wired to both.

The fake speaks the real Messages resource (`POST /2010-04-01/Accounts/{sid}/Messages.json`,
form-encoded, HTTP basic auth with the account SID and auth token) on a loopback port and
records what it would have delivered. Webhooks are signed with twilio's own
`RequestValidator.compute_signature` over the public URL, as Twilio signs them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from api.main import create_app
from tests.factories import make_order, make_product, make_stock, make_store, make_user
from tools.models import Order, Product, Store, User
from tools.settings import Settings, load_settings

ACCOUNT_SID = "AC" + "0" * 30 + "1"
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC_BASE = "https://assistant.example.com/mangalm"
SMS_FROM = "+15005550006"
WHATSAPP_FROM = "whatsapp:+14155238886"
SECRET = "test-secret-key-that-is-long-enough-0123456789"

REP_PHONE = "+919820000001"
OTHER_PHONE = "+919820000002"
STRANGER_PHONE = "+919000000009"


class FakeTwilio:
    """A loopback HTTP server that answers like Twilio's Messages API and records messages."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, str]] = []
        self.forms: list[list[tuple[str, str]]] = []  # each message's fields, repeats kept
        self.connections = 0
        self.rejected: list[str] = []
        self.fail_with: list[int] = []  # statuses to answer before accepting again
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # Kept-alive connections, as api.twilio.com keeps them.
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with fake.lock:
                    fake.connections += 1

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                pairs = parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True)
                form = dict(pairs)
                expected = (
                    "Basic "
                    + base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
                )
                path = f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
                if self.headers.get("Authorization") != expected:
                    fake.rejected.append("auth")
                    self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
                    return
                if self.path != path:
                    fake.rejected.append(self.path)
                    self._answer(404, {"code": 20404, "message": "Not found", "status": 404})
                    return
                with fake.lock:
                    if fake.fail_with:
                        status = fake.fail_with.pop(0)
                        self._answer(status, {"code": 20429, "message": "Busy", "status": status})
                        return
                    fake.messages.append(form)
                    fake.forms.append(pairs)
                self._answer(
                    201,
                    {
                        "sid": "SM" + uuid.uuid4().hex,
                        "account_sid": fake.account_sid,
                        "to": form.get("To"),
                        "from": form.get("From"),
                        "body": form.get("Body"),
                        "status": "queued",
                        "num_segments": "1",
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeTwilio:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def to(self, address: str) -> list[str]:
        """Bodies of the messages sent to `address`, in order."""
        with self.lock:
            return [m.get("Body", "") for m in self.messages if m.get("To") == address]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} messages, got {len(self.messages)}")


def fake_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    try:
        yield fake
    finally:
        fake.stop()


def sign(path: str, params: list[tuple[str, str]] | dict[str, str], base: str = PUBLIC_BASE) -> str:
    """The X-Twilio-Signature Twilio would send for a POST of `params` to `base + path`."""
    pairs = list(params.items()) if isinstance(params, dict) else params
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)

    class Multi(dict[str, list[str]]):
        def getlist(self, key: str) -> list[str]:
            return self[key]

    return str(RequestValidator(AUTH_TOKEN).compute_signature(base + path, Multi(multi)))


def post_signed(
    client: TestClient,
    path: str,
    params: list[tuple[str, str]] | dict[str, str],
    *,
    signature: str | None = "valid",
    base: str = PUBLIC_BASE,
) -> Any:
    """POST a form-encoded webhook the way Twilio does (signed unless told otherwise)."""
    pairs = list(params.items()) if isinstance(params, dict) else params
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature == "valid":
        headers["X-Twilio-Signature"] = sign(path, pairs, base)
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(path, content=urlencode(pairs), headers=headers)


def inbound_sms(
    body: str | None,
    *,
    sender: str = REP_PHONE,
    sid: str | None = None,
    whatsapp: bool = False,
    media: int = 0,
) -> list[tuple[str, str]]:
    """An inbound-message webhook body in Twilio's format (fields as Twilio sends them)."""
    sid = sid or "SM" + uuid.uuid4().hex
    to = WHATSAPP_FROM if whatsapp else SMS_FROM
    frm = f"whatsapp:{sender}" if whatsapp else sender
    fields = [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", sid),
        ("NumMedia", str(media)),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", sid),
        ("FromState", ""),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("FromCountry", "IN"),
        ("To", to),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", frm),
        ("ApiVersion", "2010-04-01"),
    ]
    if body is not None:
        fields.append(("Body", body))
    for i in range(media):
        fields.append((f"MediaUrl{i}", f"https://api.twilio.com/media/ME{i}"))
        fields.append((f"MediaContentType{i}", "image/jpeg"))
    return fields


def twilio_settings(db_url: str, fake: FakeTwilio, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "secret_key": SECRET,
        "environment": "test",
        "public_base_url": PUBLIC_BASE,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_sms_from": SMS_FROM,
        "twilio_whatsapp_from": WHATSAPP_FROM,
        "twilio_api_base_url": fake.url,
        "digest_enabled": False,
    }
    values.update(overrides)
    return load_settings(**values)


def drain(client: TestClient) -> None:
    """Wait until every background turn of the app has finished (replies sent)."""
    app: FastAPI = client.app  # type: ignore[assignment]
    for name in ("turns", "twilio_turns"):
        turns = getattr(app.state, name, None)
        if turns is not None:
            client.portal.call(turns.drain)  # type: ignore[union-attr]


@dataclass
class Shop:
    """The committed rows the channel tests talk about."""

    rep: User
    other: User
    sharma: Store
    gupta: Store
    zulu: Store
    biscuits: Product
    ids: dict[str, int] = field(default_factory=dict)


def build_shop(engine: Engine) -> Shop:
    """A rep with two stores (one named with `&` and `<`), another rep with one, stock."""
    today = dt.date.today()
    with Session(engine, expire_on_commit=False) as session:
        rep = make_user(session, "rep", name="Ravi Kumar")
        rep.phone = REP_PHONE
        other = make_user(session, "rep", name="Omar Other")
        other.phone = OTHER_PHONE
        biscuits = make_product(session, name="Parle-G Biscuit 100g", price=Decimal("10.00"))
        make_stock(session, biscuits, 5000)
        sharma = make_store(session, rep, name="Sharma General Store")
        gupta = make_store(session, rep, name="Gupta & Sons <Main Rd>")
        zulu = make_store(session, other, name="Zulu Provision Mart")
        for store in (sharma, gupta, zulu):
            make_order(session, store, today - dt.timedelta(days=12), [(biscuits, 20)])
        session.commit()
    return Shop(rep, other, sharma, gupta, zulu, biscuits)


def placed_orders(engine: Engine, store: Store) -> int:
    with Session(engine) as session:
        return len(
            session.scalars(
                select(Order.id).where(Order.store_id == store.id, Order.status == "placed")
            ).all()
        )


def make_client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings))
