"""WhatsApp through Meta's Cloud API: handshake, signed webhooks, replies, the 24-hour window.

Webhook bodies follow Meta's format (object / entry / changes / value / messages) and are
signed like Meta signs them: HMAC-SHA256 of the raw bytes with the app secret. Replies go to
`FakeGraphApi` on loopback, which records every message body.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import create_access_token
from api.main import create_app
from assistant.messages import Button, InboundMessage, Reply
from assistant.turn import UNKNOWN_SENDER
from channels.base import ChannelConfigError, record_whatsapp_window
from channels.meta_whatsapp import (
    MetaWhatsAppOutbound,
    window_open,
)
from channels.queue import UNSUPPORTED_MEDIA
from tests.channels.support import (
    DRAFT_TEXT,
    REP_WA_ID,
    SECRET,
    FakeGraphApi,
    World,
    build_world,
    count_orders,
    serve,
)
from tools.models import ChannelWindow, ConversationTurn, User
from tools.settings import Settings, load_settings

APP_SECRET = "meta-app-secret-for-tests"
VERIFY_TOKEN = "verify-me-please"
ACCESS_TOKEN = "EAAG-test-access-token"
PHONE_ID = "1234567890"
STRANGER = "919000011111"
URL = "/whatsapp/meta/webhook"


@pytest.fixture(scope="module")
def world(create_database: Callable[..., str]) -> World:
    return build_world(create_database)


@pytest.fixture(scope="module")
def graph() -> Iterator[tuple[FakeGraphApi, str]]:
    fake = FakeGraphApi(ACCESS_TOKEN)
    with serve(fake.app()) as url:
        yield fake, url


def _settings(world: World, graph_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": world.url,
        "secret_key": SECRET,
        "environment": "test",
        "rate_limit_per_user": "1000/minute",
        "meta_app_secret": APP_SECRET,
        "meta_verify_token": VERIFY_TOKEN,
        "meta_access_token": ACCESS_TOKEN,
        "meta_phone_number_id": PHONE_ID,
        "meta_template_name": "daily_call_list",
        "meta_graph_base_url": graph_url,
    }
    values.update(extra)
    return load_settings(**values)


@pytest.fixture()
def app(world: World, graph: tuple[FakeGraphApi, str]) -> FastAPI:
    return create_app(_settings(world, graph[1]))


@pytest.fixture()
def client(app: FastAPI, graph: tuple[FakeGraphApi, str]) -> Iterator[TestClient]:
    graph[0].messages.clear()
    with TestClient(app) as test_client:
        yield test_client


_ids = iter(range(10**9))


def message(sender: str = REP_WA_ID, **content: Any) -> dict[str, Any]:
    """One entry of `value.messages`; `content` gives the type and its part."""
    return {
        "from": sender,
        "id": f"wamid.HBgM{time.time_ns()}{next(_ids)}",
        "timestamp": str(int(time.time())),
        **content,
    }


def text(body: str, sender: str = REP_WA_ID) -> dict[str, Any]:
    return message(sender, type="text", text={"body": body})


def payload(*messages: dict[str, Any], phone_number_id: str = PHONE_ID) -> bytes:
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "8856996819413533",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "+91 80 4000 0000",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [
                                {"profile": {"name": "Ravi"}, "wa_id": m["from"]}
                                for m in messages
                                if "from" in m
                            ],
                            "messages": list(messages),
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }
    return json.dumps(body, indent=1).encode()


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(client: TestClient, body: bytes, signature: str | None = "sign") -> int:
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        headers["X-Hub-Signature-256"] = sign(body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return client.post(URL, content=body, headers=headers).status_code


def settle(client: TestClient, app: FastAPI) -> None:
    client.portal.call(app.state.turns.drain)


# --- the handshake and the signature -----------------------------------------------------------


def test_handshake_echoes_the_challenge_only_for_our_verify_token(client: TestClient) -> None:
    ok = client.get(
        URL,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ):
        assert client.get(URL, params=params).status_code == 403


def test_forged_or_missing_signature_is_refused_and_nothing_happens(
    client: TestClient, app: FastAPI, graph: tuple[FakeGraphApi, str], world: World
) -> None:
    item = text("which stores should I call today?", sender="919111122222")
    body = payload(item)
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    for signature in (
        None,
        "",
        "sha256=" + "0" * 64,
        sign(body, "another-app-secret"),
        sign(compact),  # a signature of re-serialised JSON is not one of the raw body
        sign(body).replace("sha256=", "sha1="),
    ):
        assert post(client, body, signature) == 403
    settle(client, app)
    assert graph[0].messages == []
    with Session(world.engine) as session:
        assert (
            session.scalars(
                select(ConversationTurn).where(ConversationTurn.message_id == item["id"])
            ).first()
            is None
        )
        assert session.get(ChannelWindow, ("whatsapp", "919111122222")) is None


# --- turns -------------------------------------------------------------------------------------


def test_button_reply_delivered_five_times_places_one_order_and_replies_once(
    client: TestClient, app: FastAPI, graph: tuple[FakeGraphApi, str], world: World
) -> None:
    fake = graph[0]
    before = count_orders(world.engine, world.store_id)
    assert post(client, payload(text(DRAFT_TEXT))) == 200
    settle(client, app)
    (question,) = fake.to(REP_WA_ID)
    assert question["type"] == "interactive"
    interactive = question["interactive"]
    assert interactive["type"] == "button" and "Shall I place it?" in interactive["body"]["text"]
    buttons = interactive["action"]["buttons"]
    assert 1 <= len(buttons) <= 3 and all(len(b["reply"]["title"]) <= 20 for b in buttons)
    yes = next(b["reply"] for b in buttons if b["reply"]["title"] == "Yes")

    pressed = payload(
        message(
            type="interactive",
            interactive={"type": "button_reply", "button_reply": yes},
            context={"from": "918040000000", "id": "wamid.question"},
        )
    )

    async def five_at_once() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        URL,
                        content=pressed,
                        headers={
                            "X-Hub-Signature-256": sign(pressed),
                            "Content-Type": "application/json",
                        },
                    )
                    for _ in range(5)
                )
            )
        return [a.status_code for a in answers]

    assert client.portal.call(five_at_once) == [200] * 5
    settle(client, app)
    sent = fake.to(REP_WA_ID)
    assert len(sent) == 2
    assert sent[1]["type"] == "text" and "placed" in sent[1]["text"]["body"]
    assert count_orders(world.engine, world.store_id) == before + 1


@pytest.mark.parametrize(
    "item",
    [
        {"type": "voice", "voice": {"id": "id_voice", "mime_type": "audio/ogg; codecs=opus"}},
        {"type": "image", "image": {"id": "id_image", "mime_type": "image/jpeg", "caption": "hi"}},
        {"type": "document", "document": {"id": "id_doc", "mime_type": "application/pdf"}},
    ],
    ids=["voice", "image", "document"],
)
def test_media_gets_the_text_only_answer(
    client: TestClient, app: FastAPI, graph: tuple[FakeGraphApi, str], item: dict[str, Any]
) -> None:
    assert post(client, payload(message(**item))) == 200
    settle(client, app)
    (sent,) = graph[0].to(REP_WA_ID)
    assert sent["text"]["body"] == UNSUPPORTED_MEDIA


def test_statuses_groups_reactions_and_other_numbers_are_not_turns(
    client: TestClient, app: FastAPI, graph: tuple[FakeGraphApi, str]
) -> None:
    status_body = json.loads(payload(text("x")))
    value = status_body["entry"][0]["changes"][0]["value"]
    del value["messages"]
    value["statuses"] = [
        {"id": "wamid.out1", "recipient_id": REP_WA_ID, "status": "delivered", "timestamp": "1"}
    ]
    raw = json.dumps(status_body).encode()
    assert post(client, raw) == 200
    group = text("outstanding of Alpha Kirana Store?")
    group["group_id"] = "555555555"
    reaction = message(type="reaction", reaction={"message_id": "wamid.x", "emoji": "👍"})
    assert post(client, payload(group, reaction)) == 200
    assert post(client, payload(text("hello"), phone_number_id="999")) == 200
    settle(client, app)
    assert graph[0].messages == []


def test_unknown_number_gets_the_linking_explanation_then_links(
    client: TestClient, app: FastAPI, graph: tuple[FakeGraphApi, str], world: World
) -> None:
    fake = graph[0]
    assert post(client, payload(text("how much does Zulu Provision Mart owe?", STRANGER))) == 200
    settle(client, app)
    (explained,) = fake.to(STRANGER)
    assert explained["text"]["body"] == UNKNOWN_SENDER

    token = create_access_token(world.other_rep, app.state.settings).token
    code = client.post("/api/link-code", headers={"Authorization": f"Bearer {token}"}).json()
    assert post(client, payload(text(f"link {code['code']}", STRANGER))) == 200
    settle(client, app)
    assert "now linked" in fake.to(STRANGER)[-1]["text"]["body"]
    with Session(world.engine) as session:
        assert session.get(User, world.other_rep.id).phone == "+" + STRANGER  # type: ignore[union-attr]


# --- sending and the 24-hour window ------------------------------------------------------------


def _send(world: World, graph_url: str, recipient: str, reply: Reply, now: dt.datetime) -> None:
    outbound = MetaWhatsAppOutbound(_settings(world, graph_url), world.engine, now=lambda: now)

    async def run() -> None:
        try:
            await outbound.send_reply(recipient, reply)
        finally:
            await outbound.aclose()

    asyncio.run(run())


def _wrote_at(world: World, address: str, at: dt.datetime) -> None:
    message = InboundMessage(channel="whatsapp", sender=address, text="hello", received_at=at)
    record_whatsapp_window(world.engine, message)


def test_inbound_message_opens_the_window(client: TestClient, app: FastAPI, world: World) -> None:
    sender = "919222233333"
    assert post(client, payload(text("hello", sender))) == 200
    settle(client, app)
    with Session(world.engine) as session:
        assert window_open(session, sender)
        assert not window_open(session, sender, dt.datetime.now(dt.UTC) + dt.timedelta(hours=25))


def test_the_window_opens_when_meta_says_the_message_was_sent(
    client: TestClient, app: FastAPI, world: World
) -> None:
    # Delivered late: sent 23 hours ago by Meta's timestamp, so one hour of window is left.
    sender = "919222244444"
    sent = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=23)
    late = {**text("hello", sender), "timestamp": str(int(sent.timestamp()))}
    assert post(client, payload(late)) == 200
    settle(client, app)
    with Session(world.engine) as session:
        window = session.get(ChannelWindow, ("whatsapp", sender))
        assert window is not None and window.last_inbound_at == sent
        assert not window_open(session, sender, sent + dt.timedelta(hours=24, minutes=1))
    # An older redelivery leaves the window where it is.
    older = {**late, "id": late["id"] + "x", "timestamp": str(int(sent.timestamp()) - 600)}
    assert post(client, payload(older)) == 200
    settle(client, app)
    with Session(world.engine) as session:
        window = session.get(ChannelWindow, ("whatsapp", sender))
        assert window is not None and window.last_inbound_at == sent


def test_outside_the_window_only_the_template_is_sent(
    world: World, graph: tuple[FakeGraphApi, str]
) -> None:
    fake, url = graph
    recipient = "919333344444"
    now = dt.datetime.now(dt.UTC)
    _wrote_at(world, recipient, now - dt.timedelta(hours=25))
    reply = Reply(
        text="Your call list: Alpha Kirana Store.", buttons=[Button(label="Yes", payload="y")]
    )
    _send(world, url, recipient, reply, now)
    (sent,) = fake.to(recipient)
    assert sent["type"] == "template"
    assert sent["template"] == {"name": "daily_call_list", "language": {"code": "en"}}
    # Within 24 hours of their last message, the reply itself goes out.
    _wrote_at(world, recipient, now - dt.timedelta(hours=23))
    _send(world, url, recipient, Reply(text="Your call list."), now)
    assert fake.to(recipient)[-1] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient,
        "type": "text",
        "text": {"body": "Your call list.", "preview_url": False},
    }


def test_long_reply_is_split_and_the_buttons_ride_on_a_short_last_part(
    world: World, graph: tuple[FakeGraphApi, str]
) -> None:
    fake, url = graph
    recipient = "919444455555"
    now = dt.datetime.now(dt.UTC)
    _wrote_at(world, recipient, now - dt.timedelta(minutes=5))
    long_text = "\n\n".join(f"Store {i} owes Rs {i * 100}. " * 20 for i in range(30))
    reply = Reply(
        text=long_text,
        buttons=[
            Button(label="Yes", payload="confirm:yes"),
            Button(label="No, cancel this order please", payload="cancel:no"),
        ],
    )
    _send(world, url, recipient, reply, now)
    sent = fake.to(recipient)
    texts = [m["text"]["body"] for m in sent[:-1]]
    last = sent[-1]["interactive"]
    assert len(sent) > 3 and all(len(t) <= 4096 for t in texts)
    assert len(last["body"]["text"]) <= 1024
    assert [b["reply"] for b in last["action"]["buttons"]] == [
        {"id": "confirm:yes", "title": "Yes"},
        {"id": "cancel:no", "title": "No, cancel this orde"},
    ]
    joined = "".join([*texts, last["body"]["text"]]).replace(" ", "").replace("\n", "")
    assert joined == long_text.replace(" ", "").replace("\n", "")


def test_more_than_three_choices_become_a_list(
    world: World, graph: tuple[FakeGraphApi, str]
) -> None:
    fake, url = graph
    recipient = "919555566666"
    now = dt.datetime.now(dt.UTC)
    _wrote_at(world, recipient, now)
    choices = [Button(label=f"Sharma Store number {i}", payload=f"store:ST{i}") for i in range(5)]
    _send(world, url, recipient, Reply(text="Which store?", buttons=choices), now)
    (sent,) = fake.to(recipient)
    assert sent["interactive"]["type"] == "list"
    rows = sent["interactive"]["action"]["sections"][0]["rows"]
    assert [r["id"] for r in rows] == [f"store:ST{i}" for i in range(5)]
    assert all(len(r["title"]) <= 24 for r in rows)


@pytest.mark.parametrize(
    "missing",
    ["meta_app_secret", "meta_verify_token", "meta_phone_number_id", "meta_access_token"],
)
def test_enabled_without_a_secret_refuses_to_start(
    world: World, graph: tuple[FakeGraphApi, str], missing: str
) -> None:
    settings = _settings(world, graph[1], **{missing: None})
    with pytest.raises(ChannelConfigError, match=missing.upper()):
        create_app(settings)
