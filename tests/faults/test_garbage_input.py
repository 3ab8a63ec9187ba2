"""Garbage on every endpoint: malformed JSON, invalid UTF-8, a 1 MB body (with and without a
Content-Length), a wrong content type, invalid UTF-8 in the query and the path.

Every route the app serves is covered, discovered from the app itself (a new route is covered
without touching this file), with every channel enabled. Requests carry what gets them past
authentication (an admin's token, the Telegram secret, Meta's and Twilio's signatures computed
over the garbage itself), so the garbage reaches the code that reads it. The answer is never a
5xx, a route that reads a body answers 4xx, and no table gains or loses a row.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.auth import create_access_token
from api.main import create_app
from tests.channels.support import FakeBotApi, FakeGraphApi, serve
from tests.channels.twilio_support import (
    PUBLIC_BASE,
    FakeTwilio,
    build_shop,
    fake_twilio,
    sign,
    twilio_settings,
)
from tests.factories import make_user
from tools.db import make_engine
from tools.models import Base
from tools.settings import load_settings

TELEGRAM_TOKEN = "123456:garbage-test-token"
TELEGRAM_SECRET = "garbage_Secret-123"
META_SECRET = "garbage-meta-app-secret"
META_TOKEN = "garbage-meta-access-token"

# Values for path parameters: real-looking, so the route itself runs.
PATH_VALUES = {"name": "outstanding", "prefix": "mk_garbage", "communication_id": "1"}
# Methods that take no body by their nature (a body sent anyway must be ignored or refused).
BODYLESS = {"GET", "HEAD", "DELETE", "OPTIONS"}
# Routes that take no body and write on every authenticated call, garbage attached or not,
# with the tables they may change.
WRITES_WITHOUT_BODY = {("POST", "/api/link-code"): {"link_codes"}}
ONE_MB = 1024 * 1024


def _routes() -> list[tuple[str, str, bool]]:
    """(method, path, whether the route reads a request body) for every route of the app."""
    # The route table does not depend on the database: an app on an unreachable one lists it.
    app = create_app(load_settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    found: set[tuple[str, str, bool]] = set()
    for route in iter_route_contexts(app.routes):
        path = route.path
        if not path:
            continue
        methods = route.methods
        if methods is None:  # a mount (the static files): one file under it
            found.add(("GET", path.rstrip("/") + "/app.js", False))
            continue
        for method in methods - {"HEAD"}:
            if method in BODYLESS:
                reads_body = False
            elif getattr(route, "include_in_schema", False):
                # A documented operation declares its body (JSON or form) or takes none.
                reads_body = getattr(route, "body_field", None) is not None
            else:
                # Webhooks and /mcp read the raw request themselves.
                reads_body = True
            found.add((method, path, reads_body))
    return sorted(found, key=lambda item: (item[1], item[0]))


ROUTES = _routes()


@dataclass(frozen=True)
class Garbage:
    """One kind of bad request: its body, content type, and where else it puts bad bytes."""

    name: str
    body: bytes | None
    content_type: str | None
    query: str = ""
    path_suffix: bool = False
    chunked: bool = False


GARBAGE = [
    Garbage("malformed-json", b'{"text": "hello", "message_id": ', "application/json"),
    Garbage("invalid-utf8-json", b'{"text": "\xff\xfe\xc3\x28 caf\xe9"}', "application/json"),
    Garbage(
        "invalid-utf8-form",
        b"MessageSid=SMgarbage&From=%2B919820000001&Body=caf\xe9+%FF%FE"
        b"&CallSid=CAgarbage&SpeechResult=\xff&username=a%FF&password=\xfe",
        "application/x-www-form-urlencoded",
    ),
    Garbage("1mb-json", b'{"text": "' + b"a" * ONE_MB + b'"}', "application/json"),
    Garbage(
        "1mb-chunked", b"Body=" + b"a" * ONE_MB, "application/x-www-form-urlencoded", chunked=True
    ),
    Garbage("wrong-content-type", b"<Response><Message>hi</Message></Response>", "application/xml"),
    Garbage("invalid-utf8-query", None, None, query="limit=%FF%FE&text=%C3%28&hub.mode=%FF"),
    Garbage("invalid-utf8-path", None, None, path_suffix=True),
]


def _url(path: str, garbage: Garbage) -> str:
    def value(match: re.Match[str]) -> str:
        if garbage.path_suffix:
            return "%FF%FE%C3%28"
        return PATH_VALUES.get(match.group(1), "garbage")

    url = re.sub(r"\{([^}:]+)(?::[^}]*)?\}", value, path)
    if garbage.path_suffix and url == path:
        url = path.rstrip("/") + "/%FF%FE"
    return url + (f"?{garbage.query}" if garbage.query else "")


# --- the app, with every channel and its secrets ---------------------------------------------


@dataclass
class Target:
    client: TestClient
    engine: Engine
    token: str


@pytest.fixture(scope="module")
def target(create_database: Callable[..., str]) -> Iterator[Target]:
    url = create_database(migrate=True)
    engine = make_engine(url)
    build_shop(engine)
    with Session(engine, expire_on_commit=False) as session:
        admin = make_user(session, "admin")
        session.commit()
    bot, graph = FakeBotApi(), FakeGraphApi(META_TOKEN)
    twilio: Iterator[FakeTwilio] = fake_twilio()
    fake = next(twilio)
    with serve(bot.app()) as bot_url, serve(graph.app()) as graph_url:
        settings = twilio_settings(
            url,
            fake,
            telegram_bot_token=TELEGRAM_TOKEN,
            telegram_webhook_secret=TELEGRAM_SECRET,
            telegram_api_base_url=bot_url,
            meta_app_secret=META_SECRET,
            meta_verify_token="garbage-verify-token",
            meta_access_token=META_TOKEN,
            meta_phone_number_id="100200300",
            meta_template_name="daily_call_list",
            meta_graph_base_url=graph_url,
        )
        app: FastAPI = create_app(settings)
        # Loopback, as MCP's DNS-rebinding check wants; Twilio signs the public URL anyway.
        with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
            yield Target(client, engine, create_access_token(admin, settings).token)
    next(twilio, None)
    engine.dispose()


def _row_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {
            table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


def _headers(target: Target, method: str, path: str, url: str, garbage: Garbage) -> dict[str, str]:
    """What gets the request past authentication, computed over the garbage itself."""
    # No event streams: a GET /mcp that accepts one would stay open.
    headers = {"Authorization": f"Bearer {target.token}", "Accept": "application/json"}
    if garbage.content_type:
        headers["Content-Type"] = garbage.content_type
    body = garbage.body or b""
    if path == "/mcp" and method == "POST":
        headers["Accept"] = "application/json, text/event-stream"  # what MCP clients send
    elif path.startswith("/telegram"):
        headers["X-Telegram-Bot-Api-Secret-Token"] = TELEGRAM_SECRET
    elif path.startswith("/whatsapp/meta"):
        digest = hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    elif path.startswith(("/twilio", "/voice")):
        # Signed the way Twilio signs: over the public URL and the parameters as decoded.
        params = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        headers["X-Twilio-Signature"] = sign(url, params, PUBLIC_BASE)
    return headers


def _send(target: Target, method: str, path: str, garbage: Garbage) -> Any:
    url = _url(path, garbage)
    headers = _headers(target, method, path, url, garbage)
    body = garbage.body
    content: Any = body
    if garbage.chunked and body is not None:
        # A streamed body has no Content-Length: the size limit must count it as it arrives.
        def pieces() -> Iterator[bytes]:
            for start in range(0, len(body), 64 * 1024):
                yield body[start : start + 64 * 1024]

        content = pieces()
    return target.client.request(method, url, content=content, headers=headers)


@pytest.mark.parametrize("garbage", GARBAGE, ids=[g.name for g in GARBAGE])
@pytest.mark.parametrize(
    ("method", "path", "reads_body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES]
)
def test_garbage_gets_a_4xx_and_writes_nothing(
    target: Target, method: str, path: str, reads_body: bool, garbage: Garbage
) -> None:
    before = _row_counts(target.engine)
    response = _send(target, method, path, garbage)
    answer = (response.status_code, response.text[:300])
    assert response.status_code < 500, answer
    if reads_body and garbage.body is not None:
        assert 400 <= response.status_code < 500, answer
        if len(garbage.body) > ONE_MB:
            assert response.status_code == 413, answer
    after = _row_counts(target.engine)
    for table in WRITES_WITHOUT_BODY.get((method, path), set()):
        before.pop(table), after.pop(table)
    assert after == before


def test_every_documented_operation_is_covered() -> None:
    offline = create_app(load_settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    documented = {
        (method.upper(), path)
        for path, operations in offline.openapi()["paths"].items()
        for method in operations
    }
    routes = {(method, path) for method, path, _ in ROUTES}
    assert documented <= routes
    webhooks = {
        ("POST", "/twilio/sms"),
        ("POST", "/telegram/webhook"),
        ("POST", "/voice/turn"),
        ("POST", "/voice/link"),
    }
    assert webhooks <= routes
    assert set(WRITES_WITHOUT_BODY) <= routes
